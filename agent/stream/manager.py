"""Live sessions: admission (limits, grant binding), SDP answer, reaping, audit and telemetry.

Signaling is non-trickle: the answer is returned once ICE gathering is complete, with every
candidate inside the SDP, so one stream_start round trip over MQTT is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from pydantic import ValidationError

from agent.camera.fanout import PacketFanout
from agent.camera.manager import UnknownCamera
from agent.mqtt.envelope import CommandError, ErrorCode
from agent.policy.context import AuthContext
from agent.services import Services
from agent.stream.session import StreamName, StreamSession, normalize_fingerprint, offer_fingerprints
from agent.stream.settings import IceServer, StreamSettings
from agent.stream.track import PassthroughTrack
from agent.stream.whip import WhipError, check_url, whip_publish

log = logging.getLogger(__name__)
TICK_S = 0.5


def h264_preferences() -> list[Any]:
    """H.264 (and its RTX) only: otherwise aiortc picks VP8 and labels H.264 bytes as VP8."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]


class _Meter:
    """Bitrate of a fan-out from its byte counter, smoothed over a few seconds."""

    def __init__(self) -> None:
        self.kbps = 0.0
        self._last: tuple[float, int] | None = None

    def sample(self, fanout: PacketFanout) -> None:
        now, total = time.monotonic(), fanout.bytes
        if self._last is not None and now - self._last[0] >= 1.0:
            rate = (total - self._last[1]) * 8 / 1000 / (now - self._last[0])
            self.kbps = rate if self.kbps == 0 else 0.7 * self.kbps + 0.3 * rate
            self._last = (now, total)
        elif self._last is None:
            self._last = (now, total)


class StreamManager:
    def __init__(self, services: Services, settings: StreamSettings) -> None:
        self.services = services
        self.settings = settings
        self.sessions: dict[str, StreamSession] = {}
        self._meters: dict[str, _Meter] = {}
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.started_total = 0
        self.bytes_total = 0  # bytes of ended sessions (live ones are added in telemetry)

    # ------------------------------------------------------------------ lifecycle
    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._housekeeping())
            self._task.set_name("stream-housekeeping")

    async def stop(self) -> None:
        for sid in list(self.sessions):
            await self.end(sid, "agent stopping")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------------ start
    def _fanout(self, camera: str, stream: StreamName) -> PacketFanout:
        cameras = self.services.cameras
        if cameras is None:
            raise CommandError(ErrorCode.UNAVAILABLE, "no cameras configured")
        try:
            rt = cameras.get(camera)
        except UnknownCamera as exc:
            raise CommandError(ErrorCode.NOT_FOUND, f"unknown camera {camera!r}") from exc
        fanout = rt.main if stream == "main" else rt.sub
        if fanout is None:
            raise CommandError(ErrorCode.UNAVAILABLE, f"camera {camera!r} has no sub-stream")
        if fanout.closed:
            raise CommandError(ErrorCode.UNAVAILABLE, f"camera {camera!r} is not running")
        if fanout.info is not None and fanout.info.codec != "h264":
            raise CommandError(
                ErrorCode.UNAVAILABLE, f"camera {camera!r} sends {fanout.info.codec}; only H.264 is forwarded"
            )
        return fanout

    def _admit(self, camera: str, stream: StreamName, fanout: PacketFanout) -> float:
        """Raise LIMIT when a new session would exceed a limit; return its bitrate reservation."""
        s = self.settings
        if len(self.sessions) >= s.max_sessions:
            raise CommandError(
                ErrorCode.LIMIT, f"this box serves at most {s.max_sessions} live sessions", {"limit": "box"}
            )
        per_camera = sum(1 for x in self.sessions.values() if x.camera == camera)
        if per_camera >= s.max_sessions_per_camera:
            raise CommandError(
                ErrorCode.LIMIT,
                f"camera {camera!r} already has {per_camera} live sessions (max {s.max_sessions_per_camera})",
                {"limit": "camera"},
            )
        meter = self._meters.setdefault(f"{camera}/{stream}", _Meter())
        meter.sample(fanout)
        kbps = meter.kbps
        if s.max_bitrate_kbps > 0:
            used = sum(x.bitrate_kbps for x in self.sessions.values())
            if used + kbps > s.max_bitrate_kbps:
                raise CommandError(
                    ErrorCode.LIMIT,
                    f"uplink budget exceeded: {used + kbps:.0f} kbit/s > {s.max_bitrate_kbps:.0f}"
                    + (" (try the sub-stream)" if stream == "main" else ""),
                    {"limit": "bitrate"},
                )
        return kbps

    def _check_fingerprint(self, auth: AuthContext, offer_sdp: str) -> None:
        """The signed grant names the viewer's DTLS certificate, so a broker (or anyone else who can
        rewrite the offer in transit) cannot put its own endpoint in the middle."""
        claimed = auth.claims.get("dtls_fp")
        if claimed is None:
            if self.settings.require_fingerprint:
                raise CommandError(ErrorCode.FORBIDDEN, "grant carries no dtls_fp binding")
            return
        if not isinstance(claimed, str):
            raise CommandError(ErrorCode.FORBIDDEN, "fingerprint mismatch")
        signed = normalize_fingerprint(claimed)
        algorithm = signed.split(" ")[0]
        offered = offer_fingerprints(offer_sdp)
        # aiortc's DTLS accepts the peer only if its certificate matches EVERY offered fingerprint,
        # so the signed one being among them pins the certificate; another value for the same
        # algorithm is refused outright.
        if signed not in offered or any(f.split(" ")[0] == algorithm and f != signed for f in offered):
            raise CommandError(ErrorCode.FORBIDDEN, "fingerprint mismatch")

    def _ice_servers(self, auth: AuthContext) -> list[RTCIceServer]:
        servers = list(self.settings.ice_servers)
        extra = auth.claims.get("ice_servers")
        if extra:
            try:
                servers += [IceServer.model_validate(x) for x in extra]
            except (ValidationError, TypeError) as exc:
                raise CommandError(ErrorCode.INVALID_PARAMS, "grant ice_servers claim is malformed") from exc
        return [RTCIceServer(urls=x.urls, username=x.username, credential=x.credential) for x in servers]

    def _open(
        self, camera: str, auth: AuthContext, stream: StreamName, duration_s: float | None, kind: str
    ) -> StreamSession:
        """Admit a session and reserve its slot (synchronously, so concurrent starts count)."""
        fanout = self._fanout(camera, stream)
        if duration_s is not None and duration_s > self.settings.max_duration_s:
            raise CommandError(
                ErrorCode.LIMIT,
                f"max session duration is {self.settings.max_duration_s:.0f} s",
                {"limit": "duration"},
            )
        kbps = self._admit(camera, stream, fanout)
        now = time.time()
        ends_at = now + (duration_s or self.settings.max_duration_s)
        if auth.expires_at is not None:
            ends_at = min(ends_at, auth.expires_at)
        if ends_at <= now:
            raise CommandError(ErrorCode.UNAUTHORIZED, "grant expired")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers(auth)))
        track = PassthroughTrack(
            fanout.subscribe(from_gop=True, max_queue=self.settings.queue_packets), camera
        )
        session = StreamSession(camera, stream, auth, pc, track, ends_at, kind=kind, bitrate_kbps=kbps)
        self.sessions[session.id] = session
        self.ensure_running()
        return session

    async def _negotiate(self, session: StreamSession, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run the SDP exchange; on any failure the session is removed and a typed error raised."""
        try:
            return await asyncio.wait_for(coro, self.settings.answer_timeout_s)
        except BaseException as exc:
            await self.end(session.id, f"{what} failed", audit=False)
            if isinstance(exc, CommandError):
                raise
            if isinstance(exc, WhipError):
                raise CommandError(ErrorCode.UNAVAILABLE, str(exc), {"http_status": exc.status}) from exc
            if isinstance(exc, TimeoutError):
                raise CommandError(ErrorCode.TIMEOUT, f"{what} timed out") from exc
            if isinstance(exc, Exception):
                raise CommandError(ErrorCode.INVALID_PARAMS, f"{what} failed: {exc}") from exc
            raise

    async def _started(self, session: StreamSession, detail: dict[str, Any]) -> None:
        session.state = "connecting"
        self.started_total += 1
        session.pc.on("connectionstatechange", lambda: self._pc_state(session))
        session.track.on("ended", lambda: self._track_ended(session))
        await self._audit(
            "stream_start" if session.kind == "viewer" else "stream_push",
            session.auth,
            {
                "session_id": session.id,
                "camera": session.camera,
                "stream": session.stream,
                "ends_at": round(session.ends_at, 3),
                **detail,
            },
        )
        log.info(
            "stream %s (%s) started: camera %s/%s for %s",
            session.id,
            session.kind,
            session.camera,
            session.stream,
            session.auth.requester,
        )

    async def start(
        self,
        camera: str,
        auth: AuthContext,
        offer_sdp: str,
        stream: StreamName = "main",
        duration_s: float | None = None,
    ) -> tuple[StreamSession, str]:
        """Admit, answer, and start forwarding; returns the session and the SDP answer."""
        self._check_fingerprint(auth, offer_sdp)
        session = self._open(camera, auth, stream, duration_s, "viewer")
        answer = await self._negotiate(session, self._answer(session, offer_sdp), "SDP answer")
        await self._started(session, {})
        return session, str(answer)

    async def offer(
        self, camera: str, auth: AuthContext, stream: StreamName = "main", duration_s: float | None = None
    ) -> tuple[StreamSession, str]:
        """The center asked the agent to offer; the viewer's answer comes back in ``accept_answer``."""
        session = self._open(camera, auth, stream, duration_s, "viewer")

        async def make() -> str:
            transceiver = session.pc.addTransceiver(session.track, direction="sendonly")
            transceiver.setCodecPreferences(h264_preferences())
            await session.pc.setLocalDescription(await session.pc.createOffer())  # gathers candidates
            return str(session.pc.localDescription.sdp)

        offer = await self._negotiate(session, make(), "SDP offer")
        session.state = "offered"
        return session, str(offer)

    async def accept_answer(
        self, camera: str, auth: AuthContext, session_id: str, answer_sdp: str
    ) -> StreamSession:
        """Apply the viewer's answer to an agent offer; the answer's fingerprint is checked like an offer's."""
        session = self.sessions.get(session_id)
        if session is None or session.camera != camera or session.state != "offered":
            raise CommandError(
                ErrorCode.NOT_FOUND, f"no session {session_id} waiting for an answer on {camera!r}"
            )
        if session.auth.requester != auth.requester:
            raise CommandError(ErrorCode.FORBIDDEN, "the session belongs to another requester")
        try:
            self._check_fingerprint(auth, answer_sdp)
        except CommandError:
            await self.end(session.id, "fingerprint mismatch", audit=False)
            raise
        answer = RTCSessionDescription(sdp=answer_sdp, type="answer")
        await self._negotiate(session, session.pc.setRemoteDescription(answer), "SDP answer")
        await self._started(session, {"offered_by": "agent"})
        return session

    async def push(
        self,
        camera: str,
        auth: AuthContext,
        url: str | None,
        stream: StreamName = "main",
        duration_s: float | None = None,
    ) -> StreamSession:
        """WHIP push to the center's media server: URL and bearer token come from the signed grant."""
        granted = auth.claims.get("whip_url")
        token = auth.claims.get("whip_token")
        # The bearer token goes only to the endpoint the center signed: never to a URL the command names.
        if not isinstance(granted, str) or not granted:
            raise CommandError(ErrorCode.FORBIDDEN, "the grant names no whip_url to push to")
        if url is not None and url != granted:
            raise CommandError(ErrorCode.FORBIDDEN, "url differs from the grant's whip_url")
        target = granted
        if not isinstance(token, str) or not token:
            raise CommandError(ErrorCode.FORBIDDEN, "the grant carries no whip_token")
        try:
            check_url(target)
        except WhipError as exc:
            raise CommandError(ErrorCode.INVALID_PARAMS, str(exc)) from exc
        session = self._open(camera, auth, stream, duration_s, "whip")
        transceiver = session.pc.addTransceiver(session.track, direction="sendonly")
        transceiver.setCodecPreferences(h264_preferences())
        session.whip = await self._negotiate(
            session,
            whip_publish(
                session.pc,
                target,
                token,
                ca_file=self.settings.whip_ca_file,
                timeout_s=self.settings.answer_timeout_s,
            ),
            "WHIP publish",
        )
        await self._started(session, {"whip_host": urlsplit(target).hostname})
        return session

    async def _answer(self, session: StreamSession, offer_sdp: str) -> str:
        pc = session.pc
        # The transceiver must exist, restricted to H.264, BEFORE the offer is applied: aiortc
        # negotiates codecs in setRemoteDescription.
        transceiver = pc.addTransceiver(session.track, direction="sendonly")
        transceiver.setCodecPreferences(h264_preferences())
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise CommandError(
                ErrorCode.INVALID_PARAMS,
                f"offer refused: {exc or type(exc).__name__} (a recvonly H.264 video offer is expected)",
            ) from exc
        if transceiver.mid is None:
            raise CommandError(ErrorCode.INVALID_PARAMS, "the offer has no video section")
        for other in pc.getTransceivers():
            if other is not transceiver:
                other.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())  # waits for ICE gathering
        return pc.localDescription.sdp

    # ------------------------------------------------------------------ end
    def _pc_state(self, session: StreamSession) -> None:
        state = session.pc.connectionState
        session.disconnected_since = time.monotonic() if state == "disconnected" else None
        if state == "connected" and session.state == "connecting":
            session.state = "connected"
            session.connected_at = time.monotonic()
        elif state in ("failed", "closed") and session.id in self.sessions:
            self._spawn(self.end(session.id, f"peer connection {state}"))

    def _track_ended(self, session: StreamSession) -> None:
        if session.track.end_reason and session.id in self.sessions:
            self._spawn(self.end(session.id, session.track.end_reason))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _audit(self, kind: str, auth: AuthContext, detail: dict[str, Any]) -> None:
        """Audit through the policy area's log (``AuditLog.event``), when the app has one."""
        event = getattr(self.services.audit, "event", None)
        if event is not None:
            await event(kind, auth, detail)

    async def end(self, session_id: str, reason: str, *, audit: bool = True) -> StreamSession | None:
        """Close a session once (later calls are no-ops) and audit who watched what, for how long."""
        session = self.sessions.pop(session_id, None)  # first: a second call is a no-op
        if session is None:
            return None
        session.state = "ended"
        session.end_reason = reason
        session.track.stop()
        with contextlib.suppress(Exception):
            await session.pc.close()
        if session.whip is not None:
            await session.whip.delete()  # never raises
        self.bytes_total += session.track.bytes
        if audit:
            await self._audit(
                "stream_stop",
                session.auth,
                {
                    "session_id": session.id,
                    "camera": session.camera,
                    "stream": session.stream,
                    "reason": reason,
                    "duration_s": round(session.duration_s, 1),
                    "bytes": session.track.bytes,
                    "packets": session.track.packets,
                    "dropped": session.track.dropped,
                },
            )
        log.info("stream %s ended: %s", session.id, reason)
        return session

    async def _housekeeping(self) -> None:
        """Grant expiry, peers that never connect or went away, bitrate estimates."""
        while True:
            await asyncio.sleep(TICK_S)
            now, mono = time.time(), time.monotonic()
            for s in list(self.sessions.values()):
                reason = None
                if now >= s.ends_at:
                    reason = (
                        "grant expired"
                        if s.auth.expires_at is not None and s.ends_at >= s.auth.expires_at
                        else "max duration reached"
                    )
                elif (
                    s.state in ("offered", "connecting")
                    and mono - s.started_mono > self.settings.connect_timeout_s
                ):
                    reason = "peer did not connect"
                elif (
                    s.disconnected_since is not None
                    and mono - s.disconnected_since > self.settings.disconnected_grace_s
                ):
                    reason = "peer gone"
                if reason is not None:
                    await self.end(s.id, reason)
            self._sample_meters()

    def _sample_meters(self) -> None:
        """Keep a bitrate estimate of every stream, so the budget is known before the first viewer."""
        cameras = self.services.cameras
        if cameras is None:
            return
        for rt in cameras.runtimes():
            for stream, fanout in (("main", rt.main), ("sub", rt.sub)):
                if fanout is not None:
                    self._meters.setdefault(f"{rt.name}/{stream}", _Meter()).sample(fanout)

    # ------------------------------------------------------------------ views
    def list(self) -> list[dict[str, Any]]:
        return [s.summary() for s in self.sessions.values()]

    def telemetry(self) -> dict[str, Any]:
        live = list(self.sessions.values())
        return {
            "sessions": len(live),
            "by_camera": {c: sum(1 for s in live if s.camera == c) for c in sorted({s.camera for s in live})},
            "started_total": self.started_total,
            "bytes_total": self.bytes_total + sum(s.track.bytes for s in live),
            "uplink_kbps": round(sum(s.bitrate_kbps for s in live), 1),
            "live": [
                {
                    k: v
                    for k, v in s.summary().items()
                    if k in ("session_id", "camera", "stream", "requester", "state")
                }
                for s in live
            ],
        }
