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

    @property
    def tokens(self) -> int:
        """Tokens (or samples) that flow through the linear layers: ``batch * seq``."""
        return self.batch * self.seq
