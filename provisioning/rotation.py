"""Renews the device certificate before it expires, with a new key, while the agent runs.

Queued data is untouched (the outbox is on disk, independent of the connection); after renewal the
MQTT session disconnects cleanly and reconnects with the new certificate. When renewal fails (center
unreachable, certificate revoked) the agent says so in telemetry and keeps working locally.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from cryptography import x509

from agent.services import Services
from provisioning.device import IdentityPaths, ProvisionError, renew

log = logging.getLogger(__name__)


class CertificateRotator:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.provisioning
        self.paths = IdentityPaths(services.state_dir)
        self.last_error: str | None = None
        self.renewals = 0
        self.last_renewal: float | None = None

    @property
    def enabled(self) -> bool:
        """Only the enrolled identity (default paths, identity.json with the center URL) is renewed here."""
        s = self.services.settings
        return (
            self.settings.auto_renew
            and s.cert_file == self.paths.cert
            and s.key_file == self.paths.key
            and self.paths.info.is_file()
        )

    def days_left(self) -> float:
        cert = x509.load_pem_x509_certificate(self.paths.cert.read_bytes())
        return (cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "auto_renew": self.enabled,
            "renewals": self.renewals,
            "last_error": self.last_error,
        }
        if self.paths.cert.is_file():
            left = self.days_left()
            out["cert_days_left"] = round(left, 1)
            out["cert_state"] = (
                "expired" if left < 0 else "renewal_due" if left < self.settings.renew_before_days else "ok"
            )
        return out

    async def rotate_now(self) -> None:
        try:
            await renew(self.services.state_dir)
        except ProvisionError as exc:
            self.last_error = f"{exc.code}: {exc}"
            log.error(
                "certificate renewal failed: %s (the agent keeps running; queued data stays on disk)", exc
            )
            return
        self.renewals += 1
        self.last_renewal = time.time()
        self.last_error = None
        log.info("device certificate renewed (%.0f days left); reconnecting", self.days_left())
        if self.services.session is not None:
            self.services.session.request_reconnect()

    async def run(self) -> None:
        while True:
            if self.paths.cert.is_file() and self.days_left() < 0:
                log.error(
                    "the device certificate has expired: the broker will refuse it; enroll again "
                    "(edge-agent provision --claim FILE); detection and recording continue locally"
                )
            if self.enabled and self.days_left() < self.settings.renew_before_days:
                await self.rotate_now()
            await asyncio.sleep(self.settings.check_interval_s)
