"""What the policy gate hands to a handler once a command is authorized."""

from __future__ import annotations

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
