"""SSD (TF Object Detection API) decoding in numpy and a detector for the person-only SSDLite model.

The model (tools/convert_ssd.py) takes a frame squashed to 300x300, NHWC RGB 0..255, and returns the
raw heads: box encodings ``[1, 1917, 4]`` (ty, tx, th, tw against fixed anchors) and class logits
``[1, 1917, 2]`` (background, person). This module rebuilds what the TF graph did after the heads:
the anchor grid (``ssd_anchor_generator``: 6 layers, scales 0.2..0.95, aspect ratios 1, 2, 1/2, 3,
1/3 plus an interpolated scale, 3 boxes in the lowest layer), the Faster R-CNN box coder (scales
10, 10, 5, 5), sigmoid scores and NMS (IoU 0.6, at most 100), so the runtime needs only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agent.detect.nanodet import nms, resize_bilinear
from agent.detect.runtime import ModelError, TFLiteModel

if TYPE_CHECKING:  # pydantic is not in the conversion venv, which imports the decoder
    from agent.detect.model import Detection
    from agent.detect.settings import ModelSettings

INPUT_SIZE = 300
FEATURE_MAPS = (19, 10, 5, 3, 2, 1)
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)
LABELS = ("person",)  # the model's class 1 (0 is background); reported with its COCO id
COCO_IDS = {"person": 0}
DEFAULT_MODEL_NAME = "ssdlite_person_300_float32.tflite"  # in settings.MODELS_DIR


def ssd_anchors(feature_maps: tuple[int, ...] = FEATURE_MAPS) -> np.ndarray:
    """Normalised anchors [N, 4] (ymin, xmin, ymax, xmax) in the order of the model's outputs
    (layer, row, column, box), as TF's MultipleGridAnchorGenerator makes them."""
    n = len(feature_maps)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer, size in enumerate(feature_maps):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], ar) for ar in ASPECT_RATIOS]
            specs.append((float(np.sqrt(scales[layer] * scales[layer + 1])), 1.0))
        s = np.array([sp[0] for sp in specs])
        r = np.sqrt(np.array([sp[1] for sp in specs]))
        heights, widths = s / r, s * r
        centres = (np.arange(size) + 0.5) / size
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        cy, cx = cy.reshape(-1, 1), cx.reshape(-1, 1)
        box = np.stack([cy - heights / 2, cx - widths / 2, cy + heights / 2, cx + widths / 2], axis=-1)
        out.append(box.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class SSDRaw:
    """Decoded detections, boxes normalised x1, y1, x2, y2 (0..1 of the model input)."""

    boxes: np.ndarray  # [k, 4] float32
    scores: np.ndarray  # [k] float32
    class_ids: np.ndarray  # [k] int, index into LABELS


class SSDDecoder:
    """Box encodings + logits -> detections (anchors computed once)."""

    def __init__(self) -> None:
        a = ssd_anchors()
        self.anchor_hw = np.stack([a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)
        self.anchor_c = a[:, :2] + self.anchor_hw / 2

    def boxes(self, encodings: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Box encodings [k, 4] (ty, tx, th, tw) of anchors ``cells`` -> boxes [k, 4] normalised
        x1, y1, x2, y2."""
        t = encodings / np.array(BOX_CODER_SCALES, np.float32)
        c = t[:, :2] * self.anchor_hw[cells] + self.anchor_c[cells]
        hw = np.exp(t[:, 2:]) * self.anchor_hw[cells]
        y1x1, y2x2 = c - hw / 2, c + hw / 2
        return np.stack([y1x1[:, 1], y1x1[:, 0], y2x2[:, 1], y2x2[:, 0]], axis=1)

    def decode(
        self,
        encodings: np.ndarray,
        logits: np.ndarray,
        min_score: float | np.ndarray,
        nms_iou: float = 0.6,
        max_detections: int = 100,
    ) -> SSDRaw:
        """``logits`` [N, 1 + classes] with background first; ``min_score`` one or one per class."""
        scores = 1.0 / (1.0 + np.exp(-logits[:, 1:]))
        thr = np.broadcast_to(np.asarray(min_score, np.float32), (scores.shape[1],))
        cells, classes = np.nonzero(scores >= thr[None, :])
        conf = scores[cells, classes].astype(np.float32)
        if conf.size == 0:
            return SSDRaw(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.intp))
        boxes = np.clip(self.boxes(encodings[cells], cells), 0.0, 1.0)
        keep = nms(boxes + classes[:, None] * 2.0, conf, nms_iou)[:max_detections]
        return SSDRaw(boxes[keep].astype(np.float32), conf[keep], classes[keep])


class SSDDetector:
    """The person-only SSDLite on a TFLite interpreter; same interface as model.Detector."""

    family = "ssd"

    def __init__(self, settings: ModelSettings) -> None:
        from agent.detect.model import Detection  # model.py imports this module lazily
        from agent.detect.settings import MODELS_DIR

        self._detection = Detection
        self.settings = s = settings
        path = s.path if s.path is not None else MODELS_DIR / DEFAULT_MODEL_NAME
        self._model = TFLiteModel(Path(path), threads=s.threads, runtime=s.runtime)
        _, h, w, c = self._model.input_shape
        if (h, w, c) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelError(f"{path}: input {self._model.input_shape}, an SSD model of 300x300x3 expected")
        self.labels = tuple(label for label in LABELS if label in s.classes)
        if not self.labels:
            raise ModelError(
                f"the SSD model detects only {list(LABELS)}, none of them in classes {list(s.classes)}"
            )
        self._thresholds = np.array(
            [
                s.min_score.get(label, s.default_min_score) if label in self.labels else np.inf
                for label in LABELS
            ],
            np.float32,
        )
        self._decoder = SSDDecoder()
        self.name = Path(path).name
        self.input_size = (INPUT_SIZE, INPUT_SIZE)
        self.infer(np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # XNNPACK set-up, not on frame 1

    @property
    def runtime_name(self) -> str:
        return self._model.runtime_name

    def infer(self, model_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw heads for one 300x300x3 uint8 input: box encodings [N, 4], logits [N, 2]."""
        outs = self._model(model_input[None].astype(np.float32))
        by_width = {o.shape[-1]: o.reshape(-1, o.shape[-1]) for o in outs}
        if sorted(by_width) != [2, 4]:
            raise ModelError(f"unexpected SSD outputs {[o.shape for o in outs]}")
        return by_width[4], by_width[2]

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in ``image`` (HxWx3 uint8 RGB, any size), squashed to 300x300 as trained."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        enc, logits = self.infer(resize_bilinear(image, INPUT_SIZE, INPUT_SIZE))
        raw = self._decoder.decode(
            enc,
            logits,
            self._thresholds,
            nms_iou=self.settings.nms_iou,
            max_detections=self.settings.max_detections,
        )
        boxes = raw.boxes * np.array([w, h, w, h], np.float32)
        return [
            self._detection(
                LABELS[int(c)],
                COCO_IDS[LABELS[int(c)]],
                float(sc),
                (float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            )
            for b, sc, c in zip(boxes, raw.scores, raw.class_ids, strict=True)
        ]
