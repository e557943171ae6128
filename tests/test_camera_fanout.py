"""PacketFanout: backpressure, GOP cache, reconnect generations, end of camera (real av.Packet)."""

from __future__ import annotations

import asyncio
import itertools
import threading
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.camera.fanout import CameraGone, PacketFanout, StreamInfo, clone_packet

GOP = 10
INFO = StreamInfo("h264", 640, 272, Fraction(1, 90000), 25.0, None)


def make_packet(i: int) -> av.Packet:
    """Packet i of a stream with a keyframe every GOP packets; the payload carries its number."""
    p = av.Packet(i.to_bytes(4, "big") * 8)
    p.pts = p.dts = i * 3600
    p.time_base = Fraction(1, 90000)
    p.is_keyframe = i % GOP == 0
    return p


def number(p: av.Packet) -> int:
    return int.from_bytes(bytes(p)[:4], "big")


def drained(sub) -> list[int]:
    return [number(entry[2]) for entry in sub.drain_nowait()]


async def collect(sub, n: int, delay: float = 0.0) -> list[int]:
    out: list[int] = []
    async for p in sub:
        out.append(number(p))
        if delay:
            await asyncio.sleep(delay)
        if len(out) >= n:
            break
    return out


def publish_from_thread(fanout: PacketFanout, packets: list[av.Packet]) -> threading.Thread:
    t = threading.Thread(target=lambda: [fanout.publish(p) for p in packets])
    t.start()
    return t


async def test_slow_subscriber_drops_to_keyframe_others_lose_nothing() -> None:
    fanout = PacketFanout("cam")
    fanout.set_info(INFO)
    fast1 = fanout.subscribe(max_queue=1000)
    fast2 = fanout.subscribe(max_queue=1000)
    slow = fanout.subscribe(max_queue=15)
    packets = [make_packet(i) for i in range(200)]
    # The slow consumer reads nothing while the reader thread publishes everything.
    publish_from_thread(fanout, packets).join()
    got1, got2 = await asyncio.gather(collect(fast1, 200), collect(fast2, 200))
    assert got1 == list(range(200))
    assert got2 == list(range(200))
    got_slow = drained(slow)
    # It kept what fit (0..14), then dropped everything after: the reader never waited for it.
    assert got_slow == list(range(15))
    assert slow.dropped == 200 - 15
    # Once it catches up it resumes exactly at the next keyframe, never mid-GOP.
    fanout.publish(make_packet(201))
    fanout.publish(make_packet(205))
    fanout.publish(make_packet(210))
    fanout.publish(make_packet(211))
    assert drained(slow) == [210, 211]
    assert slow.dropped == 200 - 15 + 2


async def test_shared_packet_objects_no_copies() -> None:
    fanout = PacketFanout("cam")
    a, b = fanout.subscribe(), fanout.subscribe()
    p = make_packet(0)
    fanout.publish(p)
    assert await a.__anext__() is p
    assert await b.__anext__() is p


async def test_gop_cache_starts_new_subscriber_on_keyframe() -> None:
    fanout = PacketFanout("cam")
    fanout.set_info(INFO)
    for i in range(3, 27):  # starts mid-GOP; last keyframe is 20
        fanout.publish(make_packet(i))
    late = fanout.subscribe()
    assert drained(late) == list(range(20, 27))
    live = fanout.subscribe(from_gop=False)
    for i in range(27, 30):
        fanout.publish(make_packet(i))
    assert drained(live) == []  # waits for the next keyframe
    assert live.dropped == 0  # waiting for the first keyframe is not a loss
    fanout.publish(make_packet(30))  # a keyframe
    fanout.publish(make_packet(31))
    assert drained(live) == [30, 31]


async def test_subscriber_before_first_keyframe_waits() -> None:
    fanout = PacketFanout("cam")
    sub = fanout.subscribe()
    for i in range(5, 12):
        fanout.publish(make_packet(i))
    assert drained(sub) == [10, 11]


async def test_reconnect_bumps_generation_and_info() -> None:
    fanout = PacketFanout("cam")
    seen: list[int] = []
    fanout.on_info_changed(lambda info, gen: seen.append(gen))
    fanout.set_info(INFO)
    sub = fanout.subscribe()
    fanout.publish(make_packet(0))
    await sub.__anext__()
    assert (sub.generation, sub.info) == (1, INFO)
    new_info = StreamInfo("h264", 1280, 720, Fraction(1, 90000), 25.0, b"\x01")
    fanout.set_info(new_info)
    fanout.publish(make_packet(100))
    assert number(await sub.__anext__()) == 100
    assert (sub.generation, sub.info) == (2, new_info)
    assert seen == [1, 2]
    late = fanout.subscribe()  # the old connection's GOP is not replayed
    assert drained(late) == [100]


async def test_waiting_subscriber_woken_from_reader_thread() -> None:
    fanout = PacketFanout("cam")
    sub = fanout.subscribe()
    task = asyncio.create_task(collect(sub, 30))
    await asyncio.sleep(0.05)  # the consumer is now parked on an empty queue
    publish_from_thread(fanout, [make_packet(i) for i in range(30)])
    assert await asyncio.wait_for(task, 5) == list(range(30))


async def test_camera_gone_after_drain_and_close_ends() -> None:
    fanout = PacketFanout("cam")
    sub = fanout.subscribe()
    waiting = fanout.subscribe()
    parked = asyncio.create_task(waiting.__anext__())
    await asyncio.sleep(0.01)
    fanout.publish(make_packet(0))
    fanout.publish(make_packet(1))
    assert number(await parked) == 0
    fanout.close("removed from config")
    assert [number(p) async for p in _until_gone(sub)] == [0, 1]
    with pytest.raises(CameraGone, match="removed from config"):
        await sub.__anext__()
    assert fanout.subscribers == 0
    # Subscribing to a gone camera fails on first use, clearly.
    with pytest.raises(CameraGone):
        await fanout.subscribe().__anext__()
    # A subscription closed by its owner just ends.
    own = PacketFanout("cam2")
    s = own.subscribe()
    t = asyncio.create_task(collect(s, 5))
    await asyncio.sleep(0.01)
    s.close()
    assert await asyncio.wait_for(t, 2) == []
    own.publish(make_packet(0))
    assert own.subscribers == 0


async def _until_gone(sub):
    try:
        async for p in sub:
            yield p
    except CameraGone:
        return


async def test_invalid_queue_size_rejected() -> None:
    with pytest.raises(ValueError):
        PacketFanout("cam").subscribe(max_queue=0)


def test_clone_packet_is_independent() -> None:
    p = make_packet(20)
    c = clone_packet(p)
    assert bytes(c) == bytes(p) and c.pts == p.pts and c.is_keyframe and c.time_base == p.time_base
    c.pts = 1
    assert p.pts == 20 * 3600


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(st.one_of(st.integers(1, 40), st.just(0)), min_size=1, max_size=40),
    max_queue=st.integers(1, 30),
    gop=st.integers(1, 12),
)
def test_backpressure_invariants(ops: list[int], max_queue: int, gop: int) -> None:
    """Any interleaving of bursts (n > 0: publish n packets) and reads (0: drain everything):
    a subscriber only ever loses whole runs that end right before a keyframe, every loss is
    counted, and an unbounded subscriber receives everything in order."""

    async def scenario() -> None:
        fanout = PacketFanout("cam")
        bounded = fanout.subscribe(max_queue=max_queue)
        unbounded = fanout.subscribe(max_queue=10_000)
        published: list[int] = []
        got: list[int] = []
        keyframes: set[int] = set()
        i = 0
        for op in ops:
            if op == 0:
                got += drained(bounded)
                continue
            for _ in range(op):
                p = make_packet(i)
                p.is_keyframe = i % gop == 0
                if p.is_keyframe:
                    keyframes.add(i)
                fanout.publish(p)
                published.append(i)
                i += 1
        got += drained(bounded)
        assert drained(unbounded) == published
        assert got == sorted(got) and set(got) <= set(published)
        assert (not got) or got[0] in keyframes  # starts on a keyframe
        for a, b in itertools.pairwise(got):
            assert b == a + 1 or b in keyframes  # after a gap, always a keyframe
        first = got[0] if got else len(published)
        assert bounded.dropped == len(published) - len(got) - first  # leading non-keyframes aren't drops

    asyncio.run(scenario())
