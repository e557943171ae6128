"""`edge-agent doctor` checks for ONVIF cameras: reachable, credentials accepted, clock, codec, PTZ."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from agent.camera.onvif_client import CLOCK_WARN_S, OnvifClient, OnvifError

Level = Literal["ok", "warn", "error"]


@dataclass(frozen=True)
class Finding:
    level: Level
    camera: str
    message: str


async def check_camera(name: str, url: str, credentials_file: Any, timeout_s: float = 5.0) -> list[Finding]:
    try:
        client = await OnvifClient.from_files(url, credentials_file, timeout_s=timeout_s)
    except OnvifError as exc:
        return [Finding("error", name, f"ONVIF {exc.kind.value}: {exc.message}")]
    out: list[Finding] = []
    try:
        info = client.info
        out.append(
            Finding(
                "ok",
                name,
                f"ONVIF OK: {info.manufacturer} {info.model} fw {info.firmware}" if info else "ONVIF OK",
            )
        )
        if abs(client.clock_offset_s) > CLOCK_WARN_S:
            out.append(
                Finding(
                    "warn",
                    name,
                    f"camera clock is {client.clock_offset_s:+.0f} s off this device; ONVIF auth compensates, but "
                    "timestamps burned into its video are wrong: enable NTP on the camera",
                )
            )
        try:
            sel = await client.select_streams()
            out.append(Finding("ok", name, f"main {sel.main.encoding} {sel.main.width}x{sel.main.height}"))
            out += [Finding("warn", name, n) for n in sel.notes]
        except OnvifError as exc:
            out.append(Finding("error", name, exc.message))
        caps = client.ptz_capabilities
        out.append(Finding("ok", name, "PTZ supported" if caps.supported else "no PTZ (fixed camera)"))
    finally:
        await client.close()
    return out


async def check_all(settings: Any, timeout_s: float = 5.0) -> list[Finding]:
    """Every configured camera with an ``onvif`` section, concurrently."""
    cams = [c for c in settings.cameras if c.onvif is not None]
    results = await asyncio.gather(
        *(check_camera(c.name, c.onvif.url, c.onvif.credentials_file, timeout_s) for c in cams)
    )
    return [f for r in results for f in r]
