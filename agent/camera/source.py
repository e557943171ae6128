"""PyAV reader for one camera stream (RTSP or a looped file) feeding a PacketFanout.

The demuxer blocks, so it runs in its own thread; the event loop only receives state changes
(via ``call_soon_threadsafe``). RTSP is opened with TCP by default and with PyAV's
``timeout=(open, read)`` plus FFmpeg's socket ``timeout`` option, so a dead camera is noticed
within ``read_timeout`` seconds. After any failure or end of stream the reader reconnects with
exponential backoff and full jitter (thousands of boxes must not reconnect in lock-step).

Files are looped and paced at real time, with timestamps shifted on every loop so they stay
monotonic, like a camera that never ends. Each connection starts on a keyframe: packets before
the first keyframe are dropped, so every consumer can start decoding at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av

from agent.camera.fanout import PacketFanout, StreamInfo
from agent.redact import redact_url

__all__ = [
    "Backoff",
    "CameraSourceError",
    "CameraState",
    "PacketSource",
    "SourceStatus",
    "redact_url",
]

log = logging.getLogger(__name__)


class CameraState(str, Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"


class CameraSourceError(ValueError):
    """Invalid source configuration (detected before any connection attempt)."""


@dataclass(frozen=True)
class SourceStatus:
    """Snapshot of a source; ``last_error`` never contains credentials."""

    name: str
    state: CameraState
    last_error: str | None
    reconnects: int
    fps: float | None
    last_packet_ts: float | None
    info: StreamInfo | None
    packets: int


class Backoff:
    """Exponential backoff with full jitter: delay = uniform(0, min(cap, base * 2**attempt))."""

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng() * ceiling

    def reset(self) -> None:
        self.attempt = 0


class _StreamEnded(Exception):
    pass


class PacketSource:
    """Reads one stream in a thread and publishes its packets to ``fanout``."""

    def __init__(
        self,
        name: str,
        fanout: PacketFanout,
        *,
        url: str | None = None,
        file: Path | None = None,
        transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        backoff: Backoff | None = None,
        on_state: Callable[[SourceStatus], None] | None = None,
        realtime: bool = True,
        ffmpeg_options: dict[str, str] | None = None,
    ) -> None:
        if (url is None) == (file is None):
            raise CameraSourceError(f"camera {name!r}: give exactly one of url or file")
        if url is not None and urlsplit(url).scheme not in ("rtsp", "rtsps"):
            raise CameraSourceError(
                f"camera {name!r}: url must be rtsp:// or rtsps://, got {redact_url(url)!r}"
            )
        if file is not None and not Path(file).is_file():
            raise CameraSourceError(f"camera {name!r}: file {file} does not exist")
        if transport not in ("tcp", "udp"):
            raise CameraSourceError(f"camera {name!r}: rtsp_transport must be tcp or udp, got {transport!r}")
        self.name = name
        self.fanout = fanout
        self.url = url
        self.file = Path(file) if file is not None else None
        self.display = redact_url(url) if url else str(file)
        self.transport = transport
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.backoff = backoff or Backoff()
        self.realtime = realtime
        self._ffmpeg_options = dict(ffmpeg_options or {})
        self._on_state = on_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = CameraState.STOPPED
        self._last_error: str | None = None
        self._reconnects = 0
        self._last_packet_ts: float | None = None
        self._arrivals: deque[float] = deque(maxlen=64)
        self._packets = 0

    # -- public API (event loop) ---------------------------------------------------------------
    async def start(self) -> None:
        """Start reading in a background thread; returns at once (state goes to connecting)."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the reader; waits (off the loop) at most about ``read_timeout`` for the thread.

        A thread stuck in a blocking FFmpeg call past that is left to finish on its own (it is a
        daemon, checks the stop flag after every call, and publishes nothing once stopped)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.to_thread(thread.join, self.read_timeout + 0.5)
        self._set_state(CameraState.STOPPED)

    def status(self) -> SourceStatus:
        return SourceStatus(
            name=self.name,
            state=self._state,
            last_error=self._last_error,
            reconnects=self._reconnects,
            fps=self._measured_fps(),
            last_packet_ts=self._last_packet_ts,
            info=self.fanout.info,
            packets=self._packets,
        )

    # -- reader thread -------------------------------------------------------------------------
    def _measured_fps(self) -> float | None:
        arrivals = list(self._arrivals)
        if len(arrivals) < 2 or time.monotonic() - arrivals[-1] > max(2.0, self.read_timeout):
            return None if self._state != CameraState.ONLINE else 0.0
        span = arrivals[-1] - arrivals[0]
        return round((len(arrivals) - 1) / span, 2) if span > 0 else None

    def _set_state(self, state: CameraState, error: str | None = None) -> None:
        changed = state != self._state or (error is not None and error != self._last_error)
        self._state = state
        if error is not None:
            self._last_error = error
        elif state == CameraState.ONLINE:
            self._last_error = None  # an online camera reports no stale error
        if not changed:
            return
        if state == CameraState.OFFLINE:
            log.warning("camera %s offline: %s", self.name, error)
        else:
            log.info("camera %s %s", self.name, state.value)
        cb, loop = self._on_state, self._loop
        if cb is None or loop is None:
            return
        try:
            loop.call_soon_threadsafe(cb, self.status())
        except RuntimeError:  # loop closed during shutdown
            pass

    def _sanitize(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self.url:
            text = text.replace(self.url, self.display)
        return text

    def _open(self) -> Any:
        if self.file is not None:
            return av.open(str(self.file), timeout=(self.open_timeout, self.read_timeout))
        assert self.url is not None
        options = {
            "rtsp_transport": self.transport,
            "timeout": str(int(self.read_timeout * 1_000_000)),  # socket I/O timeout, microseconds
            "analyzeduration": "1000000",  # probe 1 s, not 5: first packets sooner
            **self._ffmpeg_options,
        }
        return av.open(self.url, options=options, timeout=(self.open_timeout, self.read_timeout))

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                self._reconnects += 1
            first = False
            self._set_state(CameraState.CONNECTING)
            error = "stream ended"
            container = None
            try:
                container = self._open()
                if self._stop.is_set():
                    break
                if not container.streams.video:
                    raise _StreamEnded("no video stream")
                stream = container.streams.video[0]
                self.fanout.set_info(StreamInfo.from_stream(stream))
                self._pump(container, stream)
            except _StreamEnded as exc:
                error = str(exc)
            except Exception as exc:  # FFmpeg/network errors of any kind: report and retry
                error = self._sanitize(exc)
            finally:
                if container is not None:
                    try:
                        container.close()
                    except Exception:  # noqa: S110 - closing a broken connection
                        pass
            if self._stop.is_set():
                break
            self._set_state(CameraState.OFFLINE, error)
            self._stop.wait(self.backoff.next_delay())

    def _pump(self, container: Any, stream: Any) -> None:
        """Publish packets until the stream ends, an error, or stop. Files loop forever."""
        tb = stream.time_base
        started = False
        offset = 0  # added to file timestamps on each loop, keeps them monotonic
        next_offset = 0
        t0_wall: float | None = None
        t0_pts = 0
        while not self._stop.is_set():
            got_any = False
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if packet.size == 0 or packet.pts is None:
                    continue
                got_any = True
                if not started:
                    if not packet.is_keyframe:
                        continue
                    started = True
                    self.backoff.reset()
                    self._set_state(CameraState.ONLINE)
                if self.file is not None:
                    packet.pts += offset
                    if packet.dts is not None:
                        packet.dts += offset
                    end = packet.pts + (packet.duration or 0)
                    next_offset = max(next_offset, end)
                    if self.realtime:
                        if t0_wall is None:
                            t0_wall, t0_pts = time.monotonic(), packet.pts
                        due = t0_wall + float((packet.pts - t0_pts) * tb)
                        delay = due - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            return
                now = time.time()
                packet.opaque = now  # arrival wall clock, carried to decoded frames
                self._last_packet_ts = now
                self._arrivals.append(time.monotonic())
                self._packets += 1
                self.fanout.publish(packet)
            if self.file is None:
                raise _StreamEnded("camera closed the stream")
            if not got_any:
                raise _StreamEnded("file has no packets")
            offset = next_offset
            container.seek(0, stream=stream)
