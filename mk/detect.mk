# Detection pipeline (issue 3): benchmark. The detection tests run with the whole suite.
BENCHES += bench-detect
bench-detect: $(VENV_STAMP) $(LITERT_VENV)/bin/python
	$(PY) bench/detect.py
