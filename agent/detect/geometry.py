"""Plane geometry for rules: side of a line, segment intersection, point in polygon, self-intersection.

Everything works on plain float tuples in normalized image coordinates (x right, y down, 0..1), so
rules do not depend on the detection resolution. Kept free of numpy: the rule engine calls these a
few times per track per frame, where tuple arithmetic is faster than array setup.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]

_EPS = 1e-12


def cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o). In image coordinates (y down) > 0 means b is clockwise of a."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def signed_distance(p: Point, a: Point, b: Point) -> float:
    """Distance from p to the infinite line a->b; > 0 on the right-hand side of a->b as seen on screen.

    "Right-hand side" is where you would point your right arm walking from a to b on the image
    (e.g. below a left-to-right line). Degenerate lines give 0.
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = (dx * dx + dy * dy) ** 0.5
    if length < _EPS:
        return 0.0
    return cross(a, b, p) / length


def line_param(p: Point, q: Point, a: Point, b: Point) -> float | None:
    """Where the segment p->q meets the infinite line a->b, as a fraction t along a->b (0 at a, 1 at b).

    None when p->q is parallel to the line. Used to check a side change happened across the
    drawn segment, not around one of its ends.
    """
    rx, ry = q[0] - p[0], q[1] - p[1]
    sx, sy = b[0] - a[0], b[1] - a[1]
    denom = rx * sy - ry * sx
    if abs(denom) < _EPS:
        return None
    # Solve p + u*r = a + t*s for t.
    return ((a[0] - p[0]) * ry - (a[1] - p[1]) * rx) / denom


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    return (
        min(a[0], b[0]) - 1e-12 <= p[0] <= max(a[0], b[0]) + 1e-12
        and min(a[1], b[1]) - 1e-12 <= p[1] <= max(a[1], b[1]) + 1e-12
    )


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when closed segments p1p2 and q1q2 share a point (touching counts)."""
    d1 = cross(q1, q2, p1)
    d2 = cross(q1, q2, p2)
    d3 = cross(p1, p2, q1)
    d4 = cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    if abs(d1) < _EPS and _on_segment(p1, q1, q2):
        return True
    if abs(d2) < _EPS and _on_segment(p2, q1, q2):
        return True
    if abs(d3) < _EPS and _on_segment(q1, p1, p2):
        return True
    return abs(d4) < _EPS and _on_segment(q2, p1, p2)


def polygon_self_intersection(points: Sequence[Point]) -> tuple[int, int] | None:
    """Indices (i, j) of two non-adjacent edges that intersect, or None for a simple polygon.

    Edge i joins points[i] and points[i+1] (wrapping). O(n^2), fine for hand-drawn zones.
    """
    n = len(points)
    for i in range(n):
        a1, a2 = points[i], points[(i + 1) % n]
        for j in range(i + 1, n):
            if j == i or (j + 1) % n == i or (i + 1) % n == j:
                continue  # adjacent edges share a vertex by construction
            b1, b2 = points[j], points[(j + 1) % n]
            if segments_intersect(a1, a2, b1, b2):
                return i, j
    return None


def polygon_area(points: Sequence[Point]) -> float:
    """Absolute area (shoelace)."""
    s = 0.0
    n = len(points)
    for i in range(n):
        x1, y1 = points[i]
        x2, y2 = points[(i + 1) % n]
        s += x1 * y2 - x2 * y1
    return abs(s) / 2.0


def point_in_polygon(p: Point, poly: Sequence[Point]) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way (rules never depend on it)."""
    x, y = p
    inside = False
    n = len(poly)
    j = n - 1
    for i in range(n):
        xi, yi = poly[i]
        xj, yj = poly[j]
        if (yi > y) != (yj > y):
            x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
            if x < x_cross:
                inside = not inside
        j = i
    return inside


def distance_to_polygon_edge(p: Point, poly: Sequence[Point]) -> float:
    """Shortest distance from p to the polygon's boundary (for zone hysteresis)."""
    best = float("inf")
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        dx, dy = b[0] - a[0], b[1] - a[1]
        len2 = dx * dx + dy * dy
        t = 0.0 if len2 < _EPS else max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2))
        cx, cy = a[0] + t * dx, a[1] + t * dy
        d = ((p[0] - cx) ** 2 + (p[1] - cy) ** 2) ** 0.5
        best = min(best, d)
    return best
