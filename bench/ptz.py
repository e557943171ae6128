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
    """Full path; needs tests/fixtures/broker.py and tests/fixtures/grants.py."""
    try:
        from tests.fixtures.ptz_e2e import run_mqtt_ptz_bench  # type: ignore[import-not-found]
    except ImportError as exc:
        return {"mqtt_skipped": f"full-path bench not available: {exc}"}
    return await run_mqtt_ptz_bench(sim, tmp, N, WARMUP)


async def main() -> None:
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
