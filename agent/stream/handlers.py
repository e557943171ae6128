"""stream_start / stream_stop / stream_ice / stream_list on the command channel.

The gate has already authorized role, area, camera and grant freshness; these handlers bind the
session to the grant (expiry, DTLS fingerprint) and enforce the box's limits.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from aiortc.sdp import candidate_from_sdp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.mqtt.envelope import CommandError, ErrorCode
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.services import Services
from agent.stream.manager import StreamManager
from agent.stream.session import StreamSession
from agent.stream.settings import StreamSettings

log = logging.getLogger(__name__)
EXTRA_KEY = "stream"
"""``services.extras["stream"]`` is the StreamManager."""

_Camera = Field(..., min_length=1, max_length=64, description="Configured camera name.")
_CANDIDATE = re.compile(
    r"^candidate:\S+ \d+ (udp|tcp) \d+ \S+ \d+ typ (host|srflx|prflx|relay)( .*)?$", re.IGNORECASE
)
_SessionId = Field(..., min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamStartParams(_Params):
    """Viewer offers: ``{camera, sdp}`` -> answer. Agent offers: ``{camera}`` -> offer, then
    ``{camera, session_id, sdp: <answer>}`` -> started."""

    camera: str = _Camera
    sdp: str | None = Field(
        None,
        min_length=10,
        max_length=60000,
        description="The viewer's offer, or its answer with session_id.",
    )
    session_id: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[0-9a-f]+$", description="Answering an agent offer."
    )
    stream: Literal["main", "sub"] = Field("main", description="sub: lower bitrate, for 4G uplinks.")
    duration_s: float | None = Field(None, gt=0, description="Requested maximum duration (capped by limits).")

    @model_validator(mode="after")
    def _answer_needs_sdp(self) -> StreamStartParams:
        if self.session_id is not None and self.sdp is None:
            raise ValueError("session_id is given with the viewer's answer in sdp")
        return self


class StreamStopParams(_Params):
    camera: str = _Camera
    session_id: str = _SessionId


class StreamIceParams(_Params):
    camera: str = _Camera
    session_id: str = _SessionId
    candidate: str = Field(
        "",
        max_length=1024,
        description="'candidate:...' line; empty = end of candidates (the answer is non-trickle).",
    )
    sdp_mid: str | None = Field(None, max_length=32)
    sdp_mline_index: int | None = Field(None, ge=0, le=16)


class StreamPushParams(_Params):
    camera: str = _Camera
    stream: Literal["main", "sub"] = "main"
    url: str | None = Field(
        None, max_length=2048, description="WHIP endpoint (https://); default: the grant's whip_url claim."
    )
    duration_s: float | None = Field(None, gt=0)


class StreamListParams(_Params):
    pass


def build(services: Services) -> StreamManager:
    """The box's StreamManager (one per agent), created on first use."""
    manager = services.extras.get(EXTRA_KEY)
    if manager is None:
        settings = getattr(services.settings, "stream", None) or StreamSettings()
        manager = StreamManager(services, settings)
        services.extras[EXTRA_KEY] = manager
    return manager  # type: ignore[no-any-return]


async def stop(services: Services) -> None:
    manager = services.extras.get(EXTRA_KEY)
    if manager is not None:
        await manager.stop()


def _owned(manager: StreamManager, ctx: CommandContext, camera: str, session_id: str) -> StreamSession:
    session = manager.sessions.get(session_id)
    if session is None or session.camera != camera:
        raise CommandError(ErrorCode.NOT_FOUND, f"no live session {session_id} on camera {camera!r}")
    if session.auth.requester != ctx.auth.requester:
        raise CommandError(ErrorCode.FORBIDDEN, "the session belongs to another requester")
    return session


def register(registry: HandlerRegistry, services: Services) -> None:
    manager = build(services)
    s = manager.settings
    services.capabilities["streams"] = {
        "webrtc": True,
        "codec": "H264",
        "passthrough": True,
        "signaling": "non-trickle",
        "whip_push": True,
        "streams": ["main", "sub"],
        "max_sessions": s.max_sessions,
        "max_sessions_per_camera": s.max_sessions_per_camera,
        "max_duration_s": s.max_duration_s,
    }
    services.telemetry_providers["streams"] = manager.telemetry

    @registry.action(
        "stream_start",
        StreamStartParams,
        grant_use="session",
        needs_camera=True,
        summary="Start a live view.",
    )
    async def stream_start(ctx: CommandContext, p: StreamStartParams) -> dict[str, Any]:
        if p.session_id is not None and p.sdp is not None:
            session = await manager.accept_answer(p.camera, ctx.auth, p.session_id, p.sdp)
            kind, sdp = "started", None
        elif p.sdp is None:
            session, sdp = await manager.offer(p.camera, ctx.auth, p.stream, p.duration_s)
            kind = "offer"
        else:
            session, sdp = await manager.start(p.camera, ctx.auth, p.sdp, p.stream, p.duration_s)
            kind = "answer"
        return {
            "session_id": session.id,
            "sdp": sdp,
            "type": kind,
            "stream": session.stream,
            "ends_at": session.ends_at,
        }

    @registry.action(
        "stream_stop", StreamStopParams, grant_use="session", needs_camera=True, summary="End a live view."
    )
    async def stream_stop(ctx: CommandContext, p: StreamStopParams) -> dict[str, Any]:
        session = _owned(manager, ctx, p.camera, p.session_id)
        await manager.end(session.id, "stopped by requester")
        return {
            "session_id": session.id,
            "bytes": session.track.bytes,
            "duration_s": round(session.duration_s, 1),
        }

    @registry.action(
        "stream_ice",
        StreamIceParams,
        grant_use="session",
        needs_camera=True,
        summary="Add a viewer ICE candidate (optional: offers may carry them all).",
    )
    async def stream_ice(ctx: CommandContext, p: StreamIceParams) -> dict[str, Any]:
        session = _owned(manager, ctx, p.camera, p.session_id)
        text = p.candidate.strip()
        if not text:
            return {"accepted": True}
        line = text.removeprefix("a=")
        if not _CANDIDATE.match(line):
            raise CommandError(
                ErrorCode.INVALID_PARAMS, "malformed ICE candidate (RFC 8839 candidate-attribute expected)"
            )
        try:
            candidate = candidate_from_sdp(line.removeprefix("candidate:"))
        except Exception as exc:  # aiortc asserts on some malformed input
            raise CommandError(ErrorCode.INVALID_PARAMS, "malformed ICE candidate") from exc
        candidate.sdpMid = p.sdp_mid
        candidate.sdpMLineIndex = p.sdp_mline_index if p.sdp_mline_index is not None else 0
        await session.pc.addIceCandidate(candidate)
        return {"accepted": True}

    @registry.action(
        "stream_push",
        StreamPushParams,
        grant_use="session",
        needs_camera=True,
        summary="Push the camera to the center's media server by WHIP (RFC 9725).",
    )
    async def stream_push(ctx: CommandContext, p: StreamPushParams) -> dict[str, Any]:
        session = await manager.push(p.camera, ctx.auth, p.url, p.stream, p.duration_s)
        return {
            "session_id": session.id,
            "stream": session.stream,
            "resource": session.whip.url if session.whip else None,
            "ends_at": session.ends_at,
        }

    @registry.action(
        "stream_list", StreamListParams, grant_use="reusable", summary="Live sessions on this box."
    )
    async def stream_list(ctx: CommandContext, p: StreamListParams) -> dict[str, Any]:
        return {"sessions": manager.list()}
