"""FrameSampler: reduced rate and size, newest-frame policy, keyframe-only decoding."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.camera.fanout import PacketFanout
from agent.camera.frames import Frame, FrameSampler, output_size
from agent.camera.source import Backoff, PacketSource
from tests.fixtures.camera import SAMPLES, RtspCamera


async def frames(
    sampler: FrameSampler, n: int, *, consumer_delay: float = 0.0, timeout: float = 25.0
) -> list[Frame]:
    async def run() -> list[Frame]:
        out: list[Frame] = []
        async for f in sampler:
            out.append(f)
            if len(out) >= n:
                break
            if consumer_delay:
                await asyncio.sleep(consumer_delay)  # a slow detector
        await sampler.aclose()
        return out

    return await asyncio.wait_for(run(), timeout)


@pytest.fixture
async def street_sub(rtsp_camera_shared: RtspCamera):
    """Fan-out of the street sub-stream (320x136, 25 fps, 1 s GOP) from the RTSP simulator."""
    fanout = PacketFanout("street/sub")
    src = PacketSource(
        "street/sub", fanout, url=rtsp_camera_shared.url("street_sub"), backoff=Backoff(0.2, 1.0)
    )
    await src.start()
    yield fanout
    await src.stop()


async def test_reduced_rate_and_size(street_sub: PacketFanout) -> None:
    sampler = FrameSampler(street_sub, fps=5, width=416)
    got = await frames(sampler, 12)
    f = got[-1]
    assert f.image.shape == (176, 416, 3) and f.image.dtype == np.uint8  # 320x136 scaled, aspect kept
    assert (f.width, f.height, f.source_width, f.source_height) == (416, 176, 320, 136)
    assert f.image.flags["C_CONTIGUOUS"]
    assert f.image.std() > 10  # real picture content, not a blank frame
    steps = np.diff([g.pts_s for g in got[1:]])  # the first frame comes from the GOP cache
    # 5 of the camera's 25 frames per second (in stream time, not wall time)
    assert np.allclose(steps, 0.2, atol=0.041), steps
    assert [g.index for g in got] == list(range(len(got)))  # a prompt consumer skips nothing
    assert sampler.skipped == 0
    assert not sampler.keyframe_only
    assert all(g.ts > 0 for g in got)


async def test_fixed_height_and_every_frame() -> None:
    fanout = PacketFanout("file")
    src = PacketSource("file", fanout, file=SAMPLES / "street_sub.mp4", realtime=True)
    await src.start()
    try:
        got = await frames(FrameSampler(fanout, fps=None, width=160, height=120), 20)
    finally:
        await src.stop()
    assert {g.image.shape for g in got} == {(120, 160, 3)}
    steps = np.diff([g.pts_s for g in got])
    assert np.allclose(steps, 0.04, atol=0.002)  # every 25 fps frame


async def test_slow_consumer_gets_newest_frame_and_skips_are_counted(street_sub: PacketFanout) -> None:
    sampler = FrameSampler(street_sub, fps=5, width=96)
    got = await frames(sampler, 4, consumer_delay=1.0)
    assert sampler.skipped >= 6
    gaps = np.diff([g.index for g in got[1:]])
    assert (gaps >= 3).all()  # about 5 sampled per second of work, 4 of them skipped
    # the frame handed over is the newest: stream time advanced by the consumer's whole pause
    assert (np.diff([g.pts_s for g in got[1:]]) >= 0.8).all()


async def test_keyframe_only_decoding_at_or_below_gop_rate(street_sub: PacketFanout) -> None:
    sampler = FrameSampler(street_sub, fps=1, width=96)
    got = await frames(sampler, 4)
    assert sampler.keyframe_only  # 1 fps with a 1 s GOP: only IDR frames are decoded
    # a few GOPs passed, yet only about one frame per GOP was decoded (not 25)
    assert sampler.decoded <= 2 * 25 + 3 * 2
    steps = np.diff([g.pts_s for g in got[2:]])
    assert np.allclose(steps, 1.0, atol=0.05)


def test_output_size_and_validation() -> None:
    assert output_size(768, 576, 416, None) == (416, 312)
    assert output_size(640, 272, 416, 416) == (416, 416)
    with pytest.raises(ValueError):
        output_size(640, 272, 0, None)
    with pytest.raises(ValueError):
        FrameSampler(PacketFanout("x"), fps=0)
