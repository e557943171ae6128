"""The shipped NanoDet model through tflite + numpy decoding, against the TF graph's own outputs.

tests/data/detect/reference.npz (written by tools/convert_model.py with TensorFlow) holds six
letterboxed frames (3 walkway, 3 street), the raw head values at every cell where a class of
interest scores >= 0.2, and the TF graph's decoded detections (all 80 classes, score >= 0.2).
Measured (docs/detection-model.md): float32 worst |score| 1.5e-6, worst box bin 2e-5, decoded boxes
identical to < 0.001 px; int8 within the tolerances stated below.
"""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

import av
import numpy as np
import pytest

from agent.detect.model import Detection, Detector, ModelError, load_detector
from agent.detect.nanodet import REG_BINS, NanoDetDecoder, letterbox, nms
from agent.detect.settings import MODELS_DIR, ModelSettings

REFERENCE = Path(__file__).parent / "data" / "detect" / "reference.npz"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# int8 against the TF graph on the reference frames (detections >= 0.3 of the classes of interest).
INT8_MAX_SCORE_DIFF = 0.15
INT8_MEDIAN_BOX_DIFF_PX = 2.0
INT8_MIN_RECALL = 0.8


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    z = dict(np.load(REFERENCE))
    z["frames"] = np.frombuffer(lzma.decompress(z["frames_xz"].tobytes()), np.uint8).reshape(
        z["frames_shape"]
    )
    return z


@pytest.fixture(scope="module")
def float32() -> Detector:
    return Detector(ModelSettings(precision="float32", threads=2))


@pytest.fixture(scope="module")
def int8() -> Detector:
    return Detector(ModelSettings(precision="int8", threads=2))


def frames(clip: str, indices: set[int]) -> list[np.ndarray]:
    """Full-size RGB frames of a bundled clip (the detector letterboxes them itself)."""
    out = []
    with av.open(str(SAMPLES / clip)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i in indices:
                out.append(fr.to_ndarray(format="rgb24"))
            if i >= max(indices):
                break
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a [n, 4] and b [m, 4]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_float32_reproduces_the_tf_graph(reference: dict[str, np.ndarray], float32: Detector) -> None:
    decoder = NanoDetDecoder()
    worst_score = worst_bins = worst_box = worst_det_score = 0.0
    for k in range(len(reference["frames"])):
        scores, dists = float32.infer(reference["frames"][k])
        cells = reference[f"cells_{k}"]
        worst_score = max(
            worst_score,
            float(np.abs(scores[cells][:, reference["classes"]] - reference[f"scores_{k}"]).max()),
        )
        worst_bins = max(worst_bins, float(np.abs(dists[cells] - reference[f"dists_{k}"]).max()))
        dets = decoder.decode(scores, dists, min_score=0.2)
        assert dets.class_ids.tolist() == reference[f"det_classes_{k}"].tolist(), reference["sources"][k]
        worst_box = max(worst_box, float(np.abs(dets.boxes - reference[f"det_boxes_{k}"]).max()))
        worst_det_score = max(
            worst_det_score, float(np.abs(dets.scores - reference[f"det_scores_{k}"]).max())
        )
    print(
        f"float32 vs TF: score {worst_score:.2g}, bins {worst_bins:.2g}, box {worst_box:.2g} px, det score {worst_det_score:.2g}"
    )
    assert worst_score < 1e-4 and worst_bins < 1e-3
    assert worst_box < 0.01 and worst_det_score < 1e-4


def test_int8_stays_close_to_the_tf_graph(reference: dict[str, np.ndarray], int8: Detector) -> None:
    decoder = NanoDetDecoder()
    interest = reference["classes"]
    matched = total = 0
    box_diffs: list[float] = []
    score_diffs: list[float] = []
    for k in range(len(reference["frames"])):
        scores, dists = int8.infer(reference["frames"][k])
        got = decoder.decode(scores, dists, min_score=0.2)
        keep = np.isin(reference[f"det_classes_{k}"], interest) & (reference[f"det_scores_{k}"] >= 0.3)
        ref_boxes, ref_classes = reference[f"det_boxes_{k}"][keep], reference[f"det_classes_{k}"][keep]
        ref_scores = reference[f"det_scores_{k}"][keep]
        total += len(ref_boxes)
        if not len(ref_boxes) or not len(got.boxes):
            continue
        m = iou(ref_boxes, got.boxes) * (ref_classes[:, None] == got.class_ids[None, :])
        for r in range(len(ref_boxes)):
            j = int(np.argmax(m[r]))
            if m[r, j] >= 0.5:
                matched += 1
                box_diffs.append(float(np.abs(ref_boxes[r] - got.boxes[j]).max()))
                score_diffs.append(abs(float(ref_scores[r] - got.scores[j])))
    recall = matched / total
    print(
        f"int8 vs TF: recall {recall:.3f} of {total}, box max-side diff p50 {np.median(box_diffs):.2f} px "
        f"max {max(box_diffs):.2f} px, score diff max {max(score_diffs):.3f}"
    )
    assert total >= 20
    assert recall >= INT8_MIN_RECALL
    assert np.median(box_diffs) <= INT8_MEDIAN_BOX_DIFF_PX
    assert max(score_diffs) <= INT8_MAX_SCORE_DIFF


def test_walkway_pedestrians_are_detected(float32: Detector) -> None:
    for img in frames("walkway.mp4", {40, 300, 600}):
        dets = float32.detect(img)
        people = [d for d in dets if d.label == "person"]
        assert len(people) >= 3, dets
        h, w = img.shape[:2]
        for d in people:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert d.score >= 0.4 and d.class_id == 0
        assert {d.label for d in dets} <= {"person", "bicycle", "car", "motorcycle", "bus", "truck"}


def test_street_cars_and_two_wheelers_are_detected(float32: Detector) -> None:
    labels: list[str] = []
    for img in frames("street.mp4", set(range(12, 250, 25))):  # 10 frames, one per second
        labels += [d.label for d in float32.detect(img)]
    # Measured: car 8, motorcycle 5, bicycle 4, person 4.
    assert labels.count("car") >= 5, labels
    assert labels.count("motorcycle") >= 3 and labels.count("bicycle") >= 2, labels
    assert labels.count("person") >= 3, labels


def test_boxes_map_back_through_the_letterbox(float32: Detector) -> None:
    """The same frame at full size and as the 416-wide model input gives the same objects, scaled."""
    (img,) = frames("walkway.mp4", {300})
    small = img[::2, ::2].copy()  # 384x288: letterbox scales up instead of down
    full, half = float32.detect(img), float32.detect(small)
    assert len(full) >= 3
    a = np.array([d.box for d in full])
    b = np.array([d.box for d in half]) * 2.0
    best = iou(a, b).max(axis=1)
    assert np.median(best) >= 0.75, best


def test_letterbox_places_the_image_top_left_and_scales_back() -> None:
    img = np.full((100, 200, 3), 200, np.uint8)
    out, lb = letterbox(img, 416)
    assert out.shape == (416, 416, 3)
    assert (out[:208] == 200).all() and (out[208:] == 0).all()
    back = lb.to_image(np.array([[0.0, 0.0, 416.0, 208.0], [10.0, 10.0, 500.0, 500.0]], np.float32))
    expected = np.array([[0, 0, 200, 100], [10 / 2.08, 10 / 2.08, 200, 100]], np.float32)
    np.testing.assert_allclose(back, expected, rtol=1e-5)


def test_decoder_reads_bins_as_distances_times_stride() -> None:
    """A peaked distribution at bin k on one cell gives exactly centre +- k * stride; NMS keeps one
    box per class and object, and a second class on the same cell survives."""
    d = NanoDetDecoder(416)
    n = len(d.centres)
    scores = np.zeros((n, 80), np.float32)
    dists = np.full((n, 4 * REG_BINS), -50.0, np.float32)
    cell = 2704 + 5 * 26 + 7  # stride 16, row 5, column 7: centre (120, 88)
    for side, k in enumerate((2, 1, 3, 4)):
        dists[cell, side * REG_BINS + k] = 50.0
    dists[cell + 1] = dists[cell]  # neighbour: same distances, 16 px to the right, lower score
    scores[cell, 2], scores[cell + 1, 2], scores[cell, 3] = 0.9, 0.8, 0.5
    r = d.decode(scores, dists, min_score=0.3, nms_iou=0.6)
    order = np.argsort(r.class_ids, kind="stable")
    assert r.class_ids[order].tolist() == [2, 3]  # the two class-2 boxes overlap with IoU 64/96
    np.testing.assert_allclose(r.boxes[order][0], [120 - 32, 88 - 16, 120 + 48, 88 + 64], atol=1e-3)
    np.testing.assert_allclose(r.scores[order], [0.9, 0.5])
    r2 = d.decode(scores, dists, min_score=0.3, nms_iou=0.7)  # 0.67 < 0.7: both kept
    assert sorted(r2.class_ids.tolist()) == [2, 2, 3]
    assert d.decode(scores, dists, min_score=0.95).boxes.shape == (0, 4)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.7], np.float32), 0.5).tolist() == [1, 2]


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*nope\.tflite"):
        load_detector(ModelSettings(path=tmp_path / "nope.tflite"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelError, match="cannot load"):
        load_detector(ModelSettings(path=bad))
    with pytest.raises(ModelError, match="labels not in the model's label map"):
        load_detector(ModelSettings(classes=("person", "unicorn")))


def test_provenance_lists_the_committed_files() -> None:
    text = (MODELS_DIR / "PROVENANCE.md").read_text()
    for name in ("nanodet_416_float32.tflite", "nanodet_416_int8.tflite"):
        digest = hashlib.sha256((MODELS_DIR / name).read_bytes()).hexdigest()
        assert f"| `{name}` | {(MODELS_DIR / name).stat().st_size:,} | `{digest}` |" in text
    assert "Apache-2.0" in text and "MIT" in text and "CC BY 4.0" in text
    assert "Apache License" in (MODELS_DIR / "LICENSE-nanodet").read_text()
    labels = (MODELS_DIR / "coco_labels.txt").read_text().split("\n")
    assert labels[0] == "person" and labels[3] == "motorcycle" and labels[7] == "truck"


def test_load_detector_dispatches_on_family() -> None:
    d = load_detector(ModelSettings())
    assert isinstance(d, Detector) and d.family == "nanodet" and d.runtime_name == "tflite-runtime"
    assert d.name == "nanodet_416_float32.tflite" and d.input_size == 416


def test_default_settings_point_at_the_committed_models() -> None:
    assert ModelSettings().model_path("tflite-runtime") == MODELS_DIR / "nanodet_416_float32.tflite"
    assert ModelSettings().model_path("ai-edge-litert") == MODELS_DIR / "nanodet_416_int8.tflite"
    assert (MODELS_DIR / "nanodet_416_float32.tflite").is_file()
    assert (MODELS_DIR / "nanodet_416_int8.tflite").is_file()


def test_bad_image_is_rejected(float32: Detector) -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        float32.detect(np.zeros((10, 10), np.uint8))
    assert isinstance(float32.detect(np.zeros((50, 80, 3), np.uint8)), list)
    assert Detection("car", 2, 0.5, (0, 0, 1, 1)).label == "car"
