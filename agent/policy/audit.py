"""Tamper-evident audit trail: hash-chained JSON lines with checkpoints signed by the device key.

Each record carries ``seq`` and ``prev`` (the previous record's hash) and its own ``hash`` =
sha256(canonical JSON of the record without ``hash``). Editing, deleting, inserting or reordering a
record breaks the chain at that point; rewriting the whole tail is caught by the signed
checkpoints (the device key never leaves the box) and by the copy the center receives through the
outbox. Anyone with the device certificate can verify an exported file (`edge-agent audit verify`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel

from agent.mqtt.envelope import CommandEnvelope
from agent.policy.context import AuthContext, denied_identity

log = logging.getLogger(__name__)

GENESIS = "0" * 64
MAX_UNSENT = 10000
SigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class AuditRecord(BaseModel):
    """One audit line (also what travels to the center on the `audit` channel)."""

    seq: int
    ts: float
    prev: str
    kind: str  # decision | result | event | checkpoint
    requester: str | None = None
    unit: str | None = None
    role: str | None = None
    action: str | None = None
    camera: str | None = None
    purpose: str | None = None
    purpose_ref: str | None = None
    grant_id: str | None = None
    command_id: str | None = None
    decision: str | None = None  # allowed | denied (decisions), ok | failed (results)
    reason: str | None = None
    detail: dict[str, Any] | None = None
    hash: str = ""


def canonical(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def _parse(line: bytes) -> dict[str, Any] | None:
    """A chain record, or None for a line that is not one (torn write, garbage)."""
    try:
        rec = json.loads(line)
        int(rec["seq"])
        str(rec["hash"])
    except (ValueError, KeyError, TypeError):
        return None
    return rec if isinstance(rec, dict) else None


def _unverified_claims(token: str) -> dict[str, Any] | str:
    """The identity a refused token claims, for the record only (its signature may be forged)."""
    try:
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        return "unreadable"
    if not isinstance(claims, dict):
        return "unreadable"
    return {k: str(claims[k])[:128] for k in ("sub", "unit", "role", "jti", "iss") if k in claims}


def _sign(key: SigningKey, data: bytes) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return base64.b64encode(key.sign(data)).decode()
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def _verify_sig(key: PublicKey, sig_b64: str, data: bytes) -> bool:
    try:
        sig = base64.b64decode(sig_b64)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


class AuditLog:
    def __init__(
        self,
        path: Path,
        key: SigningKey | None,
        *,
        sink: Callable[[AuditRecord], Awaitable[Any]] | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 300.0,
    ) -> None:
        self.path = path
        self.key = key
        self.sink = sink
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self._lock = threading.Lock()  # one writer at a time: the chain is a sequence
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.seq, self.head = 0, GENESIS
        self._since_checkpoint = 0
        self._last_checkpoint = time.time()
        self._unsent: list[AuditRecord] = []  # written to disk, not yet queued for the center
        torn = self._recover()
        self._fh = path.open("ab")
        path.chmod(0o600)
        if torn:
            self._unsent += self._append_sync(
                {"kind": "event", "reason": "torn_tail_truncated", "detail": {"bytes": torn}}
            )

    def _recover(self) -> int:
        """Find the chain head. A power cut can leave a torn last line (no newline, or half a JSON
        object): it is moved aside to ``<log>.torn-<time>`` (nothing deleted) and recorded. A bad
        line anywhere else is not ours to repair: it stays for `audit verify` to report."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        good_end = len(data)
        if lines and (not lines[-1].endswith(b"\n") or _parse(lines[-1]) is None):
            good_end = len(data) - len(lines[-1])
            lines = lines[:-1]
        for line in reversed(lines):  # the head is the last readable record
            rec = _parse(line)
            if rec is not None:
                self.seq, self.head = int(rec["seq"]), str(rec["hash"])
                break
        torn = len(data) - good_end
        if torn:
            aside = self.path.with_name(f"{self.path.name}.torn-{int(time.time())}")
            aside.write_bytes(data[good_end:])
            aside.chmod(0o600)
            log.warning("audit log %s: torn final record (%d bytes) moved to %s", self.path, torn, aside)
            with self.path.open("r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())
        return torn

    # ---------------------------------------------------------------- appends
    def _write_locked(self, fields: dict[str, Any]) -> AuditRecord:
        rec = AuditRecord(seq=self.seq + 1, ts=time.time(), prev=self.head, **fields)
        data = rec.model_dump(mode="json")
        rec.hash = data["hash"] = record_hash(data)
        self._fh.write(json.dumps(data, ensure_ascii=False).encode() + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.seq, self.head = rec.seq, rec.hash
        return rec

    def _checkpoint_locked(self) -> AuditRecord | None:
        if self.key is None:
            return None
        sig = _sign(self.key, f"{self.seq}:{self.head}".encode())
        self._since_checkpoint = 0
        self._last_checkpoint = time.time()
        return self._write_locked(
            {"kind": "checkpoint", "detail": {"upto_seq": self.seq, "head": self.head, "sig": sig}}
        )

    def _append_sync(self, fields: dict[str, Any]) -> list[AuditRecord]:
        """Append one record, plus a signed checkpoint when one is due; all under one lock so a
        checkpoint always signs a consistent (seq, head) pair."""
        with self._lock:
            out = [self._write_locked(fields)]
            self._since_checkpoint += 1
            due = self._since_checkpoint >= self.checkpoint_every or (
                time.time() - self._last_checkpoint >= self.checkpoint_interval_s
            )
            if due:
                cp = self._checkpoint_locked()
                if cp is not None:
                    out.append(cp)
        return out

    def checkpoint_sync(self) -> AuditRecord | None:
        """Sign the current head now (e.g. at shutdown)."""
        with self._lock:
            return self._checkpoint_locked()

    async def checkpoint(self) -> None:
        """Sign the current head and send the checkpoint to the center as well."""
        cp = await asyncio.to_thread(self.checkpoint_sync)
        if cp is not None:
            await self._send([cp])

    async def _send(self, records: list[AuditRecord]) -> None:
        """Queue records for the center in chain order. One that cannot be queued (outbox full)
        waits in memory and goes first next time, so the center's copy has no silent gaps."""
        if self.sink is None:
            return
        self._unsent.extend(records)
        while self._unsent:
            try:
                await self.sink(self._unsent[0])
            except Exception:  # the file stays the record of truth; retried with the next record
                log.exception("audit record %d not queued for the center yet", self._unsent[0].seq)
                if len(self._unsent) > MAX_UNSENT:
                    dropped = len(self._unsent) - MAX_UNSENT
                    del self._unsent[:dropped]
                    log.error("%d audit records only on disk now: export the log for the center", dropped)
                return
            self._unsent.pop(0)

    async def _append(self, fields: dict[str, Any]) -> None:
        await self._send(await asyncio.to_thread(self._append_sync, fields))

    @staticmethod
    def _who(auth: AuthContext | None) -> dict[str, Any]:
        if auth is None:
            return {}
        return {
            "requester": auth.requester,
            "unit": auth.unit,
            "role": auth.role,
            "purpose": auth.purpose,
            "purpose_ref": auth.purpose_ref,
            "grant_id": auth.grant_id or None,
        }

    async def decision(
        self,
        env: CommandEnvelope | None,
        action: str | None,
        auth: AuthContext | None,
        camera: str | None,
        allowed: bool,
        reason: str,
    ) -> None:
        detail: dict[str, Any] | None = None
        if auth is None and env is not None and not allowed:
            refused = denied_identity.get()
            if refused is not None and refused[0] is env:
                auth, detail = refused[1], {"identity": "verified"}  # a valid grant, refused
            elif env.grant:
                detail = {"claimed": _unverified_claims(env.grant)}  # who it says it is; not proof
        await self._append(
            {
                "kind": "decision",
                "action": action,
                "camera": camera,
                "command_id": env.id if env else None,
                "decision": "allowed" if allowed else "denied",
                "reason": reason[:500],
                "detail": detail,
                **self._who(auth),
            }
        )

    async def result(
        self, env: CommandEnvelope, auth: AuthContext, camera: str | None, ok: bool, detail: dict[str, Any]
    ) -> None:
        await self._append(
            {
                "kind": "result",
                "action": env.action,
                "camera": camera,
                "command_id": env.id,
                "decision": "ok" if ok else "failed",
                "detail": detail or None,
                **self._who(auth),
            }
        )

    async def event(self, kind: str, auth: AuthContext | None, detail: dict[str, Any]) -> None:
        await self._append({"kind": "event", "reason": kind, "detail": detail, **self._who(auth)})

    def close(self) -> None:
        with self._lock:
            self._fh.close()


# -------------------------------------------------------------------- verification
@dataclass
class Problem:
    line: int
    seq: int | None
    what: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{where}: {self.what}"


@dataclass
class VerifyReport:
    records: int
    checkpoints: int
    verified_upto: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_lines(lines: list[bytes], public_key: PublicKey | None) -> VerifyReport:
    """Check the chain; say which record was edited, deleted, inserted or reordered."""
    problems: list[Problem] = []
    prev_hash, prev_seq = GENESIS, 0
    checkpoints, verified_upto = 0, 0
    hashes_by_seq: dict[int, str] = {}
    for i, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            seq = int(rec["seq"])
        except (ValueError, KeyError, TypeError):
            problems.append(Problem(i, None, "unreadable record (torn write or garbage)"))
            continue
        recomputed = record_hash(rec)
        if recomputed != rec.get("hash"):
            problems.append(Problem(i, seq, "record edited: its hash does not match its content"))
        elif seq <= prev_seq:
            problems.append(
                Problem(
                    i,
                    seq,
                    f"record out of order or duplicated: seq {seq} after {prev_seq} (reordered or inserted)",
                )
            )
        elif seq > prev_seq + 1:
            problems.append(Problem(i, seq, f"records {prev_seq + 1}..{seq - 1} missing (deleted)"))
        elif rec.get("prev") != prev_hash:
            problems.append(
                Problem(i, seq, "chain broken: prev does not match the preceding record (inserted)")
            )
        if rec.get("kind") == "checkpoint" and public_key is not None:
            d = rec.get("detail") or {}
            upto, head = d.get("upto_seq"), d.get("head")
            if not _verify_sig(public_key, str(d.get("sig", "")), f"{upto}:{head}".encode()):
                problems.append(
                    Problem(i, seq, "checkpoint signature invalid (not made by this device's key)")
                )
            elif not isinstance(upto, int) or hashes_by_seq.get(upto) != head:
                problems.append(
                    Problem(i, seq, f"checkpoint does not match record {upto}: history rewritten")
                )
            else:
                checkpoints += 1
                if not problems:
                    verified_upto = seq
        hashes_by_seq[seq] = str(rec.get("hash"))
        prev_hash, prev_seq = str(rec.get("hash")), max(prev_seq, seq)
    return VerifyReport(len(lines), checkpoints, verified_upto, problems)


def verify_file(path: Path, public_key: PublicKey | None) -> VerifyReport:
    return verify_lines(path.read_bytes().splitlines(), public_key)
