"""The contract: committed JSON Schemas match the models, and the protocol document names every action."""

from __future__ import annotations

from pathlib import Path

from tools.gen_schemas import SCHEMA_DIR, render

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_committed_schemas_match_the_models() -> None:
    expected = render()
    committed = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(n for n in expected if committed.get(n) != expected[n])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, f"run `make schemas`: out of date {stale}, no longer generated {extra}"


def test_protocol_document_lists_every_registered_action() -> None:
    from agent.app import AgentApp

    names = AgentApp.all_action_names()
    text = (DOCS / "protocol.md").read_text()
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"docs/protocol.md does not document actions {missing}"
