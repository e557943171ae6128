"""PTZ arbitration and safety against the real ONVIF simulator (no MQTT here; see test_ptz_e2e)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from agent.camera.onvif_client import OnvifClient
from agent.mqtt.envelope import CommandError, ErrorCode
from agent.ptz.manager import PtzManager, Who
from agent.ptz.settings import PtzSettings
from tests.fixtures.onvif import write_credentials_file

PROV = Who("prov-officer", "provincial_police", "PC-HN", "incident")
DIST = Who("dist-officer", "district_police", "CA-HK", "incident")
COMM = Who("comm-officer", "commune_police", "CA-P1", "patrol")
DIST2 = Who("dist-officer-2", "district_police", "CA-BD", "incident")


def manager_for(sim, **settings) -> tuple[PtzManager, list[tuple[str, bool]]]:
    events: list[tuple[str, bool]] = []

    async def connect() -> OnvifClient:
        return await OnvifClient.from_files(sim.url, sim.credentials_file, timeout_s=3)

    mgr = PtzManager(
        {"cam1": connect}, PtzSettings(**settings), on_away_from_home=lambda c, a: events.append((c, a))
    )
    return mgr, events


async def eventually(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def test_lock_contention_between_roles(onvif_sim):
    mgr, _ = manager_for(onvif_sim, idle_return_s=0)
    cam = mgr.camera("cam1")
    try:
        await cam.absolute_move(DIST, 0.3, 0.0, 0.0, None)
        with pytest.raises(CommandError) as ei:
            await cam.absolute_move(COMM, -0.5, 0.0, 0.0, None)
        assert ei.value.code is ErrorCode.BUSY
        assert ei.value.details["holder"] == "dist-officer" and ei.value.details["until"] > time.time()
        assert "dist-officer" in ei.value.message
        with pytest.raises(CommandError) as ei:  # same priority, different person: first come keeps it
            await cam.stop(DIST2)
        assert ei.value.code is ErrorCode.BUSY
        assert onvif_sim.state()["position"]["pan"] == pytest.approx(0.3)  # losers never reached the camera

        res = await cam.absolute_move(PROV, -0.7, 0.1, 0.0, None)  # provincial police preempts
        assert res["lock"]["holder"] == "prov-officer"
        with pytest.raises(CommandError) as ei:
            await cam.stop(DIST)
        assert ei.value.code is ErrorCode.BUSY and ei.value.details["role"] == "provincial_police"
        assert onvif_sim.state()["position"]["pan"] == pytest.approx(-0.7)
    finally:
        await mgr.close()


async def test_lease_expires_and_release_frees_the_lock(onvif_sim):
    mgr, _ = manager_for(onvif_sim, idle_return_s=0, lease_s=0.3)
    cam = mgr.camera("cam1")
    try:
        await cam.stop(PROV)
        with pytest.raises(CommandError):
            await cam.stop(COMM)
        await eventually(lambda: cam.lock.holder() is None)
        await cam.stop(COMM, release=True)
        assert cam.lock.holder() is None
    finally:
        await mgr.close()


async def test_lost_stop_is_covered_by_our_own_timer(onvif_sim_factory):
    sim = onvif_sim_factory(ignore_move_timeout=True)  # a camera that ignores ContinuousMove Timeout
    mgr, _ = manager_for(sim, idle_return_s=0)
    cam = mgr.camera("cam1")
    try:
        await cam.continuous_move(DIST, 1.0, 0.0, 0.0, 0.4)
        assert sim.state()["moving"] is True
        # the operator's Stop never arrives; the agent stops the camera anyway
        await eventually(lambda: not sim.state()["moving"])
        assert cam.safety_stops == 1
        assert sim.requests("Stop"), "the camera was stopped by an explicit Stop from the agent"
        pan = sim.state()["position"]["pan"]
        await asyncio.sleep(0.3)
        assert sim.state()["position"]["pan"] == pan
    finally:
        await mgr.close()


async def test_move_duration_is_capped_by_max_move(onvif_sim):
    mgr, _ = manager_for(onvif_sim, idle_return_s=0, max_move_s=0.5, default_move_s=0.5)
    cam = mgr.camera("cam1")
    try:
        res = await cam.continuous_move(DIST, 0.5, 0.0, 0.0, 60)
        assert res["duration_s"] == 0.5
        sent = onvif_sim.requests("ContinuousMove")[-1]["params"]["Timeout"]
        assert sent in ("PT0.5S", "PT0.500000S")
    finally:
        await mgr.close()


async def test_idle_return_to_home_and_counting_pause(onvif_sim):
    mgr, events = manager_for(onvif_sim, idle_return_s=0.5)
    cam = mgr.camera("cam1")
    try:
        await cam.absolute_move(COMM, 0.8, -0.2, 0.3, None)
        assert events == [("cam1", True)]
        assert mgr.telemetry()["cam1"]["counting_paused"] is True
        await eventually(lambda: events == [("cam1", True), ("cam1", False)])
        assert onvif_sim.state()["position"] == {"pan": 0.0, "tilt": 0.0, "zoom": 0.0}
        assert cam.lock.holder() is None and cam.idle_returns == 1
        assert mgr.telemetry()["cam1"]["away_from_home"] is False
    finally:
        await mgr.close()


async def test_home_preset_and_explicit_home(onvif_sim):
    mgr, events = manager_for(onvif_sim, idle_return_s=0)
    cam = mgr.camera("cam1")
    try:
        await cam.absolute_move(PROV, 0.25, 0.25, 0.0, None)
        token = (await cam.set_preset(PROV, "crossing", None))["preset"]
        cam.home_preset = token
        await cam.absolute_move(PROV, -1, -1, 0, None)
        await cam.home(PROV)
        assert onvif_sim.state()["position"]["pan"] == pytest.approx(0.25)
        assert events == [("cam1", True), ("cam1", False)]
        with pytest.raises(CommandError) as ei:
            await cam.remove_preset(PROV, token)
        assert ei.value.code is ErrorCode.INVALID_PARAMS
        st = await cam.status(COMM)  # status needs no lock
        assert st["presets"] == [{"token": token, "name": "crossing"}] and st["away_from_home"] is False
    finally:
        await mgr.close()


async def test_rate_limit_per_requester(onvif_sim):
    mgr, _ = manager_for(onvif_sim, idle_return_s=0, rate_per_s=0.5, rate_burst=2)
    cam = mgr.camera("cam1")
    try:
        await cam.stop(PROV)
        await cam.stop(PROV)
        with pytest.raises(CommandError) as ei:
            await cam.stop(PROV)
        assert ei.value.code is ErrorCode.LIMIT and ei.value.details["retry_after_s"] > 0
        await cam.status(COMM)  # another requester has its own bucket
    finally:
        await mgr.close()


async def test_fixed_camera_refuses_ptz_but_reboots(onvif_sim_factory):
    sim = onvif_sim_factory(no_ptz=True)
    mgr, _ = manager_for(sim)
    cam = mgr.camera("cam1")
    try:
        with pytest.raises(CommandError) as ei:
            await cam.continuous_move(PROV, 0.1, 0, 0, 1)
        assert ei.value.code is ErrorCode.UNAVAILABLE and "no PTZ" in ei.value.message
        assert (await cam.reboot(PROV))["rebooting"] is True
        assert sim.state()["reboots"] == 1
        assert (await mgr.probe_all()) == {"cam1": {"supported": False, "continuous": False, "relative": False,
                                                    "absolute": False, "home": False, "presets": False,
                                                    "max_presets": 0}}  # fmt: skip
    finally:
        await mgr.close()


async def test_offline_camera_is_unavailable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    creds = write_credentials_file(tmp_path / "c.toml", "admin", "x")

    async def connect() -> OnvifClient:
        return await OnvifClient.from_files(
            f"http://127.0.0.1:{port}/onvif/device_service", creds, timeout_s=2
        )

    mgr = PtzManager({"cam1": connect}, PtzSettings())
    try:
        with pytest.raises(CommandError) as ei:
            await mgr.camera("cam1").continuous_move(PROV, 0.1, 0, 0, 1)
        assert ei.value.code is ErrorCode.UNAVAILABLE and "cannot reach" in ei.value.message
        assert mgr.telemetry()["cam1"]["reachable"] is False
        with pytest.raises(CommandError) as ei:
            mgr.camera("nope")
        assert ei.value.code is ErrorCode.UNAVAILABLE
    finally:
        await mgr.close()


async def test_health_check_reconnects_after_camera_restart(onvif_sim_factory, tmp_path):
    sim = onvif_sim_factory()
    mgr, _ = manager_for(sim)
    cam = mgr.camera("cam1")
    try:
        await cam.health_check()
        assert mgr.telemetry()["cam1"]["reachable"] is True
        sim.stop()
        await cam.health_check()
        assert mgr.telemetry()["cam1"]["reachable"] is False
        assert "cannot reach" in mgr.telemetry()["cam1"]["last_error"]
    finally:
        await mgr.close()


async def test_camera_clock_jump_after_connect_is_absorbed(onvif_sim):
    mgr, _ = manager_for(onvif_sim, idle_return_s=0)
    cam = mgr.camera("cam1")
    try:
        await cam.absolute_move(PROV, 0.1, 0.0, 0.0, None)
        assert abs(mgr.telemetry()["cam1"]["clock_offset_s"]) < 2
        onvif_sim.control(clock_offset_s=600)  # the camera's NTP kicks in: its clock jumps 10 minutes
        await cam.absolute_move(PROV, 0.4, 0.0, 0.0, None)
        assert onvif_sim.state()["position"]["pan"] == pytest.approx(0.4)
        assert any(not r["authorized"] for r in onvif_sim.requests())  # the stale signature was refused
        assert 595 <= mgr.telemetry()["cam1"]["clock_offset_s"] <= 601
    finally:
        await mgr.close()
