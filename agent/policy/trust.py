"""The keys this device trusts to sign grants, approvals and key-set updates (received at enrollment)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK

log = logging.getLogger(__name__)

ALLOWED_ALGS = ("EdDSA", "ES256")
USAGES = ("grant", "approval", "trust")


class TrustError(Exception):
    pass


class TrustStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = 0
        self.issuer: str | None = None
        self._keys: dict[str, tuple[Any, str, str]] = {}  # kid -> (public key, usage, alg)
        self.error: str | None = None
        if path.is_file():
            try:
                self._install(json.loads(path.read_text()))
            except (TrustError, ValueError, UnicodeDecodeError) as exc:
                # Keep running (telemetry, ping, diagnostics) but trust nothing: every grant is refused.
                self.error = f"{path}: unusable key set: {exc}"
                log.error("%s; every command that needs a grant will be refused", self.error)

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def _install(self, keyset: dict[str, Any]) -> None:
        keys: dict[str, tuple[Any, str, str]] = {}
        entries = keyset.get("keys") if isinstance(keyset, dict) else None
        if not isinstance(entries, list) or not all(isinstance(j, dict) for j in entries):
            raise TrustError("a key set is an object with a list of JWKs under 'keys'")
        for jwk in entries:
            usage = jwk.get("edge_usage")
            kid = jwk.get("kid")
            if usage not in USAGES or not isinstance(kid, str):
                raise TrustError(f"key {kid!r}: edge_usage must be one of {USAGES}")
            alg = jwk.get("alg") or ("EdDSA" if jwk.get("kty") == "OKP" else "ES256")
            if alg not in ALLOWED_ALGS:
                raise TrustError(f"key {kid}: algorithm {alg} not allowed")
            try:
                keys[kid] = (PyJWK(jwk, algorithm=alg).key, usage, alg)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
                raise TrustError(f"key {kid}: {exc}") from exc
        if not any(u == "grant" for _, u, _ in keys.values()):
            raise TrustError("key set has no grant-signing key")
        self._keys = keys
        version = keyset.get("version", 0)
        if not isinstance(version, int):
            raise TrustError("key-set version must be an integer")
        self.version = version
        self.issuer = keyset.get("issuer")
        self.error = None

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def key(self, kid: str, usage: str) -> tuple[Any, str] | None:
        entry = self._keys.get(kid)
        if entry is None or entry[1] != usage:
            return None
        return entry[0], entry[2]

    def apply_update(self, token: str, leeway: float = 30.0) -> int:
        """Install a key set signed by a currently trusted `trust` key; versions only move forward."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TrustError(f"malformed key-set update: {exc}") from exc
        found = self.key(str(header.get("kid")), "trust")
        if found is None or header.get("alg") not in ALLOWED_ALGS:
            raise TrustError("key-set update is not signed by a trusted trust key")
        key, alg = found
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], leeway=leeway, options={"require": ["exp", "jti"]}
            )
        except jwt.PyJWTError as exc:
            raise TrustError(f"key-set update rejected: {exc}") from exc
        keyset = claims.get("keyset")
        if not isinstance(keyset, dict):
            raise TrustError("key-set update carries no `keyset` object")
        version = keyset.get("version")
        if not isinstance(version, int) or version <= self.version:
            raise TrustError(f"key-set version must be greater than {self.version}")
        previous = self._keys, self.version, self.issuer
        try:
            self._install(keyset)
        except TrustError:
            self._keys, self.version, self.issuer = previous
            raise
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps(keyset))
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o600)
        os.replace(tmp, self.path)
        log.info("trust anchors updated to key-set version %d", self.version)
        return self.version
