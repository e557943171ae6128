"""Wires the pieces together and owns the lifecycle: start in dependency order, stop in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent import __version__
from agent.camera.manager import CameraManager, CameraStatus
from agent.config import AgentSettings
from agent.detect.wiring import create_detection
from agent.health import handlers as health_handlers
from agent.health.telemetry import Telemetry, camera_states
from agent.mqtt.commands import CommandChannel
from agent.mqtt.delivery import OutboxSender
from agent.mqtt.dispatch import Dispatcher
from agent.mqtt.messages import StateMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.registry import HandlerRegistry
from agent.mqtt.session import MqttSession
from agent.policy.wiring import build_policy
from agent.ptz import handlers as ptz_handlers
from agent.services import Services
from agent.stream import handlers as stream_handlers
from provisioning.rotation import CertificateRotator

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The agent cannot start; the message says what to fix."""


def preflight(settings: AgentSettings) -> None:
    """Problems that would otherwise surface as obscure TLS errors in a reconnect loop."""
    state = settings.storage.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.center.insecure_dev:
        return
    for what, path in (
        ("CA bundle", settings.ca_file),
        ("certificate", settings.cert_file),
        ("key", settings.key_file),
    ):
        if not path.is_file():
            raise StartupError(
                f"device {what} {path} is missing: enroll this device first with "
                "`edge-agent provision --claim FILE --center URL` (see docs/provisioning.md)"
            )
    mode = settings.key_file.stat().st_mode & 0o777
    if mode & 0o077:
        raise StartupError(
            f"device key {settings.key_file} has mode {mode:o}; run: chmod 600 {settings.key_file}"
        )


class AgentApp:
    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings
        self.started_at = 0.0
        self.registry = HandlerRegistry()
        self._tasks: list[asyncio.Task[Any]] = []
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        outbox_path = settings.storage.state_dir / "outbox.sqlite"
        settings.storage.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.outbox = Outbox(outbox_path, settings.device.id, int(settings.storage.outbox_max_mb * 2**20))
        self.services = Services(settings=settings, outbox=self.outbox)
        self.services.cameras = CameraManager(settings.cameras, on_state=self._camera_changed)
        self._birth_task: asyncio.Task[None] | None = None
        self._announced_states: dict[str, str] = {}
        self.telemetry = Telemetry(self.services)
        self.policy = build_policy(self.services)
        self.services.audit = self.policy.audit

    def birth(self) -> StateMessage:
        s = self.settings
        return StateMessage(
            device_id=s.device.id,
            status="online",
            version=__version__,
            owner_org=s.device.owner_org,
            location=s.device.location,
            cameras=camera_states(self.services),
            capabilities=dict(self.services.capabilities),
            actions=self.registry.names(),
            started_at=self.started_at,
        )

    @staticmethod
    def all_action_names() -> list[str]:
        return AgentApp.scratch_registry().names()

    @staticmethod
    def scratch_registry() -> HandlerRegistry:
        """Every action an agent registers (schemas, documentation checks): built on a scratch dir."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            settings = AgentSettings.model_validate(
                {
                    "device": {
                        "id": "doc-check",
                        "owner_org": "x",
                        "location": {"province": "01", "district": "001", "commune": "00001"},
                    },
                    "center": {"host": "localhost", "insecure_dev": True},
                    "storage": {"state_dir": tmp},
                }
            )
            app = AgentApp(settings)
            app.register_handlers()
            app.outbox.close()
            app.policy.audit.close()
            return app.registry

    def register_handlers(self) -> None:
        """Every action of every feature; before the session starts, so the birth lists them all."""
        health_handlers.register(self.registry, self.services, self.telemetry)
        self.policy.register(self.registry, self.services)
        # PTZ tells detection when a camera leaves its home view (counting pauses); the hook looks
        # detection up at call time, so the order in which the two are built does not matter.
        self.detection = create_detection(self.services, self.registry)
        self.services.extras[ptz_handlers.AWAY_HOOK_KEY] = self._ptz_away
        ptz_handlers.register(self.registry, self.services, self.settings.ptz)
        stream_handlers.register(self.registry, self.services)

    def _camera_changed(self, status: CameraStatus) -> None:
        """Keep the retained state true: re-announce (debounced) when a camera goes on/offline."""
        log.info(
            "camera %s is %s%s",
            status.name,
            status.state,
            f": {status.last_error}" if status.last_error else "",
        )
        if self._birth_task is None or self._birth_task.done():
            self._birth_task = asyncio.ensure_future(self._reannounce())

    async def _reannounce(self) -> None:
        await asyncio.sleep(1.0)
        session = self.services.session
        if session is not None and session.connected.is_set():
            with contextlib.suppress(Exception):
                await session.publish_birth()

    def _ptz_away(self, camera: str, away: bool) -> None:
        detection = self.services.extras.get("detect")
        if detection is not None:
            detection.on_ptz_away(camera, away)

    def camera_names(self) -> set[str]:
        return {c.name for c in self.settings.cameras}

    async def start(self) -> None:
        self.started_at = time.time()
        s = self.services
        self.register_handlers()
        self._stoppers.append(self.policy.stop)
        dispatcher = Dispatcher(
            self.settings.device.id, self.registry, self.policy.gate, self.policy.audit, self.camera_names
        )
        channel_box: list[CommandChannel] = []

        async def on_command(cmd: Any) -> None:
            await channel_box[0].on_command(cmd)

        session = MqttSession(self.settings, birth=self.birth, on_command=on_command)
        channel_box.append(CommandChannel(session, dispatcher))
        s.session = session
        self.dispatcher = dispatcher
        self.channel = channel_box[0]
        self.sender = OutboxSender(self.outbox, session)
        # [wiring: features] cameras, detection, ptz, streams register before the session starts,
        # so the birth message lists every action and capability.
        streams = stream_handlers.build(s)
        streams.ensure_running()
        self._stoppers.append(streams.stop)

        rotator = CertificateRotator(s)
        s.telemetry_providers["identity"] = rotator.status
        s.extras["rotator"] = rotator

        await self.detection.start()
        self._stoppers.append(self.detection.stop)
        ptz = self.services.extras[ptz_handlers.EXTRA_KEY]
        s.capabilities["ptz"] = await ptz.probe_all()  # before the birth message announces them
        self._stoppers.append(ptz.close)

        await session.start()
        self._spawn(rotator.run(), "cert-rotation")
        self._spawn(ptz.run_health(self.settings.ptz.health_interval_s), "ptz-health")
        if s.cameras is not None:
            await s.cameras.start()
            self._stoppers.append(s.cameras.stop)
        self._spawn(self.sender.run(), "outbox")
        self._spawn(self.telemetry.run(), "telemetry")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.services.session is not None:
            await self.services.session.stop()
        for stopper in reversed(self._stoppers):
            with contextlib.suppress(Exception):
                await stopper()
        self.outbox.close()


async def run_agent(settings: AgentSettings) -> None:
    preflight(settings)
    app = AgentApp(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    log.info("edge-agent %s running as %s", __version__, settings.device.id)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await app.stop()
