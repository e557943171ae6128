"""Find ONVIF cameras (WS-Discovery) and interrogate each one (device info, streams, snapshot, PTZ).

Probe messages are built and parsed with the maintained ``wsdiscovery`` library; the UDP transport is
ours (asyncio) so that one probe can go either to the standard multicast group or to a unicast
``host:port``. Unicast is what tests use (multicast does not work in a sandbox) and what an installer
uses when the camera sits on another subnet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wsdiscovery.actions.probe import constructProbe
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
from wsdiscovery.namespaces import NS_ACTION_PROBE_MATCH
from wsdiscovery.qname import QName

from agent.camera.onvif_client import OnvifClient, OnvifError, StreamSelection
from agent.camera.onvif_credentials import OnvifCredentials

log = logging.getLogger(__name__)
MULTICAST = ("239.255.255.250", 3702)
ONVIF_TYPE = QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")
_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class DiscoveredDevice:
    xaddr: str
    epr: str
    scopes: tuple[str, ...]
    responder: str  # IP address the ProbeMatch came from

    def scope(self, kind: str) -> str | None:
        prefix = f"onvif://www.onvif.org/{kind}/"
        for s in self.scopes:
            if s.startswith(prefix):
                return s[len(prefix) :]
        return None


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, DiscoveredDevice] = {}

    def error_received(self, exc: Exception) -> None:
        log.warning("WS-Discovery probe: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        env = parseSOAPMessage(data, addr[0])
        if env is None or env.getAction() != NS_ACTION_PROBE_MATCH or env.getRelatesTo() != self.message_id:
            return
        for match in env.getProbeResolveMatches():
            xaddrs = [x for x in match.getXAddrs() if urlsplit(x).scheme in ("http", "https")]
            if not xaddrs:
                continue
            # Prefer the XAddr on the address that answered (cameras list every interface they have).
            xaddr = next((x for x in xaddrs if urlsplit(x).hostname == addr[0]), xaddrs[0])
            epr = str(match.getEPR())
            self.found.setdefault(
                epr, DiscoveredDevice(xaddr, epr, tuple(str(s) for s in match.getScopes()), addr[0])
            )


async def probe(
    targets: list[tuple[str, int]] | None = None, timeout_s: float = 3.0, repeats: int = 2
) -> list[DiscoveredDevice]:
    """Send a WS-Discovery Probe for NetworkVideoTransmitters and collect ProbeMatches for ``timeout_s``.

    ``targets`` None means the standard multicast group 239.255.255.250:3702.
    """
    env = constructProbe([ONVIF_TYPE], [])
    payload = createSOAPMessage(env).encode()
    dests = targets or [MULTICAST]
    loopback_only = all(h.startswith("127.") for h, _ in dests)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setblocking(False)
    sock.bind(("127.0.0.1" if loopback_only else "0.0.0.0", 0))
    if targets is None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    loop = asyncio.get_running_loop()
    collector = _Collector(env.getMessageId())
    transport, _ = await loop.create_datagram_endpoint(lambda: collector, sock=sock)
    try:
        for i in range(repeats):
            for dest in dests:
                transport.sendto(payload, dest)
            if i + 1 < repeats:
                await asyncio.sleep(min(0.2, timeout_s / 4))
        await asyncio.sleep(timeout_s)
    finally:
        transport.close()
    return sorted(collector.found.values(), key=lambda d: d.xaddr)


@dataclass
class CameraReport:
    """What `edge-agent discover` learned about one camera (or why it could not)."""

    xaddr: str
    name: str
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    streams: StreamSelection | None = None
    snapshot_uri: str | None = None
    ptz: dict[str, Any] | None = None
    clock_offset_s: float | None = None
    error: str | None = None
    error_kind: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.streams is not None


async def interrogate(xaddr: str, name: str, creds: OnvifCredentials, timeout_s: float = 5.0) -> CameraReport:
    report = CameraReport(xaddr=xaddr, name=name)
    client = OnvifClient(xaddr, creds, timeout_s=timeout_s)
    try:
        await client.connect()
        report.clock_offset_s = client.clock_offset_s
        if client.info:
            report.manufacturer, report.model, report.serial = (
                client.info.manufacturer,
                client.info.model,
                client.info.serial,
            )
        report.ptz = client.ptz_capabilities.as_dict()
        if abs(client.clock_offset_s) > 5:
            report.notes.append(
                f"camera clock is {client.clock_offset_s:+.0f} s off (compensated; fix its NTP)"
            )
        report.streams = await client.select_streams()
        report.notes.extend(report.streams.notes)
        report.snapshot_uri = await client.snapshot_uri(report.streams.main.profile)
    except OnvifError as exc:
        report.error, report.error_kind = exc.message, exc.kind.value
    finally:
        await client.close()
    return report


def suggest_names(devices: list[DiscoveredDevice], prefix: str = "cam") -> list[str]:
    """Stable, config-valid names: <prefix>1, <prefix>2 ... in XAddr order."""
    clean = re.sub(r"[^a-z0-9_-]", "", prefix.lower()) or "cam"
    return [f"{clean}{i}" for i in range(1, len(devices) + 1)]


def render_table(reports: list[CameraReport]) -> str:
    headers = ["name", "address", "device", "main", "sub", "ptz", "clock", "status"]
    rows = []
    for r in reports:
        s = r.streams
        main = f"{s.main.encoding} {s.main.width}x{s.main.height}" if s else "-"
        sub = f"{s.sub.encoding} {s.sub.width}x{s.sub.height}" if s and s.sub else "-"
        ptz = "-" if r.ptz is None else ("yes" if r.ptz.get("supported") else "no")
        clock = "-" if r.clock_offset_s is None else f"{r.clock_offset_s:+.0f}s"
        host = urlsplit(r.xaddr).netloc
        status = "ok" if r.ok else f"{r.error_kind}: {r.error}"
        rows.append(
            [r.name, host, f"{r.manufacturer} {r.model}".strip() or "-", main, sub, ptz, clock, status]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _q(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def camera_toml(reports: list[CameraReport], credentials: dict[str, Path]) -> str:
    """``[[cameras]]`` tables for every camera that answered with an H.264 stream."""
    out: list[str] = []
    for r in reports:
        if not r.ok or r.streams is None:
            continue
        if not _NAME_OK.match(r.name):
            raise ValueError(f"camera name {r.name!r} is not valid in the config")
        desc = f"{r.manufacturer} {r.model} {r.serial}".strip()
        out.append(f"# {desc} discovered at {r.xaddr}")
        out.append("[[cameras]]")
        out.append(f"name = {_q(r.name)}")
        out.append(f"main_url = {_q(r.streams.main.uri)}")
        if r.streams.sub is not None:
            out.append(f"sub_url = {_q(r.streams.sub.uri)}")
        out.append("")
        out.append("[cameras.onvif]")
        out.append(f"url = {_q(r.xaddr)}")
        out.append(f"credentials_file = {_q(str(credentials[r.name]))}")
        out.append("")
    return "\n".join(out)
