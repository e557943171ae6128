"""The viewer page and its two-call API, served by the center console on localhost.

The browser never talks MQTT: it POSTs its SDP offer here, the console relays it to the agent as
``stream_start`` with a grant (``grant_for(device, camera)``: the console's own grant source) and
returns the agent's answer. Bind to 127.0.0.1 only: anyone who can reach this page can watch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tools.center_client import CenterClient

PAGE = Path(__file__).with_name("index.html")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
GrantFor = Callable[[str, str], str]


def _field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _NAME.match(value):
        raise web.HTTPBadRequest(text=f"{key}: a name of 1-64 letters, digits, '_', '.', '-'")
    return value


def viewer_app(center: CenterClient, grant_for: GrantFor) -> web.Application:
    async def index(_req: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})

    async def start(req: web.Request) -> web.Response:
        body = await req.json()
        device, camera = _field(body, "device"), _field(body, "camera")
        stream = body.get("stream", "main")
        sdp = body.get("sdp")
        if stream not in ("main", "sub") or not isinstance(sdp, str):
            raise web.HTTPBadRequest(text="stream must be main|sub and sdp a string")
        params = {"camera": camera, "sdp": sdp, "stream": stream}
        reply = await center.command(device, "stream_start", params, grant=grant_for(device, camera), timeout=20)
        return web.json_response(reply, status=200 if reply.get("ok") else 403)

    async def stop(req: web.Request) -> web.Response:
        body = await req.json()
        device, camera = _field(body, "device"), _field(body, "camera")
        params = {"camera": camera, "session_id": _field(body, "session_id")}
        reply = await center.command(device, "stream_stop", params, grant=grant_for(device, camera))
        return web.json_response(reply)

    app = web.Application(client_max_size=128 * 1024)
    app.router.add_get("/", index)
    app.router.add_post("/api/stream", start)
    app.router.add_post("/api/stop", stop)
    return app


async def serve(
    center: CenterClient, grant_for: GrantFor, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start the page; returns the runner (``await runner.cleanup()`` to stop) and its base URL."""
    runner = web.AppRunner(viewer_app(center, grant_for))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()  # type: ignore[union-attr]
    return runner, f"http://{bound[0]}:{bound[1]}/"
