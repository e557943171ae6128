"""Builds detection from the agent's services. The app calls :func:`create_detection` while it
registers handlers (before connecting, so the birth lists the actions) and starts the manager in
``start()``; :func:`build_detection` does both, for tests and tools.

It loads the detector (agent.detect.model), creates the DetectionManager, stores it as
``services.extras["detect"]``, registers the actions, the telemetry provider, the capabilities and
the PTZ away-from-home hook, and starts one pipeline per camera fed by the camera runtime.
Without a loadable model the actions over stored data still work and capabilities say why.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.detect.handlers import EXTRA_KEY, register
from agent.detect.manager import DetectionManager
from agent.detect.pipeline import DetectFn, FrameLike
from agent.detect.pipeline_settings import PipelineSettings
from agent.detect.rules_settings import CameraRules, describe_validation_error
from agent.detect.settings import ModelSettings

if TYPE_CHECKING:
    from agent.mqtt.registry import HandlerRegistry
    from agent.services import Services

log = logging.getLogger(__name__)

PTZ_AWAY_HOOK_KEY = "ptz.on_away_from_home"


class RulesConfigError(ValueError):
    """A camera's ``rules`` section is invalid; ``problems`` are readable lines naming the field."""

    def __init__(self, camera: str, problems: list[str]) -> None:
        super().__init__(f"camera {camera}: invalid rules: " + "; ".join(problems))
        self.problems = [f"cameras.{camera}.rules.{p}" for p in problems]


def camera_rules(raw: Any, camera: str) -> CameraRules:
    """CameraSettings.rules (a dict, a CameraRules or None) -> validated CameraRules."""
    if raw is None:
        return CameraRules()
    if isinstance(raw, CameraRules):
        return raw
    try:
        return CameraRules.model_validate(raw)
    except ValidationError as exc:
        raise RulesConfigError(camera, describe_validation_error(exc)) from exc


def pipeline_settings(services: Services) -> PipelineSettings:
    detect = getattr(services.settings, "detect", None)
    ps = getattr(detect, "pipeline", None)
    return ps if isinstance(ps, PipelineSettings) else PipelineSettings()


def model_settings_for_tracking(model: ModelSettings, pipeline: PipelineSettings) -> ModelSettings:
    """The model's thresholds lowered to the tracker's ``low_score``.

    The pipeline applies its own per-class ``min_score`` to start and confirm tracks; detections
    between ``low_score`` and that threshold only keep existing tracks alive (ByteTrack's second
    association), so the detector must report them.
    """
    low = pipeline.tracker.low_score
    scores = {c: min(model.min_score.get(c, model.default_min_score), low) for c in model.classes}
    return model.model_copy(
        update={"min_score": scores, "default_min_score": min(model.default_min_score, low)}
    )


def _load_detector(services: Services, pipeline: PipelineSettings) -> tuple[DetectFn | None, dict[str, Any]]:
    try:
        from agent.detect.model import load_detector  # the model area's module
    except ImportError as exc:
        return None, {"error": f"detector module unavailable: {exc}"}
    detect_settings = getattr(services.settings, "detect", None)
    model_settings = getattr(detect_settings, "model", None)
    if not isinstance(model_settings, ModelSettings):
        model_settings = ModelSettings()
    try:
        detector = load_detector(model_settings_for_tracking(model_settings, pipeline))
    except Exception as exc:  # a missing model file or runtime must not take the agent down
        log.error("detection disabled: cannot load the model: %s", exc)
        return None, {"error": f"cannot load model: {exc}"}
    info = {
        k: getattr(detector, k) for k in ("name", "family", "input_size", "runtime") if hasattr(detector, k)
    }
    return detector.detect, {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in info.items()}


def _frames_source(services: Services) -> Callable[[str, float], AsyncIterator[FrameLike]] | None:
    cams = services.cameras
    if cams is None:
        return None

    def frames_for(camera: str, fps: float) -> AsyncIterator[FrameLike]:
        runtime = cams.get(camera) if hasattr(cams, "get") else cams.runtime(camera)  # type: ignore[attr-defined]
        return runtime.frames(fps)  # type: ignore[no-any-return]

    return frames_for


async def build_detection(services: Services, registry: HandlerRegistry) -> Callable[[], Awaitable[None]]:
    manager = create_detection(services, registry)
    await manager.start()
    return manager.stop


def create_detection(services: Services, registry: HandlerRegistry) -> DetectionManager:
    """Everything but starting the pipelines: the app registers every action before it connects."""
    settings = pipeline_settings(services)
    rules = {c.name: camera_rules(getattr(c, "rules", None), c.name) for c in services.settings.cameras}
    fps = {c.name: float(c.detect_fps) for c in services.settings.cameras}
    detect, info = _load_detector(services, settings) if settings.enabled else (None, {"error": "disabled"})
    manager = DetectionManager(
        data_dir=services.data_dir,
        state_dir=services.state_dir,
        sink=services.outbox,
        settings=settings,
        camera_rules=rules,
        camera_fps=fps,
        snapshot_quota_bytes=int(services.settings.storage.snapshots_max_mb * 2**20),
        detect=detect,
        frames_for=_frames_source(services),
        model_info=info,
    )
    services.extras[EXTRA_KEY] = manager
    services.extras.setdefault(PTZ_AWAY_HOOK_KEY, manager.on_ptz_away)
    register(registry, services, manager)
    services.telemetry_providers["detect"] = manager.telemetry
    services.capabilities["detect"] = manager.capabilities()
    return manager
