"""Training layouts of a device count: enumeration, memory screening and the nearest fits.

``hwsim train --search`` and the capacity error of ``hwsim train`` both need the layouts
(tensor x pipeline x data parallel, ZeRO stage, sequence parallelism) that the devices allow
and whether each fits in memory. Fitting is decided from the per-device footprint of the real
graph (:func:`workloads.memory.footprint_by_device`), not a formula, but two shortcuts keep it
cheap on a thousand devices:

- weights, gradients and optimizer state per device have a closed form (params / (tp x pp),
  2 + 2 + 12 bytes per parameter with mixed-precision Adam, sharded by ZeRO over dp); a layout
  whose weights and optimizer alone overflow is refused without building anything;
- a pipeline's footprint depends on the number of micro-batches only up to the schedule's
  peak in flight (1F1B: ``pp``; interleaved: its warm-up), so it is computed on a graph with
  at most ``pp x (v + 2)`` micro-batches.

Step times come from :func:`simulator.train.train`, which simulates a long pipeline (or a
long gradient accumulation) on three short ones and extrapolates the steady state it checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from simulator.arch.spec import System
from simulator.errors import CapacityError, HwsimError
from simulator.plan import Plan, _tp_degrees, check_capacity, make_plan, with_repeats
from simulator.predict import Predictor
from workloads.memory import OPTIMIZER_BYTES_PER_PARAM

__all__ = ["TrainLayout", "candidate_layouts", "layers_of", "fits", "nearest_fits",
           "step_lower_bound"]


@dataclass(frozen=True)
class TrainLayout:
    """One training layout of ``tp * pp * dp`` devices."""

    tp: int
    pp: int
    dp: int
    zero: int = 0
    sequence_parallel: bool = False
    recompute: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "pp": self.pp, "dp": self.dp, "zero": self.zero,
                "sequence_parallel": self.sequence_parallel, "recompute": self.recompute}

    def describe(self) -> str:
        return (f"--tp {self.tp} --pp {self.pp} --dp {self.dp}"
                + (f" --zero {self.zero}" if self.zero else "")
                + (" --sequence-parallel" if self.sequence_parallel else "")
                + (f" --recompute {self.recompute}" if self.recompute != "none" else ""))

    def distance(self, other: TrainLayout) -> float:
        """How far from ``other``: log2 steps of the degrees plus one per changed switch."""
        d = sum(abs(math.log2(getattr(self, k)) - math.log2(getattr(other, k)))
                for k in ("tp", "pp", "dp"))
        return (d + abs(self.zero - other.zero)
                + (self.sequence_parallel != other.sequence_parallel)
                + 1.5 * abs(_RECOMPUTE.index(self.recompute) - _RECOMPUTE.index(other.recompute)))


_RECOMPUTE = ("none", "selective", "full")


@lru_cache(maxsize=64)
def layers_of(workload: str) -> int:
    """Repeated layers of a transformer (0 for models without a ``layers`` block)."""
    from workloads.graph import Repeat
    from workloads.zoo import build_model

    g = build_model(workload, phase="forward", batch=1, seq=1)
    for n in g.g.nodes:
        item = g.item(n)
        if isinstance(item, Repeat) and "layers" in g.tags(n):
            return item.times
    return 0


@lru_cache(maxsize=64)
def _params(workload: str) -> float:
    from workloads.zoo import build_model

    return float(build_model(workload, phase="forward", batch=1, seq=1).params())


def candidate_layouts(workload: str, system: System, global_batch: int,
                      micro_batch: int | None = None, zeros: tuple[int, ...] = (0, 1, 2, 3),
                      recomputes: tuple[str, ...] = ("none",)) -> list[TrainLayout]:
    """Every layout of all the system's devices: tp a power of two within a node that splits
    the model, pp up to the layers, dp the rest dividing the global batch (and leaving whole
    micro-batches), ZeRO stages with dp > 1, sequence parallelism with tp > 1."""
    n = system.count
    per_node = min(system.devices_per_node or n, n)
    layers = layers_of(workload)
    out: list[TrainLayout] = []
    for tp in sorted(t for t in _tp_degrees(workload, per_node, None)
                     if t & (t - 1) == 0 and n % t == 0):
        for pp in (p for p in range(1, n // tp + 1) if (n // tp) % p == 0):
            if pp > 1 and (layers == 0 or pp > layers):
                continue
            dp = n // (tp * pp)
            if global_batch % dp:
                continue
            per_replica = global_batch // dp
            if micro_batch and per_replica % micro_batch:
                continue
            if pp > 1 and per_replica // (micro_batch or 1) < 1:
                continue
            for zero in (z for z in zeros if dp > 1 or z == 0):
                for sp in ((False, True) if tp > 1 else (False,)):
                    for rc in recomputes:
                        out.append(TrainLayout(tp, pp, dp, zero, sp, rc))
    return out


def _state_bytes(workload: str, lay: TrainLayout) -> float:
    """Weights + gradients + optimizer state per device (the closed form)."""
    p = _params(workload) / (lay.tp * lay.pp)
    weights, grads, opt = 2.0 * p, 2.0 * p, OPTIMIZER_BYTES_PER_PARAM * p
    if lay.zero >= 1:
        opt /= lay.dp
    if lay.zero >= 2:
        grads /= lay.dp
    if lay.zero >= 3:
        weights /= lay.dp
    return weights + grads + opt


def memory_plan(workload: str, system: System, lay: TrainLayout, *, global_batch: int,
                seq: int | None, micro_batch: int | None, dtype: str | None,
                schedule: str | None = None, virtual_stages: int | None = None) -> Plan:
    """A plan of ``lay`` whose footprint equals the full step's, on as few micro-batches as
    the schedule's peak in flight needs."""
    per_replica = global_batch // lay.dp
    mb = micro_batch or (1 if lay.pp > 1 else per_replica)
    batch = global_batch
    if lay.pp > 1:
        v = virtual_stages or (2 if schedule == "interleaved" else 1)
        m = per_replica // mb
        keep = min(m, lay.pp * (v + 2))
        keep -= keep % lay.pp if schedule == "interleaved" and keep >= lay.pp else 0
        batch = lay.dp * mb * max(1, keep)
    else:
        batch = lay.dp * mb  # one accumulation step holds what all of them hold
    return make_plan(workload, system, phase="train", batch=batch, seq=seq, tp=lay.tp,
                     pp=lay.pp, dp=lay.dp, dtype=dtype, recompute=lay.recompute,
                     micro_batch=mb, zero=lay.zero, sequence_parallel=lay.sequence_parallel,
                     schedule=schedule or "1f1b", virtual_stages=virtual_stages)


def fits(workload: str, system: System, lay: TrainLayout, build: bool = True, **kw: Any
         ) -> str | None:
    """``None`` if ``lay`` fits in every device's memory, else why not (one line);
    ``build=False``: the closed-form check only (the caller's runs check the rest)."""
    cap = system.device.dram.capacity_bytes
    state = _state_bytes(workload, lay)
    if state > cap:
        return (f"weights, gradients and optimizer state alone need "
                f"{state / 1e9:.1f} GB per device of {cap / 1e9:.0f} GB")
    if not build:
        return None
    try:
        plan = replace(memory_plan(workload, system, lay, **kw), fast=True)
        check_capacity(plan.build(), system, plan.layout)
    except CapacityError as e:
        return "does not fit: " + str(e).split(" needs ", 1)[-1].split(";", 1)[0]
    except HwsimError as e:
        return str(e)
    return None


def nearest_fits(workload: str, system: System, asked: TrainLayout, *, limit: int = 3,
                 budget: int = 40, **kw: Any) -> list[TrainLayout]:
    """Up to ``limit`` layouts of the same devices closest to ``asked`` that fit (at most
    ``budget`` footprints computed), closest first."""
    cands = candidate_layouts(workload, system, kw["global_batch"], kw.get("micro_batch"),
                              recomputes=_RECOMPUTE)
    cands.sort(key=lambda c: (c.distance(asked), c.tp, c.pp, c.zero))
    out: list[TrainLayout] = []
    tried = 0
    for c in cands:
        if c == asked:
            continue
        if _state_bytes(workload, c) > system.device.dram.capacity_bytes:
            continue
        tried += 1
        if fits(workload, system, c, **kw) is None:
            out.append(c)
            if len(out) >= limit:
                break
        if tried >= budget:
            break
    return out


def screen_step_time(train: Callable[..., Any], p: Predictor, workload: str, lay: TrainLayout, *,
                     global_batch: int, seq: int | None, micro_batch: int | None,
                     dtype: str | None, schedule: str | None = None,
                     virtual_stages: int | None = None) -> float:
    """The step time of ``lay`` for ranking, by ``train`` (:func:`simulator.train.train`,
    which simulates a long pipeline or accumulation on a few repeats and extrapolates its
    steady state on runs one micro-batch apart) with every repeated block collapsed
    (``screen=True``, except ZeRO-3: within 0.07% of the normal fast path on the 68 GPT-3
    175B layouts of 128 A100s that fit, within 0.4% on 1,024, 3-5x quicker)."""
    per_replica = global_batch // lay.dp
    mb = micro_batch or (1 if lay.pp > 1 else per_replica)
    return train(workload, p.system, global_batch=global_batch, seq=seq, micro_batch=mb,
                 tp=lay.tp, pp=lay.pp, dp=lay.dp, zero=lay.zero, dtype=dtype,
                 recompute=lay.recompute, sequence_parallel=lay.sequence_parallel,
                 schedule=schedule if lay.pp > 1 else None,
                 virtual_stages=virtual_stages if lay.pp > 1 else None, predictor=p,
                 screen=True).metrics["step_time_s"]


def step_lower_bound(p: Predictor, workload: str, lay: TrainLayout, *, global_batch: int,
                     seq: int | None, micro_batch: int | None, dtype: str | None,
                     schedule: str | None = None) -> float:
    """A time no step of ``lay`` can beat, from runs of one and two micro-batches (or
    accumulation steps), for pruning the search: 0 where there is no cheaper bound.

    Each stage's compute stream runs its ops one after another, and so does its
    communication stream, so the step lasts at least what either does on a stage's device:
    its busy time with one micro-batch plus ``n - 1`` times what the second one added (the
    communication stream is what bounds a ZeRO-3 step). On a 1F1B or GPipe pipeline a stage also cannot start
    before the first micro-batch's forward has passed the stages before it, and the last
    micro-batch's backward must still pass back through them after the stage is done: at
    least ``n c_s + sum_{j<s} c_j`` with ``c`` a micro-batch's compute per stage (the
    pipeline's bubble). Communication and the optimizer's wait for the others only add."""
    per = global_batch // lay.dp
    mb = micro_batch or (1 if lay.pp > 1 else per)
    n = per // mb
    if n < 2 or schedule == "interleaved":
        return 0.0
    plan = replace(make_plan(workload, p.system, phase="train", batch=lay.dp * mb * 2,
                             seq=seq, tp=lay.tp, pp=lay.pp, dp=lay.dp, dtype=dtype,
                             recompute=lay.recompute, micro_batch=mb, zero=lay.zero,
                             sequence_parallel=lay.sequence_parallel,
                             schedule=schedule or "1f1b"), fast=True)
    one, two = p.run(with_repeats(plan, 1)), p.run(with_repeats(plan, 2))
    devs = [s * lay.tp for s in range(lay.pp)]
    bound = 0.0
    for stream in ("compute", "comm"):  # each runs its ops one at a time
        b1 = [one.records.busy_s(d, stream) for d in devs]
        c = [two.records.busy_s(d, stream) - b for d, b in zip(devs, b1, strict=True)]
        bound = max(bound, *(b + (n - 1) * cs for b, cs in zip(b1, c, strict=True)))
        if lay.pp > 1 and stream == "compute":
            bound = max(bound, max(n * c[s] + sum(c[:s]) for s in range(lay.pp)))
    return bound
