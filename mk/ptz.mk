# ONVIF simulator and PTZ benchmark (docs/onvif.md, docs/ptz.md).

BENCHES += bench-ptz
bench-ptz: $(VENV_STAMP)
	$(PY) bench/ptz.py

# A simulated PTZ camera on 127.0.0.1 for manual tests: password in build/onvif-sim.pw (0600).
ONVIF_SIM_RTSP ?= rtsp://127.0.0.1:8554/
.PHONY: onvif-sim
onvif-sim: $(VENV_STAMP)
	@mkdir -p build && umask 077 && [ -f build/onvif-sim.pw ] || openssl rand -hex 12 > build/onvif-sim.pw
	$(PY) -m tools.onvif_sim --port 8080 --wsd-port 3702 --user admin --password-file build/onvif-sim.pw \
		--rtsp-main $(ONVIF_SIM_RTSP)main --rtsp-sub $(ONVIF_SIM_RTSP)sub
