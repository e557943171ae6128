"""Property test over the agent's real command path: the app's own registry (every action every
area registers), its own gate and audit log, built from settings. Thousands of malformed envelopes,
tokens and near-miss grants: no crash, no action, every refusal audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.app import AgentApp
from agent.config import AgentSettings
from agent.mqtt.dispatch import Dispatcher
from agent.policy.audit import verify_file
from provisioning.grant_authority import GrantAuthority


def build_app(tmp_path: Path, ga: GrantAuthority) -> AgentApp:
    state = tmp_path / "state"
    (state / "trust").mkdir(parents=True, mode=0o700)
    (state / "trust" / "keyset.json").write_text(ga.keyset_json())
    s = AgentSettings.model_validate(
        {
            "device": {
                "id": "box-01",
                "owner_org": "Org A",
                "location": {"province": "01", "district": "001", "commune": "00004"},
            },
            "center": {"host": "localhost", "insecure_dev": True},
            "storage": {"state_dir": str(state)},
        }
    )
    app = AgentApp(s)
    app.register_handlers()
    return app


async def test_the_real_registry_never_acts_on_malformed_or_unauthorized_commands(tmp_path: Path) -> None:
    ga = GrantAuthority.create()
    stranger = GrantAuthority.create()  # same format, untrusted keys
    app = build_app(tmp_path, ga)
    actions = [a for a in app.registry.names() if a != "ping"]
    assert len(actions) >= 10
    disp = Dispatcher("box-01", app.registry, app.policy.gate, app.policy.audit, lambda: {"gate"})

    # near misses: real signatures, each invalid for any action: no purpose, wrong area, audience,
    # untrusted key, expired, a role that acts on nothing, a key of the wrong usage
    def near_miss(action: str, kind: int) -> str | None:
        base: dict[str, Any] = {"actions": [action], "aud": "box-01", "area": {"province": "01"}}
        return [
            lambda: ga.grant(role="provincial_police", purpose="", **base),  # no stated purpose
            lambda: ga.grant(
                role="district_police", **{**base, "area": {"province": "01", "district": "002"}}
            ),
            lambda: ga.grant(role="provincial_police", **{**base, "aud": "box-02"}),
            lambda: stranger.grant(role="provincial_police", **base),
            lambda: ga.grant(role="provincial_police", nbf=1_000_000, ttl=60, **base),
            lambda: ga.grant(role="police_leadership", **base),
            lambda: ga.grant(role="provincial_police", signer=ga.key("approval"), **base),
            lambda: None,
        ][kind]()

    tokens = st.one_of(
        st.none(),
        st.text(max_size=200),
        st.builds(
            lambda a, b, c: f"{a}.{b}.{c}",
            st.text("eyJhbGciOiJFZERTQSJ9-_=", max_size=40),
            st.text("abcXYZ-_", max_size=120),
            st.text("abc-_", max_size=90),
        ),
    )
    params = st.dictionaries(
        st.sampled_from(["camera", "start", "end", "x", "preset", "pan", "keyset_jws", "sdp"]),
        st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.none(), st.just("gate")),
        max_size=4,
    )
    payloads = st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda i, a, p, g, ap: json.dumps(
                {"id": i, "action": a, "params": p, "grant": g, "approval": ap}
            ).encode(),
            st.one_of(st.text(min_size=1, max_size=12), st.integers()),
            st.one_of(st.sampled_from(actions), st.text(max_size=10)),
            params,
            tokens,
            tokens,
        ),
        st.builds(
            lambda a, k, p: json.dumps(
                {"id": "n", "action": a, "params": {"camera": "gate", **p}, "grant": near_miss(a, k)}
            ).encode(),
            st.sampled_from(actions),
            st.integers(0, 7),
            params,
        ),
    )
    batch: list[bytes] = []

    @settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(payloads)
    def collect(p: bytes) -> None:
        batch.append(p)

    collect()
    for p in batch:
        r = await disp.handle(p)
        assert r.ok is False and r.error is not None, (p[:200], r)
    await app.policy.stop()
    app.outbox.close()
    log = app.settings.storage.state_dir / "audit" / "audit.log"
    recs = [json.loads(x) for x in log.read_bytes().splitlines()]
    denied = [r for r in recs if r["kind"] == "decision" and r["decision"] == "denied"]
    assert len(denied) == len(batch)
    assert not [r for r in recs if r["kind"] in ("result",) or r.get("decision") == "allowed"]
    assert verify_file(log, None).ok
