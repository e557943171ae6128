"""Detection benchmark: whole-pipeline fps on the bundled walkway clip vs model-only fps.

pipeline = decode (PyAV, own thread) + resize to the detection size (swscale, same thread) +
inference (ONE thread) + tracking + rules/counting + stores, exactly as the agent runs it
(agent.detect.pipeline.CameraPipeline with its one-ahead inference queue). Every frame of the first
``--frames`` is processed (no dropping), so fps is the throughput. model_only comes from
bench/detect_model.py (interpreter invoke only, same model, one thread).

Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect.counts import CountStore  # noqa: E402
from agent.detect.events import EventStore  # noqa: E402
from agent.detect.pipeline import CameraPipeline  # noqa: E402
from agent.detect.pipeline_settings import PipelineSettings  # noqa: E402
from agent.detect.rules_settings import CameraRules  # noqa: E402
from agent.detect.snapshots import SnapshotStore  # noqa: E402

CLIP = ROOT / "samples" / "walkway.mp4"
WALKWAY_RULES = CameraRules.model_validate(
    {
        "lines": [{"name": "across", "points": [[0.5, 0.3], [0.5, 0.7]], "classes": ["person"]}],
        "zones": [
            {
                "name": "path",
                "points": [[0.0, 0.35], [1.0, 0.35], [1.0, 0.6], [0.0, 0.6]],
                "kind": "occupancy",
            }
        ],
    }
)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    ts: float
    pts_s: float | None
    index: int
    width: int
    height: int


def detect_size(w: int, h: int, target: int) -> tuple[int, int]:
    """Fit inside target x target keeping the aspect ratio (even sizes): the detector only pads."""
    s = target / max(w, h)
    return max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)


async def decoded_frames(path: Path, limit: int, target: int) -> AsyncIterator[Frame]:
    """Decode + resize in a thread, hand frames to the loop through a bounded queue (backpressure)."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Frame | None] = asyncio.Queue()
    slots = threading.Semaphore(3)
    stop = threading.Event()

    def worker() -> None:
        try:
            with av.open(str(path)) as c:
                st = c.streams.video[0]
                st.codec_context.thread_count = 1  # as the camera sampler: leave the other core to inference
                w, h = detect_size(st.codec_context.width, st.codec_context.height, target)
                for i, fr in enumerate(c.decode(st)):
                    if i >= limit or stop.is_set():
                        break
                    img = fr.reformat(width=w, height=h, format="rgb24").to_ndarray()
                    slots.acquire()
                    pts = float(fr.time) if fr.time is not None else i / 10
                    loop.call_soon_threadsafe(q.put_nowait, Frame(img, time.time(), pts, i, w, h))
        finally:
            loop.call_soon_threadsafe(q.put_nowait, None)

    t = threading.Thread(target=worker, name="bench-decode", daemon=True)
    t.start()
    try:
        while (f := await q.get()) is not None:
            slots.release()
            yield f
    finally:
        stop.set()
        slots.release()


class NullSink:
    def __init__(self) -> None:
        self.n = {"events": 0, "counts": 0}

    async def put(self, channel: str, message: Any) -> str:
        self.n[channel] = self.n.get(channel, 0) + 1
        return ""


async def run_pipeline(detector: Any, frames: int, target: int, tmp: Path) -> dict[str, Any]:
    sink = NullSink()
    events, counts = EventStore(tmp / "e.sqlite"), CountStore(tmp / "c.sqlite")
    snaps = SnapshotStore(tmp / "snaps", 64 * 2**20)
    with ThreadPoolExecutor(1, thread_name_prefix="infer") as ex:
        p = CameraPipeline(
            "bench",
            detector.detect,
            ex,
            sink,
            PipelineSettings(preview_interval_s=0),
            WALKWAY_RULES,
            events,
            counts,
            snaps,
        )
        t0 = time.perf_counter()
        await p.run(decoded_frames(CLIP, frames, target))
        wall = time.perf_counter() - t0
    events.close()
    counts.close()
    ms = sorted(p.stats.infer_ms)
    return {
        "frames": p.stats.frames,
        "wall_s": wall,
        "fps": p.stats.frames / wall,
        "detect_call_p50_ms": ms[len(ms) // 2],
        "tracks": p.tracker._next_id - 1,
        "crossings": dict(p.totals),
        "events": sink.n["events"],
    }


def detector_only_ms(detector: Any, n: int, target: int) -> float:
    """p50 of Detector.detect (letterbox + invoke + decode) on pre-decoded frames."""
    frames: list[np.ndarray] = []
    with av.open(str(CLIP)) as c:
        st = c.streams.video[0]
        w, h = detect_size(st.codec_context.width, st.codec_context.height, target)
        for i, fr in enumerate(c.decode(st)):
            if i >= n:
                break
            frames.append(fr.reformat(width=w, height=h, format="rgb24").to_ndarray())
    ms = []
    for f in frames:
        t = time.perf_counter()
        detector.detect(f)
        ms.append((time.perf_counter() - t) * 1000.0)
    ms.sort()
    return ms[len(ms) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="walkway frames per pipeline round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model-runs", type=int, default=40)
    ap.add_argument("--skip-model-matrix", action="store_true", help="only the 1-thread model time")
    args = ap.parse_args()

    from agent.detect.model import load_detector
    from agent.detect.settings import ModelSettings
    from agent.detect.wiring import model_settings_for_tracking
    from bench.detect_model import measure, model_only_ms

    model_matrix = None if args.skip_model_matrix else measure(args.model_runs)
    settings = model_settings_for_tracking(ModelSettings(threads=1), PipelineSettings())
    detector = load_detector(settings)
    target = int(detector.input_size)
    detect_ms = detector_only_ms(detector, 60, target)
    with tempfile.TemporaryDirectory() as d:  # warm-up (allocation, page faults) outside the timing
        asyncio.run(run_pipeline(detector, 10, target, Path(d)))
    # Rounds of (model only, pipeline, model only): the ratio of each round compares the two under
    # the same machine load; the median round is reported (robust on a shared machine).
    rounds = []
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        m1 = float(model_only_ms(settings, runs=args.model_runs))
        with tempfile.TemporaryDirectory() as d:
            r = asyncio.run(run_pipeline(detector, args.frames, target, Path(d)))
        m2 = float(model_only_ms(settings, runs=args.model_runs))
        model_ms = (m1 + m2) / 2
        rounds.append((r["fps"] * model_ms / 1000.0, model_ms, r))
    rounds.sort(key=lambda x: x[0])
    ratio, model_ms, r = rounds[len(rounds) // 2]
    model_fps = 1000.0 / model_ms
    out: dict[str, Any] = {
        "clip": CLIP.name,
        "frames": r["frames"],
        "detect_size": list(detect_size(768, 576, target)),
        "model_file": detector.name,
        "runtime": detector.runtime,
        "inference_threads": 1,
        "model_only_ms": round(model_ms, 2),
        "model_only_fps": round(model_fps, 2),
        "detector_only_ms": round(detect_ms, 2),
        "pipeline_fps": round(r["fps"], 2),
        "pipeline_ratio": round(ratio, 3),
        "pipeline_ratio_rounds": [round(x[0], 3) for x in rounds],
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "pipeline_detect_call_p50_ms": round(r["detect_call_p50_ms"], 2),
        "tracks_started": r["tracks"],
        "line_crossings": r["crossings"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if model_matrix is not None:
        out["model_only"] = model_matrix
    print(json.dumps(out))


if __name__ == "__main__":
    main()
