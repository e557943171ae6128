"""Decoded frames for detection: reduced rate and size, decoded only while someone consumes.

A :class:`FrameSampler` subscribes to a :class:`PacketFanout` (the sub-stream when the camera has
one: decoding 384x288 costs a fraction of 1080p) and is itself the async iterator of
:class:`Frame`. It is *pull-driven*: nothing is decoded while the consumer is busy; when it asks
for the next frame, the whole packet backlog is decoded in one worker-thread hop and only the
newest sampled frame is converted to RGB (``reformat(...).to_ndarray()``: the one copy that
detection needs). Older sampled frames are counted in ``skipped``; a slow detector therefore
never builds a backlog, and a very slow one makes the subscription drop to the next keyframe.

Keyframe-only decoding: when the requested period is at least the measured keyframe interval
(e.g. 1 fps with a 1 s GOP), non-key packets are not even handed to the decoder (stronger than
``skip_frame="NONKEY"``, which still parses them); a closed-GOP IDR decodes on its own. The mode
is chosen automatically from the keyframe interval seen in the stream and re-evaluated at every
keyframe, so the decoder never starts mid-GOP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from agent.camera.fanout import PacketFanout, StreamInfo

__all__ = ["Frame", "FrameSampler", "output_size"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One sampled frame. ``ts`` is the wall clock when its packet arrived from the camera."""

    image: np.ndarray  # H x W x 3, uint8, RGB
    ts: float
    pts_s: float
    index: int  # sample number in this stream; gaps are frames skipped for a slow consumer
    width: int
    height: int
    source_width: int
    source_height: int


def output_size(src_w: int, src_h: int, width: int, height: int | None) -> tuple[int, int]:
    """Target size; ``height=None`` keeps the aspect ratio (rounded to an even number)."""
    if width < 2 or (height is not None and height < 2):
        raise ValueError("detect width/height must be >= 2")
    if height is None:
        height = max(2, round(width * src_h / src_w / 2) * 2)
    return width, height


class _Decoder:
    """Decoder state; used by one worker thread at a time (calls are awaited in sequence)."""

    def __init__(self, fps: float | None, width: int, height: int | None, keyframe_only: bool | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.width = width
        self.height = height
        self.force_keyframe_only = keyframe_only
        self.keyframe_only = bool(keyframe_only)
        self.generation = -1
        self.ctx: Any = None
        self.time_base = Fraction(1, 90000)
        self.next_t: float | None = None
        self.last_key_s: float | None = None
        self.last_frame_s: float | None = None
        self.frame_interval = 0.0  # stream-time gap between the last two decoded frames
        self.samples = 0
        self.decoded = 0
        self.errors = 0

    def _reset(self, info: StreamInfo | None, generation: int) -> None:
        self.generation = generation
        self.ctx = av.CodecContext.create(info.codec if info else "h264", "r")
        if info is not None:
            if info.extradata:
                self.ctx.extradata = info.extradata
            self.time_base = info.time_base
        self.ctx.thread_count = 1  # tiny frames; leave the cores to detection
        self.ctx.copy_opaque = True  # packet.opaque (arrival time) -> frame.opaque
        self.next_t = None
        self.last_key_s = None
        self.last_frame_s = None

    def _on_keyframe(self, pts_s: float) -> None:
        if self.last_key_s is not None and self.force_keyframe_only is None and pts_s > self.last_key_s:
            interval = pts_s - self.last_key_s
            self.keyframe_only = self.period > 0 and self.period >= interval * 0.95
        self.last_key_s = pts_s

    def _take(self, pts_s: float) -> bool:
        """Rate limiter on stream time. A frame up to half a frame interval early counts as on
        time: camera timestamps jitter, and a strict comparison would skip a whole interval."""
        if self.last_frame_s is not None and pts_s > self.last_frame_s:
            self.frame_interval = pts_s - self.last_frame_s
        self.last_frame_s = pts_s
        if self.period <= 0:
            return True
        slack = min(self.frame_interval, self.period) / 2
        if self.next_t is None or pts_s + slack >= self.next_t:
            base = self.next_t if self.next_t is not None else pts_s
            self.next_t = base + self.period
            if self.next_t <= pts_s:  # after a gap: restart the schedule from here
                self.next_t = pts_s + self.period
            return True
        return False

    def process(self, entries: list[tuple[int, StreamInfo | None, av.Packet]]) -> tuple[Frame | None, int]:
        """Decode a batch; return the newest sampled frame (converted) and how many were sampled."""
        newest: Any = None
        newest_pts = 0.0
        sampled = 0
        for generation, info, packet in entries:
            if generation != self.generation:
                self._reset(info, generation)
            pts_s = float(packet.pts * self.time_base) if packet.pts is not None else 0.0
            if packet.is_keyframe:
                self._on_keyframe(pts_s)
            elif self.keyframe_only:
                continue
            try:
                frames = self.ctx.decode(packet)
            except av.FFmpegError as exc:  # corrupt packet: skip it, the next IDR resyncs
                self.errors += 1
                log.debug("decode error: %s", exc)
                continue
            for frame in frames:
                self.decoded += 1
                f_pts = float(frame.pts * self.time_base) if frame.pts is not None else pts_s
                if self._take(f_pts):
                    sampled += 1
                    newest, newest_pts = frame, f_pts
        if newest is None:
            return None, 0
        w, h = output_size(newest.width, newest.height, self.width, self.height)
        image = newest.reformat(width=w, height=h, format="rgb24").to_ndarray()
        ts = newest.opaque if isinstance(newest.opaque, float) else time.time()  # arrival, else now
        self.samples += sampled
        frame_out = Frame(
            image=image,
            ts=ts,
            pts_s=newest_pts,
            index=self.samples - 1,
            width=w,
            height=h,
            source_width=newest.width,
            source_height=newest.height,
        )
        return frame_out, sampled


class FrameSampler:
    """Async iterator of :class:`Frame` from one stream; one sampler per consumer.

    ``fps=None`` yields every decoded frame (still newest-only for a slow consumer).
    ``keyframe_only``: None = automatic (see module docstring), True/False to force.
    Iteration raises :class:`~agent.camera.fanout.CameraGone` when the camera is removed.
    """

    def __init__(
        self,
        fanout: PacketFanout,
        *,
        fps: float | None = 5.0,
        width: int = 416,
        height: int | None = None,
        keyframe_only: bool | None = None,
        max_queue: int = 256,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError("fps must be > 0 (or None for every frame)")
        output_size(16, 9, width, height)  # validates
        self.fanout = fanout
        self.max_queue = max_queue
        self.skipped = 0
        """Sampled frames never delivered because a newer one was ready (slow consumer)."""
        self._decoder = _Decoder(fps, width, height, keyframe_only)
        self._gen: AsyncIterator[Frame] | None = None

    @property
    def keyframe_only(self) -> bool:
        return self._decoder.keyframe_only

    @property
    def decoded(self) -> int:
        return self._decoder.decoded

    def __aiter__(self) -> FrameSampler:
        return self

    async def __anext__(self) -> Frame:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop consuming (unsubscribes from the packets)."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    async def _run(self) -> AsyncIterator[Frame]:
        sub = self.fanout.subscribe(from_gop=True, max_queue=self.max_queue)
        try:
            async for packet in sub:
                entries = [(sub.generation, sub.info, packet), *sub.drain_nowait()]
                frame, sampled = await asyncio.to_thread(self._decoder.process, entries)
                if frame is not None:
                    self.skipped += sampled - 1
                    yield frame
        finally:
            sub.close()
