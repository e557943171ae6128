"""PacketSource against the real RTSP simulator (GStreamer) and real PyAV."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from agent.camera.fanout import PacketFanout
from agent.camera.source import (
    Backoff,
    CameraSourceError,
    CameraState,
    PacketSource,
    SourceStatus,
    redact_url,
)
from tests.fixtures.camera import SAMPLES, RtspCamera

FAST_RETRY = Backoff(base=0.2, cap=1.0)


async def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def take(sub, n: int, timeout: float = 20.0) -> list[av.Packet]:
    async def run() -> list[av.Packet]:
        out = []
        async for p in sub:
            out.append(p)
            if len(out) >= n:
                return out
        return out

    return await asyncio.wait_for(run(), timeout)


def annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex B access unit (start codes 00 00 01 / 00 00 00 01)."""
    nals, i, start = [], 0, None
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if start is not None:
            nals.append(data[start:j].rstrip(b"\x00"))
        start = i = j + 3
    if start is not None:
        nals.append(data[start:])
    return [n for n in nals if n]


def avcc_nals(data: bytes) -> list[bytes]:
    """NAL units of an MP4 (length-prefixed) access unit."""
    nals, i = [], 0
    while i + 4 <= len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        nals.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return nals


def slices(nals: list[bytes]) -> tuple[bytes, ...]:
    return tuple(n for n in nals if n[0] & 0x1F in (1, 5))  # coded slices (non-IDR, IDR)


def file_slices(path: Path) -> list[tuple[bytes, ...]]:
    with av.open(str(path)) as c:
        return [slices(avcc_nals(bytes(p))) for p in c.demux(video=0) if p.size]


def source(name: str, url: str, fanout: PacketFanout, states: list[SourceStatus] | None = None, **kw):
    kw.setdefault("backoff", Backoff(base=0.2, cap=1.0))
    kw.setdefault("read_timeout", 3.0)
    return PacketSource(name, fanout, url=url, on_state=states.append if states is not None else None, **kw)


async def test_rtsp_packets_are_h264_passthrough(rtsp_camera_shared: RtspCamera) -> None:
    fanout = PacketFanout("cam")
    src = source("cam", rtsp_camera_shared.url("street"), fanout)
    sub = fanout.subscribe()
    await src.start()
    try:
        got = await take(sub, 260)  # > 10 s at 25 fps: crosses the simulator's loop point
    finally:
        await src.stop()
    info = fanout.info
    assert info is not None and (info.codec, info.width, info.height) == ("h264", 640, 272)
    assert got[0].is_keyframe
    reference = file_slices(SAMPLES / "street.mp4")
    received = [slices(annexb_nals(bytes(p))) for p in got]
    start = reference.index(received[0])
    expected = [reference[(start + k) % len(reference)] for k in range(len(received))]
    # Byte-identical coded slices in file order, across the loop: nothing was re-encoded.
    assert received == expected
    assert all(b.pts > a.pts for a, b in itertools.pairwise(got))


async def test_concurrent_clients_tcp_and_udp_share_one_live_stream(rtsp_camera_shared: RtspCamera) -> None:
    url = rtsp_camera_shared.url("street_sub")
    fanouts = [PacketFanout(f"c{i}") for i in range(3)]
    subs = [f.subscribe() for f in fanouts]
    srcs = [
        source("c0", url, fanouts[0]),
        source("c1", url, fanouts[1], transport="udp"),
    ]
    for s in srcs:
        await s.start()
    try:
        first = await take(subs[0], 30)
        late = source("c2", url, fanouts[2])
        srcs.append(late)
        await late.start()  # its PLAY must not rewind the stream for the others
        rest = await take(subs[0], 50)
        udp = await take(subs[1], 50)
        third = await take(subs[2], 30)
    finally:
        await asyncio.gather(*(s.stop() for s in srcs))
    pts = [p.pts for p in first + rest]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert len(udp) == 50 and udp[0].is_keyframe
    assert third[0].is_keyframe


async def test_drop_goes_offline_and_recovers_on_same_port(rtsp_camera: RtspCamera) -> None:
    fanout = PacketFanout("cam")
    states: list[SourceStatus] = []
    src = source("cam", rtsp_camera.url("street_sub"), fanout, states)
    sub = fanout.subscribe()
    await src.start()
    try:
        await take(sub, 10)
        assert src.status().state == CameraState.ONLINE
        assert fanout.generation == 1

        rtsp_camera.stop()
        await wait_until(lambda: any(s.state == CameraState.OFFLINE for s in states), 10, "offline")
        assert all(s.last_error for s in states if s.state == CameraState.OFFLINE)

        rtsp_camera.start()  # same port, same URL
        await wait_until(lambda: src.status().state == CameraState.ONLINE, 20, "online again")

        # The same subscription continues: first the old connection's leftovers, then the new one.
        async def first_of_new_generation() -> av.Packet:
            async for p in sub:
                if sub.generation >= 2:
                    return p
            raise AssertionError("subscription ended")

        first_new = await asyncio.wait_for(first_of_new_generation(), 10)
        more = await take(sub, 10)
    finally:
        await src.stop()
    await asyncio.sleep(0.05)  # state callbacks run on the loop
    assert sub.generation == fanout.generation >= 2
    assert first_new.is_keyframe and len(more) == 10
    status = src.status()
    assert status.reconnects >= 1 and status.last_error is None
    assert [s.state for s in states][:2] == [CameraState.CONNECTING, CameraState.ONLINE]
    assert states[-1].state == CameraState.STOPPED


async def test_hung_camera_is_noticed_by_read_timeout(rtsp_camera: RtspCamera) -> None:
    fanout = PacketFanout("cam")
    src = source("cam", rtsp_camera.url("street_sub"), fanout, read_timeout=1.5, open_timeout=1.5)
    sub = fanout.subscribe()
    await src.start()
    try:
        await take(sub, 5)
        rtsp_camera.pause()  # TCP stays up, no data: only a timeout can tell
        await wait_until(lambda: src.status().state == CameraState.OFFLINE, 10, "offline on timeout")
        rtsp_camera.resume()
        await wait_until(lambda: src.status().state == CameraState.ONLINE, 20, "online after resume")
        await take(sub, 5)
    finally:
        rtsp_camera.resume()
        await src.stop()


async def test_bad_url_reports_clear_error_without_leaking_password(rtsp_camera_shared: RtspCamera) -> None:
    states: list[SourceStatus] = []
    missing = source(
        "nomount",
        f"rtsp://admin:s3cret@127.0.0.1:{rtsp_camera_shared.port}/no-such-stream",
        PacketFanout("x"),
        states,
    )
    await missing.start()
    try:
        await wait_until(lambda: missing.status().reconnects >= 2, 15, "retries")
    finally:
        await missing.stop()
    await asyncio.sleep(0.05)
    st = missing.status()
    assert st.state == CameraState.STOPPED
    assert st.last_error and "404" in st.last_error
    assert all("s3cret" not in (s.last_error or "") for s in states)
    assert "s3cret" not in st.last_error
    assert any(s.state == CameraState.OFFLINE for s in states)


async def test_refused_connection_is_offline_and_retried() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = source("dead", f"rtsp://127.0.0.1:{port}/main", PacketFanout("dead"))
    await src.start()
    try:
        await wait_until(lambda: src.status().reconnects >= 2, 15, "retries")
        st = src.status()
        assert st.state in (CameraState.OFFLINE, CameraState.CONNECTING)
        assert st.last_error and "refused" in st.last_error.lower()
        assert st.fps is None and st.last_packet_ts is None
    finally:
        await src.stop()


def test_invalid_configuration_is_a_typed_error(tmp_path: Path) -> None:
    f = PacketFanout("x")
    with pytest.raises(CameraSourceError, match="exactly one"):
        PacketSource("x", f)
    with pytest.raises(CameraSourceError, match="rtsp"):
        PacketSource("x", f, url="http://user:pw@cam/stream")
    with pytest.raises(CameraSourceError) as err:
        PacketSource("x", f, url="http://user:pw@cam/stream")
    assert "pw" not in str(err.value)
    with pytest.raises(CameraSourceError, match="does not exist"):
        PacketSource("x", f, file=tmp_path / "nope.mp4")
    with pytest.raises(CameraSourceError, match="tcp or udp"):
        PacketSource("x", f, url="rtsp://cam/stream", transport="http")


async def test_file_source_loops_with_monotonic_timestamps() -> None:
    fanout = PacketFanout("file")
    src = PacketSource("file", fanout, file=SAMPLES / "street_sub.mp4", realtime=False)
    sub = fanout.subscribe(max_queue=1000)
    await src.start()
    try:
        got = await take(sub, 600)  # 250 packets per loop
    finally:
        await src.stop()
    pts = [p.pts for p in got]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert got[0].is_keyframe and got[250].is_keyframe and got[500].is_keyframe
    assert bytes(got[3]) == bytes(got[253])  # the same clip again
    assert src.status().state == CameraState.STOPPED


def test_backoff_full_jitter_bounds() -> None:
    draws = iter([1.0] * 10)
    b = Backoff(base=0.5, cap=4.0, rng=lambda: next(draws))
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    real = Backoff(base=1.0, cap=30.0)
    delays = [real.next_delay() for _ in range(50)]
    assert all(0 <= d <= 30 for d in delays) and len(set(delays)) > 40
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_redact_url() -> None:
    assert redact_url("rtsp://admin:pw@10.0.0.5:554/s1") == "rtsp://***@10.0.0.5:554/s1"
    assert redact_url("rtsp://10.0.0.5/s1") == "rtsp://10.0.0.5/s1"
