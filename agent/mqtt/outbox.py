"""Durable outbox: everything that must reach the center (events, counts, alarms, audit) is written
here first, in SQLite with WAL, and deleted only after the broker's PUBACK.

At-least-once: a message may be sent twice (a crash between PUBACK and delete, a reconnect with
messages in flight); each carries a ``msg_id`` so the center de-duplicates. The outbox is bounded
by a disk quota; over quota the oldest messages of the lowest-priority channel go first (events,
then counts and alarms, then audit, whose full copy stays in the audit log on disk and can be
re-exported), and every drop is counted per channel, persistently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from agent.mqtt.messages import DurableMessage

CHANNEL_PRIORITY: dict[str, int] = {"events": 1, "counts": 2, "alarms": 2, "audit": 3}
"""Lower priority is dropped first when the quota is exceeded."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_drop ON outbox(priority, seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    msg_id TEXT PRIMARY KEY, channel TEXT, payload BLOB, reason TEXT, at REAL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class OutboxFull(Exception):
    """The disk is full: this message was not queued; everything queued before is intact."""


@dataclass(frozen=True)
class PendingMessage:
    seq: int
    msg_id: str
    channel: str
    payload: bytes
    attempts: int


class Outbox:
    """SQLite-backed queue. All SQLite work runs in a worker thread, never on the event loop."""

    def __init__(self, path: Path, device_id: str, max_bytes: int, reserve_bytes: int = 1 << 20) -> None:
        self.path = path
        self.device_id = device_id
        self.max_bytes = max_bytes
        # On a full disk even deleting a delivered message needs room (WAL). A reserve file is given
        # up at that moment so delivery can go on, and re-created once there is space again.
        self.reserve = path.with_name(path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL+NORMAL: durable across app crash; power cut may lose the last txn
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)
        self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        self.wakeup = asyncio.Event()
        self.rejected = 0  # in memory: with a full disk there is nowhere to persist it
        self._ensure_reserve()

    # ----- producer side
    async def put(self, channel: str, message: BaseModel) -> str:
        """Persist a message for delivery; returns its msg_id once it is on disk."""
        if channel not in CHANNEL_PRIORITY:
            raise ValueError(f"unknown outbox channel {channel!r}")
        msg_id = uuid.uuid4().hex
        envelope = DurableMessage(
            msg_id=msg_id,
            device_id=self.device_id,
            channel=channel,
            ts=time.time(),
            data=message.model_dump(mode="json"),
        )
        payload = envelope.model_dump_json().encode()
        await asyncio.to_thread(self._insert, msg_id, channel, payload)
        self.wakeup.set()
        return msg_id

    def _ensure_reserve(self) -> None:
        if self.reserve_bytes <= 0 or self.reserve.exists():
            return
        try:
            with self.reserve.open("wb") as f:
                f.write(b"\0" * self.reserve_bytes)
                f.flush()
                os.fsync(f.fileno())
        except OSError:  # no room yet: try again later
            self.reserve.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        if self.reserve.exists():
            self.reserve.unlink()
            return True
        return False

    def _insert(self, msg_id: str, channel: str, payload: bytes) -> None:
        self._ensure_reserve()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO outbox(msg_id, channel, priority, payload, created) VALUES (?,?,?,?,?)",
                    (msg_id, channel, CHANNEL_PRIORITY[channel], payload, time.time()),
                )
                self._bytes += len(payload)
                self._enforce_quota()
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                if "full" in str(exc).lower():
                    self.rejected += 1
                    raise OutboxFull(
                        f"disk full under {self.path.parent}: {channel} message not queued "
                        f"({self.rejected} rejected so far); queued messages are intact"
                    ) from None
                raise
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._bytes = self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]

    def _enforce_quota(self) -> None:
        while self._bytes > self.max_bytes:
            row = self._db.execute(
                "SELECT seq, channel, LENGTH(payload) FROM outbox ORDER BY priority, seq LIMIT 1"
            ).fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM outbox WHERE seq=?", (row[0],))
            self._bytes -= row[2]
            self._bump(f"dropped.{row[1]}", 1)

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    # ----- delivery side
    async def next_batch(self, limit: int, exclude: set[int]) -> list[PendingMessage]:
        return await asyncio.to_thread(self._next_batch, limit, exclude)

    def _next_batch(self, limit: int, exclude: set[int]) -> list[PendingMessage]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, msg_id, channel, payload, attempts FROM outbox ORDER BY seq LIMIT ?",
                (limit + len(exclude),),
            ).fetchall()
        return [PendingMessage(*r) for r in rows if r[0] not in exclude][:limit]

    async def ack(self, seq: int) -> None:
        await asyncio.to_thread(self._delete, seq, None)

    async def dead_letter(self, msg: PendingMessage, reason: str) -> None:
        """The broker refused this message for good (e.g. not authorized): keep it aside, count it."""
        await asyncio.to_thread(self._delete, msg.seq, (msg, reason))

    def _delete(self, seq: int, dead: tuple[PendingMessage, str] | None) -> None:
        try:
            self._delete_once(seq, dead)
        except sqlite3.OperationalError as exc:
            if "full" not in str(exc).lower() or not self._release_reserve():
                raise
            with self._lock, contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fold the WAL back to free its pages
            self._delete_once(seq, dead)

    def _delete_once(self, seq: int, dead: tuple[PendingMessage, str] | None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._delete_rows(seq, dead)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _delete_rows(self, seq: int, dead: tuple[PendingMessage, str] | None) -> None:
        row = self._db.execute("SELECT LENGTH(payload) FROM outbox WHERE seq=?", (seq,)).fetchone()
        self._db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
        if row is not None:
            self._bytes -= row[0]
            self._bump("delivered" if dead is None else "refused", 1)
        if dead is not None:
            msg, reason = dead
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter VALUES (?,?,?,?,?)",
                (msg.msg_id, msg.channel, msg.payload, reason, time.time()),
            )

    async def mark_attempt(self, seqs: list[int]) -> None:
        def run() -> None:
            with self._lock:
                self._db.executemany(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE seq=?", [(s,) for s in seqs]
                )

        await asyncio.to_thread(run)

    # ----- observation
    def stats(self) -> dict[str, int]:
        """Cheap enough for telemetry: one indexed count and the counters table."""
        with self._lock:
            pending = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
        return {
            "pending": pending,
            "bytes": self._bytes,
            "delivered": counters.get("delivered", 0),
            "refused": counters.get("refused", 0),
            "dropped": dropped,
            "rejected": self.rejected,
            **{k.replace(".", "_"): v for k, v in counters.items() if k.startswith("dropped.")},
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
