"""Moves outbox messages to the broker while connected; deletes each only after its PUBACK."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agent.mqtt.outbox import Outbox, PendingMessage
from agent.mqtt.session import MqttSession, NotConnected, PublishRefused

log = logging.getLogger(__name__)

PERMANENT_REFUSALS = {0x87, 0x90, 0x95, 0x99}
"""Not authorized, topic name invalid, packet too large, payload format invalid: retrying cannot help."""


class OutboxSender:
    def __init__(self, outbox: Outbox, session: MqttSession, window: int = 64) -> None:
        self.outbox = outbox
        self.session = session
        self.window = window
        self.refusals = 0

    async def run(self) -> None:
        retry_delay = 0.5
        while True:
            await self.session.connected.wait()
            batch = await self.outbox.next_batch(self.window, exclude=set())
            if not batch:
                self.outbox.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.outbox.wakeup.wait(), 1.0)
                continue
            await self.outbox.mark_attempt([m.seq for m in batch])
            results = await asyncio.gather(*(self._send(m) for m in batch), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                log.info("outbox: %d of %d not delivered (%s); retrying", len(failed), len(batch), failed[0])
                await asyncio.sleep(retry_delay)
                retry_delay = min(retry_delay * 2, 30.0)
            else:
                retry_delay = 0.5

    async def _send(self, msg: PendingMessage) -> None:
        topic = self.session.topics.channel(msg.channel)
        try:
            await self.session.publish(topic, msg.payload, qos=1, timeout=15.0)
        except PublishRefused as exc:
            if exc.reason_code in PERMANENT_REFUSALS:
                self.refusals += 1
                log.error("outbox: %s; message %s moved to dead letters", exc, msg.msg_id)
                await self.outbox.dead_letter(msg, f"{exc.reason_code} {exc.reason}")
                return
            raise
        except (NotConnected, TimeoutError):
            raise
        await self.outbox.ack(msg.seq)
