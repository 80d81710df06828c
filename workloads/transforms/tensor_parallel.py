"""Tensor parallelism (Megatron-LM style) as a graph -> graph transform.

The zoo builds the unsharded model and tags each op with its role (``tp:qkv``, ``tp:row_attn``,
...). :func:`tensor_parallel` returns a new graph in which every tagged op holds one device's
shard, an all-reduce follows each row-parallel layer, and every top-level node is placed on the
device group ``(0, ..., tp-1)``: each of the ``tp`` devices runs the same ops on its shard
(SPMD) and the all-reduces connect them.

- attention: Q/K/V projections are column-parallel (``heads / tp`` heads per device), the
  output projection is row-parallel and ends in an all-reduce of the ``tokens x d`` activations;
- MLP (and each expert of a mixture-of-experts MLP): up/gate projections column-parallel
  (``d_ff / tp`` each; a fused gate/up GEMM ``2 d_ff / tp``), down projection row-parallel,
  then an all-reduce;
- token embedding and LM head: vocabulary-parallel (``ceil(vocab / tp)`` rows per device, the
  last shard padded), the embedding output all-reduced;
- norms, biases of row-parallel layers, routers and position embeddings are replicated.

With GQA and fewer KV heads than devices (``kv_heads < tp``) each KV head is replicated so that
every device holds the one KV head its query heads use (``tp % kv_heads == 0`` required).

Examples
--------
>>> s = shard_transformer(model="llama2-70b", heads=64, kv_heads=8, d_ff=28672, vocab=32000, tp=8)
>>> (s.heads, s.kv_heads, s.d_ff, s.vocab)
(8, 1, 3584, 4000)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from workloads.dtypes import DType
from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Attention, Collective, Elementwise, Embedding, MatMul, Norm, Op

__all__ = ["TPShard", "shard_transformer", "tp_allreduce", "tensor_parallel", "TP_DIMS_KEY",
           "allreduce_tag", "tp_degrees", "idle_params"]

from workloads.memory import idle_params  # noqa: E402  (re-exported: the resident idle experts)

#: graph.meta key the transformer builder sets: the sizes a tensor-parallel split divides.
TP_DIMS_KEY = "tp_dims"


@dataclass(frozen=True)
class TPShard:
    """Per-device sizes of a transformer split over ``tp`` devices."""

    tp: int
    heads: int
    kv_heads: int
    d_ff: int
    vocab: int


def _divide(model: str, what: str, value: int, tp: int) -> int:
    if value % tp:
        raise WorkloadError(f"{model}: tp={tp} does not divide {what}={value}; "
                            f"choose a tp that divides it")
    return value // tp


def shard_transformer(*, model: str, heads: int, kv_heads: int, d_ff: int, vocab: int,
                      tp: int) -> TPShard:
    """Per-device head counts, MLP width and vocabulary rows for ``tp``-way tensor parallelism.

    Raises
    ------
    WorkloadError
        If ``tp`` is not a positive integer or does not divide the heads, KV heads or ``d_ff``.
    """
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise WorkloadError(f"{model}: tp must be a positive integer, got {tp!r}")
    h = _divide(model, "num_attention_heads", heads, tp)
    if kv_heads >= tp:
        kv = _divide(model, "num_key_value_heads", kv_heads, tp)
    else:
        if tp % kv_heads:
            raise WorkloadError(f"{model}: num_key_value_heads={kv_heads} must divide tp={tp} "
                                f"to replicate KV heads across devices")
        kv = 1
    return TPShard(tp=tp, heads=h, kv_heads=kv, d_ff=_divide(model, "intermediate_size", d_ff, tp),
                   vocab=math.ceil(vocab / tp))


def tp_degrees(graph: WorkloadGraph, limit: int) -> list[int]:
    """The tensor-parallel degrees from ``limit`` down to 1 that split ``graph`` evenly
    (powers of two first, as deployments use), without building anything."""
    dims = graph.meta.get(TP_DIMS_KEY)
    if not dims:
        return [1]
    out = []
    for tp in range(limit, 0, -1):
        try:
            shard_transformer(model=graph.name, heads=dims["heads"], kv_heads=dims["kv_heads"],
                              d_ff=dims["d_ff"], vocab=dims["vocab"], tp=tp)
        except WorkloadError:
            continue
        out.append(tp)
    return out


def tp_allreduce(tokens: int, width: int, dtype: DType, tp: int) -> Collective:
    """The all-reduce after a row-parallel layer: ``tokens x width`` activations over ``tp``."""
    return Collective(collective="allreduce", bytes=tokens * width * dtype.bytes, devices=tp,
                      dtype=dtype)


def allreduce_tag(name: str, numel: int) -> str:
    """Tag asking :func:`tensor_parallel` for an all-reduce of ``numel`` elements named
    ``name`` right after the tagged op."""
    return f"tp:allreduce:{name}:{numel}"


_Rule = Callable[[Any, TPShard, dict[str, int]], Op]


def _qkv(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, n=(sh.heads + 2 * sh.kv_heads) * d["head_dim"])


def _q(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, n=sh.heads * d["head_dim"])


def _kv(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, n=sh.kv_heads * d["head_dim"])


def _rope(op: Elementwise, sh: TPShard, d: dict[str, int]) -> Op:
    tokens = op.numel // ((d["heads"] + d["kv_heads"]) * d["head_dim"])
    row = (sh.heads + sh.kv_heads) * d["head_dim"]
    return replace(op, numel=tokens * row, row=None if op.row is None else row)


def _attention(op: Attention, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, heads=sh.heads, kv_heads=sh.kv_heads)


def _row_attn(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, k=sh.heads * d["head_dim"])


def _col_ff(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, n=sh.d_ff)


def _gate_up(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    """Fused gate and up projections: each device holds its ``d_ff / tp`` columns of both."""
    return replace(op, n=2 * sh.d_ff)


def _act_ff(op: Elementwise, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, numel=op.numel // d["d_ff"] * sh.d_ff,
                   row=None if op.row is None else sh.d_ff)


def _row_ff(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, k=sh.d_ff)


def _vocab(op: Embedding, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, vocab=sh.vocab)


def _vocab_head(op: MatMul, sh: TPShard, d: dict[str, int]) -> Op:
    return replace(op, n=sh.vocab)


RULES: dict[str, _Rule] = {
    "tp:qkv": _qkv, "tp:q": _q, "tp:kv": _kv, "tp:rope": _rope, "tp:attention": _attention,
    "tp:row_attn": _row_attn, "tp:col_ff": _col_ff, "tp:gate_up": _gate_up,
    "tp:act_ff": _act_ff, "tp:row_ff": _row_ff,
    "tp:vocab": _vocab, "tp:vocab_head": _vocab_head,
}


# column-parallel roles: under sequence parallelism their input is all-gathered first
_GATHER_BEFORE = ("tp:qkv", "tp:q", "tp:kv", "tp:col_ff", "tp:gate_up", "tp:vocab_head")


def _seq_shard(op: Op, tp: int) -> Op:
    """A norm or pointwise op of the sequence-parallel region: 1/tp of the tokens."""
    if isinstance(op, Norm):
        return replace(op, rows=max(1, -(-op.rows // tp)))
    if isinstance(op, Elementwise):
        return replace(op, numel=max(1, -(-op.numel // tp)))
    return op


def _shard_graph(src: WorkloadGraph, sh: TPShard, dims: dict[str, int],
                 memo: dict[int, WorkloadGraph], group: tuple[int, ...] | None,
                 sp: bool = False) -> WorkloadGraph:
    out = WorkloadGraph(src.name, src.phase, dict(src.meta))
    exit_of: dict[str, str] = {}
    gathered: dict[str, str] = {}  # sequence-sharded node -> its all-gather (shared)
    for name in src.topo():
        data = src.g.nodes[name]
        item, tags = data["item"], data["tags"]
        ins = [exit_of[p] for p in src.g.predecessors(name)]
        grp = group if group is not None else data["group"]
        if isinstance(item, Repeat):
            key = id(item.block)
            if key not in memo:
                memo[key] = _shard_graph(item.block, sh, dims, memo, None, sp)
            exit_of[name] = out.add_repeat(name, memo[key], item.times, ins, group=grp,
                                           tags=tags)
            continue
        op = item
        roles = [t for t in tags if t in RULES]
        for t in roles:
            op = RULES[t](op, sh, dims)
        if sp and not roles and isinstance(op, (Norm, Elementwise)):
            op = _seq_shard(op, sh.tp)
        if sp and any(t in _GATHER_BEFORE for t in tags):
            # the full sequence, gathered from the tp shards, feeds the column-parallel GEMM
            new_ins = []
            for src_name in ins:
                if src_name not in gathered:
                    numel = dims["tokens"] * dims["d_model"]
                    ag = Collective(collective="allgather", bytes=numel * op.dtype.bytes,
                                    devices=sh.tp, dtype=op.dtype)
                    gathered[src_name] = out.add_op(f"{src_name}.sp_allgather", ag, [src_name],
                                                    group=grp, tags=("tp:collective",))
                new_ins.append(gathered[src_name])
            ins = new_ins
        exit_of[name] = out.add_op(name, op, ins, group=grp, tags=tags)
        for t in tags:
            if t.startswith("tp:allreduce:"):
                _, _, ar_name, numel = t.split(":")
                kind = "reducescatter" if sp else "allreduce"
                c = Collective(collective=kind, bytes=int(numel) * op.dtype.bytes,
                               devices=sh.tp, dtype=op.dtype)
                exit_of[name] = out.add_op(ar_name.replace("allreduce", "reducescatter")
                                           if sp else ar_name, c, [exit_of[name]], group=grp,
                                           tags=("tp:collective",))
    return out


def tensor_parallel(graph: WorkloadGraph, tp: int, sequence_parallel: bool = False
                    ) -> WorkloadGraph:
    """``graph`` split ``tp`` ways (a new graph; ``graph`` is not changed).

    ``tp == 1`` returns the graph unchanged. The result's meta records ``tp`` and the
    per-device resident weights (``params_per_device``, ``weight_bytes``).

    Raises
    ------
    WorkloadError
        If the graph was not built by a tensor-parallel-aware builder (a transformer) and
        ``tp > 1``, or ``tp`` does not divide the heads, KV heads or MLP width.
    """
    if tp == 1:
        return graph
    dims = graph.meta.get(TP_DIMS_KEY)
    if not dims:
        raise WorkloadError(f"{graph.name}: tensor parallelism (tp={tp}) is supported for "
                            f"transformer models only")
    if graph.meta.get("tp", 1) != 1:
        raise WorkloadError(f"{graph.name}: already split {graph.meta['tp']} ways")
    sh = shard_transformer(model=graph.name, heads=dims["heads"], kv_heads=dims["kv_heads"],
                           d_ff=dims["d_ff"], vocab=dims["vocab"], tp=tp)
    if sequence_parallel:
        if graph.meta.get("family") not in (None, "decoder") or graph.meta.get("moe_dims"):
            raise WorkloadError(f"{graph.name}: sequence parallelism is modelled for dense "
                                "decoder models")
        dims = {**dims, "tokens": int(graph.meta.get("tokens") or 0)}
        if dims["tokens"] < 1:
            raise WorkloadError(f"{graph.name}: sequence parallelism needs the token count")
    out = _shard_graph(graph, sh, dims, {}, tuple(range(tp)), sequence_parallel)
    m = out.meta
    m["tp"] = tp
    m["sequence_parallel"] = bool(sequence_parallel)
    if "tied_params" in m:  # lm_head shares embed_tokens' (now sharded) matrix
        m["tied_params"] = float(sh.vocab * dims["d_model"])
        m["tied_weight_bytes"] = m["tied_params"] * dims["embed_bytes"]
    # experts idle this step are still resident (each split on d_ff like the active ones)
    m["params_per_device"] = out.params() + idle_params(out)
    m["weight_bytes"] = out.weight_bytes() + idle_params(out, "weight_bytes")
    return out


