"""Action name -> handler. Packages register their actions; the dispatcher runs them behind the gate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from agent.mqtt.envelope import CommandEnvelope
    from agent.policy.context import AuthContext

GrantUse = Literal["once", "session", "reusable"]


@dataclass
class CommandContext:
    envelope: CommandEnvelope
    auth: AuthContext
    camera: str | None  # params["camera"], validated against the grant by the gate


Handler = Callable[[CommandContext, Any], Awaitable[BaseModel | dict[str, Any] | None]]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    handler: Handler
    params_model: type[BaseModel]
    grant_use: GrantUse = "reusable"  # how often one grant id may be used for this action
    needs_camera: bool = False  # params must name a configured camera
    needs_approval: bool = False  # a second (leadership) grant is required
    requires_grant: bool = True  # only harmless liveness actions (ping) may go without a grant
    summary: str = ""


class HandlerRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, ActionSpec] = {}

    def add(self, spec: ActionSpec) -> None:
        if spec.name in self._specs:
            raise ValueError(f"action {spec.name!r} registered twice")
        self._specs[spec.name] = spec

    def action(
        self,
        name: str,
        params_model: type[BaseModel],
        *,
        grant_use: GrantUse = "reusable",
        needs_camera: bool = False,
        needs_approval: bool = False,
        requires_grant: bool = True,
        summary: str = "",
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.add(
                ActionSpec(
                    name, fn, params_model, grant_use, needs_camera, needs_approval, requires_grant, summary
                )
            )
            return fn

        return deco

    def get(self, name: str) -> ActionSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[ActionSpec]:
        return [self._specs[n] for n in self.names()]
