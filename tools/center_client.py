"""A minimal center-side MQTT client: watches devices and sends commands (request/response).

Reference for the center's integration and the engine of the demo console, tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class CenterCreds:
    host: str
    port: int
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    name: str  # the center identity (certificate CN), e.g. "center-console"
    insecure: bool = False
    persistent: bool = True  # the broker keeps our subscriptions and queues QoS 1 messages while we are away


def _resolve(fut: asyncio.Future[dict[str, Any]], data: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(data)


class CenterClient:
    def __init__(self, creds: CenterCreds, topic_root: str = "cam/v1") -> None:
        self.creds = creds
        self.root = topic_root
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str, bytes, bool], None]] = []
        self.connected = asyncio.Event()
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=creds.name,
            protocol=mqtt.MQTTv5,
        )
        if not creds.insecure:
            ctx = ssl.create_default_context(cafile=str(creds.ca_file))
            assert creds.cert_file and creds.key_file
            ctx.load_cert_chain(str(creds.cert_file), str(creds.key_file))
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: (
            self._loop and self._loop.call_soon_threadsafe(self.connected.clear)
        )

    async def start(self, watch: str | None = "#") -> None:
        self._loop = asyncio.get_running_loop()
        self._watch = watch
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if self.creds.persistent else 0
        self.client.connect_async(
            self.creds.host,
            self.creds.port,
            keepalive=30,
            clean_start=not self.creds.persistent,
            properties=props,
        )
        self.client.loop_start()
        await asyncio.wait_for(self.connected.wait(), 15)

    async def stop(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subs = [(f"{self.root}/+/resp/{self.creds.name}", 1)]
        if self._watch:
            subs.append((f"{self.root}/{self._watch}", 1))
        client.subscribe(subs)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, *_a: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        corr = getattr(msg.properties, "CorrelationData", None)
        if corr is not None and msg.topic.endswith(f"/resp/{self.creds.name}"):
            with self._lock:
                fut = self._pending.pop(corr, None)
            if fut is not None and self._loop is not None:
                data = json.loads(msg.payload)
                self._loop.call_soon_threadsafe(_resolve, fut, data)
                return
        for listener in self.listeners:
            listener(msg.topic, bytes(msg.payload), bool(msg.retain))

    async def command(
        self,
        device_id: str,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        grant: str | None = None,
        approval: str | None = None,
        timeout: float = 10.0,
        raw: bytes | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its response (matched by MQTT 5 correlation data)."""
        assert self._loop is not None
        corr = uuid.uuid4().bytes
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        with self._lock:
            self._pending[corr] = fut
        body = {"id": uuid.uuid4().hex, "action": action, "params": params or {}}
        if grant:
            body["grant"] = grant
        if approval:
            body["approval"] = approval
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.root}/{device_id}/resp/{self.creds.name}"
        props.CorrelationData = corr
        payload = raw if raw is not None else json.dumps(body).encode()
        self.client.publish(f"{self.root}/{device_id}/cmd", payload, qos=1, properties=props)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            with self._lock:
                self._pending.pop(corr, None)
