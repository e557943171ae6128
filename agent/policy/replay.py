"""Grant ids seen, persisted so that a reboot does not reopen a replay window."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class ReplayCache:
    """SQLite (WAL, synchronous=FULL): a used one-shot grant stays used across a power cut."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (jti TEXT PRIMARY KEY, exp REAL, binding TEXT)")
        path.chmod(0o600)
        self._lock = threading.Lock()
        self._inserts = 0

    def check_and_record(self, jti: str, exp: float, use: str, binding: str) -> str | None:
        """Returns a refusal reason, or None when this use is allowed (and is now recorded).

        once: the grant id may act one time. session: it may act again only for the same binding
        (the camera of the session it opened). reusable: any number of times until it expires.
        """
        if use == "reusable":
            return None
        with self._lock:
            row = self._db.execute("SELECT binding FROM seen WHERE jti=?", (jti,)).fetchone()
            if row is None:
                self._db.execute("INSERT INTO seen VALUES (?,?,?)", (jti, exp, f"{use}:{binding}"))
                self._inserts += 1
                if self._inserts % 256 == 0:  # expired ids can never be replayed: forget them
                    self._db.execute("DELETE FROM seen WHERE exp < ?", (time.time() - 3600,))
                return None
        if use == "session" and row[0] == f"session:{binding}":
            return None
        return "grant already used" if use == "once" else "grant bound to another session"

    def close(self) -> None:
        self._db.close()
