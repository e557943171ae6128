"""Fan-out of one camera's compressed packets to many async consumers, without copies.

The demuxer runs in a thread and calls :meth:`PacketFanout.publish`; each consumer (WebRTC viewer,
recorder, ...) holds a :class:`PacketSubscription`, an async iterator of the *same* ``av.Packet``
objects. Policy, chosen so one slow consumer can never hurt the camera or the others:

- the reader never blocks: publish() only appends to per-subscriber deques;
- a subscriber whose queue is full drops packets until the next keyframe (where its decoder can
  resume cleanly) and counts them in ``dropped``; the other subscribers lose nothing;
- the packets since the last keyframe are cached (the GOP cache) so a new subscriber starts on a
  keyframe at once instead of waiting up to a GOP for the camera's next IDR;
- a reconnect bumps ``generation`` and may bring a new :class:`StreamInfo`; subscribers keep
  iterating and see ``sub.generation``/``sub.info`` change with the first packet of the new
  connection (always a keyframe: the source drops what precedes the first keyframe);
- when the camera is gone for good (:meth:`PacketFanout.close`), iteration raises
  :class:`CameraGone` after the queued packets; a subscription closed by its owner just ends.

Packets are shared: treat them as read-only (to mux one, copy it, see :func:`clone_packet`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

__all__ = ["CameraGone", "PacketFanout", "PacketSubscription", "StreamInfo", "clone_packet"]


class CameraGone(Exception):
    """The camera was removed or the agent is stopping: no more packets will come."""

    def __init__(self, camera: str, reason: str = "closed") -> None:
        super().__init__(f"camera {camera!r} is gone: {reason}")
        self.camera = camera
        self.reason = reason


@dataclass(frozen=True)
class StreamInfo:
    """What a consumer needs to set up a decoder/muxer/packetizer for the stream."""

    codec: str
    width: int
    height: int
    time_base: Fraction
    fps: float | None
    extradata: bytes | None

    @classmethod
    def from_stream(cls, stream: Any) -> StreamInfo:
        """Build from a PyAV video stream (``container.streams.video[0]``)."""
        cc = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        tb = stream.time_base or Fraction(1, 90000)
        extradata = cc.extradata
        return cls(
            codec=cc.name,
            width=int(cc.width),
            height=int(cc.height),
            time_base=Fraction(tb),
            fps=float(rate) if rate else None,
            extradata=bytes(extradata) if extradata else None,
        )


def clone_packet(packet: av.Packet) -> av.Packet:
    """A private copy of a shared packet (payload, timing, keyframe flag) that may be mutated."""
    copy = av.Packet(bytes(packet))
    copy.pts = packet.pts
    copy.dts = packet.dts
    if packet.time_base is not None:
        copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy


# One queue entry: (generation, info, packet).
_Entry = tuple[int, StreamInfo | None, av.Packet]


class PacketSubscription:
    """Async iterator over a camera's packets; see the module docstring for the drop policy."""

    def __init__(self, fanout: PacketFanout, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self._fanout = fanout
        self._loop = loop
        self._lock = fanout._lock  # one lock for the fan-out: held for microseconds only
        self._queue: deque[_Entry] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._wake_pending = False
        self._closed = False
        self._gone: CameraGone | None = None
        self._skipping = False  # dropping until the next keyframe
        self._started = False  # waiting for the first keyframe is not a drop
        self.max_queue = max_queue
        self.dropped = 0
        """Packets this subscriber lost to backpressure (its queue was full)."""
        self.delivered = 0
        self.generation = -1
        """Connection generation of the packet last returned (changes after a reconnect)."""
        self.info: StreamInfo | None = None
        """StreamInfo of the packet last returned."""

    # -- producer side (reader thread, lock held) --------------------------------------------
    def _offer(self, entry: _Entry, *, count_drop: bool = True) -> None:
        packet = entry[2]
        count_drop = count_drop and self._started
        if self._skipping:
            if not packet.is_keyframe or len(self._queue) >= self.max_queue:
                if count_drop:
                    self.dropped += 1
                return
            self._skipping = False
        elif len(self._queue) >= self.max_queue:
            self._skipping = True
            if count_drop:
                self.dropped += 1
            return
        self._started = True
        self._queue.append(entry)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the consumer's loop is closed: nobody will read
                self._closed = True

    def _resolve(self) -> None:
        with self._lock:
            waiter, self._waiter = self._waiter, None
            self._wake_pending = False
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_gone(self, gone: CameraGone) -> None:
        self._gone = gone
        self._wake()

    # -- consumer side (event loop) ------------------------------------------------------------
    def __aiter__(self) -> PacketSubscription:
        return self

    async def __anext__(self) -> av.Packet:
        while True:
            with self._lock:
                if self._closed:
                    raise StopAsyncIteration
                if self._queue:
                    gen, info, packet = self._queue.popleft()
                    self.delivered += 1
                    if gen != self.generation:
                        self.generation, self.info = gen, info
                    return packet
                if self._gone is not None:
                    raise self._gone
                waiter = self._loop.create_future()
                self._waiter = waiter
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None
                raise

    def drain_nowait(self) -> list[tuple[int, StreamInfo | None, av.Packet]]:
        """Take every queued packet at once as (generation, info, packet), without waiting.

        For batch consumers (the frame sampler decodes a whole backlog in one thread hop).
        ``generation``/``info`` advance to those of the last entry returned.
        """
        with self._lock:
            entries = list(self._queue)
            self._queue.clear()
        if entries:
            self.delivered += len(entries)
            self.generation, self.info = entries[-1][0], entries[-1][1]
        return entries

    @property
    def qsize(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Unsubscribe; a pending or later ``__anext__`` ends the iteration."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._fanout._subs.discard(self)
            self._wake()

    async def __aenter__(self) -> PacketSubscription:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()


class PacketFanout:
    """Thread-safe publisher of one camera stream's packets to any number of subscriptions."""

    def __init__(self, name: str, *, gop_cache_max_packets: int = 1024) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._subs: set[PacketSubscription] = set()
        self._gop: list[_Entry] = []
        self._gop_valid = False  # False until a keyframe is seen (or after an overflow)
        self._gop_max = gop_cache_max_packets
        self._gone: CameraGone | None = None
        self._listeners: list[Callable[[StreamInfo, int], None]] = []
        self.info: StreamInfo | None = None
        """StreamInfo of the current (or last) connection; None before the first one."""
        self.generation = 0
        """Bumped by every :meth:`set_info` (i.e. on each (re)connection)."""
        self.packets = 0
        self.bytes = 0

    @property
    def closed(self) -> bool:
        return self._gone is not None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def on_info_changed(self, callback: Callable[[StreamInfo, int], None]) -> None:
        """Call ``callback(info, generation)`` (from the reader thread) on every new connection."""
        self._listeners.append(callback)

    def set_info(self, info: StreamInfo) -> None:
        """Start a new generation (a fresh connection); the GOP cache of the old one is dropped."""
        with self._lock:
            self.generation += 1
            self.info = info
            self._gop.clear()
            self._gop_valid = False
            gen = self.generation
        for cb in list(self._listeners):
            cb(info, gen)

    def publish(self, packet: av.Packet) -> None:
        """Hand one packet to every subscriber. Never blocks; callable from any thread."""
        with self._lock:
            if self._gone is not None:
                return
            entry: _Entry = (self.generation, self.info, packet)
            self.packets += 1
            self.bytes += packet.size
            if packet.is_keyframe:
                self._gop.clear()
                self._gop_valid = True
            if self._gop_valid:
                if len(self._gop) < self._gop_max:
                    self._gop.append(entry)
                else:  # absurd GOP: stop caching, new subscribers wait for a keyframe
                    self._gop.clear()
                    self._gop_valid = False
            for sub in self._subs:
                sub._offer(entry)

    def subscribe(self, *, from_gop: bool = True, max_queue: int = 256) -> PacketSubscription:
        """Subscribe from the event loop that will consume.

        ``from_gop=True`` starts with the cached packets since the last keyframe (a decoder can
        start at once); ``from_gop=False`` starts at the next keyframe. ``max_queue`` packets may
        wait before the subscriber starts dropping until the next keyframe.
        """
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        sub = PacketSubscription(self, asyncio.get_running_loop(), max_queue)
        with self._lock:
            if self._gone is not None:
                sub._gone = self._gone
                return sub
            sub._skipping = True  # only start on a keyframe
            if from_gop and self._gop_valid:
                for entry in self._gop:
                    sub._offer(entry, count_drop=False)
            self._subs.add(sub)
        return sub

    def close(self, reason: str = "camera removed") -> None:
        """The camera is gone for good: subscribers drain their queues, then get CameraGone."""
        with self._lock:
            if self._gone is not None:
                return
            self._gone = CameraGone(self.name, reason)
            self._gop.clear()
            for sub in self._subs:
                sub._set_gone(self._gone)
            self._subs.clear()
