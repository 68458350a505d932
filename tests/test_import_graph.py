"""The house's shape, from the code's own imports (function-level ones included): no import
circle anywhere, and each layer imports only from the layers below it, never from a stage beside
it (README, "Where things live")."""

from __future__ import annotations

import ast
from pathlib import Path

from infra.settings import REPO_ROOT

# Bottom to top; a folder may import from its own and lower rows only. The stages share a row:
# they meet through schemas, topics and the stored dataset (dataset: the format the assembler
# writes and the trainer reads), never through each other's code.
LAYERS = [
    {"schemas"},
    {"infra"},
    {"vision"},
    {"dataset"},
    {"tools"},
    {"producers", "processors", "assembler", "trainer"},
    {"console"},
    {"booth"},
]
RANK = {name: rank for rank, row in enumerate(LAYERS) for name in row}


def modules() -> dict[str, Path]:
    out = {}
    for top in RANK:
        for path in (REPO_ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports, anywhere in it (a name imported from a package counts
    as its submodule where one exists)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, name, known) for name, path in known.items()}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_anywhere():
    found = circles(graph())
    assert not found, f"import circles: {found}"


def test_each_layer_imports_only_from_below_and_no_stage_from_another():
    wrong = []
    for name, targets in graph().items():
        top = name.split(".")[0]
        for t in targets:
            other = t.split(".")[0]
            if other != top and RANK[other] >= RANK[top]:
                wrong.append(f"{name} -> {t}")
    assert not wrong, "imports against the layers: " + ", ".join(sorted(wrong))


def test_the_checks_see_a_circle_and_a_stage_crossing():
    """The checks themselves: a made-up graph with both faults is caught."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "trainer.job" in graph() and "trainer.base_registry" in graph()["trainer.job"]


def crossings(g: dict[str, set[str]], src: str, dst: str) -> list[str]:
    return sorted(f"{n} -> {t}" for n, ts in g.items() if n.split(".")[0] == src for t in ts if t.split(".")[0] == dst)


def test_the_dataset_format_stands_between_the_assembler_and_the_trainer():
    """The assembler writes datasets and the trainer reads them, each through dataset alone: the
    format imports neither of them, and neither imports the other."""
    g = graph()
    assert "dataset.people" in g and "dataset.reader" in g and "assembler.consumer" in g
    assert "dataset.reader" in g["assembler.consumer"] and "dataset.people" in g["trainer.group"]
    for src, dst in [
        ("dataset", "assembler"),
        ("dataset", "trainer"),
        ("assembler", "trainer"),
        ("trainer", "assembler"),
    ]:
        assert not crossings(g, src, dst), f"{src} imports {dst}: {crossings(g, src, dst)}"
