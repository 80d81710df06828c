"""The import graph is one-way: workloads <- simulator core <- validate / CLI, with no cycles.

Read from the source (every import statement, including those inside functions), so a lazy
import cannot hide a back edge. Pickling checks that specs, plans and results can cross a
process boundary (process pools, Dask).
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("simulator.validate", "simulator.cli")  # consumers of the core, never imported by it


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("simulator", "workloads"):
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def _graph() -> nx.DiGraph:
    mods = _modules()
    g = nx.DiGraph()
    for m, p in mods.items():
        g.add_node(m)
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    tgt = full if full in mods else node.module if node.module in mods else None
                    if tgt and tgt != m:
                        g.add_edge(m, tgt)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods and a.name != m:
                        g.add_edge(m, a.name)
    return g


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(_graph()))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_workloads_import_nothing_from_simulator():
    bad = [(a, b) for a, b in _graph().edges if a.startswith("workloads")
           and b.startswith("simulator")]
    assert bad == []


def test_core_never_imports_validate_or_cli():
    bad = [(a, b) for a, b in _graph().edges
           if not a.startswith(TOP) and b.startswith(TOP)]
    assert bad == []


def test_the_graph_is_not_trivially_empty():
    g = _graph()  # guards the two tests above against a parser that finds nothing
    assert g.number_of_edges() > 100
    assert ("simulator.predict", "simulator.engine.runner") in g.edges


@pytest.mark.parametrize("arch", ["dgx-h100", "tpu-v4", "alveo-u280", "cpu-host"])
def test_specs_plans_and_results_pickle(arch):
    from simulator import load_arch, simulate
    from simulator.plan import make_plan

    system = load_arch(arch)
    assert pickle.loads(pickle.dumps(system)) == system
    plan = make_plan("mlp", system, batch=2)
    assert pickle.loads(pickle.dumps(plan)) == plan
    r = simulate("mlp", arch, batch=2)
    assert pickle.loads(pickle.dumps(r)).to_json() == r.to_json()
