"""The center console's live-view web page: serves tools/viewer/ and relays viewer requests.

The console (tools/center_console.py) mounts this app on localhost. A viewer's browser never holds a
grant or talks MQTT: it posts its SDP offer here; the console mints a short-lived grant bound to
the offer's DTLS fingerprint (claim ``dtls_fp``), sends ``stream_start`` to the device over MQTT
and returns the agent's answer. Binding the grant to the fingerprint means the broker (or anyone
relaying the command) cannot substitute its own endpoint: the agent refuses an offer whose
fingerprint is not the signed one.

    app = create_app(send_command, mint_grant)
    # send_command(device_id, action, params, grant) -> response dict (CommandResponse as JSON)
    # mint_grant(device_id, camera, actions, claims) -> compact JWS grant
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.stream.session import offer_fingerprints

log = logging.getLogger(__name__)

VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
STREAM_ACTIONS = ["stream_start", "stream_stop", "stream_ice"]
_NAME = r"^[A-Za-z0-9._-]{1,64}$"

SendCommand = Callable[[str, str, dict[str, Any], str | None], Awaitable[dict[str, Any]]]
MintGrant = Callable[[str, str, list[str], dict[str, Any]], "str | Awaitable[str]"]


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(..., pattern=_NAME)
    camera: str = Field(..., pattern=_NAME)
    stream: Literal["main", "sub"] = "main"
    sdp: str = Field(..., min_length=10, max_length=60000)


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(..., pattern=_NAME)
    camera: str = Field(..., pattern=_NAME)
    session_id: str = Field(..., min_length=1, max_length=64)


def pick_fingerprint(sdp: str) -> str | None:
    """The fingerprint to sign: SHA-256 when offered (browsers send only that; aiortc adds
    SHA-384/512 of the same certificate, and the agent pins the certificate with any one of them)."""
    fps = sorted(offer_fingerprints(sdp))
    sha256 = [f for f in fps if f.startswith("sha-256 ")]
    chosen = sha256 or fps
    return chosen[0] if chosen else None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": {"code": code, "message": message}}, status=status)


class ConsoleStreams:
    """Relays viewer requests; remembers which grant opened which session (to stop it)."""

    def __init__(self, send_command: SendCommand, mint_grant: MintGrant) -> None:
        self._send = send_command
        self._mint = mint_grant
        self._grants: dict[str, tuple[str, float]] = {}  # session_id -> (grant, minted at)
        self.relayed = 0

    async def _grant(self, device: str, camera: str, claims: dict[str, Any]) -> str:
        grant = self._mint(device, camera, list(STREAM_ACTIONS), claims)
        return await grant if inspect.isawaitable(grant) else grant

    @staticmethod
    async def _body(request: web.Request, model: type[BaseModel]) -> Any:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="application/json expected")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="cross-origin request")  # a page elsewhere cannot drive the console
        try:
            return model.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"invalid request: {type(exc).__name__}") from None

    async def start(self, request: web.Request) -> web.Response:
        req: StartRequest = await self._body(request, StartRequest)
        fingerprint = pick_fingerprint(req.sdp)
        if fingerprint is None:
            return _error(400, "invalid_params", "the offer carries no DTLS fingerprint")
        grant = await self._grant(req.device_id, req.camera, {"dtls_fp": fingerprint})
        resp = await self._send(
            req.device_id, "stream_start", {"camera": req.camera, "stream": req.stream, "sdp": req.sdp}, grant
        )
        self.relayed += 1
        if resp.get("ok"):
            self._grants[resp["result"]["session_id"]] = (grant, time.time())
        return web.json_response(resp, status=200 if resp.get("ok") else 502)

    async def stop(self, request: web.Request) -> web.Response:
        req: StopRequest = await self._body(request, StopRequest)
        entry = self._grants.pop(req.session_id, None)
        if entry is None:
            return _error(404, "not_found", "this console did not open that session")
        resp = await self._send(
            req.device_id, "stream_stop", {"camera": req.camera, "session_id": req.session_id}, entry[0]
        )
        return web.json_response(resp, status=200 if resp.get("ok") else 502)


STREAMS_KEY = web.AppKey("streams", ConsoleStreams)


def create_app(send_command: SendCommand, mint_grant: MintGrant) -> web.Application:
    """The viewer page at ``/`` and its API under ``/api/stream/``; bind it to localhost only."""
    streams = ConsoleStreams(send_command, mint_grant)
    app = web.Application(client_max_size=128 * 1024)
    app[STREAMS_KEY] = streams

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(VIEWER_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def script(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(VIEWER_DIR / "viewer.js", headers={"Content-Type": "text/javascript"})

    app.router.add_get("/", index)
    app.router.add_get("/viewer.js", script)
    app.router.add_post("/api/stream/start", streams.start)
    app.router.add_post("/api/stream/stop", streams.stop)
    return app


def center_sender(center: Any, timeout_s: float = 20.0) -> SendCommand:
    """``send_command`` over MQTT from a connected :class:`tools.center_client.CenterClient`."""

    async def send(device_id: str, action: str, params: dict[str, Any], grant: str | None) -> dict[str, Any]:
        reply: dict[str, Any] = await center.command(
            device_id, action, params, grant=grant, timeout=timeout_s
        )
        return reply

    return send


def authority_minter(
    authority: Any,
    *,
    role: str,
    area: dict[str, str],
    sub: str = "console-operator",
    unit: str = "center",
    purpose: str = "live view",
    purpose_ref: str = "console",
    ttl_s: float = 600,
) -> MintGrant:
    """``mint_grant`` from a :class:`provisioning.grant_authority.GrantAuthority` (demo/tests): one
    short-lived grant per viewer, for that camera only, bound to the viewer's DTLS fingerprint."""

    def mint(device_id: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        grant: str = authority.grant(
            role=role,
            actions=actions,
            aud=device_id,
            sub=sub,
            unit=unit,
            area=area,
            cameras=[camera],
            purpose=purpose,
            purpose_ref=purpose_ref,
            ttl=ttl_s,
            extra=claims,
        )
        return grant

    return mint


async def serve(
    send_command: SendCommand, mint_grant: MintGrant, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start the app; returns the runner (``await runner.cleanup()`` to stop) and the viewer URL."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("the console web app serves localhost only (it acts with the console's authority)")
    runner = web.AppRunner(create_app(send_command, mint_grant))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None else port  # type: ignore[attr-defined]
    return runner, f"http://{host}:{bound}/"
