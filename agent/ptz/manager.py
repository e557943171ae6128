"""PTZ pass-through with arbitration and safety, one controller per ONVIF camera.

Order of checks for a command: rate limit (per requester) -> PTZ lock (priority, lease) -> ONVIF call
(serialized per camera, bounded by a timeout). Safety does not depend on the requester: every
continuous move is bounded by the camera's Timeout *and* our own stop timer, and a camera left away
from its home view returns home after ``idle_return_s``; while it is away, detection is told to pause
counting (``on_away_from_home``) because lines and zones were drawn for the home view.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agent.camera.onvif_client import OnvifClient, OnvifError, OnvifErrorKind, PtzCapabilities
from agent.mqtt.envelope import CommandError, ErrorCode
from agent.policy.context import AuthContext
from agent.ptz.lock import LockBusy, LockHolder, PtzLock
from agent.ptz.priority import fallback_ptz_priority
from agent.ptz.rate import RateLimiter
from agent.ptz.settings import PtzSettings

log = logging.getLogger(__name__)

Connector = Callable[[], Awaitable[OnvifClient]]
AwayHook = Callable[[str, bool], Any]  # (camera, away) -> None or awaitable
AuditHook = Callable[[str, dict[str, Any]], Awaitable[None]]  # (event name, fields)

_ONVIF_TO_CODE = {
    OnvifErrorKind.TIMEOUT: ErrorCode.TIMEOUT,
    OnvifErrorKind.NOT_FOUND: ErrorCode.NOT_FOUND,
}


def to_command_error(camera: str, exc: OnvifError) -> CommandError:
    code = _ONVIF_TO_CODE.get(exc.kind, ErrorCode.UNAVAILABLE)
    return CommandError(
        code, f"camera {camera!r}: {exc.message}", {"camera": camera, "onvif": exc.kind.value}
    )


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class Who:
    requester: str
    role: str
    unit: str
    purpose: str

    @classmethod
    def of(cls, auth: AuthContext) -> Who:
        return cls(auth.requester, auth.role, auth.unit, auth.purpose)

    def fields(self) -> dict[str, str]:
        return {"requester": self.requester, "role": self.role, "unit": self.unit, "purpose": self.purpose}


class CameraPtz:
    """PTZ state and safety timers of one camera."""

    def __init__(
        self,
        name: str,
        connect: Connector,
        settings: PtzSettings,
        *,
        priority: Callable[[str], int] = fallback_ptz_priority,
        on_away: AwayHook | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.name = name
        self._connect = connect
        self.settings = settings
        self._priority = priority
        self._on_away = on_away
        self._audit = audit
        self.lock = PtzLock(settings.lease_s)
        self.rate = RateLimiter(settings.rate_per_s, settings.rate_burst)
        self.home_preset = settings.home_presets.get(name)
        self._client: OnvifClient | None = None
        self._connect_lock = asyncio.Lock()
        self._op_lock = asyncio.Lock()
        self._stop_task: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self.away = False
        self.moving_until: float | None = None
        self.last_error: str | None = None
        self.last_command_at: float | None = None
        self.capabilities: PtzCapabilities | None = None
        self.clock_offset_s: float | None = None
        self.safety_stops = 0
        self.idle_returns = 0

    # ---- connection ---------------------------------------------------------------------------
    async def client(self) -> OnvifClient:
        if self._client is not None and self._client.connected:
            return self._client
        async with self._connect_lock:
            if self._client is None or not self._client.connected:
                try:
                    self._client = await self._connect()
                except OnvifError as exc:
                    self.last_error = exc.message
                    raise
                self.capabilities = self._client.ptz_capabilities
                self.clock_offset_s = self._client.clock_offset_s
                self.last_error = None
            return self._client

    async def _onvif(self, what: str, fn: Callable[[OnvifClient], Awaitable[Any]]) -> Any:
        """Run one ONVIF operation, serialized per camera; drop the connection when the camera is gone."""
        async with self._op_lock:
            try:
                client = await self.client()
                try:
                    result = await fn(client)
                except OnvifError as exc:
                    if exc.kind is not OnvifErrorKind.AUTH:
                        raise
                    # Credentials worked at connect time, so the likely cause is a camera clock jump
                    # (NTP sync after boot): reconnect (re-measures the offset) and retry once.
                    log.info("camera %s: %s refused as unauthorized; reconnecting once", self.name, what)
                    await self._drop_client()
                    result = await fn(await self.client())
            except OnvifError as exc:
                self.last_error = exc.message
                if exc.kind in (OnvifErrorKind.UNREACHABLE, OnvifErrorKind.TIMEOUT, OnvifErrorKind.AUTH):
                    await self._drop_client()
                raise
            self.last_error = None
            return result

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def probe(self) -> PtzCapabilities | None:
        """Connect once (startup) so capabilities are known for the birth message; failures are remembered."""
        try:
            await self.client()
        except OnvifError as exc:
            log.warning("camera %s: ONVIF not available: %s", self.name, exc.message)
            return None
        return self.capabilities

    async def health_check(self) -> None:
        """Periodic: reconnect a lost camera, and reconnect when its clock jumped (auth would fail)."""
        try:
            if self._client is None or not self._client.connected:
                await self.client()
                return
            offset = await self._client.camera_clock_offset()
        except OnvifError as exc:
            self.last_error = exc.message
            await self._drop_client()
            return
        self.last_error = None
        if self.clock_offset_s is not None and abs(offset - self.clock_offset_s) > 2.0:
            log.warning(
                "camera %s: clock jumped by %+.0f s; reconnecting", self.name, offset - self.clock_offset_s
            )
            async with self._op_lock:
                await self._drop_client()
            with contextlib.suppress(OnvifError):
                await self.client()

    # ---- arbitration ---------------------------------------------------------------------------
    def _admit(self, who: Who, *, needs_lock: bool = True) -> LockHolder | None:
        wait = self.rate.take(who.requester)
        if wait > 0:
            raise CommandError(
                ErrorCode.LIMIT,
                f"PTZ rate limit for {who.requester}: at most {self.settings.rate_per_s:g} commands/s, "
                f"retry in {wait:.2f} s",
                {"retry_after_s": round(wait, 3)},
            )
        if not needs_lock:
            return None
        try:
            holder, preempted = self.lock.acquire(who.requester, who.role, who.unit, self._priority(who.role))
        except LockBusy as busy:
            h = busy.holder
            raise CommandError(
                ErrorCode.BUSY,
                f"PTZ of camera {self.name!r} is controlled by {h.requester} ({h.role}, {h.unit or 'no unit'}) "
                f"until {_iso(h.until)}",
                {
                    "camera": self.name,
                    "holder": h.requester,
                    "role": h.role,
                    "unit": h.unit,
                    "until": h.until,
                },
            ) from None
        if preempted is not None:
            self._emit(
                "ptz_lock_preempted",
                {
                    **who.fields(),
                    "preempted_requester": preempted.requester,
                    "preempted_role": preempted.role,
                },
            )
        return holder

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        if self._audit is None:
            return
        task = asyncio.ensure_future(self._audit(event, {"camera": self.name, **fields}))
        task.add_done_callback(_log_task_error)

    # ---- away-from-home and idle return --------------------------------------------------------
    async def _set_away(self, away: bool) -> None:
        if away == self.away:
            return
        self.away = away
        if self._on_away is not None:
            try:
                res = self._on_away(self.name, away)
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("camera %s: away-from-home hook failed", self.name)

    def _touch(self) -> None:
        """A command arrived: restart the idle-return countdown."""
        self.last_command_at = time.monotonic()
        if self._idle_task is not None:
            self._idle_task.cancel()
            self._idle_task = None
        if self.settings.idle_return_s > 0 and self.away:
            self._idle_task = asyncio.ensure_future(self._idle_return(self.settings.idle_return_s))

    async def _idle_return(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._idle_task = None  # from here on a new command may schedule a new countdown
        try:
            await self._cancel_stop_timer()
            await self._onvif("idle return home", self._go_home)
        except OnvifError as exc:
            log.warning("camera %s: idle return to home failed: %s; retrying later", self.name, exc.message)
            self._idle_task = asyncio.ensure_future(self._idle_return(min(delay, 30.0)))
            return
        self.idle_returns += 1
        self.moving_until = None
        holder = self.lock.holder()
        self.lock.clear()
        await self._set_away(False)
        self._emit("ptz_idle_return_home", {"released_from": holder.requester if holder else None})

    async def _go_home(self, client: OnvifClient) -> None:
        if self.home_preset is not None:
            await client.goto_preset(self.home_preset)
        else:
            await client.goto_home()

    # ---- continuous-move safety ----------------------------------------------------------------
    async def _cancel_stop_timer(self) -> None:
        task, self._stop_task = self._stop_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _safety_stop(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._stop_task = None
        for attempt in range(3):
            try:
                await self._onvif("safety stop", lambda c: c.stop())
                break
            except OnvifError as exc:
                log.warning(
                    "camera %s: safety stop attempt %d failed: %s", self.name, attempt + 1, exc.message
                )
                await asyncio.sleep(0.5)
        self.safety_stops += 1
        self.moving_until = None

    # ---- commands ----------------------------------------------------------------------------
    def _lock_info(self, holder: LockHolder | None) -> dict[str, Any] | None:
        return (
            None
            if holder is None
            else {"holder": holder.requester, "role": holder.role, "until": holder.until}
        )

    def _caps(self) -> PtzCapabilities:
        caps = self.capabilities
        if caps is None or not caps.supported:
            raise CommandError(
                ErrorCode.UNAVAILABLE,
                f"camera {self.name!r} has no PTZ (fixed camera)",
                {"camera": self.name},
            )
        return caps

    async def _prepare(self, who: Who, *, needs_lock: bool = True) -> LockHolder | None:
        holder = self._admit(who, needs_lock=needs_lock)
        try:
            await self.client()
        except OnvifError as exc:
            raise to_command_error(self.name, exc) from None
        self._caps()
        return holder

    async def continuous_move(
        self, who: Who, pan: float, tilt: float, zoom: float, timeout_s: float | None
    ) -> dict[str, Any]:
        holder = await self._prepare(who)
        if not self._caps().continuous:
            raise CommandError(
                ErrorCode.UNAVAILABLE, f"camera {self.name!r} does not support continuous moves"
            )
        duration = min(
            timeout_s if timeout_s is not None else self.settings.default_move_s, self.settings.max_move_s
        )
        await self._cancel_stop_timer()
        # Arm our own stop before sending: even if the request times out after the camera got it,
        # the camera stops.
        self._stop_task = asyncio.ensure_future(self._safety_stop(duration))
        self.moving_until = time.time() + duration
        try:
            await self._onvif("ContinuousMove", lambda c: c.continuous_move(pan, tilt, zoom, duration))
        except OnvifError as exc:
            raise to_command_error(self.name, exc) from None
        finally:
            await self._set_away(True)
            self._touch()
        return {"camera": self.name, "mode": "continuous", "duration_s": duration, "stops_at": self.moving_until,
                "lock": self._lock_info(holder)}  # fmt: skip

    async def relative_move(
        self, who: Who, pan: float, tilt: float, zoom: float, speed: float | None
    ) -> dict[str, Any]:
        holder = await self._prepare(who)
        if not self._caps().relative:
            raise CommandError(ErrorCode.UNAVAILABLE, f"camera {self.name!r} does not support relative moves")
        await self._cancel_stop_timer()
        await self._run("RelativeMove", lambda c: c.relative_move(pan, tilt, zoom, speed), away=True)
        return {"camera": self.name, "mode": "relative", "lock": self._lock_info(holder)}

    async def absolute_move(
        self, who: Who, pan: float, tilt: float, zoom: float, speed: float | None
    ) -> dict[str, Any]:
        holder = await self._prepare(who)
        if not self._caps().absolute:
            raise CommandError(ErrorCode.UNAVAILABLE, f"camera {self.name!r} does not support absolute moves")
        await self._cancel_stop_timer()
        await self._run("AbsoluteMove", lambda c: c.absolute_move(pan, tilt, zoom, speed), away=True)
        return {"camera": self.name, "mode": "absolute", "lock": self._lock_info(holder)}

    async def _run(self, what: str, fn: Callable[[OnvifClient], Awaitable[Any]], *, away: bool | None) -> Any:
        try:
            result = await self._onvif(what, fn)
        except OnvifError as exc:
            raise to_command_error(self.name, exc) from None
        finally:
            if away is True:
                await self._set_away(True)
            self._touch()
        if away is False:
            await self._set_away(False)
            if self._idle_task is not None:
                self._idle_task.cancel()
                self._idle_task = None
        return result

    async def stop(self, who: Who, release: bool = False) -> dict[str, Any]:
        holder = await self._prepare(who)
        await self._cancel_stop_timer()
        await self._run("Stop", lambda c: c.stop(), away=None)
        self.moving_until = None
        if release:
            self.lock.release(who.requester)
            holder = None
        return {"camera": self.name, "stopped": True, "lock": self._lock_info(holder)}

    async def goto_preset(self, who: Who, preset: str) -> dict[str, Any]:
        holder = await self._prepare(who)
        await self._cancel_stop_timer()
        is_home = preset == self.home_preset
        await self._run(f"GotoPreset {preset}", lambda c: c.goto_preset(preset), away=not is_home)
        self.moving_until = None
        return {"camera": self.name, "preset": preset, "home": is_home, "lock": self._lock_info(holder)}

    async def home(self, who: Who) -> dict[str, Any]:
        holder = await self._prepare(who)
        await self._cancel_stop_timer()
        await self._run("home", self._go_home, away=False)
        self.moving_until = None
        return {"camera": self.name, "home": True, "lock": self._lock_info(holder)}

    async def set_preset(self, who: Who, name: str | None, preset: str | None) -> dict[str, Any]:
        holder = await self._prepare(who)
        token = await self._run("SetPreset", lambda c: c.set_preset(name, preset), away=None)
        return {"camera": self.name, "preset": token, "name": name, "lock": self._lock_info(holder)}

    async def remove_preset(self, who: Who, preset: str) -> dict[str, Any]:
        if preset == self.home_preset:
            raise CommandError(
                ErrorCode.INVALID_PARAMS,
                f"preset {preset!r} is the home preset of camera {self.name!r} (ptz.home_presets); "
                "change the configuration first",
            )
        holder = await self._prepare(who)
        await self._run(f"RemovePreset {preset}", lambda c: c.remove_preset(preset), away=None)
        return {"camera": self.name, "removed": preset, "lock": self._lock_info(holder)}

    async def status(self, who: Who) -> dict[str, Any]:
        await self._prepare(who, needs_lock=False)

        async def both(c: OnvifClient) -> Any:
            return await c.status(), await c.presets()

        try:
            st, presets = await self._onvif("GetStatus", both)
        except OnvifError as exc:
            raise to_command_error(self.name, exc) from None
        pos = st.position
        return {
            "camera": self.name,
            "position": None if pos is None else {"pan": pos.pan, "tilt": pos.tilt, "zoom": pos.zoom},
            "moving": st.moving,
            "away_from_home": self.away,
            "presets": [{"token": p.token, "name": p.name} for p in presets],
            "home_preset": self.home_preset,
            "lock": self._lock_info(self.lock.holder()),
            "capabilities": self.capabilities.as_dict() if self.capabilities else None,
        }

    async def reboot(self, who: Who) -> dict[str, Any]:
        self._admit(who, needs_lock=False)
        try:
            msg = await self._onvif("SystemReboot", lambda c: c.reboot())
        except OnvifError as exc:
            raise to_command_error(self.name, exc) from None
        await self._cancel_stop_timer()
        self.lock.clear()
        await self._drop_client()
        return {"camera": self.name, "rebooting": True, "message": msg}

    # ---- reporting / lifecycle -----------------------------------------------------------------
    def telemetry(self) -> dict[str, Any]:
        holder = self.lock.holder()
        return {
            "away_from_home": self.away,
            "counting_paused": self.away,
            "moving": self.moving_until is not None and self.moving_until > time.time(),
            "lock": None
            if holder is None
            else {"holder": holder.requester, "role": holder.role, "until": holder.until},
            "reachable": self._client is not None and self._client.connected and self.last_error is None,
            "last_error": self.last_error,
            "clock_offset_s": self.clock_offset_s,
            "safety_stops": self.safety_stops,
            "idle_returns": self.idle_returns,
        }

    async def close(self) -> None:
        for task in (self._stop_task, self._idle_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._stop_task = self._idle_task = None
        await self._drop_client()


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("PTZ audit event failed: %s", task.exception())


class PtzManager:
    """All PTZ cameras of this device, by camera name."""

    def __init__(
        self,
        connectors: dict[str, Connector],
        settings: PtzSettings,
        *,
        priority: Callable[[str], int] = fallback_ptz_priority,
        on_away_from_home: AwayHook | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self.cameras = {
            name: CameraPtz(name, conn, settings, priority=priority, on_away=on_away_from_home, audit=audit)
            for name, conn in connectors.items()
        }

    def camera(self, name: str | None) -> CameraPtz:
        if name is None or name not in self.cameras:
            raise CommandError(
                ErrorCode.UNAVAILABLE,
                f"camera {name!r} has no ONVIF control configured (cameras[].onvif in the agent config)",
                {"camera": name},
            )
        return self.cameras[name]

    async def probe_all(self) -> dict[str, dict[str, Any] | None]:
        """Connect to every camera concurrently; returns per-camera PTZ capabilities (None = unreachable)."""
        names = list(self.cameras)
        results = await asyncio.gather(*(self.cameras[n].probe() for n in names))
        return {n: (r.as_dict() if r is not None else None) for n, r in zip(names, results, strict=True)}

    async def run_health(self, interval_s: float = 60.0) -> None:
        """Background task: keep reachability and clock offsets in telemetry current."""
        while True:
            await asyncio.gather(*(c.health_check() for c in self.cameras.values()), return_exceptions=True)
            await asyncio.sleep(interval_s)

    def capabilities(self) -> dict[str, dict[str, Any] | None]:
        return {n: (c.capabilities.as_dict() if c.capabilities else None) for n, c in self.cameras.items()}

    def telemetry(self) -> dict[str, Any]:
        return {n: c.telemetry() for n, c in self.cameras.items()}

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.cameras.values()), return_exceptions=True)
