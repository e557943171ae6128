"""Live-stream section of the agent configuration (``[stream]``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class IceServer(BaseModel):
    """A STUN or TURN server (boxes sit behind NAT; TURN relays when nothing else works)."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(..., min_length=1, description="stun:host:port / turn:host:port?transport=udp")
    username: str | None = None
    credential: str | None = Field(
        None, description="TURN password (prefer short-lived ones from the grant)."
    )

    @field_validator("urls")
    @classmethod
    def _schemes(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"{url!r}: ICE server URLs start with stun:, stuns:, turn: or turns:")
        return v


class StreamSettings(BaseModel):
    """Limits that keep a Pi on a 4G uplink alive; defaults are conservative."""

    model_config = ConfigDict(extra="forbid")

    max_sessions: int = Field(4, ge=0, le=64, description="Concurrent live sessions on this box.")
    max_sessions_per_camera: int = Field(2, ge=0, le=64, description="Concurrent sessions per camera.")
    max_duration_s: float = Field(
        1800.0, gt=0, le=86400, description="A session ends after this long even if the grant lasts longer."
    )
    max_bitrate_kbps: float = Field(
        0.0, ge=0, description="Uplink budget for all sessions (camera bitrate x viewers); 0 = no budget."
    )
    connect_timeout_s: float = Field(
        20.0, gt=0, le=300, description="A peer that does not connect (ICE + DTLS) in this time is reaped."
    )
    disconnected_grace_s: float = Field(
        10.0, gt=0, le=300, description="How long a peer may stay ICE-disconnected before it is reaped."
    )
    answer_timeout_s: float = Field(10.0, gt=0, le=60, description="Bound on building the SDP answer.")
    queue_packets: int = Field(
        256,
        ge=16,
        le=4096,
        description="Per-viewer packet queue; a slower viewer skips to the next keyframe.",
    )
    require_fingerprint: bool = Field(
        False, description="Refuse stream_start unless the grant carries a dtls_fp claim binding the viewer."
    )
    whip_ca_file: Path | None = Field(
        None, description="Extra CA bundle for the center's WHIP endpoint (system CAs are always trusted)."
    )
    ice_servers: list[IceServer] = Field(default_factory=list, description="STUN/TURN servers.")
