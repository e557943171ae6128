"""Counting lines on synthetic tracks: exact counts, directions, hysteresis, segment ends, wrong-way."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detect.rules import RulesEngine, RulesOutput
from agent.detect.rules_settings import CameraRules, LineRule
from agent.detect.tracker import Tracker, TrackerConfig
from tests.fixtures.detect import H, W, det_at, track_at

# Horizontal line across the middle, drawn left to right: forward = moving down the image.
LINE = LineRule(name="mid", points=((0.1, 0.5), (0.9, 0.5)), margin=0.02)


def run_path(engine: RulesEngine, path: list[tuple[float, float]], tid: int = 1, label: str = "car") -> list:
    crossings = []
    for i, (x, y) in enumerate(path):
        out = engine.update(i * 0.2, [track_at(tid, x, y, i * 0.2, label)], [], [], W, H)
        crossings += out.crossings
    return crossings


def test_single_crossing_counts_once_forward() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    path = [(0.5, y) for y in (0.30, 0.38, 0.46, 0.50, 0.54, 0.62, 0.70)]
    c = run_path(eng, path)
    assert [(x.line, x.direction, x.counted) for x in c] == [("mid", "forward", True)]


def test_track_crossing_twice_counts_once_each_direction() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    down = [(0.5, y) for y in (0.30, 0.40, 0.48, 0.55, 0.65)]
    up = [(0.5, y) for y in (0.60, 0.52, 0.45, 0.35)]
    c = run_path(eng, down + up)
    assert [x.direction for x in c] == ["forward", "backward"]
    assert {x.track.track_id for x in c} == {1}


def test_jitter_on_the_line_never_counts() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    # Arrives from above, then wobbles across the line by less than the margin for 50 frames.
    path = [(0.5, 0.40), (0.5, 0.45)] + [(0.5, 0.5 + (0.015 if i % 2 else -0.015)) for i in range(50)]
    assert run_path(eng, path) == []
    # ... and when it finally leaves below, exactly one forward crossing.
    c = run_path(eng, [*path, (0.5, 0.56), (0.5, 0.60)])
    assert [x.direction for x in c] == ["forward"]


def test_jitter_after_crossing_does_not_add_counts() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    path = [(0.5, 0.40), (0.5, 0.60)] + [(0.5, 0.5 + (0.019 if i % 2 else -0.019)) for i in range(40)]
    c = run_path(eng, path)
    assert [x.direction for x in c] == ["forward"]


def test_jitter_crossing_back_and_forth_by_more_than_margin_counts_each_real_crossing() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    path = [(0.5, 0.40), (0.5, 0.60), (0.5, 0.40), (0.5, 0.60)]
    assert [x.direction for x in run_path(eng, path)] == ["forward", "backward", "forward"]


def test_passing_around_the_end_of_the_line_is_not_a_crossing() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    # Goes from above to below at x = 0.95, beyond the line's right end (0.9).
    path = [(0.95, 0.3), (0.95, 0.45), (0.96, 0.55), (0.95, 0.7)]
    assert run_path(eng, path) == []


def test_first_sighting_on_a_side_is_not_a_crossing() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    assert run_path(eng, [(0.5, 0.7), (0.5, 0.8)]) == []


def test_class_not_counted_by_line_is_reported_uncounted() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))  # default classes: vehicles only
    c = run_path(eng, [(0.5, 0.4), (0.5, 0.6)], label="person")
    assert [(x.counted, x.track.label) for x in c] == [(False, "person")]


def test_wrong_way_line_raises_event_only_against_allowed_direction() -> None:
    one_way = LINE.model_copy(update={"allowed_direction": "forward"})
    eng = RulesEngine(CameraRules(lines=[one_way]))
    events = []
    for i, y in enumerate([0.4, 0.6, 0.4]):
        out = eng.update(float(i), [track_at(7, 0.5, y, float(i))], [], [], W, H)
        events += out.events
    assert [(e.rule, e.rule_name, e.direction, e.track.track_id) for e in events] == [
        ("wrong_way", "mid", "backward", 7)
    ]


def test_lost_and_found_track_keeps_id_and_does_not_double_count() -> None:
    """Real tracker + rules: the object is missed for 4 frames right after crossing."""
    tracker = Tracker(TrackerConfig(max_lost_s=1.5))
    eng = RulesEngine(CameraRules(lines=[LINE]))
    ys = [0.30, 0.34, 0.38, 0.42, 0.46, 0.50, 0.54, 0.58, None, None, None, None, 0.74, 0.78, 0.82]
    crossings = []
    ids = set()
    for i, y in enumerate(ys):
        ts = i * 0.2
        out = tracker.update([] if y is None else [det_at(0.5, y)], ts)
        ids |= {t.track_id for t in out.active}
        r = eng.update(ts, out.active, out.lost, out.removed, W, H)
        crossings += r.crossings
    assert ids == {1}
    assert [c.direction for c in crossings] == ["forward"]


def test_track_lost_while_crossing_counts_when_found_on_the_other_side() -> None:
    tracker = Tracker(TrackerConfig(max_lost_s=1.5))
    eng = RulesEngine(CameraRules(lines=[LINE]))
    ys = [0.30, 0.34, 0.38, 0.42, None, None, None, 0.62, 0.66, 0.70]
    crossings = []
    for i, y in enumerate(ys):
        ts = i * 0.2
        out = tracker.update([] if y is None else [det_at(0.5, y)], ts)
        crossings += eng.update(ts, out.active, out.lost, out.removed, W, H).crossings
    assert [(c.direction, c.track.track_id) for c in crossings] == [("forward", 1)]


def test_two_tracks_counted_per_class_and_direction() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    crossings = []
    for i in range(6):
        y_down = 0.35 + i * 0.06
        y_up = 0.65 - i * 0.06
        ts = i * 0.2
        out: RulesOutput = eng.update(
            ts,
            [track_at(1, 0.3, y_down, ts, "motorcycle"), track_at(2, 0.7, y_up, ts, "bus")],
            [],
            [],
            W,
            H,
        )
        crossings += out.crossings
    assert sorted((c.track.label, c.direction) for c in crossings) == [
        ("bus", "backward"),
        ("motorcycle", "forward"),
    ]


def test_set_rules_keeps_state_of_unchanged_lines_and_resets_changed_ones() -> None:
    other = LineRule(name="other", points=((0.1, 0.3), (0.9, 0.3)))
    eng = RulesEngine(CameraRules(lines=[LINE, other]))
    eng.update(0.0, [track_at(1, 0.5, 0.4, 0.0)], [], [], W, H)
    moved = other.model_copy(update={"points": ((0.1, 0.7), (0.9, 0.7))})
    eng.set_rules(CameraRules(lines=[LINE, moved]))
    out = eng.update(1.0, [track_at(1, 0.5, 0.6, 1.0)], [], [], W, H)
    # "mid" remembered the side (counts), "other" was redefined and starts fresh (no count).
    assert [(c.line, c.direction) for c in out.crossings] == [("mid", "forward")]


def test_removed_track_state_is_forgotten_and_a_new_id_starts_without_side() -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    t = track_at(1, 0.5, 0.4, 0.0)
    eng.update(0.0, [t], [], [], W, H)
    eng.update(1.0, [], [], [t], W, H)
    out = eng.update(2.0, [track_at(1, 0.5, 0.6, 2.0)], [], [], W, H)
    assert out.crossings == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.2, max_value=0.8), min_size=2, max_size=60))
def test_random_walks_alternate_directions_and_net_count_matches_sides(ys: list[float]) -> None:
    eng = RulesEngine(CameraRules(lines=[LINE]))
    dirs = [c.direction for c in run_path(eng, [(0.5, y) for y in ys])]
    assert all(a != b for a, b in itertools.pairwise(dirs))  # never twice the same way in a row
    sides = [1 if y - 0.5 >= 0.02 else -1 for y in ys if abs(y - 0.5) >= 0.02]
    net = dirs.count("forward") - dirs.count("backward")
    assert net == ((sides[-1] - sides[0]) // 2 if sides else 0)
    assert len(dirs) == sum(1 for a, b in itertools.pairwise(sides) if a != b)
