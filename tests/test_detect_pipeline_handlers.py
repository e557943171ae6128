"""get_counts, search_events, get_snapshot, set_rules, get_rules against a real manager and stores."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from agent.detect.handlers import register
from agent.detect.manager import DetectionManager
from agent.detect.messages import SetRulesParams
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.rules_settings import CameraRules
from agent.mqtt.envelope import CommandEnvelope, CommandError, ErrorCode
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.context import AuthContext
from tests.fixtures.detect import ListSink, ScriptedDetector, synth_frames
from tests.test_detect_pipeline_flow import BASE, RULES, H, W, script


def ctx(action: str, cameras: list[str] | None = None) -> CommandContext:
    env = CommandEnvelope(id="c1", action=action)
    return CommandContext(
        envelope=env, auth=AuthContext(requester="u1", role="dot", cameras=cameras), camera=None
    )


async def call(reg: HandlerRegistry, action: str, params: dict, cameras: list[str] | None = None):  # type: ignore[no-untyped-def]
    spec = reg.get(action)
    assert spec is not None
    return await spec.handler(ctx(action, cameras), spec.params_model.model_validate(params))


def make_manager(tmp_path, rules: CameraRules = RULES) -> DetectionManager:  # type: ignore[no-untyped-def]
    det = ScriptedDetector(script())
    return DetectionManager(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        sink=ListSink(),
        settings=PipelineSettings(),
        camera_rules={"cam1": rules, "cam2": CameraRules()},
        detect=det.detect,
    )


async def frames_of(frames: list) -> AsyncIterator:
    for f in frames:
        yield f


@pytest.fixture
async def loaded(tmp_path):  # type: ignore[no-untyped-def]
    mgr = make_manager(tmp_path)
    reg = HandlerRegistry()
    register(reg, None, mgr)  # type: ignore[arg-type]
    await mgr.pipelines["cam1"].run(frames_of(synth_frames(100, BASE + 50, 0.2, W, H)))
    yield mgr, reg
    await mgr.stop()


async def test_actions_are_registered_with_camera_requirements(loaded) -> None:
    _, reg = loaded
    specs = {s.name: s for s in reg.specs()}
    assert sorted(specs) == ["get_counts", "get_rules", "get_snapshot", "search_events", "set_rules"]
    assert specs["set_rules"].needs_camera and specs["set_rules"].grant_use == "once"
    assert specs["get_snapshot"].needs_camera and not specs["search_events"].needs_camera


async def test_get_counts_by_line_class_and_resolution(loaded) -> None:
    _, reg = loaded
    res = await call(reg, "get_counts", {"since": BASE, "until": BASE + 3600, "camera": "cam1"})
    assert {(r.line, r.label, r.direction, r.start, r.count) for r in res.lines} == {
        ("mid", "car", "forward", BASE, 1),
        ("mid", "motorcycle", "backward", BASE, 1),
    }
    # The truck entered in the first minute and was still there (occupancy 1) in the second.
    assert [(z.zone, z.label, z.start, z.entries, z.max_occupancy) for z in res.zones] == [
        ("no_stop", "truck", BASE, 1, 1),
        ("no_stop", "truck", BASE + 60, 0, 1),
    ]
    hourly = await call(reg, "get_counts", {"since": BASE, "until": BASE + 3600, "resolution_s": 3600})
    assert {(r.label, r.start, r.bucket_s) for r in hourly.lines} == {
        ("car", BASE - BASE % 3600, 3600),
        ("motorcycle", BASE - BASE % 3600, 3600),
    }
    only = await call(reg, "get_counts", {"since": BASE, "until": BASE + 3600, "label": "motorcycle"})
    assert [(t.label, t.count) for t in only.totals] == [("motorcycle", 1)]
    other = await call(reg, "get_counts", {"since": BASE, "until": BASE + 3600}, cameras=["cam2"])
    assert other.lines == [] and other.totals == []
    with pytest.raises(ValidationError, match="until must be after since"):
        await call(reg, "get_counts", {"since": BASE, "until": BASE})


async def test_search_events_filters_paging_and_scope(loaded) -> None:
    mgr, reg = loaded
    # Add more events through the store to page over.
    first = (await call(reg, "search_events", {"since": BASE, "until": BASE + 3600})).events
    assert [(e.rule, e.label) for e in first] == [("dwell", "truck")]
    for i in range(5):
        mgr.events.add(first[0].model_copy(update={"id": f"{i:032x}", "ts": BASE + i, "score": 0.1 * i}))
    page1 = await call(reg, "search_events", {"since": BASE, "until": BASE + 3600, "limit": 4})
    page2 = await call(
        reg, "search_events", {"since": BASE, "until": BASE + 3600, "limit": 4, "cursor": page1.next_cursor}
    )
    ts = [e.ts for e in page1.events + page2.events]
    assert len(ts) == 6 and ts == sorted(ts, reverse=True) and page2.next_cursor is None
    strong = await call(reg, "search_events", {"since": BASE, "until": BASE + 3600, "min_score": 0.25})
    assert len(strong.events) == 3  # 0.3, 0.4 and the real event (0.9)
    assert (
        await call(reg, "search_events", {"since": BASE, "until": BASE + 3600, "rule": "restricted"})
    ).events == []
    scoped = await call(reg, "search_events", {"since": BASE, "until": BASE + 3600}, cameras=["cam2"])
    assert scoped.events == []
    with pytest.raises(CommandError) as ei:
        await call(reg, "search_events", {"since": BASE, "until": BASE + 3600, "cursor": "bm9wZQ=="})
    assert ei.value.code is ErrorCode.INVALID_PARAMS


async def test_get_snapshot_returns_bounded_jpeg_and_not_found(loaded) -> None:
    mgr, reg = loaded
    ev = (await call(reg, "search_events", {"since": BASE, "until": BASE + 3600})).events[0]
    for kind in ("full", "crop"):
        snap = await call(reg, "get_snapshot", {"camera": "cam1", "id": ev.id, "kind": kind})
        data = base64.b64decode(snap.data_b64)
        assert data[:2] == b"\xff\xd8" and snap.size == len(data) <= mgr.settings.snapshot_max_kb * 1024
    with pytest.raises(CommandError) as ei:
        await call(reg, "get_snapshot", {"camera": "cam2", "id": ev.id})
    assert ei.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(ValidationError):
        await call(reg, "get_snapshot", {"camera": "cam1", "id": "../../etc/passwd"})


async def test_set_rules_applies_persists_and_survives_restart(tmp_path) -> None:
    mgr = make_manager(tmp_path, CameraRules())
    reg = HandlerRegistry()
    register(reg, None, mgr)  # type: ignore[arg-type]
    before = await call(reg, "get_rules", {"camera": "cam1"})
    assert before.source == "config" and before.rules.lines == []
    res = await call(reg, "set_rules", {"camera": "cam1", "rules": RULES.model_dump(mode="json")})
    assert res.source == "command" and mgr.pipelines["cam1"].rules.rules == RULES
    path = tmp_path / "state" / "detect" / "rules" / "cam1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text())["rules"]["lines"]
    await mgr.stop()

    again = make_manager(tmp_path, CameraRules())  # same config: the command's rules are kept
    assert again.rules_of("cam1")[:2] == (RULES, "command")
    await again.stop()
    changed = CameraRules.model_validate({"lines": [{"name": "new", "points": [[0, 0.2], [1, 0.2]]}]})
    edited = make_manager(tmp_path, changed)  # the installer edited the config since: config wins
    assert edited.rules_of("cam1")[:2] == (changed, "config")
    await edited.stop()


async def test_set_rules_refuses_invalid_rules_and_keeps_running_ones(tmp_path) -> None:
    mgr = make_manager(tmp_path)
    bad = {"camera": "cam1", "rules": {"zones": [{"name": "z", "points": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}}
    with pytest.raises(ValidationError, match="self-intersecting"):
        SetRulesParams.model_validate(bad)
    assert mgr.pipelines["cam1"].rules.rules == RULES
    await mgr.stop()


async def test_pause_hook_for_ptz(tmp_path) -> None:
    mgr = make_manager(tmp_path)
    mgr.on_ptz_away("cam1", True)
    assert mgr.pipelines["cam1"].counting_paused
    assert mgr.telemetry()["cameras"]["cam1"]["paused_reason"] == "ptz_away_from_home"
    mgr.on_ptz_away("cam1", False)
    assert not mgr.pipelines["cam1"].counting_paused
    await mgr.stop()
