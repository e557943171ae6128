"""CameraManager with real settings, the RTSP simulator (main + sub) and a file camera."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.camera.fanout import CameraGone
from agent.camera.manager import CameraManager, CameraStatus, UnknownCamera
from agent.config import CameraSettings
from agent.mqtt.messages import StateMessage
from tests.fixtures.camera import SAMPLES, RtspCamera


async def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_manager_main_sub_and_file_cameras(rtsp_camera: RtspCamera) -> None:
    seen: list[CameraStatus] = []
    cams = [
        CameraSettings(
            name="gate",
            main_url=rtsp_camera.url("street"),
            sub_url=rtsp_camera.url("street_sub"),
            detect_fps=5,
            detect_width=160,
        ),
        CameraSettings(name="walkway", file=SAMPLES / "walkway_sub.mp4", detect_fps=2, detect_width=128),
    ]
    manager = CameraManager(cams, on_state=seen.append, read_timeout=3.0)
    await manager.start()
    try:
        gate = manager.get("gate")
        walk = manager.get("walkway")
        assert {rt.name for rt in manager.runtimes()} == {"gate", "walkway"}
        with pytest.raises(UnknownCamera):
            manager.get("nope")

        viewer = gate.main.subscribe()
        first = await asyncio.wait_for(viewer.__anext__(), 15)
        assert first.is_keyframe and viewer.info is not None and viewer.info.width == 640

        # Detection decodes the sub-stream (320x136), at the configured size.
        frames = gate.frames()
        frame = await asyncio.wait_for(frames.__anext__(), 15)
        assert (frame.source_width, frame.source_height) == (320, 136)
        assert frame.image.shape == (68, 160, 3)
        await frames.aclose()

        wframes = walk.frames()
        wf = await asyncio.wait_for(wframes.__anext__(), 15)
        assert (wf.source_width, wf.image.shape) == (384, (96, 128, 3))
        await wframes.aclose()

        await wait_until(lambda: gate.status().fps is not None, 5, "fps measured")
        st = gate.status()
        assert (st.state, st.codec, st.width, st.height, st.sub_state) == (
            "online",
            "h264",
            640,
            272,
            "online",
        )
        assert st.last_frame_ts is not None and st.last_error is None
        assert walk.status().state == "online" and walk.status().sub_state is None
        stats = gate.stats()
        assert stats["main_subscribers"] == 1 and (stats["main_packets"] or 0) > 0
        assert st.capabilities == {"sub_stream": True, "source": "rtsp"}
        # The birth message carries the status as is, without URLs or credentials.
        birth = StateMessage(device_id="dev1", status="online", cameras=[st, walk.status()]).model_dump_json()
        assert '"state":"online"' in birth and "rtsp://" not in birth

        rtsp_camera.stop()
        await wait_until(lambda: gate.status().state != "online", 10, "gate offline")
        await wait_until(lambda: any(s.name == "gate" and s.state == "offline" for s in seen), 5, "callback")
        assert walk.status().state == "online"  # the other camera is unaffected
        rtsp_camera.start()
        await wait_until(lambda: gate.status().state == "online", 20, "gate online again")
        assert gate.status().reconnects >= 1
    finally:
        await manager.stop()
    # Consumers learn that the camera is gone for good, after what was queued.
    with pytest.raises(CameraGone):
        async for _ in viewer:
            pass
    assert gate.status().state == "offline"


async def test_bad_camera_url_does_not_crash_the_manager(rtsp_camera_shared: RtspCamera) -> None:
    cams = [
        CameraSettings(name="bad", main_url=f"rtsp://127.0.0.1:{rtsp_camera_shared.port}/missing"),
        CameraSettings(name="good", main_url=rtsp_camera_shared.url("street_sub")),
    ]
    manager = CameraManager(cams)
    await manager.start()
    try:
        await wait_until(lambda: manager.get("good").status().state == "online", 15, "good online")
        await wait_until(lambda: manager.get("bad").status().last_error is not None, 15, "bad error")
        bad = manager.get("bad").status()
        assert bad.state in ("offline", "connecting") and "404" in (bad.last_error or "")
    finally:
        await manager.stop()


def test_duplicate_names_rejected() -> None:
    cam = CameraSettings(name="a", file=SAMPLES / "street_sub.mp4")
    with pytest.raises(ValueError, match="duplicate"):
        CameraManager([cam, cam])
