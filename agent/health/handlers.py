"""Liveness and status commands."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel, ConfigDict, Field

from agent import __version__
from agent.camera.manager import CameraStatus
from agent.config import Location
from agent.health.telemetry import Telemetry, camera_states
from agent.mqtt.messages import OutboxStats
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.services import Services


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    echo: str | None = Field(None, max_length=256)


class PingResult(BaseModel):
    pong: bool = True
    echo: str | None = None
    ts: float


class StatusResult(BaseModel):
    device_id: str
    version: str
    owner_org: str
    location: Location
    uptime_s: float
    cameras: list[CameraStatus]
    outbox: OutboxStats
    features: dict[str, object]


def register(registry: HandlerRegistry, services: Services, telemetry: Telemetry) -> None:
    @registry.action("ping", PingParams, requires_grant=False, summary="Liveness check; needs no grant.")
    async def ping(ctx: CommandContext, params: PingParams) -> PingResult:
        return PingResult(echo=params.echo, ts=time.time())

    @registry.action("get_status", NoParams, summary="Device, cameras, outbox and feature status.")
    async def get_status(ctx: CommandContext, params: NoParams) -> StatusResult:
        snap = await asyncio.to_thread(telemetry.snapshot)
        s = services.settings
        return StatusResult(
            device_id=s.device.id,
            version=__version__,
            owner_org=s.device.owner_org,
            location=s.device.location,
            uptime_s=snap.uptime_s,
            cameras=camera_states(services),
            outbox=snap.outbox,
            features=snap.features,
        )
