"""The module import graph of feature_platform/ has no cycles, and commands that run no Dagster job load no Dagster.

The graph is read with ``ast`` from every ``import`` in a module: module level, inside functions and under
``TYPE_CHECKING`` alike, because an import hidden in a function still ties the two modules together.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "feature_platform"


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """module → the feature_platform modules it imports anywhere in its body (a package counts as its __init__)."""
    modules = _modules(root)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, (path, is_package) in modules.items():
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                resolved = known(target) if target.split(".")[0] == PACKAGE else None
                if resolved is not None and resolved != module:
                    graph[module].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_feature_platform_has_no_import_cycles() -> None:
    graph = import_graph(REPO)
    assert len(graph) > 100  # the walk saw the package, not an empty directory
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from feature_platform.sub import b\n")
    (pkg / "b.py").write_text("def f() -> None:\n    from . import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    (pkg / "d.py").write_text("import feature_platform.sub.a\n")
    assert cycles(import_graph(tmp_path)) == [["feature_platform.sub.a", "feature_platform.sub.b",
                                               "feature_platform.sub.c"]]


# What `fp lineage`, `fp promote`, `fp rollback`, `fp rerun`, `fp train` and `fp dataset verify` import to run.
NO_DAGSTER_MODULES = (
    "feature_platform.cli",
    "feature_platform.cli.models",
    "feature_platform.cli.dataset",
    "feature_platform.registry.lineage",
    "feature_platform.registry.promotion",
    "feature_platform.registry.rollback",
    "feature_platform.registry.tracking",
    "feature_platform.training.train",
    "feature_platform.training.rerun",
    "feature_platform.datasets.verify",
    "feature_platform.datasets.definitions.source",
)


@pytest.mark.parametrize("module", NO_DAGSTER_MODULES)
def test_commands_without_a_dagster_job_import_no_dagster(module: str) -> None:
    code = (f"import json, sys\nimport {module}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout) == [], module


def test_the_cli_finds_its_data_root_without_dagster(tmp_path: Path) -> None:
    code = ("import json, sys\nfrom feature_platform.cli import main\nfrom feature_platform.cli.common import layout\n"
            "rc = main(['market', 'review', '--json'])\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('dagster'))\n"
            "print(json.dumps([rc, str(layout().review_db), loaded]))")
    env = {**os.environ, "FP_DATA_ROOT": str(tmp_path / "root")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env=env)
    rc, review_db, dagster = json.loads(out.stdout.splitlines()[-1])
    assert (rc, review_db, dagster) == (0, str((tmp_path / "root" / "review.sqlite").resolve()), [])
