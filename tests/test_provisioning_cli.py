"""The operator's and the installer's command lines, end to end, as separate processes: `edge-center`
creates the CA, renders the broker config (run by a real mosquitto), issues a claim and runs the
enrollment service; `edge-agent provision` enrolls; a replay is refused with a readable message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

REPO = Path(__file__).resolve().parent.parent
CENTER = [sys.executable, "-m", "provisioning.cli"]
AGENT = [sys.executable, "-m", "agent.cli"]


def run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_operator_and_installer_command_lines(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    d, out, port = tmp_path / "center", tmp_path / "broker", free_port()
    run([*CENTER, "init", "--dir", str(d)])
    assert (d / "ca" / "intermediate.key").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700
    root_flag = "--run-as-root" if os.geteuid() == 0 else "--no-run-as-root"
    net = ["--port", str(port), "--bind", "127.0.0.1", "--hostname", "localhost"]
    run([*CENTER, "broker-config", "--out-dir", str(out), *net, root_flag, "--dir", str(d)])
    conf = (out / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "use_username_as_clientid true", "allow_anonymous false"):
        assert line in conf
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    log = (tmp_path / "mosquitto.log").open("w")
    procs.append(
        subprocess.Popen(["mosquitto", "-c", str(out / "mosquitto.conf")], stdout=log, stderr=log, text=True)
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "mosquitto did not start with the generated config"
            time.sleep(0.05)
    claim = tmp_path / "claim.json"
    where = ["--province", "01", "--district", "001", "--commune", "00004"]
    broker = ["--broker-host", "localhost", "--broker-port", str(port)]
    who = ["--device-id", "yb-cli-0001", "--org", "Ward 4"]
    run([*CENTER, "claim", *who, *where, *broker, "--out", str(claim), "--dir", str(d)])
    assert claim.stat().st_mode & 0o777 == 0o600
    assert json.loads(claim.read_text())["center"] == f"mqtts://localhost:{port}"
    svc = subprocess.Popen(
        [*CENTER, "serve-broker", "--broker-host", "localhost", "--broker-port", str(port), "--dir", str(d)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(svc)
    assert svc.stdout is not None and "enrollment service on" in svc.stdout.readline()
    state = tmp_path / "state"
    r = run([*AGENT, "provision", "--claim", str(claim), "--state-dir", str(state)])
    assert "enrolled: device id yb-cli-0001" in r.stdout
    assert "connected to the broker with the new certificate" in r.stdout
    r = run([*AGENT, "identity", "--state-dir", str(state)])
    assert "yb-cli-0001" in r.stdout and "fingerprint_sha256" in r.stdout
    r = run([*AGENT, "provision", "--claim", str(claim), "--state-dir", str(tmp_path / "s2")], check=False)
    assert r.returncode == 1 and "claim_used" in r.stderr and "work once" in r.stderr
    r = run([*CENTER, "list", "--dir", str(d)])
    assert "CN=yb-cli-0001" in r.stdout and "REVOKED" in r.stdout  # the spent claim credential
    serial = x509.load_pem_x509_certificate((state / "identity" / "device.crt").read_bytes()).serial_number
    run([*CENTER, "revoke", str(serial), "--dir", str(d)])
    crl = x509.load_pem_x509_crl((d / "ca" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
