"""A real aiortc viewer watches a real camera through the real agent, signaled over real MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tests.fixtures.stream import CAMERA, DEVICE, StreamRig, Viewer


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts H264Encoder.encode calls in this process (the agent runs in-process here)."""
    calls: list[int] = []
    original = H264Encoder.encode

    def spy(self: H264Encoder, *a: Any, **kw: Any) -> Any:
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(H264Encoder, "encode", spy)
    return calls


async def test_main_and_sub_arrive_decoded_at_source_size_without_reencoding(
    stream_rig: StreamRig, viewers: list[Viewer], encode_calls: list[int]
) -> None:
    grant = stream_rig.grant()
    main, sub = Viewer(), Viewer()
    viewers += [main, sub]
    r = await stream_rig.start(main, grant, "main")
    assert r["ok"], r
    sid_main = r["result"]["session_id"]
    answer = r["result"]["sdp"]
    # The codec-preference trap: the viewer offered VP8 first; only H.264 may be answered.
    assert "H264/90000" in answer and "VP8" not in answer
    assert "a=candidate:" in answer  # non-trickle: candidates travel inside the answer
    r = await stream_rig.start(sub, grant, "sub")  # same grant, same camera: the session binding allows it
    assert r["ok"], r
    sid_sub = r["result"]["session_id"]

    await main.wait_frames(5)
    await sub.wait_frames(5)
    assert main.size == (768, 576)
    assert sub.size == (384, 288)

    # Passthrough: packets were forwarded, and the sender never encoded (no libx264 context).
    for sid in (sid_main, sid_sub):
        session = stream_rig.manager.sessions[sid]
        assert session.track.packets > 0 and session.track.bytes > 0
        sender = session.pc.getSenders()[0]
        encoder = sender._RTCRtpSender__encoder
        assert isinstance(encoder, H264Encoder) and encoder.codec is None
    assert encode_calls == []

    sessions = await stream_rig.list()
    assert {s["session_id"] for s in sessions} == {sid_main, sid_sub}
    assert all(s["requester"] == "officer-1" and s["camera"] == CAMERA for s in sessions)
    telemetry = stream_rig.app.services.telemetry_providers["streams"]()
    assert telemetry["sessions"] == 2 and telemetry["by_camera"] == {CAMERA: 2}

    r = await stream_rig.center.command(
        DEVICE, "stream_stop", {"camera": CAMERA, "session_id": sid_main}, grant=grant
    )
    assert r["ok"], r
    assert r["result"]["bytes"] > 0
    assert [s["session_id"] for s in await stream_rig.list()] == [sid_sub]
    r = await stream_rig.center.command(
        DEVICE, "stream_stop", {"camera": CAMERA, "session_id": sid_main}, grant=grant
    )
    assert r["error"]["code"] == "not_found"

    records = [json.loads(line) for line in stream_rig.app.policy.audit.path.read_text().splitlines()]
    stops = [x for x in records if x.get("reason") == "stream_stop"]
    assert [x["detail"]["session_id"] for x in stops] == [sid_main]
    assert stops[0]["detail"]["bytes"] > 0 and stops[0]["detail"]["reason"] == "stopped by requester"
    starts = [x["detail"]["session_id"] for x in records if x.get("reason") == "stream_start"]
    assert starts == [sid_main, sid_sub]


async def test_agent_offers_when_asked_and_the_answer_is_bound_to_the_grant(
    stream_rig: StreamRig, viewers: list[Viewer]
) -> None:
    async def answer_to(offer_sdp: str) -> tuple[RTCPeerConnection, str, asyncio.Event]:
        pc = RTCPeerConnection()
        got = asyncio.Event()

        async def consume(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                frame = await track.recv()
                assert (frame.width, frame.height) == (384, 288)  # type: ignore[union-attr]
                got.set()

        pc.on("track", lambda t: tasks.append(asyncio.ensure_future(consume(t))))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc, pc.localDescription.sdp, got

    tasks: list[asyncio.Task[None]] = []
    peers: list[RTCPeerConnection] = []
    try:
        ask = {"camera": CAMERA, "stream": "sub"}
        r = await stream_rig.center.command(DEVICE, "stream_start", ask, grant=stream_rig.grant())
        assert r["ok"], r
        assert (
            r["result"]["type"] == "offer"
            and "H264/90000" in r["result"]["sdp"]
            and "VP8" not in r["result"]["sdp"]
        )
        pc, answer, got = await answer_to(r["result"]["sdp"])
        peers.append(pc)
        fp = re.search(r"^a=fingerprint:(\S+ \S+)", answer, re.MULTILINE)
        assert fp is not None
        done = {"camera": CAMERA, "session_id": r["result"]["session_id"], "sdp": answer}
        r = await stream_rig.center.command(
            DEVICE, "stream_start", done, grant=stream_rig.grant(extra={"dtls_fp": fp.group(1)})
        )
        assert r["ok"] and r["result"]["type"] == "started", r
        await asyncio.wait_for(got.wait(), 15)

        # An answer from another certificate than the signed one is refused and the offer withdrawn.
        r = await stream_rig.center.command(DEVICE, "stream_start", ask, grant=stream_rig.grant())
        sid = r["result"]["session_id"]
        pc2, answer2, _ = await answer_to(r["result"]["sdp"])
        peers.append(pc2)
        other = stream_rig.grant(extra={"dtls_fp": fp.group(1)})  # the first peer's fingerprint
        r = await stream_rig.center.command(
            DEVICE, "stream_start", {"camera": CAMERA, "session_id": sid, "sdp": answer2}, grant=other
        )
        assert r["error"]["code"] == "forbidden" and sid not in stream_rig.manager.sessions
        r = await stream_rig.center.command(
            DEVICE, "stream_start", {"camera": CAMERA, "session_id": sid}, grant=stream_rig.grant()
        )
        assert r["error"]["code"] == "invalid_params"
    finally:
        for pc in peers:
            await pc.close()
        for t in tasks:
            t.cancel()
