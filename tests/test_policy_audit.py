"""The audit trail: every decision recorded, tampering of each kind detected, verifiable from the certificate alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import Location
from agent.mqtt.dispatch import Dispatcher
from agent.mqtt.registry import HandlerRegistry
from agent.policy.audit import AuditLog, verify_file, verify_lines
from agent.policy.gate import PolicyGate
from agent.policy.matrix import PolicyMatrix
from agent.policy.replay import ReplayCache
from agent.policy.trust import TrustStore
from provisioning.grant_authority import GrantAuthority
from tools.local_broker import LocalCA


@pytest.fixture
def device(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, Path]:
    """A device key and certificate issued by a CA, as after enrollment."""
    from cryptography.hazmat.primitives import serialization

    creds = LocalCA(tmp_path / "pki").issue("box-01")
    key = serialization.load_pem_private_key(creds.key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, creds.cert_file


async def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        await log.event("test", None, {"i": i})


def lines(p: Path) -> list[bytes]:
    return p.read_bytes().splitlines(keepends=True)


def pubkey(cert: Path) -> Any:
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_key()


async def test_intact_log_verifies_from_the_certificate_alone(tmp_path: Path, device: Any) -> None:
    key, cert = device
    log = AuditLog(tmp_path / "audit.log", key, checkpoint_every=5)
    await fill(log, 12)
    log.checkpoint_sync()
    log.close()
    exported = tmp_path / "exported.log"  # what the center holds: the records only
    exported.write_bytes((tmp_path / "audit.log").read_bytes())
    report = verify_file(exported, pubkey(cert))
    assert report.ok and report.checkpoints == 3 and report.verified_upto == report.records
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "audit", "verify", "--file", str(exported), "--cert", str(cert)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "OK" in r.stdout


@pytest.mark.parametrize("kind", ["edited", "deleted", "inserted", "reordered"])
async def test_each_kind_of_tampering_is_detected_and_located(tmp_path: Path, device: Any, kind: str) -> None:
    key, cert = device
    p = tmp_path / "audit.log"
    log = AuditLog(p, key, checkpoint_every=1000)
    await fill(log, 10)
    log.close()
    ls = lines(p)
    if kind == "edited":
        rec = json.loads(ls[4])
        rec["detail"]["i"] = 999
        ls[4] = (json.dumps(rec) + "\n").encode()
        expect = "seq 5): record edited"
    elif kind == "deleted":
        del ls[4]
        expect = "records 5..5 missing"
    elif kind == "inserted":
        fake = json.loads(ls[3])
        fake["detail"] = {"i": "forged"}
        from agent.policy.audit import record_hash

        fake["hash"] = record_hash(fake)  # a self-consistent forged record
        ls.insert(4, (json.dumps(fake) + "\n").encode())
        expect = "out of order or duplicated"
    else:
        ls[4], ls[5] = ls[5], ls[4]
        expect = "out of order"
    p.write_bytes(b"".join(ls))
    report = verify_file(p, pubkey(cert))
    assert not report.ok
    assert any(expect in str(pr) for pr in report.problems), [str(x) for x in report.problems]
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "audit", "verify", "--file", str(p), "--cert", str(cert)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "TAMPERED" in r.stdout


async def test_rewritten_history_fails_the_signed_checkpoint(tmp_path: Path, device: Any) -> None:
    key, cert = device
    p = tmp_path / "audit.log"
    log = AuditLog(p, key, checkpoint_every=1000)
    await fill(log, 6)
    log.checkpoint_sync()
    log.close()
    # An attacker without the device key rewrites record 2 and re-chains everything after it.
    from agent.policy.audit import GENESIS, record_hash

    prev = GENESIS
    out = []
    for raw in lines(p):
        rec = json.loads(raw)
        if rec["seq"] == 2:
            rec["detail"] = {"i": "rewritten"}
        rec["prev"] = prev
        rec["hash"] = record_hash(rec)
        prev = rec["hash"]
        out.append((json.dumps(rec) + "\n").encode())
    p.write_bytes(b"".join(out))
    report = verify_file(p, pubkey(cert))
    assert any("history rewritten" in str(pr) for pr in report.problems)


async def test_torn_last_record_is_set_aside_and_recorded(tmp_path: Path, device: Any) -> None:
    key, _ = device
    p = tmp_path / "audit.log"
    log = AuditLog(p, key)
    await fill(log, 3)
    log.close()
    torn = b'{"seq": 4, "ts": 1, "pr'
    with p.open("ab") as f:
        f.write(torn)  # power cut mid-write
    log = AuditLog(p, key)
    await fill(log, 1)
    log.close()
    recs = [json.loads(x) for x in lines(p)]
    assert recs[3]["reason"] == "torn_tail_truncated" and recs[3]["seq"] == 4
    assert recs[3]["detail"] == {"bytes": len(torn)} and recs[4]["seq"] == 5
    (aside,) = tmp_path.glob("audit.log.torn-*")  # the torn bytes are kept, not deleted
    assert aside.read_bytes() == torn
    assert verify_file(p, None).ok


async def test_a_corrupt_record_mid_file_is_never_cut_away_and_is_reported(
    tmp_path: Path, device: Any
) -> None:
    key, cert = device
    p = tmp_path / "audit.log"
    log = AuditLog(p, key)
    await fill(log, 5)
    log.close()
    ls = lines(p)
    ls[2] = b"\x00\x00 garbage \x00\n"
    p.write_bytes(b"".join(ls))
    log = AuditLog(p, key)  # restart: must not truncate records 4..5 behind the bad line
    await fill(log, 1)
    log.close()
    after = lines(p)
    assert len(after) == 6 and after[3:5] == ls[3:5]
    assert json.loads(after[5])["seq"] == 6
    report = verify_file(p, pubkey(cert))
    assert next(str(x) for x in report.problems).startswith("line 3: unreadable record")


# ------------------------------------------------------------------ fuzzing the whole command path
class _Recorder:
    def __init__(self) -> None:
        self.calls = 0


def _dispatcher(tmp_path: Path, ga: GrantAuthority, key: Any) -> tuple[Dispatcher, AuditLog, _Recorder]:
    from pydantic import BaseModel, ConfigDict

    (tmp_path / "keyset.json").write_text(ga.keyset_json())
    gate = PolicyGate(
        device_id="box-01",
        owner_org="Org A",
        location=Location(province="01", district="001", commune="00004"),
        trust=TrustStore(tmp_path / "keyset.json"),
        policy=PolicyMatrix.load(),
        replay=ReplayCache(tmp_path / "replay.sqlite"),
    )
    audit = AuditLog(tmp_path / "audit.log", key, checkpoint_every=10**6)
    reg = HandlerRegistry()
    acted = _Recorder()

    class Cam(BaseModel):
        model_config = ConfigDict(extra="forbid")
        camera: str

    @reg.action("ptz_move", Cam, needs_camera=True)
    async def ptz(ctx: Any, params: Cam) -> dict[str, Any]:
        acted.calls += 1
        return {}

    return Dispatcher("box-01", reg, gate, audit, lambda: {"gate"}), audit, acted


tokens = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c}",
        st.text("abcXYZ-_=", max_size=60),
        st.text("abcXYZ-_", max_size=200),
        st.text("abc-_", max_size=90),
    ),
)
envelopes = st.one_of(
    st.binary(max_size=400),
    st.builds(
        lambda i, a, p, g: json.dumps({"id": i, "action": a, "params": p, "grant": g}).encode(),
        st.one_of(st.text(max_size=20), st.integers()),
        st.sampled_from(["ptz_move", "ping", "", "PTZ", "ptz_move\x00"]),
        st.dictionaries(
            st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=3
        ),
        tokens,
    ),
)


async def test_thousands_of_malformed_commands_never_act_and_are_all_audited(
    tmp_path: Path, device: Any
) -> None:
    key, _ = device
    ga = GrantAuthority.create()
    disp, audit, acted = _dispatcher(tmp_path, ga, key)
    payloads: list[bytes] = []

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(envelopes)
    def collect(p: bytes) -> None:
        payloads.append(p)

    collect()
    # Add near-misses: valid structure with forged or wrong-role grants.
    real = ga.grant(role="transport_dept", actions=["ptz_move"], aud="box-01", area={"province": "01"})
    payloads += [
        json.dumps({"id": "x", "action": "ptz_move", "params": {"camera": "gate"}, "grant": real}).encode()
    ]
    payloads += [
        json.dumps(
            {"id": "y", "action": "ptz_move", "params": {"camera": "gate"}, "grant": real[:-3] + "abc"}
        ).encode()
    ]
    for p in payloads:
        resp = await disp.handle(p)
        assert resp.ok is False and resp.error is not None
    assert acted.calls == 0
    audit.close()
    recs = [json.loads(x) for x in lines(tmp_path / "audit.log")]
    denials = [r for r in recs if r["kind"] == "decision" and r["decision"] == "denied"]
    assert len(denials) == len(payloads)
    assert not [r for r in recs if r.get("decision") == "allowed"]
    assert verify_file(tmp_path / "audit.log", None).ok


async def test_show_filters_by_time_requester_and_action(tmp_path: Path) -> None:
    import datetime as dt

    from agent.mqtt.envelope import CommandEnvelope
    from agent.policy.context import AuthContext

    p = tmp_path / "audit.log"
    log = AuditLog(p, None)
    for who, action in [("officer-7", "ptz_move"), ("officer-8", "ptz_move"), ("officer-7", "get_counts")]:
        auth = AuthContext(requester=who, role="district_police", purpose="patrol", purpose_ref="case 1")
        env = CommandEnvelope(id=f"{who}-{action}", action=action)
        await log.decision(env, action, auth, "gate", True, "allowed")
    log.close()
    first_ts = json.loads(lines(p)[0])["ts"]

    def show(*args: str) -> list[dict[str, Any]]:
        r = subprocess.run(
            [sys.executable, "-m", "agent.cli", "audit", "show", "--file", str(p), "--json", *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return [json.loads(x) for x in r.stdout.splitlines()]

    assert len(show()) == 3
    got = show("--requester", "officer-7", "--action", "ptz_move")
    assert [(r["requester"], r["action"]) for r in got] == [("officer-7", "ptz_move")]
    assert {r["requester"] for r in show("--action", "ptz_move")} == {"officer-7", "officer-8"}
    later = dt.datetime.fromtimestamp(first_ts + 3600).isoformat()
    assert show("--since", later) == [] and len(show("--until", later)) == 3


async def test_the_center_copy_has_every_record_and_checkpoint_even_after_a_full_outbox(
    tmp_path: Path, device: Any
) -> None:
    """What the sink (the outbox) received verifies with the certificate alone, in order, no gaps,
    although the outbox refused two records for a while (disk full)."""
    from agent.mqtt.outbox import OutboxFull

    key, cert = device
    received: list[dict[str, Any]] = []
    refuse = {"n": 0}

    async def sink(rec: Any) -> None:
        if refuse["n"] > 0:
            refuse["n"] -= 1
            raise OutboxFull("disk full")
        received.append(rec.model_dump(mode="json"))

    p = tmp_path / "audit.log"
    with p.open("ab") as f:
        f.write(b'{"seq": 1, "ts"')  # a torn record from before the restart
    log = AuditLog(p, key, sink=sink, checkpoint_every=3)
    await fill(log, 4)
    refuse["n"] = 2
    await fill(log, 4)
    await log.checkpoint()
    log.close()
    on_disk = [json.loads(x) for x in lines(p)]
    assert received == on_disk and on_disk[0]["reason"] == "torn_tail_truncated"
    report = verify_lines([json.dumps(r).encode() for r in received], pubkey(cert))
    assert report.ok and report.checkpoints >= 3 and report.verified_upto == on_disk[-1]["seq"]
