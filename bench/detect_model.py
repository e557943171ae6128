"""Model-only inference time of the shipped NanoDet models (interpreter invoke, no decode/letterbox).

Measures float32 and int8, 1 and 2 threads, in tflite-runtime (this venv) and in ai-edge-litert
(the scratch venv build/litert-venv, if present: `make build/litert-venv/bin/python`). Prints one
JSON object as its last line. The runtimes are measured in separate processes so each has the CPU
to itself, and the input is a real letterboxed frame from the test fixture.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
LITERT_PY = ROOT / "build" / "litert-venv" / "bin" / "python"
REFERENCE = ROOT / "tests" / "data" / "detect" / "reference.npz"
PRECISIONS = ("float32", "int8")
THREADS = (1, 2)


def _frame() -> np.ndarray:
    z = np.load(REFERENCE)
    frames = np.frombuffer(lzma.decompress(z["frames_xz"].tobytes()), np.uint8).reshape(z["frames_shape"])
    return frames[0][None].astype(np.float32)


def _interpreter(runtime: str) -> Any:
    if runtime == "tflite-runtime":
        from tflite_runtime.interpreter import Interpreter
    else:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[no-redef]
    return Interpreter


def time_model(runtime: str, path: Path, threads: int, runs: int) -> dict[str, float]:
    """p50/mean/min ms of ``invoke`` (set_tensor included) after a warm-up."""
    it = _interpreter(runtime)(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = _frame()
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 255).astype(inp["dtype"])
    for _ in range(5):
        it.set_tensor(inp["index"], x)
        it.invoke()
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        it.set_tensor(inp["index"], x)
        it.invoke()
        ms.append((time.perf_counter() - t) * 1000.0)
    ms.sort()
    return {
        "p50_ms": round(ms[len(ms) // 2], 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "min_ms": round(ms[0], 2),
    }


def _worker(runtime: str, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in PRECISIONS:
        for t in THREADS:
            out[f"{p}_{t}thread"] = time_model(runtime, MODELS / f"nanodet_416_{p}.tflite", t, runs)
    return out


def _run_worker(python: Path, runtime: str, runs: int) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--worker", runtime, "--runs", str(runs)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def model_only_ms(settings: Any = None, runs: int = 60) -> float:
    """p50 ms of the model the given ModelSettings selects, in this process's runtime (bench/detect.py)."""
    from agent.detect.runtime import runtime_available
    from agent.detect.settings import ModelSettings

    s = settings or ModelSettings()
    runtime = runtime_available(s.runtime)
    return time_model(runtime, s.model_path(runtime), s.threads, runs)["p50_ms"]


def measure(runs: int = 40) -> dict[str, Any]:
    """All combinations; ai-edge-litert only if build/litert-venv exists."""
    result: dict[str, Any] = {"model": "nanodet_416", "input": "1x416x416x3", "runs": runs}
    # Other work on the machine inflates every figure: record how busy it was.
    result["load_avg_1m_before"] = round(os.getloadavg()[0], 2)
    result["tflite_runtime"] = _run_worker(Path(sys.executable), "tflite-runtime", runs)
    if LITERT_PY.is_file():
        result["ai_edge_litert"] = _run_worker(LITERT_PY, "ai-edge-litert", runs)
    else:
        result["ai_edge_litert"] = {"error": f"{LITERT_PY} missing: make build/litert-venv/bin/python"}
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    result["cpu_count"] = os.cpu_count()
    for p in PRECISIONS:
        result[f"size_{p}_mb"] = round((MODELS / f"nanodet_416_{p}.tflite").stat().st_size / 1e6, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--worker", choices=("tflite-runtime", "ai-edge-litert"))
    args = ap.parse_args()
    print(json.dumps(_worker(args.worker, args.runs) if args.worker else measure(args.runs)))


if __name__ == "__main__":
    main()
