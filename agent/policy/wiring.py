"""Builds the policy gate and the audit log from settings, for the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from agent.mqtt.registry import HandlerRegistry
from agent.policy import handlers
from agent.policy.audit import AuditLog, AuditRecord, SigningKey
from agent.policy.gate import PolicyGate
from agent.policy.matrix import PolicyMatrix
from agent.policy.replay import ReplayCache
from agent.policy.trust import TrustStore
from agent.services import Services

log = logging.getLogger(__name__)


def load_device_key(services: Services) -> SigningKey | None:
    path = services.settings.key_file
    if not path.is_file():
        log.warning("no device key at %s: audit checkpoints will not be signed", path)
        return None
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError(f"{path}: device key must be ECDSA or Ed25519")
    return key


@dataclass
class Policy:
    gate: PolicyGate
    audit: AuditLog
    trust: TrustStore
    matrix: PolicyMatrix
    replay: ReplayCache

    def register(self, registry: HandlerRegistry, services: Services) -> None:
        handlers.register(registry, services, self.trust, self.audit)

    async def stop(self) -> None:
        await self.audit.checkpoint()
        self.audit.close()
        self.replay.close()


def build_policy(services: Services) -> Policy:
    s = services.settings
    trust_file = s.policy.trust_file or services.state_dir / "trust" / "keyset.json"
    trust = TrustStore(trust_file)
    if not trust.loaded:
        log.warning("no trusted key set at %s: every command that needs a grant will be refused", trust_file)
    policy = PolicyMatrix.load(s.policy.policy_file)
    replay = ReplayCache(s.policy.replay_file or services.state_dir / "replay.sqlite")

    async def sink(rec: AuditRecord) -> None:
        await services.outbox.put("audit", rec)

    audit = AuditLog(
        s.policy.audit_file or services.state_dir / "audit" / "audit.log",
        load_device_key(services),
        sink=sink,
        checkpoint_every=s.policy.audit_checkpoint_every,
        checkpoint_interval_s=s.policy.audit_checkpoint_interval_s,
    )
    gate = PolicyGate(
        device_id=s.device.id,
        owner_org=s.device.owner_org,
        location=s.device.location,
        trust=trust,
        policy=policy,
        replay=replay,
        cameras=lambda: {c.name for c in s.cameras},
        clock_skew_s=s.policy.clock_skew_s,
        max_grant_bytes=s.policy.max_grant_bytes,
    )
    services.extras["policy"] = policy
    services.extras["trust"] = trust
    # The center learns which rules and keys the device enforces (birth), and the audit chain head
    # (telemetry), so a trail that stops growing or is cut back shows at the center.
    services.capabilities["policy"] = {"matrix_version": policy.version, "trust_version": trust.version}
    services.telemetry_providers["audit"] = lambda: {
        "seq": audit.seq,
        "head": audit.head,
        "trust_version": trust.version,
        "trust_ok": trust.loaded,
    }
    return Policy(gate, audit, trust, policy, replay)
