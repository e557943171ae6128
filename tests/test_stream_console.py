"""The console's viewer relay (tools/console_web.py): what it refuses, and that the grant it mints
binds the viewer's DTLS fingerprint so a relay that swaps the offer is refused by the agent."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiortc import RTCPeerConnection

from provisioning.grant_authority import GrantAuthority
from tests.test_stream_browser import AREA, DEVICE, DirectAgent
from tools.console_web import serve


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def test_bad_requests_never_reach_the_agent() -> None:
    relayed: list[str] = []
    minted: list[str] = []

    async def send(device: str, action: str, params: dict[str, Any], grant: str | None) -> dict[str, Any]:
        relayed.append(action)
        return {"ok": False}

    def mint(device: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        minted.append(camera)
        return "unused"

    runner, base = await serve(send, mint)
    pc, offer = await _offer()
    try:
        async with aiohttp.ClientSession() as http:
            ok_body = {"device_id": DEVICE, "camera": "gate", "sdp": offer}
            r = await http.post(
                f"{base}api/stream/start", json=ok_body, headers={"Origin": "https://evil.example"}
            )
            assert r.status == 403  # another site's page cannot drive the console
            r = await http.post(f"{base}api/stream/start", data="x", headers={"Content-Type": "text/plain"})
            assert r.status == 415
            r = await http.post(f"{base}api/stream/start", json=ok_body | {"camera": "../etc"})
            assert r.status == 400
            r = await http.post(
                f"{base}api/stream/start", json=ok_body | {"sdp": "v=0\r\nno fingerprint here"}
            )
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_params"
            r = await http.post(
                f"{base}api/stream/stop", json={"device_id": DEVICE, "camera": "gate", "session_id": "abc"}
            )
            assert r.status == 404  # only sessions this console opened
            r = await http.get(base)
            assert r.status == 200 and "viewer.js" in await r.text()
        assert relayed == [] and minted == []
    finally:
        await pc.close()
        await runner.cleanup()
    try:
        await serve(send, mint, host="0.0.0.0")
        raise AssertionError("bound to every interface")
    except ValueError as exc:
        assert "localhost" in str(exc)


async def test_a_relay_that_swaps_the_offer_is_refused(
    direct_agent: DirectAgent, authority: GrantAuthority
) -> None:
    """The console signs the viewer's fingerprint; a broker that substitutes its own offer (to sit in
    the middle of the DTLS session) carries a grant that does not name its certificate."""
    attacker, attacker_offer = await _offer()
    swapped: list[bool] = []

    async def splicing_relay(
        device: str, action: str, params: dict[str, Any], grant: str | None
    ) -> dict[str, Any]:
        if action == "stream_start":
            params = params | {"sdp": attacker_offer}
            swapped.append(True)
        return await direct_agent.send_command(device, action, params, grant)

    def mint(device: str, camera: str, actions: list[str], claims: dict[str, Any]) -> str:
        return authority.grant(
            role="district_police",
            actions=actions,
            aud=device,
            area=AREA,
            cameras=[camera],
            ttl=300,
            extra=claims,
        )

    runner, base = await serve(splicing_relay, mint)
    viewer, offer = await _offer()
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.post(
                f"{base}api/stream/start", json={"device_id": DEVICE, "camera": "gate", "sdp": offer}
            )
            body = await r.json()
        assert swapped == [True]
        assert r.status == 502 and body["ok"] is False
        assert body["error"]["code"] == "forbidden" and "fingerprint" in body["error"]["message"]
        assert direct_agent.app.services.extras["stream"].sessions == {}
    finally:
        await viewer.close()
        await attacker.close()
        await runner.cleanup()
