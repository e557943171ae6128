"""Tracker on synthetic boxes: stable ids, motion prediction, missed frames, low-score rescue."""

from __future__ import annotations

from agent.detect.tracker import Tracker, TrackerConfig
from tests.fixtures.detect import CLASS_IDS, Det


def box(x: float, y: float, w: float = 40, h: float = 80) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def det(x: float, y: float, label: str = "car", score: float = 0.9, w: float = 40, h: float = 80) -> Det:
    return Det(label, CLASS_IDS[label], score, box(x, y, w, h))


def test_two_objects_passing_each_other_keep_their_ids() -> None:
    tr = Tracker()
    seen: dict[int, list[float]] = {}
    for i in range(30):
        a = det(100 + i * 15, 200)
        b = det(550 - i * 15, 230)  # overlaps a for a few frames around i = 15
        out = tr.update([a, b], i * 0.1)
        for t in out.active:
            seen.setdefault(t.track_id, []).append(t.box[0])
    assert sorted(seen) == [1, 2]
    xs1, xs2 = seen[1], seen[2]
    assert xs1 == sorted(xs1) and xs2 == sorted(xs2, reverse=True)  # no swap
    assert len(xs1) == len(xs2) == 29  # confirmed from the 2nd frame on, every frame after


def test_motion_prediction_follows_a_fast_object() -> None:
    tr = Tracker()
    x, ids = 100.0, []
    for i in range(20):
        x += 20 if i < 4 else 36  # later steps overlap the previous box by only 4 px of 40
        out = tr.update([det(x, 300)], i * 0.2)
        ids += [t.track_id for t in out.active]
    assert ids == [1] * 19  # reported in every frame after confirmation, never re-created


def test_missed_detections_keep_the_id() -> None:
    tr = Tracker(TrackerConfig(max_lost_s=1.0))
    ids = []
    for i in range(20):
        dets = [] if 8 <= i <= 11 else [det(100 + i * 10, 300)]  # 4 frames missed (0.4 s)
        out = tr.update(dets, i * 0.1)
        ids += [t.track_id for t in out.active]
        if 8 <= i <= 11:
            assert [t.track_id for t in out.lost] == [1]
    assert set(ids) == {1} and len(ids) == 15


def test_track_gone_longer_than_max_lost_gets_a_new_id_and_is_reported_removed() -> None:
    tr = Tracker(TrackerConfig(max_lost_s=0.5))
    removed = []
    ids = set()
    for i in range(30):
        dets = [] if 5 <= i <= 14 else [det(100, 300)]
        out = tr.update(dets, i * 0.1)
        removed += [t.track_id for t in out.removed]
        ids |= {t.track_id for t in out.active}
    assert removed == [1]
    assert ids == {1, 2}


def test_low_score_detections_keep_a_track_but_never_start_one() -> None:
    tr = Tracker(TrackerConfig(max_lost_s=0.3))
    ids = []
    for i in range(25):
        score = 0.9 if i < 5 else 0.25  # occluded: the model's score drops below the start threshold
        out = tr.update([det(100 + i * 5, 300, score=score), det(600, 300, "person", 0.25)], i * 0.1)
        ids += [t.track_id for t in out.active]
    assert set(ids) == {1} and len(ids) == 24


def test_single_false_positive_is_never_reported() -> None:
    tr = Tracker()
    out = tr.update([det(100, 100)], 0.0)
    assert out.active == []
    out = tr.update([], 0.1)
    assert out.active == [] and out.lost == []
    assert tr.update([det(500, 500)], 0.2).active == []


def test_cyclist_person_and_bicycle_boxes_stay_two_tracks() -> None:
    tr = Tracker()
    labels: dict[int, set[str]] = {}
    for i in range(15):
        x = 100 + i * 10
        out = tr.update(
            [det(x, 200, "person", 0.8, 40, 90), det(x - 5, 240, "bicycle", 0.6, 50, 60)], i * 0.1
        )
        for t in out.active:
            labels.setdefault(t.track_id, set()).add(t.label)
    assert sorted(labels.values(), key=sorted) == [{"bicycle"}, {"person"}]


def test_label_is_the_score_weighted_majority_within_a_group() -> None:
    tr = Tracker()
    for i in range(10):
        label = "truck" if i == 3 else "car"
        out = tr.update([det(100 + i * 5, 300, label, 0.8)], i * 0.1)
    assert [t.label for t in out.active] == ["car"]


def test_time_going_backwards_resets_the_tracker() -> None:
    tr = Tracker()
    for i in range(3):
        tr.update([det(100, 100)], 10 + i * 0.1)
    out = tr.update([det(100, 100)], 0.0)
    assert [t.track_id for t in out.removed] == [1]
    assert out.active == []
