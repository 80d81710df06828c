"""``train()``: one training step of a layout, with the numbers training teams ask for.

Step time, tokens/s, model and hardware FLOP utilisation (MFU, HFU), memory per device by
part, communication time and how much of it is exposed (not hidden behind compute), energy
and cost, from one run of the prediction pipeline: tensor, data and expert parallelism,
ZeRO stages 1-3, sequence parallelism, pipeline parallelism with GPipe, 1F1B or interleaved
schedules over micro-batches (the bubble comes out of the event run), bucketed gradient
reduction overlapped with the backward pass, gradient accumulation, selective or full
recomputation, on N nodes joined by the system's fabric.

Large layouts run on the fast path by default: devices that do identical work are simulated
once (:mod:`workloads.transforms.fold`) and each repeated block of layers is one pair of macro
ops (:mod:`simulator.engine.blocks`); ``exact=True`` simulates every device and every op.
A layout that does not fit raises a CapacityError that lists the nearest layouts of the same
devices that do (:mod:`simulator.train_search`).

>>> r = train("gpt2", "dgx-a100", global_batch=16, micro_batch=4, seq=256, tp=1, dp=4)
>>> r.metrics["accumulation_steps"], 0 < r.metrics["mfu"] < 1
(1, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.errors import CapacityError, HwsimError
from simulator.plan import Plan, make_plan
from simulator.predict import Predictor
from simulator.results.result import Result, finite_json

__all__ = ["TrainResult", "train", "train_system", "search", "SearchResult", "MAX_DEVICES"]

#: Devices a training run may span: above the largest clusters built (~100k GPUs).
MAX_DEVICES = 131_072


@dataclass(frozen=True)
class TrainResult:
    plan: Plan
    result: Result
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.metrics)

    def to_json(self) -> str:
        return json.dumps(finite_json(self.metrics), allow_nan=False)



def train_system(arch: str | System, nodes: int | None = None,
                 overrides: tuple[str, ...] = ()) -> System:
    """``arch`` scaled to ``nodes`` nodes of its spec's device count."""
    if nodes is not None and (isinstance(nodes, bool) or not isinstance(nodes, int)
                              or nodes < 1):
        raise HwsimError(f"--nodes must be a positive integer, got {nodes!r}")
    base = arch if isinstance(arch, System) else load_arch(arch, overrides)
    if nodes is None or nodes == 1 and base.nodes == 1:
        return base
    if isinstance(arch, System):
        raise HwsimError("--nodes needs a spec name, not a System object")
    if base.kind != "system":
        raise HwsimError(f"--nodes {nodes} needs a node system spec (e.g. dgx-a100, dgx-h100, "
                         f"a cluster spec); {arch} is a single {base.device.kind} part")
    per = base.devices_per_node or base.count
    if per * nodes > MAX_DEVICES:
        raise HwsimError(f"--nodes {nodes}: {per * nodes:,} devices is beyond what hwsim "
                         f"simulates ({MAX_DEVICES:,}, about the largest clusters built)")
    return load_arch(arch, (*overrides, f"count={per * nodes}"))


def train(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
          micro_batch: int | None = None, nodes: int | None = None, tp: int | None = None,
          pp: int = 1, dp: int | None = None, ep: int = 1, zero: int = 0,
          dtype: str | None = None, recompute: str = "none", schedule: str | None = None,
          virtual_stages: int | None = None, sequence_parallel: bool = False,
          predictor: Predictor | None = None, exact: bool = False,
          bucket_mb: float | None = 25.0, attention: str = "flash") -> TrainResult:
    """Simulate one training step (``global_batch`` samples) of ``workload`` on ``arch``.

    Raises
    ------
    HwsimError
        A layout that does not fit the devices or the model, an option not modelled yet, a
        model that does not fit in memory (CapacityError, with parts and what would help).
    """
    if schedule is not None and pp == 1:
        raise HwsimError("--schedule applies to pipeline parallelism (--pp > 1)")
    if bucket_mb is not None and (isinstance(bucket_mb, bool) or not isinstance(
            bucket_mb, (int, float)) or not math.isfinite(bucket_mb) or bucket_mb < 0):
        raise HwsimError(f"--bucket-mb must be a non-negative number of MB, got {bucket_mb!r}")
    system = train_system(arch, nodes)
    p = predictor or Predictor(system)
    plan = make_plan(workload, p.system, phase="train", batch=global_batch, seq=seq, tp=tp,
                     pp=pp, dp=dp, ep=ep, dtype=dtype, recompute=recompute,
                     micro_batch=micro_batch, zero=zero, sequence_parallel=sequence_parallel,
                     schedule=schedule or ("interleaved" if virtual_stages else "1f1b"),
                     virtual_stages=virtual_stages,
                     bucket_bytes=None if bucket_mb is None else bucket_mb * 1e6,
                     attention=attention)
    if not exact:
        from dataclasses import replace as _replace

        plan = _replace(plan, fast=True)
    try:
        r = p.run(plan)
    except CapacityError as e:
        raise CapacityError(str(e) + _nearest_hint(workload, p.system, plan, global_batch,
                                                   seq, micro_batch, dtype)) from None
    except ValueError as e:  # an op shape out of range (e.g. seq**2 scores beyond 2**53)
        raise HwsimError(f"{workload} with --seq {seq} and --global-batch {global_batch}: "
                         f"a tensor is out of range ({e})") from None
    lay = plan.layout
    devices = lay.devices
    executed, model = _flops_ratio(plan)
    peak = p.system.device.peak(plan.dtype, "matrix")[0] * devices
    step = r.latency_s
    hfu = r.flops / (step * peak) if peak and step else 0.0
    mfu = hfu * model / executed if executed else 0.0
    tokens = global_batch * int(r.meta.get("seq") or 1)
    comm = r.records.busy_s(0, "comm")
    compute = r.records.busy_s(0, "compute")
    exposed = max(0.0, r.records.busy_s(0) - compute)  # communicating, not computing
    # pipeline bubble: the share of the step a stage's device has nothing to do (mean over
    # the stages of replica 0)
    stage_devs = [s * lay.tp for s in range(lay.pp)]
    bubble = 0.0 if lay.pp == 1 or not step else max(0.0, sum(
        1.0 - r.records.busy_s(d) / step for d in stage_devs) / lay.pp)
    per_replica = plan.replica_batches()[0]
    steps = per_replica // plan.micro_batch if lay.pp == 1 and plan.micro_batch and \
        plan.micro_batch < per_replica else 1
    metrics = {
        "workload": workload, "arch": p.system.name, "devices": devices,
        "nodes": p.system.nodes, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep,
        "zero": plan.zero, "sequence_parallel": plan.sequence_parallel,
        "bucket_mb": (plan.bucket_bytes or 0.0) / 1e6, "attention": plan.attention,
        "global_batch": global_batch,
        "micro_batch": micro_batch or global_batch // lay.dp // lay.microbatches,
        "accumulation_steps": steps, "seq": r.meta.get("seq"), "dtype": plan.dtype,
        "recompute": recompute,
        "step_time_s": step, "tokens_per_s": tokens / step if step else 0.0,
        "samples_per_s": global_batch / step if step else 0.0,
        "mfu": mfu, "hfu": hfu, "bubble_fraction": bubble,
        "schedule": plan.schedule if lay.pp > 1 else None,
        "virtual_stages": plan.virtual_stages if lay.pp > 1 else None,
        "pipeline_microbatches": lay.microbatches if lay.pp > 1 else None,
        "model_flops": r.flops * model / executed if executed else 0.0,
        "executed_flops": r.flops,
        "compute_time_s": compute, "comm_time_s": comm,
        "exposed_comm_s": exposed,
        "memory_per_device_bytes": dict(r.meta["footprint"]),
        "memory_capacity_bytes": r.memory_capacity_bytes,
        "energy_j": r.energy_j, "avg_power_w": r.avg_power_w, "cost_usd": r.cost.usd,
        "warnings": list(r.warnings),
    }
    return TrainResult(plan, r, metrics)


def _flops_ratio(plan: Plan) -> tuple[float, float]:
    """Executed and model FLOPs of one micro-batch's training graph (their ratio turns HFU
    into MFU: the model's own FLOPs exclude recomputed forwards)."""
    from dataclasses import replace

    from simulator.plan import _model

    lay = plan.layout
    per_replica = plan.replica_batches()[0]
    b = plan.micro_batch or max(1, per_replica // (lay.microbatches if lay.pp > 1 else 1))
    if lay.ep > 1:
        b = max(1, b // lay.ep)
    executed = _model(plan, b, lay.tp, lay.ep).flops().total
    if plan.recompute == "none":
        return executed, executed
    return executed, _model(replace(plan, recompute="none"), b, lay.tp, lay.ep).flops().total


def _nearest_hint(workload: str, system: System, plan: Plan, global_batch: int,
                  seq: int | None, micro_batch: int | None, dtype: str | None) -> str:
    """'; nearest layouts of these devices that fit: ...' (or that none was found)."""
    from simulator.train_search import TrainLayout, nearest_fits

    lay = plan.layout
    asked = TrainLayout(lay.tp, lay.pp, lay.dp, plan.zero, plan.sequence_parallel, plan.recompute)
    try:
        near = nearest_fits(workload, system, asked, global_batch=global_batch, seq=seq,
                            micro_batch=micro_batch, dtype=dtype,
                            schedule=plan.schedule if lay.pp > 1 else None)
    except HwsimError:
        near = []
    if not near:
        return (f". No layout of the {system.count} devices near this one fits (tried the "
                "closest 40); more devices or a smaller model")
    return (f". Nearest layouts of the {system.count} devices that fit: "
            + "; ".join(n.describe() for n in near))


@dataclass(frozen=True)
class SearchResult:
    """Layouts that fit, fastest first, and those that did not with the reason."""

    fits: list[TrainResult]
    refused: list[tuple[dict[str, Any], str]]
    evaluated: int
    screened: list[tuple[dict[str, Any], float]] = field(default_factory=list)


def search(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
           micro_batch: int | None = None, nodes: int | None = None, dtype: str | None = None,
           recompute: str = "none", top: int = 5, schedule: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Every layout of the system's devices (tp a power of two within a node that splits the
    model, pp up to the layers, dp the rest, ZeRO 0-3, sequence parallelism on or off) that
    fits, fastest first: memory is screened first (closed form, then the real footprint),
    step times on fewer micro-batches extrapolated (:mod:`simulator.train_search`), and the
    ``top`` fastest are run in full."""
    from simulator.train_search import candidate_layouts, fits, screen_step_time

    system = train_system(arch, nodes)
    p = Predictor(system)
    cands = candidate_layouts(workload, system, global_batch, micro_batch,
                              recomputes=(recompute,))
    kw = dict(global_batch=global_batch, seq=seq, micro_batch=micro_batch, dtype=dtype)
    refused: list[tuple[dict[str, Any], str]] = []
    screened: list[tuple[dict[str, Any], float]] = []
    zero1: dict[tuple, float] = {}  # ZeRO-2 moves what ZeRO-1 moves: the same step time
    for i, lay in enumerate(cands):
        if progress is not None:
            progress(i, len(cands))
        same = (lay.tp, lay.pp, lay.dp, lay.sequence_parallel, lay.recompute)
        if lay.zero == 2 and same in zero1:  # and needs less memory, so it fits too
            screened.append((lay.to_dict(), zero1[same]))
            continue
        # the closed form refuses what cannot fit without building anything; the screening
        # runs (1F1B: pp micro-batches, the schedule's peak in flight) check the real footprint
        why = fits(workload, system, lay, schedule=schedule, build=schedule == "gpipe", **kw)
        if why is None:
            try:
                t = screen_step_time(train, p, workload, lay, schedule=schedule, **kw)
                screened.append((lay.to_dict(), t))
                if lay.zero == 1:
                    zero1[same] = t
                continue
            except CapacityError as e:
                why = "does not fit: " + str(e).split(" needs ", 1)[-1].split(";", 1)[0]
            except HwsimError as e:
                why = str(e)
        refused.append((lay.to_dict(), why))
    screened.sort(key=lambda x: (x[1], x[0]["tp"], x[0]["pp"], x[0]["zero"]))
    full: list[TrainResult] = []
    for lay, _ in screened[:top]:
        full.append(train(workload, system, global_batch=global_batch, seq=seq,
                          micro_batch=micro_batch, dtype=dtype, predictor=p,
                          schedule=schedule if lay["pp"] > 1 else None, **lay))
    full.sort(key=lambda r: (r.metrics["step_time_s"], r.metrics["tp"], r.metrics["zero"]))
    return SearchResult(full, refused, len(cands), screened)
