"""Paged KV cache (vLLM's PagedAttention block manager): fixed-size blocks of tokens, allocated
as a sequence grows and freed when it finishes or is preempted.

>>> kv = BlockManager(total_blocks=4, block_size=16)
>>> kv.blocks_for(40)
3
>>> kv.allocate(7, 40); kv.free_blocks
1
>>> kv.can_grow(7, 48), kv.can_grow(7, 49)
(True, True)
>>> kv.grow(7, 65)
Traceback (most recent call last):
...
workloads.errors.HwsimError: KV cache: request 7 needs 5 blocks, 1 free
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.errors import HwsimError

__all__ = ["BlockManager"]


@dataclass
class BlockManager:
    """Blocks held per request; the invariant ``used <= total`` holds after every call."""

    total_blocks: int
    block_size: int
    held: dict[int, int] = field(default_factory=dict)
    used: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        if self.total_blocks < 1 or self.block_size < 1:
            raise HwsimError(f"KV cache: need at least one block of at least one token, got "
                             f"{self.total_blocks} blocks of {self.block_size}")

    @property
    def free_blocks(self) -> int:
        return self.total_blocks - self.used

    def blocks_for(self, tokens: int) -> int:
        return -(-max(tokens, 0) // self.block_size)

    def can_allocate(self, tokens: int) -> bool:
        return self.blocks_for(tokens) <= self.free_blocks

    def allocate(self, rid: int, tokens: int) -> None:
        """Give request ``rid`` blocks for ``tokens`` (its first allocation)."""
        if rid in self.held:
            raise HwsimError(f"KV cache: request {rid} already holds blocks")
        need = self.blocks_for(tokens)
        if need > self.free_blocks:
            raise HwsimError(f"KV cache: request {rid} needs {need} blocks, "
                             f"{self.free_blocks} free")
        self.held[rid] = need
        self._use(need)

    def can_grow(self, rid: int, tokens: int) -> bool:
        return self.blocks_for(tokens) - self.held.get(rid, 0) <= self.free_blocks

    def grow(self, rid: int, tokens: int) -> None:
        """Make ``rid``'s blocks cover ``tokens`` (the context grew by decoding)."""
        need = self.blocks_for(tokens) - self.held.get(rid, 0)
        if need <= 0:
            return
        if need > self.free_blocks:
            raise HwsimError(f"KV cache: request {rid} needs {self.blocks_for(tokens)} blocks, "
                             f"{self.free_blocks} free")
        self.held[rid] = self.held.get(rid, 0) + need
        self._use(need)

    def release(self, rid: int) -> int:
        """Free all of ``rid``'s blocks; returns how many."""
        n = self.held.pop(rid, 0)
        self.used -= n
        return n

    def _use(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)
        assert self.used <= self.total_blocks
