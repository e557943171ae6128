"""A WebRTC video track that forwards the camera's H.264 packets without decoding or encoding.

aiortc's sender calls ``recv()``; when it returns an ``av.Packet`` instead of a frame, the sender
only packetizes it (``H264Encoder.pack``: split into NAL units, STAP-A / FU-A), never encodes.
The packets come from the camera's fan-out and are shared with other consumers, so they are
read, never modified: the track builds a new packet only for the RTP payload it needs (Annex B,
SPS/PPS in front of each keyframe, a continuous 90 kHz clock across camera reconnects).
"""

from __future__ import annotations

import time
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from agent.camera.fanout import CameraGone, PacketSubscription, StreamInfo
from agent.stream.h264 import Bitstream, avcc_to_annexb, has_parameter_sets, parse_extradata

RTP_CLOCK = 90000
RTP_TIME_BASE = Fraction(1, RTP_CLOCK)


class PassthroughTrack(MediaStreamTrack):
    """Camera packets -> aiortc sender, counting what was forwarded."""

    kind = "video"

    def __init__(self, subscription: PacketSubscription, camera: str) -> None:
        super().__init__()
        self._sub = subscription
        self.camera = camera
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.parameter_sets_added = 0
        self.first_packet_at: float | None = None
        self.end_reason: str | None = None
        """Why the track ended on its own (camera removed, agent stopping)."""
        self._info: StreamInfo | None = None
        self._bitstream = Bitstream(0, b"")
        self._generation = -1
        self._gen_first_pts: int | None = None
        self._offset = 0
        self._last_out = 0
        self._frame_ticks = RTP_CLOCK // 25

    @property
    def generation(self) -> int:
        """Camera connection of the last packet forwarded (grows when the camera reconnects)."""
        return self._generation

    @property
    def dropped(self) -> int:
        """Packets this viewer lost to backpressure (it resumes at the next keyframe)."""
        return self._sub.dropped

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            packet = await self._sub.__anext__()
        except CameraGone as gone:
            self.end_reason = f"camera gone: {gone.reason}"
            self.stop()
            raise MediaStreamError from gone
        except StopAsyncIteration as closed:
            self.stop()
            raise MediaStreamError from closed
        return self._forward(packet)

    def _forward(self, packet: av.Packet) -> av.Packet:
        if self._sub.info is not self._info:
            self._info = self._sub.info
            self._bitstream = parse_extradata(self._info.extradata if self._info else None)
            if self._info is not None and self._info.fps:
                self._frame_ticks = max(1, round(RTP_CLOCK / self._info.fps))
        data = bytes(packet)
        if self._bitstream.length_size:
            data = avcc_to_annexb(data, self._bitstream.length_size)
        if packet.is_keyframe:
            self.keyframes += 1
            if self._bitstream.parameter_sets and not has_parameter_sets(data):
                data = self._bitstream.parameter_sets + data
                self.parameter_sets_added += 1
        out = av.Packet(data)
        out.pts = self._timestamp(packet)
        out.time_base = RTP_TIME_BASE
        out.is_keyframe = packet.is_keyframe
        self.packets += 1
        self.bytes += len(data)
        if self.first_packet_at is None:
            self.first_packet_at = time.monotonic()
        return out

    def _timestamp(self, packet: av.Packet) -> int:
        """90 kHz presentation time that never jumps back, even when a reconnect resets the camera's."""
        if self._sub.generation != self._generation:
            self._generation = self._sub.generation
            self._gen_first_pts = None
            if self.packets:
                self._offset = self._last_out + self._frame_ticks
        if packet.pts is None or packet.time_base is None:
            self._last_out += self._frame_ticks
            return self._last_out
        pts = int(packet.pts * packet.time_base * RTP_CLOCK)
        if self._gen_first_pts is None:
            self._gen_first_pts = pts
        self._last_out = self._offset + pts - self._gen_first_pts
        return self._last_out

    def stop(self) -> None:
        super().stop()
        self._sub.close()
