#!/usr/bin/env bash
# Creates the project venv with the pinned dependencies (Python 3.10-3.12).
set -euo pipefail
py="$1"; venv="$2"
ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$ver" in 3.10|3.11|3.12) ;; *) echo "Python 3.10-3.12 required, $py is $ver" >&2; exit 1;; esac
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
extras="dev"
# tflite-runtime has wheels only up to 3.11; on 3.12 use ai-edge-litert.
if [ "$ver" = "3.12" ]; then extras="dev,litert"; else extras="dev,tflite"; fi
"$venv/bin/pip" install -q --disable-pip-version-check -e ".[$extras]"
