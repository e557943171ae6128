"""Command round-trip latency over the real broker with TLS, and outbox throughput.

Prints one JSON object as its last line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.app import AgentApp  # noqa: E402
from tests.fixtures.agent import AgentProcess, agent_config, settings_from, start_center  # noqa: E402
from tools.local_broker import Broker  # noqa: E402

PINGS = 1000
EVENTS = 5000


class Ev(BaseModel):
    n: int
    camera: str = "gate"
    label: str = "motorcycle"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def rpc_latency(tmp: Path, broker: Broker) -> dict[str, float]:
    proc = AgentProcess(agent_config(tmp, broker, "bench-rpc"))
    proc.start()
    client, rec = await start_center(broker, "center-bench", watch="+/state")
    try:
        await rec.wait_for("/state", lambda d: d.get("status") == "online", timeout=30)
        for _ in range(20):  # warm-up
            await client.command("bench-rpc", "ping")
        lat = []
        for _ in range(PINGS):
            t0 = time.perf_counter()
            r = await client.command("bench-rpc", "ping")
            lat.append((time.perf_counter() - t0) * 1000)
            assert r["ok"], r
    finally:
        await client.stop()
        proc.stop()
    return {
        "rpc_pings": PINGS,
        "rpc_p50_ms": round(pct(lat, 0.50), 3),
        "rpc_p99_ms": round(pct(lat, 0.99), 3),
        "rpc_mean_ms": round(statistics.fmean(lat), 3),
    }


async def outbox_throughput(tmp: Path, broker: Broker) -> dict[str, float]:
    client, rec = await start_center(broker, "center-outbox", watch="+/events")
    app = AgentApp(settings_from(agent_config(tmp, broker, "bench-outbox")))
    await app.start()
    try:
        await asyncio.wait_for(app.services.session.connected.wait(), 30)  # type: ignore[union-attr]
        t0 = time.perf_counter()
        for i in range(EVENTS):
            await app.outbox.put("events", Ev(n=i))
        t_written = time.perf_counter() - t0
        await rec.wait_for("/events", lambda d: d["data"]["n"] == EVENTS - 1, timeout=300)
        t_delivered = time.perf_counter() - t0
        got = {d["msg_id"] for d in rec.on("/events")}
    finally:
        await app.stop()
        await client.stop()
    return {
        "outbox_events": EVENTS,
        "outbox_written_events_per_s": round(EVENTS / t_written, 1),
        "outbox_delivered_events_per_s": round(EVENTS / t_delivered, 1),
        "outbox_unique_delivered": len(got),
    }


async def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker.create(tmp / "broker")
        broker.start()
        try:
            out = await rpc_latency(tmp, broker)
            out |= await outbox_throughput(tmp, broker)
        finally:
            broker.stop()
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result))
