"""Detection actions on the command channel: counts, event search, snapshots, rules.

The gate has authorized the requester before a handler runs. Queries without a camera are narrowed
to the cameras of the requester's grant (``auth.cameras``) so an area-scoped grant never sees
another area's data; that is data scoping, not a second permission check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING

from agent.detect.events import InvalidCursor
from agent.detect.messages import (
    GetCountsParams,
    GetCountsResult,
    GetRulesParams,
    GetSnapshotParams,
    GetSnapshotResult,
    RulesResult,
    SearchEventsParams,
    SearchEventsResult,
    SetRulesParams,
)
from agent.mqtt.envelope import CommandError, ErrorCode
from agent.mqtt.registry import CommandContext, HandlerRegistry

if TYPE_CHECKING:
    from agent.detect.manager import DetectionManager
    from agent.services import Services

EXTRA_KEY = "detect"
"""``services.extras["detect"]`` is the DetectionManager."""


def _scope(ctx: CommandContext) -> list[str] | None:
    return None if ctx.auth.cameras is None else list(ctx.auth.cameras)


def register(registry: HandlerRegistry, services: Services, manager: DetectionManager | None = None) -> None:
    """Register get_counts, search_events, get_snapshot, set_rules, get_rules.

    ``manager`` defaults to ``services.extras["detect"]`` (see agent/detect/wiring.py).
    """
    mgr: DetectionManager = manager if manager is not None else services.extras[EXTRA_KEY]

    @registry.action("get_counts", GetCountsParams, summary="Vehicle/person counts per line and zone stats.")
    async def get_counts(ctx: CommandContext, p: GetCountsParams) -> GetCountsResult:
        return await asyncio.to_thread(mgr.counts.query, p, _scope(ctx))

    @registry.action("search_events", SearchEventsParams, summary="Search detection events, newest first.")
    async def search_events(ctx: CommandContext, p: SearchEventsParams) -> SearchEventsResult:
        try:
            return await asyncio.to_thread(mgr.events.search, p, _scope(ctx))
        except InvalidCursor as exc:
            raise CommandError(ErrorCode.INVALID_PARAMS, str(exc)) from exc

    @registry.action(
        "get_snapshot", GetSnapshotParams, needs_camera=True, summary="JPEG of an event (full or crop)."
    )
    async def get_snapshot(ctx: CommandContext, p: GetSnapshotParams) -> GetSnapshotResult:
        data = await asyncio.to_thread(mgr.snapshots.read, p.camera, p.id, p.kind)
        if data is None:
            raise CommandError(
                ErrorCode.NOT_FOUND, f"no {p.kind} snapshot {p.id} for camera {p.camera} (unknown or evicted)"
            )
        return GetSnapshotResult(
            id=p.id,
            camera=p.camera,
            kind=p.kind,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data_b64=base64.b64encode(data).decode(),
        )

    @registry.action(
        "set_rules",
        SetRulesParams,
        needs_camera=True,
        grant_use="once",
        summary="Replace a camera's lines and zones now (validated, persisted).",
    )
    async def set_rules(ctx: CommandContext, p: SetRulesParams) -> RulesResult:
        try:
            updated = await mgr.set_rules(p.camera, p.rules)
        except KeyError as exc:
            raise CommandError(ErrorCode.NOT_FOUND, f"no camera named {p.camera!r}") from exc
        return RulesResult(camera=p.camera, rules=p.rules, source="command", updated_at=updated)

    @registry.action("get_rules", GetRulesParams, needs_camera=True, summary="A camera's lines and zones.")
    async def get_rules(ctx: CommandContext, p: GetRulesParams) -> RulesResult:
        try:
            rules, source, updated = mgr.rules_of(p.camera)
        except KeyError as exc:
            raise CommandError(ErrorCode.NOT_FOUND, f"no camera named {p.camera!r}") from exc
        return RulesResult(camera=p.camera, rules=rules, source=source, updated_at=updated)  # type: ignore[arg-type]
