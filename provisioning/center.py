"""The center's enrollment logic (reference): claims, enrollment and renewal.

A claim is a one-time, short-lived token (EdDSA JWT: organization, location, device id, expiry,
jti) plus a claim credential: a certificate whose CN is ``claim-<jti>``, valid only on the broker's
enrollment topics (ACL) and accepted by the enrollment service once, together with its own token.
Two transports share this logic:

- over the broker (provisioning/enroll_service.py, the default; ``mqtts://`` center URL): the box
  needs to reach only the broker, the one port it needs anyway; no password exists anywhere
  (the broker requires a client certificate from everyone);
- over HTTPS (`serve`, ``https://`` center URL, EST-like): for sites where the enrollment service
  is published separately; renewal (mutual TLS with the current device certificate) always uses it,
  because a second MQTT connection with the device's own identity would take over the agent's
  session (the client id is forced to the certificate CN).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from provisioning.broker_config import CLAIM_PREFIX
from provisioning.ca import CertificateAuthority, CsrRejected, cert_pem, key_pem, write_private, write_public
from provisioning.grant_authority import GrantAuthority

log = logging.getLogger(__name__)
CLAIM_AUD = "edge-enroll"


class EnrollmentRefused(Exception):
    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class Center:
    """Everything the operator unit keeps: CA, claim key, used claims, grant authority."""

    dir: Path
    ca: CertificateAuthority
    claim_key: Ed25519PrivateKey
    authority: GrantAuthority
    broker_host: str = "127.0.0.1"
    broker_port: int = 8883
    cert_days: float = 90
    renew_url: str = ""  # https://HOST:PORT of the renewal endpoint, handed to enrolled devices
    # a claim credential outlives its token by this much, so an expired claim still reaches the
    # enrollment service and gets a clear "claim_expired" instead of a silent TLS refusal
    claim_cert_grace_s: float = 86400

    @classmethod
    def create(cls, directory: Path, ca: CertificateAuthority | None = None, **kw: Any) -> Center:
        """New center state; `ca` reuses an existing CA (tests share one), else one is created."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca = ca or CertificateAuthority.create(directory / "ca")
        claim_key = Ed25519PrivateKey.generate()
        write_private(
            directory / "claim.key",
            claim_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        ga = GrantAuthority.create()
        ga.save(directory / "authority")
        return cls(directory, ca, claim_key, ga, **kw)

    @classmethod
    def load(cls, directory: Path, ca: CertificateAuthority | None = None, **kw: Any) -> Center:
        k = serialization.load_pem_private_key((directory / "claim.key").read_bytes(), None)
        assert isinstance(k, Ed25519PrivateKey)
        return cls(
            directory,
            ca or CertificateAuthority(directory / "ca"),
            k,
            GrantAuthority.load(directory / "authority"),
            **kw,
        )

    # ---------------------------------------------------------------- claims
    def issue_claim(
        self,
        *,
        device_id: str,
        org: str,
        location: dict[str, str],
        ttl_s: float = 86400,
        center_url: str = "",
    ) -> dict[str, Any]:
        """What the installer receives (a file, 0600): a one-time token bound to org, location and
        device id, the claim credential for the broker's enrollment topic, and the center's root."""
        t = int(time.time())
        jti = uuid.uuid4().hex
        claim_id = f"{CLAIM_PREFIX}{jti}"
        cert, key = self.ca.issue_claim_cert(
            claim_id,
            dt.datetime.fromtimestamp(t + int(ttl_s) + self.claim_cert_grace_s, dt.timezone.utc),
        )
        token = jwt.encode(
            {
                "aud": CLAIM_AUD,
                "sub": claim_id,
                "jti": jti,
                "iat": t,
                "exp": t + int(ttl_s),
                "device_id": device_id,
                "org": org,
                "location": location,
            },
            self.claim_key,
            algorithm="EdDSA",
        )
        return {
            "claim": token,
            "center": center_url or f"mqtts://{self.broker_host}:{self.broker_port}",
            "ca": self.ca.root_cert.public_bytes(serialization.Encoding.PEM).decode(),
            "claim_cert": (cert_pem(cert) + cert_pem(self.ca.int_cert)).decode(),
            "claim_key": key_pem(key).decode(),
        }

    def _used_file(self) -> Path:
        return self.dir / "used-claims.json"

    def _used(self) -> set[str]:
        f = self._used_file()
        return set(json.loads(f.read_text())) if f.exists() else set()

    def verify_claim(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.claim_key.public_key(),
                algorithms=["EdDSA"],
                audience=CLAIM_AUD,
                options={"require": ["exp", "jti", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise EnrollmentRefused(
                "claim_expired", "the claim token has expired; ask the operator unit for a new one"
            ) from None
        except jwt.InvalidSignatureError:
            raise EnrollmentRefused("claim_forged", "the claim token is not signed by this center") from None
        except jwt.PyJWTError as exc:
            raise EnrollmentRefused("claim_invalid", f"the claim token is invalid: {exc}") from None
        if claims["jti"] in self._used():
            raise EnrollmentRefused("claim_used", "this claim token was already used (claims work once)")
        return claims

    # ---------------------------------------------------------------- enrollment
    _lock = threading.Lock()

    def enroll(
        self, token: str, csr_pem: str, requested: dict[str, Any], identity: str | None = None
    ) -> dict[str, Any]:
        """Sign the CSR if the claim is valid, unused and matches; `identity` is the broker-verified
        claim credential (CN) the request came from, which must be the token's own."""
        with self._lock:
            claims = self.verify_claim(token)
            if identity is not None and claims.get("sub") != identity:
                raise EnrollmentRefused(
                    "claim_mismatch", "this claim token belongs to another claim credential"
                )
            if requested.get("org") not in (None, claims["org"]):
                raise EnrollmentRefused(
                    "wrong_org", f"the claim is for organization {claims['org']!r}, not {requested['org']!r}"
                )
            if requested.get("device_id") not in (None, claims["device_id"]):
                raise EnrollmentRefused(
                    "wrong_device",
                    f"the claim is for device {claims['device_id']!r}, not {requested['device_id']!r}",
                )
            if requested.get("location") not in (None, claims["location"]):
                raise EnrollmentRefused("wrong_location", "the claim is for another location")
            csr = _load_csr(csr_pem)
            try:
                cert = self.ca.sign_device_csr(csr, claims["device_id"], claims["org"], self.cert_days)
            except CsrRejected as exc:
                raise EnrollmentRefused("csr_rejected", str(exc), 400) from None
            used = self._used() | {claims["jti"]}
            write_public(self._used_file(), json.dumps(sorted(used)).encode())
            for rec in self.ca.serials_of(str(claims.get("sub", "")), "claim"):
                if not rec.revoked:
                    self.ca.revoke(rec.serial)  # spent: the claim credential goes on the CRL
        log.info("enrolled %s for %s", claims["device_id"], claims["org"])
        return self._bundle(cert, claims["device_id"], claims["org"], claims["location"])

    def renew(self, peer: x509.Certificate | None, csr_pem: str) -> dict[str, Any]:
        if peer is None:
            raise EnrollmentRefused(
                "no_client_cert", "renewal needs the current device certificate (mutual TLS)", 401
            )
        if self.ca.is_revoked(peer.serial_number):
            raise EnrollmentRefused(
                "revoked", "this device certificate is revoked; enroll again with a new claim"
            )
        device_id = peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        org = peer.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        try:
            cert = self.ca.sign_device_csr(_load_csr(csr_pem), str(device_id), str(org), self.cert_days)
        except CsrRejected as exc:
            raise EnrollmentRefused("csr_rejected", str(exc), 400) from None
        return self._bundle(cert, str(device_id), str(org), None)

    def _bundle(self, cert: x509.Certificate, device_id: str, org: str, location: Any) -> dict[str, Any]:
        return {
            "device_id": device_id,
            "org": org,
            "location": location,
            "certificate": cert_pem(cert).decode(),
            "chain": self.ca.chain_pem.decode(),
            "trust_keyset": self.authority.keyset(),
            "broker": {"host": self.broker_host, "port": self.broker_port},
            "renew_url": self.renew_url,
            "server_time": time.time(),
        }

    # ---------------------------------------------------------------- HTTPS service
    def server_ssl(self, hostnames: list[str]) -> ssl.SSLContext:
        cert, key = self.ca.issue_server(hostnames)
        write_public(self.dir / "enroll-server.crt", cert_pem(cert) + self.ca.chain_pem)
        write_private(self.dir / "enroll-server.key", key_pem(key))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca.root_file))
        ctx.load_cert_chain(self.dir / "enroll-server.crt", self.dir / "enroll-server.key")
        ctx.verify_mode = ssl.CERT_OPTIONAL  # enrollment: claim; renewal: the device certificate
        return ctx

    def app(self) -> web.Application:
        async def enroll(req: web.Request) -> web.Response:
            try:
                body = await req.json()
                return web.json_response(
                    self.enroll(str(body["claim"]), str(body["csr"]), body.get("requested") or {})
                )
            except EnrollmentRefused as exc:
                return web.json_response({"error": exc.code, "message": str(exc)}, status=exc.status)
            except (KeyError, ValueError, TypeError) as exc:
                return web.json_response(
                    {"error": "bad_request", "message": f"malformed request: {exc}"}, status=400
                )

        async def renew(req: web.Request) -> web.Response:
            der = (
                req.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
                if req.transport
                else None
            )
            peer = x509.load_der_x509_certificate(der) if der else None
            try:
                body = await req.json()
                return web.json_response(self.renew(peer, str(body["csr"])))
            except EnrollmentRefused as exc:
                return web.json_response({"error": exc.code, "message": str(exc)}, status=exc.status)
            except (KeyError, ValueError, TypeError) as exc:
                return web.json_response(
                    {"error": "bad_request", "message": f"malformed request: {exc}"}, status=400
                )

        async def now(_req: web.Request) -> web.Response:
            return web.json_response({"server_time": time.time()})

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/v1/enroll", enroll)
        app.router.add_post("/v1/renew", renew)
        app.router.add_get("/v1/time", now)
        return app


def _load_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise EnrollmentRefused("csr_rejected", f"not a PEM certificate request: {exc}", 400) from None


async def serve(center: Center, host: str, port: int, hostnames: list[str]) -> web.AppRunner:
    runner = web.AppRunner(center.app())
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=center.server_ssl(hostnames))
    await site.start()
    return runner
