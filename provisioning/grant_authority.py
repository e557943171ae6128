"""The center's grant authority (reference implementation): signing keys, the key set devices
trust, and the grants and approvals that authorize commands.

Grants are standard JWTs (RFC 7519) signed with EdDSA (Ed25519, RFC 8037) or ES256 (ECDSA P-256)
through PyJWT; any JOSE library can produce them. Each key in the published key set carries ``edge_usage``:
``grant`` (requester grants), ``approval`` (provincial police leadership approvals), or ``trust``
(signs key-set updates). A device accepts a signature only from a key whose usage fits.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Usage = Literal["grant", "approval", "trust"]
Alg = Literal["EdDSA", "ES256"]
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
ISSUER = "center-authority"


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    usage: Usage
    private: PrivateKey

    @property
    def alg(self) -> Alg:
        return "EdDSA" if isinstance(self.private, Ed25519PrivateKey) else "ES256"

    def jwk(self) -> dict[str, Any]:
        """Public JWK, with the custom member ``edge_usage`` saying what the key may sign."""
        common = {"kid": self.kid, "alg": self.alg, "use": "sig", "edge_usage": self.usage}
        if isinstance(self.private, Ed25519PrivateKey):
            raw = self.private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return {"kty": "OKP", "crv": "Ed25519", "x": _b64u(raw), **common}
        nums = self.private.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64u(nums.x.to_bytes(32, "big")),
            "y": _b64u(nums.y.to_bytes(32, "big")),
            **common,
        }


@dataclass
class GrantAuthority:
    keys: dict[str, SigningKey] = field(default_factory=dict)
    issuer: str = ISSUER
    keyset_version: int = 1

    @classmethod
    def create(cls) -> GrantAuthority:
        ga = cls()
        for usage in ("grant", "approval", "trust"):
            ga.add_key(usage)  # type: ignore[arg-type]
        return ga

    def add_key(self, usage: Usage, kid: str | None = None, alg: Alg = "EdDSA") -> SigningKey:
        private: PrivateKey = (
            Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
        )
        key = SigningKey(kid or f"{usage}-{uuid.uuid4().hex[:8]}", usage, private)
        self.keys[key.kid] = key
        return key

    def key(self, usage: Usage) -> SigningKey:
        return next(k for k in reversed(list(self.keys.values())) if k.usage == usage)

    def keyset(self) -> dict[str, Any]:
        """The JWKS devices receive at enrollment (public keys only)."""
        return {
            "version": self.keyset_version,
            "issuer": self.issuer,
            "keys": [k.jwk() for k in self.keys.values()],
        }

    def keyset_json(self) -> str:
        return json.dumps(self.keyset(), indent=2)

    def signed_keyset_update(self, keyset: dict[str, Any], *, signer: SigningKey | None = None) -> str:
        """A key-set update for the `update_trust` command, signed by a currently trusted trust key."""
        k = signer or self.key("trust")
        now = int(time.time())
        claims = {"iss": self.issuer, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex, "keyset": keyset}
        return jwt.encode(
            claims, k.private, algorithm=k.alg, headers={"kid": k.kid, "typ": "edge-keyset+jwt"}
        )

    def grant(
        self,
        *,
        role: str,
        actions: list[str],
        aud: str | list[str],
        sub: str = "officer-1",
        unit: str = "unit-1",
        area: dict[str, str] | None = None,
        cameras: list[str] | None = None,
        purpose: str = "incident response",
        purpose_ref: str = "case-0001",
        ttl: float = 300,
        nbf: float | None = None,
        jti: str | None = None,
        org: str | None = None,
        extra: dict[str, Any] | None = None,
        signer: SigningKey | None = None,
        usage: Usage = "grant",
    ) -> str:
        now = time.time()
        start = now if nbf is None else nbf
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "unit": unit,
            "role": role,
            "actions": actions,
            "area": area or {},
            "purpose": purpose,
            "purpose_ref": purpose_ref,
            "iat": int(now),
            "nbf": int(start),
            "exp": int(start + ttl),
            "jti": jti or uuid.uuid4().hex,
        }
        if cameras is not None:
            claims["cameras"] = cameras
        if org is not None:
            claims["org"] = org
        claims.update(extra or {})
        k = signer or self.key(usage)
        return jwt.encode(claims, k.private, algorithm=k.alg, headers={"kid": k.kid, "typ": "JWT"})

    def approval(
        self,
        *,
        approves: str,
        camera: str,
        start: float,
        end: float,
        aud: str | list[str],
        sub: str = "leader-1",
        area: dict[str, str] | None = None,
        ttl: float = 3600,
        signer: SigningKey | None = None,
        role: str = "police_leadership",
    ) -> str:
        """Provincial police leadership consent to one extraction (referencing the request's grant id)."""
        return self.grant(
            role=role,
            actions=["approve_export"],
            aud=aud,
            sub=sub,
            unit="provincial-police-leadership",
            area=area,
            purpose="approval of video extraction",
            purpose_ref=approves,
            ttl=ttl,
            extra={"approves": approves, "camera": camera, "start": start, "end": end},
            signer=signer or self.key("approval"),
        )

    # persistence for the demo console (private keys 0600)
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for k in self.keys.values():
            p = directory / f"{k.kid}.{k.usage}.pem"
            p.write_bytes(
                k.private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            p.chmod(0o600)
        (directory / "keyset.json").write_text(self.keyset_json())

    @classmethod
    def load(cls, directory: Path) -> GrantAuthority:
        ga = cls()
        for p in sorted(directory.glob("*.pem")):
            kid, usage, _ = p.name.rsplit(".", 2)
            priv = serialization.load_pem_private_key(p.read_bytes(), None)
            if not isinstance(priv, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
                raise ValueError(f"{p}: not an Ed25519 or P-256 key")
            ga.keys[kid] = SigningKey(kid, usage, priv)  # type: ignore[arg-type]
        published = directory / "keyset.json"
        if published.is_file():  # keep the version moving forward across restarts
            ga.keyset_version = int(json.loads(published.read_text()).get("version", 1))
        return ga
