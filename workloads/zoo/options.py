"""Resolved build options shared by the zoo builders."""

from __future__ import annotations

from dataclasses import dataclass

from workloads.dtypes import DType

__all__ = ["BuildOptions"]


@dataclass(frozen=True)
class BuildOptions:
    """What to build, after defaults are applied.

    ``seq`` is the number of new tokens per sequence this step (1 for decode, 1 sample for
    CNN/MLP), ``context`` the tokens already in the KV cache (decode, or a cached prefix for
    prefill), ``phase`` the graph phase the builder emits (``train`` builds ``forward`` first).
    ``fuse_projections`` runs the Q, K and V projections as one GEMM and a gated MLP's gate and
    up projections as one GEMM, as serving and training frameworks do (vLLM's
    ``QKVParallelLinear`` and ``MergedColumnParallelLinear``, Megatron-LM's fused
    ``linear_qkv`` and ``linear_fc1``); ``False`` builds one GEMM per projection.
    ``seq_lens`` (transformers, not decode): per-sample lengths run packed (token-wise layers
    on ``sum(seq_lens)`` tokens, attention per sample), see :mod:`workloads.seqlens`.
    """

    model: str
    phase: str
    batch: int
    seq: int
    context: int
    dtype: DType
    weight_dtype: DType | None
    kv_dtype: DType | None
    image_size: int
    fuse_projections: bool = True   # one QKV GEMM and one gate/up GEMM (vLLM, Megatron-LM)
    # variable-length samples (packed, no padding): the new tokens of each of the ``batch``
    # samples, the longest equal to ``seq``; None: every sample has ``seq`` tokens
    seq_lens: tuple[int, ...] | None = None

    @property
    def tokens(self) -> int:
        """Tokens (or samples) that flow through the linear layers: ``batch * seq``, or
        ``sum(seq_lens)`` for packed variable-length samples."""
        return sum(self.seq_lens) if self.seq_lens is not None else self.batch * self.seq
