"""Time from `edge-agent provision` (a fresh box with a claim) to its first birth message on the broker.

Real processes: Mosquitto (TLS, client certificates, generated ACL), the enrollment service on the
broker, `edge-agent provision --center mqtts://...` (a subprocess: includes Python start-up), then
`edge-agent run` until the retained birth (state online) reaches a center subscriber.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provisioning.center import Center  # noqa: E402
from provisioning.device import provision  # noqa: E402
from provisioning.enroll_service import EnrollmentService  # noqa: E402
from tests.fixtures.agent import AgentProcess, start_center  # noqa: E402
from tools.local_broker import Broker  # noqa: E402

RUNS = 5
LOC = {"province": "01", "district": "001", "commune": "00004"}


async def one(
    tmp: Path, center: Center, broker: Broker, url: str, client_rec: tuple[object, object], i: int
) -> dict[str, float]:
    _client, rec = client_rec
    device = f"bench-prov-{i:02d}"
    claim = tmp / f"claim-{i}.json"
    claim.write_text(
        json.dumps(center.issue_claim(device_id=device, org="Bench Org", location=LOC, center_url=url))
    )
    state = tmp / f"state-{i}"
    t0 = time.perf_counter()
    p = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "provision",
        "--claim",
        str(claim),
        "--state-dir",
        str(state),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await p.wait() == 0
    t_enrolled = time.perf_counter() - t0
    cfg = tmp / f"agent-{i}.toml"
    cfg.write_text(
        f"""
[device]
id = "{device}"
owner_org = "Bench Org"
location = {{ province = "01", district = "001", commune = "00004" }}
[center]
host = "localhost"
port = {broker.port}
[storage]
state_dir = "{state}"
"""
    )
    agent = AgentProcess(cfg)
    agent.start()
    try:
        await rec.wait_for(f"{device}/state", lambda d: d.get("status") == "online", timeout=60)  # type: ignore[attr-defined]
        t_birth = time.perf_counter() - t0
    finally:
        agent.stop()
    return {"enroll_s": t_enrolled, "birth_s": t_birth}


async def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        center = Center.create(tmp / "center")
        broker = Broker.create(tmp / "broker", ca=center.ca)
        broker.start()
        center.broker_host, center.broker_port = "localhost", broker.port
        creds = broker.issue_center("center-enroll")
        svc = EnrollmentService(
            center,
            "localhost",
            broker.port,
            ca_file=str(creds.ca_file),
            cert_file=str(creds.cert_file),
            key_file=str(creds.key_file),
        )
        svc.start()
        client, rec = await start_center(broker, "center-bench", watch="+/state")
        try:
            url = f"mqtts://localhost:{broker.port}"
            runs = [await one(tmp, center, broker, url, (client, rec), i) for i in range(RUNS)]
            inproc = [await enroll_in_process(tmp, center, url, i) for i in range(20)]
        finally:
            await client.stop()
            svc.stop()
            broker.stop()
    enroll = [r["enroll_s"] for r in runs]
    birth = [r["birth_s"] for r in runs]
    return {
        "runs": RUNS,
        "provision_cli_p50_s": round(statistics.median(enroll), 3),
        "provision_to_birth_p50_s": round(statistics.median(birth), 3),
        "provision_to_birth_max_s": round(max(birth), 3),
        "enroll_in_process_p50_ms": round(statistics.median(inproc) * 1000, 1),
        "enroll_in_process_max_ms": round(max(inproc) * 1000, 1),
    }


async def enroll_in_process(tmp: Path, center: Center, url: str, i: int) -> float:
    """Key + CSR + claim over the broker + store + reconnect with the new certificate (no Python start-up)."""
    claim = tmp / f"claim-ip-{i}.json"
    claim.write_text(
        json.dumps(center.issue_claim(device_id=f"bench-ip-{i:02d}", org="Bench Org", location=LOC))
    )
    t0 = time.perf_counter()
    await provision(claim, url, tmp / f"state-ip-{i}", progress=lambda _m: None)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
