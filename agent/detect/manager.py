"""Detection for all cameras: builds the stores, the shared detector thread and one pipeline per
camera, persists rules changed by command, and exposes what handlers and other areas need.

Other areas reach it as ``services.extras["detect"]`` (e.g. PTZ calls
``manager.set_paused(camera, "ptz_away_from_home")`` and ``manager.set_paused(camera, None)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.detect.counts import CountStore
from agent.detect.events import EventStore
from agent.detect.pipeline import CameraPipeline, DetectFn, FrameLike, Sink
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.rules_settings import CLASSES_OF_INTEREST, CameraRules, describe_validation_error
from agent.detect.snapshots import SnapshotStore

log = logging.getLogger(__name__)

FramesFor = Callable[[str, float], AsyncIterator[FrameLike]]
"""camera name, fps -> newest-frame iterator (CameraRuntime.frames)."""


def _rules_digest(rules: CameraRules) -> str:
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()


class DetectionManager:
    def __init__(
        self,
        data_dir: Path,
        state_dir: Path,
        sink: Sink,
        settings: PipelineSettings,
        camera_rules: dict[str, CameraRules],
        camera_fps: dict[str, float] | None = None,
        snapshot_quota_bytes: int = 512 * 2**20,
        detect: DetectFn | None = None,
        frames_for: FramesFor | None = None,
        model_info: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.detect_dir = data_dir / "detect"
        self.rules_dir = state_dir / "detect" / "rules"
        self.events = EventStore(self.detect_dir / "events.sqlite")
        self.counts = CountStore(self.detect_dir / "counts.sqlite")
        self.snapshots = SnapshotStore(
            self.detect_dir / "snapshots", snapshot_quota_bytes, settings.snapshot_max_kb * 1024
        )
        self._config_rules = dict(camera_rules)
        self._rules_meta: dict[str, tuple[str, float | None]] = {}
        self._fps = camera_fps or {}
        self._detect = detect
        self._frames_for = frames_for
        self.model_info = model_info or {}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect-infer")
        self.pipelines: dict[str, CameraPipeline] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._current: dict[str, CameraRules] = {}
        for cam, cfg_rules in self._config_rules.items():
            rules, source, updated = self._load_rules(cam, cfg_rules)
            self._rules_meta[cam] = (source, updated)
            self._current[cam] = rules
            if detect is not None:
                self.pipelines[cam] = CameraPipeline(
                    cam,
                    detect,
                    self.executor,
                    sink,
                    settings,
                    rules,
                    self.events,
                    self.counts,
                    self.snapshots,
                    self.detect_dir / "preview" / f"{cam}.jpg",
                )

    @property
    def available(self) -> bool:
        return self._detect is not None

    def cameras(self) -> list[str]:
        return sorted(self._config_rules)

    # -- rules -----------------------------------------------------------------------------------

    def _rules_file(self, camera: str) -> Path:
        return self.rules_dir / f"{camera}.json"

    def _load_rules(self, camera: str, cfg: CameraRules) -> tuple[CameraRules, str, float | None]:
        """Rules set by command survive restarts, unless the config's rules changed since."""
        path = self._rules_file(camera)
        if not path.is_file():
            return cfg, "config", None
        try:
            doc = json.loads(path.read_text())
            if doc.get("config_sha256") != _rules_digest(cfg):
                log.info("camera %s: config rules changed since the last set_rules; using config", camera)
                return cfg, "config", None
            return CameraRules.model_validate(doc["rules"]), "command", float(doc["updated_at"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems = describe_validation_error(exc) if isinstance(exc, ValidationError) else [str(exc)]
            log.error("camera %s: ignoring unreadable %s: %s", camera, path, "; ".join(problems))
            return cfg, "config", None

    def rules_of(self, camera: str) -> tuple[CameraRules, str, float | None]:
        if camera not in self._config_rules:
            raise KeyError(camera)
        source, updated = self._rules_meta.get(camera, ("config", None))
        return self._current[camera], source, updated

    async def set_rules(self, camera: str, rules: CameraRules) -> float:
        """Persist validated rules (0600, atomic, in a thread), then apply them. Returns the update time."""
        if camera not in self._config_rules:
            raise KeyError(camera)
        now = time.time()
        doc = {
            "rules": rules.model_dump(mode="json"),
            "updated_at": now,
            "config_sha256": _rules_digest(self._config_rules[camera]),
        }
        await asyncio.to_thread(self._write_rules, camera, doc)
        p = self.pipelines.get(camera)
        if p is not None:
            p.set_rules(rules)
        self._current[camera] = rules
        self._rules_meta[camera] = ("command", now)
        return now

    def _write_rules(self, camera: str, doc: dict[str, Any]) -> None:
        self.rules_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._rules_file(camera)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def on_ptz_away(self, camera: str, away: bool) -> None:
        """PTZ hook (``services.extras["ptz.on_away_from_home"]``): pause counting while away."""
        self.set_paused(camera, "ptz_away_from_home" if away else None)

    def set_paused(self, camera: str, reason: str | None) -> None:
        p = self.pipelines.get(camera)
        if p is not None:
            p.set_paused(reason)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._frames_for is not None and self.settings.enabled:
            for cam, p in self.pipelines.items():
                self._spawn(self._supervise(cam, p), f"detect-{cam}")
        self._spawn(self._timers(), "detect-timers")

    async def _supervise(self, cam: str, p: CameraPipeline, retry_s: float = 2.0) -> None:
        """Run the camera's pipeline; if its frame stream ends or fails, subscribe again."""
        assert self._frames_for is not None
        while True:
            try:
                await p.run(self._frames_for(cam, self._fps.get(cam, 5.0)))
                log.warning("camera %s: frame stream ended; resubscribing in %.0f s", cam, retry_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("camera %s: detection stopped (%s); retrying in %.0f s", cam, exc, retry_s)
            await asyncio.sleep(retry_s)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._done)
        self._tasks.append(task)

    @staticmethod
    def _done(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("detection task %s died", task.get_name(), exc_info=task.exception())

    async def _timers(self) -> None:
        """Close count buckets on time (even with a stalled stream) and apply retention hourly."""
        last_prune = 0.0
        while True:
            now = time.time()
            for p in self.pipelines.values():
                p.roll(now)
            if now - last_prune > 3600:
                last_prune = now
                try:
                    await asyncio.to_thread(self.prune, now)
                except Exception:
                    log.exception("detection retention failed")
            await asyncio.sleep(1.0)

    def prune(self, now: float) -> None:
        s = self.settings
        for cam, eid in self.events.prune(now - s.events_retention_days * 86400):
            self.snapshots.delete(cam, eid)
        self.counts.prune(now - s.counts_retention_days * 86400)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for p in self.pipelines.values():
            await p.close()
        await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
        self.events.close()
        self.counts.close()

    # -- reporting -------------------------------------------------------------------------------

    def telemetry(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "snapshots_mb": round(self.snapshots.usage_bytes / 2**20, 1),
            "cameras": {cam: p.telemetry() for cam, p in self.pipelines.items()},
        }

    def capabilities(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "classes": list(CLASSES_OF_INTEREST),
            "rules": [
                "line",
                "line_one_way",
                "zone_occupancy",
                "zone_dwell",
                "zone_restricted",
                "zone_wrong_way",
            ],
            "bucket_s": self.settings.bucket_s,
            "model": self.model_info,
        }
