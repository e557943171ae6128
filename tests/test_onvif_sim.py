"""The simulator itself: digest check, faults on the wire, PTZ mechanics (it must be a credible camera)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import urllib.error
import urllib.request

import pytest

from tools.onvif_sim.ptz_state import Position, PtzState
from tools.onvif_sim.soap import SoapFault, parse_duration, password_digest

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"


def test_digest_formula_matches_ws_security_profile():
    nonce = bytes(range(16))
    created = "2026-11-28T12:00:00Z"
    expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + b"pw").digest()).decode()
    assert password_digest(nonce, created, "pw") == expected


def _envelope(body: str, user: str | None, password: str | None, *, nonce: bytes | None = None,
              created: str | None = None) -> bytes:  # fmt: skip
    header = ""
    if user is not None and password is not None:
        nonce = nonce or os.urandom(16)
        created = created or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        header = (
            f'<s:Header><wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken>'
            f"<wsse:Username>{user}</wsse:Username>"
            f'<wsse:Password Type="{DIGEST}">{password_digest(nonce, created, password)}</wsse:Password>'
            f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
            "</wsse:UsernameToken></wsse:Security></s:Header>"
        )
    return (
        f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">{header}<s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def _post(url: str, data: bytes) -> tuple[int, str]:
    req = urllib.request.Request(url, data, {"Content-Type": "application/soap+xml; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


INFO = '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>'


def test_soap_faults_on_the_wire(onvif_sim):
    status, body = _post(onvif_sim.url, _envelope(INFO, None, None))
    assert status == 400 and "env:Sender" in body and "ter:NotAuthorized" in body
    status, body = _post(onvif_sim.url, _envelope(INFO, onvif_sim.username, "nope"))
    assert status == 400 and "ter:NotAuthorized" in body
    nonce = os.urandom(16)
    status, body = _post(onvif_sim.url, _envelope(INFO, onvif_sim.username, onvif_sim.password, nonce=nonce))
    assert status == 200 and "<tds:Manufacturer>EdgeSim</tds:Manufacturer>" in body
    status, body = _post(onvif_sim.url, _envelope(INFO, onvif_sim.username, onvif_sim.password, nonce=nonce))
    assert status == 400 and "replayed" in body
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = _post(onvif_sim.url, _envelope(INFO, onvif_sim.username, onvif_sim.password, created=old))
    assert status == 400 and "device clock" in body
    status, body = _post(onvif_sim.url, _envelope('<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>', None, None))  # fmt: skip
    assert status == 200 and "UTCDateTime" in body
    status, body = _post(onvif_sim.url, _envelope('<FactoryReset xmlns="urn:x"/>', onvif_sim.username, onvif_sim.password))  # fmt: skip
    assert status == 500 and "ter:ActionNotSupported" in body
    status, body = _post(onvif_sim.url, b"<not-xml")
    assert status == 400 and "ter:WellFormed" in body


def test_no_ptz_mode_does_not_answer_ptz(onvif_sim_factory):
    sim = onvif_sim_factory(no_ptz=True)
    body = '<GetNodes xmlns="http://www.onvif.org/ver20/ptz/wsdl"/>'
    status, text = _post(
        sim.url.replace("device_service", "ptz_service"), _envelope(body, sim.username, sim.password)
    )
    assert status == 500 and "ActionNotSupported" in text


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_ptz_state_moves_with_speed_times_time_and_clamps():
    clock = FakeClock()
    st = PtzState(clock=clock)
    st.continuous_move(Position(1.0, -0.5, 0.0), timeout_s=1.0)
    clock.t = 0.5
    assert st.position().pan == pytest.approx(0.25) and st.moving()
    clock.t = 10.0  # the camera's own timeout stopped it at t=1
    assert st.position().pan == pytest.approx(0.5) and st.position().tilt == pytest.approx(-0.25)
    assert not st.moving()
    st.continuous_move(Position(1.0, 0, 0), timeout_s=None)
    clock.t = 100.0
    assert st.position().pan == 1.0 and st.moving()  # clamped at the end stop, still "moving" until Stop
    st.stop()
    assert not st.moving()
    st.set_home()
    st.absolute_move(Position(-0.3, 0.3, 0.5))
    st.goto_home()
    assert st.position().pan == 1.0


def test_ptz_state_ignoring_timeout_runs_until_stop():
    clock = FakeClock()
    st = PtzState(clock=clock, honour_timeout=False)
    st.continuous_move(Position(0.2, 0, 0), timeout_s=0.1)
    clock.t = 5.0
    assert st.moving() and st.position().pan == pytest.approx(0.5)


def test_duration_parsing():
    assert parse_duration("PT1.5S") == 1.5
    assert parse_duration("PT1M2S") == 62
    with pytest.raises(SoapFault):
        parse_duration("5s")
