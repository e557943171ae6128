"""Device side of enrollment and renewal. The private key is generated here and never leaves the box."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.ca import fingerprint, key_pem, write_private, write_public
from provisioning.enroll_client import check_connect, enroll_over_broker
from provisioning.errors import ProvisionError

MAX_CLOCK_SKEW_S = 300


__all__ = ["IdentityPaths", "ProvisionError", "identity", "new_key_and_csr", "provision", "renew"]


@dataclass(frozen=True)
class IdentityPaths:
    state_dir: Path

    @property
    def dir(self) -> Path:
        return self.state_dir / "identity"

    @property
    def key(self) -> Path:
        return self.dir / "device.key"

    @property
    def cert(self) -> Path:
        return self.dir / "device.crt"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def info(self) -> Path:
        return self.dir / "identity.json"

    @property
    def keyset(self) -> Path:
        return self.state_dir / "trust" / "keyset.json"


def claim_payload(token: str) -> dict[str, Any]:
    """The claim's public content (device id, org, location, expiry); verified by the center, not here."""
    try:
        body = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]
    except (IndexError, ValueError) as exc:
        raise ProvisionError(
            "claim_unreadable", f"the claim file does not contain a claim token: {exc}"
        ) from None


def load_claim(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProvisionError("claim_unreadable", f"cannot read claim file {path}: {exc}") from None
    if not isinstance(data, dict) or "claim" not in data or "ca" not in data:
        raise ProvisionError("claim_unreadable", f"{path} is not a claim file (needs 'claim' and 'ca')")
    return data


def new_key_and_csr(device_id: str, org: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, device_id),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def _tls(ca_pem: str, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem)
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


async def _post(url: str, body: dict[str, Any], ctx: ssl.SSLContext, timeout: float) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(url, json=body, ssl=ctx) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise ProvisionError(str(data.get("error", resp.status)), str(data.get("message", data)))
                return data  # type: ignore[no-any-return]
    except aiohttp.ClientConnectorCertificateError as exc:
        msg = str(exc.certificate_error)
        if "not yet valid" in msg or "expired" in msg:
            raise ProvisionError(
                "clock",
                f"TLS failed ({msg}): this box's clock is probably wrong; fix it (timedatectl, NTP) and retry",
            ) from None
        if "match" in msg or "hostname" in msg.lower():
            raise ProvisionError(
                "tls_name",
                f"TLS name mismatch: the center's certificate is not valid for {url} ({msg}); check --center",
            ) from None
        raise ProvisionError("tls", f"TLS validation of the center failed: {msg}") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProvisionError(
            "unreachable", f"cannot reach the center at {url}: {exc.os_error}; check DNS, network, firewall"
        ) from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise ProvisionError(
            "timeout", f"the center at {url} did not answer within {timeout:.0f} s"
        ) from None
    except aiohttp.ClientError as exc:
        raise ProvisionError("http", f"enrollment request failed: {exc}") from None


def _store(
    paths: IdentityPaths, key: ec.EllipticCurvePrivateKey, bundle: dict[str, Any], extra: dict[str, Any]
) -> None:
    chain = bundle["chain"]
    root = chain[chain.index("-----BEGIN CERTIFICATE-----", 1) :]  # the chain is intermediate + root
    paths.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.state_dir.chmod(0o700)
    paths.dir.chmod(0o700)
    # Certificate first, key last: a crash in between leaves the old pair usable or no key at all.
    write_public(paths.cert, (bundle["certificate"] + chain[: chain.index(root)]).encode())
    write_public(paths.ca, root.encode())
    write_private(paths.key, key_pem(key))
    write_public(paths.keyset, json.dumps(bundle["trust_keyset"], indent=1).encode())
    paths.keyset.parent.chmod(0o700)
    info = {**(json.loads(paths.info.read_text()) if paths.info.exists() else {}), **extra}
    info.update(
        device_id=bundle["device_id"], org=bundle["org"], broker=bundle["broker"], updated_at=time.time()
    )
    if bundle.get("renew_url"):
        info["renew_url"] = bundle["renew_url"]
    if bundle.get("location"):
        info["location"] = bundle["location"]
    write_public(paths.info, json.dumps(info, indent=1).encode())


async def provision(
    claim_file: Path,
    center_url: str | None,
    state_dir: Path,
    *,
    progress: Callable[[str], None] = print,
    timeout: float = 20.0,
    org: str | None = None,
) -> dict[str, Any]:
    """Enroll: make the key, send the CSR with the claim, store certificate, chain and trust anchors.

    `center_url` is ``mqtts://HOST:PORT`` (enrollment over the broker, the default) or
    ``https://HOST:PORT`` (the HTTPS enrollment endpoint). `org`, when given, is what the installer
    believes the box belongs to; the center refuses a claim for another organization.
    """
    claim = load_claim(claim_file)
    url = (center_url or claim.get("center") or "").rstrip("/")
    scheme = urlsplit(url).scheme
    if scheme not in ("https", "mqtts"):
        raise ProvisionError(
            "center_url",
            f"the center URL must be mqtts://HOST:PORT or https://HOST:PORT (got {url!r}); pass --center",
        )
    who = claim_payload(claim["claim"])
    if who.get("exp", 0) < time.time():
        progress("warning: by this box's clock the claim has expired; if the clock is wrong, fix it first")
    progress(f"claim for device {who.get('device_id')} of {who.get('org')!r} at {who.get('location')}")
    progress("generating the device key (ECDSA P-256); it never leaves this box")
    key, csr = new_key_and_csr(str(who.get("device_id")), str(who.get("org")))
    requested = {"device_id": who.get("device_id"), "org": org or who.get("org")}
    if scheme == "mqtts":
        if "claim_cert" not in claim or "claim_key" not in claim:
            raise ProvisionError(
                "claim_unreadable", "this claim file has no claim credential for the broker: use https://"
            )
        u = urlsplit(url)
        host, port = u.hostname or "", u.port or 8883
        progress(f"enrolling over the broker {host}:{port} ...")
        bundle = await asyncio.to_thread(
            enroll_over_broker,
            claim,
            host,
            port,
            csr,
            requested,
            IdentityPaths(state_dir).dir / ".claim",
            timeout=timeout,
        )
    else:
        progress(f"enrolling with {url} ...")
        bundle = await _post(
            f"{url}/v1/enroll",
            {"claim": claim["claim"], "csr": csr, "requested": requested},
            _tls(claim["ca"]),
            timeout,
        )
    skew = bundle.get("server_time", time.time()) - time.time()
    if abs(skew) > MAX_CLOCK_SKEW_S:
        progress(
            f"warning: this box's clock differs from the center's by {skew:+.0f} s: grants will fail; fix NTP"
        )
    paths = IdentityPaths(state_dir)
    _store(paths, key, bundle, {"center": url, "enrolled_at": time.time()})
    progress(f"enrolled as {bundle['device_id']}; certificate, CA and trust anchors stored in {state_dir}")
    if scheme == "mqtts":
        await asyncio.to_thread(check_connect, host, port, paths.ca, paths.cert, paths.key, timeout)
        progress(f"connected to the broker with the new certificate as {bundle['device_id']}")
    return bundle


async def renew(state_dir: Path, *, timeout: float = 20.0) -> dict[str, Any]:
    """New key, new certificate, over mutual TLS with the current one; files replaced atomically."""
    paths = IdentityPaths(state_dir)
    info = json.loads(paths.info.read_text())
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    key, csr = new_key_and_csr(
        str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
        str(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value),
    )
    ctx = _tls(paths.ca.read_text(), paths.cert, paths.key)
    url = info.get("renew_url") or info.get("center", "")
    if not str(url).startswith("https://"):
        raise ProvisionError(
            "renew_unavailable",
            "the center gave this box no renewal endpoint (https://); enroll again with a new claim",
        )
    bundle = await _post(f"{url}/v1/renew", {"csr": csr}, ctx, timeout)
    _store(paths, key, bundle, {"renewed_at": time.time()})
    return bundle


def identity(state_dir: Path) -> dict[str, Any]:
    paths = IdentityPaths(state_dir)
    if not paths.cert.is_file():
        raise ProvisionError(
            "not_enrolled", f"no device certificate in {paths.dir}: run `edge-agent provision`"
        )
    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    info = json.loads(paths.info.read_text()) if paths.info.exists() else {}
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    return {
        "device_id": info.get("device_id"),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": cert.serial_number,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": round(left.total_seconds() / 86400, 1),
        "fingerprint_sha256": fingerprint(cert),
        "key_mode": oct(os.stat(paths.key).st_mode & 0o777) if paths.key.exists() else None,
        "center": info.get("center"),
        "broker": info.get("broker"),
        "org": info.get("org"),
        "location": info.get("location"),
    }
