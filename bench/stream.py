"""Live-stream benchmark: time to first frame, and agent CPU per forwarded 720p 2 Mbit/s stream.

Layout (every part real): the GStreamer RTSP camera simulator serves a 720p25 2 Mbit/s H.264 clip
(GOP 2 s); an agent child process (real AgentApp: cameras, policy gate, dispatcher, stream
handlers) pulls it and answers commands posted over loopback HTTP (the MQTT hop is left out: it
is the same for every viewer and not what is measured); this process plays the center: it mints
real grants bound to each viewer's DTLS fingerprint and runs aiortc viewers.

- ``ttff``: 20 sequential sessions; time from sending stream_start (offer ready) to the first
  decoded frame, p50/p95 (the GOP cache makes it independent of the camera's keyframe interval).
- ``cpu``: agent process CPU seconds per minute, idle (camera pulled, no viewer) and with 1, 4, 8
  viewers (viewers here skip decoding so they do not steal the agent's cores), per stream.
- ``ffmpeg_copy``: the near-limit reference, `ffmpeg -c copy` pulling the same RTSP stream and
  forwarding it as SRTP, CPU per minute, and the agent/ffmpeg ratio for one viewer.

Prints one JSON object as the last line. Takes about 2-3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEVICE = "bench-box"
CAMERA = "cam720"
AREA = {"province": "01", "district": "001"}
CLIP = ROOT / "build" / "bench" / "stream-720p-2M.mp4"
WINDOW_S = 20.0
SESSIONS = 20


def make_clip() -> Path:
    """720p25 noise test pattern at ~2 Mbit/s, baseline, GOP 2 s (FIELD-NOTES recipe)."""
    if CLIP.is_file():
        return CLIP
    CLIP.parent.mkdir(parents=True, exist_ok=True)
    tmp = CLIP.with_suffix(".tmp.mp4")
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
            "testsrc=size=1280x720:rate=25,noise=alls=12:allf=t", "-t", "20", "-c:v", "libx264",
            "-preset", "veryfast", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-b:v", "2M",
            "-maxrate", "2M", "-bufsize", "2M", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
            "-bf", "0", "-movflags", "+faststart", str(tmp),
        ],
        check=True,
    )  # fmt: skip
    tmp.rename(CLIP)
    return CLIP


# --------------------------------------------------------------------------------- agent child
async def agent_child(rtsp_url: str, state_dir: Path) -> None:
    """A real agent without the MQTT session: POST /cmd takes a command envelope (JSON)."""
    from aiohttp import web

    from agent.app import AgentApp
    from agent.config import AgentSettings
    from agent.mqtt.dispatch import Dispatcher
    from agent.stream import handlers as stream_handlers

    settings = AgentSettings.model_validate(
        {
            "device": {"id": DEVICE, "owner_org": "Bench Org", "location": AREA | {"commune": "00001"}},
            "center": {"host": "127.0.0.1", "insecure_dev": True},
            "storage": {"state_dir": str(state_dir)},
            "cameras": [{"name": CAMERA, "main_url": rtsp_url}],
            "stream": {"max_sessions": 16, "max_sessions_per_camera": 16},
        }
    )
    app = AgentApp(settings)
    app.register_handlers()
    dispatcher = Dispatcher(DEVICE, app.registry, app.policy.gate, app.policy.audit, app.camera_names)
    assert app.services.cameras is not None
    await app.services.cameras.start()
    stream_handlers.build(app.services).ensure_running()

    async def cmd(request: web.Request) -> web.Response:
        resp = await dispatcher.handle(await request.read())
        return web.json_response(resp.model_dump(mode="json"))

    web_app = web.Application(client_max_size=256 * 1024)
    web_app.router.add_post("/cmd", cmd)
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fanout = app.services.cameras.get(CAMERA).main
    while not fanout.packets:
        await asyncio.sleep(0.05)
    print(json.dumps({"port": port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent closes stdin to stop
    await stop.wait()
    await stream_handlers.stop(app.services)
    await app.services.cameras.stop()
    await runner.cleanup()


# --------------------------------------------------------------------------------- center side
class Center:
    def __init__(self, port: int, authority: Any) -> None:
        self.url = f"http://127.0.0.1:{port}/cmd"
        self.authority = authority

    def grant(self, dtls_fp: str) -> str:
        return str(
            self.authority.grant(
                role="district_police",
                actions=["stream_start", "stream_stop", "stream_ice"],
                aud=DEVICE,
                area=AREA,
                cameras=[CAMERA],
                ttl=600,
                extra={"dtls_fp": dtls_fp},
            )
        )

    async def command(self, http: Any, action: str, params: dict[str, Any], grant: str) -> dict[str, Any]:
        env = {"v": 1, "id": secrets.token_hex(8), "action": action, "params": params, "grant": grant}
        async with http.post(self.url, json=env) as resp:
            return await resp.json()  # type: ignore[no-any-return]


class Viewer:
    """An aiortc viewer: recvonly H.264 offer, counts (decoded or raw) frames."""

    def __init__(self) -> None:
        from aiortc import RTCPeerConnection, RTCRtpReceiver

        self.pc = RTCPeerConnection()
        t = self.pc.addTransceiver("video", direction="recvonly")
        codecs = RTCRtpReceiver.getCapabilities("video").codecs
        t.setCodecPreferences([c for c in codecs if c.mimeType.lower() in ("video/h264", "video/rtx")])
        self.first_frame = asyncio.Event()
        self.first_at = 0.0
        self.size = (0, 0)
        self.session_id = ""
        self.grant = ""
        self._task: asyncio.Task[None] | None = None

        @self.pc.on("track")
        def _on(track: Any) -> None:
            self._task = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            frame = await track.recv()
            self.first_at = time.perf_counter()
            self.size = (frame.width, frame.height)
            self.first_frame.set()
            while True:
                await track.recv()

    async def start(self, center: Center, http: Any) -> float:
        """Returns the time stream_start was sent."""
        from aiortc import RTCSessionDescription

        from agent.stream.session import offer_fingerprints

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        self.grant = center.grant(next(iter(offer_fingerprints(offer))))
        sent = time.perf_counter()
        r = await center.command(http, "stream_start", {"camera": CAMERA, "sdp": offer}, self.grant)
        if not r.get("ok"):
            raise RuntimeError(f"stream_start refused: {r.get('error')}")
        self.session_id = r["result"]["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(r["result"]["sdp"], "answer"))
        return sent

    async def stop(self, center: Center, http: Any) -> None:
        with contextlib.suppress(Exception):
            await center.command(http, "stream_stop", {"camera": CAMERA, "session_id": self.session_id}, self.grant)
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()


def _no_decode_worker(loop: Any, input_q: Any, output_q: Any, *_: Any) -> None:
    """Replacement for aiortc's receiver decoder thread: drain frames without decoding them."""
    while True:
        task = input_q.get()
        if task is None:
            asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
            return
        _no_decode_worker.frames += 1  # type: ignore[attr-defined]


_no_decode_worker.frames = 0  # type: ignore[attr-defined]


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def measure(proc: psutil.Process, window: float) -> float:
    """CPU seconds per minute of ``proc`` over ``window`` seconds."""
    c0, t0 = cpu_s(proc), time.monotonic()
    await asyncio.sleep(window)
    return (cpu_s(proc) - c0) / (time.monotonic() - t0) * 60


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def ffmpeg_reference(rtsp_url: str, window: float) -> float:
    """CPU/min of `ffmpeg -c copy` pulling the RTSP stream and sending it as SRTP to a UDP sink."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    key = base64.b64encode(os.urandom(30)).decode()
    proc = subprocess.Popen(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", rtsp_url,
            "-an", "-c", "copy", "-f", "rtp", "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80",
            "-srtp_out_params", key, f"srtp://127.0.0.1:{port}?pkt_size=1200",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    received = 0
    loop = asyncio.get_running_loop()
    loop.add_reader(sink.fileno(), lambda: sink.recv(65536))
    try:
        await asyncio.sleep(4)  # RTSP open + probe, like the agent's warm-up
        if proc.poll() is not None:
            raise RuntimeError(f"ffmpeg failed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
        cpu = await measure(psutil.Process(proc.pid), window)
        received = 1
    finally:
        loop.remove_reader(sink.fileno())
        sink.close()
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    return cpu if received else 0.0


async def run() -> dict[str, Any]:
    import aiohttp
    import aiortc.rtcrtpreceiver as receiver_mod

    from provisioning.grant_authority import GrantAuthority
    from tests.fixtures.camera import RtspCamera

    clip = make_clip()
    camera = RtspCamera({"main": clip})
    camera.start()
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    authority = GrantAuthority.create()
    state = work / "state"
    (state / "trust").mkdir(parents=True, mode=0o700)
    (state / "trust" / "keyset.json").write_text(authority.keyset_json())
    child = subprocess.Popen(
        [sys.executable, __file__, "--agent", camera.url("main"), str(state)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = {"clip": "1280x720 25 fps ~2 Mbit/s H.264 baseline, GOP 2 s", "sessions": SESSIONS}
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        center = Center(json.loads(line)["port"], authority)
        agent = psutil.Process(child.pid)
        async with aiohttp.ClientSession() as http:
            # 1. time to first decoded frame, sequential sessions
            ttff: list[float] = []
            for _ in range(SESSIONS):
                v = Viewer()
                sent = await v.start(center, http)
                await asyncio.wait_for(v.first_frame.wait(), 15)
                ttff.append(v.first_at - sent)
                result["frame_size"] = list(v.size)
                await v.stop(center, http)
            result["ttff_p50_ms"] = round(statistics.median(ttff) * 1000, 1)
            result["ttff_p95_ms"] = round(pct(ttff, 0.95) * 1000, 1)
            result["ttff_max_ms"] = round(max(ttff) * 1000, 1)

            # 2. agent CPU per forwarded stream; viewers stop decoding from here on
            receiver_mod.decoder_worker = _no_decode_worker  # type: ignore[assignment]
            await asyncio.sleep(2)
            idle = await measure(agent, WINDOW_S)
            result["agent_idle_cpu_s_per_min"] = round(idle, 2)
            for n in (1, 4, 8):
                viewers = [Viewer() for _ in range(n)]
                for v in viewers:
                    await v.start(center, http)
                await asyncio.sleep(3)
                frames0 = _no_decode_worker.frames  # type: ignore[attr-defined]
                total = await measure(agent, WINDOW_S)
                frames = _no_decode_worker.frames - frames0  # type: ignore[attr-defined]
                result[f"agent_cpu_s_per_min_{n}_viewers"] = round(total, 2)
                result[f"agent_cpu_s_per_min_per_stream_{n}_viewers"] = round((total - idle) / n, 2)
                result[f"viewer_fps_{n}_viewers"] = round(frames / WINDOW_S / n, 1)
                for v in viewers:
                    await v.stop(center, http)
                await asyncio.sleep(1)
        # 3. reference: ffmpeg -c copy to SRTP (includes its own RTSP pull, like agent 1 viewer)
        ref = await ffmpeg_reference(camera.url("main"), WINDOW_S)
        result["ffmpeg_copy_srtp_cpu_s_per_min"] = round(ref, 2)
        if ref > 0:
            result["ratio_agent_1_viewer_vs_ffmpeg"] = round(result["agent_cpu_s_per_min_1_viewers"] / ref, 2)
    finally:
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
        camera.stop()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agent", nargs=2, metavar=("RTSP_URL", "STATE_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        import logging

        logging.basicConfig(level=logging.WARNING)
        asyncio.run(agent_child(args.agent[0], Path(args.agent[1])))
        return
    t0 = time.monotonic()
    result = asyncio.run(run())
    result["bench_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
