"""Attention as a non-fused implementation runs it: the score matrix goes through memory.

The zoo's :class:`~workloads.ops.Attention` is one fused (flash-style) kernel: the ``s x s``
scores never leave on-chip memory. Software before FlashAttention (Megatron-LM as published in
2021, PyTorch eager) runs attention as separate kernels, and the scores do go to HBM:
:func:`materialize_attention` replaces every prefill attention op, inside repeated blocks too,
with them (Narayanan et al. SC'21; Korthikanti et al. 2022, sec. 4.1):

- ``scores``: ``Q K^T``, a batched GEMM per (sample, head) of ``s x d`` by ``d x s``;
- ``softmax``: the fused scale-mask-softmax over each row of ``s`` scores (read and write
  ``s x s``);
- ``dropout``: attention dropout over the probabilities (read and write ``s x s``);
- the attention node itself (same name): ``P V``, a batched GEMM of ``s x s`` by ``s x d``.

The causal mask is applied inside the softmax, so the GEMMs compute the full square, as those
kernels do. Activation memory follows: the backward keeps the probabilities and the dropout
output, the ``5 a s^2 b`` term of Korthikanti et al.'s Eq. 1 (in halves and a byte mask).
Decode attention (one new token against a cache) is left fused.

>>> from workloads.zoo import build_model
>>> g = materialize_attention(build_model("gpt2", phase="prefill", batch=1, seq=64))
>>> g.meta["attention"], g.flops().matrix > build_model("gpt2", phase="prefill", batch=1,
...                                                      seq=64).flops().matrix
('materialized', True)
"""

from __future__ import annotations

from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Attention, Elementwise, MatMul, Softmax

__all__ = ["materialize_attention", "ATTENTION_IMPLS"]

ATTENTION_IMPLS = ("flash", "materialized")


def materialize_attention(graph: WorkloadGraph) -> WorkloadGraph:
    """``graph`` with every prefill :class:`Attention` run as separate kernels (see the
    module docstring); a graph without one is returned as is."""
    done: dict[int, WorkloadGraph] = {}
    out = _rewrite(graph, done)
    out.meta["attention"] = "materialized"
    return out


def _has_attention(g: WorkloadGraph) -> bool:
    for n in g.g.nodes:
        item = g.item(n)
        if isinstance(item, Attention) and item.phase == "prefill":
            return True
        if isinstance(item, Repeat) and _has_attention(item.block):
            return True
    return False


def _rewrite(g: WorkloadGraph, done: dict[int, WorkloadGraph]) -> WorkloadGraph:
    if not _has_attention(g):
        return g
    out = WorkloadGraph(g.name, g.phase, dict(g.meta))
    for name in g.topo():
        data = g.g.nodes[name]
        item, grp, tags = data["item"], data["group"], data["tags"]
        preds = list(g.g.predecessors(name))
        if isinstance(item, Repeat):
            block = done.get(id(item.block))
            if block is None:
                block = done[id(item.block)] = _rewrite(item.block, done)
            out.add_repeat(name, block, item.times, preds, group=grp, tags=tags)
        elif isinstance(item, Attention) and item.phase == "prefill":
            b, h, s, kv, d = item.batch, item.heads, item.seq, item.kv_len, item.head_dim
            dt = item.dtype
            x = out.add_op(f"{name}.scores", MatMul(m=s, n=kv, k=d, batch=b * h, dtype=dt),
                           preds, group=grp, tags=tags)
            x = out.add_op(f"{name}.softmax", Softmax(rows=b * h * s, cols=kv, dtype=dt), [x],
                           group=grp, tags=tags)
            x = out.add_op(f"{name}.dropout", Elementwise(fn="dropout", numel=b * h * s * kv,
                                                          dtype=dt), [x], group=grp, tags=tags)
            out.add_op(name, MatMul(m=s, n=d, k=kv, batch=b * h, dtype=dt), [x], group=grp,
                       tags=tags)
        else:
            out.add_op(name, item, preds, group=grp, tags=tags)
        if data.get("span") is not None:
            out.g.nodes[name]["span"] = data["span"]
    return out
