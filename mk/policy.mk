BENCHES += bench-grant
bench-grant: $(VENV_STAMP)
	$(PY) bench/grant.py
