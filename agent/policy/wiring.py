"""Builds the policy gate and the audit log for the app (placeholder until the policy package lands)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.mqtt.envelope import CommandEnvelope, CommandError, ErrorCode
from agent.mqtt.registry import ActionSpec, HandlerRegistry
from agent.policy.context import AuthContext
from agent.services import Services


class _LivenessOnlyGate:
    async def authorize(self, env: CommandEnvelope, spec: ActionSpec, camera: str | None) -> AuthContext:
        if not spec.requires_grant:
            return AuthContext(requester="anonymous", role="anonymous")
        raise CommandError(ErrorCode.UNAUTHORIZED, "no trust anchors installed")


class _NullAudit:
    async def decision(self, *a: Any, **k: Any) -> None:
        return None

    async def result(self, *a: Any, **k: Any) -> None:
        return None

    async def event(self, *a: Any, **k: Any) -> None:
        return None


async def build_policy(
    services: Services, registry: HandlerRegistry
) -> tuple[Any, Any, Callable[[], Awaitable[None]]]:
    async def stop() -> None:
        return None

    return _LivenessOnlyGate(), _NullAudit(), stop
