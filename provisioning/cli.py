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
            None,
            "--center",
            help="mqtts://BROKER:PORT (enroll over the broker) or https://HOST:PORT (default: from the claim).",
        ),
        org: str | None = typer.Option(
            None, "--org", help="The organization you install for; refused if the claim is for another."
        ),
        state_dir: Path = typer.Option(Path("/var/lib/edge-agent"), "--state-dir"),
        timeout: float = typer.Option(20.0, "--timeout", help="Seconds to wait for the center."),
    ) -> None:
        """Enroll this box: make its key, get its certificate, CA and trust anchors."""
        from provisioning.device import provision as do_provision

        try:
            bundle = asyncio.run(
                do_provision(
                    claim,
                    center,
                    state_dir,
                    progress=lambda m: typer.echo(f"  {m}"),
                    timeout=timeout,
                    org=org,
                )
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
    center_url: str = typer.Option(
        "", help="mqtts://BROKER:PORT (default, from --broker-host/--broker-port) or https://HOST:PORT"
    ),
    broker_host: str = typer.Option("localhost", help="The broker the box enrolls through."),
    broker_port: int = typer.Option(8883),
    ttl_h: float = typer.Option(24, help="Hours the claim stays valid."),
    out: Path = typer.Option(Path("claim.json")),
    directory: Path = DirOpt,
) -> None:
    """Issue a one-time claim for an installer, bound to an organization and location."""
    from provisioning.ca import write_private
    from provisioning.center import Center

    c = Center.load(directory, broker_host=broker_host, broker_port=broker_port)
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
    """Run the HTTPS enrollment and renewal service."""
    from provisioning.center import Center
    from provisioning.center import serve as start

    async def main() -> None:
        c = Center.load(directory, broker_host=broker_host, broker_port=broker_port)
        await start(c, host, port, hostname)
        typer.echo(f"enrollment service on https://{host}:{port}")
        await asyncio.Event().wait()

    asyncio.run(main())


@center_app.command("serve-broker")
def serve_broker(
    broker_host: str = typer.Option("localhost"),
    broker_port: int = typer.Option(8883),
    renew_url: str = typer.Option("", help="https://HOST:PORT of `edge-center serve`, for renewals."),
    identity: str = typer.Option("center-enroll", help="The service's certificate CN (center-enroll...)."),
    directory: Path = DirOpt,
) -> None:
    """Run the enrollment service on the broker (answers cam/v1/enroll/<claim>/req)."""
    import signal
    import threading

    from provisioning.center import Center
    from provisioning.enroll_service import EnrollmentService

    c = Center.load(directory, broker_host=broker_host, broker_port=broker_port, renew_url=renew_url)
    creds = _center_creds(c, identity, directory)
    svc = EnrollmentService(
        c,
        broker_host,
        broker_port,
        ca_file=creds[0],
        cert_file=creds[1],
        key_file=creds[2],
        identity=identity,
    )
    svc.start()
    typer.echo(f"enrollment service on mqtts://{broker_host}:{broker_port} as {identity}")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    svc.stop()


def _center_creds(c: object, identity: str, directory: Path) -> tuple[str, str, str]:
    """The service's own client certificate, issued once and kept in the center directory (0600)."""
    from provisioning.ca import cert_pem, key_pem, write_private, write_public
    from provisioning.center import Center

    assert isinstance(c, Center)
    crt, key = directory / f"{identity}.crt", directory / f"{identity}.key"
    if not crt.exists() or not key.exists():
        cert, k = c.ca.issue_client(identity)
        write_public(crt, cert_pem(cert) + cert_pem(c.ca.int_cert))
        write_private(key, key_pem(k))
    return str(c.ca.root_file), str(crt), str(key)


@center_app.command("issue-center")
def issue_center(
    name: str = typer.Argument(..., help="center-<name>: console, SFU, enrollment service."),
    directory: Path = DirOpt,
) -> None:
    """Issue a client certificate for a center service (CN must start with center-)."""
    from provisioning.center import Center

    if not name.startswith("center-"):
        typer.secho("center identities start with 'center-'", fg="red", err=True)
        raise typer.Exit(1)
    _, crt, key = _center_creds(Center.load(directory), name, directory)
    typer.echo(f"{crt}\n{key}")


@center_app.command()
def crl(directory: Path = DirOpt) -> None:
    """Rewrite the CRL (do it before nextUpdate, weekly; then SIGHUP/restart the broker)."""
    from provisioning.ca import CertificateAuthority

    typer.echo(str(CertificateAuthority(directory / "ca").write_crl()))


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
    bind: str = typer.Option("0.0.0.0", help="Listener address."),
    center: list[str] = typer.Option(
        ["center-console", "center-enroll"], help="Center identities (CN center-...)."
    ),
    hostname: list[str] = typer.Option(["localhost"], help="Names (DNS or IP) in the server certificate."),
    run_as_root: bool = typer.Option(
        False, help="Keep mosquitto running as root (demos, tests: files in root-only directories)."
    ),
    directory: Path = DirOpt,
) -> None:
    """Write a Mosquitto config + ACL + server certificate for the center's broker."""
    import os
    import pwd

    from provisioning.broker_config import BrokerConfig, BrokerTls, render_acl
    from provisioning.ca import CertificateAuthority, cert_pem, key_pem, write_private, write_public

    ca = CertificateAuthority(directory / "ca")
    cert, key = ca.issue_server(hostname)
    write_public(out_dir / "server.crt", cert_pem(cert) + cert_pem(ca.int_cert))
    write_private(out_dir / "server.key", key_pem(key))
    write_public(out_dir / "ca.crt", cert_pem(ca.root_cert))
    write_public(out_dir / "crl.pem", (ca.dir / "crl.pem").read_bytes())
    write_public(out_dir / "acl", render_acl(center).encode())
    cfg = BrokerConfig(
        BrokerTls(out_dir / "ca.crt", out_dir / "server.crt", out_dir / "server.key", out_dir / "crl.pem"),
        out_dir / "acl",
        port=port,
        bind=bind,
        run_as_root=run_as_root,
    )
    write_public(out_dir / "mosquitto.conf", cfg.render().encode())
    if not run_as_root and os.geteuid() == 0:
        # mosquitto started as root drops to user mosquitto before reading the key: hand it over
        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            typer.secho("no 'mosquitto' user: chown server.key to the broker's user", fg="yellow")
        else:
            for p in (out_dir, out_dir / "server.key"):
                os.chown(p, pw.pw_uid, pw.pw_gid)
    typer.echo(f"wrote {out_dir}/mosquitto.conf, acl, server.crt/key (0600), ca.crt, crl.pem")


def center_main() -> None:
    center_app()


if __name__ == "__main__":
    center_main()
