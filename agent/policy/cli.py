"""`edge-agent audit verify|show`: check the chain and read the trail."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent.policy.audit import PublicKey, verify_file

audit_app = typer.Typer(help="Verify and read the tamper-evident audit trail.", no_args_is_help=True)


def _paths(config: Path | None, file: Path | None, cert: Path | None) -> tuple[Path, Path | None]:
    if file is not None:
        return file, cert
    from agent.config import ConfigError, load_settings

    try:
        s = load_settings(config)
    except ConfigError as exc:
        typer.secho("\n".join(exc.problems), fg="red", err=True)
        raise typer.Exit(2) from None
    return s.policy.audit_file or s.storage.state_dir / "audit" / "audit.log", cert or s.cert_file


def public_key_from_cert(cert: Path) -> PublicKey:
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        raise typer.BadParameter(f"{cert}: unsupported key type")
    return key


@audit_app.command("verify")
def verify(
    config: Path | None = typer.Option(None, "--config", "-c"),
    file: Path | None = typer.Option(None, "--file", help="An exported audit log (default: the device's)."),
    cert: Path | None = typer.Option(None, "--cert", help="Device certificate whose key signs checkpoints."),
) -> None:
    """Detect edited, deleted, inserted or reordered records; check signed checkpoints."""
    path, cert_path = _paths(config, file, cert)
    key = public_key_from_cert(cert_path) if cert_path and cert_path.is_file() else None
    if key is None:
        typer.secho("no device certificate: checkpoint signatures NOT checked", fg="yellow", err=True)
    report = verify_file(path, key)
    for p in report.problems:
        typer.secho(f"TAMPERED {p}", fg="red")
    typer.echo(
        f"{path}: {report.records} records, {report.checkpoints} valid signed checkpoints, "
        f"verified up to seq {report.verified_upto}: {'OK' if report.ok else 'FAILED'}"
    )
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("show")
def show(
    config: Path | None = typer.Option(None, "--config", "-c"),
    file: Path | None = typer.Option(None, "--file"),
    since: str | None = typer.Option(None, help="ISO time, e.g. 2026-11-28T08:00"),
    until: str | None = typer.Option(None),
    requester: str | None = typer.Option(None),
    action: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print records, filtered by time, requester and action."""
    path, _ = _paths(config, file, None)
    lo = dt.datetime.fromisoformat(since).timestamp() if since else float("-inf")
    hi = dt.datetime.fromisoformat(until).timestamp() if until else float("inf")
    for line in path.read_bytes().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            typer.secho(f"(unreadable line) {line[:60]!r}", fg="red")
            continue
        if not lo <= r.get("ts", 0) <= hi:
            continue
        if (requester and r.get("requester") != requester) or (action and r.get("action") != action):
            continue
        if as_json:
            typer.echo(json.dumps(r))
            continue
        when = dt.datetime.fromtimestamp(r["ts"]).isoformat(timespec="seconds")
        typer.echo(
            f"{r['seq']:>6} {when} {r['kind']:<10} {r.get('decision') or '':<8} {r.get('action') or '':<16} "
            f"{r.get('requester') or '-'} ({r.get('role') or '-'}) cam={r.get('camera') or '-'} "
            f"purpose={r.get('purpose_ref') or '-'} {r.get('reason') or ''}"
        )
