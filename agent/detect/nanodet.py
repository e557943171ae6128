"""NanoDet pre- and post-processing in numpy (no runtime dependency beyond numpy).

The model (tools/convert_model.py) takes a letterboxed NHWC RGB 0..255 frame and returns, per stride
8/16/32, class scores ``[1, N, 80]`` (sigmoid already applied) and box distributions ``[1, N, 44]``
(left, top, right, bottom x 11 bins). Decoding: softmax over the bins of each side, expected bin
times stride = distance from the cell centre ``((x + 0.5) * stride, (y + 0.5) * stride)``, then
per-class NMS (a cell may yield several classes, as upstream NanoDet does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_BINS = 11  # reg_max 10 -> 11 bins per side
NUM_CLASSES = 80

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed in the square model input: ``input = image * (sx, sy)`` at the top-left."""

    sx: float
    sy: float
    width: int
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input pixel boxes [k, 4] -> image pixel boxes, clipped to the image."""
        out = boxes / np.array([self.sx, self.sy, self.sx, self.sy], np.float32)
        out[:, 0::2] = np.clip(out[:, 0::2], 0.0, float(self.width))
        out[:, 1::2] = np.clip(out[:, 1::2], 0.0, float(self.height))
        return out


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres) of an HxWx3 uint8 image; used only when the caller did
    not already hand a frame that fits the model input (the camera sampler normally does)."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    ys = np.clip((np.arange(height) + 0.5) * (h / height) - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * (w / width) - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return np.clip(top * (1 - wy) + bottom * wy + 0.5, 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, Letterbox]:
    """Fit ``image`` (HxWx3 uint8 RGB) into size x size keeping the aspect ratio, top-left, black
    padding. A plain squash to the square is clearly worse for NanoDet (field notes)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"empty image {image.shape}")
    scale = min(size / w, size / h)
    nw, nh = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
    out = np.zeros((size, size, 3), np.uint8)
    out[:nh, :nw] = resize_bilinear(image, nw, nh)
    # Exact per-axis scale of what was drawn (nw/w and nh/h may differ by rounding).
    return out, Letterbox(sx=nw / w, sy=nh / h, width=w, height=h)


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections in model-input pixels (before mapping back through the letterbox)."""

    boxes: np.ndarray  # [k, 4] float32 x1, y1, x2, y2
    scores: np.ndarray  # [k] float32
    class_ids: np.ndarray  # [k] int


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        union = areas[i] + areas[rest] - inter
        ov = np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
        order = rest[ov <= iou]
    return np.asarray(keep, dtype=np.intp)


class NanoDetDecoder:
    """Turns the six raw heads into detections (grid centres and strides precomputed once)."""

    def __init__(self, input_size: int = INPUT_SIZE, strides: Sequence[int] = STRIDES) -> None:
        self.input_size = input_size
        self.strides = tuple(strides)
        centres, cell_stride = [], []
        self._cells_of: dict[int, int] = {}
        for s in self.strides:
            n = -(-input_size // s)  # ceil, as the conv stack pads
            ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            centres.append(np.stack([(xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s], axis=1))
            cell_stride.append(np.full(n * n, s, np.float32))
            self._cells_of[n * n] = s
        self.centres = np.concatenate(centres).astype(np.float32)  # [N, 2]
        self.cell_stride = np.concatenate(cell_stride)  # [N]
        self._bins = np.arange(REG_BINS, dtype=np.float32)

    def concat_heads(
        self, outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs (any order; told apart by shape) -> scores [N, 80] and distributions [N, 44]
        ordered stride 8, 16, 32."""
        arrays = list(outputs.values()) if isinstance(outputs, Mapping) else list(outputs)
        scores: dict[int, np.ndarray] = {}
        dists: dict[int, np.ndarray] = {}
        for a in arrays:
            a = np.asarray(a).reshape(a.shape[-2], a.shape[-1])
            stride = self._cells_of.get(a.shape[0])
            if stride is None or a.shape[1] not in (NUM_CLASSES, 4 * REG_BINS):
                raise ValueError(f"unexpected NanoDet output shape {a.shape}")
            (scores if a.shape[1] == NUM_CLASSES else dists)[stride] = a
        if sorted(scores) != sorted(self.strides) or sorted(dists) != sorted(self.strides):
            raise ValueError(f"NanoDet outputs incomplete: scores {sorted(scores)}, boxes {sorted(dists)}")
        return (
            np.concatenate([scores[s] for s in self.strides]).astype(np.float32, copy=False),
            np.concatenate([dists[s] for s in self.strides]).astype(np.float32, copy=False),
        )

    def boxes_at(self, cells: np.ndarray, dists: np.ndarray) -> np.ndarray:
        """Boxes [k, 4] of the given cells from their distributions [k, 44] (input pixels)."""
        d = dists.reshape(-1, 4, REG_BINS)
        d = np.exp(d - d.max(axis=2, keepdims=True))
        dist = (d / d.sum(axis=2, keepdims=True)) @ self._bins * self.cell_stride[cells, None]  # [k, 4]
        c = self.centres[cells]
        return np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1)

    def decode(
        self,
        scores: np.ndarray,
        dists: np.ndarray,
        min_score: float | np.ndarray,
        nms_iou: float = 0.6,
        max_detections: int = 100,
        pre_nms_top_k: int = 1000,
    ) -> RawDetections:
        """``min_score``: one threshold or one per class (np.inf drops a class)."""
        thr = np.broadcast_to(np.asarray(min_score, np.float32), (scores.shape[1],))
        cells, classes = np.nonzero(scores >= thr[None, :])
        conf = scores[cells, classes]
        if conf.size > pre_nms_top_k:
            top = np.argpartition(-conf, pre_nms_top_k)[:pre_nms_top_k]
            cells, classes, conf = cells[top], classes[top], conf[top]
        if conf.size == 0:
            return RawDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.intp))
        boxes = self.boxes_at(cells, dists[cells])
        boxes = np.clip(boxes, 0.0, float(self.input_size))
        # Per-class NMS in one pass: shift each class to its own region of the plane.
        offset = classes[:, None].astype(np.float32) * (2.0 * self.input_size + 1.0)
        keep = nms(boxes + offset, conf, nms_iou)[:max_detections]
        return RawDetections(boxes[keep].astype(np.float32), conf[keep].astype(np.float32), classes[keep])
