"""The generated Mosquitto config and ACL, enforced by a real broker with real certificates."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from provisioning.broker_config import render_acl, reserved_identity
from provisioning.ca import CertificateAuthority

OK = (0, 16)  # success, or "no matching subscribers" (still accepted)


class Conn:
    """A paho 2.x MQTT 5 client that records CONNACK, PUBACK reason codes, messages and disconnects."""

    def __init__(self, broker: Any, creds: Any | None, client_id: str) -> None:
        self.connack: int | None = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.pubacks: dict[int, int] = {}
        self.puback_evt = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(broker.ca_file))
        if creds is not None:
            ctx.load_cert_chain(str(creds.cert_file), str(creds.key_file))
        self.c.tls_set_context(ctx)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.c.on_connect_fail = lambda *a: self.disconnected.set()
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.c.reconnect_delay_set(5, 5)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connack = rc.value
        if rc.value == 0:
            self.connected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self.puback_evt:
            self.pubacks[mid] = rc.value
            self.puback_evt.notify_all()

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.c.publish(topic, payload, qos=1)
        with self.puback_evt:
            assert self.puback_evt.wait_for(lambda: info.mid in self.pubacks, 10), "no PUBACK"
            return self.pubacks[info.mid]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_device_publishes_only_below_its_own_id(broker: Any) -> None:
    dev = Conn(broker, broker.issue_device("box-a1"), "box-a1")
    try:
        assert dev.connected.wait(10)
        assert dev.publish("cam/v1/box-a1/events") in OK
        assert dev.publish("cam/v1/box-a1/resp/center-x") in OK
        assert dev.publish("cam/v1/box-b2/events") == 135  # Not authorized (another device)
        assert dev.publish("cam/v1/box-b2/cmd") == 135
        assert dev.publish("cam/v1/enroll/claim-0123/req") == 135  # another claim's enrollment
    finally:
        dev.close()


def test_no_certificate_or_foreign_ca_is_refused(broker: Any, tmp_path: Any) -> None:
    anon = Conn(broker, None, "anon")
    other = CertificateAuthority.create(tmp_path / "other")
    cert, key = other.issue_client("box-a1")
    from provisioning.ca import cert_pem, key_pem, write_private, write_public

    write_public(tmp_path / "f.crt", cert_pem(cert) + cert_pem(other.int_cert))
    write_private(tmp_path / "f.key", key_pem(key))
    creds = type("C", (), {"cert_file": tmp_path / "f.crt", "key_file": tmp_path / "f.key"})()
    foreign = Conn(broker, creds, "box-a1")
    try:
        assert anon.disconnected.wait(10) and foreign.disconnected.wait(10)  # dropped by the broker
        assert not anon.connected.is_set() and not foreign.connected.is_set()  # never a CONNACK
    finally:
        anon.close()
        foreign.close()


def test_another_certificate_cannot_take_over_a_device_client_id(broker: Any) -> None:
    real = Conn(broker, broker.issue_device("box-a1"), "box-a1")
    assert real.connected.wait(10)
    intruder = Conn(broker, broker.issue_device("box-zz"), "box-a1")  # asks for the victim's client id
    try:
        assert intruder.connected.wait(10)
        assert intruder.publish("cam/v1/box-a1/events") == 135  # it is still box-zz to the broker
        time.sleep(0.5)
        assert not real.disconnected.is_set()  # the real box was not kicked
        assert real.publish("cam/v1/box-a1/events") in OK
    finally:
        real.close()
        intruder.close()


def test_center_reads_devices_and_writes_only_commands(broker: Any) -> None:
    center = Conn(broker, broker.issue_center("center-console"), "center-console")
    dev = Conn(broker, broker.issue_device("box-a1"), "box-a1")
    try:
        assert center.connected.wait(10) and dev.connected.wait(10)
        center.c.subscribe("cam/v1/#", qos=1)
        time.sleep(0.3)
        assert center.publish("cam/v1/box-a1/cmd") in OK
        assert center.publish("cam/v1/box-a1/state") == 135  # cannot impersonate a device
        assert dev.publish("cam/v1/box-a1/resp/center-console", b"r") in OK
        deadline = time.monotonic() + 5
        while not any(t.endswith("/resp/center-console") for t, _ in center.messages):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        center.close()
        dev.close()


def test_enrollment_service_is_confined_to_enrollment_topics(broker: Any) -> None:
    svc = Conn(broker, broker.issue_center("center-enroll"), "center-enroll")
    claim = Conn(broker, broker.issue_device("claim-abc"), "claim-abc")  # a claim-like identity
    try:
        assert svc.connected.wait(10) and claim.connected.wait(10)
        svc.c.subscribe("cam/v1/enroll/+/req", qos=1)
        time.sleep(0.3)
        assert claim.publish("cam/v1/enroll/claim-abc/req") in OK
        assert svc.publish("cam/v1/enroll/claim-abc/resp") in OK
        assert svc.publish("cam/v1/box-a1/cmd") == 135  # no commands from the enrollment service
        deadline = time.monotonic() + 5
        while not svc.messages:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert svc.messages[0][0] == "cam/v1/enroll/claim-abc/req"
    finally:
        svc.close()
        claim.close()


def test_acl_rejects_bad_center_names_and_reserved_device_ids() -> None:
    with pytest.raises(ValueError):
        render_acl(["console"])
    for bad in ("enroll", "claim-1", "center-x", "a/b", "a+b", ""):
        assert reserved_identity(bad)
    assert reserved_identity("yb-001-0042") is None


def test_a_device_cannot_read_another_devices_topics_or_enrollments(broker: Any) -> None:
    spy = Conn(broker, broker.issue_device("box-a1"), "box-a1")
    victim = Conn(broker, broker.issue_device("box-b2"), "box-b2")
    center = Conn(broker, broker.issue_center("center-console"), "center-console")
    try:
        assert spy.connected.wait(10) and victim.connected.wait(10) and center.connected.wait(10)
        for c, flt in ((spy, "cam/v1/#"), (spy, "cam/v1/box-b2/#"), (center, "cam/v1/box-b2/#")):
            c.c.subscribe(flt, qos=1)
        spy.c.subscribe("cam/v1/box-a1/#", qos=1)
        time.sleep(0.3)
        assert victim.publish("cam/v1/box-b2/events", b"secret") in OK
        assert victim.publish("cam/v1/enroll/box-b2/req", b"renewal") in OK
        assert spy.publish("cam/v1/box-a1/events", b"mine") in OK  # published after the victim's
        deadline = time.monotonic() + 5
        while not any(t == "cam/v1/box-b2/events" for t, _ in center.messages) or not spy.messages:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert all(t.startswith("cam/v1/box-a1/") for t, _ in spy.messages), spy.messages
    finally:
        spy.close()
        victim.close()
        center.close()
