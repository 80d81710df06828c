"""``train()``: one training step of a layout, with the numbers training teams ask for.

Step time, tokens/s, model and hardware FLOP utilisation (MFU, HFU), memory per device by
part, communication time and how much of it is exposed (not hidden behind compute), energy
and cost, from one run of the prediction pipeline: tensor, data and expert parallelism,
ZeRO stages 1-3, sequence parallelism, pipeline parallelism with GPipe, 1F1B or interleaved
schedules over micro-batches (the bubble comes out of the event run), bucketed gradient
reduction overlapped with the backward pass, gradient accumulation, selective or full
recomputation, on N nodes joined by the system's fabric.

Large layouts run on the fast path by default: devices that do identical work are simulated
once (:mod:`workloads.transforms.fold`), each repeated block of layers is one pair of macro
ops (:mod:`simulator.engine.blocks`), and a pipeline of many micro-batches (or a long
gradient accumulation) is simulated on three short ones: past the warm-up each micro-batch
adds the same events, so every additive number (step time, FLOPs, energy, busy time) grows
by the same amount; the three runs check that it does before extrapolating, and the step is
simulated whole when they do not (``simulated_repeats`` in the metrics says which).
``exact=True`` simulates every device, op and micro-batch; ``extrapolate=False`` every
micro-batch (a timeline that shows them all).
A layout that does not fit raises a CapacityError that lists the nearest layouts of the same
devices that do (:mod:`simulator.train_search`; the search itself: :mod:`simulator.layout_search`).

>>> r = train("gpt2", "dgx-a100", global_batch=16, micro_batch=4, seq=256, tp=1, dp=4)
>>> r.metrics["accumulation_steps"], 0 < r.metrics["mfu"] < 1
(1, True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.errors import CapacityError, HwsimError
from simulator.gc_pause import gc_paused
from simulator.plan import Plan, make_plan, with_repeats
from simulator.predict import Predictor
from simulator.results.result import Result, finite_json

__all__ = ["TrainResult", "train", "train_system", "MAX_DEVICES"]

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


# building and running a large step allocates millions of small objects that live until
# the step ends: the collector's passes were a fifth of the run time (GPT-3 175B on 1,024
# A100s: 1.05 s -> 0.84 s)
@gc_paused()
def train(workload: str, arch: str | System, *, global_batch: int, seq: int | None = None,
          micro_batch: int | None = None, nodes: int | None = None, tp: int | None = None,
          pp: int = 1, dp: int | None = None, ep: int = 1, zero: int = 0,
          dtype: str | None = None, recompute: str = "none", schedule: str | None = None,
          virtual_stages: int | None = None, sequence_parallel: bool = False,
          predictor: Predictor | None = None, exact: bool = False,
          bucket_mb: float | None = 25.0, attention: str = "flash",
          extrapolate: bool = True, screen: bool = False,
          fuse_projections: bool = True) -> TrainResult:
    """Simulate one training step (``global_batch`` samples) of ``workload`` on ``arch``.

    ``exact``: every device, op and micro-batch simulated (no fast path). ``extrapolate``
    (default): a long pipeline or accumulation simulated as three short ones a period apart
    and its checked steady state extrapolated (``metrics["simulated_repeats"]``).
    ``screen``: for ranking only (``--search``): every repeated block collapsed, runs one
    micro-batch apart (within 0.4% of the default on GPT-3 175B layouts; not ZeRO-3).

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
    if micro_batch is None and isinstance(pp, int) and pp > 1:
        # a pipeline's micro-batches are one sample each unless asked otherwise: what the
        # layout search and the nearest-layout hints assume (a whole replica batch in one
        # micro-batch would leave the pipeline one long bubble)
        micro_batch = 1
    system = train_system(arch, nodes)
    p = predictor or Predictor(system)
    plan = make_plan(workload, p.system, phase="train", batch=global_batch, seq=seq, tp=tp,
                     pp=pp, dp=dp, ep=ep, dtype=dtype, recompute=recompute,
                     micro_batch=micro_batch, zero=zero, sequence_parallel=sequence_parallel,
                     schedule=schedule or ("interleaved" if virtual_stages else "1f1b"),
                     virtual_stages=virtual_stages,
                     bucket_bytes=None if bucket_mb is None else bucket_mb * 1e6,
                     attention=attention, fuse_projections=fuse_projections)
    if not exact:
        # collapsing every block misplaces ZeRO-3's per-layer weight gathers when they share
        # ports with the layers' tensor-parallel collectives (30-42% off on GPT-3 175B):
        # those keep the normal fast path even when ranking
        plan = replace(plan, fast=True, screen=screen and plan.zero < 3)
    done: dict[int, Result] = {}
    for n, counts in (_steady_state_runs(plan, quick=screen) if extrapolate and not exact
                      else ()):
        if sum(done) + sum(k for k in counts if k not in done) >= n:
            continue  # with what has run already, more than the step itself
        try:
            for k in counts:
                if k not in done:
                    done[k] = _run(p, with_repeats(plan, k), workload, global_batch, seq,
                                   micro_batch, dtype)
        except CapacityError:
            if screen:  # ranking only: the reason is enough
                raise
            break  # the full plan raises it, naming its own micro-batch count
        results = [done[k] for k in counts]
        # the footprint must have stopped growing with the count (1F1B: pp in flight)
        if any(r.meta["footprint"] != results[0].meta["footprint"] for r in results):
            continue
        full = _extrapolate([_raw(plan, r) for r in results], counts, n)
        if full is not None:
            r = results[-1]
            metrics = _metrics(workload, p, plan, r, full, global_batch, micro_batch, recompute)
            metrics["simulated_repeats"] = list(counts)
            return TrainResult(plan, r, metrics)
    r = _run(p, plan, workload, global_batch, seq, micro_batch, dtype)
    metrics = _metrics(workload, p, plan, r, _raw(plan, r), global_batch, micro_batch, recompute)
    metrics["simulated_repeats"] = None
    return TrainResult(plan, r, metrics)


#: How far an extrapolated total may be off, as a share of it, if the change between the
#: two increments the short runs show (a drift not yet settled) went on for every period
#: left: 0.01%. A periodic steady state has no such change and is extrapolated exactly;
#: Megatron's 1T layout (64 stages) drifts by 0.5 ms in 22.4 s per period (<= 0.008%).
STEADY_RTOL = 1e-4
#: The stages' summed busy time (the bubble fraction) settles later: after the step time is
#: periodic, the overlap of pipeline transfers still changes one stage per micro-batch (on
#: GPT-3 175B at pp 64 for another ~pp micro-batches, by 0.05% of a micro-batch's increment).
#: It is held to 0.1% of its increment, which moves the bubble fraction by under 0.1 point.
BUBBLE_RTOL = 1e-3


def _steady_state_runs(plan: Plan, quick: bool = False
                       ) -> list[tuple[int, tuple[int, int, int]]]:
    """(the plan's repeat count, three smaller counts to simulate), to try in turn, where a
    step is a warm-up, a periodic steady state and a drain (the caller stops trying when the
    runs would cost more than the full one).

    A 1F1B pipeline is in its steady state once every stage holds a micro-batch (``pp`` of
    them; each more adds one forward and one backward on the bottleneck stage); interleaved
    1F1B repeats in groups of ``pp`` once its warm-up (``2 (pp - 1) + (v - 1) pp`` chunk
    passes on the first stage) no longer covers every micro-batch; gradient accumulation
    without a pipeline repeats from the first step. GPipe is always simulated whole: it
    keeps every micro-batch's activations, so its footprint grows with the count.

    The three counts are a period apart, and the third run checks the steady state. The
    period of a pipeline is ``pp`` micro-batches: on GPT-3 175B over 64 uneven stages
    (96 layers) one micro-batch in every 64 adds 38.3 ms and the others 42.3 ms, as transfers
    in opposite directions queue on a NIC in one order or the other, which runs one
    micro-batch apart cannot see. ``quick`` (ranking in ``--search``) steps by one micro-batch
    anyway, within 0.4% of the full run there. Later starts (a longer warm-up) and double
    steps are tried too, aligned so that the full count is a whole number of steps."""
    lay = plan.layout
    per = plan.replica_batches()
    if len(set(per)) != 1:
        return []
    if lay.pp > 1:
        n = lay.microbatches
        if per[0] % n or plan.schedule == "gpipe":  # GPipe holds every micro-batch
            return []
        n0, d = lay.pp, 1 if quick else lay.pp
        if plan.schedule == "interleaved":  # past Megatron's warm-up, in groups of pp
            v = plan.virtual_stages
            d = lay.pp
            n0 = d * math.ceil(math.ceil((2 * (lay.pp - 1) + (v - 1) * lay.pp + 1) / v) / d)
    else:
        mb = plan.micro_batch
        if not mb or mb >= per[0] or per[0] % mb:
            return []
        n, n0, d = per[0] // mb, 1, 1
    out = []
    # later starts for a longer warm-up; steps of two for schedules that repeat every other
    # micro-batch (max-plus cycles); runs are shared between tries, cheapest first
    for start in range(n0, n0 + 4 * d):
        for step in (d, 2 * d):
            if (n - start) % step == 0:
                counts = (start, start + step, start + 2 * step)
                if counts[2] < n:
                    out.append((n, counts))
    out.sort(key=lambda t: (t[1][2], t[1]))
    return out
    return out


def _extrapolate(raws: list[dict[str, float]], counts: tuple[int, int, int], n: int
                 ) -> dict[str, float] | None:
    """Each additive quantity at ``n`` repeats from its values at ``counts`` (equally
    spaced), if every one grows by the same amount per step in both intervals (within
    :data:`STEADY_RTOL` of the total); else None."""
    a, b, c = raws
    steps = (n - counts[2]) / (counts[2] - counts[1])
    out = {}
    for k in c:
        d1, d2 = b[k] - a[k], c[k] - b[k]
        out[k] = c[k] + steps * d2
        drift = abs(d2 - d1)
        if k == "stages_busy":
            ok = drift <= BUBBLE_RTOL * abs(d2)
        else:  # the error if the drift went on: sum over the periods left of 1, 2, ... drifts
            ok = drift * steps * (steps + 1) / 2 <= STEADY_RTOL * abs(out[k])
        if not ok and drift > 1e-15 * max(abs(c[k]), 1e-30):
            return None
    return out


def _run(p: Predictor, plan: Plan, workload: str, global_batch: int, seq: int | None,
         micro_batch: int | None, dtype: str | None) -> Result:
    """One run of the prediction pipeline, with the training-specific error messages."""
    try:
        return p.run(plan)
    except CapacityError as e:
        raise CapacityError(str(e) + _nearest_hint(workload, p.system, plan, global_batch,
                                                   seq, micro_batch, dtype)) from None
    except ValueError as e:  # an op shape out of range (e.g. seq**2 scores beyond 2**53)
        raise HwsimError(f"{workload} with --seq {seq} and --global-batch {global_batch}: "
                         f"a tensor is out of range ({e})") from None


def _raw(plan: Plan, r: Result) -> dict[str, float]:
    """The additive quantities of one run that the metrics derive from."""
    lay = plan.layout
    raw = {"step": r.latency_s, "flops": r.flops, "energy": r.energy_j,
           "busy0": r.records.busy_s(0), "comm": r.records.busy_s(0, "comm"),
           "compute": r.records.busy_s(0, "compute"),
           "usd": r.cost.usd if r.cost.usd == r.cost.usd and r.cost.usd is not None else 0.0}
    # the bubble needs the stages' busy time summed (their mean), not each one's
    raw["stages_busy"] = sum(r.records.busy_s(s * lay.tp) for s in range(lay.pp)) \
        if lay.pp > 1 else 0.0
    return raw


def _metrics(workload: str, p: Predictor, plan: Plan, r: Result, raw: dict[str, float],
             global_batch: int, micro_batch: int | None, recompute: str) -> dict[str, Any]:
    """The step's metrics from the additive quantities of its run (or their extrapolation)
    and the run's footprint and warnings."""
    lay = plan.layout
    devices = lay.devices
    executed, model = _flops_ratio(plan)
    peak = p.system.device.peak(plan.dtype, "matrix")[0] * devices
    step = raw["step"]
    hfu = raw["flops"] / (step * peak) if peak and step else 0.0
    mfu = hfu * model / executed if executed else 0.0
    tokens = global_batch * int(r.meta.get("seq") or 1)
    exposed = max(0.0, raw["busy0"] - raw["compute"])  # communicating, not computing
    # pipeline bubble: the share of the step a stage's device has nothing to do (mean over
    # the stages of replica 0)
    bubble = 0.0 if lay.pp == 1 or not step else max(
        0.0, 1.0 - raw["stages_busy"] / (step * lay.pp))
    per_replica = plan.replica_batches()[0]
    steps = per_replica // plan.micro_batch if lay.pp == 1 and plan.micro_batch and \
        plan.micro_batch < per_replica else 1
    usd = r.cost.usd if r.cost.usd is None or r.cost.usd != r.cost.usd else raw["usd"]
    return {
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
        "model_flops": raw["flops"] * model / executed if executed else 0.0,
        "executed_flops": raw["flops"],
        "compute_time_s": raw["compute"], "comm_time_s": raw["comm"],
        "exposed_comm_s": exposed,
        "memory_per_device_bytes": dict(r.meta["footprint"]),
        "memory_capacity_bytes": r.memory_capacity_bytes,
        "energy_j": raw["energy"], "avg_power_w": raw["energy"] / step if step else 0.0,
        "cost_usd": usd,
        "warnings": list(r.warnings),
    }


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
