"""The policy gate: each row of the regulation's matrix, allowed and denied, and every kind of bad token."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel

from agent.config import Location
from agent.mqtt.envelope import CommandEnvelope, CommandError, ErrorCode
from agent.mqtt.registry import ActionSpec
from agent.policy.gate import MAX_GRANT_BYTES, PolicyGate
from agent.policy.matrix import PolicyMatrix
from agent.policy.replay import ReplayCache
from agent.policy.trust import TrustStore
from provisioning.grant_authority import GrantAuthority

DEVICE = "box-01"
LOC = {"province": "01", "district": "001", "commune": "00004"}
PROV = {"province": "01"}
DIST = {"province": "01", "district": "001"}
COMM = LOC


class P(BaseModel):
    camera: str | None = None


async def _h(ctx: Any, params: Any) -> None:
    return None


def spec(name: str, **kw: Any) -> ActionSpec:
    return ActionSpec(name=name, handler=_h, params_model=P, **kw)


@pytest.fixture
def ga() -> GrantAuthority:
    return GrantAuthority.create()


@pytest.fixture
def gate(tmp_path: Path, ga: GrantAuthority) -> PolicyGate:
    (tmp_path / "keyset.json").write_text(ga.keyset_json())
    return PolicyGate(
        device_id=DEVICE,
        owner_org="Org A",
        location=Location(**LOC),
        trust=TrustStore(tmp_path / "keyset.json"),
        policy=PolicyMatrix.load(),
        replay=ReplayCache(tmp_path / "replay.sqlite"),
    )


def env(action: str, grant: str | None, approval: str | None = None, **params: Any) -> CommandEnvelope:
    return CommandEnvelope(id="c1", action=action, params=params, grant=grant, approval=approval)


def check(gate: PolicyGate, action: str, grant: str | None, *, camera: str | None = None, **kw: Any) -> Any:
    s = spec(action, needs_camera=camera is not None, **kw)
    return gate.check(env(action, grant, camera=camera), s, camera)


def denied(
    gate: PolicyGate, action: str, grant: str | None, code: ErrorCode, match: str = "", **kw: Any
) -> str:
    with pytest.raises(CommandError) as e:
        check(gate, action, grant, **kw)
    assert e.value.code == code, e.value.message
    assert match in e.value.message
    return e.value.message


# ------------------------------------------------------------------ the matrix, row by row
@pytest.mark.parametrize(
    ("role", "area", "action", "ok"),
    [
        ("provincial_police", PROV, "ptz_move", True),
        ("provincial_police", PROV, "face_detect", True),
        ("provincial_police", {"province": "79"}, "stream_start", False),  # another province
        ("city_police", PROV, "stream_start", True),
        ("district_police", DIST, "ptz_move", True),  # inside their district
        ("district_police", {"province": "01", "district": "002"}, "ptz_move", False),  # outside
        ("district_police", PROV, "stream_start", False),  # a district grant must name its district
        ("commune_police", COMM, "stream_start", True),
        ("commune_police", {**DIST, "commune": "00007"}, "stream_start", False),  # another commune
        ("traffic_police", PROV, "get_counts", True),
        ("traffic_police", PROV, "ptz_move", False),
        ("transport_dept", PROV, "get_counts", True),
        ("transport_dept", PROV, "stream_start", True),
        ("transport_dept", PROV, "ptz_move", False),  # no PTZ for transport
        ("transport_dept", PROV, "export_clip", False),  # no export
        ("operator_unit", PROV, "set_rules", True),
        ("operator_unit", PROV, "camera_reboot", True),
        ("operator_unit", PROV, "stream_start", False),
        ("police_leadership", PROV, "stream_start", False),  # approves only
        ("stranger", PROV, "get_status", False),
    ],
)
def test_matrix_row(
    gate: PolicyGate, ga: GrantAuthority, role: str, area: dict[str, str], action: str, ok: bool
) -> None:
    g = ga.grant(role=role, actions=[action], aud=DEVICE, area=area, ttl=600)
    if ok:
        ctx = check(gate, action, g, camera="gate" if action.startswith(("ptz", "stream")) else None)
        assert ctx.role == role and ctx.purpose == "incident response" and ctx.grant_id
    else:
        denied(
            gate,
            action,
            g,
            ErrorCode.FORBIDDEN,
            camera="gate" if action.startswith(("ptz", "stream")) else None,
        )


def test_installer_only_for_its_own_organization(gate: PolicyGate, ga: GrantAuthority) -> None:
    own = ga.grant(role="installer_org", actions=["get_rules"], aud=DEVICE, org="Org A")
    assert check(gate, "get_rules", own).role == "installer_org"
    other = ga.grant(role="installer_org", actions=["get_rules"], aud=DEVICE, org="Org B")
    denied(gate, "get_rules", other, ErrorCode.FORBIDDEN, "own devices")
    ptz = ga.grant(role="installer_org", actions=["ptz_move"], aud=DEVICE, org="Org A")
    denied(gate, "ptz_move", ptz, ErrorCode.FORBIDDEN, "may not ptz_move", camera="gate")


def test_other_agency_only_within_its_window_cameras_and_area(gate: PolicyGate, ga: GrantAuthority) -> None:
    kw: dict[str, Any] = {"role": "other_agency", "actions": ["get_counts"], "aud": DEVICE, "area": DIST}
    g = ga.grant(cameras=["gate"], purpose="flood monitoring", purpose_ref="letter 12/UBND", ttl=3600, **kw)
    assert check(gate, "get_counts", g).purpose_ref == "letter 12/UBND"
    expired = ga.grant(cameras=["gate"], nbf=time.time() - 7200, ttl=3600, **kw)
    denied(gate, "get_counts", expired, ErrorCode.UNAUTHORIZED, "expired")
    no_cams = ga.grant(**kw)
    denied(gate, "get_counts", no_cams, ErrorCode.FORBIDDEN, "names its cameras")
    stream = ga.grant(
        role="other_agency", actions=["stream_start"], aud=DEVICE, area=DIST, cameras=["lobby"], ttl=600
    )
    denied(gate, "stream_start", stream, ErrorCode.FORBIDDEN, "camera 'gate'", camera="gate")
    ptz = ga.grant(
        role="other_agency", actions=["ptz_move"], aud=DEVICE, area=DIST, cameras=["gate"], ttl=600
    )
    denied(gate, "ptz_move", ptz, ErrorCode.FORBIDDEN, "may not", camera="gate")


def test_grant_must_list_the_action_and_stay_short_for_live_actions(
    gate: PolicyGate, ga: GrantAuthority
) -> None:
    g = ga.grant(role="provincial_police", actions=["get_counts"], aud=DEVICE, area=PROV)
    denied(gate, "ptz_move", g, ErrorCode.FORBIDDEN, "does not include ptz_move", camera="gate")
    long = ga.grant(role="provincial_police", actions=["ptz_move"], aud=DEVICE, area=PROV, ttl=4 * 3600)
    denied(gate, "ptz_move", long, ErrorCode.FORBIDDEN, "exceeds 900 s", camera="gate")


def test_area_audience_is_accepted_and_foreign_audience_refused(gate: PolicyGate, ga: GrantAuthority) -> None:
    g = ga.grant(role="district_police", actions=["get_counts"], aud="area:01/001", area=DIST)
    assert check(gate, "get_counts", g).role == "district_police"
    for aud in ("box-02", "area:01/002", "area:79"):
        g = ga.grant(role="district_police", actions=["get_counts"], aud=aud, area=DIST)
        denied(gate, "get_counts", g, ErrorCode.UNAUTHORIZED, "audience")


# ------------------------------------------------------------------ extraction needs two signatures
def test_export_needs_a_leadership_approval_for_this_request(gate: PolicyGate, ga: GrantAuthority) -> None:
    s = spec("export_clip", needs_camera=True, needs_approval=True, grant_use="once")
    req = ga.grant(
        role="traffic_police", actions=["export_clip"], aud=DEVICE, area=PROV, jti="req-0001-abcdef"
    )
    t0 = time.time() - 600
    good = ga.approval(
        approves="req-0001-abcdef", camera="gate", start=t0, end=t0 + 300, aud=DEVICE, area=PROV
    )

    def e(grant: str, approval: str | None, start: float = t0 + 10, end: float = t0 + 100) -> CommandEnvelope:
        return env("export_clip", grant, approval, camera="gate", start=start, end=end)

    with pytest.raises(CommandError, match="needs an approval"):
        gate.check(e(req, None), s, "gate")
    # approval signed with a grant key (not a leadership approval key)
    forged = ga.approval(
        approves="req-0001-abcdef",
        camera="gate",
        start=t0,
        end=t0 + 300,
        aud=DEVICE,
        area=PROV,
        signer=ga.key("grant"),
    )
    with pytest.raises(CommandError, match="unknown or unsuitable key"):
        gate.check(e(req, forged), s, "gate")
    # right key, wrong role claim
    not_leader = ga.approval(
        approves="req-0001-abcdef",
        camera="gate",
        start=t0,
        end=t0 + 300,
        aud=DEVICE,
        area=PROV,
        role="district_police",
    )
    with pytest.raises(CommandError, match="cannot approve"):
        gate.check(e(req, not_leader), s, "gate")
    other_req = ga.approval(
        approves="req-9999-zzzzzz", camera="gate", start=t0, end=t0 + 300, aud=DEVICE, area=PROV
    )
    with pytest.raises(CommandError, match="another request"):
        gate.check(e(req, other_req), s, "gate")
    with pytest.raises(CommandError, match="outside the approved"):
        gate.check(e(req, good, end=t0 + 900), s, "gate")
    ctx = gate.check(e(req, good), s, "gate")
    assert ctx.approval is not None and ctx.approval["approves"] == "req-0001-abcdef"
    with pytest.raises(CommandError) as again:  # one-shot: the same request cannot extract twice
        gate.check(e(req, good), s, "gate")
    assert again.value.code == ErrorCode.REPLAYED


# ------------------------------------------------------------------ bad tokens
def _b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


def test_bad_tokens_are_refused_with_typed_errors(gate: PolicyGate, ga: GrantAuthority) -> None:
    kw: dict[str, Any] = {"role": "provincial_police", "actions": ["get_counts"], "aud": DEVICE, "area": PROV}
    good = ga.grant(**kw)
    h, p, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    cases = {
        "no grant": (None, ErrorCode.UNAUTHORIZED, "needs a grant"),
        "forged signature": (
            f"{h}.{_b64({**claims, 'role': 'provincial_police', 'sub': 'mallory'})}.{sig}",
            ErrorCode.UNAUTHORIZED,
            "signature",
        ),
        "wrong key": (
            jwt.encode(
                claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": ga.key("grant").kid}
            ),
            ErrorCode.UNAUTHORIZED,
            "signature",
        ),
        "unknown kid": (
            jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "nope"}),
            ErrorCode.UNAUTHORIZED,
            "unknown",
        ),
        "alg none": (
            f"{_b64({'alg': 'none', 'kid': ga.key('grant').kid})}.{p}.",
            ErrorCode.UNAUTHORIZED,
            "not allowed",
        ),
        "alg HS256": (
            jwt.encode(
                claims,
                "secret-secret-secret-secret-secret",
                algorithm="HS256",
                headers={"kid": ga.key("grant").kid},
            ),
            ErrorCode.UNAUTHORIZED,
            "not allowed",
        ),
        "expired": (ga.grant(nbf=time.time() - 1000, ttl=100, **kw), ErrorCode.UNAUTHORIZED, "expired"),
        "not yet valid": (ga.grant(nbf=time.time() + 600, **kw), ErrorCode.UNAUTHORIZED, "not yet valid"),
        "wrong audience": (ga.grant(**{**kw, "aud": "box-77"}), ErrorCode.UNAUTHORIZED, "audience"),
        "truncated": (good[:-20], ErrorCode.UNAUTHORIZED, ""),
        "oversized": (good + "A" * MAX_GRANT_BYTES, ErrorCode.UNAUTHORIZED, "larger than"),
        "garbage": ("not-a-token", ErrorCode.UNAUTHORIZED, "malformed"),
        "no purpose": (ga.grant(**kw, purpose=""), ErrorCode.UNAUTHORIZED, "purpose"),
        "other issuer": (ga.grant(**kw, extra={"iss": "rogue-ca"}), ErrorCode.UNAUTHORIZED, "issued by"),
        "approval key as grant": (
            ga.grant(**kw, signer=ga.key("approval")),
            ErrorCode.UNAUTHORIZED,
            "unsuitable",
        ),
    }
    for name, (token, code, match) in cases.items():
        with pytest.raises(CommandError) as e:
            check(gate, "get_counts", token)
        assert e.value.code == code, name
        assert match in e.value.message, (name, e.value.message)


def test_clock_skew_allowance(gate: PolicyGate, ga: GrantAuthority) -> None:
    kw: dict[str, Any] = {"role": "provincial_police", "actions": ["get_counts"], "aud": DEVICE, "area": PROV}
    assert check(gate, "get_counts", ga.grant(nbf=time.time() + 20, **kw))  # 20 s ahead: within 30 s
    assert check(gate, "get_counts", ga.grant(nbf=time.time() - 320, ttl=300, **kw))  # expired 20 s ago


def test_replay_once_and_session_binding(gate: PolicyGate, ga: GrantAuthority, tmp_path: Path) -> None:
    g = ga.grant(role="operator_unit", actions=["camera_reboot"], aud=DEVICE, area=PROV)
    check(gate, "camera_reboot", g, camera="gate", grant_use="once")
    denied(gate, "camera_reboot", g, ErrorCode.REPLAYED, camera="gate", grant_use="once")
    s = ga.grant(role="provincial_police", actions=["stream_start"], aud=DEVICE, area=PROV, ttl=600)
    check(gate, "stream_start", s, camera="gate", grant_use="session")
    check(gate, "stream_start", s, camera="gate", grant_use="session")  # same session: fine
    denied(
        gate, "stream_start", s, ErrorCode.REPLAYED, "another session", camera="lobby", grant_use="session"
    )
    # The replay record survives a restart (same database).
    gate2 = PolicyGate(
        device_id=DEVICE,
        owner_org="Org A",
        location=Location(**LOC),
        trust=gate.trust,
        policy=gate.policy,
        replay=ReplayCache(tmp_path / "replay.sqlite"),
    )
    denied(gate2, "camera_reboot", g, ErrorCode.REPLAYED, camera="gate", grant_use="once")


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 prefers "Ed25519"
def test_tokens_from_an_independent_jose_implementation(gate: PolicyGate, ga: GrantAuthority) -> None:
    from cryptography.hazmat.primitives import serialization
    from joserfc import jwt as jrfc_jwt
    from joserfc.jwk import OKPKey

    k = ga.key("grant")
    pem = k.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = OKPKey.import_key(pem)
    now = int(time.time())
    claims = {
        "iss": "center-authority",
        "sub": "officer-9",
        "aud": DEVICE,
        "unit": "PC01",
        "role": "transport_dept",
        "actions": ["get_counts"],
        "area": PROV,
        "purpose": "traffic planning",
        "purpose_ref": "plan-2026",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "joserfc-grant-0001",
    }
    token = jrfc_jwt.encode({"alg": "EdDSA", "kid": k.kid}, claims, key, algorithms=["EdDSA"])
    ctx = check(gate, "get_counts", token)
    assert ctx.requester == "officer-9" and ctx.role == "transport_dept"
    bad = jrfc_jwt.encode(
        {"alg": "EdDSA", "kid": k.kid},
        {**claims, "role": "transport_dept", "actions": ["ptz_move"]},
        key,
        algorithms=["EdDSA"],
    )
    denied(gate, "ptz_move", bad, ErrorCode.FORBIDDEN, camera="gate")


def test_trust_rotation_needs_a_trust_key_signature(gate: PolicyGate, ga: GrantAuthority) -> None:
    from agent.policy.trust import TrustError

    new = GrantAuthority.create()
    new.keyset_version = 2
    with pytest.raises(TrustError, match="not signed by a trusted"):
        gate.trust.apply_update(new.signed_keyset_update(new.keyset()))  # signed by the new, untrusted key
    with pytest.raises(TrustError, match="not signed by a trusted"):
        gate.trust.apply_update(ga.signed_keyset_update(new.keyset(), signer=ga.key("grant")))
    assert gate.trust.apply_update(ga.signed_keyset_update(new.keyset())) == 2
    old = ga.grant(role="provincial_police", actions=["get_counts"], aud=DEVICE, area=PROV)
    denied(gate, "get_counts", old, ErrorCode.UNAUTHORIZED, "unknown")
    fresh = new.grant(role="provincial_police", actions=["get_counts"], aud=DEVICE, area=PROV)
    assert check(gate, "get_counts", fresh)
    with pytest.raises(TrustError, match="version"):  # no rollback to an older key set
        gate.trust.apply_update(new.signed_keyset_update({**ga.keyset(), "version": 1}))


def test_policy_matrix_names_every_action_the_agent_registers() -> None:
    from agent.app import AgentApp

    policy = PolicyMatrix.load()
    granted = {a for r in policy.roles.values() for a in r.actions}
    ungoverned = [a for a in AgentApp.all_action_names() if a not in granted and a != "ping"]
    assert not ungoverned, f"actions no role may use (add them to policy.json): {ungoverned}"
    assert (
        policy.ptz_priority("provincial_police")
        > policy.ptz_priority("district_police")
        > policy.ptz_priority("commune_police")
        > policy.ptz_priority("transport_dept")
    )


KNOWN_ACTIONS = [
    "get_status", "get_counts", "search_events", "get_snapshot", "set_rules", "get_rules",
    "stream_start", "stream_stop", "stream_ice", "stream_push", "ptz_move", "ptz_stop",
    "ptz_goto_preset", "ptz_set_preset", "ptz_remove_preset", "ptz_home", "ptz_status",
    "camera_reboot", "export_clip", "update_trust", "config_get", "config_set", "face_detect",
]  # fmt: skip
SCOPED: dict[str, dict[str, Any]] = {
    "province": {"area": PROV},
    "district": {"area": DIST},
    "commune": {"area": COMM},
    "own_org": {"org": "Org A"},
    "grant": {"area": DIST, "cameras": ["gate"]},
}


@pytest.mark.parametrize("role", sorted(PolicyMatrix.load().roles))
def test_the_gate_enforces_exactly_the_matrix(gate: PolicyGate, ga: GrantAuthority, role: str) -> None:
    """Every role x every known action: a well-scoped grant passes iff policy.json allows it; the
    matrix names every action (unknown actions are denied for everyone)."""
    matrix = PolicyMatrix.load()
    scope = matrix.roles[role].scope
    for i, action in enumerate([*KNOWN_ACTIONS, "teleport"]):
        g = ga.grant(
            role=role, actions=[action], aud=DEVICE, ttl=600, jti=f"{role}-{i}-xxxx", **SCOPED[scope]
        )
        s = spec(action, needs_camera=True, needs_approval=action == "export_clip")
        approval = ga.approval(
            approves=f"{role}-{i}-xxxx", camera="gate", start=0, end=2e9, aud=DEVICE, area=PROV
        )
        e = env(action, g, approval, camera="gate", start=100, end=200)
        if matrix.allows(role, action):
            assert gate.check(e, s, "gate").role == role
        else:
            with pytest.raises(CommandError) as err:
                gate.check(e, s, "gate")
            assert err.value.code == ErrorCode.FORBIDDEN and f"may not {action}" in err.value.message
    granted = {a for r in matrix.roles.values() for a in r.actions}
    assert set(KNOWN_ACTIONS) <= granted


@pytest.mark.parametrize(
    ("role", "action", "why"),
    [
        ("transport_dept", "ptz_move", "no PTZ: state traffic management only"),
        ("transport_dept", "export_clip", "no extraction"),
        ("transport_dept", "face_detect", "face recognition is for police"),
        ("traffic_police", "face_detect", "face recognition is for the territorial police"),
        ("traffic_police", "ptz_move", "PTZ is for the territorial police"),
        ("commune_police", "ptz_set_preset", "commune police move, but do not reconfigure presets"),
        ("installer_org", "ptz_move", "installers run their cameras, they do not surveil"),
        ("installer_org", "export_clip", "no extraction"),
        ("other_agency", "ptz_move", "other agencies: only read actions a written request can justify"),
        ("other_agency", "export_clip", "no extraction"),
        ("police_leadership", "get_snapshot", "leadership approves; it does not act"),
        ("operator_unit", "stream_start", "the operator maintains; it does not watch"),
        ("operator_unit", "face_detect", "the operator maintains; it does not analyse"),
    ],
)
def test_regulation_denials_hold_in_the_data(role: str, action: str, why: str) -> None:
    """Independent of policy.json: what the regulation forbids stays forbidden (guards edits)."""
    assert not PolicyMatrix.load().allows(role, action), why


@pytest.mark.parametrize(
    ("role", "actions"),
    [
        ("provincial_police", ["ptz_move", "face_detect", "search_events", "stream_start", "export_clip"]),
        ("city_police", ["ptz_move", "face_detect", "search_events", "stream_start", "export_clip"]),
        ("district_police", ["ptz_move", "face_detect", "search_events", "stream_start", "export_clip"]),
        ("commune_police", ["ptz_move", "face_detect", "search_events", "stream_start", "export_clip"]),
        ("traffic_police", ["get_counts", "search_events", "get_snapshot", "export_clip"]),
        ("transport_dept", ["get_counts", "search_events", "stream_start"]),
        ("operator_unit", ["get_status", "config_set", "camera_reboot", "update_trust", "set_rules"]),
        ("installer_org", ["get_status", "set_rules", "get_counts"]),
    ],
)
def test_regulation_permissions_hold_in_the_data(role: str, actions: list[str]) -> None:
    m = PolicyMatrix.load()
    assert [a for a in actions if not m.allows(role, a)] == []


def test_the_shared_fixture_gate_trusts_the_session_authority(policy_gate: Any, authority: Any) -> None:
    g = policy_gate(cameras={"gate"})
    grant = authority.grant(
        role="commune_police", actions=["ptz_move"], aud="box-01", area=g.location.model_dump()
    )
    assert g.check(env("ptz_move", grant, camera="gate"), spec("ptz_move", needs_camera=True), "gate")
    with pytest.raises(CommandError) as e:
        g.check(env("ptz_move", grant, camera="lobby"), spec("ptz_move", needs_camera=True), "lobby")
    assert e.value.code == ErrorCode.NOT_FOUND


def test_export_time_range_accepts_iso_times_and_refuses_a_missing_or_inverted_range(
    gate: PolicyGate, ga: GrantAuthority
) -> None:
    s = spec("export_clip", needs_camera=True, needs_approval=True, grant_use="once")
    t0 = 1_780_000_000.0

    def attempt(jti: str, **params: Any) -> Any:
        req = ga.grant(role="provincial_police", actions=["export_clip"], aud=DEVICE, area=PROV, jti=jti)
        ok = ga.approval(approves=jti, camera="gate", start=t0, end=t0 + 600, aud=DEVICE, area=PROV)
        return gate.check(env("export_clip", req, ok, camera="gate", **params), s, "gate")

    iso = dt.datetime.fromtimestamp(t0 + 60, dt.timezone.utc).isoformat()
    assert attempt("iso-range-0001", start=iso, end=t0 + 120).approval is not None
    for i, params in enumerate([{}, {"start": t0 + 100, "end": t0 + 50}, {"start": True, "end": t0 + 9}]):
        with pytest.raises(CommandError, match="needs a time range"):
            attempt(f"bad-range-000{i}", **params)


def test_the_documented_matrix_is_the_enforced_one() -> None:
    from agent.policy.matrix import markdown_table

    doc = (Path(__file__).parents[1] / "docs" / "access-policy.md").read_text()
    documented = doc.split("<!-- matrix:begin -->\n")[1].split("\n<!-- matrix:end -->")[0]
    assert documented == markdown_table(PolicyMatrix.load()), "regenerate: python -m agent.policy.matrix"


def test_a_camera_bound_grant_also_limits_camera_filters_of_other_actions(
    gate: PolicyGate, ga: GrantAuthority
) -> None:
    g = ga.grant(role="other_agency", actions=["get_counts"], aud=DEVICE, area=DIST, cameras=["gate"])
    s = spec("get_counts")  # not camera-bound: an optional `camera` filter
    assert gate.check(env("get_counts", g, camera="gate"), s, None).cameras == ["gate"]
    assert gate.check(env("get_counts", g), s, None).cameras == ["gate"]  # handler scopes to these
    with pytest.raises(CommandError, match="does not cover camera 'lobby'"):
        gate.check(env("get_counts", g, camera="lobby"), s, None)
