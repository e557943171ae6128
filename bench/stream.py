"""Live streams: time to first frame and agent CPU per forwarded stream, with ffmpeg as reference.

Everything real: Mosquitto with TLS, the GStreamer RTSP camera simulator serving a 720p25 ~2 Mbit/s
H.264 clip (2 s GOP), the agent as a subprocess (`edge-agent run`, so its CPU is its own), signed
grants, aiortc viewers that decode. Reference: `ffmpeg -c copy` pulling the same RTSP stream and
sending it as SRTP, the near-limit cost of forwarding without re-encoding.

Prints one JSON object as its last line. BENCH_STREAM_WINDOW_S (default 20) sets each CPU window.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from aiortc import rtcrtpreceiver

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from provisioning.grant_authority import GrantAuthority  # noqa: E402
from tests.fixtures.agent import AgentProcess, agent_config, start_center  # noqa: E402
from tests.fixtures.camera import SAMPLES, RtspCamera  # noqa: E402
from tests.fixtures.stream import Viewer  # noqa: E402
from tools.center_client import CenterClient  # noqa: E402
from tools.local_broker import Broker  # noqa: E402

DEVICE = "bench-stream"
CAMERA = "cam720"
SESSIONS = 20
VIEWERS = (1, 4, 8)
WINDOW_S = float(os.environ.get("BENCH_STREAM_WINDOW_S", "20"))
CLIP = REPO / "build" / "bench" / "stream720p25_2mbit.mp4"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def make_clip() -> Path:
    """A 720p25 clip at ~2 Mbit/s CBR (noise keeps the encoder busy), 2 s GOP, no B-frames."""
    if CLIP.is_file():
        return CLIP
    CLIP.parent.mkdir(parents=True, exist_ok=True)
    tmp = CLIP.with_suffix(".tmp.mp4")
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=25,noise=alls=12:allf=t", "-t", "30", "-c:v", "libx264",
         "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", "50", "-keyint_min", "50",
         "-b:v", "2M", "-minrate", "2M", "-maxrate", "2M", "-bufsize", "1M", "-pix_fmt", "yuv420p",
         str(tmp)],
        check=True,
    )  # fmt: skip
    tmp.rename(CLIP)
    return CLIP


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def cpu_per_min(proc: psutil.Process, window: float) -> float:
    c0, t0 = cpu_s(proc), time.monotonic()
    await asyncio.sleep(window)
    return (cpu_s(proc) - c0) / (time.monotonic() - t0) * 60


class Bench:
    def __init__(self, center: CenterClient, authority: GrantAuthority) -> None:
        self.center = center
        self.authority = authority

    def grant(self) -> str:
        return self.authority.grant(
            role="city_police",
            actions=["stream_start", "stream_stop", "stream_list"],
            aud=DEVICE,
            area={"province": "01"},
            cameras=[CAMERA],
            ttl=600,
        )

    async def open(self, viewer: Viewer, wait_frame: bool = True) -> tuple[str, float]:
        """Start a session; returns its id and the seconds from stream_start to the first frame."""
        offer = await viewer.offer()
        t0 = time.perf_counter()
        r = await self.center.command(
            DEVICE, "stream_start", {"camera": CAMERA, "sdp": offer}, grant=self.grant(), timeout=20
        )
        assert r["ok"], r
        await viewer.accept(r["result"]["sdp"])
        if wait_frame:
            await asyncio.wait_for(viewer.first_frame.wait(), 20)
        return r["result"]["session_id"], time.perf_counter() - t0

    async def close(self, viewer: Viewer, sid: str) -> None:
        r = await self.center.command(
            DEVICE, "stream_stop", {"camera": CAMERA, "session_id": sid}, grant=self.grant()
        )
        assert r["ok"], r
        await viewer.close()


async def first_frame(bench: Bench) -> dict[str, float]:
    times = []
    sizes = set()
    for _ in range(SESSIONS):
        v = Viewer()
        sid, dt = await bench.open(v)
        times.append(dt * 1000)
        sizes.add(v.size)
        await bench.close(v, sid)
    assert sizes == {(1280, 720)}, sizes
    return {
        "ttff_sessions": SESSIONS,
        "ttff_p50_ms": round(pct(times, 0.5), 1),
        "ttff_p95_ms": round(pct(times, 0.95), 1),
        "ttff_max_ms": round(max(times), 1),
        "ttff_mean_ms": round(statistics.fmean(times), 1),
    }


class _CountingDecoder:
    """Viewer-side stand-in for the H.264 decoder during CPU windows: counts complete frames
    received, decodes nothing, so 8 viewers in this process do not starve the agent of CPU."""

    frames = 0

    def decode(self, encoded_frame: Any) -> list[Any]:
        _CountingDecoder.frames += 1
        return []


async def agent_cpu(bench: Bench, agent: psutil.Process) -> dict[str, float]:
    out: dict[str, float] = {}
    base = await cpu_per_min(agent, WINDOW_S)
    out["agent_cpu_s_per_min_0_viewers"] = round(base, 2)
    real = rtcrtpreceiver.get_decoder
    rtcrtpreceiver.get_decoder = lambda codec: _CountingDecoder()  # type: ignore[assignment,return-value]
    try:
        for n in VIEWERS:
            viewers = [Viewer() for _ in range(n)]
            sids = [(await bench.open(v, wait_frame=False))[0] for v in viewers]
            await asyncio.sleep(3)  # connected, past the GOP-cache burst
            frames0 = _CountingDecoder.frames
            total = await cpu_per_min(agent, WINDOW_S)
            fps = (_CountingDecoder.frames - frames0) / WINDOW_S / n
            out[f"agent_cpu_s_per_min_{n}_viewers"] = round(total, 2)
            out[f"agent_cpu_s_per_min_per_stream_{n}_viewers"] = round((total - base) / n, 2)
            out[f"viewer_fps_{n}_viewers"] = round(fps, 1)
            for v, sid in zip(viewers, sids, strict=True):
                await bench.close(v, sid)
    finally:
        rtcrtpreceiver.get_decoder = real
    return out


async def ffmpeg_srtp(url: str) -> dict[str, float]:
    """`ffmpeg -c copy` RTSP -> SRTP to a local UDP port nobody reads (the kernel drops the excess)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    key = base64.b64encode(os.urandom(30)).decode()
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-an", "-c", "copy",
         "-f", "rtp", "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", key,
         f"srtp://127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)  # RTSP open
        assert proc.poll() is None, "ffmpeg exited"
        ref = await cpu_per_min(psutil.Process(proc.pid), WINDOW_S)
    finally:
        proc.terminate()
        proc.wait(10)
        sink.close()
    return {"ffmpeg_copy_srtp_cpu_s_per_min": round(ref, 2)}


async def main() -> dict[str, Any]:
    clip = make_clip()
    cam = RtspCamera({"main": clip, "sub": SAMPLES / "walkway_sub.mp4"})
    cam.start()
    authority = GrantAuthority.create()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker.create(tmp / "broker")
        broker.start()
        extra = (
            '[log]\nlevel = "WARNING"\n[stream]\nmax_sessions = 16\nmax_sessions_per_camera = 16\n'
            # forwarding alone is measured: detection (which decodes and infers) is off
            "[detect.pipeline]\nenabled = false\n"
            f'[[cameras]]\nname = "{CAMERA}"\nmain_url = "{cam.main_url}"\n'
        )
        proc = AgentProcess(agent_config(tmp, broker, DEVICE, authority=authority, extra=extra))
        proc.start()
        center, rec = await start_center(broker, "center-bench", watch="+/state")
        try:
            await rec.wait_for("/state", lambda x: x.get("status") == "online", timeout=30)
            assert proc.proc is not None
            agent = psutil.Process(proc.proc.pid)
            bench = Bench(center, authority)
            warm = Viewer()  # the agent's RTSP connection is up and its GOP cache filled
            sid, _ = await bench.open(warm)
            await bench.close(warm, sid)
            out: dict[str, Any] = {"stream": "1280x720 25 fps ~2 Mbit/s H.264, GOP 2 s", "window_s": WINDOW_S}
            out |= await first_frame(bench)
            out |= await agent_cpu(bench, agent)
            out |= await ffmpeg_srtp(cam.main_url)
            out["agent_1_viewer_vs_ffmpeg_ratio"] = round(
                out["agent_cpu_s_per_min_1_viewers"] / out["ffmpeg_copy_srtp_cpu_s_per_min"], 2
            )
        finally:
            await center.stop()
            proc.stop()
            broker.stop()
            cam.close()
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    print(json.dumps(asyncio.run(main())))
