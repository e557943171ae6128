"""`edge-agent`: run the agent, check its configuration, and the installer's and operator's tools."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from agent import __version__
from agent.config import ConfigError, load_settings, public_view, resolve_config_path

app = typer.Typer(help="Camera edge agent.", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Validate and show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML file (default /etc/edge-agent/agent.toml).")


def _load(config: Path | None):  # type: ignore[no-untyped-def]
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.secho(f"configuration {exc.path} is invalid:", fg="red", err=True)
        for line in exc.problems:
            typer.echo(f"  - {line}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(config: Path | None = ConfigOpt) -> None:
    """Run the agent until SIGINT/SIGTERM."""
    from agent.app import StartupError, run_agent
    from agent.logging_setup import setup_logging

    settings = _load(config)
    setup_logging(settings.log.level, settings.log.json_format)
    try:
        asyncio.run(run_agent(settings))
    except StartupError as exc:
        typer.secho(f"cannot start: {exc}", fg="red", err=True)
        raise typer.Exit(3) from None


@config_app.command("check")
def config_check(config: Path | None = ConfigOpt) -> None:
    """Validate the configuration; print every problem with the field, the value and the fix."""
    settings = _load(config)
    typer.echo(
        f"{resolve_config_path(config)}: OK (device {settings.device.id}, {len(settings.cameras)} camera(s))"
    )


@config_app.command("show")
def config_show(config: Path | None = ConfigOpt) -> None:
    """Print the effective configuration (file + environment) as JSON, secrets removed."""
    typer.echo(json.dumps(public_view(_load(config)), indent=2))


@app.command()
def version() -> None:
    """Print the agent version."""
    typer.echo(__version__)


# [wiring: cli] sub-apps of other packages are mounted here.
from agent.camera.discover_cli import register_cli as register_discover_cli  # noqa: E402
from agent.policy.cli import audit_app  # noqa: E402
from provisioning.cli import register_device_commands  # noqa: E402

app.add_typer(audit_app, name="audit")
register_device_commands(app)
register_discover_cli(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
