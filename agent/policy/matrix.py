"""The role-by-action matrix, loaded from a versioned data file (policy.json), never scattered `if`s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_POLICY = Path(__file__).with_name("policy.json")

Scope = Literal["province", "district", "commune", "own_org", "grant"]


class RolePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Scope
    actions: list[str]
    ptz_priority: int = 0
    max_ttl_s: int = Field(28800, gt=0)
    cameras_required: bool = False
    approves: list[str] = Field(default_factory=list)


class PolicyMatrix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    source: str = ""
    short_lived_actions: list[str] = Field(default_factory=list)
    short_lived_max_ttl_s: int = 900
    roles: dict[str, RolePolicy]

    @classmethod
    def load(cls, path: Path | None = None) -> PolicyMatrix:
        return cls.model_validate(json.loads((path or DEFAULT_POLICY).read_text()))

    def role(self, name: str) -> RolePolicy | None:
        return self.roles.get(name)

    def allows(self, role: str, action: str) -> bool:
        r = self.roles.get(role)
        return r is not None and action in r.actions

    def max_ttl(self, role: str, action: str) -> int:
        r = self.roles[role]
        if action in self.short_lived_actions:
            return min(r.max_ttl_s, self.short_lived_max_ttl_s)
        return r.max_ttl_s

    def ptz_priority(self, role: str) -> int:
        """Higher takes the PTZ lock from lower (provincial/city police > district > commune > others)."""
        r = self.roles.get(role)
        return r.ptz_priority if r is not None else -1


def markdown_table(policy: PolicyMatrix) -> str:
    """The action x role grid for docs/access-policy.md (a test keeps the doc equal to the data)."""
    roles = list(policy.roles)
    actions = sorted({a for r in policy.roles.values() for a in r.actions})
    head = "| action | " + " | ".join(f"`{r}`" for r in roles) + " |"
    rule = "|---|" + "---|" * len(roles)
    rows = [
        f"| `{a}` | " + " | ".join("✔" if a in policy.roles[r].actions else "" for r in roles) + " |"
        for a in actions
    ]
    scope = "| *scope* | " + " | ".join(policy.roles[r].scope for r in roles) + " |"
    prio = "| *PTZ priority* | " + " | ".join(str(policy.roles[r].ptz_priority) for r in roles) + " |"
    return "\n".join([head, rule, scope, prio, *rows])


if __name__ == "__main__":
    print(markdown_table(PolicyMatrix.load()))
