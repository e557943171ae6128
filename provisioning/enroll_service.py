"""The center's enrollment service on the broker: answers `cam/v1/enroll/<claim id>/req`.

The broker has already authenticated the requester (its claim certificate) and its ACL lets each
identity publish only below its own `cam/v1/enroll/<CN>/`, so the identity in the topic is the
certificate's CN. The service answers on `cam/v1/enroll/<CN>/resp` (MQTT 5 correlation data echoed),
whatever response topic the request names: it never publishes where a requester asks it to.
Signing takes a few milliseconds, so requests are handled on paho's network thread.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning.broker_config import CLAIM_PREFIX, ENROLL, TOPIC_ROOT
from provisioning.center import Center, EnrollmentRefused

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 16 * 1024


def request_topic(identity: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{ENROLL}/{identity}/req"


def response_topic(identity: str, root: str = TOPIC_ROOT) -> str:
    return f"{root}/{ENROLL}/{identity}/resp"


class EnrollmentService:
    """Connects as a `center-enroll…` identity, subscribes to every enrollment request, answers each."""

    def __init__(
        self,
        center: Center,
        host: str,
        port: int,
        *,
        ca_file: str,
        cert_file: str,
        key_file: str,
        identity: str = "center-enroll",
        root: str = TOPIC_ROOT,
    ) -> None:
        self.center = center
        self.host, self.port, self.root = host, port, root
        self.ready = threading.Event()
        self.answered = 0
        self.refused = 0
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_file, key_file)
        self._client.tls_set_context(ctx)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = lambda *_a: self.ready.clear()

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; returns once requests can be received."""
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self.ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"enrollment service could not subscribe on {self.host}:{self.port}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    # paho callbacks (network thread)
    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.error("enrollment service: broker refused the connection: %s", rc)
            return
        c.subscribe(request_topic("+", self.root), qos=1)  # paho does not resubscribe by itself

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        if reasons and not reasons[0].is_failure:
            self.ready.set()
        else:
            log.error("enrollment service: subscription refused: %s", reasons)

    def _on_message(self, c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) < 2 or parts[-1] != "req":
            return
        identity = parts[-2]
        answer = self.handle(identity, bytes(msg.payload))
        props = Properties(PacketTypes.PUBLISH)
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        if corr is not None:
            props.CorrelationData = corr
        c.publish(response_topic(identity, self.root), json.dumps(answer).encode(), qos=1, properties=props)

    def handle(self, identity: str, payload: bytes) -> dict[str, Any]:
        """One request -> one answer: `{"ok": true, ...bundle}` or `{"ok": false, "error", "message"}`."""
        try:
            if not identity.startswith(CLAIM_PREFIX):
                raise EnrollmentRefused(
                    "not_a_claim",
                    f"{identity!r} is not a claim credential: a device certificate cannot enroll "
                    "(another) device; renewal goes to the renewal endpoint",
                )
            if len(payload) > MAX_REQUEST_BYTES:
                raise EnrollmentRefused("bad_request", "request too large")
            try:
                body = json.loads(payload)
                token, csr = str(body["claim"]), str(body["csr"])
                requested = body.get("requested") or {}
                if not isinstance(requested, dict):
                    raise TypeError("requested must be an object")
            except (ValueError, KeyError, TypeError) as exc:
                raise EnrollmentRefused("bad_request", f"malformed request: {exc}") from None
            bundle = self.center.enroll(token, csr, requested, identity=identity)
        except EnrollmentRefused as exc:
            self.refused += 1
            log.warning("enrollment refused for %s: %s (%s)", identity, exc.code, exc)
            return {"ok": False, "error": exc.code, "message": str(exc)}
        except Exception:
            self.refused += 1
            log.exception("enrollment failed for %s", identity)
            return {"ok": False, "error": "internal", "message": "internal error in the enrollment service"}
        self.answered += 1
        return {"ok": True, **bundle}
