"""What the policy gate hands to a handler once a command is authorized."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, Field


class AuthContext(BaseModel):
    """Who asked, in what capacity, for what purpose. Handlers use this for auditing and
    for per-requester state (PTZ lock owner, stream session owner); they never re-check permissions."""

    requester: str = Field(..., description="Person id (grant 'sub').")
    unit: str = Field("", description="Requesting unit.")
    role: str
    purpose: str = ""
    purpose_ref: str = ""
    grant_id: str = ""
    cameras: list[str] | None = None
    expires_at: float | None = None
    claims: dict[str, Any] = Field(default_factory=dict)
    approval: dict[str, Any] | None = None


# The identity behind a refused command, when the gate got far enough to verify the grant's
# signature (e.g. a valid grant for the wrong area). The gate sets it in the caller's context;
# the audit log reads it for the denial record, pairing it with the very envelope it belongs to.
denied_identity: ContextVar[tuple[object, AuthContext] | None] = ContextVar("denied_identity", default=None)
