BENCHES += bench-provision
bench-provision: $(VENV_STAMP)
	$(PY) bench/provision.py
