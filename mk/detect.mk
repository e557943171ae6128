# Detection pipeline (issue 3): benchmark. The detection tests run with the whole suite.
BENCHES += bench-detect
bench-detect: $(VENV_STAMP)
	$(PY) bench/detect.py
