"""``hwsim train --search``: every layout of a system's devices, fastest first, by branch
and bound over worker processes.

The layouts, their memory screening, lower bounds and ranking runs are in
:mod:`simulator.train_search`; this module orders and prunes them and spreads the runs over
``jobs`` processes, each with its own :class:`~simulator.predict.Predictor`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.arch.spec import System
from simulator.errors import CapacityError, HwsimError
from simulator.predict import Predictor
from simulator.train import train, train_system
from simulator.train_search import (
    TrainLayout,
    candidate_layouts,
    fits,
    screen_step_time,
    step_lower_bound,
)
from simulator.workers import make_backend

__all__ = ["search", "SearchResult", "BOUND_ABOVE_STAGE_PASSES", "PRUNE_MARGIN"]


@dataclass(frozen=True)
class SearchResult:
    """Layouts that fit, fastest first, and those that did not with the reason; ``pruned``:
    layouts that fit but whose lower bound (:func:`step_lower_bound`) was already slower
    than the ``top``-th fastest, with that bound. Which layouts are pruned rather than
    screened can depend on the order parallel runs finish in; ``fits`` does not."""

    fits: list[Any]  # simulator.train.TrainResult
    refused: list[tuple[dict[str, Any], str]]
    evaluated: int
    screened: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    pruned: list[tuple[dict[str, Any], float]] = field(default_factory=list)


#: Simulated stage passes (micro-batches x stages) above which a layout's screening run is
#: worth a lower bound first (two runs of one and two micro-batches)
BOUND_ABOVE_STAGE_PASSES = 1500
#: Screened times are within 0.4% of the full runs (:func:`screen_step_time`): a layout is
#: pruned only when its bound exceeds the top-th screened time by more than this
PRUNE_MARGIN = 0.01

_WORKER: dict[str, Any] = {}


def _start_worker(system: System, workload: str, kw: dict[str, Any],
                  schedule: str | None) -> None:
    """A search worker's state: its own predictor (op and block costs cached per process)."""
    _WORKER.update(p=Predictor(system), workload=workload, kw=kw, schedule=schedule)


def _task(kind: str, lay: TrainLayout) -> Any:
    """One unit of search work in a worker: a lower bound, a screening run or a full run."""
    p, workload, kw, schedule = (_WORKER[k] for k in ("p", "workload", "kw", "schedule"))
    if kind == "bound":
        return step_lower_bound(p, workload, lay, schedule=schedule, **kw)
    if kind == "screen":
        return screen_step_time(train, p, workload, lay, schedule=schedule, **kw)
    return train(workload, p.system, predictor=p, schedule=schedule if lay.pp > 1 else None,
                 tp=lay.tp, pp=lay.pp, dp=lay.dp, zero=lay.zero, recompute=lay.recompute,
                 sequence_parallel=lay.sequence_parallel, **kw)


def _why_not(e: Exception) -> str:
    if isinstance(e, CapacityError):
        return "does not fit: " + str(e).split(" needs ", 1)[-1].split(";", 1)[0]
    return str(e)


def search(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
           micro_batch: int | None = None, nodes: int | None = None, dtype: str | None = None,
           recompute: str = "none", top: int = 5, schedule: str | None = None,
           progress: Callable[[int, int], None] | None = None,
           jobs: int = 1) -> SearchResult:
    """Every layout of the system's devices (tp a power of two within a node that splits the
    model, pp up to the layers, dp the rest, ZeRO 0-3, sequence parallelism on or off) that
    fits, fastest first, by branch and bound:

    1. the closed form refuses what cannot fit without building anything;
    2. a layout whose screening run is long (a deep pipeline, ZeRO-3's gathers) gets a lower
       bound on its step time from two short runs (:func:`step_lower_bound`);
    3. layouts are screened (:func:`screen_step_time`, which also checks the real footprint)
       cheapest bound first, and once ``top`` have times, a layout whose bound is slower than
       the ``top``-th fastest cannot be among them: it and every later one (their bounds are
       larger still) are pruned without running; a ZeRO-2 layout takes its ZeRO-1 twin's
       time (the same transfers, less memory);
    4. the ``top`` fastest are run in full.

    ``jobs`` worker processes share the runs (``hwsim train --search`` uses every core).
    ``progress(i, n)``: called as the work goes on, ``n`` bounds and runs in all."""
    system = train_system(arch, nodes)
    cands = candidate_layouts(workload, system, global_batch, micro_batch,
                              recomputes=(recompute,))
    kw = dict(global_batch=global_batch, seq=seq, micro_batch=micro_batch, dtype=dtype)
    refused: list[tuple[dict[str, Any], str]] = []
    # 1: memory by the closed form; which layouts get a bound (one per ZeRO 0-2 family:
    # ZeRO-1's compute is ZeRO-0's less 1 - 1/dp of the optimizer and equals ZeRO-2's, and
    # its transfers are ZeRO-2's, so its bound holds for all three)
    live: list[tuple[int, TrainLayout, TrainLayout | None]] = []
    for i, lay in enumerate(cands):
        why = fits(workload, system, lay, schedule=schedule, build=schedule == "gpipe", **kw)
        if why is not None:
            refused.append((lay.to_dict(), why))
            continue
        per = global_batch // lay.dp
        m = per // (micro_batch or (1 if lay.pp > 1 else per))
        key = None
        if (lay.pp > 1 and lay.pp * min(m, 3 * lay.pp + 3) > BOUND_ABOVE_STAGE_PASSES) \
                or (lay.zero == 3 and m > 1):
            key = replace(lay, zero=1 if lay.zero < 3 and lay.dp > 1 else lay.zero)
        live.append((i, lay, key))
    twins = {(lay.tp, lay.pp, lay.dp, lay.sequence_parallel) for _, lay, _ in live
             if lay.zero == 1}
    keys = list(dict.fromkeys(k for _, _, k in live if k is not None))
    n_screen = sum(1 for _, lay, _ in live if not _has_twin(lay, twins))
    total = len(keys) + n_screen + min(top, len(live))
    done = 0

    def tick() -> None:
        nonlocal done
        if progress is not None:
            progress(done, total)
        done += 1

    pool = make_backend("local", jobs, initializer=_start_worker,
                        initargs=(system, workload, kw, schedule))
    try:
        # 2: the bounds
        bounds: dict[TrainLayout, float] = {}
        futures = {pool.submit(_task, "bound", k): k for k in keys}
        for f in futures:  # in order: each result() waits for its run
            tick()
            try:
                bounds[futures[f]] = f.result()
            except HwsimError:
                bounds[futures[f]] = 0.0  # the screening run says why
        order = sorted(((bounds.get(k, 0.0) if k else 0.0), i, lay) for i, lay, k in live)
        # 3: screening, cheapest bound first, pruned past the top-th fastest
        times: list[float] = []  # sorted screened times
        screened: list[tuple[TrainLayout, float]] = []
        pruned: list[tuple[TrainLayout, float]] = []
        waiting = [(b, lay) for b, _, lay in order if not _has_twin(lay, twins)]
        inflight: dict[Any, tuple[float, TrainLayout]] = {}
        while waiting or inflight:
            while waiting and len(inflight) < max(1, jobs):
                b, lay = waiting.pop(0)
                if len(times) >= top and b > times[top - 1] * (1 + PRUNE_MARGIN):
                    pruned += [(lay, b)] + [(x, bx) for bx, x in waiting]
                    waiting = []
                    break
                inflight[pool.submit(_task, "screen", lay)] = (b, lay)
            finished, _ = pool.wait_any(inflight)
            for f in sorted(finished, key=list(inflight).index):
                b, lay = inflight.pop(f)
                tick()
                try:
                    t = f.result()
                except HwsimError as e:
                    refused.append((lay.to_dict(), _why_not(e)))
                    continue
                screened.append((lay, t))
                bisect.insort(times, t)
        # a ZeRO-2 layout moves what its ZeRO-1 twin moves, with less memory: its time
        twin_of = {(x.tp, x.pp, x.dp, x.sequence_parallel): (x, t) for x, t in screened
                   if x.zero == 1}
        twin_pruned = {(x.tp, x.pp, x.dp, x.sequence_parallel): b for x, b in pruned
                       if x.zero == 1}
        for _, _, lay in order:
            if not _has_twin(lay, twins):
                continue
            k = (lay.tp, lay.pp, lay.dp, lay.sequence_parallel)
            if k in twin_of:
                screened.append((lay, twin_of[k][1]))
            elif k in twin_pruned:
                pruned.append((lay, twin_pruned[k]))
            else:  # the twin did not fit after all: this one is screened on its own
                try:
                    t = pool.submit(_task, "screen", lay).result()
                    screened.append((lay, t))
                except HwsimError as e:
                    refused.append((lay.to_dict(), _why_not(e)))
        screened.sort(key=lambda x: (x[1], x[0].tp, x[0].pp, x[0].zero))
        # 4: the fastest in full; a layout whose screening run fitted but whose full step
        # does not (a pipeline holds more micro-batches in flight than the short run did) is
        # refused with its reason and the next fastest takes its place
        full = []
        queue = list(screened)
        while queue and len(full) < top:
            batch, queue = queue[:top - len(full)], queue[top - len(full):]
            for (lay, _), f in [(x, pool.submit(_task, "full", x[0])) for x in batch]:
                tick()
                try:
                    full.append(f.result())
                except HwsimError as e:
                    refused.append((lay.to_dict(), _why_not(e)))
                    screened = [x for x in screened if x[0] != lay]
    finally:
        pool.close()
    full.sort(key=lambda r: (r.metrics["step_time_s"], r.metrics["tp"], r.metrics["zero"]))
    return SearchResult(full, refused, len(cands),
                        [(lay.to_dict(), t) for lay, t in screened],
                        [(lay.to_dict(), b) for lay, b in pruned])


def _has_twin(lay: TrainLayout, twins: set[tuple]) -> bool:
    """A ZeRO-2 layout whose ZeRO-1 twin is a candidate too (it takes the twin's time)."""
    return lay.zero == 2 and (lay.tp, lay.pp, lay.dp, lay.sequence_parallel) in twins
