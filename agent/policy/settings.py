"""Authorization and audit settings (section `[policy]`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PolicySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trust_file: Path | None = Field(
        None, description="Trusted key set (JWKS); default <state_dir>/trust/keyset.json."
    )
    policy_file: Path | None = Field(
        None, description="Role/action matrix; default: the one shipped with the agent."
    )
    audit_file: Path | None = Field(None, description="Audit trail; default <state_dir>/audit/audit.log.")
    replay_file: Path | None = Field(
        None, description="Grant ids already used (SQLite); default <state_dir>/replay.sqlite."
    )
    max_grant_bytes: int = Field(
        8192, ge=512, le=16384, description="Longer grant or approval tokens are refused unread."
    )
    clock_skew_s: float = Field(30.0, ge=0, le=300, description="Allowance for clock differences on nbf/exp.")
    audit_checkpoint_every: int = Field(
        100, ge=1, le=100000, description="Sign a checkpoint every N records."
    )
    audit_checkpoint_interval_s: float = Field(300.0, ge=1, description="... and at least this often.")
