# Live streams (issue 7): viewer page deps (playwright-core drives Debian's /usr/bin/chromium in the
# browser test; no browser download), benchmark. See docs/streams.md.

VIEWER_STAMP := tools/viewer/node_modules/.installed

.PHONY: viewer-deps
viewer-deps: $(VIEWER_STAMP)
$(VIEWER_STAMP): tools/viewer/package.json tools/viewer/package-lock.json $(SYSDEPS_STAMP)
	cd tools/viewer && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

# The browser test needs playwright-core: `make test` installs it first.
test: $(VIEWER_STAMP)

BENCHES += bench-stream
bench-stream: $(VENV_STAMP)
	$(PY) bench/stream.py
