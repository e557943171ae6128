"""Rule engine: turns confirmed tracks into line crossings, zone entries/exits and rule events.

Design choices (each one is a test in tests/test_detect_rules_*.py):
- A track is reduced to one reference point (bottom centre of its box by default: where the
  object touches the road), in normalized coordinates.
- Lines use hysteresis: a track has a confirmed side only once its point is more than ``margin``
  away from the line; a crossing is counted when the confirmed side flips, so jitter on the line
  never counts and a real crossing counts exactly once. The flip must happen across the drawn
  segment (not around an end). A track that goes back counts again, in the other direction.
- State is kept per track id, and the tracker keeps ids through short losses, so a track lost and
  found again continues where it was (no double count). A new id starts with no side: it can
  only count after it is seen on one side and then the other.
- Zones use a boundary margin too; dwell time runs from the entry to the last sighting and
  survives short losses (a lost track keeps its entry time; it is not counted while unseen).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from agent.detect.geometry import (
    Point,
    distance_to_polygon_edge,
    line_param,
    point_in_polygon,
    signed_distance,
)
from agent.detect.rules_settings import Anchor, CameraRules, Direction, LineRule, ZoneRule
from agent.detect.tracker import Box, Track

RuleKind = Literal["dwell", "restricted", "wrong_way"]


def reference_point(box: Box, width: int, height: int, anchor: Anchor) -> Point:
    x1, y1, x2, y2 = box
    cx = (x1 + x2) / 2.0 / width
    cy = (y2 if anchor == "bottom_center" else (y1 + y2) / 2.0) / height
    return (cx, cy)


@dataclass(frozen=True)
class TrackView:
    """The part of a track a rule result keeps (a copy: the track keeps changing)."""

    track_id: int
    label: str
    class_id: int
    score: float
    box: Box

    @classmethod
    def of(cls, t: Track) -> TrackView:
        return cls(t.track_id, t.label, t.class_id, t.score, t.box)


@dataclass(frozen=True)
class Crossing:
    ts: float
    line: str
    direction: Direction
    track: TrackView
    counted: bool
    """False when the line does not count this class (the crossing still feeds wrong-way)."""


@dataclass(frozen=True)
class RuleEvent:
    ts: float
    rule: RuleKind
    rule_name: str
    track: TrackView
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    dwell_s: float | None = None


@dataclass(frozen=True)
class ZoneExit:
    zone: str
    label: str
    track_id: int
    dwell_s: float


@dataclass
class RulesOutput:
    crossings: list[Crossing] = field(default_factory=list)
    events: list[RuleEvent] = field(default_factory=list)
    entries: list[tuple[str, str]] = field(default_factory=list)
    """(zone, label) of each entry this frame."""
    exits: list[ZoneExit] = field(default_factory=list)
    occupancy: dict[str, dict[str, int]] = field(default_factory=dict)
    """zone -> label -> tracks inside now (seen or briefly lost)."""


@dataclass
class _LineState:
    side: int
    point: Point


@dataclass
class _ZoneState:
    inside: bool
    enter_ts: float = 0.0
    label: str = ""
    dwell_fired: bool = False
    restricted_fired: bool = False
    wrong_way_fired: bool = False
    max_proj: float = -math.inf


class RulesEngine:
    """Per-camera rule state. Call :meth:`update` once per processed frame, from one task."""

    def __init__(self, rules: CameraRules | None = None) -> None:
        self._rules = rules or CameraRules()
        self._lines: dict[tuple[int, str], _LineState] = {}
        self._zones: dict[tuple[int, str], _ZoneState] = {}

    @property
    def rules(self) -> CameraRules:
        return self._rules

    def set_rules(self, rules: CameraRules) -> None:
        """Swap rules at run time. State of rules that did not change is kept (no lost counts)."""
        old_lines = {r.name: r for r in self._rules.lines}
        old_zones = {r.name: r for r in self._rules.zones}
        keep_l = {r.name for r in rules.lines if old_lines.get(r.name) == r}
        keep_z = {r.name for r in rules.zones if old_zones.get(r.name) == r}
        self._lines = {k: v for k, v in self._lines.items() if k[1] in keep_l}
        self._zones = {k: v for k, v in self._zones.items() if k[1] in keep_z}
        self._rules = rules

    def reset(self) -> None:
        """Forget all per-track state (scene changed: PTZ moved, stream restarted)."""
        self._lines.clear()
        self._zones.clear()

    def update(
        self,
        ts: float,
        active: Iterable[Track],
        lost: Iterable[Track],
        removed: Iterable[Track],
        width: int,
        height: int,
    ) -> RulesOutput:
        out = RulesOutput()
        for t in active:
            for line in self._rules.lines:
                self._update_line(ts, t, line, width, height, out)
            for zone in self._rules.zones:
                self._update_zone(ts, t, zone, width, height, out)
        lost_list = list(lost)
        for t in lost_list:  # a briefly lost track keeps its zone state; dwell counts to when last seen
            for zone in self._rules.zones:
                st = self._zones.get((t.track_id, zone.name))
                if st is not None and st.inside:
                    self._check_dwell(t.last_ts, t, zone, st, out)
        for t in removed:
            self._forget(ts, t, out)
        zones = {z.name for z in self._rules.zones}
        for (_, name), st in self._zones.items():
            if st.inside and name in zones:
                occ = out.occupancy.setdefault(name, {})
                occ[st.label] = occ.get(st.label, 0) + 1
        for z in zones:
            out.occupancy.setdefault(z, {})
        return out

    # -- lines -----------------------------------------------------------------------------------

    def _update_line(
        self, ts: float, t: Track, line: LineRule, width: int, height: int, out: RulesOutput
    ) -> None:
        p = reference_point(t.box, width, height, line.anchor)
        a, b = line.points
        d = signed_distance(p, a, b)
        if abs(d) < line.margin:
            return  # inside the hysteresis band: no side decision
        side = 1 if d > 0 else -1
        key = (t.track_id, line.name)
        st = self._lines.get(key)
        if st is None:
            self._lines[key] = _LineState(side, p)
            return
        if side != st.side:
            tpar = line_param(st.point, p, a, b)
            length = math.hypot(b[0] - a[0], b[1] - a[1])
            tol = line.margin / length
            if tpar is not None and -tol <= tpar <= 1.0 + tol:
                direction: Direction = "forward" if side > 0 else "backward"
                view = TrackView.of(t)
                out.crossings.append(Crossing(ts, line.name, direction, view, t.label in line.classes))
                if (
                    line.allowed_direction != "any"
                    and direction != line.allowed_direction
                    and t.label in line.classes
                ):
                    out.events.append(
                        RuleEvent(ts, "wrong_way", line.name, view, line=line.name, direction=direction)
                    )
        st.side = side
        st.point = p

    # -- zones -----------------------------------------------------------------------------------

    def _update_zone(
        self, ts: float, t: Track, zone: ZoneRule, width: int, height: int, out: RulesOutput
    ) -> None:
        p = reference_point(t.box, width, height, zone.anchor)
        key = (t.track_id, zone.name)
        st = self._zones.get(key)
        inside_now = point_in_polygon(p, zone.points)
        was_inside = st is not None and st.inside
        if inside_now != was_inside and zone.margin > 0 and st is not None:
            if distance_to_polygon_edge(p, zone.points) < zone.margin:
                inside_now = was_inside  # within the boundary band: keep the previous state
        if st is None:
            st = _ZoneState(inside=False)
            self._zones[key] = st
        if inside_now and not st.inside:
            st.inside, st.enter_ts, st.label = True, ts, t.label
            st.max_proj = -math.inf
            st.wrong_way_fired = False
            out.entries.append((zone.name, t.label))
            if zone.kind == "restricted" and t.label in zone.classes and not st.restricted_fired:
                st.restricted_fired = True
                out.events.append(RuleEvent(ts, "restricted", zone.name, TrackView.of(t), zone=zone.name))
        elif not inside_now and st.inside:
            st.inside = False
            out.exits.append(ZoneExit(zone.name, st.label, t.track_id, ts - st.enter_ts))
            st.dwell_fired = False
            return
        if not st.inside:
            return
        st.label = t.label
        self._check_dwell(ts, t, zone, st, out)
        if zone.kind == "wrong_way" and zone.allowed_direction is not None and t.label in zone.classes:
            ux, uy = zone.allowed_direction
            n = math.hypot(ux, uy)
            proj = (p[0] * ux + p[1] * uy) / n
            if proj > st.max_proj:
                st.max_proj = proj
            elif st.max_proj - proj >= zone.min_travel and not st.wrong_way_fired:
                st.wrong_way_fired = True
                out.events.append(RuleEvent(ts, "wrong_way", zone.name, TrackView.of(t), zone=zone.name))

    def _check_dwell(self, ts: float, t: Track, zone: ZoneRule, st: _ZoneState, out: RulesOutput) -> None:
        if zone.kind != "dwell" or zone.dwell_s is None or st.dwell_fired or t.label not in zone.classes:
            return
        dwell = ts - st.enter_ts
        if dwell > zone.dwell_s:
            st.dwell_fired = True
            out.events.append(
                RuleEvent(ts, "dwell", zone.name, TrackView.of(t), zone=zone.name, dwell_s=round(dwell, 3))
            )

    def _forget(self, ts: float, t: Track, out: RulesOutput) -> None:
        for line in self._rules.lines:
            self._lines.pop((t.track_id, line.name), None)
        for zone in self._rules.zones:
            st = self._zones.pop((t.track_id, zone.name), None)
            if st is not None and st.inside:
                # The object left unseen: its dwell ends where it was last seen.
                out.exits.append(ZoneExit(zone.name, st.label, t.track_id, max(0.0, t.last_ts - st.enter_ts)))
