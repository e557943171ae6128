"""A real headless Chromium (Debian package, driven by playwright-core) watches a real RTSP camera
through the console's viewer page and the real agent stack (policy gate, dispatcher, stream handlers).

The console relays to the agent with a callable; here it calls the agent's real Dispatcher in-process
(the MQTT hop is covered by tests/test_stream_viewer.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.app import AgentApp
from agent.config import AgentSettings
from agent.mqtt.dispatch import Dispatcher
from agent.stream import handlers as stream_handlers
from provisioning.grant_authority import GrantAuthority
from tests.fixtures.camera import RtspCamera
from tools.console_web import serve

REPO = Path(__file__).resolve().parents[1]
VIEWER = REPO / "tools" / "viewer"
DEVICE = "box-01"
AREA = {"province": "01", "district": "001"}
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


class DirectAgent:
    """An agent (settings, cameras, policy, stream handlers) whose dispatcher is called directly."""

    def __init__(self, app: AgentApp, dispatcher: Dispatcher) -> None:
        self.app = app
        self.dispatcher = dispatcher

    async def send_command(self, device_id: str, action: str, params: dict[str, Any], grant: str | None) -> dict[str, Any]:
        env = {"v": 1, "id": secrets.token_hex(8), "action": action, "params": params, "grant": grant}
        resp = await self.dispatcher.handle(json.dumps(env).encode())
        return resp.model_dump(mode="json")


@pytest.fixture
async def direct_agent(
    tmp_path: Path, authority: GrantAuthority, rtsp_camera_shared: RtspCamera
) -> AsyncIterator[DirectAgent]:
    state = tmp_path / "state"
    (state / "trust").mkdir(parents=True, mode=0o700)
    (state / "trust" / "keyset.json").write_text(authority.keyset_json())
    settings = AgentSettings.model_validate(
        {
            "device": {"id": DEVICE, "owner_org": "Test Org", "location": AREA | {"commune": "00001"}},
            "center": {"host": "127.0.0.1", "insecure_dev": True},
            "storage": {"state_dir": str(state)},
            "cameras": [{"name": "gate", "main_url": rtsp_camera_shared.main_url, "sub_url": rtsp_camera_shared.sub_url}],
        }
    )
    app = AgentApp(settings)
    app.register_handlers()
    dispatcher = Dispatcher(DEVICE, app.registry, app.policy.gate, app.policy.audit, app.camera_names)
    assert app.services.cameras is not None
    await app.services.cameras.start()
    fanout = app.services.cameras.get("gate").main
    for _ in range(150):  # the GOP cache is warm once the first keyframe arrived
        if fanout.packets:
            break
        await asyncio.sleep(0.1)
    try:
        yield DirectAgent(app, dispatcher)
    finally:
        await stream_handlers.stop(app.services)
        await app.services.cameras.stop()
        app.outbox.close()
        app.policy.audit.close()


async def _console(agent: DirectAgent, authority: GrantAuthority, role: str) -> tuple[web.AppRunner, str]:
    def mint(device: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        return authority.grant(
            role=role, actions=actions, aud=device, area=AREA, cameras=[camera], ttl=300, extra=claims
        )

    return await serve(agent.send_command, mint)


async def _browse(url: str, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(VIEWER / "browser_check.mjs"), url, "20000", *extra,
        cwd=VIEWER, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=os.environ | {"CHROMIUM": CHROMIUM},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"browser driver failed: {err.decode()[-2000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module", autouse=True)
def _browser_tools() -> None:
    missing = [p for p in (CHROMIUM, VIEWER / "node_modules" / "playwright-core") if not Path(p).exists()]
    if shutil.which("node") is None or missing:
        pytest.fail(f"browser test needs node, {CHROMIUM} and playwright-core: run `make viewer-deps` ({missing})")


async def test_chromium_plays_the_camera_via_the_console(direct_agent: DirectAgent, authority: GrantAuthority) -> None:
    runner, base = await _console(direct_agent, authority, "district_police")
    try:
        seen = await _browse(f"{base}?device={DEVICE}&camera=gate&stream=main&autoplay=1", "--stop")
        assert seen["error"] is None, seen
        assert seen["framesDecoded"] >= 10, seen
        assert (seen["width"], seen["height"]) == (768, 576), seen
        assert seen["codec"] == "video/H264", seen
        assert seen["afterStop"] == "stopped", seen
        # the agent forwarded without re-encoding and the stop ended the session
        manager = direct_agent.app.services.extras[stream_handlers.EXTRA_KEY]
        assert manager.sessions == {}
        assert manager.started_total == 1
    finally:
        await runner.cleanup()


async def test_chromium_is_refused_for_a_role_without_live_view(
    direct_agent: DirectAgent, authority: GrantAuthority
) -> None:
    runner, base = await _console(direct_agent, authority, "operator_unit")
    try:
        seen = await _browse(f"{base}?device={DEVICE}&camera=gate&autoplay=1")
        assert seen["framesDecoded"] == 0
        assert seen["error"] is not None and seen["error"].startswith("refused: forbidden"), seen
    finally:
        await runner.cleanup()
