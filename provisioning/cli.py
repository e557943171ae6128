"""Command lines: the installer's `edge-agent provision|identity|doctor` and the operator unit's `edge-center`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from provisioning.device import ProvisionError

ConfigOpt = typer.Option(None, "--config", "-c", help="Agent TOML (default /etc/edge-agent/agent.toml).")


def register_device_commands(app: typer.Typer) -> None:
    @app.command()
    def provision(
        claim: Path = typer.Option(..., "--claim", help="Claim file from the operator unit."),
        center: str | None = typer.Option(
            None, "--center", help="Enrollment URL, https://HOST:PORT (default: from the claim)."
        ),
        state_dir: Path = typer.Option(Path("/var/lib/edge-agent"), "--state-dir"),
    ) -> None:
        """Enroll this box: make its key, get its certificate, CA and trust anchors."""
        from provisioning.device import provision as do_provision

        try:
            bundle = asyncio.run(
                do_provision(claim, center, state_dir, progress=lambda m: typer.echo(f"  {m}"))
            )
        except ProvisionError as exc:
            typer.secho(f"enrollment failed ({exc.code}): {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        b = bundle["broker"]
        typer.secho(f"enrolled: device id {bundle['device_id']}", fg="green")
        typer.echo(
            f'set in agent.toml: [device] id = "{bundle["device_id"]}"; [center] host = "{b["host"]}", port = {b["port"]}'
        )

    @app.command()
    def identity(state_dir: Path = typer.Option(Path("/var/lib/edge-agent"), "--state-dir")) -> None:
        """Show the device id, certificate subject, expiry and fingerprint."""
        from provisioning.device import identity as read_identity

        try:
            info = read_identity(state_dir)
        except ProvisionError as exc:
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(1) from None
        for k, v in info.items():
            typer.echo(f"{k:>20}: {v}")

    @app.command()
    def doctor(config: Path | None = ConfigOpt) -> None:
        """Check clock, broker reach and TLS, certificate, key permissions, cameras, disk, systemd."""
        from agent.config import ConfigError, load_settings
        from provisioning.doctor import run_checks

        try:
            settings = load_settings(config)
        except ConfigError as exc:
            typer.secho("configuration: FAIL", fg="red")
            for p in exc.problems:
                typer.echo(f"    {p}")
            raise typer.Exit(1) from None
        colors = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "white"}
        failed = False
        for c in run_checks(settings):
            typer.secho(f"{c.status.upper():>5}  {c.name}: {c.detail}", fg=colors[c.status])
            if c.fix and c.status in ("warn", "fail"):
                typer.echo(f"       fix: {c.fix}")
            failed |= c.status == "fail"
        raise typer.Exit(1 if failed else 0)


center_app = typer.Typer(
    help="Operator unit tools: CA, claims, enrollment service, broker config.", no_args_is_help=True
)
DirOpt = typer.Option(Path("/var/lib/edge-center"), "--dir", help="The center's state directory (0700).")


@center_app.command()
def init(directory: Path = DirOpt) -> None:
    """Create the CA (root + intermediate), the claim-signing key and the grant authority."""
    from provisioning.center import Center

    if (directory / "ca" / "root.crt").exists():
        typer.secho(f"{directory} already holds a CA", fg="red", err=True)
        raise typer.Exit(1)
    Center.create(directory)
    typer.echo(f"center state created in {directory}; devices trust {directory}/ca/root.crt")


@center_app.command()
def claim(
    device_id: str = typer.Option(...),
    org: str = typer.Option(...),
    province: str = typer.Option(...),
    district: str = typer.Option(...),
    commune: str = typer.Option(...),
    center_url: str = typer.Option(..., help="https://HOST:PORT of the enrollment service"),
    ttl_h: float = typer.Option(24, help="Hours the claim stays valid."),
    out: Path = typer.Option(Path("claim.json")),
    directory: Path = DirOpt,
) -> None:
    """Issue a one-time claim for an installer, bound to an organization and location."""
    from provisioning.ca import write_private
    from provisioning.center import Center

    c = Center.load(directory)
    data = c.issue_claim(
        device_id=device_id,
        org=org,
        location={"province": province, "district": district, "commune": commune},
        ttl_s=ttl_h * 3600,
        center_url=center_url,
    )
    write_private(out, json.dumps(data, indent=1).encode())
    typer.echo(f"claim for {device_id} written to {out} (valid {ttl_h:g} h, works once)")


@center_app.command()
def serve(
    host: str = "0.0.0.0",
    port: int = 8443,
    hostname: list[str] = typer.Option(["localhost"], help="Names in the service certificate."),
    broker_host: str = "localhost",
    broker_port: int = 8883,
    directory: Path = DirOpt,
) -> None:
    """Run the HTTPS enrollment service."""
    from provisioning.center import Center
    from provisioning.center import serve as start

    async def main() -> None:
        c = Center.load(directory, broker_host=broker_host, broker_port=broker_port)
        await start(c, host, port, hostname)
        typer.echo(f"enrollment service on https://{host}:{port}")
        await asyncio.Event().wait()

    asyncio.run(main())


@center_app.command()
def revoke(serial: int, directory: Path = DirOpt) -> None:
    """Revoke a certificate and rewrite the CRL (reload the broker to apply it)."""
    from provisioning.ca import CertificateAuthority

    ca = CertificateAuthority(directory / "ca")
    ca.revoke(serial)
    typer.echo(f"revoked {serial}; CRL: {ca.dir / 'crl.pem'} (send SIGHUP to mosquitto)")


@center_app.command("list")
def list_certs(directory: Path = DirOpt) -> None:
    """Issued certificates."""
    from provisioning.ca import CertificateAuthority

    for r in CertificateAuthority(directory / "ca").records():
        typer.echo(f"{r.serial:>40} {r.kind:<7} {'REVOKED' if r.revoked else 'valid':<8} {r.subject}")


@center_app.command("broker-config")
def broker_config(
    out_dir: Path = typer.Option(Path("/etc/mosquitto/conf.d/edge")),
    port: int = 8883,
    center: list[str] = typer.Option(["center-console"], help="Center identities (CN center-...)."),
    hostname: list[str] = typer.Option(["localhost"]),
    directory: Path = DirOpt,
) -> None:
    """Write a Mosquitto config + ACL + server certificate for the center's broker."""
    from provisioning.broker_config import BrokerConfig, BrokerTls, render_acl
    from provisioning.ca import CertificateAuthority, cert_pem, key_pem, write_private, write_public

    ca = CertificateAuthority(directory / "ca")
    cert, key = ca.issue_server(hostname)
    write_public(out_dir / "server.crt", cert_pem(cert) + cert_pem(ca.int_cert))
    write_private(out_dir / "server.key", key_pem(key))
    write_public(out_dir / "ca.crt", cert_pem(ca.root_cert))
    write_public(out_dir / "acl", render_acl(center).encode())
    cfg = BrokerConfig(
        BrokerTls(out_dir / "ca.crt", out_dir / "server.crt", out_dir / "server.key", ca.dir / "crl.pem"),
        out_dir / "acl",
        port=port,
    )
    write_public(out_dir / "mosquitto.conf", cfg.render().encode())
    typer.echo(
        f"wrote {out_dir}/mosquitto.conf (key readable by the mosquitto user: chown mosquitto {out_dir}/server.key)"
    )


def center_main() -> None:
    center_app()
