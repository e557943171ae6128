"""WS-Discovery on loopback (unicast probe to the simulator's UDP port) and `edge-agent discover`."""

from __future__ import annotations

import socket
import stat

import typer
from typer.testing import CliRunner

from agent.camera.discover_cli import register_cli
from agent.camera.discovery import probe
from agent.camera.onvif_client import OnvifClient
from agent.camera.onvif_credentials import load_credentials
from agent.config import load_settings

BASE_CONFIG = """
[device]
id = "edge-test-01"
owner_org = "Test Org"
location = { province = "01", district = "001", commune = "00001" }

[center]
host = "localhost"
insecure_dev = true
"""


def _cli() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    register_cli(app)

    @app.command()
    def noop() -> None:  # a second command keeps `discover` a named subcommand, as in edge-agent
        pass

    return app


async def test_probe_finds_the_simulator_on_loopback(onvif_sim_factory):
    sim = onvif_sim_factory(wsd=True)
    found = await probe([("127.0.0.1", sim.wsd_port)], timeout_s=0.5)
    assert [d.xaddr for d in found] == [sim.url]
    assert found[0].scope("name") == "EdgeSim" and found[0].responder == "127.0.0.1"


async def test_probe_with_nobody_listening_finds_nothing():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert await probe([("127.0.0.1", port)], timeout_s=0.3) == []


def test_discover_prints_table_and_writes_valid_config(onvif_sim_factory, tmp_path):
    sim = onvif_sim_factory(wsd=True)
    fixed = onvif_sim_factory(wsd=True, no_ptz=True)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(BASE_CONFIG)
    cred_dir = tmp_path / "cams"
    res = CliRunner().invoke(
        _cli(),
        ["discover", "-t", f"127.0.0.1:{sim.wsd_port}", "-t", f"127.0.0.1:{fixed.wsd_port}", "--timeout", "0.5",
         "--write", str(cfg), "--credentials-dir", str(cred_dir)],
        input=f"{sim.username}\n{sim.password}\n",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "EdgeSim" in res.output and "H264 1920x1080" in res.output and "H264 640x360" in res.output
    assert sim.password not in res.output  # the hidden prompt does not echo it
    settings = load_settings(cfg)
    cams = {c.name: c for c in settings.cameras}
    assert set(cams) == {"cam1", "cam2"}
    by_url = {c.onvif.url: c for c in cams.values()}
    assert by_url[sim.url].main_url == "rtsp://127.0.0.1:8554/main"
    assert by_url[sim.url].sub_url == "rtsp://127.0.0.1:8554/sub"
    cred_file = by_url[sim.url].onvif.credentials_file
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    assert load_credentials(cred_file).password.get_secret_value() == sim.password
    assert sim.password not in cfg.read_text()
    # the written config is enough for the agent to talk to the camera
    client = OnvifClient(sim.url, load_credentials(cred_file))
    import asyncio

    asyncio.run(_connect_and_close(client))


async def _connect_and_close(client: OnvifClient) -> None:
    await client.connect()
    assert client.ptz_capabilities.supported
    await client.close()


def test_discover_wrong_password_reports_and_writes_nothing(onvif_sim_factory, tmp_path):
    sim = onvif_sim_factory(wsd=True)
    cfg = tmp_path / "agent.toml"
    res = CliRunner().invoke(
        _cli(),
        ["discover", "-t", f"127.0.0.1:{sim.wsd_port}", "--timeout", "0.3", "--username", "admin",
         "--write", str(cfg), "--credentials-dir", str(tmp_path / "c")],
        input="wrong-password\n",
    )  # fmt: skip
    assert res.exit_code == 1
    assert "auth: " in res.output and "wrong username or password" in res.output
    assert not cfg.exists() and not (tmp_path / "c").exists()


def test_discover_nothing_found_says_what_to_check(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(
        _cli(), ["discover", "-t", f"127.0.0.1:{port}", "--timeout", "0.2", "--username", "u"]
    )
    assert res.exit_code == 1
    assert "no ONVIF camera answered" in res.output and "--url" in res.output
    assert "password" not in res.output.lower()  # nothing found: no credentials asked for
