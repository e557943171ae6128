"""Arbitration rules, rate limit and command parameter validation (pure logic, injected clocks)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.mqtt.registry import HandlerRegistry
from agent.ptz.handlers import PtzMoveParams, PtzSetPresetParams, register_actions
from agent.ptz.lock import LockBusy, PtzLock
from agent.ptz.manager import PtzManager
from agent.ptz.priority import fallback_ptz_priority, resolve_priority
from agent.ptz.rate import RateLimiter
from agent.ptz.settings import PtzSettings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_priority_order_of_roles():
    p = fallback_ptz_priority
    assert p("provincial_police") == p("city_police") > p("district_police") > p("commune_police")
    assert p("commune_police") > p("operator_unit") == p("installer_org") == p("other_agency") == 0

    class Policy:
        def ptz_priority(self, role: str) -> int:
            return 99

    assert resolve_priority(Policy())("anyone") == 99
    assert resolve_priority(None) is fallback_ptz_priority


def test_lock_lease_renewal_preemption_and_busy():
    clock = Clock()
    lock = PtzLock(lease_s=30, clock=clock)
    h, pre = lock.acquire("a", "district_police", "CA-1", 20)
    assert pre is None and h.until == 1030
    clock.t = 1020
    h, _ = lock.acquire("a", "district_police", "CA-1", 20)  # renewal extends the lease
    assert h.until == 1050 and h.acquired_at == 1000
    with pytest.raises(LockBusy) as ei:
        lock.acquire("b", "commune_police", "CA-2", 10)
    assert ei.value.holder.requester == "a"
    with pytest.raises(LockBusy):
        lock.acquire("c", "district_police", "CA-3", 20)  # equal priority does not preempt
    h, pre = lock.acquire("d", "provincial_police", "PC", 30)
    assert h.requester == "d" and pre is not None and pre.requester == "a"
    clock.t = h.until  # lease over: anyone may take it
    h, pre = lock.acquire("b", "commune_police", "CA-2", 10)
    assert h.requester == "b" and pre is None
    assert not lock.release("a") and lock.release("b") and lock.holder() is None


def test_rate_limiter_bucket():
    clock = Clock()
    rl = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [rl.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("a")
    assert wait == pytest.approx(0.5)
    assert rl.take("b") == 0.0
    clock.t += 0.5
    assert rl.take("a") == 0.0


def test_move_params_are_strict():
    with pytest.raises(ValidationError):
        PtzMoveParams.model_validate({"camera": "c", "pan": 2})
    with pytest.raises(ValidationError):
        PtzMoveParams.model_validate({"camera": "c", "unexpected": 1})
    with pytest.raises(ValidationError):
        PtzMoveParams.model_validate({"camera": "c", "mode": "continuous", "speed": 0.5})
    with pytest.raises(ValidationError):
        PtzMoveParams.model_validate({"camera": "c", "mode": "absolute", "zoom": -0.2})
    with pytest.raises(ValidationError):
        PtzMoveParams.model_validate({"camera": "c", "mode": "relative", "timeout_s": 3})
    with pytest.raises(ValidationError):
        PtzSetPresetParams.model_validate({"camera": "c", "preset": "bad token!"})
    ok = PtzMoveParams.model_validate({"camera": "c", "pan": 0.5, "timeout_s": 2})
    assert ok.mode == "continuous"


def test_registered_actions():
    reg = HandlerRegistry()
    register_actions(reg, PtzManager({}, PtzSettings()))
    names = {"ptz_move", "ptz_stop", "ptz_goto_preset", "ptz_set_preset", "ptz_remove_preset", "ptz_home",
             "ptz_status", "camera_reboot"}  # fmt: skip
    assert set(reg.names()) == names
    assert all(reg.get(n).needs_camera for n in names)


def test_settings_validation():
    with pytest.raises(ValidationError):
        PtzSettings(default_move_s=20, max_move_s=10)
    with pytest.raises(ValidationError):
        PtzSettings.model_validate({"lease": 3})
