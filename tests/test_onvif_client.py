"""The agent's ONVIF client against the real SOAP simulator: happy path and each documented failure."""

from __future__ import annotations

import re
import socket

import pytest

from agent.camera.onvif_client import (
    MediaProfile,
    OnvifClient,
    OnvifError,
    OnvifErrorKind,
    choose_profiles,
)
from tests.fixtures.onvif import write_credentials_file


async def test_connect_reads_device_profiles_streams_and_ptz(onvif_sim):
    client = await OnvifClient.from_files(onvif_sim.url, onvif_sim.credentials_file)
    try:
        assert client.info is not None and client.info.manufacturer == "EdgeSim"
        assert {p.token for p in client.profiles} == {"profile_main", "profile_sub"}
        sel = await client.select_streams()
        assert sel.main.uri == "rtsp://127.0.0.1:8554/main" and sel.main.width == 1920
        assert sel.sub is not None and sel.sub.uri == "rtsp://127.0.0.1:8554/sub"
        assert (await client.snapshot_uri()).startswith(f"http://127.0.0.1:{onvif_sim.port}/snapshot/")
        caps = client.ptz_capabilities
        assert caps.supported and caps.continuous and caps.relative and caps.absolute and caps.home
        assert abs(client.clock_offset_s) < 2
    finally:
        await client.close()


async def test_wrong_password_is_a_clear_auth_error(onvif_sim_factory):
    sim = onvif_sim_factory(agent_password="not-the-password")
    with pytest.raises(OnvifError) as ei:
        await OnvifClient.from_files(sim.url, sim.credentials_file)
    assert ei.value.kind is OnvifErrorKind.AUTH
    assert "wrong username or password" in ei.value.message
    assert "not-the-password" not in ei.value.message
    # the simulator really rejected a digest (not a client-side short cut)
    assert any(not r["authorized"] for r in sim.requests())


async def test_camera_clock_ten_minutes_off_is_compensated(onvif_sim_factory):
    sim = onvif_sim_factory(clock_offset=600)
    client = await OnvifClient.from_files(sim.url, sim.credentials_file)
    try:
        assert 595 <= client.clock_offset_s <= 601
        await client.continuous_move(0.5, 0.0, 0.0, timeout_s=1.0)
        await client.stop()
        assert sim.state()["position"]["pan"] > 0
    finally:
        await client.close()


async def test_clock_offset_really_breaks_uncompensated_auth(onvif_sim_factory):
    """Guard for the test above: the simulator rejects a 10-minute-old Created stamp."""
    from onvif import ONVIFCamera
    from zeep.exceptions import Fault

    sim = onvif_sim_factory(clock_offset=600)
    cam = ONVIFCamera("127.0.0.1", sim.port, sim.username, sim.password, adjust_time=False, no_cache=True)
    try:
        with pytest.raises(Fault) as ei:
            await cam.update_xaddrs()
        assert "device clock" in str(ei.value.message)
    finally:
        await cam.close()


async def test_offline_camera_is_unreachable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    creds = write_credentials_file(tmp_path / "c.toml", "admin", "x")
    with pytest.raises(OnvifError) as ei:
        await OnvifClient.from_files(f"http://127.0.0.1:{port}/onvif/device_service", creds, timeout_s=3)
    assert ei.value.kind is OnvifErrorKind.UNREACHABLE
    assert f"127.0.0.1:{port}" in ei.value.message


async def test_silent_camera_times_out(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepts TCP but never answers HTTP
        creds = write_credentials_file(tmp_path / "c.toml", "admin", "x")
        url = f"http://127.0.0.1:{s.getsockname()[1]}/onvif/device_service"
        with pytest.raises(OnvifError) as ei:
            await OnvifClient.from_files(url, creds, timeout_s=0.5)
    assert ei.value.kind is OnvifErrorKind.TIMEOUT


async def test_camera_without_ptz(onvif_sim_factory):
    sim = onvif_sim_factory(no_ptz=True)
    client = await OnvifClient.from_files(sim.url, sim.credentials_file)
    try:
        assert client.ptz_capabilities.supported is False
        (await client.select_streams()).main.uri.endswith("/main")
        with pytest.raises(OnvifError) as ei:
            await client.continuous_move(0.1, 0, 0, 1.0)
        assert ei.value.kind is OnvifErrorKind.NO_PTZ
        assert "no PTZ" in ei.value.message
    finally:
        await client.close()


async def test_h265_only_camera_gets_a_clear_codec_message(onvif_sim_factory):
    sim = onvif_sim_factory(codec="H265")
    client = await OnvifClient.from_files(sim.url, sim.credentials_file)
    try:
        with pytest.raises(OnvifError) as ei:
            await client.select_streams()
        assert ei.value.kind is OnvifErrorKind.CODEC
        assert "only H.265" in ei.value.message and "H.264" in ei.value.message
    finally:
        await client.close()


async def test_ptz_operations_change_simulator_state(onvif_sim):
    client = await OnvifClient.from_files(onvif_sim.url, onvif_sim.credentials_file)
    try:
        await client.absolute_move(0.5, -0.25, 0.5)
        st = await client.status()
        assert st.position is not None and st.position.pan == pytest.approx(0.5)
        token = await client.set_preset("gate")
        await client.absolute_move(-1, -1, 0)
        await client.goto_preset(token)
        assert onvif_sim.state()["position"] == {"pan": 0.5, "tilt": -0.25, "zoom": 0.5}
        assert [p.name for p in await client.presets()] == ["gate"]
        await client.relative_move(0.1, 0.0, 0.0)
        assert onvif_sim.state()["position"]["pan"] == pytest.approx(0.6)
        await client.goto_home()
        assert onvif_sim.state()["position"] == {"pan": 0.0, "tilt": 0.0, "zoom": 0.0}
        await client.remove_preset(token)
        with pytest.raises(OnvifError) as ei:
            await client.goto_preset(token)
        assert ei.value.kind is OnvifErrorKind.NOT_FOUND
        await client.reboot()
        assert onvif_sim.state()["reboots"] == 1
    finally:
        await client.close()


async def test_world_readable_credentials_are_refused(onvif_sim):
    onvif_sim.credentials_file.chmod(0o644)
    with pytest.raises(OnvifError) as ei:
        await OnvifClient.from_files(onvif_sim.url, onvif_sim.credentials_file)
    assert ei.value.kind is OnvifErrorKind.CREDENTIALS and "chmod 600" in ei.value.message


def _p(token, enc, w, h):
    return MediaProfile(token, token, enc, w, h, 25.0, False)


def test_profile_choice_prefers_h264_and_resolution():
    main, sub, notes = choose_profiles(
        [_p("a", "H265", 3840, 2160), _p("b", "H264", 1280, 720), _p("c", "H264", 640, 360)]
    )
    assert (main.token, sub.token if sub else None) == ("b", "c")
    assert any("H.265" in n for n in notes)
    main, sub, notes = choose_profiles([_p("only", "H264", 1920, 1080)])
    assert sub is None and "decode the main stream" in notes[0]
    with pytest.raises(OnvifError, match="only MJPEG"):
        choose_profiles([_p("j", "JPEG", 640, 480)])


async def test_doctor_warns_about_clock_and_reports_errors(onvif_sim_factory):
    from agent.camera.onvif_doctor import check_camera

    skewed = onvif_sim_factory(clock_offset=600)
    found = await check_camera("cam1", skewed.url, skewed.credentials_file)
    assert any(f.level == "warn" and re.search(r"clock is \+(599|600) s", f.message) for f in found)
    assert not any(f.level == "error" for f in found)
    bad = onvif_sim_factory(agent_password="wrong")
    found = await check_camera("cam2", bad.url, bad.credentials_file)
    assert [f.level for f in found] == ["error"] and "wrong username or password" in found[0].message
