"""The gate behind the real dispatcher: who is named in denial records, one-shot grants not spent on
a missing camera, signed-but-absurd claims refused, records reaching the durable outbox, ES256."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from agent.config import Location
from agent.mqtt.dispatch import Dispatcher
from agent.mqtt.outbox import Outbox
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.audit import AuditLog, AuditRecord, verify_file, verify_lines
from agent.policy.gate import PolicyGate
from agent.policy.matrix import PolicyMatrix
from agent.policy.replay import ReplayCache
from agent.policy.trust import TrustStore
from provisioning.grant_authority import GrantAuthority

DEVICE = "box-01"
PROV = {"province": "01"}


class Cam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str


class Export(Cam):
    start: float
    end: float


class Node:
    """A dispatcher wired as the app wires it: real gate, real audit log, a counting handler."""

    def __init__(self, tmp: Path, ga: GrantAuthority, sink: Any = None) -> None:
        (tmp / "keyset.json").write_text(ga.keyset_json())
        self.gate = PolicyGate(
            device_id=DEVICE,
            owner_org="Org A",
            location=Location(province="01", district="001", commune="00004"),
            trust=TrustStore(tmp / "keyset.json"),
            policy=PolicyMatrix.load(),
            replay=ReplayCache(tmp / "replay.sqlite"),
            cameras=lambda: {"gate", "lobby"},
        )
        self.log_path = tmp / "audit.log"
        self.audit = AuditLog(self.log_path, None, sink=sink, checkpoint_every=10**6)
        self.acted: list[tuple[str, str]] = []
        reg = HandlerRegistry()

        @reg.action("ptz_move", Cam, needs_camera=True)
        async def ptz(ctx: CommandContext, p: Cam) -> dict[str, Any]:
            self.acted.append(("ptz_move", ctx.auth.requester))
            return {}

        @reg.action("camera_reboot", Cam, needs_camera=True, grant_use="once")
        async def reboot(ctx: CommandContext, p: Cam) -> dict[str, Any]:
            self.acted.append(("camera_reboot", ctx.auth.requester))
            return {}

        @reg.action("export_clip", Export, needs_camera=True, needs_approval=True, grant_use="once")
        async def export(ctx: CommandContext, p: Export) -> dict[str, Any]:
            assert ctx.auth.approval is not None
            self.acted.append(("export_clip", ctx.auth.approval["sub"]))
            return {}

        self.dispatcher = Dispatcher(DEVICE, reg, self.gate, self.audit, lambda: {"gate", "lobby"})

    async def send(self, action: str, grant: str | None, approval: str | None = None, **params: Any) -> Any:
        body = {"id": "c1", "action": action, "params": params, "grant": grant, "approval": approval}
        return await self.dispatcher.handle(json.dumps(body).encode())

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log_path.read_bytes().splitlines()]


@pytest.fixture
def ga() -> GrantAuthority:
    return GrantAuthority.create()


@pytest.fixture
def node(tmp_path: Path, ga: GrantAuthority) -> Node:
    return Node(tmp_path, ga)


async def test_denials_name_the_verified_requester_or_the_claimed_one(node: Node, ga: GrantAuthority) -> None:
    outside = ga.grant(
        role="district_police",
        actions=["ptz_move"],
        aud=DEVICE,
        area={"province": "01", "district": "002"},
        sub="officer-42",
        unit="PC-002",
        purpose="follow a suspect vehicle",
        purpose_ref="case 17/2026",
    )
    r = await node.send("ptz_move", outside, camera="gate")
    assert r.error.code == "forbidden"
    forged = outside[:-4] + ("AAAA" if not outside.endswith("AAAA") else "BBBB")
    r = await node.send("ptz_move", forged, camera="gate")
    assert r.error.code == "unauthorized"
    ok = ga.grant(role="district_police", actions=["ptz_move"], aud=DEVICE, area={**PROV, "district": "001"})
    assert (await node.send("ptz_move", ok, camera="gate")).ok
    refused, spoofed, allowed, result = node.records()
    # A valid grant refused on policy: the record names who, in which role, for what purpose.
    assert refused["decision"] == "denied" and refused["requester"] == "officer-42"
    assert refused["role"] == "district_police" and refused["purpose_ref"] == "case 17/2026"
    assert refused["grant_id"] and refused["detail"] == {"identity": "verified"}
    assert "outside the grant's area" in refused["reason"]
    # A forged signature: identity fields stay empty, what it claimed is kept apart, as a claim.
    assert spoofed["requester"] is None and spoofed["detail"]["claimed"]["sub"] == "officer-42"
    assert allowed["decision"] == "allowed" and result["kind"] == "result" and result["decision"] == "ok"
    assert node.acted == [("ptz_move", "officer-1")]


async def test_a_one_shot_grant_is_not_spent_on_a_camera_that_does_not_exist(
    node: Node, ga: GrantAuthority
) -> None:
    g = ga.grant(role="operator_unit", actions=["camera_reboot"], aud=DEVICE, area=PROV)
    r = await node.send("camera_reboot", g, camera="gaet")
    assert r.error.code == "not_found"
    assert (await node.send("camera_reboot", g, camera="gate")).ok
    r = await node.send("camera_reboot", g, camera="gate")
    assert r.error.code == "replayed"
    assert node.acted == [("camera_reboot", "officer-1")]


async def test_export_end_to_end_needs_the_leadership_signature(node: Node, ga: GrantAuthority) -> None:
    req = ga.grant(
        role="district_police", actions=["export_clip"], aud=DEVICE, area={**PROV, "district": "001"}
    )
    jti = jwt.decode(req, options={"verify_signature": False})["jti"]
    t0 = time.time() - 3600
    params: dict[str, Any] = {"camera": "gate", "start": t0 + 60, "end": t0 + 120}
    r = await node.send("export_clip", req, **params)
    assert r.error.code == "forbidden" and "approval" in r.error.message
    by_grant_key = ga.approval(
        approves=jti, camera="gate", start=t0, end=t0 + 600, aud=DEVICE, area=PROV, signer=ga.key("grant")
    )
    r = await node.send("export_clip", req, by_grant_key, **params)
    assert r.error.code == "unauthorized" and "unsuitable key" in r.error.message
    other_camera = ga.approval(approves=jti, camera="lobby", start=t0, end=t0 + 600, aud=DEVICE, area=PROV)
    r = await node.send("export_clip", req, other_camera, **params)
    assert r.error.code == "forbidden" and "another camera" in r.error.message
    good = ga.approval(approves=jti, camera="gate", start=t0, end=t0 + 600, aud=DEVICE, area=PROV)
    assert (await node.send("export_clip", req, good, **params)).ok
    assert node.acted == [("export_clip", "leader-1")]
    assert (await node.send("export_clip", req, good, **params)).error.code == "replayed"
    decisions = [r["decision"] for r in node.records() if r["kind"] == "decision"]
    assert decisions == ["denied", "denied", "denied", "allowed", "denied"]


async def test_every_record_is_queued_in_the_durable_outbox(tmp_path: Path, ga: GrantAuthority) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", DEVICE, 10 * 2**20)

    async def sink(rec: AuditRecord) -> None:
        await outbox.put("audit", rec)

    node = Node(tmp_path, ga, sink=sink)
    g = ga.grant(role="provincial_police", actions=["ptz_move"], aud=DEVICE, area=PROV, ttl=600)
    await node.send("ptz_move", g, camera="gate")
    await node.send("ptz_move", None, camera="gate")
    await node.send("ptz_move", g, camera="nowhere")
    node.audit.close()
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.sqlite", DEVICE, 10 * 2**20)  # survives a restart
    batch = await reopened.next_batch(100, set())
    reopened.close()
    queued = [json.loads(m.payload)["data"] for m in batch if m.channel == "audit"]
    on_disk = node.records()
    assert len(on_disk) == 4 and queued == on_disk
    # what the center received verifies on its own (the chain runs through the delivered copies)
    assert verify_lines([json.dumps(q).encode() for q in queued], None).ok


async def test_es256_keys_sign_grants_and_an_alg_swap_is_refused(tmp_path: Path) -> None:
    ga = GrantAuthority.create()
    ec_key = ga.add_key("grant", alg="ES256")
    node = Node(tmp_path, ga)
    g = ga.grant(role="provincial_police", actions=["ptz_move"], aud=DEVICE, area=PROV, signer=ec_key)
    assert jwt.get_unverified_header(g)["alg"] == "ES256"
    assert (await node.send("ptz_move", g, camera="gate")).ok
    ed = ga.keys[next(k for k, v in ga.keys.items() if v.usage == "grant" and v.alg == "EdDSA")]
    claims = jwt.decode(g, options={"verify_signature": False})
    swapped = jwt.encode(
        {**claims, "jti": "swap-0000001"}, ed.private, algorithm="EdDSA", headers={"kid": ec_key.kid}
    )
    r = await node.send("ptz_move", swapped, camera="gate")
    assert r.error.code == "unauthorized" and "does not match its key" in r.error.message
    from cryptography.hazmat.primitives import serialization
    from joserfc import jwt as jrfc_jwt
    from joserfc.jwk import ECKey

    pem = ec_key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    other = jrfc_jwt.encode(
        {"alg": "ES256", "kid": ec_key.kid}, {**claims, "jti": "joserfc-es256-1"}, ECKey.import_key(pem)
    )
    assert (await node.send("ptz_move", other, camera="gate")).ok


# ------------------------------------------------------------------ signed, but absurd
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from([math.inf, -math.inf, 1e400, "", "01", "ptz_move", "box-01", "area:01"]),
    st.text(max_size=12),
    st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
    st.dictionaries(
        st.sampled_from(["province", "district", "commune", "x"]), st.text(max_size=4), max_size=3
    ),
)
CLAIMS = [
    "iss",
    "sub",
    "aud",
    "unit",
    "role",
    "actions",
    "area",
    "cameras",
    "purpose",
    "nbf",
    "exp",
    "jti",
    "iat",
]


async def test_signed_grants_with_absurd_claims_are_refused_never_crash(
    tmp_path: Path, ga: GrantAuthority
) -> None:
    node = Node(tmp_path, ga)
    key = ga.key("grant")
    now = time.time()
    base: dict[str, Any] = {
        "iss": "center-authority",
        "sub": "officer-1",
        "aud": DEVICE,
        "unit": "u",
        "role": "provincial_police",
        "actions": ["get_status"],
        "area": PROV,
        "purpose": "incident response",
        "nbf": int(now),
        "exp": int(now + 300),
        "jti": "fuzz-grant-0001",
    }
    tokens: list[str] = []

    @settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        st.dictionaries(st.sampled_from(CLAIMS), values, min_size=1, max_size=4),
        st.sets(st.sampled_from(CLAIMS)),
    )
    def collect(override: dict[str, Any], drop: set[str]) -> None:
        claims = {k: v for k, v in {**base, **override}.items() if k not in drop}
        claims.setdefault("role", "provincial_police")
        try:
            tokens.append(jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid}))
        except (TypeError, ValueError, OverflowError):
            pass  # not even encodable as JSON: nothing to send

    collect()
    assert len(tokens) > 800
    reg = node.dispatcher.registry

    class NoParams(BaseModel):
        model_config = ConfigDict(extra="forbid")

    @reg.action("get_status", NoParams)
    async def status(ctx: CommandContext, p: NoParams) -> dict[str, Any]:
        node.acted.append(("get_status", ctx.auth.requester))
        return {}

    codes: dict[str, int] = {}
    for t in tokens:
        r = await node.send("get_status", t)
        if r.ok:  # a mutation that left a fully valid grant (e.g. a different sub) may pass
            continue
        codes[r.error.code] = codes.get(r.error.code, 0) + 1
        assert r.error.code in {"unauthorized", "forbidden", "replayed"}, r.error
    node.audit.close()
    recs = node.records()
    denied = [x for x in recs if x["kind"] == "decision" and x["decision"] == "denied"]
    assert len(denied) == sum(codes.values()) and sum(codes.values()) > 700
    # whatever passed was a genuinely valid grant for get_status with a stated purpose
    for x in recs:
        if x.get("decision") == "allowed":
            assert x["role"] == "provincial_police" and len(x["purpose"]) >= 3
    assert verify_file(node.log_path, None).ok


async def test_update_trust_through_the_dispatcher_rotates_keys_and_is_audited(
    tmp_path: Path, ga: GrantAuthority
) -> None:
    from agent.config import AgentSettings
    from agent.policy import handlers
    from agent.services import Services

    node = Node(tmp_path, ga)
    settings = AgentSettings.model_validate(
        {
            "device": {
                "id": DEVICE,
                "owner_org": "Org A",
                "location": {"province": "01", "district": "001", "commune": "00004"},
            },
            "center": {"host": "localhost", "insecure_dev": True},
            "storage": {"state_dir": str(tmp_path / "state")},
        }
    )
    outbox = Outbox(tmp_path / "o.sqlite", DEVICE, 2**20)
    handlers.register(
        node.dispatcher.registry, Services(settings=settings, outbox=outbox), node.gate.trust, node.audit
    )
    new = GrantAuthority.create()
    new.keyset_version = 2
    op = ga.grant(role="operator_unit", actions=["update_trust"], aud=DEVICE, area=PROV)
    bad = await node.send("update_trust", op, keyset_jws=new.signed_keyset_update(new.keyset()))
    assert bad.error.code == "invalid_params" and "not signed by a trusted" in bad.error.message
    op2 = ga.grant(role="operator_unit", actions=["update_trust"], aud=DEVICE, area=PROV)
    r = await node.send("update_trust", op2, keyset_jws=ga.signed_keyset_update(new.keyset()))
    assert r.ok and r.result["version"] == 2 and set(r.result["kids"]) == set(new.keys)
    assert json.loads((tmp_path / "keyset.json").read_text())["version"] == 2  # persisted
    assert (tmp_path / "keyset.json").stat().st_mode & 0o777 == 0o600
    police = ga.grant(role="provincial_police", actions=["ptz_move"], aud=DEVICE, area=PROV)
    assert (await node.send("ptz_move", police, camera="gate")).error.code == "unauthorized"  # old key gone
    police = new.grant(role="provincial_police", actions=["ptz_move"], aud=DEVICE, area=PROV)
    assert (await node.send("ptz_move", police, camera="gate")).ok
    rotated = [x for x in node.records() if x.get("reason") == "trust_updated"]
    assert len(rotated) == 1 and rotated[0]["requester"] == "officer-1"
    assert set(rotated[0]["detail"]["added"]) == set(new.keys) and rotated[0]["detail"]["version"] == 2
    outbox.close()


def test_an_unusable_key_set_file_means_trust_nothing_not_a_crash(tmp_path: Path) -> None:
    for junk in [
        "{not json",
        '{"keys": 5}',
        '{"keys": [{"kid": "a", "edge_usage": "grant", "kty": "OKP"}]}',
        "[]",
    ]:
        (tmp_path / "keyset.json").write_text(junk)
        store = TrustStore(tmp_path / "keyset.json")
        assert not store.loaded and store.error and "unusable key set" in store.error
