"""The agent reports its cameras: a camera that drops is announced offline (retained state and
telemetry), and online again when it comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agent.app import AgentApp
from tests.fixtures.agent import agent_config, settings_from, start_center


def cam_state(d: dict[str, Any], name: str = "gate") -> str | None:
    return next((c["state"] for c in d.get("cameras", []) if c["name"] == name), None)


async def test_camera_drop_and_recovery_are_reported(tmp_path: Path, broker: Any, rtsp_camera: Any) -> None:
    extra = f"""
[[cameras]]
name = "gate"
main_url = "{rtsp_camera.main_url}"
sub_url = "{rtsp_camera.sub_url}"
"""
    client, rec = await start_center(broker)
    app = AgentApp(settings_from(agent_config(tmp_path, broker, extra=extra)))
    await app.start()
    try:
        await rec.wait_for("/state", lambda d: cam_state(d) == "online", timeout=30)
        await rec.wait_for("/telemetry", lambda d: cam_state(d) == "online", timeout=10)
        await asyncio.to_thread(rtsp_camera.stop)
        off = await rec.wait_for("/state", lambda d: cam_state(d) == "offline", timeout=30)
        gate = next(c for c in off["cameras"] if c["name"] == "gate")
        assert gate["last_error"]  # says why
        assert "rtsp://" not in str(gate) or "@" not in str(gate)  # no credentials leak
        await rec.wait_for("/telemetry", lambda d: cam_state(d) == "offline", timeout=10)
        await asyncio.to_thread(rtsp_camera.restart)
        n_online_before = len([d for d in rec.on("/state") if cam_state(d) == "online"])
        await rec.wait_for(
            "/state",
            lambda d: (
                cam_state(d) == "online"
                and len([x for x in rec.on("/state") if cam_state(x) == "online"]) > n_online_before
            ),
            timeout=60,
        )
        status = app.services.cameras.get("gate").status()  # type: ignore[union-attr]
        assert status.reconnects >= 1
    finally:
        await app.stop()
        await client.stop()
