"""One live session: a peer connection forwarding one camera stream to one authorized viewer."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import RTCPeerConnection

from agent.policy.context import AuthContext
from agent.stream.track import PassthroughTrack
from agent.stream.whip import WhipResource

StreamName = Literal["main", "sub"]
_FP_LINE = re.compile(r"^a=fingerprint:(\S+)\s+([0-9A-Fa-f:]+)\s*$", re.MULTILINE)


def offer_fingerprints(sdp: str) -> set[str]:
    """Every ``a=fingerprint`` of an SDP (session or media level), as ``"sha-256 AB:CD:..."``."""
    return {normalize_fingerprint(f"{alg} {value}") for alg, value in _FP_LINE.findall(sdp)}


def normalize_fingerprint(text: str) -> str:
    """``"sha-256 ab:cd"`` or a bare ``"AB:CD"`` (SHA-256 assumed) -> ``"sha-256 AB:CD"``."""
    parts = text.strip().split()
    alg, value = (parts[0], parts[1]) if len(parts) == 2 else ("sha-256", parts[0] if parts else "")
    return f"{alg.lower()} {value.upper()}"


@dataclass
class StreamSession:
    """What the agent keeps about a session; ``summary()`` is what stream_list and telemetry show."""

    camera: str
    stream: StreamName
    auth: AuthContext
    pc: RTCPeerConnection
    track: PassthroughTrack
    ends_at: float  # wall clock: the grant's expiry or the duration limit, whichever is first
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started_at: float = field(default_factory=time.time)
    started_mono: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    disconnected_since: float | None = None  # monotonic; a peer gone for too long is reaped
    state: str = "starting"  # starting -> connecting -> connected -> ended
    end_reason: str | None = None
    kind: str = "viewer"  # viewer (MQTT-signaled peer) | whip (push to the center's media server)
    whip: WhipResource | None = None  # the WHIP session resource, DELETEd when the push ends
    bitrate_kbps: float = 0.0  # camera bitrate estimate reserved against the budget

    @property
    def duration_s(self) -> float:
        return time.monotonic() - self.started_mono

    def summary(self) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "camera": self.camera,
            "stream": self.stream,
            "kind": self.kind,
            "requester": self.auth.requester,
            "unit": self.auth.unit,
            "purpose": self.auth.purpose,
            "state": self.state,
            "started_at": round(self.started_at, 3),
            "ends_at": round(self.ends_at, 3),
            "duration_s": round(self.duration_s, 1),
            "packets": self.track.packets,
            "bytes": self.track.bytes,
            "dropped": self.track.dropped,
        }
