"""PTZ and camera-reboot actions on the command channel. The gate has already authorized the role;
these handlers only arbitrate between authorized requesters and keep the camera safe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.camera.onvif_client import OnvifClient
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.context import AuthContext
from agent.ptz.manager import AwayHook, Connector, PtzManager, Who
from agent.ptz.priority import resolve_priority
from agent.ptz.settings import PtzSettings
from agent.services import Services

log = logging.getLogger(__name__)
EXTRA_KEY = "ptz"
"""``services.extras["ptz"]`` is the PtzManager (the app closes it; others may read telemetry)."""
AWAY_HOOK_KEY = "ptz.on_away_from_home"
"""The lead may put an ``(camera, away) -> None`` callable here before ``register`` to pause counting."""

_Camera = Field(..., min_length=1, max_length=64, description="Configured camera name.")
_Token = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Preset token.")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str = _Camera


class PtzMoveParams(_Params):
    """continuous: pan/tilt/zoom are speeds in [-1, 1]; relative: translations in [-1, 1] (zoom too);
    absolute: positions, pan/tilt in [-1, 1] and zoom in [0, 1]."""

    mode: Literal["continuous", "relative", "absolute"] = "continuous"
    pan: float = Field(0.0, ge=-1.0, le=1.0)
    tilt: float = Field(0.0, ge=-1.0, le=1.0)
    zoom: float = Field(0.0, ge=-1.0, le=1.0)
    timeout_s: float | None = Field(
        None, gt=0, le=120, description="continuous only; capped by ptz.max_move_s"
    )
    speed: float | None = Field(None, gt=0, le=1.0, description="relative/absolute only")

    @model_validator(mode="after")
    def _mode_fields(self) -> PtzMoveParams:
        if self.mode == "continuous" and self.speed is not None:
            raise ValueError(
                "speed applies to relative/absolute moves; continuous moves take pan/tilt/zoom speeds"
            )
        if self.mode != "continuous" and self.timeout_s is not None:
            raise ValueError("timeout_s applies to continuous moves only")
        if self.mode == "absolute" and self.zoom < 0:
            raise ValueError("absolute zoom is a position in [0, 1]")
        return self


class PtzStopParams(_Params):
    release: bool = Field(False, description="Also give up the PTZ lock.")


class PtzPresetParams(_Params):
    preset: str = _Token


class PtzSetPresetParams(_Params):
    name: str | None = Field(None, min_length=1, max_length=64)
    preset: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", description="Overwrite this preset."
    )


class PtzCameraParams(_Params):
    pass


def _who(ctx: CommandContext) -> Who:
    return Who.of(ctx.auth)


def build_manager(services: Services, settings: PtzSettings, on_away: AwayHook | None = None) -> PtzManager:
    """One controller per camera with an ``onvif`` section; connections are opened lazily."""

    def connector(url: str, cred_file: Path) -> Connector:
        async def connect() -> OnvifClient:
            return await OnvifClient.from_files(url, cred_file, timeout_s=settings.onvif_timeout_s)

        return connect

    connectors = {
        cam.name: connector(cam.onvif.url, cam.onvif.credentials_file)
        for cam in services.settings.cameras
        if cam.onvif is not None
    }
    audit_event = getattr(services.audit, "event", None)

    async def audit(event: str, fields: dict[str, Any]) -> None:
        """Policy AuditLog.event(kind, auth, detail): the acting requester becomes the record's `who`."""
        if audit_event is None:
            return
        detail = dict(fields)
        who = None
        if "requester" in detail:
            who = AuthContext(
                requester=detail.pop("requester"),
                role=detail.pop("role", ""),
                unit=detail.pop("unit", ""),
                purpose=detail.pop("purpose", ""),
            )
        await audit_event(event, who, detail)

    return PtzManager(
        connectors,
        settings,
        priority=resolve_priority(services.extras.get("policy")),
        on_away_from_home=on_away,
        audit=audit,
    )


def register(registry: HandlerRegistry, services: Services, settings: PtzSettings | None = None) -> None:
    """Build the PTZ manager from ``settings.cameras[].onvif`` and ``settings.ptz``, register the actions."""
    settings = settings or getattr(services.settings, "ptz", None) or PtzSettings()
    hook: Callable[[str, bool], Any] | None = services.extras.get(AWAY_HOOK_KEY)
    mgr = build_manager(services, settings, hook)
    services.extras[EXTRA_KEY] = mgr
    services.telemetry_providers["ptz"] = mgr.telemetry
    register_actions(registry, mgr)


def register_actions(registry: HandlerRegistry, mgr: PtzManager) -> None:
    """Separate from :func:`register` so tests and benches can register against their own manager."""

    @registry.action(
        "ptz_move",
        PtzMoveParams,
        needs_camera=True,
        summary="Move the camera (continuous/relative/absolute).",
    )
    async def ptz_move(ctx: CommandContext, p: PtzMoveParams) -> dict[str, Any]:
        cam = mgr.camera(p.camera)
        if p.mode == "continuous":
            return await cam.continuous_move(_who(ctx), p.pan, p.tilt, p.zoom, p.timeout_s)
        if p.mode == "relative":
            return await cam.relative_move(_who(ctx), p.pan, p.tilt, p.zoom, p.speed)
        return await cam.absolute_move(_who(ctx), p.pan, p.tilt, p.zoom, p.speed)

    @registry.action("ptz_stop", PtzStopParams, needs_camera=True, summary="Stop any PTZ movement.")
    async def ptz_stop(ctx: CommandContext, p: PtzStopParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).stop(_who(ctx), release=p.release)

    @registry.action("ptz_goto_preset", PtzPresetParams, needs_camera=True, summary="Go to a preset.")
    async def ptz_goto_preset(ctx: CommandContext, p: PtzPresetParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).goto_preset(_who(ctx), p.preset)

    @registry.action(
        "ptz_set_preset", PtzSetPresetParams, needs_camera=True, summary="Save the current view."
    )
    async def ptz_set_preset(ctx: CommandContext, p: PtzSetPresetParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).set_preset(_who(ctx), p.name, p.preset)

    @registry.action("ptz_remove_preset", PtzPresetParams, needs_camera=True, summary="Delete a preset.")
    async def ptz_remove_preset(ctx: CommandContext, p: PtzPresetParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).remove_preset(_who(ctx), p.preset)

    @registry.action("ptz_home", PtzCameraParams, needs_camera=True, summary="Return to the home view.")
    async def ptz_home(ctx: CommandContext, p: PtzCameraParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).home(_who(ctx))

    @registry.action("ptz_status", PtzCameraParams, needs_camera=True, summary="Position, presets, lock.")
    async def ptz_status(ctx: CommandContext, p: PtzCameraParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).status(_who(ctx))

    @registry.action(
        "camera_reboot",
        PtzCameraParams,
        needs_camera=True,
        grant_use="once",
        summary="Reboot the camera (ONVIF).",
    )
    async def camera_reboot(ctx: CommandContext, p: PtzCameraParams) -> dict[str, Any]:
        return await mgr.camera(p.camera).reboot(_who(ctx))
