"""A local Mosquitto with TLS, client certificates and per-device ACLs, on a free port.

Used by the demo (`make run`), the tests and the benchmarks.

The configuration and ACL are the production ones (provisioning/broker_config.py): a device
(certificate CN = device id) may only touch ``cam/v1/<its id>/#``; a center identity (CN starting
with ``center-``) reads everything and writes commands.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from provisioning.broker_config import BrokerConfig, BrokerTls, render_acl
from provisioning.ca import CertificateAuthority, cert_pem, key_pem, write_private, write_public

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass(frozen=True)
class ClientCreds:
    cert_file: Path
    key_file: Path
    ca_file: Path


class LocalCA:
    """A throwaway CA (the real provisioning CA, in a temp dir) for a local broker and its clients."""

    def __init__(self, directory: Path, ca: CertificateAuthority | None = None) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ca = ca or CertificateAuthority.create(directory)
        self.ca_file = self.ca.root_file

    def issue(self, cn: str, *, server: bool = False) -> ClientCreds:
        cert, key = self.ca.issue_server(["localhost", "127.0.0.1"]) if server else self.ca.issue_client(cn)
        cert_file = self.dir / f"{cn}.crt"
        key_file = self.dir / f"{cn}.key"
        write_public(cert_file, cert_pem(cert) + cert_pem(self.ca.int_cert))
        write_private(key_file, key_pem(key))
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
        self.centers: list[str] = []
        self.config = BrokerConfig(
            tls=BrokerTls(ca.ca_file, server.cert_file, server.key_file, ca.ca.dir / "crl.pem"),
            acl_file=directory / "acl",
            port=self.port,
            bind="127.0.0.1",
            persistence_dir=directory,
            run_as_root=os.geteuid() == 0,
        )
        (directory / "acl").write_text(render_acl(self.centers))
        (directory / "mosquitto.conf").write_text(self.config.render())
        self.log = directory / "mosquitto.log"

    @classmethod
    def create(cls, directory: Path, ca: CertificateAuthority | None = None) -> Broker:
        """A broker with its own throwaway CA, or one that trusts an existing (the center's) CA."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, LocalCA(directory / "pki", ca))

    def issue_device(self, device_id: str) -> ClientCreds:
        return self.ca.issue(device_id)

    def issue_center(self, name: str) -> ClientCreds:
        if not name.startswith("center-"):
            raise ValueError("center identities start with 'center-'")
        creds = self.ca.issue(name)
        self.centers.append(name)
        (self.dir / "acl").write_text(render_acl(self.centers))
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
