"""PTZ command latency: command in -> ONVIF request at the camera, p50/p99.

Two layers, all on one host (one wall clock):
* ``handler``: the registered ``ptz_move`` handler is called directly (no MQTT): handler entry ->
  the simulator's arrival time of the ContinuousMove request. This is the agent's own cost
  (arbitration, rate limit, zeep serialization, HTTP) without the broker.
* ``mqtt``: a signed command published by a center client over the real TLS broker to the agent
  process -> the simulator's arrival time (when the broker and grant fixtures are available).

Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.camera.onvif_client import OnvifClient  # noqa: E402
from agent.mqtt.envelope import CommandEnvelope  # noqa: E402
from agent.mqtt.registry import CommandContext, HandlerRegistry  # noqa: E402
from agent.policy.context import AuthContext  # noqa: E402
from agent.ptz.handlers import register_actions  # noqa: E402
from agent.ptz.manager import PtzManager  # noqa: E402
from agent.ptz.settings import PtzSettings  # noqa: E402
from tests.fixtures.onvif import OnvifSim, start_onvif_sim  # noqa: E402

N = 300
WARMUP = 20


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def summary(prefix: str, xs: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_n": len(xs),
        f"{prefix}_p50_ms": round(pct(xs, 0.50), 3),
        f"{prefix}_p99_ms": round(pct(xs, 0.99), 3),
        f"{prefix}_mean_ms": round(statistics.fmean(xs), 3),
    }


def sim_arrivals(sim: OnvifSim, op: str) -> list[float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{sim.port}/sim/state", timeout=5) as r:
        state = json.loads(r.read())
    return [q["wall"] for q in state["requests"] if q["op"] == op]


async def handler_latency(sim: OnvifSim) -> dict[str, float]:
    async def connect() -> OnvifClient:
        return await OnvifClient.from_files(sim.url, sim.credentials_file)

    settings = PtzSettings(rate_per_s=100, rate_burst=1000, idle_return_s=0)
    mgr = PtzManager({"cam1": connect}, settings)
    reg = HandlerRegistry()
    register_actions(reg, mgr)
    spec = reg.get("ptz_move")
    assert spec is not None
    auth = AuthContext(requester="bench", role="provincial_police", unit="PC", purpose="bench")
    before = len(sim_arrivals(sim, "ContinuousMove"))
    entries: list[float] = []
    totals: list[float] = []
    try:
        for i in range(WARMUP + N):
            params = {"camera": "cam1", "pan": 0.1 if i % 2 else -0.1, "timeout_s": 0.5}
            ctx = CommandContext(CommandEnvelope(id=f"b{i}", action="ptz_move", params=params), auth, "cam1")
            p = spec.params_model.model_validate(params)
            t0 = time.time()
            await spec.handler(ctx, p)
            totals.append((time.time() - t0) * 1000)
            entries.append(t0)
    finally:
        await mgr.close()
    arrivals = sim_arrivals(sim, "ContinuousMove")[before:]
    assert len(arrivals) == len(entries), (len(arrivals), len(entries))
    lat = [(a - e) * 1000 for a, e in zip(arrivals, entries, strict=True)][WARMUP:]
    return {**summary("handler_to_onvif", lat), **summary("handler_total", totals[WARMUP:])}


async def mqtt_latency(sim: OnvifSim, tmp: Path) -> dict[str, Any]:
    """Center publishes a signed ptz_move over the TLS broker; the agent runs in this process so the
    dispatcher's entry time ("MQTT command in") can be taken on the same clock as the simulator's."""
    from agent.app import AgentApp
    from agent.ptz import handlers as ptz_handlers
    from provisioning.grant_authority import GrantAuthority
    from tests.fixtures.agent import agent_config, settings_from, start_center
    from tests.fixtures.broker import Broker

    settings = PtzSettings(rate_per_s=100, rate_burst=1000, idle_return_s=0)

    class BenchApp(AgentApp):
        def register_handlers(self) -> None:
            super().register_handlers()
            if self.registry.get("ptz_move") is None:  # until the lead wires PTZ into the app
                ptz_handlers.register(self.registry, self.services, settings)

    authority = GrantAuthority.create()
    broker = Broker.create(tmp / "broker")
    broker.start()
    extra = (
        f'[[cameras]]\nname = "cam1"\nmain_url = "rtsp://127.0.0.1:9/main"\n'
        f'[cameras.onvif]\nurl = "{sim.url}"\ncredentials_file = "{sim.credentials_file}"\n'
    )
    app = BenchApp(settings_from(agent_config(tmp, broker, "bench-ptz", extra=extra, authority=authority)))
    await app.start()
    mgr = app.services.extras[ptz_handlers.EXTRA_KEY]
    entries: dict[str, float] = {}
    assert app.dispatcher is not None
    orig = app.dispatcher.handle

    async def timed(payload: bytes) -> Any:
        try:
            entries[json.loads(payload)["id"]] = time.time()
        except (ValueError, KeyError, TypeError):
            pass
        return await orig(payload)

    app.dispatcher.handle = timed  # type: ignore[method-assign]
    client, rec = await start_center(broker, "center-bench-ptz", watch="bench-ptz/state")
    grant = authority.grant(
        role="provincial_police", actions=["ptz_move"], aud="bench-ptz", area={"province": "01"},
        cameras=["cam1"], ttl=600,
    )  # fmt: skip
    sent: list[float] = []
    rtt: list[float] = []
    ids: list[str] = []
    try:
        await rec.wait_for("/state", lambda d: d.get("status") == "online", timeout=30)
        before = len(sim_arrivals(sim, "ContinuousMove"))
        for i in range(WARMUP + N):
            params = {"camera": "cam1", "pan": 0.1 if i % 2 else -0.1, "timeout_s": 0.5}
            t0 = time.time()
            r = await client.command("bench-ptz", "ptz_move", params, grant=grant)
            rtt.append((time.time() - t0) * 1000)
            assert r["ok"], r
            sent.append(t0)
            ids.append(r["id"])
        arrivals = sim_arrivals(sim, "ContinuousMove")[before:]
    finally:
        await client.stop()
        await mgr.close()
        await app.stop()
        broker.stop()
    assert len(arrivals) == len(sent), (len(arrivals), len(sent))
    pub_to_onvif = [(a - t) * 1000 for a, t in zip(arrivals, sent, strict=True)][WARMUP:]
    in_to_onvif = [(a - entries[i]) * 1000 for a, i in zip(arrivals, ids, strict=True)][WARMUP:]
    return {
        **summary("mqtt_in_to_onvif", in_to_onvif),
        **summary("center_publish_to_onvif", pub_to_onvif),
        **summary("center_round_trip", rtt[WARMUP:]),
    }


async def main() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("agent.camera").setLevel(logging.ERROR)  # its RTSP URL is a dummy here
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sim = start_onvif_sim(tmp / "sim")
        try:
            out: dict[str, Any] = {"bench": "ptz", "commands": N}
            out.update(await handler_latency(sim))
            out.update(await mqtt_latency(sim, tmp))
        finally:
            sim.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
