"""Who may take the PTZ lock from whom. The policy matrix owns the real table; this is the fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FALLBACK_PTZ_PRIORITY: dict[str, int] = {
    "provincial_police": 30,
    "city_police": 30,
    "district_police": 20,
    "commune_police": 10,
}
"""provincial/city police > district police > commune police > every other role (0)."""


def fallback_ptz_priority(role: str) -> int:
    return FALLBACK_PTZ_PRIORITY.get(role, 0)


def resolve_priority(policy: Any) -> Callable[[str], int]:
    """Use ``policy.ptz_priority(role)`` when the policy package provides it, else the fallback table."""
    fn = getattr(policy, "ptz_priority", None)
    return fn if callable(fn) else fallback_ptz_priority
