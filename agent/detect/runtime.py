"""The TFLite interpreter: tflite-runtime if importable, else ai-edge-litert (same API).

Quantized inputs/outputs are handled here so callers always pass and get float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class ModelError(RuntimeError):
    """The model cannot be loaded or run (missing file, not a TFLite model, no runtime)."""


def _interpreter_class(runtime: str) -> tuple[Any, str]:
    if runtime in ("auto", "tflite-runtime"):
        try:
            from tflite_runtime.interpreter import Interpreter

            return Interpreter, "tflite-runtime"
        except ImportError:
            if runtime == "tflite-runtime":
                raise ModelError("runtime tflite-runtime requested but not installed") from None
    try:
        from ai_edge_litert.interpreter import Interpreter as LiteRT
    except ImportError:
        raise ModelError(
            "no TFLite runtime: install tflite-runtime (Python <= 3.11) or ai-edge-litert"
        ) from None
    return LiteRT, "ai-edge-litert"


def runtime_available(runtime: str = "auto") -> str:
    """Name of the runtime that :class:`TFLiteModel` would use (raises ModelError if none)."""
    return _interpreter_class(runtime)[1]


class TFLiteModel:
    """One interpreter with a single image input; not thread-safe (the pipeline serialises calls)."""

    def __init__(self, path: Path, threads: int = 1, runtime: str = "auto") -> None:
        cls, self.runtime_name = _interpreter_class(runtime)
        if not path.is_file():
            raise ModelError(f"model file not found: {path} (re-create with tools/convert_model.sh)")
        try:
            self._it = cls(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load {path} as a TFLite model: {exc}") from exc
        self.path = path
        inputs = self._it.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ModelError(f"{path}: expected one NHWC image input, got {[i['shape'] for i in inputs]}")
        self._input = inputs[0]
        self._outputs = self._it.get_output_details()
        self.input_shape = tuple(int(d) for d in self._input["shape"])

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """``image`` NHWC float32 0..255 -> every output as float32 (dequantized if needed)."""
        x = image
        dtype = self._input["dtype"]
        if dtype != np.float32:
            scale, zero = self._input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(image / scale + zero), info.min, info.max)
        self._it.set_tensor(self._input["index"], x.astype(dtype, copy=False))
        self._it.invoke()
        outs = []
        for o in self._outputs:
            y = self._it.get_tensor(o["index"])
            if y.dtype != np.float32:
                scale, zero = o["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs
