# Live streams (issue 7): benchmark. The browser test drives Debian's /usr/bin/chromium over CDP
# from Python (tools/viewer/cdp.py): no npm, no browser download. See docs/streams.md.

BENCHES += bench-stream
bench-stream: $(VENV_STAMP)
	$(PY) bench/stream.py
