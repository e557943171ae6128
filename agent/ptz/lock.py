"""Per-camera PTZ lock: one owner with a lease; higher priority preempts, others get ``busy``.

Pure logic with an injectable clock so that arbitration rules are testable without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class LockHolder:
    requester: str
    role: str
    unit: str
    priority: int
    acquired_at: float
    until: float  # wall clock, seconds since epoch

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LockBusy(Exception):
    """The lock is held by someone of equal or higher priority."""

    def __init__(self, holder: LockHolder) -> None:
        super().__init__(f"held by {holder.requester} until {holder.until:.0f}")
        self.holder = holder


class PtzLock:
    def __init__(self, lease_s: float, clock: Callable[[], float] = time.time) -> None:
        self.lease_s = lease_s
        self._clock = clock
        self._holder: LockHolder | None = None

    def holder(self) -> LockHolder | None:
        h = self._holder
        if h is not None and h.until <= self._clock():
            self._holder = None
            return None
        return h

    def acquire(
        self, requester: str, role: str, unit: str, priority: int
    ) -> tuple[LockHolder, LockHolder | None]:
        """Take or renew the lock. Returns (new holder, preempted holder or None); raises LockBusy."""
        now = self._clock()
        current = self.holder()
        if current is not None and current.requester == requester:
            self._holder = replace(current, until=now + self.lease_s, role=role, unit=unit, priority=priority)
            return self._holder, None
        if current is not None and priority <= current.priority:
            raise LockBusy(current)
        self._holder = LockHolder(requester, role, unit, priority, now, now + self.lease_s)
        return self._holder, current

    def release(self, requester: str) -> bool:
        if self.holder() is not None and self._holder is not None and self._holder.requester == requester:
            self._holder = None
            return True
        return False

    def clear(self) -> None:
        self._holder = None
