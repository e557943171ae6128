"""PTZ section of the agent configuration (``[ptz]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PtzSettings(BaseModel):
    """Arbitration and safety knobs. Defaults suit an operator steering a camera by hand."""

    model_config = ConfigDict(extra="forbid")

    lease_s: float = Field(
        30.0, gt=0, le=600, description="PTZ lock lease; every command from the holder renews it."
    )
    idle_return_s: float = Field(
        120.0, ge=0, le=86400, description="Return to home after this long without a PTZ command; 0 disables."
    )
    max_move_s: float = Field(
        10.0, gt=0, le=120, description="Upper bound of one continuous move (our own timer)."
    )
    default_move_s: float = Field(
        1.0, gt=0, le=120, description="Continuous move duration when none is given."
    )
    rate_per_s: float = Field(
        5.0, gt=0, le=100, description="Sustained PTZ commands per second per requester."
    )
    rate_burst: int = Field(10, ge=1, le=1000, description="Commands a requester may send in a burst.")
    onvif_timeout_s: float = Field(5.0, gt=0, le=60, description="Timeout of each ONVIF request.")
    health_interval_s: float = Field(
        60.0, ge=5, le=3600, description="How often ONVIF cameras are checked (reachability, clock jumps)."
    )
    home_presets: dict[str, str] = Field(
        default_factory=dict,
        description="camera name -> preset token used as home; default: the camera's own home position.",
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> PtzSettings:
        if self.default_move_s > self.max_move_s:
            raise ValueError("default_move_s must be <= max_move_s")
        return self
