"""The registered PTZ actions with real Services built from a real config (gate/MQTT: test_ptz_e2e)."""

from __future__ import annotations

import pytest

from agent.config import AgentSettings
from agent.mqtt.envelope import CommandEnvelope, CommandError, ErrorCode
from agent.mqtt.outbox import Outbox
from agent.mqtt.registry import CommandContext, HandlerRegistry
from agent.policy.context import AuthContext
from agent.ptz import handlers as ptz_handlers
from agent.services import Services


def _services(tmp_path, sim, fixed=None) -> Services:
    cams = [{"name": "gate", "main_url": "rtsp://127.0.0.1:8554/main",
             "onvif": {"url": sim.url, "credentials_file": str(sim.credentials_file)}}]  # fmt: skip
    if fixed is not None:
        cams.append(
            {
                "name": "lobby",
                "main_url": "rtsp://127.0.0.1:8554/main",
                "onvif": {"url": fixed.url, "credentials_file": str(fixed.credentials_file)},
            }
        )
    cams.append({"name": "plain", "main_url": "rtsp://127.0.0.1:8554/main"})
    settings = AgentSettings.model_validate(
        {
            "device": {"id": "box-ptz", "owner_org": "Org",
                       "location": {"province": "01", "district": "001", "commune": "00001"}},
            "center": {"host": "localhost", "insecure_dev": True},
            "storage": {"state_dir": str(tmp_path / "state")},
            "cameras": cams,
        }
    )  # fmt: skip
    return Services(settings=settings, outbox=Outbox(tmp_path / "outbox.db", "box-ptz", 10_000_000))


def _ctx(action: str, params: dict, role: str = "district_police", who: str = "officer-1") -> tuple:
    env = CommandEnvelope(id="c1", action=action, params=params)
    auth = AuthContext(requester=who, role=role, unit="CA-1", purpose="incident 42")
    return CommandContext(envelope=env, auth=auth, camera=params.get("camera")), params


async def call(reg: HandlerRegistry, action: str, params: dict, **who) -> dict:
    spec = reg.get(action)
    ctx, raw = _ctx(action, params, **who)
    return await spec.handler(ctx, spec.params_model.model_validate(raw))


async def test_register_wires_cameras_hook_and_telemetry(tmp_path, onvif_sim_factory):
    sim = onvif_sim_factory()
    fixed = onvif_sim_factory(no_ptz=True)
    services = _services(tmp_path, sim, fixed)
    away: list[tuple[str, bool]] = []
    services.extras[ptz_handlers.AWAY_HOOK_KEY] = lambda cam, a: away.append((cam, a))
    reg = HandlerRegistry()
    ptz_handlers.register(reg, services)
    mgr = services.extras[ptz_handlers.EXTRA_KEY]
    try:
        caps = await mgr.probe_all()
        assert caps["gate"]["supported"] is True and caps["lobby"]["supported"] is False
        assert "plain" not in caps

        res = await call(reg, "ptz_move", {"camera": "gate", "pan": 0.5, "timeout_s": 0.3})
        assert res["lock"]["holder"] == "officer-1" and res["duration_s"] == 0.3
        assert away == [("gate", True)]
        res = await call(reg, "ptz_set_preset", {"camera": "gate", "name": "north"})
        token = res["preset"]
        await call(
            reg, "ptz_move", {"camera": "gate", "mode": "absolute", "pan": -0.5, "tilt": 0.2, "zoom": 0.1}
        )
        await call(reg, "ptz_goto_preset", {"camera": "gate", "preset": token})
        st = await call(reg, "ptz_status", {"camera": "gate"})
        assert st["presets"] == [{"token": token, "name": "north"}] and st["away_from_home"] is True
        await call(reg, "ptz_home", {"camera": "gate"})
        assert sim.state()["position"] == {"pan": 0.0, "tilt": 0.0, "zoom": 0.0}
        assert away[-1] == ("gate", False)
        await call(reg, "ptz_remove_preset", {"camera": "gate", "preset": token})
        assert sim.state()["presets"] == {}
        await call(reg, "ptz_stop", {"camera": "gate", "release": True})
        assert services.telemetry_providers["ptz"]()["gate"]["lock"] is None

        with pytest.raises(CommandError) as ei:
            await call(reg, "ptz_move", {"camera": "lobby", "pan": 0.1})
        assert ei.value.code is ErrorCode.UNAVAILABLE and "no PTZ" in ei.value.message
        assert (await call(reg, "camera_reboot", {"camera": "lobby"}, role="operator_unit"))["rebooting"]
        assert fixed.state()["reboots"] == 1
        with pytest.raises(CommandError) as ei:
            await call(reg, "ptz_status", {"camera": "plain"})
        assert ei.value.code is ErrorCode.UNAVAILABLE and "no ONVIF" in ei.value.message
    finally:
        await mgr.close()
        services.outbox.close()
