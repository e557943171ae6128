"""Zones on synthetic tracks: dwell just under/over N s, restricted entry, wrong-way, occupancy."""

from __future__ import annotations

from agent.detect.rules import RulesEngine
from agent.detect.rules_settings import CameraRules, ZoneRule
from tests.fixtures.detect import H, W, track_at

SQUARE = [(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7)]


def dwell_zone(n: float = 5.0) -> ZoneRule:
    return ZoneRule(name="no_stop", points=SQUARE, kind="dwell", dwell_s=n, classes=["car", "truck"])


def stay(eng: RulesEngine, seconds: float, step: float = 0.1, tid: int = 1, label: str = "car") -> list:
    events = []
    ts = 0.0
    while ts <= seconds + 1e-9:
        events += eng.update(ts, [track_at(tid, 0.5, 0.5, ts, label)], [], [], W, H).events
        ts = round(ts + step, 6)
    return events


def test_dwell_just_under_threshold_raises_nothing() -> None:
    eng = RulesEngine(CameraRules(zones=[dwell_zone(5.0)]))
    assert stay(eng, 4.9) == []


def test_dwell_just_over_threshold_raises_exactly_one_event() -> None:
    eng = RulesEngine(CameraRules(zones=[dwell_zone(5.0)]))
    events = stay(eng, 8.0)
    assert [(e.rule, e.zone, e.track.track_id) for e in events] == [("dwell", "no_stop", 1)]
    assert events[0].dwell_s is not None and 5.0 < events[0].dwell_s <= 5.1 + 1e-6


def test_dwell_ignores_classes_not_listed() -> None:
    eng = RulesEngine(CameraRules(zones=[dwell_zone(1.0)]))
    assert stay(eng, 3.0, label="person") == []


def test_dwell_clock_survives_a_short_loss_but_only_counts_seen_time() -> None:
    eng = RulesEngine(CameraRules(zones=[dwell_zone(2.0)]))
    t = track_at(1, 0.5, 0.5, 0.0)
    events = eng.update(0.0, [t], [], [], W, H).events
    # Seen at 0 s, then lost (not matched) until 2.5 s: unseen time does not fire the event ...
    for ts in (0.5, 1.0, 1.5, 2.0, 2.5):
        events += eng.update(ts, [], [t], [], W, H).events
    assert events == []
    # ... found again at 2.6 s: the clock kept running from the entry at 0 s.
    events += eng.update(2.6, [track_at(1, 0.5, 0.5, 2.6)], [], [], W, H).events
    assert [(e.rule, e.dwell_s) for e in events] == [("dwell", 2.6)]


def test_leaving_and_reentering_restarts_the_dwell_clock() -> None:
    eng = RulesEngine(CameraRules(zones=[dwell_zone(2.0)]))
    events = []
    script = [(0.0, 0.5), (1.5, 0.5), (1.6, 0.9), (1.7, 0.5), (3.6, 0.5), (3.8, 0.5)]
    for ts, y in script:
        events += eng.update(ts, [track_at(1, 0.5, y, ts)], [], [], W, H).events
    # Re-entered at 1.7 s: 1.9 s inside at 3.6 s (no event), 2.1 s at 3.8 s (event).
    assert [(e.rule, round(e.dwell_s or 0, 2)) for e in events] == [("dwell", 2.1)]


def test_restricted_zone_entry_raises_one_event_per_track() -> None:
    zone = ZoneRule(name="tracks", points=SQUARE, kind="restricted", classes=["person"])
    eng = RulesEngine(CameraRules(zones=[zone]))
    events = []
    for i, x in enumerate([0.1, 0.2, 0.35, 0.5, 0.6, 0.5]):
        ts = i * 0.2
        events += eng.update(
            ts, [track_at(1, x, 0.5, ts, "person"), track_at(2, x, 0.5, ts, "car")], [], [], W, H
        ).events
    assert [(e.rule, e.zone, e.track.track_id, e.track.label) for e in events] == [
        ("restricted", "tracks", 1, "person")
    ]


def test_zone_boundary_jitter_does_not_re_enter() -> None:
    zone = ZoneRule(name="z", points=SQUARE, kind="occupancy", margin=0.02)
    eng = RulesEngine(CameraRules(zones=[zone]))
    entries = []
    for i in range(30):
        x = 0.3 + (0.01 if i % 2 else -0.01) if i > 0 else 0.1
        entries += eng.update(i * 0.1, [track_at(1, x, 0.5, i * 0.1)], [], [], W, H).entries
    assert entries == []  # never further than the margin inside: no entry
    entries += eng.update(4.0, [track_at(1, 0.4, 0.5, 4.0)], [], [], W, H).entries
    for i in range(30):
        x = 0.3 + (0.01 if i % 2 else -0.01)
        entries += eng.update(5.0 + i * 0.1, [track_at(1, x, 0.5, 5.0 + i * 0.1)], [], [], W, H).entries
    assert entries == [("z", "car")]


def wrong_way_zone() -> ZoneRule:
    # Allowed direction: down the image.
    return ZoneRule(
        name="lane", points=SQUARE, kind="wrong_way", allowed_direction=(0.0, 1.0), min_travel=0.05
    )


def test_wrong_way_zone_event_when_moving_against_direction() -> None:
    eng = RulesEngine(CameraRules(zones=[wrong_way_zone()]))
    events = []
    for i, y in enumerate([0.68, 0.64, 0.60, 0.56, 0.52, 0.48, 0.44]):
        events += eng.update(i * 0.2, [track_at(3, 0.5, y, i * 0.2)], [], [], W, H).events
    assert [(e.rule, e.zone, e.track.track_id) for e in events] == [("wrong_way", "lane", 3)]


def test_wrong_way_zone_quiet_when_moving_with_direction_or_jittering() -> None:
    eng = RulesEngine(CameraRules(zones=[wrong_way_zone()]))
    events = []
    for i, y in enumerate([0.32, 0.36, 0.40, 0.44, 0.48, 0.52]):
        events += eng.update(i * 0.2, [track_at(1, 0.5, y, i * 0.2)], [], [], W, H).events
    for i in range(40):  # a stopped car whose box wobbles by 3 % of the frame
        y = 0.5 + (0.015 if i % 2 else -0.015)
        events += eng.update(10 + i * 0.2, [track_at(2, 0.5, y, 10 + i * 0.2)], [], [], W, H).events
    assert events == []


def test_occupancy_counts_tracks_inside_per_class_and_exit_reports_dwell() -> None:
    zone = ZoneRule(name="z", points=SQUARE)
    eng = RulesEngine(CameraRules(zones=[zone]))
    out = eng.update(
        0.0,
        [track_at(1, 0.4, 0.5, 0.0), track_at(2, 0.6, 0.5, 0.0), track_at(3, 0.5, 0.5, 0.0, "person")],
        [],
        [],
        W,
        H,
    )
    assert out.occupancy == {"z": {"car": 2, "person": 1}}
    out = eng.update(3.0, [track_at(1, 0.9, 0.5, 3.0)], [], [], W, H)
    assert [(x.zone, x.track_id, x.dwell_s) for x in out.exits] == [("z", 1, 3.0)]
    assert out.occupancy == {"z": {"car": 1, "person": 1}}
