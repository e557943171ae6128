"""Periodic health report for the operator unit: host, disk, cameras, outbox, per-feature figures."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import psutil

from agent.camera.manager import CameraStatus
from agent.mqtt.messages import OutboxStats, TelemetryMessage
from agent.services import Services

log = logging.getLogger(__name__)


def read_temperature(path: Path) -> float | None:
    """Linux thermal zones report millidegrees; boards without one report nothing (None)."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def camera_states(services: Services) -> list[CameraStatus]:
    if services.cameras is None:
        return []
    return [rt.status() for rt in services.cameras.runtimes()]


class Telemetry:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.started = time.time()
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)  # prime the counters: the first call always returns 0
        psutil.cpu_percent(None)

    def snapshot(self) -> TelemetryMessage:
        s = self.services
        disk = shutil.disk_usage(s.state_dir)
        features: dict[str, Any] = {}
        for name, provider in list(s.telemetry_providers.items()):
            try:
                features[name] = provider()
            except Exception as exc:  # one broken provider must not silence the whole report
                features[name] = {"error": str(exc)}
        return TelemetryMessage(
            device_id=s.settings.device.id,
            uptime_s=round(time.time() - self.started, 1),
            cpu_percent=psutil.cpu_percent(None),
            load_1m=os.getloadavg()[0],
            memory_used_percent=psutil.virtual_memory().percent,
            process_rss_mb=round(self._proc.memory_info().rss / 2**20, 1),
            disk_free_mb=round(disk.free / 2**20, 1),
            disk_used_percent=round(100.0 * disk.used / disk.total, 1),
            temperature_c=read_temperature(s.settings.telemetry.thermal_file),
            cameras=camera_states(s),
            outbox=OutboxStats.model_validate(s.outbox.stats()),
            mqtt_reconnects=s.session.reconnects if s.session else 0,
            features=features,
        )

    async def run(self) -> None:
        interval = self.services.settings.telemetry.interval_s
        session = self.services.session
        while True:
            if session is not None:
                await session.connected.wait()
            msg = await asyncio.to_thread(self.snapshot)  # psutil and disk calls touch /proc and the disk
            self.services.publish("telemetry", msg)
            await asyncio.sleep(interval)
