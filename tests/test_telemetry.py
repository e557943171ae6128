"""Telemetry: board temperature from a thermal zone (a file standing in for the Pi's sensor), disk, outbox."""

from __future__ import annotations

from pathlib import Path

from agent.app import AgentApp
from agent.config import AgentSettings
from agent.health.telemetry import read_temperature


def settings(tmp_path: Path, thermal: Path) -> AgentSettings:
    return AgentSettings.model_validate(
        {
            "device": {
                "id": "box-01",
                "owner_org": "x",
                "location": {"province": "01", "district": "001", "commune": "00001"},
            },
            "center": {"host": "localhost", "insecure_dev": True},
            "storage": {"state_dir": str(tmp_path / "state")},
            "telemetry": {"thermal_file": str(thermal)},
        }
    )


def test_temperature_from_a_thermal_zone_file(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48312\n")  # millidegrees, as /sys/class/thermal/thermal_zone0/temp
    assert read_temperature(zone) == 48.3
    zone.write_text("garbage")
    assert read_temperature(zone) is None
    assert read_temperature(tmp_path / "missing") is None


def test_snapshot_reports_host_disk_outbox_and_features(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("71000")
    app = AgentApp(settings(tmp_path, zone))
    app.services.telemetry_providers["broken"] = lambda: 1 / 0  # type: ignore[dict-item]
    app.services.telemetry_providers["detect"] = lambda: {"fps": 4.9}
    snap = app.telemetry.snapshot()
    assert snap.temperature_c == 71.0
    assert snap.disk_free_mb > 0 and 0 < snap.disk_used_percent < 100
    assert snap.outbox.pending == 0
    assert snap.features["detect"] == {"fps": 4.9}
    assert (
        "division by zero" in snap.features["broken"]["error"]
    )  # one bad provider does not silence the report
    app.outbox.close()
    app.policy.audit.close()
