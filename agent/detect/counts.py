"""Count aggregation per time bucket and the local SQLite store behind ``get_counts``.

The aggregator is fed by the pipeline (on the event loop, cheap dict updates) and closes a bucket
when a frame of the next bucket arrives or when :meth:`CountAggregator.roll` is called by the
pipeline's timer, so a quiet or dead stream still closes its last bucket on time. Buckets are
aligned to the wall clock (``start`` is a multiple of ``bucket_s``) so records from many devices
line up. The store is synchronous; callers run it in a worker thread.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.detect.messages import (
    CountRecord,
    CountRow,
    GetCountsParams,
    GetCountsResult,
    LineCount,
    ZoneRow,
    ZoneStat,
)
from agent.detect.rules import RulesOutput
from agent.detect.rules_settings import Direction


@dataclass
class _ZoneAcc:
    entries: int = 0
    exits: int = 0
    max_occupancy: int = 0
    dwell_max: float = 0.0
    dwell_sum: float = 0.0


@dataclass
class _Bucket:
    start: float
    frames: int = 0
    frames_paused: int = 0
    lines: dict[tuple[str, str, Direction], int] = field(default_factory=dict)
    zones: dict[tuple[str, str], _ZoneAcc] = field(default_factory=dict)


class CountAggregator:
    """Accumulates one camera's crossings and zone statistics into wall-clock-aligned buckets."""

    def __init__(self, camera: str, bucket_s: int = 60) -> None:
        if bucket_s < 1:
            raise ValueError("bucket_s must be >= 1")
        self.camera = camera
        self.bucket_s = bucket_s
        self._cur: _Bucket | None = None
        self._rules: list[str] = []
        self._closed_until: float | None = None  # end of the last closed bucket

    def set_rule_names(self, names: Iterable[str]) -> None:
        self._rules = sorted(names)

    def _bucket_for(self, ts: float) -> tuple[_Bucket, list[CountRecord]]:
        start: float = math.floor(ts / self.bucket_s) * self.bucket_s
        closed: list[CountRecord] = []
        if self._closed_until is not None and start < self._closed_until:
            # A late frame of a bucket already closed by the timer goes to the next one, so a
            # bucket is never emitted twice (the store would replace the first with the second).
            # A large clock step back (NTP) starts afresh instead.
            if start >= self._closed_until - 2 * self.bucket_s:
                start = self._closed_until
            else:
                self._closed_until = None
        if self._cur is not None and self._cur.start != start:
            # Next bucket (or the clock stepped back): close what we have rather than mix buckets.
            closed.append(self._close(self._cur))
            self._cur = None
        if self._cur is None:
            self._cur = _Bucket(start=start)
        return self._cur, closed

    def add_frame(self, ts: float, result: RulesOutput | None, paused: bool = False) -> list[CountRecord]:
        """Account one processed frame (``result`` None when counting is paused); returns closed buckets."""
        b, closed = self._bucket_for(ts)
        b.frames += 1
        if paused or result is None:
            b.frames_paused += 1
            return closed
        for c in result.crossings:
            if c.counted:
                key = (c.line, c.track.label, c.direction)
                b.lines[key] = b.lines.get(key, 0) + 1
        for zone, label in result.entries:
            b.zones.setdefault((zone, label), _ZoneAcc()).entries += 1
        for ex in result.exits:
            acc = b.zones.setdefault((ex.zone, ex.label), _ZoneAcc())
            acc.exits += 1
            acc.dwell_sum += ex.dwell_s
            acc.dwell_max = max(acc.dwell_max, ex.dwell_s)
        for zone, per_label in result.occupancy.items():
            for label, n in per_label.items():
                acc = b.zones.setdefault((zone, label), _ZoneAcc())
                acc.max_occupancy = max(acc.max_occupancy, n)
        return closed

    def roll(self, now: float) -> list[CountRecord]:
        """Close the current bucket if its end has passed (called by a timer)."""
        if self._cur is not None and now >= self._cur.start + self.bucket_s:
            rec = self._close(self._cur)
            self._cur = None
            return [rec]
        return []

    def flush(self) -> list[CountRecord]:
        """Close the current bucket now, even if incomplete (shutdown)."""
        if self._cur is None:
            return []
        rec = self._close(self._cur)
        self._cur = None
        return [rec]

    def _close(self, b: _Bucket) -> CountRecord:
        self._closed_until = b.start + self.bucket_s
        return CountRecord(
            camera=self.camera,
            start=b.start,
            end=b.start + self.bucket_s,
            bucket_s=self.bucket_s,
            frames=b.frames,
            frames_paused=b.frames_paused,
            rules=list(self._rules),
            lines=[
                LineCount(line=line, label=label, direction=d, count=n)
                for (line, label, d), n in sorted(b.lines.items())
            ],
            zones=[
                _zone_stat(zone, label, acc)
                for (zone, label), acc in sorted(b.zones.items())
                if acc.entries or acc.exits or acc.max_occupancy
            ],
        )


def _zone_stat(zone: str, label: str, acc: _ZoneAcc) -> ZoneStat:
    return ZoneStat(
        zone=zone,
        label=label,
        entries=acc.entries,
        exits=acc.exits,
        max_occupancy=acc.max_occupancy,
        dwell_max_s=round(acc.dwell_max, 3),
        dwell_mean_s=round(acc.dwell_sum / acc.exits, 3) if acc.exits else 0.0,
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
  camera TEXT NOT NULL, start REAL NOT NULL, bucket_s INTEGER NOT NULL,
  frames INTEGER NOT NULL, frames_paused INTEGER NOT NULL, rules TEXT NOT NULL,
  PRIMARY KEY (camera, start));
CREATE TABLE IF NOT EXISTS line_counts (
  camera TEXT NOT NULL, start REAL NOT NULL, bucket_s INTEGER NOT NULL, line TEXT NOT NULL,
  label TEXT NOT NULL, direction TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (camera, start, line, label, direction));
CREATE INDEX IF NOT EXISTS line_counts_start ON line_counts (start);
CREATE TABLE IF NOT EXISTS zone_stats (
  camera TEXT NOT NULL, start REAL NOT NULL, bucket_s INTEGER NOT NULL, zone TEXT NOT NULL,
  label TEXT NOT NULL, entries INTEGER NOT NULL, exits INTEGER NOT NULL,
  max_occupancy INTEGER NOT NULL, dwell_max_s REAL NOT NULL, dwell_mean_s REAL NOT NULL,
  PRIMARY KEY (camera, start, zone, label));
CREATE INDEX IF NOT EXISTS zone_stats_start ON zone_stats (start);
"""


class CountStore:
    """SQLite store of count records. Thread-safe (one connection, one lock); call off the loop."""

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

    def add(self, rec: CountRecord) -> None:
        """Insert or replace one record (idempotent: a re-sent bucket overwrites itself)."""

        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.execute(
                    "INSERT OR REPLACE INTO buckets VALUES (?,?,?,?,?,?)",
                    (
                        rec.camera,
                        rec.start,
                        rec.bucket_s,
                        rec.frames,
                        rec.frames_paused,
                        json.dumps(rec.rules),
                    ),
                )
                db.execute("DELETE FROM line_counts WHERE camera=? AND start=?", (rec.camera, rec.start))
                db.execute("DELETE FROM zone_stats WHERE camera=? AND start=?", (rec.camera, rec.start))
                db.executemany(
                    "INSERT INTO line_counts VALUES (?,?,?,?,?,?,?)",
                    [
                        (rec.camera, rec.start, rec.bucket_s, c.line, c.label, c.direction, c.count)
                        for c in rec.lines
                    ],
                )
                db.executemany(
                    "INSERT INTO zone_stats VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            rec.camera,
                            rec.start,
                            rec.bucket_s,
                            z.zone,
                            z.label,
                            z.entries,
                            z.exits,
                            z.max_occupancy,
                            z.dwell_max_s,
                            z.dwell_mean_s,
                        )
                        for z in rec.zones
                    ],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def prune(self, before: float) -> int:
        """Delete buckets that started before ``before`` (retention). Returns rows removed."""
        with self._lock:
            n = 0
            for table in ("buckets", "line_counts", "zone_stats"):
                n += self._db.execute(f"DELETE FROM {table} WHERE start < ?", (before,)).rowcount  # noqa: S608
            return n

    def query(self, p: GetCountsParams, cameras: list[str] | None = None) -> GetCountsResult:
        """Rows of the range, re-bucketed to ``resolution_s`` when given.

        ``cameras`` narrows the query to the cameras the requester may see (None: no narrowing).
        """
        where = ["start >= ?", "start < ?"]
        args: list[object] = [p.since, p.until]
        if p.camera is not None:
            where.append("camera = ?")
            args.append(p.camera)
        if cameras is not None:
            where.append(f"camera IN ({','.join('?' * len(cameras))})" if cameras else "0")
            args.extend(cameras)
        if p.label is not None:
            where.append("label = ?")
            args.append(p.label)
        bucket = "bucket_s" if p.resolution_s is None else str(int(p.resolution_s))
        start = "start" if p.resolution_s is None else f"(CAST(start / {bucket} AS INTEGER) * {bucket})"
        lines_rows: list[CountRow] = []
        zone_rows: list[ZoneRow] = []
        truncated = False
        with self._lock:
            if p.zone is None:
                lw, la = list(where), list(args)
                if p.line is not None:
                    lw.append("line = ?")
                    la.append(p.line)
                sql = (
                    f"SELECT camera, line, label, direction, {start} AS s, {bucket}, SUM(count) "  # noqa: S608
                    f"FROM line_counts WHERE {' AND '.join(lw)} "
                    "GROUP BY camera, line, label, direction, s ORDER BY s, camera, line, label, direction "
                    "LIMIT ?"
                )
                rows = self._db.execute(sql, [*la, p.limit + 1]).fetchall()
                truncated |= len(rows) > p.limit
                lines_rows = [
                    CountRow(
                        camera=r[0],
                        line=r[1],
                        label=r[2],
                        direction=r[3],
                        start=r[4],
                        bucket_s=r[5],
                        count=r[6],
                    )
                    for r in rows[: p.limit]
                ]
                tot = self._db.execute(
                    f"SELECT line, label, direction, SUM(count) FROM line_counts "  # noqa: S608
                    f"WHERE {' AND '.join(lw)} GROUP BY line, label, direction ORDER BY line, label, direction",
                    la,
                ).fetchall()
            else:
                tot = []
            if p.line is None:
                zw, za = list(where), list(args)
                if p.zone is not None:
                    zw.append("zone = ?")
                    za.append(p.zone)
                sql = (
                    f"SELECT camera, zone, label, {start} AS s, {bucket}, SUM(entries), "  # noqa: S608
                    f"MAX(max_occupancy), MAX(dwell_max_s) FROM zone_stats WHERE {' AND '.join(zw)} "
                    "GROUP BY camera, zone, label, s ORDER BY s, camera, zone, label LIMIT ?"
                )
                rows = self._db.execute(sql, [*za, p.limit + 1]).fetchall()
                truncated |= len(rows) > p.limit
                zone_rows = [
                    ZoneRow(
                        camera=r[0],
                        zone=r[1],
                        label=r[2],
                        start=r[3],
                        bucket_s=r[4],
                        entries=r[5],
                        max_occupancy=r[6],
                        dwell_max_s=r[7],
                    )
                    for r in rows[: p.limit]
                ]
        totals = [LineCount(line=r[0], label=r[1], direction=r[2], count=r[3]) for r in tot]
        return GetCountsResult(lines=lines_rows, zones=zone_rows, totals=totals, truncated=truncated)
