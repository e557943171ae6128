"""Command dispatch: parse -> validate -> the policy gate -> audit -> handler -> audit -> response.

Nothing reaches a handler without passing the gate, and every refusal is audited, including
payloads too broken to name an action.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from agent.mqtt.envelope import (
    MAX_COMMAND_BYTES,
    CommandEnvelope,
    CommandError,
    CommandResponse,
    ErrorCode,
    ErrorInfo,
)
from agent.mqtt.registry import ActionSpec, CommandContext, HandlerRegistry
from agent.policy.context import AuthContext

log = logging.getLogger(__name__)


class Gate(Protocol):
    async def authorize(self, env: CommandEnvelope, spec: ActionSpec, camera: str | None) -> AuthContext: ...


class Auditor(Protocol):
    async def decision(
        self,
        env: CommandEnvelope | None,
        action: str | None,
        auth: AuthContext | None,
        camera: str | None,
        allowed: bool,
        reason: str,
    ) -> None: ...

    async def result(
        self, env: CommandEnvelope, auth: AuthContext, camera: str | None, ok: bool, detail: dict[str, Any]
    ) -> None: ...

    async def event(self, kind: str, auth: AuthContext | None, detail: dict[str, Any]) -> None:
        """Feature-specific records (stream bytes at stop, PTZ lock taken over, ...)."""


def _validation_summary(exc: ValidationError, limit: int = 5) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(root)", "error": e["msg"]}
        for e in exc.errors(include_url=False)[:limit]
    ]


class Dispatcher:
    def __init__(
        self,
        device_id: str,
        registry: HandlerRegistry,
        gate: Gate,
        audit: Auditor,
        camera_names: Callable[[], set[str]],
    ) -> None:
        self.device_id = device_id
        self.registry = registry
        self.gate = gate
        self.audit = audit
        self.camera_names = camera_names
        self.handled = 0
        self.refused = 0

    def _error(
        self,
        cmd_id: str | None,
        action: str | None,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> CommandResponse:
        self.refused += 1
        return CommandResponse(
            id=cmd_id,
            device_id=self.device_id,
            action=action,
            ok=False,
            error=ErrorInfo(code=code, message=message, details=details or {}),
        )

    async def _refuse_unparsed(
        self, cmd_id: str | None, code: ErrorCode, message: str, details: Any = None
    ) -> CommandResponse:
        await self.audit.decision(None, None, None, None, False, f"{code.value}: {message}")
        return self._error(cmd_id, None, code, message, {"errors": details} if details else None)

    async def handle(self, payload: bytes) -> CommandResponse:
        if len(payload) > MAX_COMMAND_BYTES:
            return await self._refuse_unparsed(
                None, ErrorCode.TOO_LARGE, f"payload of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}"
            )
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return await self._refuse_unparsed(None, ErrorCode.MALFORMED, f"payload is not JSON: {exc}")
        cmd_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        cmd_id = cmd_id[:128] if cmd_id else None
        try:
            env = CommandEnvelope.model_validate(raw)
        except ValidationError as exc:
            return await self._refuse_unparsed(
                cmd_id,
                ErrorCode.MALFORMED,
                "payload does not match the command envelope",
                _validation_summary(exc),
            )
        return await self._handle_envelope(env)

    async def _handle_envelope(self, env: CommandEnvelope) -> CommandResponse:
        spec = self.registry.get(env.action)
        if spec is None:
            await self.audit.decision(env, env.action, None, None, False, "unknown_action")
            return self._error(env.id, env.action, ErrorCode.UNKNOWN_ACTION, f"unknown action {env.action!r}")
        try:
            params = spec.params_model.model_validate(env.params)
        except ValidationError as exc:
            await self.audit.decision(env, env.action, None, None, False, "invalid_params")
            return self._error(
                env.id,
                env.action,
                ErrorCode.INVALID_PARAMS,
                f"invalid parameters for {env.action}",
                {"errors": _validation_summary(exc)},
            )
        camera = getattr(params, "camera", None) if spec.needs_camera else None
        try:
            auth = await self.gate.authorize(env, spec, camera)
        except CommandError as exc:
            await self.audit.decision(
                env, env.action, None, camera, False, f"{exc.code.value}: {exc.message}"
            )
            return self._error(env.id, env.action, exc.code, exc.message, exc.details)
        if spec.needs_camera and camera not in self.camera_names():
            await self.audit.decision(env, env.action, auth, camera, False, "not_found: no such camera")
            return self._error(
                env.id, env.action, ErrorCode.NOT_FOUND, f"no camera named {camera!r} on this device"
            )
        await self.audit.decision(env, env.action, auth, camera, True, "allowed")
        return await self._run(spec, env, auth, camera, params)

    async def _run(
        self, spec: ActionSpec, env: CommandEnvelope, auth: AuthContext, camera: str | None, params: BaseModel
    ) -> CommandResponse:
        ctx = CommandContext(envelope=env, auth=auth, camera=camera)
        try:
            out = await spec.handler(ctx, params)
        except CommandError as exc:
            await self.audit.result(
                env, auth, camera, False, {"error": exc.code.value, "message": exc.message}
            )
            return self._error(env.id, env.action, exc.code, exc.message, exc.details)
        except Exception:
            log.exception("handler for %s failed", env.action)
            await self.audit.result(env, auth, camera, False, {"error": "internal"})
            return self._error(env.id, env.action, ErrorCode.INTERNAL, f"{env.action} failed on the device")
        result = out.model_dump(mode="json") if isinstance(out, BaseModel) else (out or {})
        await self.audit.result(env, auth, camera, True, {})
        self.handled += 1
        return CommandResponse(id=env.id, device_id=self.device_id, action=env.action, ok=True, result=result)
