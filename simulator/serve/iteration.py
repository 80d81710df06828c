"""Latency and energy of one scheduler iteration, from the analytical model, cached.

An iteration of a continuous-batching server runs the model once over a mixed batch: some
prefill chunks (``new`` tokens each, after ``context`` cached ones) and some decoding requests
(one token each against their KV caches). Every linear layer sees all ``T`` tokens at once; each
request's attention is its own; the LM head runs on the rows that emit a token. So

    latency = dense(T) + layers x attention(prefill chunks, decodes) + lm_head(emitting rows)

``dense(T)`` is the rest of the model (projections, MLP, norms, tensor-parallel all-reduces),
taken from a full prediction of a prefill of ``T`` tokens (the discrete-event run of the same
graph :func:`simulator.simulate` runs) minus its attention and LM head; it is computed on a grid
of token counts (every 16 tokens up to 256, then 8 points per doubling) and interpolated
linearly between grid points. Attention and LM head come from the predictor's op costs for the
exact shapes (token counts rounded up to 16). All of it is memoised, so a 10,000-request run
costs a few hundred predictions.

Energy is split the same way (dynamic energy of the work, every device of the replica); the
power floor of a busy or idle device is added by the serving simulation from the spec.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from simulator.errors import HwsimError, WorkloadError
from simulator.plan import Plan, make_plan
from simulator.predict import Predictor
from workloads.ops import Attention, MatMul

__all__ = ["Batch", "IterationModel", "token_grid"]

_ROUND = 16


def _up(x: int, q: int = _ROUND) -> int:
    return max(q, -(-x // q) * q)


def token_grid(limit: int) -> list[int]:
    """Grid of token counts for ``dense``: every 16 up to 256, then 8 points per doubling.

    >>> token_grid(600)
    [16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640]
    """
    out = list(range(16, min(256, limit) + 16, 16))
    x = 256
    while out[-1] < limit:
        step = x // 8
        for _ in range(8):
            x += step
            out.append(x)
            if x >= limit:
                break
    return out


@dataclass(frozen=True)
class Batch:
    """One iteration's work: prefill chunks ``(new tokens, cached context)``, the cached
    context of each decoding request, and the rows that emit a token (LM head)."""

    prefill: tuple[tuple[int, int], ...] = ()
    decode: tuple[int, ...] = ()

    @property
    def tokens(self) -> int:
        return sum(n for n, _ in self.prefill) + len(self.decode)


@dataclass(frozen=True)
class Cost:
    latency_s: float
    energy_j: float  # dynamic energy of the work on every device of the replica


class IterationModel:
    """Iteration costs of one model on one replica (``tp`` devices of ``predictor.system``).

    Raises
    ------
    WorkloadError
        If the workload is not a decoder (serving needs prefill and decode).
    """

    def __init__(self, predictor: Predictor, workload: str, *, tp: int = 1,
                 dtype: str | None = None, weight_dtype: str | None = None,
                 kv_dtype: str | None = None, max_tokens: int = 8192,
                 fuse_projections: bool = True):
        self.predictor = predictor
        self.fuse_projections = fuse_projections
        self.workload = workload
        self.tp = tp
        self.max_tokens = max_tokens
        self.dtype, self.weight_dtype, self.kv_dtype = dtype, weight_dtype, kv_dtype
        probe = self._plan(16)
        graph = probe.build()
        if graph.meta.get("family") != "decoder":
            raise WorkloadError(f"{workload}: serving simulates decoder (LLM) models, not "
                                f"{graph.meta.get('family')} models")
        self.dtype = probe.dtype  # the user's, or the part's default once resolved
        layers = [graph.item(n) for n in graph.g.nodes if "layers" in graph.tags(n)]
        self.layers = layers[0].times
        block = layers[0].block
        self._attn = next(op for op in block.unique_ops() if isinstance(op, Attention))
        self._head = next((graph.item(n) for n in graph.g.nodes if n == "lm_head"), None)
        if not isinstance(self._head, MatMul):
            raise WorkloadError(f"{workload}: no LM head found in the graph")
        self._dense: dict[int, Cost] = {}
        self._grid = token_grid(max_tokens)
        self._attn_cache: dict[tuple, Cost] = {}
        self._head_cache: dict[int, Cost] = {}
        self._batch_cache: dict[tuple, Cost] = {}
        self.predictions = 0
        #: the same model at full clock (no per-op power cap): when set, iteration energies
        #: come from it, for the sustained-power limiter of simulator.power.governor
        self.energy_model: IterationModel | None = None

    # -- facts ------------------------------------------------------------------------------
    def _plan(self, tokens: int) -> Plan:
        return make_plan(self.workload, self.predictor.system, phase="prefill", batch=1,
                         seq=tokens, dtype=self.dtype, weight_dtype=self.weight_dtype,
                         kv_dtype=self.kv_dtype, tp=self.tp, dp=1,
                         fuse_projections=self.fuse_projections)

    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token takes on one device, over all layers."""
        a = replace(self._attn, batch=1, seq=1, context=0)
        return a.kv_cache_bytes() * self.layers

    def weights_bytes(self) -> float:
        from workloads.memory import footprint_by_device

        return footprint_by_device(self._plan(16).build())[0].weights

    def activation_bytes(self, tokens: int) -> float:
        from workloads.memory import footprint_by_device

        return footprint_by_device(self._plan(_up(tokens)).build())[0].activations

    # -- costs ------------------------------------------------------------------------------
    def _dense_at(self, tokens: int) -> Cost:
        c = self._dense.get(tokens)
        if c is None:
            plan = self._plan(tokens)
            r = self.predictor.run(plan)
            self.predictions += 1
            rec = r.records
            attn = rec.sum_over("latency_s", device=0, kind="attention")
            head = rec.sum_over("latency_s", device=0, name="lm_head")
            attn_e = rec.sum_over("energy_j", kind="attention")
            head_e = rec.sum_over("energy_j", name="lm_head")
            c = self._dense[tokens] = Cost(max(0.0, r.latency_s - attn - head),
                                           max(0.0, r.energy.dynamic_j - attn_e - head_e))
        return c

    def dense(self, tokens: int) -> Cost:
        """Everything but attention and the LM head, for ``tokens`` tokens (interpolated)."""
        if tokens < 1:
            return Cost(0.0, 0.0)
        if tokens > self._grid[-1]:
            raise HwsimError(f"an iteration of {tokens} tokens exceeds --max-batched-tokens "
                             f"{self.max_tokens}")
        i = bisect.bisect_left(self._grid, tokens)
        hi = self._grid[i]
        if hi == tokens or i == 0:
            c = self._dense_at(hi)
            if i == 0 and tokens < hi:  # below the first grid point: the weights are read
                lo0 = self._dense_at(hi)  # all the same, so time and (memory-dominated)
                return Cost(lo0.latency_s, lo0.energy_j)  # energy stay those of the grid point
            return c
        lo = self._grid[i - 1]
        a, b = self._dense_at(lo), self._dense_at(hi)
        w = (tokens - lo) / (hi - lo)
        return Cost(a.latency_s + w * (b.latency_s - a.latency_s),
                    a.energy_j + w * (b.energy_j - a.energy_j))

    def _attention(self, op: Attention) -> Cost:
        key = (op.batch, op.seq, op.context, op.phase)
        c = self._attn_cache.get(key)
        if c is None:
            oc = self.predictor.cost(op)
            c = self._attn_cache[key] = Cost(oc.latency_s * self.layers,
                                             oc.energy_j * self.layers * self.tp)
        return c

    def _lm_head(self, rows: int) -> Cost:
        c = self._head_cache.get(rows)
        if c is None:
            oc = self.predictor.cost(replace(self._head, m=rows))
            c = self._head_cache[rows] = Cost(oc.latency_s, oc.energy_j * self.tp)
        return c

    def cost(self, batch: Batch) -> Cost:
        """Latency and dynamic energy of one iteration."""
        pre = tuple(sorted((_up(n), _up(c, _ROUND) if c else 0) for n, c in batch.prefill))
        n_dec = len(batch.decode)
        mean_ctx = _up(math.ceil(sum(batch.decode) / n_dec)) if n_dec else 0
        key = (pre, n_dec, mean_ctx)
        hit = self._batch_cache.get(key)
        if hit is not None:
            return hit
        tokens = sum(n for n, _ in batch.prefill) + n_dec
        parts = [self.dense(tokens)]
        for n, c in pre:  # each prefill chunk: causal attention over its cached prefix
            parts.append(self._attention(replace(self._attn, batch=1, seq=n, context=c,
                                                 phase="prefill")))
        if n_dec:  # flash-decoding reads every cache once: the mean context x the count
            parts.append(self._attention(replace(self._attn, batch=n_dec, seq=1,
                                                 context=mean_ctx, phase="decode")))
        rows = len(batch.prefill) + n_dec
        if rows:
            parts.append(self._lm_head(rows))
        c = Cost(sum(p.latency_s for p in parts), sum(p.energy_j for p in parts))
        if self.energy_model is not None:
            c = Cost(c.latency_s, self.energy_model.cost(batch).energy_j)
        if len(self._batch_cache) < 200_000:
            self._batch_cache[key] = c
        return c

    def direct(self, batch_size: int, *, phase: str, seq: int | None = None,
               context: int | None = None) -> float:
        """A homogeneous batch predicted directly (the full graph), to check :meth:`cost`."""
        plan = make_plan(self.workload, self.predictor.system, phase=phase, batch=batch_size,
                         seq=seq, context=context, dtype=self.dtype,
                         weight_dtype=self.weight_dtype, kv_dtype=self.kv_dtype, tp=self.tp,
                         dp=1, fuse_projections=self.fuse_projections)
        return self.predictor.run(plan).latency_s


def batch_of(prefill: Sequence[tuple[int, int]] = (), decode: Sequence[int] = ()) -> Batch:
    return Batch(tuple(prefill), tuple(decode))
