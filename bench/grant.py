"""Cost of a grant check (signature, claims, policy, replay) and of an audit append (fsync'd).

Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.config import Location  # noqa: E402
from agent.mqtt.envelope import CommandEnvelope  # noqa: E402
from agent.mqtt.registry import ActionSpec  # noqa: E402
from agent.policy.audit import AuditLog, verify_file  # noqa: E402
from agent.policy.gate import PolicyGate  # noqa: E402
from agent.policy.matrix import PolicyMatrix  # noqa: E402
from agent.policy.replay import ReplayCache  # noqa: E402
from agent.policy.trust import TrustStore  # noqa: E402
from provisioning.grant_authority import GrantAuthority  # noqa: E402
from tools.local_broker import LocalCA  # noqa: E402

N = 2000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


async def _noop(*_a: object) -> None:
    return None


def main() -> dict[str, float]:
    from cryptography.hazmat.primitives import serialization
    from pydantic import BaseModel

    class P(BaseModel):
        camera: str | None = None

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ga = GrantAuthority.create()
        (tmp / "keyset.json").write_text(ga.keyset_json())
        gate = PolicyGate(
            device_id="box-01",
            owner_org="Org A",
            location=Location(province="01", district="001", commune="00004"),
            trust=TrustStore(tmp / "keyset.json"),
            policy=PolicyMatrix.load(),
            replay=ReplayCache(tmp / "r.sqlite"),
        )
        reusable = ActionSpec("get_counts", _noop, P)  # type: ignore[arg-type]
        es = ga.add_key("grant", alg="ES256")
        (tmp / "keyset.json").write_text(ga.keyset_json())
        gate.trust = TrustStore(tmp / "keyset.json")
        once = ActionSpec("camera_reboot", _noop, P, grant_use="once", needs_camera=True)  # type: ignore[arg-type]
        g = ga.grant(role="provincial_police", actions=["get_counts"], aud="box-01", area={"province": "01"})
        env = CommandEnvelope(id="1", action="get_counts", grant=g)
        check_us = []
        for _ in range(N):
            t0 = time.perf_counter()
            gate.check(env, reusable, None)
            check_us.append((time.perf_counter() - t0) * 1e6)
        g_es = ga.grant(
            role="provincial_police", actions=["get_counts"], aud="box-01", area={"province": "01"}, signer=es
        )
        env_es = CommandEnvelope(id="1", action="get_counts", grant=g_es)
        es_us = []
        for _ in range(N // 2):
            t0 = time.perf_counter()
            gate.check(env_es, reusable, None)
            es_us.append((time.perf_counter() - t0) * 1e6)

        async def via_loop() -> list[float]:
            out = []
            for _ in range(N // 2):
                t0 = time.perf_counter()
                await gate.authorize(env, reusable, None)
                out.append((time.perf_counter() - t0) * 1e6)
            return out

        async_us = asyncio.run(via_loop())
        once_grants = [
            ga.grant(role="operator_unit", actions=["camera_reboot"], aud="box-01", area={"province": "01"})
            for _ in range(500)
        ]
        once_us = []
        for og in once_grants:
            e = CommandEnvelope(id="1", action="camera_reboot", grant=og, params={"camera": "gate"})
            t0 = time.perf_counter()
            gate.check(e, once, "gate")
            once_us.append((time.perf_counter() - t0) * 1e6)
        creds = LocalCA(tmp / "pki").issue("box-01")
        key = serialization.load_pem_private_key(creds.key_file.read_bytes(), None)
        audit = AuditLog(tmp / "audit.log", key, checkpoint_every=10**9)  # type: ignore[arg-type]
        append_us = []
        for i in range(N):
            t0 = time.perf_counter()
            audit._append_sync({"kind": "event", "reason": "bench", "detail": {"i": i}})
            append_us.append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        audit.checkpoint_sync()
        checkpoint_us = (time.perf_counter() - t0) * 1e6
        audit.close()
        t0 = time.perf_counter()
        report = verify_file(tmp / "audit.log", key.public_key())  # type: ignore[union-attr,arg-type]
        verify_s = time.perf_counter() - t0
        assert report.ok
    return {
        "grant_check_p50_us": pct(check_us, 0.5),
        "grant_check_p99_us": pct(check_us, 0.99),
        "grant_check_es256_p50_us": pct(es_us, 0.5),
        "grant_check_es256_p99_us": pct(es_us, 0.99),
        "authorize_async_p50_us": pct(async_us, 0.5),
        "authorize_async_p99_us": pct(async_us, 0.99),
        "grant_check_once_p50_us": pct(once_us, 0.5),
        "grant_check_once_p99_us": pct(once_us, 0.99),
        "audit_append_fsync_p50_us": pct(append_us, 0.5),
        "audit_append_fsync_p99_us": pct(append_us, 0.99),
        "audit_checkpoint_sign_us": round(checkpoint_us, 1),
        "audit_verify_records_per_s": round(report.records / verify_s),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
