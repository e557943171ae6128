"""Annotated preview of the latest processed frame: boxes with class and track id, lines with their
forward direction, zones, and a status bar with the counts since start.

Written as a JPEG file (atomic replace) every few seconds by the pipeline so an installer can check
that lines and zones sit where intended (``make run`` demo). Rendering is pure (array in, array
out) and runs in a worker thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from agent.detect.draw import color_for, draw_box, draw_line, draw_polygon, draw_text
from agent.detect.rules_settings import CameraRules
from agent.detect.snapshots import encode_jpeg
from agent.detect.tracker import Track

LINE_COLOR = (255, 255, 0)
ZONE_COLORS = {
    "occupancy": (0, 255, 128),
    "dwell": (255, 160, 0),
    "restricted": (255, 0, 0),
    "wrong_way": (255, 0, 255),
}


def render_preview(
    image: np.ndarray,
    tracks: Sequence[Track],
    rules: CameraRules,
    totals: Mapping[str, int] | None = None,
    status: str = "",
) -> np.ndarray:
    """A copy of ``image`` with rules and tracks drawn. ``totals``: short text items, e.g. line counts."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = 2 if min(h, w) >= 300 else 1
    for zone in rules.zones:
        pts = [(x * (w - 1), y * (h - 1)) for x, y in zone.points]
        color = ZONE_COLORS.get(zone.kind, (0, 255, 128))
        draw_polygon(out, pts, color, 2)
        if zone.kind == "wrong_way" and zone.allowed_direction is not None:
            cx = sum(p[0] for p in pts) / len(pts)
            cy = sum(p[1] for p in pts) / len(pts)
            _arrow(out, (cx, cy), zone.allowed_direction, 0.08 * min(w, h), color)
        draw_text(out, int(pts[0][0]) + 3, int(pts[0][1]) + 3, zone.name, color, scale, (0, 0, 0))
    for line in rules.lines:
        (x1, y1), (x2, y2) = line.points
        a, b = (x1 * (w - 1), y1 * (h - 1)), (x2 * (w - 1), y2 * (h - 1))
        draw_line(out, a, b, LINE_COLOR, 2)
        # Forward normal: the right-hand side of a->b on screen (see rules_settings).
        dx, dy = b[0] - a[0], b[1] - a[1]
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        _arrow(out, mid, (-dy, dx), 0.06 * min(w, h), LINE_COLOR)
        draw_text(out, int(a[0]) + 3, int(a[1]) + 3, line.name, LINE_COLOR, scale, (0, 0, 0))
    for t in tracks:
        color = color_for(t.label)
        draw_box(out, t.box, color, 2)
        caption = f"{t.label} {t.track_id}"
        draw_text(out, int(t.box[0]), max(0, int(t.box[1]) - 8 * scale - 2), caption, (0, 0, 0), scale, color)
    parts = [status] if status else []
    if totals:
        parts += [f"{k}={v}" for k, v in totals.items()]
    if parts:
        draw_text(
            out,
            4,
            h - 8 * scale - 4,
            "  ".join(parts)[: max(1, w // (6 * scale) - 1)],
            (255, 255, 255),
            scale,
        )
    return out


def _arrow(
    img: np.ndarray,
    origin: tuple[float, float],
    vec: tuple[float, float],
    length: float,
    color: tuple[int, int, int],
) -> None:
    n = math.hypot(*vec)
    if n < 1e-9:
        return
    ux, uy = vec[0] / n, vec[1] / n
    tip = (origin[0] + ux * length, origin[1] + uy * length)
    draw_line(img, origin, tip, color, 2)
    for ang in (2.5, -2.5):
        c, s = math.cos(ang), math.sin(ang)
        bx, by = ux * c - uy * s, ux * s + uy * c
        draw_line(img, tip, (tip[0] + bx * length * 0.35, tip[1] + by * length * 0.35), color, 2)


def write_jpeg_atomic(path: Path, image: np.ndarray) -> None:
    data = encode_jpeg(image, 5)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
