"""The detector: letterbox -> TFLite NanoDet -> numpy decoding -> detections in image pixels.

    detector = load_detector(ModelSettings(threads=1))
    detections = detector.detect(rgb_frame)   # blocking; run it off the event loop

One Detector owns one interpreter and is not thread-safe; the pipeline calls it from one thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from agent.detect.nanodet import COCO_LABELS, NanoDetDecoder, letterbox
from agent.detect.runtime import ModelError, TFLiteModel, runtime_available
from agent.detect.settings import ModelSettings

__all__ = ["Detection", "Detector", "ModelError", "ObjectDetector", "load_detector"]


@dataclass(frozen=True)
class Detection:
    """One object: COCO label and id, score 0..1, box x1, y1, x2, y2 in pixels of the input image."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as exc:
        raise ModelError(f"cannot read labels {path}: {exc}") from exc
    if not labels:
        raise ModelError(f"labels file {path} is empty")
    return labels


class Detector:
    """NanoDet on a TFLite interpreter with per-class thresholds and per-class NMS."""

    family = "nanodet"

    def __init__(self, settings: ModelSettings | None = None) -> None:
        self.settings = s = settings or ModelSettings()
        path = s.model_path(runtime_available(s.runtime))
        self._model = TFLiteModel(path, threads=s.threads, runtime=s.runtime)
        n, h, w, c = self._model.input_shape
        if (n, h, w, c) != (1, s.input_size, s.input_size, 3):
            raise ModelError(
                f"{path}: input {self._model.input_shape}, settings say {s.input_size}x{s.input_size}x3"
            )
        self.labels = read_labels(s.labels_path()) if s.labels is not None else COCO_LABELS
        unknown = [c for c in (*s.classes, *s.min_score) if c not in self.labels]
        if unknown:
            raise ModelError(f"labels not in the model's label map: {unknown}")
        self._decoder = NanoDetDecoder(s.input_size)
        thr = np.full(len(self.labels), np.inf, np.float32)
        for label in s.classes:
            thr[self.labels.index(label)] = s.min_score.get(label, s.default_min_score)
        self._thresholds = thr
        self.name = path.name
        self.input_size = s.input_size
        # The first invoke sets XNNPACK up (about a second): pay it here, not on the first frame.
        self.infer(np.zeros((s.input_size, s.input_size, 3), np.uint8))

    @property
    def runtime_name(self) -> str:
        return self._model.runtime_name

    @property
    def runtime(self) -> str:
        return self._model.runtime_name

    def infer(self, model_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw heads for one letterboxed 416x416x3 uint8 input: scores [N, 80], box bins [N, 44]."""
        outs = self._model(model_input[None].astype(np.float32))
        return self._decoder.concat_heads(outs)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in ``image`` (HxWx3 uint8 RGB, any size), best first per class."""
        model_input, lb = letterbox(image, self.input_size)
        scores, dists = self.infer(model_input)
        raw = self._decoder.decode(
            scores,
            dists,
            self._thresholds,
            nms_iou=self.settings.nms_iou,
            max_detections=self.settings.max_detections,
        )
        boxes = lb.to_image(raw.boxes)
        return [
            Detection(
                self.labels[int(c)], int(c), float(sc), (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            )
            for b, sc, c in zip(boxes, raw.scores, raw.class_ids, strict=True)
        ]


class ObjectDetector(Protocol):
    """What every model family offers (Detector for nanodet, agent.detect.ssd.SSDDetector for ssd)."""

    family: str
    name: str

    @property
    def input_size(self) -> int | tuple[int, int]: ...

    @property
    def runtime_name(self) -> str: ...

    def detect(self, image: np.ndarray) -> list[Detection]: ...


def load_detector(settings: ModelSettings | None = None) -> ObjectDetector:
    """The configured detector; raises ModelError with the reason if it cannot be loaded."""
    s = settings or ModelSettings()
    if s.family == "ssd":
        from agent.detect.ssd import SSDDetector

        return SSDDetector(s)
    return Detector(s)
