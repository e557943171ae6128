"""The MQTT 5 session to the center: TLS with the device certificate, birth/will, reconnect.

paho-mqtt's network loop runs in one dedicated thread that we drive ourselves, because paho's own
reconnect backoff has no jitter, and thousands of boxes reconnecting in lockstep after a broker
restart is exactly what full jitter prevents. A fresh paho client (and TLS context) is built for
every connection attempt, so a rotated certificate on disk is picked up without a restart.
PUBACK reason codes are checked: a broker that refuses a publish (ACL: 135) is an error, not a success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import AgentSettings
from agent.mqtt import topics
from agent.mqtt.messages import StateMessage

log = logging.getLogger(__name__)


class NotConnected(ConnectionError):
    """No connection to the broker right now; durable data stays in the outbox."""


class PublishRefused(Exception):
    """The broker answered PUBACK with a failure reason code (>= 0x80)."""

    def __init__(self, topic: str, reason: ReasonCode | int) -> None:
        value = reason.value if isinstance(reason, ReasonCode) else int(reason)
        name = str(reason) if isinstance(reason, ReasonCode) else str(value)
        super().__init__(f"broker refused publish to {topic}: {value} {name}")
        self.topic = topic
        self.reason_code = value
        self.reason = name


def full_jitter_backoff(attempt: int, base: float, cap: float) -> float:
    """AWS-style full jitter: uniform(0, min(cap, base * 2^attempt))."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 30))))


def _set_nodelay(client: mqtt.Client) -> None:
    """Small request/response packets must not wait for Nagle + delayed ACK (~40 ms per hop)."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _queue_only(*_args: Any) -> None:
    """See MqttSession._new_client: makes paho leave socket writes to the network thread."""


@dataclass
class IncomingCommand:
    payload: bytes
    response_topic: str | None
    correlation_data: bytes | None
    received_at: float


class MqttSession:
    def __init__(
        self,
        settings: AgentSettings,
        *,
        birth: Callable[[], StateMessage],
        on_command: Callable[[IncomingCommand], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.device_id = settings.device.id
        self.topics = topics.DeviceTopics(settings.center.topic_root, self.device_id)
        self._birth = birth
        self._on_command = on_command
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._reconnect_now = threading.Event()
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, asyncio.Future[None]] = {}
        self._inflight_topics: dict[int, str] = {}
        self._lock = threading.RLock()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.reconnects = 0
        self.last_error: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.settings.center.insecure_dev:
            log.warning(
                "!!! center.insecure_dev=true: MQTT WITHOUT TLS to %s:%s. Commands, events and the device "
                "identity travel in clear text. Never use this outside a development machine. !!!",
                self.settings.center.host,
                self.settings.center.port,
            )
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mqtt-net", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float = 3.0) -> None:
        """Orderly shutdown: replace the retained birth with a clean offline state, then disconnect."""
        if self.connected.is_set():
            offline = StateMessage(device_id=self.device_id, status="offline", reason="shutdown")
            try:
                await self.publish(
                    self.topics.state, offline.model_dump_json().encode(), qos=1, retain=True, timeout=timeout
                )
            except (NotConnected, PublishRefused, TimeoutError) as exc:
                log.warning("could not publish clean offline state: %s", exc)
        self._stopping.set()  # the network thread sends DISCONNECT itself (all socket I/O stays there)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
        self._fail_inflight(NotConnected("session stopped"))
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ publishing
    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Publish and, for QoS 1, wait for a successful PUBACK. Raises NotConnected,
        PublishRefused (reason code >= 0x80) or TimeoutError."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            client = self._client
            if client is None or not self.connected.is_set():
                raise NotConnected("not connected to the broker")
            info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise NotConnected(f"publish failed locally: {mqtt.error_string(info.rc)}")
            if qos == 0:
                return
            self._inflight[info.mid] = fut
            self._inflight_topics[info.mid] = topic
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            with self._lock:
                self._inflight.pop(info.mid, None)
                self._inflight_topics.pop(info.mid, None)

    def request_reconnect(self) -> None:
        """Disconnect cleanly and reconnect at once (e.g. to present a renewed certificate)."""
        self._reconnect_now.set()

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> bool:
        """Best effort (telemetry): returns False when not connected; nothing is queued."""
        with self._lock:
            client = self._client
            if client is None or not self.connected.is_set():
                return False
            return bool(client.publish(topic, payload, qos=qos, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS)

    async def publish_birth(self) -> None:
        """Re-announce (e.g. after cameras or capabilities changed)."""
        await self.publish(self.topics.state, self._birth().model_dump_json().encode(), qos=1, retain=True)

    # ------------------------------------------------------------------ network thread
    def _new_client(self) -> mqtt.Client:
        c = self.settings.center
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.device_id,
            protocol=mqtt.MQTTv5,
        )
        client.connect_timeout = 10.0
        client.max_inflight_messages_set(100)
        if not c.insecure_dev:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.settings.ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.settings.cert_file), str(self.settings.key_file))
            client.tls_set_context(ctx)
        will = StateMessage(device_id=self.device_id, status="offline", reason="lost")
        client.will_set(self.topics.state, will.model_dump_json().encode(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # Without a paho-owned thread, publish() would write to the TLS socket from the calling
        # thread while our network thread reads it: two threads on one SSL object corrupt the
        # stream ("bad record mac"). With a socket-write callback registered, publish() only
        # queues the packet and wakes our loop through paho's socket pair; all I/O stays here.
        client.on_socket_register_write = _queue_only
        return client

    def _run(self) -> None:
        c = self.settings.center
        attempt = 0
        while not self._stopping.is_set():
            try:
                client = self._new_client()
                with self._lock:
                    self._client = client
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 0
                client.connect(c.host, c.port, keepalive=c.keepalive_s, clean_start=True, properties=props)
            except (OSError, ssl.SSLError, ValueError) as exc:
                self._note_error(f"connect to {c.host}:{c.port} failed: {exc}")
            else:
                connected_at = time.monotonic()
                while not self._stopping.is_set() and not self._reconnect_now.is_set():
                    rc = client.loop(timeout=0.2)
                    if rc != mqtt.MQTT_ERR_SUCCESS:
                        if rc != mqtt.MQTT_ERR_NO_CONN or not self._stopping.is_set():
                            self._note_error(f"connection lost: {mqtt.error_string(rc)}")
                        break
                    if not client.is_connected() and time.monotonic() - connected_at > c.keepalive_s:
                        self._note_error("no CONNACK from the broker")
                        break
                if self._stopping.is_set() or self._reconnect_now.is_set():
                    # A clean DISCONNECT: the broker then discards the will (no false "lost").
                    client.disconnect()
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline and client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
                        pass
                    if self._stopping.is_set():
                        break
                if self._reconnect_now.is_set():
                    self._reconnect_now.clear()
                    self._mark_down()
                    log.info("reconnecting with the renewed identity")
                    continue
                if time.monotonic() - connected_at > 60:
                    attempt = 0  # the last connection was healthy: start the backoff over
            self._mark_down()
            if self._stopping.is_set():
                break
            delay = full_jitter_backoff(attempt, c.reconnect_min_s, c.reconnect_max_s)
            attempt += 1
            log.info("reconnecting to %s:%s in %.1f s (attempt %d)", c.host, c.port, delay, attempt)
            self._stopping.wait(delay)
        with self._lock:
            self._client = None

    def _note_error(self, msg: str) -> None:
        if msg != self.last_error:
            log.warning("mqtt: %s", msg)
        self.last_error = msg

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # loop closed during shutdown
                pass

    def _mark_down(self) -> None:
        self._call(self._set_disconnected)
        self._fail_inflight_threadsafe()

    def _set_disconnected(self) -> None:
        if self.connected.is_set():
            self.reconnects += 1
        self.connected.clear()
        self.disconnected.set()

    def _fail_inflight_threadsafe(self) -> None:
        self._call(self._fail_inflight, NotConnected("connection lost before PUBACK"))

    def _fail_inflight(self, exc: Exception) -> None:
        with self._lock:
            futs = list(self._inflight.values())
            self._inflight.clear()
            self._inflight_topics.clear()
        for fut in futs:
            if not fut.done():
                fut.set_exception(exc)

    # paho callbacks (network thread) ----------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _ud: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            self._note_error(f"broker refused the connection: {reason}")
            client.disconnect()
            return
        self.last_error = None
        _set_nodelay(client)
        client.subscribe(self.topics.cmd, qos=1)
        log.info(
            "connected to %s:%s as %s", self.settings.center.host, self.settings.center.port, self.device_id
        )
        self._call(self._connected)

    def _connected(self) -> None:
        self.connected.set()
        self.disconnected.clear()
        self._spawn(self._announce())

    async def _announce(self) -> None:
        try:
            await self.publish_birth()
        except (NotConnected, PublishRefused, TimeoutError) as exc:
            log.error("birth message not accepted: %s", exc)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: ReasonCode, _p: Any) -> None:
        if not self._stopping.is_set():
            self._note_error(f"disconnected: {reason}")

    def _on_subscribe(self, _c: mqtt.Client, _ud: Any, _mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        for r in reasons:
            if r.is_failure:
                self._note_error(f"subscription to {self.topics.cmd} refused: {r}")

    def _on_publish(self, _c: mqtt.Client, _ud: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._call(self._resolve_publish, mid, reason)

    def _resolve_publish(self, mid: int, reason: ReasonCode) -> None:
        with self._lock:
            fut = self._inflight.get(mid)
            topic = self._inflight_topics.get(mid, "?")
        if fut is None or fut.done():
            return
        if reason.is_failure:
            fut.set_exception(PublishRefused(topic, reason))
        else:
            fut.set_result(None)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        cmd = IncomingCommand(
            payload=bytes(msg.payload),
            response_topic=getattr(props, "ResponseTopic", None),
            correlation_data=getattr(props, "CorrelationData", None),
            received_at=time.time(),
        )
        self._call(self._dispatch, cmd)

    def _dispatch(self, cmd: IncomingCommand) -> None:
        self._spawn(self._on_command(cmd))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
