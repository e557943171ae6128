#!/usr/bin/python3
"""RTSP camera simulator: serves H.264 clips in a loop like a live IP camera.

Run with Debian's /usr/bin/python3 (GStreamer through gi), never inside the project venv: PyAV's
wheel bundles its own FFmpeg and the two must stay in separate processes.

    /usr/bin/python3 tools/camera_sim.py --mount main=samples/walkway.mp4 \
        --mount sub=samples/walkway_sub.mp4 --host 127.0.0.1 --port 0

Prints ``READY rtsp://HOST:PORT/`` on stdout once listening (mounts are ``<url><name>``), then
serves until SIGTERM/SIGINT. ``--port N`` binds a fixed port (used to restart a "dropped" camera
on the same address).

Why this shape (see docs/camera.md and FIELD-NOTES "A real RTSP server for tests"): a plain
``filesrc ! qtdemux ! rtph264pay`` media ends at end of file, and a shared seekable media rewinds
for everyone whenever a new client sends PLAY with ``Range: npt=0-``. So each clip is read by its
own looping pipeline (non-flushing SEGMENT seeks keep running time monotonic across loops, the
appsink with sync=true paces it at real time) and every access unit is pushed into the *live*
appsrc of a shared media: clients join a running stream, as with a real camera.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as exc:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        f"camera_sim: GStreamer RTSP server not available ({exc}). Install the Debian packages "
        "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base "
        "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi python3-gst-1.0 "
        "(`make test` does) and run with /usr/bin/python3.\n"
    )
    sys.exit(3)

EXIT_CANNOT_LISTEN = 5  # (2 = bad arguments, 3 = GStreamer missing, 4 = unreadable clip)
H264_AU_CAPS = "video/x-h264,stream-format=byte-stream,alignment=au"


class LoopingClip:
    """Reads one clip forever at real time and fans its access units out to live appsrcs."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._targets: list[Gst.Element] = []
        self.loops = 0
        self.pipeline = Gst.parse_launch(
            "filesrc name=file ! qtdemux ! h264parse config-interval=-1 ! "
            f"{H264_AU_CAPS} ! appsink name=sink sync=true emit-signals=true max-buffers=8"
        )
        self.pipeline.get_by_name("file").set_property("location", str(path))  # no quoting issues
        sink = self.pipeline.get_by_name("sink")
        sink.connect("new-sample", self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PAUSED)
        ret, _, _ = self.pipeline.get_state(10 * Gst.SECOND)
        if ret != Gst.StateChangeReturn.SUCCESS:
            raise RuntimeError(f"mount {self.name}: cannot read the clip (an MP4 with H.264 is expected)")
        # First seek is flushing (to arm SEGMENT mode); later ones must not flush.
        self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT, 0)
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self) -> None:
        self.pipeline.set_state(Gst.State.NULL)

    def attach(self, appsrc: Gst.Element) -> None:
        with self._lock:
            self._targets.append(appsrc)

    def detach(self, appsrc: Gst.Element) -> None:
        with self._lock:
            if appsrc in self._targets:
                self._targets.remove(appsrc)

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        src_buf = sample.get_buffer()
        ok, info = src_buf.map(Gst.MapFlags.READ)
        if not ok:
            return Gst.FlowReturn.OK
        data = bytes(info.data)
        src_buf.unmap(info)
        with self._lock:
            targets = list(self._targets)
        for appsrc in targets:
            buf = Gst.Buffer.new_wrapped(data)  # appsrc do-timestamp stamps it on arrival
            if src_buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            ret = appsrc.emit("push-buffer", buf)
            if ret not in (Gst.FlowReturn.OK,):
                self.detach(appsrc)  # media torn down (all its clients left)
        return Gst.FlowReturn.OK

    def _on_message(self, _bus: Gst.Bus, msg: Gst.Message) -> None:
        if msg.type == Gst.MessageType.SEGMENT_DONE:
            self.loops += 1
            self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.SEGMENT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            sys.stderr.write(f"camera_sim: reader {self.name} error: {err.message} ({dbg})\n")
            sys.stderr.flush()


class LiveFactory(GstRtspServer.RTSPMediaFactory):
    """Shared media whose source is a live appsrc fed by a LoopingClip."""

    def __init__(self, clip: LoopingClip) -> None:
        super().__init__()
        self.clip = clip
        self.set_shared(True)
        self.set_launch(
            f"( appsrc name=src is-live=true do-timestamp=true format=time caps={H264_AU_CAPS} "
            "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )"
        )
        self.connect("media-configure", self._on_configure)

    def _on_configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        appsrc = media.get_element().get_by_name("src")
        self.clip.attach(appsrc)
        media.connect("unprepared", lambda _m: self.clip.detach(appsrc))


def _parse_mount(text: str) -> tuple[str, Path]:
    name, sep, file = text.partition("=")
    if not sep or not name or not file:
        raise argparse.ArgumentTypeError(f"--mount expects NAME=FILE, got {text!r}")
    path = Path(file).resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"--mount {name}: no such file {path}")
    if not all(c.isalnum() or c in "-_" for c in name):
        raise argparse.ArgumentTypeError(f"--mount name must be [A-Za-z0-9_-], got {name!r}")
    return name, path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mount", action="append", type=_parse_mount, required=True, help="NAME=FILE.mp4")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    args = parser.parse_args(argv)

    Gst.init(None)
    loop = GLib.MainLoop()

    def _quit() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    # Installed before any GStreamer thread exists so that every thread inherits the handling.
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _quit)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    clips: list[LoopingClip] = []
    for name, path in args.mount:
        clip = LoopingClip(name, path)
        clips.append(clip)
        mounts.add_factory(f"/{name}", LiveFactory(clip))

    if server.attach(None) == 0:
        sys.stderr.write(f"camera_sim: cannot listen on {args.host}:{args.port}\n")
        return EXIT_CANNOT_LISTEN
    try:
        for clip in clips:
            clip.start()
    except RuntimeError as exc:
        sys.stderr.write(f"camera_sim: {exc}\n")
        for clip in clips:
            clip.stop()
        return 4

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"READY rtsp://{host}:{server.get_bound_port()}/", flush=True)
    try:
        loop.run()
    finally:
        for clip in clips:
            clip.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
