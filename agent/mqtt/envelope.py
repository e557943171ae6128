"""Command envelope and response: the typed request/response contract of the command channel.

Every request that arrives on ``cam/v1/<device>/cmd`` must parse as :class:`CommandEnvelope`;
every answer is a :class:`CommandResponse`. Anything else becomes a typed error, never a crash.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_COMMAND_BYTES = 64 * 1024
"""Hard cap on a command payload; larger payloads are refused before parsing."""


class ErrorCode(str, Enum):
    """Machine-readable reasons a command failed. The center branches on these, never on text."""

    MALFORMED = "malformed"  # payload is not JSON or does not match the envelope schema
    TOO_LARGE = "too_large"  # payload over MAX_COMMAND_BYTES
    UNKNOWN_ACTION = "unknown_action"
    INVALID_PARAMS = "invalid_params"
    UNAUTHORIZED = "unauthorized"  # no grant, bad signature, wrong audience, expired ...
    FORBIDDEN = "forbidden"  # valid grant, but role/area/camera/purpose does not allow it
    REPLAYED = "replayed"
    NOT_FOUND = "not_found"
    BUSY = "busy"  # e.g. PTZ lock held by a higher-priority requester
    LIMIT = "limit"  # session/bitrate/rate limits
    UNAVAILABLE = "unavailable"  # camera offline, feature not configured
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class CommandError(Exception):
    """Raised by the gate or a handler; turned into an error response by the dispatcher."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class CommandEnvelope(BaseModel):
    """A request from the center (or an operator tool) to this device."""

    model_config = ConfigDict(extra="forbid")

    v: int = Field(1, description="Envelope version.", ge=1, le=1)
    id: str = Field(
        ..., min_length=1, max_length=128, description="Command id, unique per requester; echoed."
    )
    action: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    params: dict[str, Any] = Field(default_factory=dict, description="Action parameters (schema per action).")
    grant: str | None = Field(
        None,
        max_length=16384,
        description="Compact JWS authorization grant signed by the center's authority.",
    )
    approval: str | None = Field(
        None, max_length=16384, description="Second grant (leadership approval) for actions that need two."
    )
    sent_at: float | None = Field(None, description="Sender's clock, seconds since epoch (diagnostics only).")


class ErrorInfo(BaseModel):
    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class CommandResponse(BaseModel):
    """Answer to a command, published to the request's MQTT 5 response topic."""

    v: int = 1
    id: str | None = Field(None, description="The command id, or null when the request could not be parsed.")
    device_id: str
    action: str | None = None
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    ts: float = Field(default_factory=time.time)
