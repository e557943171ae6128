"""Local SQLite index of detection events and the keyset-paged search behind ``search_events``.

Newest first; the cursor is the (ts, id) of the last event of a page, so pages stay stable while
new events arrive. Synchronous and thread-safe; the pipeline and handlers call it off the loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import threading
import uuid
from pathlib import Path

from agent.detect.messages import DetectionEvent, SearchEventsParams, SearchEventsResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
  id TEXT PRIMARY KEY, camera TEXT NOT NULL, ts REAL NOT NULL, rule TEXT NOT NULL,
  rule_name TEXT NOT NULL, zone TEXT, line TEXT, direction TEXT, label TEXT NOT NULL,
  track_id INTEGER NOT NULL, score REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts, id);
CREATE INDEX IF NOT EXISTS events_camera_ts ON events (camera, ts);
"""


class InvalidCursor(ValueError):
    """The cursor was not produced by this store."""


def new_event_id() -> str:
    return uuid.uuid4().hex


def _encode_cursor(ts: float, eid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts, eid]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        ts, eid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(eid, str) or not isinstance(ts, (int, float)):
            raise ValueError
        return float(ts), eid
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not valid; use next_cursor from a previous page") from exc


class EventStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, ev: DetectionEvent) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    ev.id,
                    ev.camera,
                    ev.ts,
                    ev.rule,
                    ev.rule_name,
                    ev.zone,
                    ev.line,
                    ev.direction,
                    ev.label,
                    ev.track_id,
                    ev.score,
                    ev.model_dump_json(),
                ),
            )

    def get(self, eid: str) -> DetectionEvent | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM events WHERE id = ?", (eid,)).fetchone()
        return DetectionEvent.model_validate_json(row[0]) if row else None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def prune(self, before: float) -> list[tuple[str, str]]:
        """Delete events older than ``before``; returns their (camera, id) so snapshots can go too."""
        with self._lock:
            rows = self._db.execute("SELECT camera, id FROM events WHERE ts < ?", (before,)).fetchall()
            self._db.execute("DELETE FROM events WHERE ts < ?", (before,))
        return [(r[0], r[1]) for r in rows]

    def search(self, p: SearchEventsParams, cameras: list[str] | None = None) -> SearchEventsResult:
        """Newest-first page of events matching every given filter.

        ``cameras`` narrows to the cameras the requester may see (None: no narrowing).
        Raises :class:`InvalidCursor` for a cursor this store did not produce.
        """
        where = ["ts >= ?", "ts < ?"]
        args: list[object] = [p.since, p.until]
        for col, val in (
            ("camera", p.camera),
            ("label", p.label),
            ("rule", p.rule),
            ("zone", p.zone),
            ("line", p.line),
            ("direction", p.direction),
        ):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if cameras is not None:
            where.append(f"camera IN ({','.join('?' * len(cameras))})" if cameras else "0")
            args.extend(cameras)
        if p.min_score is not None:
            where.append("score >= ?")
            args.append(p.min_score)
        if p.cursor is not None:
            cts, cid = _decode_cursor(p.cursor)
            where.append("(ts < ? OR (ts = ? AND id < ?))")
            args.extend([cts, cts, cid])
        sql = (
            f"SELECT body FROM events WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY ts DESC, id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*args, p.limit + 1]).fetchall()
        events = [DetectionEvent.model_validate_json(r[0]) for r in rows[: p.limit]]
        nxt = _encode_cursor(events[-1].ts, events[-1].id) if len(rows) > p.limit and events else None
        return SearchEventsResult(events=events, next_cursor=nxt)
