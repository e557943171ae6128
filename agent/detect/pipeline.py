"""Per-camera detection pipeline: frames -> detector (worker thread) -> tracker -> rules -> events/counts.

The event loop never waits on inference: the detector runs in one dedicated thread (shared by all
cameras, since an interpreter is not thread-safe and the board has few cores), and the pipeline keeps
one inference queued ahead (frame N+1 is submitted before frame N's result is post-processed), so
the inference thread never idles while the loop tracks, counts or decodes. Snapshot encoding, SQLite
writes and the preview run in worker threads too.

Counting can be paused (``set_paused``) while the PTZ area has moved the camera away from its home
position: lines and zones no longer match the scene, so rules are suspended and all track state is
dropped on pause and on resume (the scene changed; old sides/dwell clocks would be wrong).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.detect.counts import CountAggregator, CountStore
from agent.detect.events import EventStore, new_event_id
from agent.detect.messages import CountRecord, DetectionEvent
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.preview import render_preview, write_jpeg_atomic
from agent.detect.rules import RuleEvent, RulesEngine, RulesOutput
from agent.detect.rules_settings import CameraRules
from agent.detect.snapshots import SnapshotStore
from agent.detect.tracker import DetectionLike, Track, Tracker, TrackerConfig, TrackerOutput

log = logging.getLogger(__name__)


class FrameLike(Protocol):
    """What the pipeline needs from a decoded frame (agent.camera.frames.Frame satisfies it)."""

    @property
    def image(self) -> np.ndarray: ...
    @property
    def ts(self) -> float: ...
    @property
    def pts_s(self) -> float | None: ...
    @property
    def index(self) -> int: ...


DetectFn = Callable[[np.ndarray], Sequence[DetectionLike]]
"""Blocking Detector.detect; the pipeline runs it in ``executor``, never on the loop."""


class Sink(Protocol):
    """Where results go: the outbox (`put`) in the agent, a list in tests and the benchmark."""

    async def put(self, channel: str, message: Any) -> Any: ...


@dataclass
class FrameResult:
    """What one processed frame produced (returned by :meth:`CameraPipeline.process` for tests)."""

    frame_index: int
    detections: int
    tracks: TrackerOutput
    rules: RulesOutput | None
    events: list[DetectionEvent] = field(default_factory=list)
    records: list[CountRecord] = field(default_factory=list)


@dataclass
class PipelineStats:
    frames: int = 0
    frames_skipped: int = 0
    detections: int = 0
    events: int = 0
    records: int = 0
    snapshots_dropped: int = 0
    errors: int = 0
    infer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    frame_times: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    det_counts: deque[int] = field(default_factory=lambda: deque(maxlen=100))
    last_frame_wall: float | None = None


class CameraPipeline:
    """Detection, tracking and rules for one camera."""

    def __init__(
        self,
        camera: str,
        detect: DetectFn,
        executor: Executor,
        sink: Sink,
        settings: PipelineSettings | None = None,
        rules: CameraRules | None = None,
        events: EventStore | None = None,
        counts: CountStore | None = None,
        snapshots: SnapshotStore | None = None,
        preview_path: Path | None = None,
    ) -> None:
        self.camera = camera
        self.settings = settings or PipelineSettings()
        self._detect = detect
        self._executor = executor
        self._sink = sink
        s = self.settings
        self.tracker = Tracker(
            TrackerConfig(
                high_score={str(k): v for k, v in s.min_score.items()},
                low_score=s.tracker.low_score,
                match_iou=s.tracker.match_iou,
                low_match_iou=s.tracker.low_match_iou,
                min_hits=s.tracker.min_hits,
                max_lost_s=s.tracker.max_lost_s,
            )
        )
        self.rules = RulesEngine(rules or CameraRules())
        self.aggregator = CountAggregator(camera, s.bucket_s)
        self.aggregator.set_rule_names(self._rule_names())
        self._classes = set(s.classes)
        self._events = events
        self._counts = counts
        self._snapshots = snapshots
        self._preview_path = preview_path
        self._paused_reason: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_snapshots = 0
        self._last_index: int | None = None
        self._latest: tuple[np.ndarray, list[Track]] | None = None
        self._last_preview = 0.0
        self._preview_busy = False
        self.totals: dict[str, int] = {}
        self.stats = PipelineStats()

    # -- control ---------------------------------------------------------------------------------

    @property
    def counting_paused(self) -> bool:
        return self._paused_reason is not None

    @property
    def paused_reason(self) -> str | None:
        return self._paused_reason

    def set_paused(self, reason: str | None) -> None:
        """Pause rules/counting with a reason (e.g. "ptz_away_from_home"), or resume with None."""
        if (reason is None) == (self._paused_reason is None):
            self._paused_reason = reason
            return
        log.info("camera %s: counting %s", self.camera, f"paused ({reason})" if reason else "resumed")
        self._paused_reason = reason
        self.tracker.reset()
        self.rules.reset()

    def set_rules(self, rules: CameraRules) -> None:
        """Replace lines and zones (already validated); unchanged rules keep their track state."""
        self.rules.set_rules(rules)
        self.aggregator.set_rule_names(self._rule_names())

    def _rule_names(self) -> list[str]:
        r = self.rules.rules
        return [x.name for x in r.lines] + [x.name for x in r.zones]

    # -- main loop -------------------------------------------------------------------------------

    async def run(self, frames: AsyncIterator[FrameLike]) -> None:
        """Consume frames until the iterator ends or the task is cancelled.

        One inference stays queued ahead of post-processing (see module docstring).
        """
        pending: tuple[FrameLike, asyncio.Future[tuple[Sequence[DetectionLike], float]]] | None = None
        try:
            async for frame in frames:
                task = self._timed_detect(frame.image)
                if pending is not None:
                    await self._finish(*pending)
                pending = (frame, task)
            if pending is not None:
                await self._finish(*pending)
                pending = None
        finally:
            if pending is not None:
                pending[1].cancel()
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:  # the camera's sampler owns a decoder and a subscription
                with contextlib.suppress(Exception):
                    await aclose()
            await self.close()

    def _timed_detect_blocking(self, image: np.ndarray) -> tuple[Sequence[DetectionLike], float]:
        t0 = time.perf_counter()
        dets = self._detect(image)
        return dets, (time.perf_counter() - t0) * 1000.0

    def _timed_detect(self, image: np.ndarray) -> asyncio.Future[tuple[Sequence[DetectionLike], float]]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, self._timed_detect_blocking, image)

    async def _finish(
        self, frame: FrameLike, task: asyncio.Future[tuple[Sequence[DetectionLike], float]]
    ) -> FrameResult | None:
        try:
            dets, ms = await task
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("camera %s: detection failed on frame %s", self.camera, frame.index)
            return None
        self.stats.infer_ms.append(ms)
        return await self.handle(frame, dets)

    async def process(self, frame: FrameLike) -> FrameResult:
        """Detect and handle one frame (no look-ahead); used by tests and tools."""
        dets, ms = await self._timed_detect(frame.image)
        self.stats.infer_ms.append(ms)
        return await self.handle(frame, dets)

    async def handle(self, frame: FrameLike, detections: Sequence[DetectionLike]) -> FrameResult:
        """Everything after inference, for one frame. Cheap: runs on the loop."""
        st = self.stats
        now = time.time()
        if self._last_index is not None and frame.index > self._last_index + 1:
            st.frames_skipped += frame.index - self._last_index - 1
        self._last_index = frame.index
        st.frames += 1
        st.last_frame_wall = now
        st.frame_times.append(time.monotonic())
        dets = [d for d in detections if d.label in self._classes]
        st.detections += len(dets)
        st.det_counts.append(len(dets))
        clock = frame.pts_s if frame.pts_s is not None else frame.ts
        h, w = frame.image.shape[:2]
        tracked = self.tracker.update(dets, clock)
        result: RulesOutput | None = None
        if not self.counting_paused:
            result = self.rules.update(clock, tracked.active, tracked.lost, tracked.removed, w, h)
        records = self.aggregator.add_frame(frame.ts, result, paused=self.counting_paused)
        out = FrameResult(frame.index, len(dets), tracked, result, records=records)
        if result is not None:
            for c in result.crossings:
                if c.counted:
                    key = f"{c.line}:{'F' if c.direction == 'forward' else 'B'}"
                    self.totals[key] = self.totals.get(key, 0) + 1
            for rev in result.events:
                ev = self._make_event(frame, rev, w, h)
                out.events.append(ev)
                self._spawn(self._emit_event(ev, frame.image, rev))
        for rec in records:
            self._spawn(self._emit_record(rec))
        self._latest = (frame.image, list(tracked.active))
        self._maybe_preview()
        return out

    def _make_event(self, frame: FrameLike, rev: RuleEvent, w: int, h: int) -> DetectionEvent:
        x1, y1, x2, y2 = rev.track.box
        box = (
            round(min(max(x1 / w, 0.0), 1.0), 4),
            round(min(max(y1 / h, 0.0), 1.0), 4),
            round(min(max(x2 / w, 0.0), 1.0), 4),
            round(min(max(y2 / h, 0.0), 1.0), 4),
        )
        return DetectionEvent(
            id=new_event_id(),
            camera=self.camera,
            ts=frame.ts,
            rule=rev.rule,
            rule_name=rev.rule_name,
            zone=rev.zone,
            line=rev.line,
            direction=rev.direction,
            label=rev.track.label,
            class_id=rev.track.class_id,
            track_id=rev.track.track_id,
            score=round(rev.track.score, 4),
            box=box,
            frame_width=w,
            frame_height=h,
            dwell_s=rev.dwell_s,
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _emit_event(self, ev: DetectionEvent, image: np.ndarray, rev: RuleEvent) -> None:
        """Snapshot (thread), local index (thread), then the outbox. Never raises."""
        try:
            if self._snapshots is not None:
                if self._pending_snapshots < self.settings.max_pending_snapshots:
                    self._pending_snapshots += 1
                    try:
                        caption = f"{rev.track.label} #{rev.track.track_id} {rev.rule}"
                        await asyncio.to_thread(
                            self._snapshots.save, self.camera, ev.id, image, rev.track.box, caption
                        )
                        ev.snapshot = ev.id
                    finally:
                        self._pending_snapshots -= 1
                else:
                    self.stats.snapshots_dropped += 1
            if self._events is not None:
                await asyncio.to_thread(self._events.add, ev)
            await self._sink.put("events", ev)
            self.stats.events += 1
            log.info(
                "event %s camera=%s rule=%s/%s %s #%d score=%.2f",
                ev.id[:8],
                ev.camera,
                ev.rule,
                ev.rule_name,
                ev.label,
                ev.track_id,
                ev.score,
            )
        except Exception:
            self.stats.errors += 1
            log.exception("camera %s: could not emit event %s", self.camera, ev.id)

    async def _emit_record(self, rec: CountRecord) -> None:
        try:
            if self._counts is not None:
                await asyncio.to_thread(self._counts.add, rec)
            await self._sink.put("counts", rec)
            self.stats.records += 1
            summary = ", ".join(f"{c.line}/{c.label}/{c.direction}={c.count}" for c in rec.lines) or "none"
            log.info(
                "counts camera=%s %s+%ds frames=%d paused=%d: %s",
                rec.camera,
                time.strftime("%H:%M:%S", time.localtime(rec.start)),
                rec.bucket_s,
                rec.frames,
                rec.frames_paused,
                summary,
            )
        except Exception:
            self.stats.errors += 1
            log.exception("camera %s: could not store count record", self.camera)

    def roll(self, now: float | None = None) -> None:
        """Close the count bucket if its time is over (timer; covers a stalled stream)."""
        for rec in self.aggregator.roll(time.time() if now is None else now):
            self._spawn(self._emit_record(rec))

    def _maybe_preview(self) -> None:
        interval = self.settings.preview_interval_s
        if self._preview_path is None or interval <= 0 or self._preview_busy or self._latest is None:
            return
        now = time.monotonic()
        if now - self._last_preview < interval:
            return
        self._last_preview = now
        self._preview_busy = True
        image, tracks = self._latest
        status = f"{self.camera} PAUSED" if self.counting_paused else self.camera
        self._spawn(self._write_preview(image, tracks, status))

    async def _write_preview(self, image: np.ndarray, tracks: list[Track], status: str) -> None:
        assert self._preview_path is not None
        try:
            img = await asyncio.to_thread(
                render_preview, image, tracks, self.rules.rules, dict(self.totals), status
            )
            await asyncio.to_thread(write_jpeg_atomic, self._preview_path, img)
        except Exception:
            log.exception("camera %s: preview failed", self.camera)
        finally:
            self._preview_busy = False

    async def drain(self) -> None:
        """Wait for pending snapshot/store/outbox tasks (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Flush the partial bucket and finish pending writes."""
        for rec in self.aggregator.flush():
            self._spawn(self._emit_record(rec))
        with contextlib.suppress(Exception):
            await asyncio.shield(self.drain())

    def telemetry(self) -> dict[str, Any]:
        st = self.stats
        ft = st.frame_times
        fps = (len(ft) - 1) / (ft[-1] - ft[0]) if len(ft) > 1 and ft[-1] > ft[0] else 0.0
        ms = sorted(st.infer_ms)
        dets_per_frame = sum(st.det_counts) / len(st.det_counts) if st.det_counts else 0.0
        return {
            "fps": round(fps, 2),
            "inference_ms_p50": round(ms[len(ms) // 2], 1) if ms else None,
            "detections_per_s": round(dets_per_frame * fps, 2),
            "frames": st.frames,
            "frames_skipped": st.frames_skipped,
            "tracks": len(self.tracker.tracks),
            "events": st.events,
            "count_records": st.records,
            "snapshots_dropped": st.snapshots_dropped,
            "errors": st.errors,
            "counting_paused": self.counting_paused,
            "paused_reason": self._paused_reason,
            "last_frame_age_s": round(time.time() - st.last_frame_wall, 1) if st.last_frame_wall else None,
        }
