"""build_detection wires the manager into the agent's services from a real AgentSettings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentSettings
from agent.detect.manager import DetectionManager
from agent.detect.wiring import RulesConfigError, build_detection, camera_rules
from agent.mqtt.outbox import Outbox
from agent.mqtt.registry import HandlerRegistry
from agent.services import Services

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "walkway_sub.mp4"


def settings(tmp_path: Path, rules: dict | None) -> AgentSettings:
    return AgentSettings.model_validate(
        {
            "device": {
                "id": "box-01",
                "owner_org": "Test",
                "location": {"province": "01", "district": "001", "commune": "00001"},
            },
            "center": {"host": "127.0.0.1"},
            "cameras": [{"name": "cam1", "file": str(SAMPLE), "rules": rules}],
            "storage": {"state_dir": str(tmp_path / "state")},
        }
    )


async def test_build_detection_registers_everything(tmp_path) -> None:
    rules = {"lines": [{"name": "across", "points": [[0.5, 0.2], [0.5, 0.8]], "classes": ["person"]}]}
    s = settings(tmp_path, rules)
    outbox = Outbox(tmp_path / "outbox.sqlite", "box-01", 2**20)
    services = Services(settings=s, outbox=outbox)
    reg = HandlerRegistry()
    stop = await build_detection(services, reg)
    try:
        mgr = services.extras["detect"]
        assert isinstance(mgr, DetectionManager)
        assert {"get_counts", "search_events", "get_snapshot", "set_rules", "get_rules"} <= set(reg.names())
        assert mgr.rules_of("cam1")[0].lines[0].name == "across"
        assert services.capabilities["detect"]["classes"][0] == "person"
        assert "cameras" in services.telemetry_providers["detect"]()
        assert services.extras["ptz.on_away_from_home"] == mgr.on_ptz_away
    finally:
        await stop()
        outbox.close()


def test_invalid_camera_rules_in_config_name_the_camera_and_field() -> None:
    bad = {"zones": [{"name": "z", "points": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]}
    with pytest.raises(RulesConfigError) as ei:
        camera_rules(bad, "cam1")
    assert ei.value.problems[0].startswith("cameras.cam1.rules.zones[0].points: polygon is self-intersecting")
