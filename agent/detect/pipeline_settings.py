"""Settings of the detection pipeline (tracking, thresholds, counts, events, snapshots, preview).

Included by the lead as ``settings.detect.pipeline`` (the model description is ``settings.detect.model``,
agent/detect/settings.py). Every field has a safe default so an empty section works.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.detect.rules_settings import CLASSES_OF_INTEREST, ClassName


def _default_min_score() -> dict[ClassName, float]:
    # Two-wheelers score low with NanoDet (field notes: bicycle/motorcycle top out near 0.5).
    return {"person": 0.4, "bicycle": 0.3, "motorcycle": 0.3, "car": 0.4, "bus": 0.4, "truck": 0.4}


class TrackerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low_score: float = Field(0.15, ge=0.0, le=1.0, description="Detections below are ignored.")
    match_iou: float = Field(0.2, gt=0.0, le=1.0)
    low_match_iou: float = Field(0.4, gt=0.0, le=1.0)
    min_hits: int = Field(2, ge=1, le=10, description="Matches before a track is reported.")
    max_lost_s: float = Field(1.5, gt=0.0, le=30.0, description="Keep a lost track's id this long.")


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    classes: list[ClassName] = Field(default_factory=lambda: list(CLASSES_OF_INTEREST))
    min_score: dict[ClassName, float] = Field(
        default_factory=_default_min_score,
        description="Per-class score to start/confirm a track (lower scores only extend tracks).",
    )
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    bucket_s: int = Field(60, ge=10, le=3600, description="Count aggregation bucket (seconds).")
    events_retention_days: float = Field(90, gt=0)
    counts_retention_days: float = Field(400, gt=0)
    snapshot_max_kb: int = Field(192, ge=16, le=900, description="Bound of one snapshot JPEG.")
    max_pending_snapshots: int = Field(16, ge=1, le=256, description="Beyond this, events go without one.")
    preview_interval_s: float = Field(2.0, ge=0.0, le=3600, description="0 disables the preview image.")

    @field_validator("min_score")
    @classmethod
    def _scores(cls, v: dict[ClassName, float]) -> dict[ClassName, float]:
        for k, s in v.items():
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"{k}: score must be within 0..1")
        return v
