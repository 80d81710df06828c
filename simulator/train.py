"""``train()``: one training step of a layout, with the numbers training teams ask for.

Step time, tokens/s, model and hardware FLOP utilisation (MFU, HFU), memory per device by
part, communication time and how much of it is exposed (not hidden behind compute), energy
and cost, from one run of the prediction pipeline: tensor, data and expert parallelism,
ZeRO stages 1-2, sequence parallelism, pipeline parallelism with GPipe or 1F1B schedules over
micro-batches (the bubble comes out of the event run), gradient accumulation, full
recomputation.

Interleaved pipeline schedules, selective recomputation and ZeRO-3 are not modelled yet:
asking for them is a clear error.

>>> r = train("gpt2", "dgx-a100", global_batch=16, micro_batch=4, seq=256, tp=1, dp=4)
>>> r.metrics["accumulation_steps"], 0 < r.metrics["mfu"] < 1
(1, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.errors import HwsimError
from simulator.plan import Plan, make_plan
from simulator.predict import Predictor
from simulator.results.result import Result, finite_json

__all__ = ["TrainResult", "train", "train_system", "search", "SearchResult"]


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
    per = base.devices_per_node or base.count
    return load_arch(arch, (*overrides, f"count={per * nodes}"))


def train(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
          micro_batch: int | None = None, nodes: int | None = None, tp: int | None = None,
          pp: int = 1, dp: int | None = None, ep: int = 1, zero: int = 0,
          dtype: str | None = None, recompute: str = "none", schedule: str | None = None,
          virtual_stages: int | None = None, sequence_parallel: bool = False,
          predictor: Predictor | None = None) -> TrainResult:
    """Simulate one training step (``global_batch`` samples) of ``workload`` on ``arch``.

    Raises
    ------
    HwsimError
        A layout that does not fit the devices or the model, an option not modelled yet, a
        model that does not fit in memory (CapacityError, with parts and what would help).
    """
    if recompute == "selective":
        raise HwsimError("--recompute selective is not modelled yet (the fused attention keeps "
                         "no score matrices, so it would equal none); use none or full")
    if virtual_stages is not None or schedule == "interleaved":
        raise HwsimError("interleaved pipeline schedules (--virtual-stages) are not modelled "
                         "yet; use --schedule gpipe or 1f1b")
    if schedule is not None and pp == 1:
        raise HwsimError("--schedule applies to pipeline parallelism (--pp > 1)")
    system = train_system(arch, nodes)
    p = predictor or Predictor(system)
    plan = make_plan(workload, p.system, phase="train", batch=global_batch, seq=seq, tp=tp,
                     pp=pp, dp=dp, ep=ep, dtype=dtype, recompute=recompute,
                     micro_batch=micro_batch, zero=zero, sequence_parallel=sequence_parallel,
                     schedule=schedule or "1f1b")
    r = p.run(plan)
    lay = plan.layout
    devices = lay.devices
    graph = plan.build()
    executed = graph.flops().total
    model = executed
    if recompute != "none":  # the model's own FLOPs exclude the recomputed forward
        from dataclasses import replace

        model = replace(plan, recompute="none").build().flops().total
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
    steps = int(graph.meta.get("accumulation_steps", 1))
    metrics = {
        "workload": workload, "arch": p.system.name, "devices": devices,
        "nodes": p.system.nodes, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep,
        "zero": plan.zero, "sequence_parallel": plan.sequence_parallel,
        "global_batch": global_batch,
        "micro_batch": micro_batch or global_batch // lay.dp // lay.microbatches,
        "accumulation_steps": steps, "seq": r.meta.get("seq"), "dtype": plan.dtype,
        "recompute": recompute,
        "step_time_s": step, "tokens_per_s": tokens / step if step else 0.0,
        "samples_per_s": global_batch / step if step else 0.0,
        "mfu": mfu, "hfu": hfu, "bubble_fraction": bubble,
        "schedule": plan.schedule if lay.pp > 1 else None,
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


@dataclass(frozen=True)
class SearchResult:
    """Layouts that fit, fastest first, and those that did not with the reason."""

    fits: list[TrainResult]
    refused: list[tuple[dict[str, Any], str]]
    evaluated: int


def search(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
           micro_batch: int | None = None, nodes: int | None = None, dtype: str | None = None,
           recompute: str = "none", top: int = 5) -> SearchResult:
    """Every layout of the system's devices (tp a power of two within a node that divides the
    model, dp the rest, ZeRO 0-2, sequence parallelism on or off) that fits; fastest first."""
    from simulator.errors import CapacityError
    from simulator.plan import _tp_degrees

    system = train_system(arch, nodes)
    p = Predictor(system)
    n = system.count
    per_node = min(system.devices_per_node or n, n)
    tps = [t for t in _tp_degrees(workload, per_node, None) if t & (t - 1) == 0 and n % t == 0]
    fits: list[TrainResult] = []
    refused: list[tuple[dict[str, Any], str]] = []
    evaluated = 0
    for tp in sorted(tps):
        dp = n // tp
        for zero in ((0, 1, 2) if dp > 1 else (0,)):
            for sp in ((False, True) if tp > 1 else (False,)):
                layout = {"tp": tp, "dp": dp, "zero": zero, "sequence_parallel": sp}
                evaluated += 1
                try:
                    fits.append(train(workload, system, global_batch=global_batch, seq=seq,
                                      micro_batch=micro_batch, tp=tp, dp=dp, zero=zero,
                                      dtype=dtype, recompute=recompute, sequence_parallel=sp,
                                      predictor=p))
                except CapacityError as e:
                    refused.append((layout, "does not fit: " + str(e).split(" needs ", 1)[-1]
                                    .split(";", 1)[0]))
                except HwsimError as e:
                    refused.append((layout, str(e)))
    fits.sort(key=lambda r: (r.metrics["step_time_s"], r.metrics["tp"], r.metrics["zero"]))
    return SearchResult(fits[:top], refused, evaluated)
