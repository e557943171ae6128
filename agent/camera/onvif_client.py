"""ONVIF camera client: onvif-zeep-async behind a small typed API with timeouts and clear errors.

Why a wrapper: the library raises zeep Faults, aiohttp errors and ONVIFError wrappers of both, with
90 s default timeouts. Callers (PTZ, discovery, doctor) need one error type whose ``kind`` says what
the installer must fix: the password, the network, the camera clock, the camera's codec, or nothing
because the camera simply has no PTZ.

Clock offset: WS-UsernameToken digests carry a ``Created`` timestamp that cameras reject when it
differs too much from their own clock. We always read ``GetSystemDateAndTime`` (unauthenticated)
first and sign with the camera's time (``ONVIFCamera(adjust_time=True)``); the measured offset is
kept in :attr:`OnvifClient.clock_offset_s` so ``doctor`` and telemetry can warn about it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera, ONVIFError
from onvif.util import is_auth_error, stringify_onvif_error

from agent.camera.onvif_credentials import CredentialsError, OnvifCredentials, load_credentials

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# At DEBUG these dump whole SOAP envelopes (UsernameToken digest and nonce included): keep them quiet
# even when the agent runs with DEBUG logging.
for _name in ("zeep.transports", "onvif.zeep_aiohttp", "zeep.wsdl.bindings.soap"):
    logging.getLogger(_name).setLevel(logging.INFO)

CLOCK_WARN_S = 5.0
"""Offsets above this are reported (doctor, telemetry); they are compensated either way."""
PTZ_NS = "http://www.onvif.org/ver20/ptz/wsdl"
DEFAULT_TIMEOUT_S = 5.0


class OnvifErrorKind(str, Enum):
    CREDENTIALS = "credentials"  # our credentials file is missing/too open/malformed
    AUTH = "auth"  # the camera rejected username/password
    UNREACHABLE = "unreachable"  # connection refused / no route / DNS
    TIMEOUT = "timeout"  # the camera accepted the connection but did not answer in time
    NO_PTZ = "no_ptz"  # the camera has no PTZ service / profile
    CODEC = "codec"  # no H.264 profile
    NOT_FOUND = "not_found"  # e.g. unknown preset token
    UNSUPPORTED = "unsupported"  # operation not implemented by the camera
    PROTOCOL = "protocol"  # anything else the camera said


class OnvifError(Exception):
    """One error type for every ONVIF failure; ``kind`` is stable, ``message`` is for humans."""

    def __init__(self, kind: OnvifErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str


@dataclass(frozen=True)
class MediaProfile:
    token: str
    name: str
    encoding: str  # H264, H265, JPEG, MPEG4 (as the camera names it)
    width: int
    height: int
    fps: float | None
    has_ptz: bool


@dataclass(frozen=True)
class SelectedStream:
    profile: str
    uri: str
    encoding: str
    width: int
    height: int
    fps: float | None


@dataclass
class StreamSelection:
    """Main stream for forwarding/recording, sub-stream for detection (None: decode main at low rate)."""

    main: SelectedStream
    sub: SelectedStream | None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PtzCapabilities:
    supported: bool
    continuous: bool = False
    relative: bool = False
    absolute: bool = False
    home: bool = False
    presets: bool = False
    max_presets: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PtzPosition:
    pan: float
    tilt: float
    zoom: float


@dataclass(frozen=True)
class PtzStatus:
    position: PtzPosition | None
    moving: bool


@dataclass(frozen=True)
class PtzPreset:
    token: str
    name: str
    position: PtzPosition | None


def _fault_subcodes(exc: zeep.exceptions.Fault) -> list[str]:
    subs = exc.subcodes or []
    return [getattr(s, "localname", None) or str(s).rsplit("}", 1)[-1] for s in subs]


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    while exc.__cause__ is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__
    return exc


class OnvifClient:
    """One connected camera. Create with :meth:`connect`; every call is bounded by ``timeout_s``."""

    def __init__(
        self, url: str, credentials: OnvifCredentials, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OnvifError(OnvifErrorKind.PROTOCOL, f"ONVIF URL {url!r} must be http(s)://host[:port]/...")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._scheme = parts.scheme
        self.credentials = credentials
        self.timeout_s = timeout_s
        self.clock_offset_s: float = 0.0
        self.info: DeviceInfo | None = None
        self.profiles: list[MediaProfile] = []
        self.ptz_capabilities = PtzCapabilities(supported=False)
        self._cam: ONVIFCamera | None = None
        self._ptz: Any = None
        self._ptz_profile: str | None = None

    @classmethod
    async def from_files(
        cls, url: str, credentials_file: Path, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> OnvifClient:
        try:
            creds = await asyncio.to_thread(load_credentials, credentials_file)
        except CredentialsError as exc:
            raise OnvifError(OnvifErrorKind.CREDENTIALS, str(exc)) from None
        client = cls(url, creds, timeout_s=timeout_s)
        await client.connect()
        return client

    # ---- plumbing ---------------------------------------------------------------------------
    def _where(self) -> str:
        return f"camera at {self.host}:{self.port}"

    def _map(self, exc: BaseException, what: str) -> OnvifError:
        if isinstance(exc, OnvifError):
            return exc
        root = _root_cause(exc)
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or isinstance(
            root, (asyncio.TimeoutError, TimeoutError)
        ):
            return OnvifError(
                OnvifErrorKind.TIMEOUT, f"{self._where()} did not answer {what} within {self.timeout_s:g} s"
            )
        fault = exc if isinstance(exc, zeep.exceptions.Fault) else root
        if isinstance(fault, zeep.exceptions.Fault):
            subcodes = _fault_subcodes(fault)
            if is_auth_error(fault):
                clock = (
                    f"; its clock is {self.clock_offset_s:+.0f} s off ours, which was compensated, "
                    "so this is not a clock problem"
                    if abs(self.clock_offset_s) > CLOCK_WARN_S
                    else ""
                )
                return OnvifError(
                    OnvifErrorKind.AUTH,
                    f"{self._where()} rejected user {self.credentials.username!r} during {what}: wrong username "
                    f"or password{clock}. Check the credentials file.",
                )
            if "ActionNotSupported" in subcodes:
                return OnvifError(OnvifErrorKind.UNSUPPORTED, f"{self._where()} does not support {what}")
            if "NoToken" in subcodes or "NoProfile" in subcodes:
                return OnvifError(OnvifErrorKind.NOT_FOUND, f"{self._where()}: {what}: {fault.message}")
            return OnvifError(
                OnvifErrorKind.PROTOCOL, f"{self._where()} refused {what}: {stringify_onvif_error(fault)}"
            )
        if isinstance(root, (aiohttp.ClientConnectionError, ConnectionError, OSError)) and not isinstance(
            root, aiohttp.ServerDisconnectedError
        ):
            reason = getattr(root, "strerror", None) or str(root) or type(root).__name__
            return OnvifError(OnvifErrorKind.UNREACHABLE, f"cannot reach {self._where()}: {reason}")
        text = str(exc)
        if isinstance(exc, ONVIFError) and "support service: ptz" in text:
            return OnvifError(OnvifErrorKind.NO_PTZ, f"{self._where()} has no PTZ service")
        return OnvifError(
            OnvifErrorKind.PROTOCOL, f"{self._where()}: {what} failed: {text or type(exc).__name__}"
        )

    async def _call(self, what: str, aw: Awaitable[_T]) -> _T:
        try:
            return await asyncio.wait_for(aw, self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._map(exc, what) from exc

    # ---- connection --------------------------------------------------------------------------
    async def connect(self) -> None:
        """Read the camera clock, discover services, device info, profiles and PTZ capabilities."""
        host = self.host if self._scheme == "http" else f"https://{self.host}"
        self._cam = ONVIFCamera(
            host,
            self.port,
            self.credentials.username,
            self.credentials.password.get_secret_value(),
            adjust_time=True,
            no_cache=True,
        )
        try:
            await self._call("GetSystemDateAndTime/GetServices", self._cam.update_xaddrs())
            diff = self._cam.dt_diff
            self.clock_offset_s = diff.total_seconds() if isinstance(diff, dt.timedelta) else 0.0
            if abs(self.clock_offset_s) > CLOCK_WARN_S:
                log.warning(
                    "%s: clock is %+.0f s off ours (compensated for ONVIF auth; fix NTP on the camera)",
                    self._where(),
                    self.clock_offset_s,
                )
            devmgmt = await self._call("device service", self._cam.create_devicemgmt_service())
            info = await self._call("GetDeviceInformation", devmgmt.GetDeviceInformation())
            self.info = DeviceInfo(
                manufacturer=str(info.Manufacturer or ""),
                model=str(info.Model or ""),
                firmware=str(info.FirmwareVersion or ""),
                serial=str(info.SerialNumber or ""),
                hardware_id=str(info.HardwareId or ""),
            )
            media = await self._call("media service", self._cam.create_media_service())
            raw_profiles = await self._call("GetProfiles", media.GetProfiles())
            self.profiles = [self._profile(p) for p in raw_profiles or []]
            await self._probe_ptz()
        except BaseException:
            await self.close()
            raise

    @staticmethod
    def _profile(p: Any) -> MediaProfile:
        vec = getattr(p, "VideoEncoderConfiguration", None)
        res = getattr(vec, "Resolution", None)
        rate = getattr(vec, "RateControl", None)
        fps = getattr(rate, "FrameRateLimit", None)
        return MediaProfile(
            token=str(p.token),
            name=str(getattr(p, "Name", "") or ""),
            encoding=str(getattr(vec, "Encoding", "") or "").upper(),
            width=int(getattr(res, "Width", 0) or 0),
            height=int(getattr(res, "Height", 0) or 0),
            fps=float(fps) if fps is not None else None,
            has_ptz=getattr(p, "PTZConfiguration", None) is not None,
        )

    async def _probe_ptz(self) -> None:
        assert self._cam is not None
        ptz_profile = next((p.token for p in self.profiles if p.has_ptz), None)
        if PTZ_NS not in self._cam.xaddrs or ptz_profile is None:
            self.ptz_capabilities = PtzCapabilities(supported=False)
            return
        self._ptz = await self._call("PTZ service", self._cam.create_ptz_service())
        self._ptz_profile = ptz_profile
        nodes = await self._call("GetNodes", self._ptz.GetNodes())
        node = nodes[0] if nodes else None
        spaces = getattr(node, "SupportedPTZSpaces", None)

        def has(name: str) -> bool:
            return bool(getattr(spaces, name, None))

        max_presets = int(getattr(node, "MaximumNumberOfPresets", 0) or 0)
        self.ptz_capabilities = PtzCapabilities(
            supported=True,
            continuous=has("ContinuousPanTiltVelocitySpace") or has("ContinuousZoomVelocitySpace"),
            relative=has("RelativePanTiltTranslationSpace"),
            absolute=has("AbsolutePanTiltPositionSpace"),
            home=bool(getattr(node, "HomeSupported", False)),
            presets=max_presets > 0,
            max_presets=max_presets,
        )

    async def camera_clock_offset(self) -> float:
        """Read the camera clock again (unauthenticated) and return its offset from ours, in seconds.

        Used by health checks: when a camera's clock jumps (NTP sync after boot) the offset measured at
        connect time no longer matches and signed requests start failing, so callers reconnect.
        """
        if self._cam is None:
            raise OnvifError(OnvifErrorKind.UNREACHABLE, f"{self._where()} is not connected")
        devmgmt = await self._call("device service", self._cam.create_devicemgmt_service())
        res = await self._call("GetSystemDateAndTime", devmgmt.authless_GetSystemDateAndTime())
        d, t = res.UTCDateTime.Date, res.UTCDateTime.Time
        cam = dt.datetime(d.Year, d.Month, d.Day, t.Hour, t.Minute, t.Second, tzinfo=dt.timezone.utc)
        return (cam - dt.datetime.now(dt.timezone.utc)).total_seconds()

    async def close(self) -> None:
        cam, self._cam, self._ptz = self._cam, None, None
        if cam is not None:
            try:
                await asyncio.wait_for(cam.close(), self.timeout_s)
            except Exception as exc:  # closing must never mask the real error
                log.debug("closing ONVIF client for %s: %s", self._where(), exc)

    @property
    def connected(self) -> bool:
        return self._cam is not None

    # ---- media -------------------------------------------------------------------------------
    async def stream_uri(self, profile_token: str) -> str:
        media = await self._media()
        req = {
            "ProfileToken": profile_token,
            "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
        }
        res = await self._call("GetStreamUri", media.GetStreamUri(req))
        return str(res.Uri)

    async def snapshot_uri(self, profile_token: str | None = None) -> str | None:
        token = profile_token or (self.profiles[0].token if self.profiles else None)
        if token is None:
            return None
        media = await self._media()
        try:
            res = await self._call("GetSnapshotUri", media.GetSnapshotUri({"ProfileToken": token}))
        except OnvifError as exc:
            if exc.kind in (OnvifErrorKind.UNSUPPORTED, OnvifErrorKind.PROTOCOL):
                return None
            raise
        return str(res.Uri) if getattr(res, "Uri", None) else None

    async def _media(self) -> Any:
        if self._cam is None:
            raise OnvifError(OnvifErrorKind.UNREACHABLE, f"{self._where()} is not connected")
        return await self._call("media service", self._cam.create_media_service())

    async def select_streams(self) -> StreamSelection:
        """Pick main/sub by codec and resolution and fetch their RTSP URIs."""
        main_p, sub_p, notes = choose_profiles(self.profiles)
        main = SelectedStream(
            main_p.token,
            await self.stream_uri(main_p.token),
            main_p.encoding,
            main_p.width,
            main_p.height,
            main_p.fps,
        )
        sub = None
        if sub_p is not None:
            sub = SelectedStream(
                sub_p.token,
                await self.stream_uri(sub_p.token),
                sub_p.encoding,
                sub_p.width,
                sub_p.height,
                sub_p.fps,
            )
        return StreamSelection(main, sub, notes)

    # ---- device ------------------------------------------------------------------------------
    async def reboot(self) -> str:
        if self._cam is None:
            raise OnvifError(OnvifErrorKind.UNREACHABLE, f"{self._where()} is not connected")
        devmgmt = await self._call("device service", self._cam.create_devicemgmt_service())
        res = await self._call("SystemReboot", devmgmt.SystemReboot())
        return str(res or "")

    # ---- PTZ ---------------------------------------------------------------------------------
    def _require_ptz(self) -> tuple[Any, str]:
        if self._cam is None:
            raise OnvifError(OnvifErrorKind.UNREACHABLE, f"{self._where()} is not connected")
        if self._ptz is None or self._ptz_profile is None:
            raise OnvifError(OnvifErrorKind.NO_PTZ, f"{self._where()} has no PTZ (fixed camera)")
        return self._ptz, self._ptz_profile

    async def continuous_move(self, pan: float, tilt: float, zoom: float, timeout_s: float) -> None:
        """Velocity move that the camera itself stops after ``timeout_s`` (if it honours Timeout)."""
        ptz, token = self._require_ptz()
        req = {
            "ProfileToken": token,
            "Velocity": {"PanTilt": {"x": pan, "y": tilt}, "Zoom": {"x": zoom}},
            "Timeout": dt.timedelta(seconds=timeout_s),
        }
        await self._call("ContinuousMove", ptz.ContinuousMove(req))

    async def relative_move(self, pan: float, tilt: float, zoom: float, speed: float | None = None) -> None:
        ptz, token = self._require_ptz()
        req: dict[str, Any] = {
            "ProfileToken": token,
            "Translation": {"PanTilt": {"x": pan, "y": tilt}, "Zoom": {"x": zoom}},
        }
        if speed is not None:
            req["Speed"] = {"PanTilt": {"x": speed, "y": speed}, "Zoom": {"x": speed}}
        await self._call("RelativeMove", ptz.RelativeMove(req))

    async def absolute_move(self, pan: float, tilt: float, zoom: float, speed: float | None = None) -> None:
        ptz, token = self._require_ptz()
        req: dict[str, Any] = {
            "ProfileToken": token,
            "Position": {"PanTilt": {"x": pan, "y": tilt}, "Zoom": {"x": zoom}},
        }
        if speed is not None:
            req["Speed"] = {"PanTilt": {"x": speed, "y": speed}, "Zoom": {"x": speed}}
        await self._call("AbsoluteMove", ptz.AbsoluteMove(req))

    async def stop(self) -> None:
        ptz, token = self._require_ptz()
        await self._call("Stop", ptz.Stop({"ProfileToken": token, "PanTilt": True, "Zoom": True}))

    async def goto_preset(self, preset: str) -> None:
        ptz, token = self._require_ptz()
        await self._call(
            f"GotoPreset {preset!r}", ptz.GotoPreset({"ProfileToken": token, "PresetToken": preset})
        )

    async def set_preset(self, name: str | None = None, preset: str | None = None) -> str:
        ptz, token = self._require_ptz()
        req: dict[str, Any] = {"ProfileToken": token}
        if name is not None:
            req["PresetName"] = name
        if preset is not None:
            req["PresetToken"] = preset
        res = await self._call("SetPreset", ptz.SetPreset(req))
        return str(res)

    async def remove_preset(self, preset: str) -> None:
        ptz, token = self._require_ptz()
        await self._call(
            f"RemovePreset {preset!r}", ptz.RemovePreset({"ProfileToken": token, "PresetToken": preset})
        )

    async def goto_home(self) -> None:
        ptz, token = self._require_ptz()
        await self._call("GotoHomePosition", ptz.GotoHomePosition({"ProfileToken": token}))

    async def set_home(self) -> None:
        ptz, token = self._require_ptz()
        await self._call("SetHomePosition", ptz.SetHomePosition({"ProfileToken": token}))

    async def status(self) -> PtzStatus:
        ptz, token = self._require_ptz()
        res = await self._call("GetStatus", ptz.GetStatus({"ProfileToken": token}))
        move = getattr(res, "MoveStatus", None)
        moving = any(str(getattr(move, a, "") or "").upper() == "MOVING" for a in ("PanTilt", "Zoom"))
        return PtzStatus(_position(getattr(res, "Position", None)), moving)

    async def presets(self) -> list[PtzPreset]:
        ptz, token = self._require_ptz()
        res = await self._call("GetPresets", ptz.GetPresets({"ProfileToken": token}))
        return [
            PtzPreset(
                str(p.token), str(getattr(p, "Name", "") or ""), _position(getattr(p, "PTZPosition", None))
            )
            for p in res or []
        ]


def _position(pos: Any) -> PtzPosition | None:
    if pos is None:
        return None
    pt = getattr(pos, "PanTilt", None)
    z = getattr(pos, "Zoom", None)
    return PtzPosition(
        pan=float(getattr(pt, "x", 0.0) or 0.0),
        tilt=float(getattr(pt, "y", 0.0) or 0.0),
        zoom=float(getattr(z, "x", 0.0) or 0.0),
    )


def _codec_label(enc: str) -> str:
    return {"H264": "H.264", "H265": "H.265", "HEVC": "H.265", "JPEG": "MJPEG", "MPEG4": "MPEG-4"}.get(
        enc, enc
    )


def choose_profiles(profiles: list[MediaProfile]) -> tuple[MediaProfile, MediaProfile | None, list[str]]:
    """Main = largest H.264 profile, sub = smallest other H.264 profile (>= 320 px wide).

    Why H.264 only: browsers' WebRTC decoders and our recorder's remux path need H.264; H.265 and MJPEG
    would need transcoding, which a Raspberry Pi cannot do for a 1080p stream.
    """
    if not profiles:
        raise OnvifError(OnvifErrorKind.CODEC, "the camera reports no media profiles")
    h264 = [p for p in profiles if p.encoding == "H264"]
    if not h264:
        offered = sorted({_codec_label(p.encoding) for p in profiles})
        raise OnvifError(
            OnvifErrorKind.CODEC,
            f"the camera offers only {' and '.join(offered)} streams; the agent needs H.264 "
            "(WebRTC forwarding and recording). Set the camera's video encoder to H.264 in its web page.",
        )
    by_size = sorted(h264, key=lambda p: (p.width * p.height, p.fps or 0))
    main = by_size[-1]
    notes: list[str] = []
    others = [p for p in by_size[:-1] if p.width >= 320]
    sub = others[0] if others else None
    if sub is None:
        notes.append("no second H.264 profile: detection will decode the main stream at a low rate")
    skipped = sorted({_codec_label(p.encoding) for p in profiles if p.encoding != "H264"})
    if skipped:
        notes.append(f"ignored profiles encoded as {', '.join(skipped)} (H.264 preferred)")
    return main, sub, notes
