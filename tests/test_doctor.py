"""`edge-agent doctor` against a real enrolled identity and a real broker: what passes, what fails, with fixes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.config import load_settings
from provisioning.doctor import run_checks
from tests.fixtures.agent import agent_config


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_doctor_passes_a_good_install_and_explains_a_broken_one(tmp_path: Path, broker: Any) -> None:
    cfg = agent_config(tmp_path, broker)
    s = load_settings(cfg)
    checks = by_name(run_checks(s))
    assert checks["broker reachable"].status == "ok"
    assert checks["TLS validation"].status == "ok", checks["TLS validation"].detail
    assert checks["device key permissions"].status == "ok"
    assert checks["disk space"].status == "ok"
    # break things an installer breaks
    s.key_file.chmod(0o644)
    s.storage.state_dir.chmod(0o755)
    broker.stop()
    checks = by_name(run_checks(s))
    assert (
        checks["device key permissions"].status == "fail"
        and "chmod 600" in checks["device key permissions"].fix
    )
    assert checks[f"permissions {s.storage.state_dir}"].fix == f"chmod 700 {s.storage.state_dir}"
    assert checks["broker reachable"].status == "fail" and "firewall" in checks["broker reachable"].fix
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "doctor", "-c", str(cfg)], capture_output=True, text=True
    )
    assert r.returncode == 1 and "FAIL" in r.stdout and "fix: chmod 600" in r.stdout


def test_doctor_reports_a_broker_certificate_it_cannot_trust(tmp_path: Path, broker: Any) -> None:
    from tools.local_broker import LocalCA

    cfg = agent_config(tmp_path, broker)
    other_ca = LocalCA(tmp_path / "other-ca").ca_file  # e.g. the wrong ca.crt copied onto the box
    cfg.write_text(cfg.read_text().replace(f'ca_file = "{broker.ca_file}"', f'ca_file = "{other_ca}"'))
    checks = by_name(run_checks(load_settings(cfg)))
    assert checks["broker reachable"].status == "ok"
    tls = checks["TLS validation"]
    assert tls.status == "fail" and "certificate" in tls.detail and "ca_file" in tls.fix
