"""Event snapshots: a JPEG of the frame with the object's box drawn and a clean crop of the object,
kept on disk under a byte quota (oldest evicted first) and read back by ``get_snapshot``.

JPEG encoding uses PyAV's mjpeg encoder (already a dependency for decoding): no OpenCV/Pillow.
Each image is bounded to ``max_bytes`` (quality, then resolution, is lowered until it fits) so a
snapshot always fits one MQTT response. Files: ``<root>/<camera>/<id>.jpg`` and ``<id>.crop.jpg``,
mode 0600 (they may show people). Synchronous and thread-safe: call from a worker thread.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from agent.detect.draw import color_for, draw_box, draw_text, text_size

_ID = re.compile(r"^[0-9a-f]{32}$")
_CAMERA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SnapshotKind = Literal["full", "crop"]


def encode_jpeg(img: np.ndarray, q: int = 4) -> bytes:
    """RGB uint8 HxWx3 -> baseline JPEG. ``q`` is the mjpeg qscale (2 best .. 31 smallest)."""
    h, w = img.shape[:2]
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = w, h
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    ctx.options = {"qmin": str(q), "qmax": str(q)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuvj420p")
    frame.pts = 0
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


def encode_bounded(img: np.ndarray, max_bytes: int) -> bytes:
    """Encode, lowering quality then halving resolution until the JPEG fits ``max_bytes``."""
    while True:
        for q in (4, 8, 16, 31):
            data = encode_jpeg(img, q)
            if len(data) <= max_bytes:
                return data
        if min(img.shape[:2]) < 32:
            return data  # cannot shrink further; tiny images are far below any sane bound
        img = img[::2, ::2]


def crop_box(img: np.ndarray, box: tuple[float, float, float, float], pad: float = 0.2) -> np.ndarray:
    """The box enlarged by ``pad`` of its size on each side (at least 16 px), clipped to the image."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    bw, bh = max(1.0, x2 - x1), max(1.0, y2 - y1)
    px, py = max(16.0, bw * pad), max(16.0, bh * pad)
    cx1, cy1 = int(max(0, x1 - px)), int(max(0, y1 - py))
    cx2, cy2 = int(min(w, x2 + px)), int(min(h, y2 + py))
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        return img[: min(h, 16), : min(w, 16)]
    return img[cy1:cy2, cx1:cx2]


def annotate(img: np.ndarray, box: tuple[float, float, float, float], caption: str) -> np.ndarray:
    """A copy of the frame with the box and a caption drawn (the evidence view)."""
    out = img.copy()
    color = color_for(caption.split(" ")[0].lower())
    thick = max(2, round(min(img.shape[:2]) / 240))
    draw_box(out, box, color, thick)
    scale = 2 if min(img.shape[:2]) >= 240 else 1
    tw, th = text_size(caption, scale)
    x = int(min(max(0.0, box[0]), max(0, img.shape[1] - tw)))
    y = int(box[1]) - th - 2 * scale
    if y < 0:
        y = int(box[3]) + 2 * scale
    draw_text(out, x, y, caption, (255, 255, 255), scale, background=color)
    return out


class SnapshotStore:
    def __init__(self, root: Path, quota_bytes: int, max_bytes: int = 256 * 1024) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._files: OrderedDict[Path, int] = OrderedDict()
        self._total = 0
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        found: list[tuple[float, Path, int]] = []
        for p in root.glob("*/*.jpg"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            found.append((st.st_mtime, p, st.st_size))
        for _, p, size in sorted(found):
            self._files[p] = size
            self._total += size
        self.evictions = 0

    @property
    def usage_bytes(self) -> int:
        return self._total

    def _path(self, camera: str, sid: str, kind: SnapshotKind) -> Path:
        if not _ID.match(sid) or not _CAMERA.match(camera):
            raise ValueError("invalid snapshot id or camera name")
        return self.root / camera / (f"{sid}.jpg" if kind == "full" else f"{sid}.crop.jpg")

    def save(
        self, camera: str, sid: str, image: np.ndarray, box: tuple[float, float, float, float], caption: str
    ) -> int:
        """Write the annotated frame and the clean crop; evict oldest files over quota. Returns bytes."""
        full = encode_bounded(annotate(image, box, caption), self.max_bytes)
        crop = encode_bounded(crop_box(image, box), self.max_bytes)
        written = 0
        for kind, data in (("full", full), ("crop", crop)):
            path = self._path(camera, sid, kind)  # type: ignore[arg-type]
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            with self._lock:
                old = self._files.pop(path, 0)
                self._files[path] = len(data)
                self._total += len(data) - old
            written += len(data)
        self._evict()
        return written

    def _evict(self) -> None:
        with self._lock:
            while self._total > self.quota_bytes and len(self._files) > 2:
                path, size = self._files.popitem(last=False)
                self._total -= size
                self.evictions += 1
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def read(self, camera: str, sid: str, kind: SnapshotKind) -> bytes | None:
        path = self._path(camera, sid, kind)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, camera: str, sid: str) -> None:
        for kind in ("full", "crop"):
            path = self._path(camera, sid, kind)  # type: ignore[arg-type]
            with self._lock:
                size = self._files.pop(path, None)
                if size is not None:
                    self._total -= size
            try:
                path.unlink()
            except FileNotFoundError:
                pass
