"""Magnitude pruning as a graph transform: weight sparsity with a stated density.

There are no weights in a workload graph, so :func:`prune` does not choose which values to
zero; it states the outcome of magnitude pruning (keep the largest ``|w|``, globally for
unstructured sparsity or within each group of M for N:M) as each pruned layer's
:class:`~workloads.ops.Sparsity`: which pattern, what density, and the metadata the stored
format needs. What that changes downstream:

- the layer's weight bytes (:meth:`~workloads.ops.MatMul.b_bytes`,
  :meth:`~workloads.ops.Conv2d.weight_bytes`) become its compressed size, values kept x
  element bytes plus the index metadata, so the memory footprint (:mod:`workloads.memory`)
  and the weight traffic of every mapper shrink;
- FLOPs stay those of the dense layer (the op's :meth:`flops`); a mapper that can skip the
  zeros (2:4 on sparse tensor cores, N:M on a systolic array) runs fewer of them, the others
  run the dense math on decompressed tiles.

Which layers (uniform density over the prunable ones):

- prunable: GEMMs with a weight operand (``MatMul(weight=True)``: linear layers, experts of
  a mixture-of-experts layer) and convolutions, inside repeated blocks too;
- kept dense by default, as common practice does (NVIDIA ASP and SparseGPT/Wanda prune the
  layers in between): the first convolution (a CNN's stem: 3 input channels, a few
  thousand weights that matter most), the output layer (the last weight GEMM outside the
  repeated blocks: the LM head of a decoder, the classifier of a CNN or MLP, BERT's pooler)
  and the router of a mixture-of-experts layer. ``prune_first_conv``, ``prune_head`` and
  ``prune_router`` prune them as well. An LM head tied to the embedding table is never
  pruned (its matrix is the embedding's, which pruning does not touch);
- N:M also needs the reduction dimension (``k`` of a GEMM, ``c/groups x r x s`` of a
  convolution) to be whole groups of M: other layers (e.g. a 3x3 depthwise convolution under
  2:4) stay dense and are listed.

The result's ``meta["sparsity"]`` says what was done: pattern, density, metadata bits,
layers pruned (op instances, repeats counted) and the layers kept dense with why, and the
weight bytes before and after.

>>> from workloads.zoo import build_model
>>> g = build_model("gpt2", phase="decode", batch=1, context=128)
>>> p = prune(g, "2:4")
>>> p.meta["sparsity"]["pattern"], p.meta["sparsity"]["kept_dense"]["lm_head"]
('2:4', 'output layer (LM head / classifier), kept dense by default')
>>> round(p.weight_bytes() / g.weight_bytes(), 2)  # the LM head and embeddings stay dense
0.7
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Conv2d, MatMul, Op, Sparsity, parse_sparsity

__all__ = ["prune", "prunable"]

_HEAD = "output layer (LM head / classifier), kept dense by default"
_FIRST = "first convolution, kept dense by default"
_ROUTER = "mixture-of-experts router, kept dense by default"
_TIED = "LM head tied to the embedding table (not pruned)"


def prunable(op: Op) -> bool:
    """Whether ``op`` carries a weight pruning applies to (a weight GEMM or a convolution)."""
    return (isinstance(op, MatMul) and op.weight) or isinstance(op, Conv2d)


def _reduction(op: MatMul | Conv2d) -> int:
    return op.k if isinstance(op, MatMul) else (op.c // op.groups) * op.r * op.s


def _resolve(sparsity: Any, pattern: str | None) -> Sparsity | None:
    s = parse_sparsity(sparsity)
    if pattern is None:
        return s
    want = parse_sparsity(pattern, "pattern") if pattern != "unstructured" else None
    if pattern == "unstructured":
        if s is not None and s.pattern != "unstructured":
            raise ValueError(f"sparsity {sparsity!r} is N:M, not unstructured")
        return s
    if want is None or want.pattern != "n:m":
        raise ValueError(f"pattern {pattern!r}: expected 'unstructured' or N:M such as '2:4'")
    if s is not None and abs(float(s.density) - float(want.density)) > 1e-9:  # type: ignore[arg-type]
        raise ValueError(f"sparsity {sparsity!r} (density {s.density:g}) does not match "
                         f"pattern {pattern} (density {want.density:g})")
    return want


def prune(graph: WorkloadGraph, sparsity: float | str | Sparsity,
          pattern: str | None = None, *, prune_first_conv: bool = False,
          prune_head: bool = False, prune_router: bool = False) -> WorkloadGraph:
    """``graph`` with its prunable layers' weights pruned to ``sparsity`` (see the module
    docstring for which layers).

    ``sparsity``: ``"2:4"`` (N:M, structured: 2:4 runs on sparse tensor cores), a fraction
    of weights pruned such as ``0.7`` (unstructured, a bitmap index), or a
    :class:`~workloads.ops.Sparsity` (any metadata). ``pattern`` optionally states the
    pattern a fraction must have: ``prune(g, 0.5, "2:4")`` is ``prune(g, "2:4")``,
    ``pattern="unstructured"`` refuses an N:M value. A fraction of 0 returns ``graph``.

    Raises
    ------
    ValueError
        An unreadable sparsity or pattern, or the two disagreeing.
    """
    s = _resolve(sparsity, pattern)
    if s is None:
        return graph
    kept: dict[str, str] = {}
    counts = {"pruned": 0}
    first_conv = None if prune_first_conv else _first_conv(graph)
    head = None if prune_head else _head(graph)
    done: dict[int, WorkloadGraph] = {}

    def rewrite(g: WorkloadGraph, prefix: str, times: int) -> WorkloadGraph:
        out_g = g.g.copy()
        for name in g.topo():
            data = out_g.nodes[name]
            item = data["item"]
            full = f"{prefix}{name}"
            if isinstance(item, Repeat):
                key = id(item.block)
                block = done.get(key)
                if block is None:
                    block = done[key] = rewrite(item.block, f"{full}/", times * item.times)
                else:  # a shared block pruned before: count its layers again
                    counts["pruned"] += times * item.times * _pruned_in(block)
                data["item"] = Repeat(block, item.times)
                continue
            if not prunable(item):
                continue
            why = None
            if g is graph and name == head:
                why = _HEAD
            elif g is graph and name == first_conv:
                why = _FIRST
            elif any(t.startswith("tied:") for t in data["tags"]):
                why = _TIED
            elif not prune_router and name.rsplit(".", 1)[-1] == "router":
                why = _ROUTER
            elif s.pattern == "n:m" and _reduction(item) % s.m:  # type: ignore[operator]
                why = (f"reduction dimension {_reduction(item)} is not a multiple of "
                       f"{s.m} ({s.label} needs whole groups)")
            if why is not None:
                kept[full] = why
                continue
            data["item"] = replace(item, sparsity=s)
            counts["pruned"] += times
        out = WorkloadGraph(g.name, g.phase, dict(g.meta))
        out.g = out_g
        return out

    dense_bytes = graph.weight_bytes()
    out = rewrite(graph, "", 1)
    if "weight_bytes" in out.meta:
        out.meta["weight_bytes"] = float(out.meta["weight_bytes"]) - dense_bytes \
            + out.weight_bytes()
    out.meta["sparsity"] = {
        "pattern": s.label if s.pattern == "n:m" else "unstructured",
        "spec": s.spec(), "density": s.density, "zeros": s.zeros,
        "metadata_bits": s.metadata_bits,
        "format": ("N:M compressed values + per-value group index" if s.pattern == "n:m"
                   else "nonzero values + bitmap (1 bit per dense weight)"),
        "pruned_layers": counts["pruned"], "kept_dense": dict(kept),
        "weight_bytes_dense": dense_bytes, "weight_bytes": out.weight_bytes(),
    }
    return out


def _pruned_in(g: WorkloadGraph) -> int:
    """Op instances of ``g`` carrying a sparsity (repeats counted)."""
    n = 0
    for name in g.g.nodes:
        item = g.item(name)
        if isinstance(item, Repeat):
            n += item.times * _pruned_in(item.block)
        elif getattr(item, "sparsity", None) is not None:
            n += 1
    return n


def _first_conv(graph: WorkloadGraph) -> str | None:
    """The first convolution at the top level, if one comes before any repeated block that
    holds convolutions (a stem); None otherwise."""
    for name in graph.topo():
        item = graph.item(name)
        if isinstance(item, Conv2d):
            return name
        if isinstance(item, Repeat) and _has(item.block, Conv2d):
            return None
    return None


def _head(graph: WorkloadGraph) -> str | None:
    """The last weight GEMM at the top level (outside repeated blocks), if no repeated block
    with prunable layers follows it."""
    last = None
    for name in graph.topo():
        item = graph.item(name)
        if isinstance(item, MatMul) and item.weight:
            last = name
        elif isinstance(item, Repeat) and _has(item.block, (MatMul, Conv2d)):
            last = None
    return last


def _has(g: WorkloadGraph, kinds: type | tuple[type, ...]) -> bool:
    for name in g.g.nodes:
        item = g.item(name)
        if isinstance(item, Repeat):
            if _has(item.block, kinds):
                return True
        elif isinstance(item, kinds) and prunable(item):
            return True
    return False
