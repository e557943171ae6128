"""`update_trust`: install a key set signed by a currently trusted trust key (key rotation)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field

from agent.mqtt.envelope import CommandError, ErrorCode
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.audit import AuditLog
from agent.policy.trust import TrustError, TrustStore
from agent.services import Services


class UpdateTrustParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyset_jws: str = Field(
        ..., min_length=16, max_length=60000, description="JWT signed by a trust key, claim `keyset`."
    )


class UpdateTrustResult(BaseModel):
    version: int
    kids: list[str]


def register(
    registry: HandlerRegistry,
    services: Services,
    trust: TrustStore | None = None,
    audit: AuditLog | None = None,
) -> None:
    store: TrustStore = trust or services.extras["trust"]

    @registry.action("update_trust", UpdateTrustParams, grant_use="once", summary="Rotate the trusted keys.")
    async def update_trust(ctx: CommandContext, params: UpdateTrustParams) -> UpdateTrustResult:
        before = store.kids()
        try:
            version = await asyncio.to_thread(store.apply_update, params.keyset_jws)
        except TrustError as exc:
            raise CommandError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        after = store.kids()
        if audit is not None:  # which keys came and went: the trail must show every rotation
            await audit.event(
                "trust_updated",
                ctx.auth,
                {
                    "version": version,
                    "added": sorted(set(after) - set(before)),
                    "removed": sorted(set(before) - set(after)),
                },
            )
        return UpdateTrustResult(version=version, kids=after)
