"""Count aggregation into wall-clock buckets and the SQLite count store."""

from __future__ import annotations

from agent.detect.counts import CountAggregator, CountStore
from agent.detect.messages import GetCountsParams
from agent.detect.rules import Crossing, RulesOutput, TrackView, ZoneExit

BASE = 60 * 28_333_334


def crossing(line: str, label: str, direction: str) -> RulesOutput:
    view = TrackView(1, label, 0, 0.9, (0, 0, 1, 1))
    return RulesOutput(crossings=[Crossing(0.0, line, direction, view, True)])  # type: ignore[arg-type]


def test_buckets_close_on_the_next_bucket_or_timer_and_never_twice() -> None:
    agg = CountAggregator("cam1", 60)
    agg.set_rule_names(["a"])
    assert agg.add_frame(BASE + 1, crossing("a", "car", "forward")) == []
    assert agg.add_frame(BASE + 30, crossing("a", "car", "forward")) == []
    assert agg.add_frame(BASE + 59, crossing("a", "bus", "backward")) == []
    (rec,) = agg.add_frame(BASE + 61, RulesOutput())
    assert (rec.start, rec.end, rec.frames, rec.rules) == (BASE, BASE + 60, 3, ["a"])
    assert [(c.label, c.direction, c.count) for c in rec.lines] == [
        ("bus", "backward", 1),
        ("car", "forward", 2),
    ]
    assert agg.roll(BASE + 119) == []
    (timed,) = agg.roll(BASE + 120)  # stream stalled: the timer closes the bucket
    assert (timed.start, timed.frames) == (BASE + 60, 1)
    # A late frame stamped inside the bucket the timer already closed goes to the next bucket.
    agg.add_frame(BASE + 119.5, crossing("a", "car", "forward"))
    (late,) = agg.flush()
    assert late.start == BASE + 120 and late.lines[0].count == 1


def test_zone_stats_and_paused_frames() -> None:
    agg = CountAggregator("cam1", 60)
    out = RulesOutput(entries=[("z", "car")], occupancy={"z": {"car": 2}})
    agg.add_frame(BASE, out)
    agg.add_frame(BASE + 1, RulesOutput(exits=[ZoneExit("z", "car", 1, 4.0)], occupancy={"z": {"car": 1}}))
    agg.add_frame(BASE + 2, RulesOutput(exits=[ZoneExit("z", "car", 2, 8.0)], occupancy={"z": {}}))
    agg.add_frame(BASE + 3, None, paused=True)
    (rec,) = agg.flush()
    assert (rec.frames, rec.frames_paused) == (4, 1)
    (z,) = rec.zones
    assert (z.zone, z.label, z.entries, z.exits, z.max_occupancy, z.dwell_max_s, z.dwell_mean_s) == (
        "z", "car", 1, 2, 2, 8.0, 6.0,
    )  # fmt: skip


def test_store_is_idempotent_per_bucket_and_prunes(tmp_path) -> None:
    store = CountStore(tmp_path / "c.sqlite")
    agg = CountAggregator("cam1", 60)
    agg.add_frame(BASE, crossing("a", "car", "forward"))
    (rec,) = agg.flush()
    store.add(rec)
    store.add(rec)  # re-sent after a crash: replaces, does not double
    res = store.query(GetCountsParams(since=BASE, until=BASE + 60))
    assert [(r.label, r.count) for r in res.lines] == [("car", 1)]
    assert store.prune(BASE + 1) > 0
    assert store.query(GetCountsParams(since=BASE, until=BASE + 60)).lines == []
    store.close()
