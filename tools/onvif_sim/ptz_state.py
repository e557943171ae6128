"""PTZ mechanics of the simulated camera: position moves with speed x time, clamped to the limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PAN_RANGE = (-1.0, 1.0)
TILT_RANGE = (-1.0, 1.0)
ZOOM_RANGE = (0.0, 1.0)
RATE_PER_S = 0.5
"""Generic-space units per second at speed 1.0 (a full pan sweep takes 4 s)."""
MAX_PRESETS = 32


def _clamp(v: float, lo_hi: tuple[float, float]) -> float:
    return max(lo_hi[0], min(lo_hi[1], v))


@dataclass
class Position:
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0

    def clamped(self) -> Position:
        return Position(
            _clamp(self.pan, PAN_RANGE), _clamp(self.tilt, TILT_RANGE), _clamp(self.zoom, ZOOM_RANGE)
        )

    def as_dict(self) -> dict[str, float]:
        return {"pan": round(self.pan, 4), "tilt": round(self.tilt, 4), "zoom": round(self.zoom, 4)}


@dataclass
class Preset:
    token: str
    name: str
    position: Position


@dataclass
class PtzState:
    """Continuous motion is integrated lazily: the position is a function of (start, velocity, deadline)."""

    clock: Callable[[], float] = time.monotonic
    honour_timeout: bool = True
    _origin: Position = field(default_factory=Position)
    _t0: float = 0.0
    _velocity: Position = field(default_factory=lambda: Position(0.0, 0.0, 0.0))
    _until: float | None = None  # None while moving = no timeout (moves until Stop)
    _moving: bool = False
    home: Position = field(default_factory=Position)
    presets: dict[str, Preset] = field(default_factory=dict)
    _next_token: int = 1

    def position(self) -> Position:
        if not self._moving:
            return self._origin
        now = self.clock()
        end = now if self._until is None else min(now, self._until)
        dt = max(0.0, end - self._t0) * RATE_PER_S
        pos = Position(
            self._origin.pan + self._velocity.pan * dt,
            self._origin.tilt + self._velocity.tilt * dt,
            self._origin.zoom + self._velocity.zoom * dt,
        ).clamped()
        if self._until is not None and now >= self._until:
            self._origin, self._moving = pos, False
        return pos

    def moving(self) -> bool:
        self.position()
        return self._moving

    def _settle(self, pos: Position) -> None:
        self._origin = pos.clamped()
        self._moving = False
        self._until = None

    def continuous_move(self, velocity: Position, timeout_s: float | None) -> None:
        start = self.position()
        self._origin = start
        self._t0 = self.clock()
        self._velocity = Position(
            _clamp(velocity.pan, (-1, 1)), _clamp(velocity.tilt, (-1, 1)), _clamp(velocity.zoom, (-1, 1))
        )
        self._until = self._t0 + timeout_s if (timeout_s is not None and self.honour_timeout) else None
        self._moving = True

    def stop(self) -> None:
        self._settle(self.position())

    def relative_move(self, delta: Position) -> None:
        cur = self.position()
        self._settle(Position(cur.pan + delta.pan, cur.tilt + delta.tilt, cur.zoom + delta.zoom))

    def absolute_move(self, target: Position) -> None:
        self._settle(target)

    def set_preset(self, name: str | None, token: str | None) -> str:
        if token is not None and token not in self.presets:
            raise KeyError(token)
        if token is None:
            if len(self.presets) >= MAX_PRESETS:
                raise OverflowError("too many presets")
            token = f"preset_{self._next_token}"
            self._next_token += 1
        self.presets[token] = Preset(token, name or token, self.position())
        return token

    def remove_preset(self, token: str) -> None:
        del self.presets[token]

    def goto_preset(self, token: str) -> None:
        self._settle(self.presets[token].position)

    def goto_home(self) -> None:
        self._settle(self.home)

    def set_home(self) -> None:
        self.home = self.position()
