"""Agent configuration: one TOML file plus ``EDGE_AGENT_*`` environment overrides.

Validated at start; ``edge-agent config check`` prints every problem with the field, the bad value
and what is expected. Secrets (camera passwords, keys) never live in this file: cameras point to a
0600 credentials file and the identity to key files, so ``config show`` can print everything else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.settings import ModelSettings
from agent.policy.settings import PolicySettings
from agent.ptz.settings import PtzSettings
from agent.redact import redact_value
from agent.stream.settings import StreamSettings
from provisioning.settings import ProvisioningSettings

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/agent.toml")
CONFIG_ENV = "EDGE_AGENT_CONFIG"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_CODE = r"^[0-9]{1,6}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Location(_Section):
    """Administrative codes (Vietnam's GSO unit codes) used for area-scoped authorization."""

    province: str = Field(..., pattern=_CODE, description="Province code, e.g. '01'.")
    district: str = Field(..., pattern=_CODE, description="District code, e.g. '001'.")
    commune: str = Field(..., pattern=_CODE, description="Commune/ward code, e.g. '00001'.")


class DeviceSettings(_Section):
    id: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9-]{2,62}$", description="Device id assigned at enrollment."
    )
    owner_org: str = Field(..., min_length=1, max_length=128, description="Installing organization.")
    location: Location
    description: str = ""


class CenterSettings(_Section):
    host: str = Field(..., min_length=1, description="MQTT broker host name (must match its certificate).")
    port: int = Field(8883, ge=1, le=65535)
    ca_file: Path | None = Field(None, description="CA bundle; default <state_dir>/identity/ca.crt.")
    cert_file: Path | None = Field(
        None, description="Device certificate; default <state_dir>/identity/device.crt."
    )
    key_file: Path | None = Field(
        None, description="Device key (0600); default <state_dir>/identity/device.key."
    )
    tls_server_name: str | None = Field(
        None, description="Expected name in the broker certificate if not host."
    )
    insecure_dev: bool = Field(
        False, description="Plain TCP without TLS. Development only; logs a loud warning."
    )
    topic_root: str = Field("cam/v1", pattern=r"^[a-z0-9]+(/[a-z0-9]+)*$")
    keepalive_s: int = Field(30, ge=5, le=600)
    reconnect_min_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(120.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _backoff_order(self) -> CenterSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class OnvifSettings(_Section):
    url: str = Field(..., description="ONVIF device service URL, e.g. http://10.0.0.5/onvif/device_service.")
    credentials_file: Path = Field(..., description="TOML/JSON file with username and password, mode 0600.")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return v


class CameraSettings(_Section):
    name: str = Field(..., pattern=_NAME, description="Short camera name, unique on this device.")
    main_url: str | None = Field(None, description="RTSP URL of the main stream (forwarding, recording).")
    sub_url: str | None = Field(None, description="RTSP URL of the sub-stream (detection). Optional.")
    file: Path | None = Field(None, description="A video file to loop instead of RTSP (demo, tests).")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    detect_fps: float = Field(5.0, gt=0, le=30, description="Frames per second handed to detection.")
    detect_width: int = Field(416, ge=64, le=4096)
    detect_height: int | None = Field(None, ge=64, le=4096, description="Default: keep the aspect ratio.")
    onvif: OnvifSettings | None = None
    rules: dict[str, Any] | None = Field(
        None, description="Detection lines and zones (see docs/detection.md)."
    )

    @field_validator("main_url", "sub_url")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("rtsp", "rtsps"):
            raise ValueError("must be an rtsp:// or rtsps:// URL")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> CameraSettings:
        if (self.main_url is None) == (self.file is None):
            raise ValueError("set exactly one of main_url (RTSP camera) or file (looped video file)")
        if self.file is not None and not self.file.is_file():
            raise ValueError(f"file {self.file} does not exist")
        return self


class DetectSettings(_Section):
    """On-device detection: the model (docs/detection-model.md) and the pipeline (docs/detection.md)."""

    model: ModelSettings = Field(default_factory=ModelSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)


class StorageSettings(_Section):
    state_dir: Path = Field(Path("/var/lib/edge-agent"), description="Identity, outbox, audit (0700).")
    data_dir: Path | None = Field(
        None, description="Snapshots, counts, recordings; default <state_dir>/data."
    )
    outbox_max_mb: float = Field(
        256, gt=0, description="Disk quota of the outbox; oldest low-priority first."
    )
    snapshots_max_mb: float = Field(512, gt=0)
    min_free_mb: float = Field(200, ge=0, description="Stop writing optional data below this free space.")


class TelemetrySettings(_Section):
    interval_s: float = Field(30.0, ge=1, le=3600)
    thermal_file: Path = Field(
        Path("/sys/class/thermal/thermal_zone0/temp"), description="Board temperature in millidegrees C."
    )


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(False, alias="json")


class AgentSettings(BaseSettings):
    """The whole configuration. Nested env overrides use ``__``: ``EDGE_AGENT_CENTER__PORT=8883``."""

    model_config = SettingsConfigDict(
        env_prefix="EDGE_AGENT_", env_nested_delimiter="__", extra="forbid", populate_by_name=True
    )
    toml_path: ClassVar[Path | None] = None

    device: DeviceSettings
    center: CenterSettings
    cameras: list[CameraSettings] = Field(default_factory=list)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    log: LogSettings = Field(default_factory=LogSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)
    ptz: PtzSettings = Field(default_factory=PtzSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)

    @model_validator(mode="after")
    def _unique_cameras(self) -> AgentSettings:
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    # Derived paths: one place that knows the state directory layout.
    @property
    def data_dir(self) -> Path:
        return self.storage.data_dir or self.storage.state_dir / "data"

    @property
    def identity_dir(self) -> Path:
        return self.storage.state_dir / "identity"

    @property
    def ca_file(self) -> Path:
        return self.center.ca_file or self.identity_dir / "ca.crt"

    @property
    def cert_file(self) -> Path:
        return self.center.cert_file or self.identity_dir / "device.crt"

    @property
    def key_file(self) -> Path:
        return self.center.key_file or self.identity_dir / "device.key"

    def camera(self, name: str) -> CameraSettings | None:
        return next((c for c in self.cameras if c.name == name), None)


class ConfigError(Exception):
    """Configuration is missing or invalid; ``problems`` holds one readable line per error."""

    def __init__(self, path: Path | None, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.path = path
        self.problems = problems


def resolve_config_path(path: Path | str | None) -> Path:
    if path is not None:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load_settings(path: Path | str | None = None) -> AgentSettings:
    """Load and validate; raise ConfigError with every problem (field, bad value, expectation)."""
    cfg = resolve_config_path(path)
    if not cfg.is_file():
        raise ConfigError(cfg, [f"config file {cfg} not found (pass --config PATH or set {CONFIG_ENV})"])

    class _Loaded(AgentSettings):
        toml_path = cfg

    try:
        loaded = _Loaded()
    except ValidationError as exc:
        raise ConfigError(cfg, format_validation_error(exc)) from None
    except (OSError, ValueError) as exc:  # TOML syntax errors arrive as ValueError subclasses
        raise ConfigError(cfg, [f"{cfg}: cannot parse: {exc}"]) from None
    return AgentSettings.model_validate(loaded.model_dump(by_alias=True))


def format_validation_error(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            lines.append(f"{loc}: missing; required field")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown field (check the spelling; see docs/configuration.md)")
        else:
            lines.append(f"{loc}: {redact_value(err.get('input'))!s} is invalid: {msg}")
    return lines


def public_view(settings: AgentSettings) -> dict[str, Any]:
    """The configuration as JSON-able data with every secret removed (for `config show`, logs)."""
    return redact_value(settings.model_dump(mode="json", by_alias=True))  # type: ignore[no-any-return]
