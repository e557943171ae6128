"""Messages the agent publishes on its own topics (the center's side of the contract).

Feature-specific payloads (detection events, counts, audit records ...) live in their packages;
on durable channels they travel inside :class:`DurableMessage`.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.camera.manager import CameraStatus
from agent.config import Location

__all__ = ["DurableMessage", "OutboxStats", "StateMessage", "TelemetryMessage"]


class StateMessage(BaseModel):
    """Retained on ``<root>/<device>/state``: the birth message, or the will/clean offline message."""

    v: int = 1
    device_id: str
    status: Literal["online", "offline"]
    reason: Literal["birth", "shutdown", "lost"] = "birth"
    ts: float = Field(default_factory=time.time)
    version: str | None = None
    owner_org: str | None = None
    location: Location | None = None
    cameras: list[CameraStatus] = Field(default_factory=list)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    actions: list[str] = Field(default_factory=list, description="Command actions this device understands.")
    started_at: float | None = None


class OutboxStats(BaseModel):
    pending: int
    bytes: int
    delivered: int
    refused: int
    dropped: int
    rejected: int = Field(0, description="Not queued because the disk was full.")


class TelemetryMessage(BaseModel):
    """Periodic health on ``<root>/<device>/telemetry`` (QoS 0, not retained, not queued offline)."""

    v: int = 1
    device_id: str
    ts: float = Field(default_factory=time.time)
    uptime_s: float
    cpu_percent: float
    load_1m: float
    memory_used_percent: float
    process_rss_mb: float
    disk_free_mb: float
    disk_used_percent: float
    temperature_c: float | None = Field(None, description="Board temperature where the board reports one.")
    cameras: list[CameraStatus] = Field(default_factory=list)
    outbox: OutboxStats
    mqtt_reconnects: int = 0
    features: dict[str, Any] = Field(
        default_factory=dict, description="Per-feature figures (detect, streams ...)."
    )


class DurableMessage(BaseModel):
    """Wrapper of everything sent through the outbox; ``msg_id`` lets the center de-duplicate."""

    v: int = 1
    msg_id: str
    device_id: str
    channel: Literal["events", "counts", "alarms", "audit"]
    ts: float
    data: dict[str, Any]
