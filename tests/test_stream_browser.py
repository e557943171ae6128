"""A real headless Chromium (Debian package, driven over CDP from Python) watches a real RTSP camera
through the console's viewer page and the real agent stack (policy gate, dispatcher, stream handlers).

The console relays to the agent with a callable; here it calls the agent's real Dispatcher in-process
(the first test goes through the real broker too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
from aiohttp import web

from agent.stream import handlers as stream_handlers
from provisioning.grant_authority import GrantAuthority
from tests.fixtures.stream import StreamRig
from tests.fixtures.stream_whip import AREA, DEVICE, DirectAgent
from tools.console_web import authority_minter, center_sender, serve
from tools.viewer.cdp import Chromium, watch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_mdns_resolver() -> Iterator[None]:
    """Chromium hides its host addresses behind mDNS names, which aioice resolves with a
    process-wide lock and socket bound to the first event loop; each test here has its own loop."""
    yield
    state = aioice.ice._mdns
    protocol = getattr(state, "protocol", None)
    if protocol is not None and getattr(protocol, "transport", None) is not None:
        protocol.transport.close()
    for attr in ("lock", "protocol", "subscribers"):
        if hasattr(state, attr):
            delattr(state, attr)


async def _console(agent: DirectAgent, authority: GrantAuthority, role: str) -> tuple[web.AppRunner, str]:
    def mint(device: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        return authority.grant(
            role=role, actions=actions, aud=device, area=AREA, cameras=[camera], ttl=300, extra=claims
        )

    return await serve(agent.send_command, mint)


async def test_chromium_plays_the_camera_through_console_mqtt_and_agent(stream_rig: StreamRig) -> None:
    """Page -> console relay -> MQTT (TLS broker) -> policy gate -> agent -> WebRTC -> page."""
    send = center_sender(stream_rig.center)
    mint = authority_minter(stream_rig.authority, role="city_police", area={"province": "01"})
    runner, base = await serve(send, mint)
    try:
        async with Chromium() as browser:
            seen = await watch(browser, f"{base}?device={DEVICE}&camera=gate&stream=main&autoplay=1")
            manager = stream_rig.manager
            (session,) = manager.sessions.values()
            assert session.auth.claims["dtls_fp"].startswith("sha-256 ")  # the console bound the viewer
            await browser.evaluate("window.viewer.stop()")
            seen["afterStop"] = await browser.evaluate("window.viewer.state")
        assert seen["error"] is None, (seen, browser.console)
        assert seen["framesDecoded"] >= 10, seen
        assert (seen["width"], seen["height"]) == (768, 576), seen
        assert seen["codec"] == "video/H264", seen
        assert seen["afterStop"] == "stopped", seen
        assert manager.sessions == {}  # the page's stop ended the agent's session
        assert session.end_reason == "stopped by requester"
        assert session.track.packets > 0
    finally:
        await runner.cleanup()


async def test_chromium_is_refused_for_a_role_without_live_view(
    direct_agent: DirectAgent, authority: GrantAuthority
) -> None:
    runner, base = await _console(direct_agent, authority, "operator_unit")
    try:
        async with Chromium() as browser:
            seen = await watch(browser, f"{base}?device={DEVICE}&camera=gate&autoplay=1")
        assert seen["framesDecoded"] == 0
        assert seen["error"] is not None and seen["error"].startswith("refused: forbidden"), seen
    finally:
        await runner.cleanup()


async def test_chromium_sees_the_stream_end_when_the_grant_expires(
    direct_agent: DirectAgent, authority: GrantAuthority
) -> None:
    def mint(device: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        return authority.grant(
            role="district_police",
            actions=actions,
            aud=device,
            area=AREA,
            cameras=[camera],
            ttl=6,
            extra=claims,
        )

    runner, base = await serve(direct_agent.send_command, mint)
    manager = direct_agent.app.services.extras[stream_handlers.EXTRA_KEY]
    ended: list[str] = []
    try:
        async with Chromium() as browser:
            seen = await watch(browser, f"{base}?device={DEVICE}&camera=gate&autoplay=1", frames=5)
            assert seen["framesDecoded"] >= 5, (seen, browser.console)
            (session,) = manager.sessions.values()
            for _ in range(200):
                state = await browser.evaluate("window.viewer.state")
                if state.startswith("ended"):
                    ended.append(state)
                    break
                await asyncio.sleep(0.1)
            assert session.end_reason == "grant expired"
            assert ended == ["ended (grant expired)"], await browser.evaluate("window.viewer.state")
    finally:
        await runner.cleanup()
