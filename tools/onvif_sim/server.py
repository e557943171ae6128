"""aiohttp SOAP 1.2 endpoint of the simulator: one handler for every /onvif/* path, dispatch on Body."""

from __future__ import annotations

import asyncio
import io
import logging

from aiohttp import web

from tools.onvif_sim.device import SimDevice, record
from tools.onvif_sim.soap import CONTENT_TYPE, DigestVerifier, SoapFault, envelope, parse_request

log = logging.getLogger(__name__)
UNAUTHENTICATED = {"GetSystemDateAndTime"}
MAX_REQUEST_BYTES = 256 * 1024


def _jpeg(width: int = 160, height: int = 90) -> bytes:
    """A small grey JPEG for GetSnapshotUri, encoded with PyAV (already a project dependency)."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mjpeg") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 128, np.uint8), format="rgb24")
        for packet in stream.encode(frame.reformat(format="yuvj420p")):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def build_app(device: SimDevice) -> web.Application:
    verifier = DigestVerifier(device.cfg.username, device.cfg.password)
    snapshot: dict[str, bytes] = {}

    async def soap(request: web.Request) -> web.Response:
        data = await request.read()
        op = "?"
        req = None
        try:
            if len(data) > MAX_REQUEST_BYTES:
                raise SoapFault("env:Sender", "ter:InvalidArgs", "request too large")
            header, req = parse_request(data)
            op = req.xpath("local-name()")
            ops = device.operations()
            if op not in UNAUTHENTICATED:
                verifier.verify(header, device.now())
            if op not in ops:
                raise SoapFault("env:Receiver", "ter:ActionNotSupported", f"{op} is not supported")
            record(device, op, True, req)
            body = ops[op][1](req)
            return web.Response(text=envelope(body), content_type="application/soap+xml", charset="utf-8")
        except SoapFault as fault:
            if fault.subcode == "ter:NotAuthorized":
                record(device, op, False, None)
            log.info("fault %s %s: %s", op, fault.subcode, fault.reason)
            return web.Response(
                status=fault.http_status, body=fault.to_xml().encode(), headers={"Content-Type": CONTENT_TYPE}
            )

    async def get_snapshot(request: web.Request) -> web.Response:
        if "jpeg" not in snapshot:
            snapshot["jpeg"] = await asyncio.to_thread(_jpeg)
        return web.Response(body=snapshot["jpeg"], content_type="image/jpeg")

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(device.state())

    async def post_control(request: web.Request) -> web.Response:
        """Test hook: change the device at runtime, e.g. {"clock_offset_s": 600} (an NTP jump)."""
        data = await request.json()
        if "clock_offset_s" in data:
            device.cfg.clock_offset_s = float(data["clock_offset_s"])
        return web.json_response(device.state())

    app = web.Application(client_max_size=MAX_REQUEST_BYTES * 2)
    app.router.add_post("/sim/control", post_control)
    app.router.add_post("/onvif/{service}", soap)
    app.router.add_get("/snapshot/{name}", get_snapshot)
    app.router.add_get("/sim/state", get_state)
    return app
