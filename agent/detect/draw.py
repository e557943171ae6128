"""Minimal raster drawing on RGB uint8 arrays: boxes, lines, polygons and a 5x7 bitmap font.

Why own code: snapshots and the preview need a few boxes, lines and short labels; OpenCV or
Pillow would add tens of MB to a Raspberry Pi install for that. Everything draws in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]

CLASS_COLORS: dict[str, Color] = {
    "person": (255, 64, 64),
    "bicycle": (255, 200, 0),
    "motorcycle": (255, 128, 0),
    "car": (0, 200, 255),
    "bus": (0, 120, 255),
    "truck": (160, 100, 255),
}
DEFAULT_COLOR: Color = (0, 255, 0)

_FONT_ROWS = {
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    "A": ["01110", "10001", "10001", "11111", "10001", "10001", "10001"],
    "B": ["11110", "10001", "10001", "11110", "10001", "10001", "11110"],
    "C": ["01110", "10001", "10000", "10000", "10000", "10001", "01110"],
    "D": ["11100", "10010", "10001", "10001", "10001", "10010", "11100"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "F": ["11111", "10000", "10000", "11110", "10000", "10000", "10000"],
    "G": ["01110", "10001", "10000", "10111", "10001", "10001", "01111"],
    "H": ["10001", "10001", "10001", "11111", "10001", "10001", "10001"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "J": ["00111", "00010", "00010", "00010", "00010", "10010", "01100"],
    "K": ["10001", "10010", "10100", "11000", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "M": ["10001", "11011", "10101", "10101", "10001", "10001", "10001"],
    "N": ["10001", "10001", "11001", "10101", "10011", "10001", "10001"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "Q": ["01110", "10001", "10001", "10001", "10101", "10010", "01101"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "S": ["01111", "10000", "10000", "01110", "00001", "00001", "11110"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
    "V": ["10001", "10001", "10001", "10001", "10001", "01010", "00100"],
    "W": ["10001", "10001", "10001", "10101", "10101", "10101", "01010"],
    "X": ["10001", "10001", "01010", "00100", "01010", "10001", "10001"],
    "Y": ["10001", "10001", "10001", "01010", "00100", "00100", "00100"],
    "Z": ["11111", "00001", "00010", "00100", "01000", "10000", "11111"],
    "#": ["01010", "01010", "11111", "01010", "11111", "01010", "01010"],
    ":": ["00000", "01100", "01100", "00000", "01100", "01100", "00000"],
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    "-": ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
    "_": ["00000", "00000", "00000", "00000", "00000", "00000", "11111"],
    "/": ["00000", "00001", "00010", "00100", "01000", "10000", "00000"],
    ">": ["01000", "00100", "00010", "00001", "00010", "00100", "01000"],
    "<": ["00010", "00100", "01000", "10000", "01000", "00100", "00010"],
    "%": ["11000", "11001", "00010", "00100", "01000", "10011", "00011"],
    "=": ["00000", "00000", "11111", "00000", "11111", "00000", "00000"],
    " ": ["00000"] * 7,
    "?": ["01110", "10001", "00001", "00010", "00100", "00000", "00100"],
}
_GLYPHS: dict[str, np.ndarray] = {
    ch: np.array([[c == "1" for c in row] for row in rows], dtype=bool) for ch, rows in _FONT_ROWS.items()
}


def color_for(label: str) -> Color:
    return CLASS_COLORS.get(label, DEFAULT_COLOR)


def fill_rect(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, color: Color) -> None:
    h, w = img.shape[:2]
    x1, x2 = max(0, min(w, x1)), max(0, min(w, x2))
    y1, y2 = max(0, min(h, y1)), max(0, min(h, y2))
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = color


def draw_box(img: np.ndarray, box: Sequence[float], color: Color, thickness: int = 2) -> None:
    """Rectangle outline; the box is clipped to the image."""
    x1, y1, x2, y2 = (round(v) for v in box)
    t = thickness
    fill_rect(img, x1, y1, x2 + 1, y1 + t, color)
    fill_rect(img, x1, y2 - t + 1, x2 + 1, y2 + 1, color)
    fill_rect(img, x1, y1, x1 + t, y2 + 1, color)
    fill_rect(img, x2 - t + 1, y1, x2 + 1, y2 + 1, color)


def draw_line(
    img: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], color: Color, thickness: int = 2
) -> None:
    """Line segment in pixel coordinates (sampled every half pixel, squared pen)."""
    h, w = img.shape[:2]
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])) * 2) + 2
    xs = np.linspace(p0[0], p1[0], n)
    ys = np.linspace(p0[1], p1[1], n)
    r0 = -(thickness // 2)
    for dy in range(r0, r0 + thickness):
        for dx in range(r0, r0 + thickness):
            xi = np.clip(np.rint(xs).astype(np.int64) + dx, 0, w - 1)
            yi = np.clip(np.rint(ys).astype(np.int64) + dy, 0, h - 1)
            img[yi, xi] = color


def draw_polygon(
    img: np.ndarray, pts: Sequence[tuple[float, float]], color: Color, thickness: int = 2
) -> None:
    for i in range(len(pts)):
        draw_line(img, pts[i], pts[(i + 1) % len(pts)], color, thickness)


def text_size(text: str, scale: int = 2) -> tuple[int, int]:
    return (len(text) * 6 * scale, 7 * scale)


def draw_text(
    img: np.ndarray,
    x: int,
    y: int,
    text: str,
    color: Color = (255, 255, 255),
    scale: int = 2,
    background: Color | None = (0, 0, 0),
) -> None:
    """Upper-case 5x7 text with a 1 px gap, top-left at (x, y); unknown characters print as '?'."""
    h, w = img.shape[:2]
    tw, th = text_size(text, scale)
    if background is not None:
        fill_rect(img, x - scale, y - scale, x + tw + scale, y + th + scale, background)
    for i, ch in enumerate(text.upper()):
        glyph = _GLYPHS.get(ch, _GLYPHS["?"])
        if scale > 1:
            glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool)).astype(bool)
        gx, gy = x + i * 6 * scale, y
        gh, gw = glyph.shape
        sx1, sy1 = max(0, gx), max(0, gy)
        sx2, sy2 = min(w, gx + gw), min(h, gy + gh)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        sub = glyph[sy1 - gy : sy2 - gy, sx1 - gx : sx2 - gx]
        img[sy1:sy2, sx1:sx2][sub] = color
