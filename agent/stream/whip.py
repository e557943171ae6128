"""WHIP client (RFC 9725): push one camera stream to the center's media server / SFU.

One uplink then serves many viewers at the center. The exchange is a single HTTPS request: POST the
SDP offer (``application/sdp``) with the bearer token from the grant, get ``201 Created`` with the
answer and a ``Location`` (the WHIP session resource), and DELETE that resource to end. The offer is
non-trickle (aiortc gathers every candidate before it returns the local description), so no PATCH is
needed. The server certificate is always verified (system CAs, or an extra CA file for a private
center PKI).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"


class WhipError(Exception):
    """The WHIP endpoint refused or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def ssl_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Verifying TLS context: system CAs plus ``ca_file`` when the center runs its own CA."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def check_url(url: str) -> str:
    """Only https:// endpoints: the token and the offer must not travel in clear."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise WhipError(f"WHIP endpoint must be an https:// URL, got {parts.scheme or 'no'} scheme")
    return url


class WhipResource:
    """The session resource the server created; :meth:`delete` ends the push on the server side."""

    def __init__(self, url: str, token: str, ssl_ctx: ssl.SSLContext, timeout_s: float) -> None:
        self.url = url
        self._token = token
        self._ssl = ssl_ctx
        self._timeout = timeout_s
        self.deleted = False

    async def delete(self) -> int:
        """DELETE the resource once; returns the HTTP status (0 when unreachable). Never raises."""
        if self.deleted:
            return 0
        self.deleted = True
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as http,
                http.delete(
                    self.url, headers={"Authorization": f"Bearer {self._token}"}, ssl=self._ssl
                ) as resp,
            ):
                return resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("WHIP DELETE failed: %s", type(exc).__name__)
            return 0


async def whip_publish(
    pc: RTCPeerConnection,
    url: str,
    token: str,
    *,
    ca_file: Path | None = None,
    timeout_s: float = 10.0,
) -> WhipResource:
    """Offer ``pc`` (already holding its sendonly H.264 transceiver) to a WHIP endpoint.

    Raises :class:`WhipError` on refusal (401/403/4xx/5xx), a missing ``Location``, an answer that
    is not SDP, or no answer in ``timeout_s``.
    """
    check_url(url)
    if not token:
        raise WhipError("no WHIP bearer token")
    ctx = ssl_context(ca_file)
    await pc.setLocalDescription(await pc.createOffer())  # gathers every candidate (non-trickle)
    offer = pc.localDescription.sdp
    headers = {"Content-Type": SDP_TYPE, "Authorization": f"Bearer {token}", "Accept": SDP_TYPE}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.post(url, data=offer.encode(), headers=headers, ssl=ctx, allow_redirects=False) as resp,
        ):
            body = await resp.text()
            status, location, ctype = (
                resp.status,
                resp.headers.get("Location"),
                resp.headers.get("Content-Type", ""),
            )
    except TimeoutError:
        raise WhipError(f"WHIP endpoint did not answer in {timeout_s:.0f} s") from None
    except aiohttp.ClientSSLError as exc:
        raise WhipError(f"WHIP endpoint TLS verification failed: {type(exc).__name__}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise WhipError(f"WHIP endpoint unreachable: {type(exc).__name__}") from None
    if status != 201:
        raise WhipError(f"WHIP endpoint refused the offer: HTTP {status}", status)
    if not location:
        raise WhipError("WHIP answer has no Location header", status)
    if not ctype.startswith(SDP_TYPE) or "v=0" not in body:
        raise WhipError(f"WHIP answer is not SDP ({ctype or 'no content type'})", status)
    resource = WhipResource(urljoin(url, location), token, ctx, timeout_s)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    except (ValueError, asyncio.InvalidStateError) as exc:
        await resource.delete()
        raise WhipError(f"WHIP answer rejected: {exc}", status) from None
    return resource
