"""WS-Discovery responder: answers Probe with a ProbeMatch naming the simulator's device XAddr.

Multicast (239.255.255.250:3702) cannot be used in a sandboxed test, so the responder binds a UDP
port on the given host (127.0.0.1 by default) and answers unicast probes there; `edge-agent discover
--target 127.0.0.1:<port>` sends its Probe to that address. `--wsd-multicast` additionally joins the
real multicast group for use on a LAN.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid

from wsdiscovery.actions.probematch import constructProbeMatch
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage
from wsdiscovery.namespaces import NS_ACTION_PROBE
from wsdiscovery.qname import QName
from wsdiscovery.scope import Scope
from wsdiscovery.service import Service
from wsdiscovery.util import filterServices

log = logging.getLogger(__name__)
ONVIF_NS = "http://www.onvif.org/ver10/network/wsdl"
MULTICAST = ("239.255.255.250", 3702)


def make_service(xaddr: str, name: str, hardware: str, ptz: bool) -> Service:
    types = [QName(ONVIF_NS, "NetworkVideoTransmitter", "dn")]
    scopes = [
        Scope("onvif://www.onvif.org/type/video_encoder"),
        Scope("onvif://www.onvif.org/Profile/Streaming"),
        Scope(f"onvif://www.onvif.org/name/{name.replace(' ', '_')}"),
        Scope(f"onvif://www.onvif.org/hardware/{hardware.replace(' ', '_')}"),
    ]
    if ptz:
        scopes.append(Scope("onvif://www.onvif.org/type/ptz"))
    epr = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, xaddr)}"
    return Service(types, scopes, [xaddr], epr, "1")


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, service: Service) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        env = parseSOAPMessage(data, addr[0])
        if env is None or env.getAction() != NS_ACTION_PROBE or self.transport is None:
            return
        matches = filterServices([self.service], env.getTypes(), env.getScopes())
        if not matches:
            return
        reply = constructProbeMatch(matches, env.getMessageId())
        self.transport.sendto(createSOAPMessage(reply).encode(), addr)


async def start_responder(
    service: Service, host: str, port: int, multicast: bool = False
) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    if multicast:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", MULTICAST[1]))
        mreq = struct.pack("4sl", socket.inet_aton(MULTICAST[0]), socket.INADDR_ANY)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Responder(service), sock=sock)
    else:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Responder(service), local_addr=(host, port)
        )
    bound = transport.get_extra_info("sockname")[1]
    return transport, bound
