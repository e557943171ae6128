"""All cameras of the device: one always-connected runtime per configured camera.

Each :class:`CameraRuntime` keeps its main stream connected (viewers and the recorder start at
once from the GOP cache of ``runtime.main``) and, when the camera has one, its sub-stream, which
detection decodes through ``runtime.frames()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from agent.camera.fanout import PacketFanout
from agent.camera.frames import FrameSampler
from agent.camera.source import CameraState, PacketSource, SourceStatus

__all__ = ["CameraManager", "CameraRuntime", "CameraSettingsLike", "CameraStatus", "UnknownCamera"]

log = logging.getLogger(__name__)


class CameraSettingsLike(Protocol):
    """The fields of ``agent.config.CameraSettings`` this package reads."""

    @property
    def name(self) -> str: ...
    @property
    def main_url(self) -> str | None: ...
    @property
    def sub_url(self) -> str | None: ...
    @property
    def file(self) -> Path | None: ...
    @property
    def rtsp_transport(self) -> Literal["tcp", "udp"]: ...
    @property
    def detect_fps(self) -> float: ...
    @property
    def detect_width(self) -> int: ...
    @property
    def detect_height(self) -> int | None: ...


class CameraStatus(BaseModel):
    """A camera's health for telemetry and the birth message (no URLs, no credentials)."""

    name: str
    state: Literal["online", "offline", "connecting", "disabled"]
    last_error: str | None = None
    fps: float | None = None
    last_frame_ts: float | None = None
    reconnects: int = 0
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    sub_state: Literal["online", "offline", "connecting", "disabled"] | None = None
    capabilities: dict[str, Any] = Field(default_factory=dict, description="sub_stream, source (rtsp|file).")


class UnknownCamera(KeyError):
    """No camera with that name is configured."""


def _public_state(state: CameraState) -> Literal["online", "offline", "connecting", "disabled"]:
    return "offline" if state == CameraState.STOPPED else state.value  # type: ignore[return-value]


class CameraRuntime:
    """One camera: its packet fan-out(s), readers and frame samplers."""

    def __init__(
        self,
        settings: CameraSettingsLike,
        on_state: Callable[[CameraStatus], None] | None = None,
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._on_state = on_state
        self.main = PacketFanout(settings.name)
        """Main-stream packets (H.264 passthrough) for viewers and the recorder."""
        self.sub: PacketFanout | None = None
        """Sub-stream packets when the camera has a sub-stream URL (detection decodes these)."""
        common = {
            "transport": settings.rtsp_transport,
            "open_timeout": open_timeout,
            "read_timeout": read_timeout,
            "on_state": self._source_changed,
        }
        if settings.file is not None:
            self._main_src = PacketSource(settings.name, self.main, file=settings.file, **common)  # type: ignore[arg-type]
        else:
            self._main_src = PacketSource(settings.name, self.main, url=settings.main_url, **common)  # type: ignore[arg-type]
        self._sub_src: PacketSource | None = None
        if settings.sub_url and settings.file is None:
            self.sub = PacketFanout(f"{settings.name}/sub")
            self._sub_src = PacketSource(f"{settings.name}/sub", self.sub, url=settings.sub_url, **common)  # type: ignore[arg-type]

    @property
    def detect_fanout(self) -> PacketFanout:
        """The stream detection decodes: the sub-stream if configured, else the main stream."""
        return self.sub if self.sub is not None else self.main

    def frames(
        self, fps: float | None = None, *, width: int | None = None, height: int | None = None
    ) -> FrameSampler:
        """Decoded RGB frames at ``fps`` (default: the camera's detect_fps) and detect size.

        Returns an async iterator (one decoder per call; ``aclose()`` it when done). Decoding only
        happens while it is being consumed; a slow consumer gets the newest frame.
        """
        return FrameSampler(
            self.detect_fanout,
            fps=fps if fps is not None else self.settings.detect_fps,
            width=width if width is not None else self.settings.detect_width,
            height=height if height is not None else self.settings.detect_height,
        )

    def source_status(self) -> SourceStatus:
        return self._main_src.status()

    def status(self) -> CameraStatus:
        st = self._main_src.status()
        info = st.info
        return CameraStatus(
            name=self.name,
            state=_public_state(st.state),
            last_error=st.last_error,
            fps=st.fps,
            last_frame_ts=st.last_packet_ts,
            reconnects=st.reconnects,
            width=info.width if info else None,
            height=info.height if info else None,
            codec=info.codec if info else None,
            sub_state=_public_state(self._sub_src.status().state) if self._sub_src else None,
            capabilities={
                "sub_stream": self.sub is not None,
                "source": "file" if self.settings.file else "rtsp",
            },
        )

    def stats(self) -> dict[str, int | float | None]:
        """Counters for telemetry providers / metrics (no URLs)."""
        st = self._main_src.status()
        out: dict[str, int | float | None] = {
            "main_packets": self.main.packets,
            "main_bytes": self.main.bytes,
            "main_subscribers": self.main.subscribers,
            "main_generation": self.main.generation,
            "fps": st.fps,
        }
        if self.sub is not None:
            out |= {"sub_packets": self.sub.packets, "sub_subscribers": self.sub.subscribers}
        return out

    def _source_changed(self, _status: SourceStatus) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(self.status())
        except Exception:
            log.exception("camera state callback failed")

    async def start(self) -> None:
        await self._main_src.start()
        if self._sub_src is not None:
            await self._sub_src.start()

    async def stop(self, reason: str = "agent stopping") -> None:
        """Stop the readers; subscribers get CameraGone once their queues are drained."""
        sources = [s for s in (self._main_src, self._sub_src) if s is not None]
        await asyncio.gather(*(s.stop() for s in sources))
        self.main.close(reason)
        if self.sub is not None:
            self.sub.close(reason)


class CameraManager:
    """Starts, stops and looks up the device's cameras."""

    def __init__(
        self,
        cameras: Iterable[CameraSettingsLike],
        on_state: Callable[[CameraStatus], None] | None = None,
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ) -> None:
        self._runtimes: dict[str, CameraRuntime] = {}
        for cam in cameras:
            if cam.name in self._runtimes:
                raise ValueError(f"duplicate camera name {cam.name!r}")
            self._runtimes[cam.name] = CameraRuntime(
                cam, on_state, open_timeout=open_timeout, read_timeout=read_timeout
            )
        self._started = False

    async def start(self) -> None:
        """Connect every camera in the background (returns at once; watch on_state)."""
        if self._started:
            return
        self._started = True
        for rt in self._runtimes.values():
            await rt.start()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await asyncio.gather(*(rt.stop() for rt in self._runtimes.values()))

    def get(self, name: str) -> CameraRuntime:
        try:
            return self._runtimes[name]
        except KeyError:
            raise UnknownCamera(name) from None

    def runtimes(self) -> list[CameraRuntime]:
        return list(self._runtimes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._runtimes
