"""Enrollment with a claim, renewal, refusals; certificates checked by an independent implementation (openssl)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.center import Center, serve
from provisioning.device import IdentityPaths, ProvisionError, identity, new_key_and_csr, provision, renew

LOC = {"province": "01", "district": "001", "commune": "00004"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def center(tmp_path: Path) -> AsyncIterator[tuple[Center, str]]:
    c = Center.create(tmp_path / "center")
    port = free_port()
    runner = await serve(c, "127.0.0.1", port, ["localhost", "127.0.0.1"])
    yield c, f"https://localhost:{port}"
    await runner.cleanup()


def claim_file(tmp_path: Path, c: Center, url: str, name: str = "claim.json", **kw: Any) -> Path:
    args: dict[str, Any] = {"device_id": "yb-001-0042", "org": "Ward 4", "location": LOC, "center_url": url}
    args.update(kw)
    p = tmp_path / name
    p.write_text(json.dumps(c.issue_claim(**args)))
    return p


async def test_full_enrollment_stores_a_verifiable_identity(tmp_path: Path, center: Any) -> None:
    c, url = center
    state = tmp_path / "state"
    bundle = await provision(claim_file(tmp_path, c, url), None, state, progress=lambda s: None)
    assert bundle["device_id"] == "yb-001-0042"
    p = IdentityPaths(state)
    assert p.key.stat().st_mode & 0o777 == 0o600
    assert p.dir.stat().st_mode & 0o777 == 0o700 and state.stat().st_mode & 0o777 == 0o700
    cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "yb-001-0042"
    key = serialization.load_pem_private_key(p.key.read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert json.loads(p.keyset.read_text())["keys"]  # trust anchors for grants arrived
    # openssl, an independent implementation, accepts the chain: root (ca.crt) -> intermediate -> device
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", str(p.ca), "-untrusted", str(p.cert), str(p.cert)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", str(p.ca), str(p.cert)], capture_output=True, text=True
    )
    assert r.returncode != 0  # the leaf alone does not chain to the root without the intermediate
    info = identity(state)
    assert info["device_id"] == "yb-001-0042" and info["days_left"] > 80 and info["key_mode"] == "0o600"


async def test_refusals_replayed_expired_wrong_org_forged(tmp_path: Path, center: Any) -> None:
    c, url = center
    quiet: Any = lambda s: None  # noqa: E731
    cf = claim_file(tmp_path, c, url)
    await provision(cf, None, tmp_path / "s1", progress=quiet)
    with pytest.raises(ProvisionError) as e:  # the same claim again (a second box, or a replay)
        await provision(cf, None, tmp_path / "s2", progress=quiet)
    assert e.value.code == "claim_used"
    expired = claim_file(tmp_path, c, url, "old.json", ttl_s=-10)
    with pytest.raises(ProvisionError) as e:
        await provision(expired, None, tmp_path / "s3", progress=quiet)
    assert e.value.code == "claim_expired"
    other = Center.create(tmp_path / "other-center")  # a claim signed by someone else
    forged = tmp_path / "forged.json"
    forged_claim = other.issue_claim(device_id="yb-001-0099", org="Ward 4", location=LOC, center_url=url)
    forged_claim["ca"] = c.ca.root_cert.public_bytes(serialization.Encoding.PEM).decode()
    forged.write_text(json.dumps(forged_claim))
    with pytest.raises(ProvisionError) as e:
        await provision(forged, None, tmp_path / "s4", progress=quiet)
    assert e.value.code == "claim_forged"
    ok = c.issue_claim(device_id="yb-001-0043", org="Ward 4", location=LOC)
    with pytest.raises(Exception) as refused:
        c.enroll(ok["claim"], new_key_and_csr("yb-001-0043", "Ward 4")[1], {"org": "Ward 9"})
    assert getattr(refused.value, "code", "") == "wrong_org"
    assert not (tmp_path / "s2" / "identity" / "device.key").exists()  # nothing half-written


async def test_tampered_csr_is_refused(tmp_path: Path, center: Any) -> None:
    c, _ = center
    claim = c.issue_claim(device_id="yb-001-0050", org="Ward 4", location=LOC)
    # subject tampered: asks for another device's identity
    _, csr_other = new_key_and_csr("yb-001-0001", "Ward 4")
    with pytest.raises(Exception) as e:
        c.enroll(claim["claim"], csr_other, {})
    assert getattr(e.value, "code", "") == "csr_rejected" and "not CN=yb-001-0050" in str(e.value)
    # key does not match the signature: swap the public key inside a valid CSR
    key = ec.generate_private_key(ec.SECP256R1())
    good = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "yb-001-0050"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ward 4"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    other_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    mine = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    i = bytes(der).index(mine)
    der[i : i + len(mine)] = other_pub
    swapped = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(Exception) as e:
        c.enroll(claim["claim"], swapped, {})
    assert "signature does not match" in str(e.value)
    # the claim was not consumed by the refused attempts
    c.enroll(claim["claim"], new_key_and_csr("yb-001-0050", "Ward 4")[1], {})


async def test_installer_errors_are_readable(tmp_path: Path, center: Any) -> None:
    c, url = center
    quiet: Any = lambda s: None  # noqa: E731
    port = url.rsplit(":", 1)[1]
    with pytest.raises(ProvisionError) as e:
        await provision(
            claim_file(tmp_path, c, url),
            f"https://127.0.0.2:{free_port()}",
            tmp_path / "s",
            progress=quiet,
            timeout=3,
        )
    assert e.value.code in ("unreachable", "timeout")
    port2 = free_port()
    runner = await serve(c, "127.0.0.1", port2, ["localhost"])  # a certificate that names only localhost
    try:
        with pytest.raises(ProvisionError) as e:
            await provision(
                claim_file(tmp_path, c, url, "c2.json"),
                f"https://127.0.0.1:{port2}",
                tmp_path / "s",
                progress=quiet,
            )
        assert e.value.code == "tls_name" and "127.0.0.1" in str(e.value)
    finally:
        await runner.cleanup()
    with pytest.raises(ProvisionError) as e:
        await provision(
            claim_file(tmp_path, c, url, "c3.json"),
            f"http://localhost:{port}",
            tmp_path / "s",
            progress=quiet,
        )
    assert e.value.code == "center_url"
    with pytest.raises(ProvisionError) as e:
        await provision(tmp_path / "missing.json", url, tmp_path / "s", progress=quiet)
    assert e.value.code == "claim_unreadable"


async def test_renewal_rotates_key_and_revoked_certificate_is_refused(tmp_path: Path, center: Any) -> None:
    c, url = center
    state = tmp_path / "state"
    await provision(claim_file(tmp_path, c, url), None, state, progress=lambda s: None)
    p = IdentityPaths(state)
    old_cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
    old_key = p.key.read_bytes()
    await renew(state)
    new_cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
    assert new_cert.serial_number != old_cert.serial_number and p.key.read_bytes() != old_key
    assert new_cert.subject == old_cert.subject
    c.ca.revoke(new_cert.serial_number)
    with pytest.raises(ProvisionError) as e:
        await renew(state)
    assert e.value.code == "revoked"
    crl = x509.load_pem_x509_crl((c.ca.dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(new_cert.serial_number) is not None
    r = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-CAfile",
            str(p.ca),
            "-untrusted",
            str(p.cert),
            "-CRLfile",
            str(c.ca.dir / "crl.pem"),
            str(p.cert),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "revoked" in (r.stdout + r.stderr)
    _ = time, asyncio


async def test_rotation_under_load_loses_no_outbox_message(tmp_path: Path, center: Any) -> None:
    """Enroll for real, run the agent against a broker trusting the center's CA, renew mid-stream."""
    from pydantic import BaseModel

    from agent.app import AgentApp
    from tests.fixtures.agent import settings_from, start_center
    from tools.local_broker import Broker

    class Ev(BaseModel):
        n: int

    c, url = center
    broker = Broker.create(tmp_path / "broker", ca=c.ca)
    broker.start()
    state = tmp_path / "state"
    bundle = await provision(claim_file(tmp_path, c, url), None, state, progress=lambda s: None)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f"""
[device]
id = "{bundle["device_id"]}"
owner_org = "Ward 4"
location = {{ province = "01", district = "001", commune = "00004" }}
[center]
host = "localhost"
port = {broker.port}
reconnect_min_s = 0.1
reconnect_max_s = 0.5
[storage]
state_dir = "{state}"
"""
    )
    client, rec = await start_center(broker)
    app = AgentApp(settings_from(cfg))
    await app.start()
    try:
        session = app.services.session
        assert session is not None
        await asyncio.wait_for(session.connected.wait(), 15)
        serial_before = identity(state)["serial"]
        rotator = app.services.extras["rotator"]
        assert rotator.enabled

        async def produce() -> None:
            for i in range(300):
                await app.outbox.put("events", Ev(n=i))
                await asyncio.sleep(0.003)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.3)
        await rotator.rotate_now()
        await producer
        await rec.wait_for("/events", lambda d: d["data"]["n"] == 299, timeout=30)
        assert {d["data"]["n"] for d in rec.on("/events")} == set(range(300))
        assert identity(state)["serial"] != serial_before and rotator.renewals == 1
        assert session.reconnects >= 1 and session.connected.is_set()
    finally:
        await app.stop()
        await client.stop()
        broker.stop()
