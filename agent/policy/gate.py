"""The policy gate: the only way a command reaches a handler.

Deny by default. A command must carry a grant signed by a key the device trusts for grants, meant
for this device (audience), valid now (small clock-skew allowance), not replayed, whose role may
perform the action (policy matrix), whose area covers the device's location, whose camera list
covers the camera, with a stated purpose. Extraction also needs a leadership approval grant.
The broker is not trusted: anyone who can publish on the command topic still needs the center's
signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config import Location
from agent.mqtt.envelope import CommandEnvelope, CommandError, ErrorCode
from agent.mqtt.registry import ActionSpec
from agent.policy.context import AuthContext, denied_identity
from agent.policy.matrix import PolicyMatrix
from agent.policy.replay import ReplayCache
from agent.policy.trust import ALLOWED_ALGS, TrustStore

MAX_GRANT_BYTES = 8192


class Area(BaseModel):
    model_config = ConfigDict(extra="forbid")
    province: str | None = None
    district: str | None = None
    commune: str | None = None


class GrantClaims(BaseModel):
    """Claims every grant must carry (beyond the registered iss/aud/nbf/exp/iat/jti)."""

    model_config = ConfigDict(extra="allow")
    sub: str = Field(..., min_length=1, max_length=128)
    unit: str = Field("", max_length=128)
    role: str = Field(..., min_length=1, max_length=64)
    actions: list[str] = Field(..., max_length=64)
    area: Area = Field(default_factory=Area)
    cameras: list[str] | None = Field(None, max_length=256)
    purpose: str = Field(..., min_length=3, max_length=1024)
    purpose_ref: str = Field("", max_length=256)
    org: str | None = Field(None, max_length=128)
    jti: str = Field(..., min_length=8, max_length=128)
    nbf: float
    exp: float


class ApprovalClaims(GrantClaims):
    approves: str
    camera: str
    start: float
    end: float


class Denied(CommandError):
    """A refusal by the gate; ``identity`` is set once the grant's signature was verified, so the
    audit record can say who was refused (not only that someone was)."""

    identity: AuthContext | None = None


def _deny(code: ErrorCode, message: str, **details: Any) -> Denied:
    return Denied(code, message, details)


def _as_epoch(value: Any) -> float | None:
    """Seconds since the epoch from a number or an ISO-8601 time (naive means UTC); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()
    return None


class PolicyGate:
    def __init__(
        self,
        *,
        device_id: str,
        owner_org: str,
        location: Location,
        trust: TrustStore,
        policy: PolicyMatrix,
        replay: ReplayCache,
        cameras: Callable[[], set[str]] | None = None,
        clock_skew_s: float = 30.0,
        max_grant_bytes: int = MAX_GRANT_BYTES,
    ) -> None:
        self.device_id = device_id
        self.owner_org = owner_org
        self.location = location
        self.trust = trust
        self.policy = policy
        self.replay = replay
        self.cameras = cameras
        self.skew = clock_skew_s
        self.max_grant_bytes = max_grant_bytes
        loc = location
        self.audiences = [
            device_id,
            f"area:{loc.province}",
            f"area:{loc.province}/{loc.district}",
            f"area:{loc.province}/{loc.district}/{loc.commune}",
        ]

    async def authorize(self, env: CommandEnvelope, spec: ActionSpec, camera: str | None) -> AuthContext:
        """Authorize one command or raise a typed CommandError. Signature checks and the replay
        record (an fsync'd SQLite write) run in a worker thread, off the event loop."""
        denied_identity.set(None)
        if not spec.requires_grant:
            return AuthContext(requester="anonymous", role="anonymous")
        try:
            return await asyncio.to_thread(self.check, env, spec, camera)
        except Denied as exc:
            if exc.identity is not None:
                denied_identity.set((env, exc.identity))
            raise

    def check(self, env: CommandEnvelope, spec: ActionSpec, camera: str | None) -> AuthContext:
        """The whole decision, synchronously (tests and the benchmark call it directly)."""
        if not spec.requires_grant:
            return AuthContext(requester="anonymous", role="anonymous")
        if not env.grant:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{spec.name} needs a grant")
        raw = self._verify(env.grant, "grant")
        claims = self._claims(GrantClaims, raw, "grant")
        ctx = AuthContext(
            requester=claims.sub,
            unit=claims.unit,
            role=claims.role,
            purpose=claims.purpose,
            purpose_ref=claims.purpose_ref,
            grant_id=claims.jti,
            cameras=claims.cameras,
            expires_at=claims.exp,
            claims=raw,
        )
        try:
            self._authorize_claims(env, claims, spec, camera)
            if spec.needs_camera and self.cameras is not None and camera not in self.cameras():
                # before the replay record, so a one-shot grant is not spent on a typo
                raise _deny(ErrorCode.NOT_FOUND, f"no camera named {camera!r} on this device")
            if spec.needs_approval:
                ctx.approval = self._check_approval(env, spec.name, claims, camera)
            reason = self.replay.check_and_record(claims.jti, claims.exp, spec.grant_use, camera or "")
            if reason is not None:
                raise _deny(ErrorCode.REPLAYED, reason, grant_id=claims.jti)
        except Denied as exc:
            exc.identity = ctx
            raise
        return ctx

    # ---------------------------------------------------------------- token
    def _verify(self, token: str, usage: str) -> dict[str, Any]:
        if len(token) > self.max_grant_bytes:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} larger than {self.max_grant_bytes} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _deny(ErrorCode.UNAUTHORIZED, f"malformed {usage}: {exc}") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} algorithm {alg!r} not allowed (EdDSA or ES256)")
        if not self.trust.loaded:
            raise _deny(
                ErrorCode.UNAUTHORIZED,
                "this device trusts no signing keys yet (enrollment incomplete or key set unusable)",
            )
        found = self.trust.key(str(header.get("kid")), usage)
        if found is None:
            raise _deny(
                ErrorCode.UNAUTHORIZED,
                f"{usage} signed by an unknown or unsuitable key",
                kid=header.get("kid"),
            )
        key, key_alg = found
        if key_alg != alg:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} algorithm does not match its key")
        try:
            return jwt.decode(  # type: ignore[no-any-return]
                token,
                key,
                algorithms=[alg],
                audience=self.audiences,
                issuer=self.trust.issuer,  # the key set names its issuer: grants must too
                leeway=self.skew,
                options={
                    "require": ["exp", "nbf", "jti", "aud", "sub", *(["iss"] if self.trust.issuer else [])]
                },
            )
        except jwt.ExpiredSignatureError:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} expired") from None
        except jwt.ImmatureSignatureError:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} not yet valid") from None
        except jwt.InvalidAudienceError:
            raise _deny(
                ErrorCode.UNAUTHORIZED, f"{usage} is not addressed to this device or its area (audience)"
            ) from None
        except jwt.InvalidIssuerError:
            raise _deny(
                ErrorCode.UNAUTHORIZED, f"{usage} issued by someone other than {self.trust.issuer}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} rejected: {exc}") from None
        except jwt.InvalidSignatureError:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} invalid: {exc}") from None
        except (ValueError, TypeError, OverflowError, KeyError) as exc:
            # Signed but absurd claims (e.g. exp = 1e400) that the JOSE library does not map to
            # its own errors: still a refusal, never a crash.
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} claims unreadable: {type(exc).__name__}") from None

    @staticmethod
    def _claims(model: type[GrantClaims], raw: dict[str, Any], usage: str) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_url=False)[:5])
            raise _deny(ErrorCode.UNAUTHORIZED, f"{usage} claims incomplete or invalid: {fields}") from None

    # ---------------------------------------------------------------- policy
    def _authorize_claims(
        self, env: CommandEnvelope, c: GrantClaims, spec: ActionSpec, camera: str | None
    ) -> None:
        role = self.policy.role(c.role)
        if role is None:
            raise _deny(ErrorCode.FORBIDDEN, f"unknown role {c.role!r}")
        if not self.policy.allows(c.role, spec.name):
            raise _deny(ErrorCode.FORBIDDEN, f"role {c.role} may not {spec.name}")
        if spec.name not in c.actions:
            raise _deny(ErrorCode.FORBIDDEN, f"the grant does not include {spec.name}")
        if c.exp - c.nbf > self.policy.max_ttl(c.role, spec.name) + 1:
            raise _deny(
                ErrorCode.FORBIDDEN,
                f"grant lifetime {c.exp - c.nbf:.0f} s exceeds {self.policy.max_ttl(c.role, spec.name)} s for {spec.name}",
            )
        self._check_area(role.scope, c)
        if role.cameras_required and not c.cameras:
            raise _deny(ErrorCode.FORBIDDEN, f"role {c.role} needs a grant that names its cameras")
        if c.cameras is not None:
            # camera-bound actions name theirs; others may filter by one (then it must be covered
            # too); without a filter the handler scopes its answer to ctx.auth.cameras
            asked = camera if spec.needs_camera else env.params.get("camera")
            if (spec.needs_camera or asked is not None) and asked not in c.cameras:
                raise _deny(ErrorCode.FORBIDDEN, f"the grant does not cover camera {asked!r}")

    def _check_area(self, scope: str, c: GrantClaims) -> None:
        loc, area = self.location, c.area
        if scope == "own_org":
            if c.org != self.owner_org:
                raise _deny(ErrorCode.FORBIDDEN, "installer grants cover only the organization's own devices")
            return
        levels = {"province": ("province",), "district": ("province", "district")}.get(
            scope, ("province", "district", "commune")
        )
        if scope == "grant":  # purpose-bound grants: every level the grant names must match
            levels = tuple(lv for lv in ("province", "district", "commune") if getattr(area, lv) is not None)
            if not levels:
                raise _deny(ErrorCode.FORBIDDEN, "the grant names no area")
        for level in levels:
            want = getattr(area, level)
            if want is None:
                raise _deny(ErrorCode.FORBIDDEN, f"role scope {scope} needs area.{level} in the grant")
            if want != getattr(loc, level):
                raise _deny(
                    ErrorCode.FORBIDDEN,
                    f"device is outside the grant's area ({level} {getattr(loc, level)} not {want})",
                )

    def _check_approval(
        self, env: CommandEnvelope, action: str, c: GrantClaims, camera: str | None
    ) -> dict[str, Any]:
        """The second signature: provincial police leadership consents to this request, for this
        camera and time range (Quyết định: "trích xuất video phải được sự đồng ý của lãnh đạo Công an tỉnh")."""
        if not env.approval:
            raise _deny(ErrorCode.FORBIDDEN, f"{action} needs an approval from provincial police leadership")
        raw = self._verify(env.approval, "approval")
        a: ApprovalClaims = self._claims(ApprovalClaims, raw, "approval")
        role = self.policy.role(a.role)
        if role is None or action not in role.approves:
            raise _deny(ErrorCode.FORBIDDEN, f"role {a.role} cannot approve {action}")
        self._check_area(role.scope, a)
        start, end = _as_epoch(env.params.get("start")), _as_epoch(env.params.get("end"))
        if a.approves != c.jti:
            raise _deny(ErrorCode.FORBIDDEN, "the approval refers to another request")
        if a.camera != camera:
            raise _deny(ErrorCode.FORBIDDEN, "the approval covers another camera")
        if start is None or end is None or not start < end:
            raise _deny(ErrorCode.FORBIDDEN, "an extraction needs a time range: params start < end")
        if start < a.start or end > a.end:
            raise _deny(ErrorCode.FORBIDDEN, "the requested time range is outside the approved one")
        return raw
