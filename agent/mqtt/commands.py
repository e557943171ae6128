"""The MQTT side of the command channel: response topics, correlation data, back-pressure."""

from __future__ import annotations

import logging

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.mqtt.dispatch import Dispatcher
from agent.mqtt.envelope import CommandResponse, ErrorCode, ErrorInfo
from agent.mqtt.session import IncomingCommand, MqttSession, NotConnected, PublishRefused

log = logging.getLogger(__name__)


class CommandChannel:
    """Receives requests from the session, runs them through the dispatcher, answers each one."""

    def __init__(self, session: MqttSession, dispatcher: Dispatcher, max_pending: int = 64) -> None:
        self.session = session
        self.dispatcher = dispatcher
        self.max_pending = max_pending
        self.pending = 0
        self.unanswerable = 0

    async def on_command(self, cmd: IncomingCommand) -> None:
        topic = cmd.response_topic
        if not topic or not self.session.topics.is_valid_response_topic(topic):
            # Nowhere to answer: do not act on it (the requester could never learn the outcome).
            self.unanswerable += 1
            log.warning(
                "command ignored: response topic %r is missing or not under %s",
                topic,
                self.session.topics.resp_prefix,
            )
            await self.dispatcher.audit.decision(
                None, None, None, None, False, "malformed: bad response topic"
            )
            return
        if self.pending >= self.max_pending:
            resp = CommandResponse(
                device_id=self.session.device_id,
                ok=False,
                error=ErrorInfo(code=ErrorCode.BUSY, message="too many commands in progress; retry later"),
            )
            await self.dispatcher.audit.decision(None, None, None, None, False, "busy: command queue full")
        else:
            self.pending += 1
            try:
                resp = await self.dispatcher.handle(cmd.payload)
            finally:
                self.pending -= 1
        props = Properties(PacketTypes.PUBLISH)
        if cmd.correlation_data is not None:
            props.CorrelationData = cmd.correlation_data
        try:
            await self.session.publish(topic, resp.model_dump_json().encode(), qos=1, properties=props)
        except (NotConnected, PublishRefused, TimeoutError) as exc:
            log.warning("response to command %s not delivered: %s", resp.id, exc)
