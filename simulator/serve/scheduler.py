"""Continuous batching on one replica, in the style of vLLM and Sarathi-Serve.

Every iteration the scheduler picks the work of one forward pass:

- without chunked prefill (vLLM's default scheduler): if waiting requests fit (batch slots,
  the token budget ``max_batched_tokens`` and KV blocks for their prompts), the iteration is
  their prefill; otherwise every running request decodes one token;
- with chunked prefill (Sarathi, vLLM's chunked scheduler): running requests decode first (one
  token each), then prefills fill the rest of the token budget, a long prompt in chunks over
  several iterations.

KV cache: paged blocks (:mod:`~simulator.serve.kvcache`). When a decoding request needs a new
block and none is free, the most recently admitted running request is preempted: with
``recompute`` it frees its blocks and waits to be prefilled again (prompt plus the tokens it
has generated); with ``swap`` its blocks cross the host link to host memory and come back
before new requests are admitted, each way costing its bytes over the host link.

Invariants (tested): a request is admitted once per residency and finishes once; blocks in
use never exceed the cache; an iteration never exceeds the token budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from simulator.errors import HwsimError
from simulator.serve.iteration import Batch
from simulator.serve.kvcache import BlockManager
from simulator.serve.requests import Request

__all__ = ["SchedulerConfig", "ReqState", "Scheduler", "Step"]


@dataclass(frozen=True)
class SchedulerConfig:
    """Batch limits and KV-cache policy of one replica."""

    max_batch: int = 256              # running sequences (vLLM max_num_seqs)
    max_batched_tokens: int = 8192    # tokens per iteration
    chunked_prefill: bool = False
    block_size: int = 16
    preemption: str = "recompute"     # recompute | swap
    swap_blocks: int = 0              # host blocks for swapping (0: swap disabled)

    def check(self) -> None:
        for name in ("max_batch", "max_batched_tokens", "block_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise HwsimError(f"--{name.replace('_', '-')} must be a positive integer, "
                                 f"got {v!r}")
        if self.preemption not in ("recompute", "swap"):
            raise HwsimError(f"--preemption must be recompute or swap, got {self.preemption!r}")


@dataclass
class ReqState:
    """A request's progress on a replica."""

    req: Request
    generated: int = 0        # output tokens emitted so far
    prefilled: int = 0        # tokens of the current prefill target already processed
    target: int = 0           # tokens to prefill before decoding (prompt, or more after recompute)
    first_token_s: float | None = None
    last_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    admitted: int = 0

    @property
    def in_cache(self) -> int:
        """Tokens whose KV is cached: the prefilled part while prefilling; once decoding, the
        prompt and every generated token but the last (which the next step feeds in)."""
        if self.prefilled < self.target:
            return self.prefilled
        return self.req.prompt_tokens + self.generated - 1

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.target


@dataclass
class Step:
    """One scheduled iteration: the batch for the cost model, who is in it, extra time."""

    batch: Batch
    prefill: list[tuple[ReqState, int]] = field(default_factory=list)  # (state, chunk tokens)
    decode: list[ReqState] = field(default_factory=list)
    swap_bytes: float = 0.0


class Scheduler:
    """The queues and KV cache of one replica; :meth:`schedule` and :meth:`complete` move
    requests through them."""

    def __init__(self, config: SchedulerConfig, kv_blocks: int, kv_bytes_per_token: float):
        config.check()
        self.cfg = config
        self.kv = BlockManager(kv_blocks, config.block_size)
        self.host = BlockManager(max(config.swap_blocks, 1), config.block_size)
        self.kv_bytes_per_block = kv_bytes_per_token * config.block_size
        self.waiting: deque[ReqState] = deque()
        self.running: list[ReqState] = []
        self.swapped: deque[ReqState] = deque()
        self.preemptions = 0
        self.swaps = 0

    # -- admission --------------------------------------------------------------------------
    def add(self, req: Request) -> None:
        """Queue a new request; refuse one that can never run here."""
        total = req.prompt_tokens + req.output_tokens
        if self.kv.blocks_for(total) > self.kv.total_blocks:
            raise HwsimError(
                f"request {req.rid}: {req.prompt_tokens} prompt + {req.output_tokens} output "
                f"tokens need {self.kv.blocks_for(total)} KV blocks of {self.cfg.block_size} "
                f"tokens; a replica's cache holds {self.kv.total_blocks} (more --tp, a smaller "
                "model or --kv-dtype fp8/int8)")
        if not self.cfg.chunked_prefill and req.prompt_tokens > self.cfg.max_batched_tokens:
            raise HwsimError(
                f"request {req.rid}: a {req.prompt_tokens}-token prompt exceeds "
                f"--max-batched-tokens {self.cfg.max_batched_tokens} (raise it or use "
                "--chunked-prefill)")
        self.waiting.append(ReqState(req, target=req.prompt_tokens))

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.swapped)

    def idle(self) -> bool:
        return not self.outstanding

    # -- one iteration ----------------------------------------------------------------------
    def schedule(self) -> Step | None:
        """The next iteration's work, or None when there is none."""
        step = Step(Batch())
        step.swap_bytes += self._swap_in()
        if self.cfg.chunked_prefill:
            self._decodes(step)
            self._prefills(step, self.cfg.max_batched_tokens - len(step.decode))
        else:
            self._prefills(step, self.cfg.max_batched_tokens, whole=True)
            if not step.prefill:
                self._decodes(step)
        if not step.prefill and not step.decode:
            return None
        step.batch = Batch(tuple((n, s.prefilled) for s, n in step.prefill),
                           tuple(s.in_cache for s in step.decode))
        assert step.batch.tokens <= self.cfg.max_batched_tokens
        return step

    def _decodes(self, step: Step) -> None:
        running, kv = self.running, self.kv
        i = 0
        while i < len(running):
            s = running[i]
            i += 1
            if not s.decoding:
                continue
            rid, need = s.req.rid, s.in_cache + 1
            preempted_self = False
            while not kv.can_grow(rid, need):  # free blocks: preempt the latest admitted
                victim = running[-1]
                step.swap_bytes += self._preempt(victim)
                if victim is s:
                    preempted_self = True
                    break
            if not preempted_self:
                kv.grow(rid, need)
                step.decode.append(s)

    def _prefills(self, step: Step, budget: int, whole: bool = False) -> None:
        # requests already admitted whose prompt is only partly prefilled (chunked)
        for s in self.running:
            if budget <= 0:
                return
            if not s.decoding:
                n = min(s.target - s.prefilled, budget)
                step.prefill.append((s, n))
                budget -= n
        # swapped-out requests come back before any new request is admitted (vLLM)
        while self.waiting and not self.swapped and budget > 0 \
                and len(self.running) < self.cfg.max_batch:
            s = self.waiting[0]
            remaining = s.target - s.prefilled
            n = remaining if whole else min(remaining, budget)
            if whole and n > budget:
                if n <= self.cfg.max_batched_tokens or step.prefill:
                    return
                # a recompute (prompt + generated tokens) longer than the token budget, which
                # no iteration could ever take whole: prefill it in chunks, alone
                n = budget
            if not self.kv.can_allocate(s.target + 1):
                return  # FIFO: do not let later requests overtake (vLLM)
            self.waiting.popleft()
            self.kv.allocate(s.req.rid, s.target + 1)
            s.admitted += 1
            self.running.append(s)
            step.prefill.append((s, n))
            budget -= n

    def _preempt(self, s: ReqState) -> float:
        """Take ``s`` off the replica; returns bytes swapped out (0 for recompute)."""
        if self.running and self.running[-1] is s:
            self.running.pop()
        else:
            self.running.remove(s)
        blocks = self.kv.release(s.req.rid)
        s.preemptions += 1
        self.preemptions += 1
        if self.cfg.preemption == "swap" and self.cfg.swap_blocks > 0 \
                and self.host.can_allocate(blocks * self.cfg.block_size):
            self.host.allocate(s.req.rid, blocks * self.cfg.block_size)
            self.swapped.append(s)
            self.swaps += 1
            return blocks * self.kv_bytes_per_block
        # recompute: prefill the prompt and every token generated so far again
        s.target = s.req.prompt_tokens + s.generated
        s.prefilled = 0
        self.waiting.appendleft(s)
        return 0.0

    def _swap_in(self) -> float:
        moved = 0.0
        while self.swapped and len(self.running) < self.cfg.max_batch:
            s = self.swapped[0]
            blocks = self.host.held.get(s.req.rid, 0)
            if blocks > self.kv.free_blocks:
                break
            self.swapped.popleft()
            self.host.release(s.req.rid)
            self.kv.allocate(s.req.rid, blocks * self.cfg.block_size)
            self.running.append(s)
            moved += blocks * self.kv_bytes_per_block
        return moved

    # -- after the iteration ----------------------------------------------------------------
    def complete(self, step: Step, now: float) -> tuple[list[ReqState], list[float]]:
        """Apply an iteration that ended at ``now``: returns the requests that finished and
        the inter-token gaps of this iteration's tokens."""
        done: list[ReqState] = []
        gaps: list[float] = []
        emitted: list[ReqState] = []
        for s, n in step.prefill:
            s.prefilled += n
            if s.decoding:  # prompt (or recompute) prefill complete: the next token comes out
                emitted.append(s)
        emitted.extend(step.decode)
        for s in emitted:
            if s.generated == 0:
                s.first_token_s = now
            elif s.last_token_s is not None:
                gaps.append(now - s.last_token_s)
            s.generated += 1
            s.last_token_s = now
            if s.generated >= s.req.output_tokens:
                s.finish_s = now
                self.running.remove(s)
                self.kv.release(s.req.rid)
                done.append(s)
        return done, gaps
