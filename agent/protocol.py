"""Every message on the wire, by schema name. tools/gen_schemas.py writes docs/schemas/ from this
list and a test fails when the committed schemas differ from the models."""

from __future__ import annotations

from pydantic import BaseModel

from agent.detect.messages import (
    CountRecord,
    DetectionEvent,
    GetCountsResult,
    GetSnapshotResult,
    RulesResult,
    SearchEventsResult,
)
from agent.health.handlers import PingParams, PingResult, StatusResult
from agent.mqtt.envelope import CommandEnvelope, CommandResponse
from agent.mqtt.messages import DurableMessage, StateMessage, TelemetryMessage
from agent.policy.audit import AuditRecord
from agent.policy.handlers import UpdateTrustParams, UpdateTrustResult


def wire_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {
        "command-envelope": CommandEnvelope,
        "command-response": CommandResponse,
        "state": StateMessage,
        "telemetry": TelemetryMessage,
        "durable-message": DurableMessage,
        "ping.params": PingParams,
        "ping.result": PingResult,
        "get_status.result": StatusResult,
        "update_trust.params": UpdateTrustParams,
        "update_trust.result": UpdateTrustResult,
        "audit-record": AuditRecord,
        "event": DetectionEvent,
        "count-record": CountRecord,
        "get_counts.result": GetCountsResult,
        "search_events.result": SearchEventsResult,
        "get_snapshot.result": GetSnapshotResult,
        "get_rules.result": RulesResult,
    }
    from agent.app import AgentApp

    for spec in AgentApp.scratch_registry().specs():
        models.setdefault(f"{spec.name}.params", spec.params_model)
    return models
