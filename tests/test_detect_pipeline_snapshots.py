"""Snapshots: valid bounded JPEGs (PyAV mjpeg), clean crop, 0600 files, quota with oldest-first eviction."""

from __future__ import annotations

import stat
from pathlib import Path

import av
import numpy as np
import pytest

from agent.detect.snapshots import SnapshotStore, crop_box, encode_bounded

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "walkway.mp4"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    with av.open(str(SAMPLE)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def decode_jpeg(data: bytes) -> np.ndarray:
    ctx = av.CodecContext.create("mjpeg", "r")
    (f,) = ctx.decode(av.Packet(data))
    return f.to_ndarray(format="rgb24")


def test_full_has_box_drawn_and_crop_is_clean(frame, tmp_path) -> None:
    store = SnapshotStore(tmp_path, 10 * 2**20)
    box = (250.0, 215.0, 285.0, 310.0)  # a pedestrian in the first walkway frame
    store.save("cam1", "a" * 32, frame, box, "person #3 dwell")
    full = decode_jpeg(store.read("cam1", "a" * 32, "full") or b"")
    crop = decode_jpeg(store.read("cam1", "a" * 32, "crop") or b"")
    assert full.shape == frame.shape
    # The box outline (person colour, red) is drawn on the full image, not on the crop.
    assert full[260, 250, 0] > 200 and full[260, 250, 1] < 120
    expected = crop_box(frame, box)
    assert crop.shape == expected.shape
    assert np.abs(crop.astype(int) - expected.astype(int)).mean() < 6  # JPEG noise only
    for p in tmp_path.glob("cam1/*.jpg"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_size_bound_lowers_quality_then_resolution() -> None:
    noise = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    data = encode_bounded(noise, 100 * 1024)
    assert len(data) <= 100 * 1024
    assert decode_jpeg(data).shape[1] < 1920


def test_quota_evicts_oldest_first_and_survives_restart(frame, tmp_path) -> None:
    one = SnapshotStore(tmp_path, 10 * 2**20)
    size = one.save("cam1", f"{0:032x}", frame, (10, 10, 100, 100), "car")
    quota = int(size * 3.5)  # room for three events (full + crop each)
    store = SnapshotStore(tmp_path, quota)
    for i in range(1, 6):
        store.save("cam1", f"{i:032x}", frame, (10, 10, 100, 100), "car")
        assert store.usage_bytes <= quota
    kept = [i for i in range(6) if store.read("cam1", f"{i:032x}", "full") is not None]
    assert kept == [3, 4, 5]
    again = SnapshotStore(tmp_path, quota)  # usage is rebuilt from disk
    assert again.usage_bytes == store.usage_bytes


def test_ids_and_camera_names_cannot_escape_the_store(tmp_path) -> None:
    store = SnapshotStore(tmp_path, 2**20)
    with pytest.raises(ValueError):
        store.read("../etc", "a" * 32, "full")
    with pytest.raises(ValueError):
        store.read("cam1", "../../x", "full")
