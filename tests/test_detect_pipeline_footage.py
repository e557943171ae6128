"""The real model on the bundled footage, through the real pipeline (tracker, rules, counts).

Walkway (vtest.avi, fixed camera over a walkway, pedestrians walking both ways): pedestrians are
detected and tracked with stable ids, and a counting line across the walkway counts crossings in
both directions. Street (bikes.mp4): cars and two-wheelers are detected. The sub-streams are used,
as on a camera; the model runs with 2 threads; only a bounded number of frames is decoded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest

from agent.detect.pipeline import CameraPipeline
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.rules_settings import CameraRules
from tests.fixtures.detect import ListSink, SynthFrame

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def decode(path: Path, n: int, width: int) -> list[SynthFrame]:
    """First ``n`` frames resized to ``width`` (keeping the aspect), as the camera sampler does."""
    out: list[SynthFrame] = []
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        for i, fr in enumerate(c.decode(st)):
            if i >= n:
                break
            h = round(width * fr.height / fr.width / 2) * 2
            img = fr.reformat(width=width, height=h, format="rgb24").to_ndarray()
            out.append(SynthFrame(img, 1_700_000_000.0 + float(fr.time), float(fr.time), i, width, h))
    return out


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    from agent.detect.model import load_detector
    from agent.detect.settings import ModelSettings

    return load_detector(ModelSettings(threads=2))


async def run(detector, frames: list[SynthFrame], rules: CameraRules) -> tuple[CameraPipeline, dict]:  # type: ignore[no-untyped-def]
    """Process every frame; returns the pipeline and per-track frame indices where it was active."""
    seen: dict[int, list[int]] = {}
    labels: dict[int, str] = {}
    crossings = []
    with ThreadPoolExecutor(1) as ex:
        p = CameraPipeline("test", detector.detect, ex, ListSink(), PipelineSettings(preview_interval_s=0), rules)
        for f in frames:
            r = await p.process(f)
            for t in r.tracks.active:
                seen.setdefault(t.track_id, []).append(f.index)
                labels[t.track_id] = t.label
            if r.rules is not None:
                crossings += r.rules.crossings
        await p.close()
    return p, {"seen": seen, "labels": labels, "crossings": crossings}


def longest_run(idx: list[int], max_gap: int) -> int:
    best = cur = 1
    for a, b in zip(idx, idx[1:], strict=False):
        cur = cur + 1 if b - a <= max_gap else 1
        best = max(best, cur)
    return best


WALKWAY_RULES = CameraRules.model_validate(
    {"lines": [{"name": "across", "points": [[0.5, 0.25], [0.5, 0.75]], "classes": ["person"]}]}
)
