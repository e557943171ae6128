"""The shared services every feature package receives: one object, built once by the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agent.config import AgentSettings
from agent.mqtt.outbox import Outbox

if TYPE_CHECKING:
    from agent.camera.manager import CameraManager
    from agent.mqtt.dispatch import Auditor
    from agent.mqtt.session import MqttSession


@dataclass
class Services:
    settings: AgentSettings
    outbox: Outbox
    session: MqttSession | None = None
    cameras: CameraManager | None = None
    audit: Auditor | None = None
    telemetry_providers: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    capabilities: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # feature services that others may call

    @property
    def state_dir(self) -> Path:
        return self.settings.storage.state_dir

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def publish(self, channel: str, message: BaseModel) -> bool:
        """Best-effort, non-durable publish (telemetry-like data); False when offline."""
        if self.session is None:
            return False
        topic = self.session.topics.channel(channel)
        return self.session.publish_nowait(topic, message.model_dump_json().encode())
