"""`edge-agent discover`: find ONVIF cameras, show what they offer, optionally add them to the config.

Wire into the main CLI with ``register_cli(app)``; also runnable alone: ``python -m agent.camera.discover_cli``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from agent.camera.discovery import (
    CameraReport,
    DiscoveredDevice,
    camera_toml,
    interrogate,
    probe,
    render_table,
    suggest_names,
)
from agent.camera.onvif_credentials import OnvifCredentials, write_credentials

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CRED_DIR = Path("/etc/edge-agent/cameras")


def _parse_target(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{value!r} is not HOST:PORT")
    return host, int(port)


async def _find(
    targets: list[tuple[str, int]] | None, urls: list[str], timeout: float
) -> list[DiscoveredDevice]:
    devices = await probe(targets, timeout_s=timeout) if (targets or not urls) else []
    known = {d.xaddr for d in devices}
    return devices + [DiscoveredDevice(u, u, (), "") for u in urls if u not in known]


async def _interrogate_all(
    devices: list[DiscoveredDevice], prefix: str, creds: OnvifCredentials
) -> list[CameraReport]:
    names = suggest_names(devices, prefix)
    return list(
        await asyncio.gather(*(interrogate(d.xaddr, n, creds) for d, n in zip(devices, names, strict=True)))
    )


def discover(
    target: list[str] = typer.Option(
        [], "--target", "-t", help="Send the probe to HOST:PORT (unicast) instead of the multicast group."
    ),
    url: list[str] = typer.Option([], "--url", help="Also interrogate this ONVIF device URL (no discovery)."),
    timeout: float = typer.Option(3.0, min=0.2, max=60, help="Seconds to wait for probe answers."),
    username: str | None = typer.Option(None, help="Camera user name (asked for when missing)."),
    prefix: str = typer.Option("cam", help="Camera names are <prefix>1, <prefix>2, ..."),
    write: Path | None = typer.Option(
        None, help="Append the cameras section (TOML) for every working camera to this file."
    ),
    credentials_dir: Path = typer.Option(
        DEFAULT_CRED_DIR, help="Where the 0600 camera credentials files are written (with --write)."
    ),
) -> None:
    """Find ONVIF cameras (WS-Discovery), ask each for device info, streams, snapshot and PTZ support."""
    targets = [_parse_target(t) for t in target] or None
    devices = asyncio.run(_find(targets, list(url), timeout))
    if not devices:
        where = ", ".join(target) if target else "the multicast group 239.255.255.250:3702"
        typer.secho(
            f"no ONVIF camera answered on {where} within {timeout:g} s. Check that the camera is on this "
            "network and has ONVIF/WS-Discovery enabled, or pass --url http://<camera>/onvif/device_service.",
            fg="yellow",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"found {len(devices)} ONVIF device(s): " + ", ".join(d.xaddr for d in devices))
    if username is None:
        username = typer.prompt("Camera user name")
    password = typer.prompt("Camera password", hide_input=True)
    if not username or not password:
        typer.secho("user name and password must not be empty", fg="red", err=True)
        raise typer.Exit(2)
    creds = OnvifCredentials(username=username, password=password)
    reports = asyncio.run(_interrogate_all(devices, prefix, creds))
    typer.echo(render_table(reports))
    for r in reports:
        for note in r.notes:
            typer.echo(f"  {r.name}: {note}")
    good = [r for r in reports if r.ok]
    if write is not None and good:
        _write_config(write, good, credentials_dir, creds)
    if not good:
        raise typer.Exit(1)


def _write_config(path: Path, reports: list[CameraReport], cred_dir: Path, creds: OnvifCredentials) -> None:
    from agent.config import CameraSettings

    existing = tomllib.loads(path.read_text()) if path.exists() else {}
    taken = {c.get("name") for c in existing.get("cameras", []) if isinstance(c, dict)}
    clash = sorted(r.name for r in reports if r.name in taken)
    if clash:
        typer.secho(
            f"{path} already has cameras named {', '.join(clash)}; use --prefix to pick other names",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    cred_files = {r.name: cred_dir / f"{r.name}.toml" for r in reports}
    fragment = camera_toml(reports, cred_files)
    for cam in tomllib.loads(fragment)["cameras"]:  # validate before touching anything
        CameraSettings.model_validate(cam)
    cred_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for f in cred_files.values():
        write_credentials(f, creds)
    prefix = "\n" if path.exists() and path.read_text() and not path.read_text().endswith("\n\n") else ""
    with path.open("a") as fh:
        fh.write(prefix + fragment)
    typer.echo(f"added {len(reports)} camera(s) to {path}; credentials in {cred_dir} (mode 0600)")


def register_cli(app: typer.Typer) -> None:
    app.command("discover")(discover)


def main() -> None:
    app = typer.Typer(add_completion=False)
    register_cli(app)
    app()


if __name__ == "__main__":
    main()
