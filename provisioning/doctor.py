"""`edge-agent doctor`: everything an installer gets wrong, each with the fix."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography import x509

from agent.config import AgentSettings

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def check_permissions(s: AgentSettings) -> list[Check]:
    out: list[Check] = []
    for d in (s.storage.state_dir, s.identity_dir, s.storage.state_dir / "trust"):
        if d.exists() and _mode(d) & 0o077:
            out.append(Check(f"permissions {d}", "fail", f"mode {_mode(d):o}", f"chmod 700 {d}"))
    key = s.key_file
    if key.exists():
        if _mode(key) & 0o077:
            out.append(
                Check("device key permissions", "fail", f"{key} mode {_mode(key):o}", f"chmod 600 {key}")
            )
        else:
            out.append(Check("device key permissions", "ok", f"{key} 0600"))
    for cam in s.cameras:
        cred = cam.onvif.credentials_file if cam.onvif else None
        if cred is not None and cred.exists() and _mode(cred) & 0o077:
            out.append(
                Check(
                    f"camera {cam.name} credentials",
                    "fail",
                    f"{cred} mode {_mode(cred):o}",
                    f"chmod 600 {cred}",
                )
            )
    return out


def check_certificate(s: AgentSettings) -> Check:
    if not s.cert_file.is_file():
        return Check(
            "device certificate",
            "fail",
            f"{s.cert_file} missing",
            "edge-agent provision --claim FILE --center URL",
        )
    cert = x509.load_pem_x509_certificate(s.cert_file.read_bytes())
    left = (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400
    if left < 0:
        return Check(
            "certificate expiry", "fail", f"expired {-left:.0f} days ago", "enroll again with a new claim"
        )
    if left < 14:
        return Check(
            "certificate expiry",
            "warn",
            f"{left:.0f} days left",
            "the agent renews automatically; check it can reach the center",
        )
    return Check("certificate expiry", "ok", f"{left:.0f} days left ({cert.subject.rfc4514_string()})")


def check_renewal(s: AgentSettings) -> Check:
    """An enrolled identity without an https renewal endpoint expires instead of rotating."""
    info_file = s.identity_dir / "identity.json"
    if not info_file.is_file():
        return Check("certificate renewal", "skip", "no enrolled identity (identity.json)")
    try:
        info = json.loads(info_file.read_text())
    except ValueError as exc:
        return Check("certificate renewal", "fail", f"{info_file}: {exc}", "enroll again with a new claim")
    url = info.get("renew_url") or info.get("center") or ""
    if not str(url).startswith("https://"):
        return Check(
            "certificate renewal",
            "warn",
            "the center gave no renewal endpoint: the certificate will expire instead of rotating",
            "ask the operator unit to run `edge-center serve-broker --renew-url https://...`",
        )
    if not s.provisioning.auto_renew:
        return Check("certificate renewal", "warn", "auto_renew is off", "set provisioning.auto_renew = true")
    return Check("certificate renewal", "ok", f"renews via {url}")


def check_broker(s: AgentSettings, timeout: float = 5.0) -> list[Check]:
    host, port = s.center.host, s.center.port
    try:
        addrs = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            Check(
                "broker DNS", "fail", f"{host}: {exc}", "check /etc/resolv.conf and the center.host spelling"
            )
        ]
    out = [Check("broker DNS", "ok", f"{host} -> {addrs[0][4][0]}")]
    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        return [
            *out,
            Check(
                "broker reachable",
                "fail",
                f"{host}:{port}: {exc}",
                "check network, firewall (outbound TCP), center.port",
            ),
        ]
    out.append(Check("broker reachable", "ok", f"{host}:{port}"))
    if s.center.insecure_dev:
        sock.close()
        return [*out, Check("TLS", "warn", "insecure_dev: no TLS", "set center.insecure_dev = false")]
    try:
        ctx = ssl.create_default_context(cafile=str(s.ca_file))
        ctx.load_cert_chain(str(s.cert_file), str(s.key_file))
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            out.append(Check("TLS validation", "ok", f"{tls.version()} with {host}"))
    except ssl.SSLCertVerificationError as exc:
        msg = exc.verify_message or str(exc)
        fix = (
            "check the clock (timedatectl)"
            if "not yet valid" in msg or "expired" in msg
            else "center.host must match the broker certificate; ca_file must be the center's CA"
        )
        out.append(Check("TLS validation", "fail", msg, fix))
    except (OSError, ssl.SSLError) as exc:
        out.append(
            Check(
                "TLS validation",
                "fail",
                str(exc),
                "re-enroll if the device certificate was revoked or replaced",
            )
        )
    finally:
        sock.close()
    return out


def check_clock() -> Check:
    if shutil.which("timedatectl") is None:
        return Check(
            "clock sync", "skip", "timedatectl not available", "make sure NTP (systemd-timesyncd/chrony) runs"
        )
    r = subprocess.run(
        ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.stdout.strip() == "yes":
        return Check("clock sync", "ok", "NTP synchronized")
    return Check(
        "clock sync",
        "warn",
        f"NTP not synchronized ({r.stdout.strip() or r.stderr.strip()})",
        "timedatectl set-ntp true",
    )


def check_cameras(s: AgentSettings, timeout: float = 3.0) -> list[Check]:
    out: list[Check] = []
    for cam in s.cameras:
        if cam.file is not None:
            out.append(Check(f"camera {cam.name}", "ok" if cam.file.is_file() else "fail", str(cam.file)))
            continue
        u = urlsplit(cam.main_url or "")
        try:
            socket.create_connection((u.hostname or "", u.port or 554), timeout).close()
            out.append(Check(f"camera {cam.name}", "ok", f"{u.hostname}:{u.port or 554} reachable"))
        except OSError as exc:
            out.append(
                Check(
                    f"camera {cam.name}",
                    "fail",
                    f"{u.hostname}:{u.port or 554}: {exc}",
                    "check the camera's power, cable, IP address",
                )
            )
        if cam.onvif is not None and not cam.onvif.credentials_file.exists():
            out.append(
                Check(
                    f"camera {cam.name} credentials",
                    "fail",
                    f"{cam.onvif.credentials_file} missing",
                    "edge-agent discover writes it",
                )
            )
    return out


def check_disk(s: AgentSettings) -> Check:
    s.storage.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    free_mb = shutil.disk_usage(s.storage.state_dir).free / 2**20
    if free_mb < s.storage.min_free_mb:
        return Check(
            "disk space",
            "fail",
            f"{free_mb:.0f} MB free",
            "free space or move storage.state_dir to a larger disk",
        )
    return Check("disk space", "ok", f"{free_mb / 1024:.1f} GB free")


def check_systemd() -> Check:
    if shutil.which("systemctl") is None:
        return Check("systemd unit", "skip", "systemctl not available (not a systemd host)")
    r = subprocess.run(["systemctl", "is-active", "edge-agent"], capture_output=True, text=True, check=False)
    state = r.stdout.strip() or r.stderr.strip()
    if state == "active":
        return Check("systemd unit", "ok", "edge-agent.service active")
    return Check(
        "systemd unit",
        "warn",
        f"edge-agent.service {state}",
        "systemctl enable --now edge-agent; journalctl -u edge-agent",
    )


def check_onvif(s: AgentSettings) -> list[Check]:
    """Credentials, camera clock offset, codecs and PTZ of every ONVIF camera (agent/camera/onvif_doctor)."""
    if not any(c.onvif for c in s.cameras):
        return []
    import asyncio

    from agent.camera.onvif_doctor import check_all

    status: dict[str, Status] = {"ok": "ok", "warn": "warn", "error": "fail"}
    return [Check(f"camera {f.camera} ONVIF", status[f.level], f.message) for f in asyncio.run(check_all(s))]


def run_checks(s: AgentSettings) -> list[Check]:
    checks = [check_clock(), *check_permissions(s), check_certificate(s), check_renewal(s)]
    checks += check_broker(s)
    checks += check_cameras(s)
    checks += check_onvif(s)
    checks += [check_disk(s), check_systemd()]
    return checks
