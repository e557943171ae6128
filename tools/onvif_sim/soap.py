"""SOAP 1.2 envelope helpers and WS-UsernameToken digest verification for the simulator."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import time
from collections import OrderedDict
from xml.sax.saxutils import escape

from lxml import etree

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "ter": "http://www.onvif.org/ver10/error",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
DIGEST_TYPE = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
)
CONTENT_TYPE = "application/soap+xml; charset=utf-8"
_XMLNS = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items() if p not in ("wsse", "wsu"))


class SoapFault(Exception):
    """A SOAP 1.2 Fault: code is env:Sender / env:Receiver, subcode an ONVIF ter:* name."""

    def __init__(self, code: str, subcode: str, reason: str, subsubcode: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.subsubcode = subsubcode
        self.reason = reason

    @property
    def http_status(self) -> int:
        return 400 if self.code == "env:Sender" else 500

    def to_xml(self) -> str:
        inner = ""
        if self.subsubcode:
            inner = f"<env:Subcode><env:Value>{self.subsubcode}</env:Value></env:Subcode>"
        return envelope(
            "<env:Fault><env:Code><env:Value>"
            f"{self.code}</env:Value><env:Subcode><env:Value>{self.subcode}</env:Value>{inner}"
            "</env:Subcode></env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{escape(self.reason)}</env:Text></env:Reason></env:Fault>'
        )


def envelope(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {_XMLNS}><env:Body>{body}</env:Body></env:Envelope>'


def not_authorized(reason: str = "Sender not Authorized") -> SoapFault:
    return SoapFault("env:Sender", "ter:NotAuthorized", reason)


def parse_request(data: bytes) -> tuple[etree._Element | None, etree._Element]:
    """Return (Header, first Body child). Raises SoapFault on anything that is not a SOAP envelope."""
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise SoapFault("env:Sender", "ter:WellFormed", f"not well-formed XML: {exc}") from exc
    if etree.QName(root).localname != "Envelope":
        raise SoapFault("env:Sender", "ter:WellFormed", "root element is not a SOAP Envelope")
    header = None
    body = None
    for child in root:
        name = etree.QName(child).localname
        if name == "Header":
            header = child
        elif name == "Body":
            body = child
    if body is None or len(body) == 0:
        raise SoapFault("env:Sender", "ter:WellFormed", "SOAP Body is empty")
    return header, body[0]


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security UsernameToken Profile 1.0: Base64(SHA-1(nonce + created + password))."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()


def parse_created(value: str) -> dt.datetime:
    text = value.strip().replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


class DigestVerifier:
    """Checks UsernameToken digests against one user, the device clock, and a nonce replay cache."""

    def __init__(self, username: str, password: str, max_skew_s: float = 300.0) -> None:
        self.username = username
        self.password = password
        self.max_skew_s = max_skew_s
        self._nonces: OrderedDict[bytes, float] = OrderedDict()

    def verify(self, header: etree._Element | None, device_now: dt.datetime) -> None:
        if header is None:
            raise not_authorized("WS-Security header missing")
        token = header.find("wsse:Security/wsse:UsernameToken", NS)
        if token is None:
            raise not_authorized("UsernameToken missing")
        user = token.findtext("wsse:Username", namespaces=NS)
        pw_el = token.find("wsse:Password", NS)
        nonce_text = token.findtext("wsse:Nonce", namespaces=NS)
        created = token.findtext("wsu:Created", namespaces=NS)
        if pw_el is None or pw_el.get("Type", DIGEST_TYPE) != DIGEST_TYPE or not nonce_text or not created:
            raise not_authorized("only PasswordDigest with Nonce and Created is accepted")
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
            created_at = parse_created(created)
        except ValueError as exc:
            raise not_authorized(f"bad Nonce or Created: {exc}") from exc
        expected = password_digest(nonce, created, self.password)
        if user != self.username or not hmac.compare_digest(expected, (pw_el.text or "").strip()):
            raise not_authorized("wrong username or password")
        skew = abs((created_at - device_now).total_seconds())
        if skew > self.max_skew_s:
            raise not_authorized(f"Created timestamp is {skew:.0f} s away from the device clock")
        now = time.monotonic()
        while self._nonces and next(iter(self._nonces.values())) < now - 2 * self.max_skew_s:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            raise not_authorized("nonce replayed")
        self._nonces[nonce] = now


def text(el: etree._Element | None, path: str, default: str | None = None) -> str | None:
    """Text of the first descendant with this local-name path (namespace-agnostic, e.g. 'Velocity/PanTilt')."""
    if el is None:
        return default
    xpath = "./" + "/".join(f"*[local-name()='{p}']" for p in path.split("/"))
    found = el.xpath(xpath)
    if not found:
        return default
    value = found[0].text
    return value.strip() if value is not None else default


def find(el: etree._Element | None, path: str) -> etree._Element | None:
    if el is None:
        return None
    xpath = "./" + "/".join(f"*[local-name()='{p}']" for p in path.split("/"))
    found = el.xpath(xpath)
    return found[0] if found else None


def parse_duration(value: str) -> float:
    """xs:duration subset used by ONVIF timeouts (PTnHnMn.nS)."""

    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", value.strip())
    if not m or value.strip() in ("P", "PT"):
        raise SoapFault("env:Sender", "ter:InvalidArgVal", f"bad duration {value!r}")
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
