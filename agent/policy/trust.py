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
        if path.is_file():
            self._install(json.loads(path.read_text()))

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def _install(self, keyset: dict[str, Any]) -> None:
        keys: dict[str, tuple[Any, str, str]] = {}
        for jwk in keyset.get("keys", []):
            usage = jwk.get("edge_usage")
            kid = jwk.get("kid")
            if usage not in USAGES or not isinstance(kid, str):
                raise TrustError(f"key {kid!r}: edge_usage must be one of {USAGES}")
            alg = jwk.get("alg") or ("EdDSA" if jwk.get("kty") == "OKP" else "ES256")
            if alg not in ALLOWED_ALGS:
                raise TrustError(f"key {kid}: algorithm {alg} not allowed")
            try:
                keys[kid] = (PyJWK(jwk, algorithm=alg).key, usage, alg)
            except jwt.PyJWTError as exc:
                raise TrustError(f"key {kid}: {exc}") from exc
        if not any(u == "grant" for _, u, _ in keys.values()):
            raise TrustError("key set has no grant-signing key")
        self._keys = keys
        self.version = int(keyset.get("version", 0))
        self.issuer = keyset.get("issuer")

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
        if not isinstance(keyset, dict) or int(keyset.get("version", 0)) <= self.version:
            raise TrustError(f"key-set version must be greater than {self.version}")
        previous = self._keys, self.version, self.issuer
        try:
            self._install(keyset)
        except TrustError:
            self._keys, self.version, self.issuer = previous
            raise
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(keyset))
        os.replace(tmp, self.path)
        log.info("trust anchors updated to key-set version %d", self.version)
        return self.version
