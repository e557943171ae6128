"""Shared pytest configuration. Area fixtures live in tests/fixtures/<area>.py."""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.fixtures.camera",
    "tests.fixtures.detect",
    "tests.fixtures.agent",
    "tests.fixtures.broker",
    "tests.fixtures.grants",
    "tests.fixtures.onvif",
    "tests.fixtures.stream",
    "tests.fixtures.stream_whip",
]
