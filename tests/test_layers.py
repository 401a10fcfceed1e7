"""The package's layers (docs/design.md): the import-linter contracts of pyproject.toml
hold, and no module of xpdiff takes part in an import cycle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")
importlinter = pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def test_no_import_cycle():
    graph = grimp.build_graph("xpdiff")
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(m)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b"]]


def test_layer_contracts_hold(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", [str(ROOT / "src")] + sys.path)
    assert lint_imports() == 0, capsys.readouterr().out


def test_class_names_are_unique():
    # one name per class: a reader (and a traceback) never has to ask which `_Flat` is meant
    import ast
    from collections import defaultdict

    where = defaultdict(list)
    for path in sorted((ROOT / "src" / "xpdiff").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


def test_no_object_changes_class():
    # an object never changes class: no `x.__class__ = ...`, no setattr of "__class__"
    import ast

    found = []
    for path in sorted((ROOT / "src" / "xpdiff").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if any(isinstance(t, ast.Attribute) and t.attr == "__class__" for t in targets) or (
                    isinstance(node, ast.Call) and any(
                        isinstance(a, ast.Constant) and a.value == "__class__" for a in node.args)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_a_written_constant_keeps_its_class():
    # a constant written with a value of a higher transformation (the data view) takes
    # that value's state, not its class
    import numpy as np

    import xpdiff as xd
    from xpdiff.tracer import Tracer

    seen = []

    def f(x):
        xp = x.__array_namespace__()
        out = xp.zeros((x.shape[0], 2))
        cls, level = type(out), out._main.level
        out[:, 1:] = x
        seen.append((cls, type(out), level < out._main.level))
        return out

    J = xd.jacobian(f, batch_ndim=1)(np.ones((3, 1)))
    assert J.shape == (3, 2, 1)
    assert seen == [(Tracer, Tracer, True)]
