"""Outbox: persistence across restarts, quota with a documented drop order, counters."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from agent.mqtt.outbox import Outbox, OutboxFull


class Ev(BaseModel):
    n: int
    pad: str = ""


async def test_messages_survive_a_restart_in_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 10**6)
    ids = [await ob.put("events", Ev(n=i)) for i in range(5)]
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 10**6)
    batch = await ob.next_batch(10, set())
    assert [m.msg_id for m in batch] == ids
    first = json.loads(batch[0].payload)
    assert first["msg_id"] == ids[0] and first["data"] == {"n": 0, "pad": ""} and first["channel"] == "events"
    await ob.ack(batch[0].seq)
    assert ob.stats()["pending"] == 4 and ob.stats()["delivered"] == 1
    assert (tmp_path / "o.sqlite").stat().st_mode & 0o777 == 0o600


async def test_quota_drops_lowest_priority_oldest_first_and_counts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 4000)
    await ob.put("audit", Ev(n=-1, pad="a" * 500))
    for i in range(20):
        await ob.put("events", Ev(n=i, pad="e" * 500))
    await ob.put("counts", Ev(n=100, pad="c" * 500))
    st = ob.stats()
    assert st["bytes"] <= 4000
    assert st["dropped"] > 0 and st["dropped"] == st["dropped_events"]
    batch = await ob.next_batch(100, set())
    channels = [m.channel for m in batch]
    assert "audit" in channels and "counts" in channels  # higher priority kept
    kept_events = [json.loads(m.payload)["data"]["n"] for m in batch if m.channel == "events"]
    assert kept_events == sorted(kept_events) and kept_events[-1] == 19  # newest events kept
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 4000)
    assert ob.stats()["dropped_events"] == st["dropped_events"]  # counters persist


async def test_dead_letter_keeps_refused_messages_aside(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 10**6)
    await ob.put("alarms", Ev(n=1))
    [m] = await ob.next_batch(10, set())
    await ob.dead_letter(m, "135 Not authorized")
    assert ob.stats()["pending"] == 0 and ob.stats()["refused"] == 1


async def test_unknown_channel_is_rejected(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", "box-01", 10**6)
    with pytest.raises(ValueError, match="unknown outbox channel"):
        await ob.put("telemetry", Ev(n=1))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem (tmpfs), so the disk really fills up."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_full_disk_gives_a_clear_error_and_loses_nothing_queued(tiny_disk: Path) -> None:
    ob = Outbox(tiny_disk / "o.sqlite", "box-01", 100 * 2**20, reserve_bytes=256 * 1024)  # quota > disk
    assert ob.reserve.stat().st_size == 256 * 1024
    accepted = 0
    with pytest.raises(OutboxFull, match="disk full"):
        for i in range(5000):
            await ob.put("events", Ev(n=i, pad="x" * 400))
            accepted += 1
    assert accepted > 20
    assert ob.stats()["rejected"] == 1
    with pytest.raises(OutboxFull):  # still full: still a clear error, no crash
        await ob.put("audit", Ev(n=-1))
    batch = await ob.next_batch(10, set())
    for m in batch:  # delivery still works on the full disk (the reserve is given up for it) ...
        await ob.ack(m.seq)
    assert not ob.reserve.exists() and ob.stats()["delivered"] == 10
    ob._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await ob.put("audit", Ev(n=-2))  # ... and once space is back, queueing works again
    ob.close()
    ob = Outbox(tiny_disk / "o.sqlite", "box-01", 100 * 2**20, reserve_bytes=0)
    rest = await ob.next_batch(10000, set())
    ns = [json.loads(m.payload)["data"]["n"] for m in rest]
    assert ns[:-1] == list(range(10, accepted)) and ns[-1] == -2
    ob.close()
