"""The layering rules of the design card, checked by import-linter on the installed package."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_top_level_index_or_viewer_package_installed() -> None:
    code = "import importlib.util as u; print(u.find_spec('index'), u.find_spec('viewer'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert proc.stdout.strip() == "None None", proc.stdout


def _import_cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative): each is a loop."""
    modules = sorted(graph.modules)
    known = set(modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & known) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return cycles


def test_no_import_cycles_inside_any_package() -> None:
    """No module imports (directly or through others) a module that imports it back.

    Imports under ``if TYPE_CHECKING:`` never run, so they are not counted (annotations only).
    """
    import grimp

    graph = grimp.build_graph("casebook.viewer", "casebook.index", "casebook.inference", "casebook.common",
                              exclude_type_checking_imports=True)
    assert len(graph.modules) > 50  # the packages were really read
    assert _import_cycles(graph) == []


def test_cycle_finder_finds_a_real_loop() -> None:
    """The check above would see a loop: a two-module cycle added to the real graph is reported."""
    import grimp

    graph = grimp.build_graph("casebook.common")
    graph.add_import(importer="casebook.common.errors", imported="casebook.common.progress")
    graph.add_import(importer="casebook.common.progress", imported="casebook.common.errors")
    assert ["casebook.common.errors", "casebook.common.progress"] in _import_cycles(graph)
