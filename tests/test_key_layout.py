"""Every object-store key is built by schemas.layout: no other module spells a key prefix, so the
layout (and the retention classes that read it) cannot drift from what the stages write."""

from __future__ import annotations

import ast
from pathlib import Path

from schemas import layout

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = (
    layout.SESSIONS_PREFIX,
    layout.REFERENCES_PREFIX,
    layout.BASE_PREFIX,
    layout.BACKGROUNDS_PREFIX,
    layout.PURGED_PREFIX,
)
SKIP = {"tests", ".venv", ".booth", ".booth-test", "build"}


def spelled_keys(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PREFIXES)
    ]


def test_only_the_layout_module_spells_object_keys():
    sources = [p for p in ROOT.rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts[:1])]
    assert len(sources) > 50  # the scan sees the project, not an empty folder
    found = {
        str(p.relative_to(ROOT)): hits
        for p in sources
        if p != ROOT / "schemas" / "layout.py" and (hits := spelled_keys(p))
    }
    assert found == {}, f"build these keys with schemas.layout: {found}"


def test_the_scan_finds_a_key_spelled_by_hand(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(f'key = f"{layout.SESSIONS_PREFIX}{{session}}/shards/0.tar"\n')
    assert spelled_keys(bad) == [(1, layout.SESSIONS_PREFIX)]
