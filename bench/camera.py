"""Camera input benchmark: RTSP open time, GOP-cache join, CPU of passthrough and of detection
frames (sub vs main stream, keyframe-only), frame latency. Real RTSP simulator, real PyAV.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.camera.fanout import PacketFanout
from agent.camera.frames import FrameSampler
from agent.camera.source import PacketSource
from tests.fixtures.camera import RtspCamera

SECONDS = 8.0
PROC = psutil.Process()


def cpu_s() -> float:
    t = PROC.cpu_times()
    return t.user + t.system


async def open_and_join(cam: RtspCamera) -> dict[str, float | bool]:
    fanout = PacketFanout("main")
    src = PacketSource("main", fanout, url=cam.main_url)
    sub = fanout.subscribe()
    t0 = time.monotonic()
    await src.start()
    await sub.__anext__()
    open_s = time.monotonic() - t0
    await asyncio.sleep(1.3)  # mid-GOP
    t1 = time.monotonic()
    late = fanout.subscribe()
    first = await late.__anext__()
    join_ms = (time.monotonic() - t1) * 1000
    await src.stop()
    return {
        "rtsp_open_to_first_packet_s": round(open_s, 2),
        "gop_cache_join_ms": round(join_ms, 3),
        "gop_cache_join_is_keyframe": bool(first.is_keyframe),
    }


async def run_case(url: str, fps: float | None, width: int | None, keyframe_only: bool | None = None) -> dict:
    fanout = PacketFanout("c")
    src = PacketSource("c", fanout, url=url)
    await src.start()
    sub = fanout.subscribe()
    await sub.__anext__()  # connected
    sub.close()
    lat: list[float] = []
    n = 0
    sampler = None
    c0, t0 = cpu_s(), time.monotonic()
    if fps is None:
        await asyncio.sleep(SECONDS)
    else:
        sampler = FrameSampler(fanout, fps=fps, width=width or 416, keyframe_only=keyframe_only)
        async for f in sampler:
            lat.append((time.time() - f.ts) * 1000)
            n += 1
            if time.monotonic() - t0 >= SECONDS:
                break
        await sampler.aclose()
    cores = (cpu_s() - c0) / (time.monotonic() - t0)
    await src.stop()
    out: dict = {"cpu_cores": round(cores, 4)}
    if sampler is not None:
        lat.sort()
        out |= {
            "frames_per_s": round(n / SECONDS, 2),
            "decoded_frames": sampler.decoded,
            "keyframe_only": sampler.keyframe_only,
            "latency_p50_ms": round(statistics.median(lat), 2),
            "latency_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
        }
    return out


async def main() -> dict:
    cam = RtspCamera()
    cam.start()
    try:
        result: dict = await open_and_join(cam)
        cases = {
            "passthrough_main_768x576_10fps": (cam.main_url, None, None, None),
            "frames_5fps_416_from_sub_384x288": (cam.sub_url, 5.0, 416, None),
            "frames_5fps_416_from_main_768x576": (cam.main_url, 5.0, 416, None),
            "frames_0.5fps_keyframe_only_main": (cam.main_url, 0.5, 416, None),
            "frames_0.5fps_full_decode_main": (cam.main_url, 0.5, 416, False),
        }
        for name, (url, fps, width, kfo) in cases.items():
            for k, v in (await run_case(url, fps, width, kfo)).items():
                result[f"{name}_{k}"] = v
        return result
    finally:
        cam.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
