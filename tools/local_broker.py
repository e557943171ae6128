"""A local Mosquitto with TLS, client certificates and per-device ACLs, on a free port.

Used by the demo (`make run`), the tests and the benchmarks.

The ACL is the production one (provisioning/broker_config.py renders the same rules): a device
(certificate CN = device id) may only touch ``cam/v1/<its id>/#``; a center identity (CN starting
with ``center-``) reads everything and writes commands.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

ACL = """\
# devices: only their own subtree (identity = certificate CN = username = client id)
pattern readwrite cam/v1/%u/#
"""


@dataclass(frozen=True)
class ClientCreds:
    cert_file: Path
    key_file: Path
    ca_file: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


class LocalCA:
    """Just enough CA for a test broker: a root, a server certificate, client certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge-agent test CA")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn: str, *, server: bool = False) -> ClientCreds:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        cert_file = self.dir / f"{cn}.crt"
        key_file = self.dir / f"{cn}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return ClientCreds(cert_file=cert_file, key_file=key_file, ca_file=self.ca_file)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, directory: Path, ca: LocalCA) -> None:
        self.dir = directory
        self.ca = ca
        self.host = "127.0.0.1"
        self.port = free_port()
        self.ca_file = ca.ca_file
        self._proc: subprocess.Popen[bytes] | None = None
        server = ca.issue("localhost", server=True)
        (directory / "acl").write_text(ACL + self._center_acl())
        (directory / "mosquitto.conf").write_text(
            f"""{"user root" if os.geteuid() == 0 else ""}
per_listener_settings false
set_tcp_nodelay true
allow_anonymous false
persistence true
persistence_location {directory}/
autosave_interval 1
log_dest stderr
log_type error
log_type warning
log_type notice
listener {self.port} 127.0.0.1
cafile {ca.ca_file}
certfile {server.cert_file}
keyfile {server.key_file}
tls_version tlsv1.2
require_certificate true
use_identity_as_username true
use_username_as_clientid true
acl_file {directory / "acl"}
"""
        )
        self.log = directory / "mosquitto.log"

    @staticmethod
    def _center_acl() -> str:
        return ""

    def _write_center(self, name: str) -> None:
        with (self.dir / "acl").open("a") as f:
            f.write(f"\nuser {name}\ntopic read cam/v1/#\ntopic write cam/v1/+/cmd\n")

    @classmethod
    def create(cls, directory: Path) -> Broker:
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, LocalCA(directory / "pki"))

    def issue_device(self, device_id: str) -> ClientCreds:
        return self.ca.issue(device_id)

    def issue_center(self, name: str) -> ClientCreds:
        if not name.startswith("center-"):
            raise ValueError("center identities start with 'center-'")
        creds = self.ca.issue(name)
        self._write_center(name)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(1)  # SIGHUP reloads the ACL file
            time.sleep(0.3)
        return creds

    def start(self, timeout: float = 10.0) -> None:
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on `make run` must not kill the broker before the agent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
