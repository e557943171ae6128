"""Per-camera rules configuration: counting lines and zones, validated before anything uses them.

Coordinates are normalized to the frame (x right, y down, both 0..1) so rules survive a change of
stream resolution. The same models validate the TOML config at start-up and the `set_rules`
command at run time, so a bad rule set is refused with an error that names the offending field and
the running rules stay untouched.

Direction convention for lines: walking from ``points[0]`` to ``points[1]`` on the image,
"forward" is a crossing from the left-hand side to the right-hand side (e.g. for a line drawn left
to right, forward = moving down the image), "backward" the opposite.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.detect.geometry import polygon_area, polygon_self_intersection

ClassName = Literal["person", "bicycle", "car", "motorcycle", "bus", "truck"]
"""Classes of interest (COCO names). Other model classes are dropped before tracking."""

CLASSES_OF_INTEREST: tuple[ClassName, ...] = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
VEHICLES: tuple[ClassName, ...] = ("bicycle", "car", "motorcycle", "bus", "truck")

Direction = Literal["forward", "backward"]
Anchor = Literal["bottom_center", "center"]

Coord = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
NormPoint = tuple[Coord, Coord]
RuleName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


def _unique_classes(v: list[ClassName]) -> list[ClassName]:
    if not v:
        raise ValueError("at least one class is required")
    if len(set(v)) != len(v):
        raise ValueError("classes must not repeat")
    return v


class LineRule(BaseModel):
    """A counting line: crossings are counted per class and direction; optionally one-way."""

    model_config = ConfigDict(extra="forbid")

    name: RuleName
    points: tuple[NormPoint, NormPoint] = Field(description="Two normalized points [[x, y], [x, y]].")
    classes: list[ClassName] = Field(default_factory=lambda: list(VEHICLES))
    count: bool = Field(True, description="Count crossings into the per-bucket count records.")
    allowed_direction: Literal["any", "forward", "backward"] = Field(
        "any", description="One-way line: a crossing against it raises a wrong_way event."
    )
    margin: float = Field(
        0.02,
        gt=0.0,
        le=0.2,
        description="Hysteresis: the reference point must be this far (normalized) past the line.",
    )
    anchor: Anchor = Field("bottom_center", description="Track reference point (bottom centre = ground).")

    _check_classes = field_validator("classes")(_unique_classes)

    @field_validator("points")
    @classmethod
    def _distinct(cls, v: tuple[NormPoint, NormPoint]) -> tuple[NormPoint, NormPoint]:
        (x1, y1), (x2, y2) = v
        if math.hypot(x2 - x1, y2 - y1) < 0.01:
            raise ValueError("the two points must be at least 0.01 apart")
        return v


class ZoneRule(BaseModel):
    """A polygon zone. Every zone reports occupancy and dwell; `kind` adds an event rule."""

    model_config = ConfigDict(extra="forbid")

    name: RuleName
    points: list[NormPoint] = Field(min_length=3, max_length=64, description="Polygon, normalized points.")
    kind: Literal["occupancy", "dwell", "restricted", "wrong_way"] = "occupancy"
    classes: list[ClassName] = Field(default_factory=lambda: list(CLASSES_OF_INTEREST))
    dwell_s: float | None = Field(
        None, gt=0.0, le=86400.0, description="kind=dwell: event when a track stays longer than this."
    )
    allowed_direction: tuple[float, float] | None = Field(
        None, description="kind=wrong_way: allowed motion as a vector [dx, dy] in image axes (y down)."
    )
    min_travel: float = Field(
        0.05, gt=0.0, le=1.0, description="kind=wrong_way: normalized travel against the direction."
    )
    margin: float = Field(0.01, ge=0.0, le=0.2, description="Hysteresis on the boundary (normalized).")
    anchor: Anchor = "bottom_center"

    _check_classes = field_validator("classes")(_unique_classes)

    @field_validator("points")
    @classmethod
    def _simple_polygon(cls, v: list[NormPoint]) -> list[NormPoint]:
        for i in range(len(v)):
            if v[i] == v[(i + 1) % len(v)]:
                raise ValueError(f"points {i} and {(i + 1) % len(v)} are identical")
        bad = polygon_self_intersection(v)
        if bad is not None:
            i, j = bad
            n = len(v)
            raise ValueError(
                f"polygon is self-intersecting: edge {i}-{(i + 1) % n} crosses edge {j}-{(j + 1) % n}"
            )
        if polygon_area(v) < 1e-4:
            raise ValueError("polygon area is too small (< 0.0001 of the frame)")
        return v

    @field_validator("allowed_direction")
    @classmethod
    def _nonzero(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None:
            if not all(math.isfinite(c) for c in v) or math.hypot(*v) < 1e-6:
                raise ValueError("must be a finite, non-zero vector [dx, dy]")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> ZoneRule:
        if self.kind == "dwell" and self.dwell_s is None:
            raise ValueError(f"zone {self.name!r}: kind 'dwell' requires dwell_s")
        if self.kind == "wrong_way" and self.allowed_direction is None:
            raise ValueError(f"zone {self.name!r}: kind 'wrong_way' requires allowed_direction")
        return self


class CameraRules(BaseModel):
    """All rules of one camera (CameraSettings.rules and the `set_rules` command)."""

    model_config = ConfigDict(extra="forbid")

    lines: list[LineRule] = Field(default_factory=list, max_length=32)
    zones: list[ZoneRule] = Field(default_factory=list, max_length=32)

    @model_validator(mode="after")
    def _unique_names(self) -> CameraRules:
        seen: dict[str, str] = {}
        named: list[tuple[str, str]] = [(f"lines[{i}]", r.name) for i, r in enumerate(self.lines)]
        named += [(f"zones[{i}]", r.name) for i, r in enumerate(self.zones)]
        for where, name in named:
            if name in seen:
                raise ValueError(f"{where}.name: {name!r} is already used by {seen[name]}")
            seen[name] = where
        return self


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One readable line per problem, e.g. ``zones[0].points: polygon is self-intersecting ...``."""
    out: list[str] = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{path or '(rules)'}: {msg}")
    return out
