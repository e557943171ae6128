"""Who may not watch, and when watching stops: refusals, limits, grant expiry, camera drop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.fixtures.stream import CAMERA, DEVICE, StreamRig, Viewer, make_rig


async def test_refusals(stream_rig: StreamRig, viewers: list[Viewer]) -> None:
    v = Viewer()
    viewers.append(v)
    offer = await v.offer()
    params = {"camera": CAMERA, "sdp": offer}
    center = stream_rig.center

    r = await center.command(DEVICE, "stream_start", params)
    assert r["error"]["code"] == "unauthorized"  # no grant

    expired = stream_rig.grant(nbf=time.time() - 600, ttl=60)
    r = await center.command(DEVICE, "stream_start", params, grant=expired)
    assert r["error"]["code"] == "unauthorized"

    wrong_role = stream_rig.grant(role="operator_unit")
    r = await center.command(DEVICE, "stream_start", params, grant=wrong_role)
    assert r["error"]["code"] == "forbidden"

    other = Viewer()  # the grant names another viewer's certificate: a broker splicing itself in
    viewers.append(other)
    await other.offer()
    spliced = stream_rig.grant(extra={"dtls_fp": other.fingerprint})
    r = await center.command(DEVICE, "stream_start", params, grant=spliced)
    assert r["error"]["code"] == "forbidden" and "fingerprint mismatch" in r["error"]["message"]

    r = await center.command(DEVICE, "stream_start", {**params, "codec": "vp8"}, grant=stream_rig.grant())
    assert r["error"]["code"] == "invalid_params"
    r = await center.command(
        DEVICE, "stream_start", {**params, "sdp": "v=0 garbage"}, grant=stream_rig.grant()
    )
    assert r["error"]["code"] == "invalid_params"
    assert stream_rig.manager.sessions == {}  # refused requests leave nothing behind

    # The bound fingerprint is accepted; the third session on this camera is over the limit (2).
    bound = stream_rig.grant(extra={"dtls_fp": v.fingerprint})
    r = await center.command(DEVICE, "stream_start", params, grant=bound)
    assert r["ok"], r.get("error")
    await v.accept(r["result"]["sdp"])
    second = Viewer()
    viewers.append(second)
    assert (await stream_rig.start(second, stream_rig.grant(), "sub"))["ok"]
    third = Viewer()
    viewers.append(third)
    r = await stream_rig.start(third, stream_rig.grant())
    assert r["error"]["code"] == "limit" and r["error"]["details"]["limit"] == "camera"
    await v.wait_frames(1)

    # Trickled candidates are optional (the offer carried them) but accepted and validated.
    sid = next(iter(stream_rig.manager.sessions))
    ice = {"camera": CAMERA, "session_id": sid}
    host = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    for extra, code in (
        ({"candidate": host, "sdp_mid": "0"}, None),
        ({}, None),
        ({"candidate": "nonsense"}, "invalid_params"),
    ):
        r = await center.command(DEVICE, "stream_ice", {**ice, **extra}, grant=bound)
        assert (r["error"]["code"] if not r["ok"] else None) == code, r
    someone_else = stream_rig.grant(sub="officer-2")
    r = await center.command(DEVICE, "stream_stop", ice, grant=someone_else)
    assert r["error"]["code"] == "forbidden"  # only the requester stops their session


async def test_grant_expiry_ends_the_session(stream_rig: StreamRig, viewers: list[Viewer]) -> None:
    v = Viewer()
    viewers.append(v)
    r = await stream_rig.start(v, stream_rig.grant(ttl=4), "sub")
    assert r["ok"], r
    sid = r["result"]["session_id"]
    assert r["result"]["ends_at"] <= time.time() + 4.5
    await v.wait_frames(1)
    await asyncio.wait_for(v.ended.wait(), 15)  # the agent closed the connection
    assert sid not in stream_rig.manager.sessions
    assert await stream_rig.list() == []
    frames = v.frames
    await asyncio.sleep(0.5)
    assert v.frames == frames  # nothing more is sent


async def test_camera_drop_recovers_then_removal_ends_with_reason(
    tmp_path: Path, broker: Any, authority: Any, rtsp_camera: Any
) -> None:
    async for rig in make_rig(tmp_path, broker, authority, rtsp_camera):
        v = Viewer()
        try:
            r = await rig.start(v, rig.grant(), "sub")
            assert r["ok"], r
            sid = r["result"]["session_id"]
            await v.wait_frames(3)
            session = rig.manager.sessions[sid]
            first_generation = session.track.generation
            rtsp_camera.restart()  # the camera drops off and comes back

            async def reconnected() -> None:
                while session.track.generation == first_generation:
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(reconnected(), 30)  # packets of the new connection are forwarded
            before = v.frames
            await v.wait_frames(before + 5, timeout=30)  # ... and decoded by the same viewer
            assert sid in rig.manager.sessions and not v.ended.is_set()

            cameras = rig.app.services.cameras
            assert cameras is not None
            await cameras.get(CAMERA).stop("camera removed")
            await asyncio.wait_for(v.ended.wait(), 15)
            assert session.end_reason is not None and "camera removed" in session.end_reason
            assert await rig.list() == []
        finally:
            await v.close()


async def test_idle_sessions_are_reaped(
    tmp_path: Path, broker: Any, authority: Any, rtsp_camera_shared: Any
) -> None:
    async for rig in make_rig(tmp_path, broker, authority, rtsp_camera_shared, "connect_timeout_s = 2"):
        silent, leaving = Viewer(), Viewer()
        try:
            offer = await silent.offer()  # asks, then never applies the answer: no ICE, no DTLS
            r = await rig.center.command(
                DEVICE, "stream_start", {"camera": CAMERA, "sdp": offer}, grant=rig.grant()
            )
            assert r["ok"], r
            never = rig.manager.sessions[r["result"]["session_id"]]
            r = await rig.start(leaving, rig.grant(), "sub")
            assert r["ok"], r
            gone = rig.manager.sessions[r["result"]["session_id"]]
            await leaving.wait_frames(1)
            await leaving.pc.close()  # the viewer goes away (DTLS close_notify)

            async def reaped() -> None:
                while rig.manager.sessions:
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(reaped(), 15)
            assert never.end_reason == "peer did not connect"
            assert gone.end_reason is not None and gone.end_reason.startswith("peer connection")
            assert gone.track.bytes > 0 and never.track.bytes == 0
        finally:
            await silent.close()
            await leaving.close()


async def test_uplink_budget_refuses_with_a_hint(
    tmp_path: Path, broker: Any, authority: Any, rtsp_camera_shared: Any
) -> None:
    async for rig in make_rig(tmp_path, broker, authority, rtsp_camera_shared, "max_bitrate_kbps = 1"):
        meters = rig.manager._meters

        async def measured() -> None:  # the agent measures each stream's bitrate in the background
            while not (meters.get("gate/main") and meters["gate/main"].kbps > 1):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(measured(), 15)
        v = Viewer()
        try:
            r = await rig.start(v, rig.grant())
            assert r["error"]["code"] == "limit" and r["error"]["details"]["limit"] == "bitrate"
            assert "sub-stream" in r["error"]["message"]
            assert rig.manager.sessions == {}
        finally:
            await v.close()
