"""Wire models of the detection area: events and count records (outbox) and command params/results.

The class of an object is called ``label`` everywhere (``class`` is a Python keyword); it is one of
the COCO names in :data:`agent.detect.rules_settings.CLASSES_OF_INTEREST`. Boxes on the wire are
normalized (x1, y1, x2, y2 in 0..1 of the detection frame) so they do not depend on stream size.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.detect.rules_settings import CameraRules, ClassName, Direction, RuleName

RuleKind = Literal["dwell", "restricted", "wrong_way"]
CameraName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
EventId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
NormBox = tuple[float, float, float, float]

MAX_RANGE_S = 400 * 86400


class DetectionEvent(BaseModel):
    """A rule fired (published on ``events``, indexed locally, searchable)."""

    v: int = 1
    type: Literal["detection"] = "detection"
    id: str = Field(description="32 hex chars; also the snapshot id.")
    camera: str
    ts: float = Field(description="Wall clock of the frame, seconds since epoch.")
    rule: RuleKind
    rule_name: str = Field(description="Name of the zone or line that fired.")
    zone: str | None = None
    line: str | None = None
    direction: Direction | None = None
    label: str
    class_id: int
    track_id: int
    score: float
    box: NormBox
    frame_width: int
    frame_height: int
    dwell_s: float | None = None
    snapshot: str | None = Field(None, description="Snapshot id for get_snapshot (null if none stored).")


class LineCount(BaseModel):
    line: str
    label: str
    direction: Direction
    count: int


class ZoneStat(BaseModel):
    zone: str
    label: str
    entries: int = 0
    exits: int = 0
    max_occupancy: int = 0
    dwell_max_s: float = 0.0
    dwell_mean_s: float = 0.0


class CountRecord(BaseModel):
    """One aggregation bucket of one camera (published on ``counts``, stored locally).

    A bucket with no crossings still produces a record (``frames`` > 0): the center can tell
    "no traffic" from "no data". ``frames_paused`` frames were seen while counting was paused.
    """

    v: int = 1
    type: Literal["counts"] = "counts"
    camera: str
    start: float
    end: float
    bucket_s: int
    frames: int = 0
    frames_paused: int = 0
    rules: list[str] = Field(default_factory=list, description="Lines and zones active in the bucket.")
    lines: list[LineCount] = Field(default_factory=list)
    zones: list[ZoneStat] = Field(default_factory=list)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _TimeRange(_Params):
    since: float = Field(ge=0, description="Start, seconds since epoch (inclusive).")
    until: float = Field(ge=0, description="End, seconds since epoch (exclusive).")

    @model_validator(mode="after")
    def _range(self) -> _TimeRange:
        if self.until <= self.since:
            raise ValueError("until must be after since")
        if self.until - self.since > MAX_RANGE_S:
            raise ValueError(f"time range longer than {MAX_RANGE_S // 86400} days")
        return self


class GetCountsParams(_TimeRange):
    camera: CameraName | None = None
    line: RuleName | None = None
    zone: RuleName | None = None
    label: ClassName | None = None
    resolution_s: int | None = Field(
        None, ge=60, le=86400, description="Re-aggregate buckets to this width (default: stored buckets)."
    )
    limit: int = Field(1000, ge=1, le=5000, description="Max rows per list.")


class CountRow(BaseModel):
    camera: str
    line: str
    label: str
    direction: Direction
    start: float
    bucket_s: int
    count: int


class ZoneRow(BaseModel):
    camera: str
    zone: str
    label: str
    start: float
    bucket_s: int
    entries: int
    max_occupancy: int
    dwell_max_s: float


class GetCountsResult(BaseModel):
    lines: list[CountRow]
    zones: list[ZoneRow]
    totals: list[LineCount] = Field(description="Line crossings over the whole range (all cameras).")
    truncated: bool = False


class SearchEventsParams(_TimeRange):
    camera: CameraName | None = None
    label: ClassName | None = None
    rule: RuleKind | None = None
    zone: RuleName | None = None
    line: RuleName | None = None
    direction: Direction | None = None
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=256, description="next_cursor of the previous page.")


class SearchEventsResult(BaseModel):
    events: list[DetectionEvent]
    next_cursor: str | None = Field(None, description="Pass back as cursor for the next (older) page.")


class GetSnapshotParams(_Params):
    camera: CameraName
    id: EventId
    kind: Literal["full", "crop"] = "full"


class GetSnapshotResult(BaseModel):
    id: str
    camera: str
    kind: Literal["full", "crop"]
    content_type: Literal["image/jpeg"] = "image/jpeg"
    size: int
    sha256: str
    data_b64: str


class SetRulesParams(_Params):
    camera: CameraName
    rules: CameraRules


class GetRulesParams(_Params):
    camera: CameraName


class RulesResult(BaseModel):
    camera: str
    rules: CameraRules
    source: Literal["config", "command"]
    updated_at: float | None = None
