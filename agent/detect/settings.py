"""Model description of the detection area (``settings.detect.model``).

The default is the committed NanoDet 416 COCO model in ``models/`` (see models/PROVENANCE.md); an
installer can point ``path`` at another file of the same family. Every field has a safe default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
"""The repository's committed models (resolved from this file, not from the working directory)."""

DEFAULT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")


def _default_min_score() -> dict[str, float]:
    # Two-wheelers score low with NanoDet (bicycle/motorcycle top out near 0.5 on real footage).
    return {"person": 0.4, "bicycle": 0.3, "car": 0.4, "motorcycle": 0.3, "bus": 0.4, "truck": 0.4}


class ModelSettings(BaseModel):
    """Which model to run and how to turn its outputs into detections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Literal["nanodet", "ssd"] = Field(
        "nanodet",
        description="Output decoding: nanodet (COCO, default) or ssd (the person-only SSDLite, 300x300).",
    )
    path: Path | None = Field(
        None, description="A .tflite file; default: models/nanodet_416_<precision>.tflite of the repository."
    )
    precision: Literal["auto", "float32", "int8"] = Field(
        "auto",
        description="Which committed file when `path` is unset. auto: int8 on ai-edge-litert, float32 on "
        "tflite-runtime (whose XNNPACK does not accelerate int8 on x86).",
    )
    labels: Path | None = Field(None, description="One label per line; default: models/coco_labels.txt.")
    input_size: int = Field(416, ge=32, le=2048, description="NanoDet's square input in pixels.")
    runtime: Literal["auto", "tflite-runtime", "ai-edge-litert"] = "auto"
    threads: int = Field(1, ge=1, le=16, description="Interpreter threads.")
    classes: tuple[str, ...] = Field(DEFAULT_CLASSES, description="Labels reported; others are dropped.")
    min_score: dict[str, float] = Field(
        default_factory=_default_min_score, description="Per-label threshold."
    )
    default_min_score: float = Field(0.4, ge=0.0, le=1.0, description="For reported labels not in min_score.")
    nms_iou: float = Field(0.6, gt=0.0, le=1.0, description="Per-class non-maximum suppression IoU.")
    max_detections: int = Field(100, ge=1, le=1000)

    @field_validator("min_score")
    @classmethod
    def _scores(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"{k}: score must be within 0..1")
        return v

    def model_path(self, runtime_name: str) -> Path:
        """The model file to load once the runtime is known."""
        if self.path is not None:
            return self.path
        precision = self.precision
        if precision == "auto":
            precision = "int8" if runtime_name == "ai-edge-litert" else "float32"
        return MODELS_DIR / f"nanodet_{self.input_size}_{precision}.tflite"

    def labels_path(self) -> Path:
        return self.labels if self.labels is not None else MODELS_DIR / "coco_labels.txt"
