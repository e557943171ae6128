"""`python -m tools.onvif_sim --port 0 --user U --password-file F --rtsp-main URL --rtsp-sub URL`.

Prints `WSD udp://<host>:<port>` (when --wsd-port is given) and then
`READY http://<host>:<port>/onvif/device_service` once it accepts requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from aiohttp import web

from tools.onvif_sim.device import SimConfig, SimDevice
from tools.onvif_sim.server import build_app
from tools.onvif_sim.wsd import make_service, start_responder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.onvif_sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True, type=Path, help="file whose first line is the password")
    p.add_argument("--rtsp-main", required=True)
    p.add_argument("--rtsp-sub", required=True)
    p.add_argument("--no-ptz", action="store_true", help="a fixed camera: no PTZ service")
    p.add_argument("--clock-offset", type=float, default=0.0, help="device clock minus real time, seconds")
    p.add_argument("--codec", default="H264", choices=["H264", "H265", "JPEG", "MPEG4"])
    p.add_argument(
        "--ignore-move-timeout", action="store_true", help="ContinuousMove ignores Timeout (runs until Stop)"
    )
    p.add_argument(
        "--wsd-port", type=int, default=None, help="answer WS-Discovery probes on this UDP port (0=any)"
    )
    p.add_argument("--wsd-multicast", action="store_true", help="also join 239.255.255.250:3702 (real LAN)")
    p.add_argument("--name", default="EdgeSim")
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> None:
    password = args.password_file.read_text().splitlines()[0] if args.password_file.stat().st_size else ""
    cfg = SimConfig(
        username=args.user,
        password=password,
        rtsp_main=args.rtsp_main,
        rtsp_sub=args.rtsp_sub,
        ptz=not args.no_ptz,
        clock_offset_s=args.clock_offset,
        codec=args.codec,
        honour_move_timeout=not args.ignore_move_timeout,
        manufacturer=args.name,
    )
    device = SimDevice(cfg)
    runner = web.AppRunner(build_app(device), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    device.base_url = f"http://{args.host}:{port}"
    xaddr = f"{device.base_url}/onvif/device_service"
    wsd = None
    if args.wsd_port is not None or args.wsd_multicast:
        service = make_service(xaddr, args.name, cfg.model, cfg.ptz)
        wsd, wsd_port = await start_responder(service, args.host, args.wsd_port or 0)
        print(f"WSD udp://{args.host}:{wsd_port}", flush=True)
        if args.wsd_multicast:
            await start_responder(service, args.host, 0, multicast=True)
    print(f"READY {xaddr}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if wsd is not None:
        wsd.close()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(amain(args))


if __name__ == "__main__":
    main()
