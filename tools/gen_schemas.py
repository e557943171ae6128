"""Writes docs/schemas/<name>.json from the pydantic wire models (agent/protocol.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.protocol import wire_models

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def render() -> dict[str, str]:
    return {
        f"{name}.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in sorted(wire_models().items())
    }


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    files = render()
    for stale in SCHEMA_DIR.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (SCHEMA_DIR / name).write_text(text)
    print(f"wrote {len(files)} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
