"""WHIP push (RFC 9725) from a real camera fan-out to a real aiortc receiver behind HTTPS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from agent.camera.manager import CameraManager
from agent.config import CameraSettings
from agent.stream.manager import h264_preferences
from agent.stream.track import PassthroughTrack
from agent.stream.whip import WhipError, whip_publish
from tests.fixtures.stream_whip import WhipEndpoint, make_test_pki

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture
async def street() -> AsyncIterator[CameraManager]:
    """The 640x272 street clip, looped by the real packet source (no RTSP needed for WHIP)."""
    manager = CameraManager([CameraSettings(name="street", file=SAMPLES / "street.mp4")])
    await manager.start()
    try:
        yield manager
    finally:
        await manager.stop()


def _pusher(cameras: CameraManager) -> tuple[RTCPeerConnection, PassthroughTrack]:
    fanout = cameras.get("street").main
    track = PassthroughTrack(fanout.subscribe(from_gop=True), "street")
    pc = RTCPeerConnection()
    pc.addTransceiver(track, direction="sendonly").setCodecPreferences(h264_preferences())
    return pc, track


async def test_push_reaches_the_endpoint_decoded_and_delete_ends_it(
    street: CameraManager, whip_endpoint: WhipEndpoint
) -> None:
    pc, track = _pusher(street)
    try:
        resource = await whip_publish(
            pc, whip_endpoint.url, whip_endpoint.token, ca_file=whip_endpoint.ca_file
        )
        assert resource.url.startswith(f"https://127.0.0.1:{whip_endpoint.port}/whip/resource/")
        ingest = whip_endpoint.sessions[0]
        assert "H264" in ingest.offer and "VP8" not in ingest.offer  # only H.264 is offered
        await asyncio.wait_for(ingest.first_frame.wait(), 15)
        while ingest.frames < 10:
            await asyncio.sleep(0.1)
        assert (ingest.width, ingest.height) == (640, 272)
        sender = pc.getSenders()[0]
        assert sender._RTCRtpSender__encoder.codec is None  # type: ignore[attr-defined]  # packetized only
        assert track.packets >= ingest.frames
        assert await resource.delete() == 200
        assert ingest.deleted
        assert await resource.delete() == 0  # once only
        assert whip_endpoint.requests == [("POST", 201), ("DELETE", 200)]
    finally:
        track.stop()
        await pc.close()


async def test_wrong_token_is_refused_with_the_status(
    street: CameraManager, whip_endpoint: WhipEndpoint
) -> None:
    pc, track = _pusher(street)
    try:
        with pytest.raises(WhipError) as err:
            await whip_publish(pc, whip_endpoint.url, "not-the-token", ca_file=whip_endpoint.ca_file)
        assert err.value.status == 401
        assert whip_endpoint.sessions == []
    finally:
        track.stop()
        await pc.close()


async def test_untrusted_certificate_and_plain_http_are_refused(
    street: CameraManager, whip_endpoint: WhipEndpoint, tmp_path: Path
) -> None:
    other_ca = make_test_pki(tmp_path / "other").ca_file
    pc, track = _pusher(street)
    try:
        with pytest.raises(WhipError, match="TLS"):
            await whip_publish(pc, whip_endpoint.url, whip_endpoint.token, ca_file=other_ca)
        with pytest.raises(WhipError, match="https"):
            await whip_publish(pc, whip_endpoint.url.replace("https", "http"), whip_endpoint.token)
        assert whip_endpoint.requests == []  # the token never reached anyone
    finally:
        track.stop()
        await pc.close()
