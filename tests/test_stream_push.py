"""stream_push over MQTT: the agent pushes a camera to a real WHIP endpoint (aiortc behind HTTPS)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.fixtures.stream import CAMERA, DEVICE, make_rig
from tests.fixtures.stream_whip import WhipEndpoint


async def test_push_by_grant_then_stop_deletes_the_resource(
    tmp_path: Path, broker: Any, authority: Any, rtsp_camera_shared: Any, whip_endpoint: WhipEndpoint
) -> None:
    cfg = f'whip_ca_file = "{whip_endpoint.ca_file}"'
    async for rig in make_rig(tmp_path, broker, authority, rtsp_camera_shared, cfg):
        actions = ["stream_push", "stream_stop", "stream_list"]
        no_token = rig.grant(actions=actions, extra={"whip_url": whip_endpoint.url})
        r = await rig.center.command(DEVICE, "stream_push", {"camera": CAMERA}, grant=no_token)
        assert r["error"]["code"] == "forbidden"  # a push needs the center's token in the signed grant

        token_only = rig.grant(actions=actions, extra={"whip_token": whip_endpoint.token})
        r = await rig.center.command(
            DEVICE, "stream_push", {"camera": CAMERA, "url": whip_endpoint.url}, grant=token_only
        )
        assert r["error"]["code"] == "forbidden"  # the token never goes to a URL the command names
        assert "whip_url" in r["error"]["message"] and not whip_endpoint.requests

        grant = rig.grant(
            actions=actions, extra={"whip_url": whip_endpoint.url, "whip_token": whip_endpoint.token}
        )
        other = {"camera": CAMERA, "url": "https://203.0.113.9/whip"}
        r = await rig.center.command(DEVICE, "stream_push", other, grant=grant)
        assert r["error"]["code"] == "forbidden"  # only to the endpoint the grant names

        r = await rig.center.command(DEVICE, "stream_push", {"camera": CAMERA, "stream": "sub"}, grant=grant)
        assert r["ok"], r
        sid = r["result"]["session_id"]
        ingest = whip_endpoint.sessions[0]
        await asyncio.wait_for(ingest.first_frame.wait(), 15)
        assert (ingest.width, ingest.height) == (384, 288)
        session = rig.manager.sessions[sid]
        assert session.kind == "whip" and session.pc.getSenders()[0]._RTCRtpSender__encoder.codec is None

        r = await rig.center.command(
            DEVICE, "stream_stop", {"camera": CAMERA, "session_id": sid}, grant=grant
        )
        assert r["ok"], r
        assert ingest.deleted and whip_endpoint.requests[-1] == ("DELETE", 200)
        assert sid not in rig.manager.sessions
