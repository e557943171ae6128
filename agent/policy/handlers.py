"""`update_trust`: install a key set signed by a currently trusted trust key (key rotation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.mqtt.envelope import CommandError, ErrorCode
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.trust import TrustError, TrustStore
from agent.services import Services


class UpdateTrustParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyset_jws: str = Field(
        ..., min_length=16, max_length=60000, description="JWT signed by a trust key, claim `keyset`."
    )


class UpdateTrustResult(BaseModel):
    version: int


def register(registry: HandlerRegistry, services: Services, trust: TrustStore) -> None:
    @registry.action("update_trust", UpdateTrustParams, grant_use="once", summary="Rotate the trusted keys.")
    async def update_trust(ctx: CommandContext, params: UpdateTrustParams) -> UpdateTrustResult:
        try:
            version = trust.apply_update(params.keyset_jws)
        except TrustError as exc:
            raise CommandError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        return UpdateTrustResult(version=version)
