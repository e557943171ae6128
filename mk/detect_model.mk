# Detection model (issue 3): model-only inference benchmark. The models are committed; re-create
# them with tools/convert_model.sh (downloads TensorFlow, not part of `make test`).
BENCHES += bench-detect-model


$(LITERT_VENV)/bin/python:
	$(PYTHON) -m venv $(LITERT_VENV)
	$(LITERT_VENV)/bin/pip install -q ai-edge-litert==2.3.0 numpy==1.26.4

bench-detect-model: $(VENV_STAMP) $(LITERT_VENV)/bin/python
	$(PY) bench/detect_model.py
