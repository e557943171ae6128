"""End to end through the real camera runtime: a looped H.264 file -> FrameSampler -> detection
manager -> tracker -> rules -> count records in SQLite and the outbox contract.

The scene is synthetic (a white box moving right across a black frame, made with ffmpeg) so a
trivial, exact detector can stand in for the neural network: it really finds the box in each
decoded frame. The model on real footage is covered by test_detect_pipeline_footage.py.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.camera.manager import CameraManager
from agent.detect.counts import CountStore
from agent.detect.manager import DetectionManager
from agent.detect.messages import GetCountsParams
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.rules_settings import CameraRules
from tests.fixtures.detect import Det, ListSink


@dataclass(frozen=True)
class Cam:
    name: str
    file: Path
    main_url: str | None = None
    sub_url: str | None = None
    rtsp_transport: str = "tcp"
    detect_fps: float = 5.0
    detect_width: int = 320
    detect_height: int | None = None


def blob_detector(image: np.ndarray) -> list[Det]:
    """Bounding box of the bright pixels, reported as a car (exact for the synthetic scene)."""
    ys, xs = np.nonzero(image[:, :, 0] > 128)
    if len(xs) < 20:
        return []
    return [Det("car", 2, 0.9, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())))]


@pytest.fixture(scope="module")
def moving_box_clip(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("clip") / "box.mp4"
    # 640x360, 10 fps, 6 s: a 60x60 box moves from x=40 to x=40+90*6=580, crossing the middle at ~2.9 s.
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=640x360:r=10:d=6",
            "-f",
            "lavfi",
            "-i",
            "color=c=white:s=60x60:r=10:d=6",
            "-filter_complex",
            "[0][1]overlay=x='40+t*90':y=150",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "10",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


async def test_camera_file_to_counts_through_the_manager(moving_box_clip, tmp_path) -> None:
    cams = CameraManager([Cam("cam1", moving_box_clip)])  # type: ignore[list-item]
    rules = CameraRules.model_validate(
        {"lines": [{"name": "mid", "points": [[0.5, 0.1], [0.5, 0.9]], "classes": ["car"]}]}
    )
    sink = ListSink()
    mgr = DetectionManager(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        sink=sink,
        settings=PipelineSettings(preview_interval_s=0.5),
        camera_rules={"cam1": rules},
        camera_fps={"cam1": 5.0},
        detect=blob_detector,
        frames_for=lambda cam, fps: cams.get(cam).frames(fps),
    )
    await cams.start()
    await mgr.start()
    try:
        for _ in range(100):  # real-time file: the box crosses the middle ~2.9 s in
            await asyncio.sleep(0.1)
            if mgr.pipelines["cam1"].totals:
                break
        tel = mgr.telemetry()["cameras"]["cam1"]
    finally:
        await mgr.stop()
        await cams.stop()
    # Drawn left to right would be forward=down; this line is drawn top to bottom, so its
    # right-hand side is the left of the image: moving right is "backward".
    assert mgr.pipelines["cam1"].totals == {"mid:B": 1}
    assert tel["frames"] >= 10 and tel["inference_ms_p50"] is not None
    records = sink.of("counts")
    assert [(c.line, c.label, c.direction, c.count) for r in records for c in r.lines] == [
        ("mid", "car", "backward", 1)
    ]
    store = CountStore(tmp_path / "data" / "detect" / "counts.sqlite")  # reopened after shutdown
    counts = store.query(GetCountsParams(since=records[0].start, until=records[-1].end))
    store.close()
    assert [(t.label, t.direction, t.count) for t in counts.totals] == [("car", "backward", 1)]
    assert (tmp_path / "data" / "detect" / "preview" / "cam1.jpg").read_bytes()[:2] == b"\xff\xd8"
