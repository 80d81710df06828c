"""Tensor parallelism (Megatron-LM style): how a transformer's layers split over ``tp`` devices.

A graph built with ``tp > 1`` describes the work of *one* device; the other ``tp - 1`` devices
run the same graph on their shards, and the collectives synchronise them:

- attention: Q/K/V projections are column-parallel (``heads / tp`` heads per device), the
  output projection is row-parallel and ends in an all-reduce of the ``tokens x d`` activations;
- MLP (and each expert of a mixture-of-experts MLP): up/gate projections column-parallel
  (``d_ff / tp``), down projection row-parallel, then an all-reduce;
- token embedding and LM head: vocabulary-parallel (``ceil(vocab / tp)`` rows per device, the
  last shard padded), the embedding output all-reduced;
- norms, biases of row-parallel layers and position embeddings are replicated.

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
from dataclasses import dataclass

from workloads.dtypes import DType
from workloads.errors import WorkloadError
from workloads.ops import Collective

__all__ = ["TPShard", "shard_transformer", "tp_allreduce"]


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


def tp_allreduce(tokens: int, width: int, dtype: DType, tp: int) -> Collective:
    """The all-reduce after a row-parallel layer: ``tokens x width`` activations over ``tp``."""
    return Collective(collective="allreduce", bytes=tokens * width * dtype.bytes, devices=tp,
                      dtype=dtype)
