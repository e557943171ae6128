"""Certificate renewal settings (section `[provisioning]`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProvisioningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_renew: bool = Field(True, description="Renew the enrolled certificate before it expires.")
    renew_before_days: float = Field(30, gt=0, le=365, description="Renew when fewer days than this remain.")
    check_interval_s: float = Field(3600, ge=10, description="How often to check the expiry.")
