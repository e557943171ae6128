"""Configuration: every error names the field, the value and the expectation; env overrides; no secrets shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings, public_view

GOOD = """
[device]
id = "box-01"
owner_org = "Org A"
location = { province = "01", district = "001", commune = "00001" }
[center]
host = "broker.example"
[[cameras]]
name = "gate"
main_url = "rtsp://admin:hunter2@10.0.0.5/main"
sub_url = "rtsp://admin:hunter2@10.0.0.5/sub"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    assert s.device.id == "box-01"
    assert s.center.port == 8883 and s.center.insecure_dev is False
    assert s.key_file == Path("/var/lib/edge-agent/identity/device.key")
    assert s.cameras[0].detect_fps == 5.0


def test_env_overrides_nested_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_AGENT_CENTER__PORT", "18883")
    monkeypatch.setenv("EDGE_AGENT_TELEMETRY__INTERVAL_S", "7")
    s = load_settings(write(tmp_path, GOOD))
    assert s.center.port == 18883
    assert s.telemetry.interval_s == 7


def test_every_error_is_reported_with_field_value_and_expectation(tmp_path: Path) -> None:
    bad = GOOD.replace('host = "broker.example"', 'host = "b"\nport = 70000\nbogus = 1')
    bad = bad.replace('name = "gate"', 'name = "Gate 1"').replace('"01"', '"x1"')
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, bad))
    text = "\n".join(err.value.problems)
    assert "center.port: 70000 is invalid" in text and "65535" in text
    assert "center.bogus: unknown field" in text
    assert "cameras.0.name: Gate 1 is invalid" in text
    assert "device.location.province: x1 is invalid" in text
    assert len(err.value.problems) == 4
    assert "hunter2" not in text


def test_camera_needs_exactly_one_source(tmp_path: Path) -> None:
    bad = GOOD.replace('main_url = "rtsp://admin:hunter2@10.0.0.5/main"', "")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, bad))
    assert any("exactly one of main_url" in p for p in err.value.problems)


def test_missing_file_and_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_settings(write(tmp_path, "[device\nid="))


def test_config_show_hides_camera_passwords(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    shown = json.dumps(public_view(s))
    assert "hunter2" not in shown and "admin" not in shown
    assert "rtsp://***@10.0.0.5/main" in shown


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "check", "-c", str(good)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("box-01", "B"))
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "check", "-c", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "device.id: B is invalid" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "config", "show", "-c", str(good)], capture_output=True, text=True
    )
    assert r.returncode == 0 and "hunter2" not in r.stdout


def test_shipped_example_is_valid_apart_from_machine_specific_files() -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "agent.example.toml"
    s = load_settings(example)
    assert s.device.id == "hn-bd-0001" and s.cameras[0].onvif is not None


def test_redaction_hides_passwords_that_contain_at_signs() -> None:
    from agent.redact import redact_url

    assert redact_url("rtsp://us@er:p@ss@10.0.0.5:554/main") == "rtsp://***@10.0.0.5:554/main"
    assert (
        redact_url("cannot open rtsp://admin:hunter2@cam/x: timeout")
        == "cannot open rtsp://***@cam/x: timeout"
    )
    assert redact_url("rtsp://10.0.0.5/main") == "rtsp://10.0.0.5/main"
