"""The agent against a real Mosquitto with TLS, client certificates and per-device ACLs."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import BaseModel

from agent.app import AgentApp, StartupError, preflight
from agent.mqtt.session import PublishRefused
from tests.fixtures.agent import AgentProcess, agent_config, settings_from, start_center


class Ev(BaseModel):
    n: int


def is_online(d: dict[str, Any]) -> bool:
    return d.get("status") == "online"


async def test_birth_is_retained_and_telemetry_flows(
    tmp_path: Path, broker: Any, agent_process: AgentProcess
) -> None:
    agent_process.start()
    first, rec = await start_center(broker, "center-a", watch="box-01/telemetry")
    await rec.wait_for("/telemetry", timeout=20)
    await first.stop()
    # A center that connects later still learns the state at once: the birth is retained.
    late, rec2 = await start_center(broker, "center-b", watch="+/state")
    birth = await rec2.wait_for("/state", is_online)
    assert next(r for t, d, r in rec2.messages if t.endswith("/state")) is True
    assert birth["device_id"] == "box-01" and birth["owner_org"] == "Test Org"
    assert birth["location"] == {"province": "01", "district": "001", "commune": "00001"}
    assert "ping" in birth["actions"] and "get_status" in birth["actions"]
    # Orderly stop replaces it with a clean offline state.
    agent_process.signal(signal.SIGTERM)
    assert agent_process.wait() == 0
    off = await rec2.wait_for("/state", lambda d: d.get("status") == "offline")
    assert off["reason"] == "shutdown"
    await late.stop()


async def test_killed_agent_is_marked_offline_by_its_last_will(
    broker: Any, agent_process: AgentProcess
) -> None:
    agent_process.start()
    client, rec = await start_center(broker, watch="+/state")
    await rec.wait_for("/state", is_online, timeout=20)
    agent_process.signal(signal.SIGKILL)
    agent_process.wait()
    off = await rec.wait_for("/state", lambda d: d.get("status") == "offline", timeout=20)
    assert off["reason"] == "lost"
    await client.stop()


async def test_command_round_trip_and_bad_commands(
    broker: Any, agent_process: AgentProcess, authority: Any
) -> None:
    agent_process.start()
    client, rec = await start_center(broker, watch="+/state")
    await rec.wait_for("/state", is_online, timeout=20)
    r = await client.command("box-01", "ping", {"echo": "hi"})
    assert r["ok"] is True and r["result"]["echo"] == "hi" and r["action"] == "ping"
    r = await client.command("box-01", "get_status")
    assert r["ok"] is False and r["error"]["code"] == "unauthorized"  # no grant
    grant = authority.grant(
        role="operator_unit", actions=["get_status"], aud="box-01", area={"province": "01"}
    )
    r = await client.command("box-01", "get_status", grant=grant)
    assert r["ok"] is True, r
    assert r["result"]["device_id"] == "box-01" and r["result"]["outbox"]["pending"] >= 0
    other = authority.grant(
        role="operator_unit", actions=["get_status"], aud="box-01", area={"province": "79"}
    )
    r = await client.command("box-01", "get_status", grant=other)
    assert r["error"]["code"] == "forbidden" and "outside the grant's area" in r["error"]["message"]
    r = await client.command("box-01", "ping", raw=b"\xff not json")
    assert r["error"]["code"] == "malformed" and r["id"] is None
    r = await client.command("box-01", "ping", raw=json.dumps({"id": "x1", "action": 5}).encode())
    assert r["error"]["code"] == "malformed" and r["id"] == "x1"
    assert r["error"]["details"]["errors"][0]["field"] == "action"
    r = await client.command("box-01", "self_destruct")
    assert r["error"]["code"] == "unknown_action"
    r = await client.command("box-01", "ping", {"echo": "x", "extra": 1})
    assert r["error"]["code"] == "invalid_params"
    r = await client.command("box-01", "ping", raw=b"{" + b" " * 70000 + b"}")
    assert r["error"]["code"] == "too_large"
    # A response topic outside the device's subtree gets no answer, and the agent keeps working.
    client.client.publish(
        "cam/v1/box-01/cmd", json.dumps({"id": "q", "action": "ping"}).encode(), qos=1
    )  # no response topic at all
    r = await client.command("box-01", "ping", {"echo": "still alive"})
    assert r["ok"] and r["result"]["echo"] == "still alive"
    await client.stop()


async def test_events_survive_a_broker_outage_without_loss(tmp_path: Path, broker: Any, center: Any) -> None:
    _client, rec = center  # a persistent session: the broker queues for it across its own restart
    app = AgentApp(settings_from(agent_config(tmp_path, broker)))
    await app.start()
    try:
        await asyncio.wait_for(app.services.session.connected.wait(), 15)  # type: ignore[union-attr]
        for i in range(20):
            await app.outbox.put("events", Ev(n=i))
        broker.stop()
        for i in range(20, 60):
            await app.outbox.put("events", Ev(n=i))
        assert app.outbox.stats()["pending"] >= 40
        broker.start()
        await rec.wait_for("/events", lambda d: d["data"]["n"] == 59, timeout=30)
        deadline = time.monotonic() + 10
        while app.outbox.stats()["pending"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert app.outbox.stats()["pending"] == 0
    finally:
        await app.stop()
    events = rec.on("/events")
    assert {d["data"]["n"] for d in events} == set(range(60))
    assert len({d["msg_id"] for d in events}) == 60
    # at-least-once: duplicates are possible only for messages in flight at the outage
    assert len(events) - 60 <= 20


async def test_agent_restart_delivers_a_non_empty_outbox(tmp_path: Path, broker: Any) -> None:
    cfg = agent_config(tmp_path, broker)
    broker.stop()
    app = AgentApp(settings_from(cfg))
    await app.start()
    for i in range(25):
        await app.outbox.put("counts", Ev(n=i))
    await app.stop()  # never connected: everything still on disk
    broker.start()
    client, rec = await start_center(broker)
    app = AgentApp(settings_from(cfg))
    await app.start()
    try:
        await rec.wait_for("/counts", lambda d: d["data"]["n"] == 24, timeout=30)
        got = sorted(d["data"]["n"] for d in rec.on("/counts"))
        assert got == list(range(25))
    finally:
        await app.stop()
        await client.stop()


async def test_publishing_on_another_devices_topic_is_refused_and_noticed(
    tmp_path: Path, broker: Any
) -> None:
    # The configured device id (box-02) does not match the certificate (box-01): every durable
    # publish lands outside the device's ACL. The agent must see PUBACK 135, not assume success.
    cfg = agent_config(tmp_path, broker, "box-02", cert_for="box-01")
    app = AgentApp(settings_from(cfg))
    await app.start()
    try:
        session = app.services.session
        assert session is not None
        await asyncio.wait_for(session.connected.wait(), 15)
        with pytest.raises(PublishRefused) as refused:
            await session.publish("cam/v1/box-02/events", b"{}", qos=1)
        assert refused.value.reason_code == 0x87
        await app.outbox.put("alarms", Ev(n=1))
        deadline = time.monotonic() + 10
        while app.outbox.stats()["refused"] == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert app.outbox.stats()["refused"] == 1
        assert app.sender.refusals == 1
    finally:
        await app.stop()


async def test_another_devices_certificate_cannot_knock_a_device_offline(
    broker: Any, agent_process: AgentProcess
) -> None:
    agent_process.start()
    client, rec = await start_center(broker, watch="+/state")
    await rec.wait_for("/state", is_online, timeout=20)
    intruder_creds = broker.issue_device("box-99")
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="box-01", protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(intruder_creds.ca_file))
    ctx.load_cert_chain(str(intruder_creds.cert_file), str(intruder_creds.key_file))
    intruder.tls_set_context(ctx)
    intruder.connect("127.0.0.1", broker.port)
    intruder.loop_start()
    await asyncio.sleep(2.0)
    intruder.disconnect()
    intruder.loop_stop()
    assert not [d for d in rec.on("/state") if d.get("status") == "offline"]
    r = await client.command("box-01", "ping")
    assert r["ok"]
    await client.stop()


def test_preflight_explains_missing_identity_and_loose_key(tmp_path: Path, broker: Any) -> None:
    s = settings_from(agent_config(tmp_path, broker))
    s.center.cert_file = tmp_path / "nope.crt"
    with pytest.raises(StartupError, match="edge-agent provision"):
        preflight(s)
    s = settings_from(agent_config(tmp_path, broker))
    s.key_file.chmod(0o644)
    with pytest.raises(StartupError, match="chmod 600"):
        preflight(s)
