"""Device side of enrollment over the broker: one request/response with the claim credential.

Blocking (paho's own thread does the I/O); `provisioning.device.provision` runs it off the event
loop. Every failure becomes a `ProvisionError` whose message tells the installer what to do.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.x509.oid import NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from provisioning.broker_config import ENROLL, TOPIC_ROOT
from provisioning.ca import write_private, write_public
from provisioning.errors import ProvisionError


def tls_error(exc: ssl.SSLError, where: str) -> ProvisionError:
    """Map a TLS verification failure to what the installer can fix."""
    msg = getattr(exc, "verify_message", None) or str(exc)
    if "not yet valid" in msg or "expired" in msg:
        return ProvisionError(
            "clock", f"TLS failed ({msg}): this box's clock is probably wrong; fix it (timedatectl, NTP)"
        )
    if "match" in msg or "hostname" in msg.lower():
        return ProvisionError(
            "tls_name",
            f"TLS name mismatch: the center's certificate is not valid for {where} ({msg}); check --center",
        )
    return ProvisionError("tls", f"TLS validation of {where} failed: {msg}")


class _Conn:
    """A short-lived MQTT 5 client with events for CONNACK, SUBACK, PUBACK and one response."""

    def __init__(self, client_id: str, ctx: ssl.SSLContext) -> None:
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.published = threading.Event()
        self.puback: ReasonCode | None = None
        self.response = threading.Event()
        self.payload = b""
        self.corr: bytes = b""
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.tls_set_context(ctx)
        self.c.reconnect_delay_set(60, 60)  # one attempt: a refused claim must not hammer the broker
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *_a: self.subscribed.set()
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.on_disconnect = lambda *_a: self.connected.set()  # refused after TLS: fail fast

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, rc: ReasonCode, _p: Any) -> None:
        self.puback = rc
        self.published.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.properties is not None and getattr(msg.properties, "CorrelationData", None) == self.corr:
            self.payload = bytes(msg.payload)
            self.response.set()

    def open(self, host: str, port: int, timeout: float, refused: ProvisionError) -> None:
        where = f"mqtts://{host}:{port}"
        self.c.connect_timeout = timeout
        try:
            self.c.connect(host, port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise tls_error(exc, where) from None
        except socket.gaierror as exc:
            raise ProvisionError("dns", f"cannot resolve {host}: {exc}; check DNS and --center") from None
        except (OSError, ssl.SSLError) as exc:
            raise ProvisionError(
                "unreachable", f"cannot reach the broker at {where}: {exc}; check network and firewall"
            ) from None
        self.c.loop_start()
        if not self.connected.wait(timeout) or self.connack is None or self.connack.is_failure:
            raise refused

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _context(ca_pem: str, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def credential_identity(cert_pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError as exc:
        raise ProvisionError(
            "claim_unreadable", f"the claim credential is not a certificate: {exc}"
        ) from None


def enroll_over_broker(
    claim: dict[str, Any],
    host: str,
    port: int,
    csr_pem: str,
    requested: dict[str, Any],
    workdir: Path,
    *,
    timeout: float = 20.0,
    root: str = TOPIC_ROOT,
) -> dict[str, Any]:
    """Connect with the claim credential, send CSR + requested identity, return the center's bundle."""
    cert = credential_identity(str(claim["claim_cert"]))
    identity = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    now = dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_before_utc > now:
        raise ProvisionError(
            "clock",
            f"the claim is not valid yet by this box's clock ({now:%Y-%m-%d %H:%M} UTC): fix the clock",
        )
    if cert.not_valid_after_utc < now:
        raise ProvisionError(
            "claim_expired",
            "the claim credential has expired (or this box's clock is far ahead): ask for a new claim",
        )
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir.chmod(0o700)
    cert_file, key_file = workdir / "claim.crt", workdir / "claim.key"
    write_public(cert_file, str(claim["claim_cert"]).encode())
    write_private(key_file, str(claim["claim_key"]).encode())
    try:
        ctx = _context(str(claim["ca"]), cert_file, key_file)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the claim key is on disk only while loading
    conn = _Conn(identity, ctx)
    conn.corr = uuid.uuid4().bytes
    try:
        conn.open(
            host,
            port,
            timeout,
            ProvisionError(
                "claim_refused_by_broker",
                "the broker did not accept the claim credential (issued by another center, already "
                "used and revoked, or expired): ask the operator unit for a new claim",
            ),
        )
        resp_topic = f"{root}/{ENROLL}/{identity}/resp"
        conn.c.subscribe(resp_topic, qos=1)
        if not conn.subscribed.wait(timeout):
            raise ProvisionError("timeout", "the broker did not confirm the enrollment subscription")
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp_topic
        props.CorrelationData = conn.corr
        body = json.dumps({"claim": claim["claim"], "csr": csr_pem, "requested": requested}).encode()
        conn.c.publish(f"{root}/{ENROLL}/{identity}/req", body, qos=1, properties=props)
        if not conn.published.wait(timeout):
            raise ProvisionError("timeout", "the broker did not acknowledge the enrollment request")
        if conn.puback is not None and conn.puback.is_failure:
            raise ProvisionError(
                "claim_not_allowed", f"the broker refused the enrollment request ({conn.puback})"
            )
        if not conn.response.wait(timeout):
            raise ProvisionError(
                "timeout",
                f"no enrollment service answered within {timeout:.0f} s: the center's service may be "
                "down; retry later (the claim is not used up)",
            )
    finally:
        conn.close()
    try:
        answer: dict[str, Any] = json.loads(conn.payload)
    except ValueError as exc:
        raise ProvisionError("bad_response", f"the enrollment service sent garbage: {exc}") from None
    if not answer.get("ok"):
        raise ProvisionError(str(answer.get("error", "refused")), str(answer.get("message", answer)))
    return answer


def check_connect(
    host: str, port: int, ca_file: Path, cert_file: Path, key_file: Path, timeout: float = 10.0
) -> None:
    """Connect once with the device's own certificate (the last step of provisioning)."""
    ctx = _context(ca_file.read_text(), cert_file, key_file)
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    cn = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    conn = _Conn(cn, ctx)
    try:
        conn.open(
            host,
            port,
            timeout,
            ProvisionError(
                "cert_refused_by_broker",
                "the broker did not accept the new device certificate (revoked, or a broker that "
                "trusts another CA)",
            ),
        )
    finally:
        conn.close()
