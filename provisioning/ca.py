"""The center's reference CA: root + intermediate, device and server certificates, records, CRL.

Keys are ECDSA P-256 (supported by every MQTT broker and TLS stack on the boxes). The root key
signs only the intermediate and can live offline; the intermediate signs devices, servers and CRLs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.broker_config import CLAIM_PREFIX, reserved_identity

UTC = dt.timezone.utc


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def write_private(path: Path, data: bytes) -> None:
    """Create a secret file 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    path.chmod(0o644)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":")


class CsrRejected(ValueError):
    """The CSR cannot be signed; the message says why."""


@dataclass
class IssuedCert:
    serial: int
    subject: str
    kind: str
    not_after: float
    fingerprint: str
    revoked: bool = False


class CertificateAuthority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.root_cert = x509.load_pem_x509_certificate((directory / "root.crt").read_bytes())
        self.int_cert = x509.load_pem_x509_certificate((directory / "intermediate.crt").read_bytes())
        k = serialization.load_pem_private_key((directory / "intermediate.key").read_bytes(), None)
        assert isinstance(k, ec.EllipticCurvePrivateKey)
        self.int_key = k
        self.records_file = directory / "issued.json"

    # ---------------------------------------------------------------- creation
    @classmethod
    def create(cls, directory: Path, name: str = "Provincial Camera Center") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA")])
        t = now()
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(minutes=5))
            .not_valid_after(t + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        int_key = ec.generate_private_key(ec.SECP256R1())
        inter = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Device CA")]))
            .issuer_name(root_name)
            .public_key(int_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(minutes=5))
            .not_valid_after(t + dt.timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(int_key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
            )
            .sign(root_key, hashes.SHA256())
        )
        write_private(directory / "root.key", key_pem(root_key))
        write_public(directory / "root.crt", cert_pem(root))
        write_private(directory / "intermediate.key", key_pem(int_key))
        write_public(directory / "intermediate.crt", cert_pem(inter))
        write_public(directory / "chain.pem", cert_pem(inter) + cert_pem(root))
        ca = cls(directory)
        ca._save_records([])
        ca.write_crl()
        return ca

    @property
    def chain_pem(self) -> bytes:
        return cert_pem(self.int_cert) + cert_pem(self.root_cert)

    @property
    def root_file(self) -> Path:
        return self.dir / "root.crt"

    # ---------------------------------------------------------------- issuing
    def _builder(self, subject: x509.Name, public_key: Any, days: float) -> x509.CertificateBuilder:
        t = now()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.int_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(t - dt.timedelta(minutes=5))
            .not_valid_after(t + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.int_key.public_key()), critical=False
            )
        )

    def sign_device_csr(
        self, csr: x509.CertificateSigningRequest, device_id: str, org: str, days: float
    ) -> x509.Certificate:
        """Sign only a CSR whose signature matches its key and whose subject is exactly the assigned identity."""
        if not csr.is_signature_valid:
            raise CsrRejected("CSR signature does not match its public key")
        why = reserved_identity(device_id)
        if why:
            raise CsrRejected(f"device id {device_id!r} refused: {why}")
        if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
            raise CsrRejected("CSR key must be ECDSA P-256")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        orgs = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if [a.value for a in cns] != [device_id] or [a.value for a in orgs] != [org]:
            raise CsrRejected(f"CSR subject {csr.subject.rfc4514_string()!r} is not CN={device_id}, O={org}")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, device_id),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            ]
        )
        cert = (
            self._builder(subject, csr.public_key(), days)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.int_key, hashes.SHA256())
        )
        self._record(cert, "device")
        return cert

    def issue_server(
        self, hostnames: list[str], days: float = 825
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for h in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]), key.public_key(), days
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.int_key, hashes.SHA256())
        )
        self._record(cert, "server")
        return cert, key

    def issue_client(
        self, identity: str, days: float = 365
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A center service identity (CN center-…): consoles, the enrollment service, the SFU."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]), key.public_key(), days
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.int_key, hashes.SHA256())
        )
        self._record(cert, "center")
        return cert, key

    def issue_claim_cert(
        self, identity: str, not_after: dt.datetime
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A one-time claim credential (CN claim-…): the broker ACL lets it reach only its own
        enrollment topics, and the enrollment service accepts it once, with the matching token."""
        if not identity.startswith(CLAIM_PREFIX):
            raise ValueError(f"claim identities start with {CLAIM_PREFIX!r}")
        key = ec.generate_private_key(ec.SECP256R1())
        days = (not_after - now()).total_seconds() / 86400
        cert = (
            self._builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]), key.public_key(), days
            )
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.int_key, hashes.SHA256())
        )
        self._record(cert, "claim")
        return cert, key

    def serials_of(self, cn: str, kind: str | None = None) -> list[IssuedCert]:
        """Issued certificates whose subject CN is `cn` (e.g. every certificate a device ever held)."""
        return [r for r in self.records() if f"CN={cn}" in r.subject.split(",") and kind in (None, r.kind)]

    # ---------------------------------------------------------------- records, revocation
    def records(self) -> list[IssuedCert]:
        return [IssuedCert(**r) for r in json.loads(self.records_file.read_text())]

    def _save_records(self, recs: list[IssuedCert]) -> None:
        write_public(self.records_file, json.dumps([r.__dict__ for r in recs], indent=1).encode())

    def _record(self, cert: x509.Certificate, kind: str) -> None:
        recs = self.records()
        recs.append(
            IssuedCert(
                cert.serial_number,
                cert.subject.rfc4514_string(),
                kind,
                cert.not_valid_after_utc.timestamp(),
                fingerprint(cert),
            )
        )
        self._save_records(recs)

    def is_revoked(self, serial: int) -> bool:
        return any(r.serial == serial and r.revoked for r in self.records())

    def revoke(self, serial: int) -> None:
        recs = self.records()
        hit = [r for r in recs if r.serial == serial]
        if not hit:
            raise KeyError(f"no certificate with serial {serial}")
        for r in hit:
            r.revoked = True
        self._save_records(recs)
        self.write_crl()

    def write_crl(self, days: float = 7) -> Path:
        t = now()
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.int_cert.subject)
            .last_update(t - dt.timedelta(minutes=5))
            .next_update(t + dt.timedelta(days=days))
        )
        for r in self.records():
            if r.revoked:
                b = b.add_revoked_certificate(
                    x509.RevokedCertificateBuilder().serial_number(r.serial).revocation_date(t).build()
                )
        crl = b.sign(self.int_key, hashes.SHA256())
        path = self.dir / "crl.pem"
        write_public(path, crl.public_bytes(serialization.Encoding.PEM))
        return path
