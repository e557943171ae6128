"""Topic names: decided once here and documented in docs/protocol.md."""

from __future__ import annotations

from dataclasses import dataclass

CHANNELS = ("state", "telemetry", "events", "counts", "audit", "alarms")


@dataclass(frozen=True)
class DeviceTopics:
    root: str
    device_id: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.device_id}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def resp_prefix(self) -> str:
        """Responses may only go below this prefix: the broker ACL confines a device to its subtree."""
        return f"{self.base}/resp/"

    def channel(self, name: str) -> str:
        if name not in CHANNELS:
            raise ValueError(f"unknown channel {name!r}")
        return f"{self.base}/{name}"

    def is_valid_response_topic(self, topic: str) -> bool:
        rest = topic[len(self.resp_prefix) :]
        return (
            topic.startswith(self.resp_prefix)
            and 0 < len(rest) <= 128
            and not any(ch in rest for ch in "#+\x00")
        )
