"""``serve()``: simulate a serving fleet and summarise it (latency percentiles, throughput,
goodput, KV cache, power, energy per token, dollars).

>>> from simulator.serve import serve, ServeOptions
>>> r = serve("gpt2", "h100-sxm", ServeOptions(rate=20.0, requests=50, prompt_len=128,
...           output_len=32, seed=1))
>>> r.completed, r.metrics["ttft_s"]["p50"] > 0
(50, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.cost.dollars import system_hourly_rate
from simulator.errors import HwsimError
from simulator.power import NO_LIMIT_W, power_model, sustained_power
from simulator.predict import Predictor
from simulator.results.result import finite_json
from simulator.serve.iteration import IterationModel
from simulator.serve.requests import MAX_CV, Lengths, Request, gamma, load_trace, offline, poisson
from simulator.serve.scheduler import SchedulerConfig
from simulator.serve.sim import FleetConfig, SimOutput, run_fleet

__all__ = ["ServeOptions", "ServeResult", "serve", "kv_blocks_for", "make_requests"]

_PCTS = (50, 90, 99)
DEFAULT_REQUESTS = 1000  # generated loads; a trace is read whole unless --requests caps it


@dataclass(frozen=True)
class ServeOptions:
    """Load, fleet and scheduler settings of one serving simulation."""

    # load: exactly one of rate / offline / trace / users
    rate: float | None = None
    offline: bool = False
    trace: str | None = None
    users: int | None = None
    burstiness: float = 1.0          # coefficient of variation of inter-arrival times
    requests: int | None = None      # None: 1,000 generated requests, or the whole trace
    prompt_len: int = 512
    output_len: int = 128
    length_cv: float = 0.0           # 0: fixed lengths; else log-normal with this CV
    think_s: float = 0.0
    seed: int = 0
    # fleet
    tp: int = 1
    replicas: int = 1
    router: str = "least_outstanding"
    dtype: str | None = None
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    fuse_projections: bool = True    # one QKV and one gate/up GEMM (vLLM); False: unfused
    # scheduler
    max_batch: int = 256
    max_batched_tokens: int = 8192
    chunked_prefill: bool = False
    block_size: int = 16
    preemption: str = "recompute"
    gpu_memory_utilization: float = 0.9
    swap_gib: float = 4.0
    # service-level objectives for goodput (p99 targets are checked by `plan`)
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    # power limit per device, W (None: the spec's power.limit or TDP; simulator.power)
    power_limit_w: float | None = None


def _lengths(mean: int, cv: float, what: str) -> Lengths:
    if isinstance(mean, bool) or not isinstance(mean, int) or mean < 1:
        raise HwsimError(f"--{what} must be a positive integer, got {mean!r}")
    if isinstance(cv, bool) or not isinstance(cv, (int, float)) or not math.isfinite(cv) \
            or not 0 <= cv <= MAX_CV:
        raise HwsimError(f"--length-cv must be from 0 to {MAX_CV:g}, got {cv!r}")
    return Lengths.fixed(mean) if cv == 0 else Lengths.lognormal(mean, cv, 1, 16 * mean)


def make_requests(o: ServeOptions) -> tuple[list[Request] | None, list[Request]]:
    """(open-loop requests or None, closed-loop pool) from the options."""
    modes = [m for m, on in (("--rate", o.rate is not None), ("--offline", o.offline),
                             ("--trace", o.trace is not None), ("--users", o.users is not None))
             if on]
    if len(modes) != 1:
        raise HwsimError("give exactly one load: --rate R, --offline, --trace FILE or --users N"
                         + (f" (got {', '.join(modes)})" if modes else ""))
    for name, v, lo in (("requests", o.requests, 1), ("seed", o.seed, 0)):
        if v is None and name == "requests":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise HwsimError(f"--{name} must be an integer >= {lo}, got {v!r}")
    if isinstance(o.think_s, bool) or not isinstance(o.think_s, (int, float)) \
            or not math.isfinite(o.think_s) or o.think_s < 0:
        raise HwsimError(f"--think must be a finite number of seconds >= 0, got {o.think_s!r}")
    if o.trace is not None:  # the whole trace unless --requests caps it
        return load_trace(o.trace, o.requests), []
    n = o.requests if o.requests is not None else DEFAULT_REQUESTS
    prompt = _lengths(o.prompt_len, o.length_cv, "prompt-len")
    output = _lengths(o.output_len, o.length_cv, "output-len")
    if o.offline:
        return offline(n, prompt, output, o.seed), []
    if o.users is not None:
        return None, offline(n, prompt, output, o.seed)
    if o.burstiness != 1.0:
        return gamma(o.rate, n, prompt, output, o.burstiness, o.seed), []
    return poisson(o.rate, n, prompt, output, o.seed), []


def kv_blocks_for(model: IterationModel, system: System, o: ServeOptions) -> int:
    """KV blocks one replica's cache holds: device memory x utilisation, less the weights and
    the activations of the largest iteration, over the bytes of one block.

    Raises
    ------
    CapacityError-like HwsimError
        If the weights and activations alone do not fit.
    """
    u = o.gpu_memory_utilization
    if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
        raise HwsimError(f"--gpu-memory-utilization must be in (0, 1], got "
                         f"{o.gpu_memory_utilization!r}")
    cap = system.device.dram.capacity_bytes * o.gpu_memory_utilization
    weights = model.weights_bytes()
    act = model.activation_bytes(min(o.max_batched_tokens, model.max_tokens))
    free = cap - weights - act
    per_block = model.kv_bytes_per_token() * o.block_size
    blocks = int(free // per_block) if free > 0 else 0
    if blocks < 1:
        from simulator.units import format_quantity as fq

        raise HwsimError(f"{model.workload} on {system.device.name} with tensor-parallel "
                         f"{o.tp}: weights {fq(weights, 'B')} + activations {fq(act, 'B')} "
                         f"leave no room for a KV cache in {fq(cap, 'B')} "
                         f"({o.gpu_memory_utilization:.0%} of {system.device.dram.name}); "
                         "raise --tp or use --weight-dtype int8/int4")
    return blocks


def _summary(x: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    a = np.asarray(x, dtype=float)
    if a.size == 0:
        return {"mean": None, **{f"p{p}": None for p in _PCTS}, "max": None}
    return {"mean": float(a.mean()), **{f"p{p}": float(np.percentile(a, p)) for p in _PCTS},
            "max": float(a.max())}


@dataclass(frozen=True)
class ServeResult:
    """Summary of a serving simulation; ``metrics`` holds the JSON contract."""

    workload: str
    arch: str
    options: ServeOptions
    completed: int
    metrics: Mapping[str, Any]
    sim: SimOutput = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "arch": self.arch, "completed": self.completed,
                **self.metrics}

    def to_json(self) -> str:
        return json.dumps(finite_json(self.to_dict()), allow_nan=False, sort_keys=False)

    def to_chrome_trace(self) -> dict[str, Any]:
        """One track per replica, one event per iteration (tokens, prefills, decodes)."""
        events: list[dict[str, Any]] = []
        for i, log in enumerate(self.sim.replicas):
            events.append({"name": "process_name", "ph": "M", "pid": i, "tid": 0,
                           "args": {"name": f"replica {i}"}})
            for k in range(log.iterations):
                events.append({"name": f"{log.n_prefill[k]}P+{log.n_decode[k]}D", "ph": "X",
                               "cat": "iteration", "pid": i, "tid": 0,
                               "ts": log.start[k] * 1e6,
                               "dur": max((log.end[k] - log.start[k]) * 1e6, 1e-3),
                               "args": {"tokens": log.tokens[k], "kv_blocks": log.kv_used[k]}})
        return {"traceEvents": events, "displayTimeUnit": "ms",
                "otherData": {"workload": self.workload, "arch": self.arch}}



def serve(workload: str, arch: str | System, options: ServeOptions | None = None, *,
          predictor: Predictor | None = None, model: IterationModel | None = None,
          progress: Callable[[int, int], None] | None = None, **kw: Any) -> ServeResult:
    """Simulate serving ``workload`` on replicas of ``options.tp`` devices of ``arch``.

    Keyword arguments are :class:`ServeOptions` fields. Pass a ``predictor`` (and a
    ``model`` from an earlier run with the same tp and precision) to reuse their caches across
    calls, as ``hwsim plan`` does.

    Raises
    ------
    HwsimError
        Bad options or load, a model that does not fit, a request that never can.
    """
    o = options or ServeOptions(**kw)
    system = arch if isinstance(arch, System) else load_arch(arch)
    for name in ("tp", "replicas"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HwsimError(f"--{name} must be a positive integer, got {v!r}")
    for name in ("slo_ttft_s", "slo_tpot_s"):  # None: no objective
        v = getattr(o, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                              not math.isfinite(v) or v <= 0):
            raise HwsimError(f"--{name[:-2].replace('_', '-')} must be a positive number of "
                             f"seconds, got {v!r}")
    if o.tp * o.replicas > system.count and system.count > 1:
        raise HwsimError(f"--tp {o.tp} x --replicas {o.replicas} needs {o.tp * o.replicas} "
                         f"devices but {system.name} has {system.count}")
    if o.tp > system.count:
        raise HwsimError(f"--tp {o.tp} exceeds the {system.count} device(s) of {system.name}")
    requests, pool = make_requests(o)
    p = predictor or Predictor(system, power_limit_w=o.power_limit_w)
    cfg = SchedulerConfig(max_batch=o.max_batch, max_batched_tokens=o.max_batched_tokens,
                          chunked_prefill=o.chunked_prefill, block_size=o.block_size,
                          preemption=o.preemption)
    cfg.check()
    m = model or IterationModel(p, workload, tp=o.tp, dtype=o.dtype,
                                weight_dtype=o.weight_dtype, kv_dtype=o.kv_dtype,
                                max_tokens=o.max_batched_tokens,
                                fuse_projections=o.fuse_projections)
    if m.energy_model is None:  # full-clock energies for the sustained-power limiter
        m.energy_model = _full_clock(m)
    blocks = kv_blocks_for(m, system, o)
    if o.preemption == "swap" and (isinstance(o.swap_gib, bool) or
                                   not isinstance(o.swap_gib, (int, float)) or
                                   not math.isfinite(o.swap_gib) or o.swap_gib < 0):
        raise HwsimError(f"swap_gib must be a finite number of GiB >= 0, got {o.swap_gib!r}")
    swap_blocks = int(o.swap_gib * 2**30 // (m.kv_bytes_per_token() * o.block_size)) \
        if o.preemption == "swap" else 0
    cfg = SchedulerConfig(max_batch=o.max_batch, max_batched_tokens=o.max_batched_tokens,
                          chunked_prefill=o.chunked_prefill, block_size=o.block_size,
                          preemption=o.preemption, swap_blocks=swap_blocks)
    host_bw = system.host_link.bandwidth_Bps if system.host_link else 0.0
    out = run_fleet(requests, m, blocks, FleetConfig(o.replicas, o.router, cfg),
                    swap_bandwidth=host_bw, closed_users=o.users, closed_pool=pool,
                    think_s=o.think_s, progress=progress)
    return ServeResult(workload, system.name, o, len(out.finished),
                       _metrics(out, m, system, o), out)


def _full_clock(m: IterationModel) -> IterationModel:
    """``m`` on a predictor whose power limit never binds: each op's full-clock energy, which
    the sustained-power limiter (simulator.power.governor) averages over the run."""
    p = m.predictor
    twin = Predictor(p.spec_system, p.profile, force_calibration=p.profile is not None,
                     dataflow=p.options.dataflow, schedule=p.options.schedule,
                     power_limit_w=NO_LIMIT_W, timing=p.timing)
    return IterationModel(twin, m.workload, tp=m.tp, dtype=m.dtype,
                          weight_dtype=m.weight_dtype, kv_dtype=m.kv_dtype,
                          max_tokens=m.max_tokens, fuse_projections=m.fuse_projections)


def _metrics(out: SimOutput, m: IterationModel, system: System, o: ServeOptions
             ) -> dict[str, Any]:
    fin = out.finished
    ttft = [s.first_token_s - s.req.arrival_s for s in fin]
    e2e = [s.finish_s - s.req.arrival_s for s in fin]
    tpot = [(s.finish_s - s.first_token_s) / (s.req.output_tokens - 1)
            for s in fin if s.req.output_tokens > 1]
    span = max(out.end_s - out.start_s, 1e-12)
    out_tokens = sum(s.req.output_tokens for s in fin)
    in_tokens = sum(s.req.prompt_tokens for s in fin)
    good = sum(1 for s, t, x in zip(fin, ttft, e2e, strict=True)
               if (o.slo_ttft_s is None or t <= o.slo_ttft_s) and
               (o.slo_tpot_s is None or s.req.output_tokens <= 1 or
                (x - t) / (s.req.output_tokens - 1) <= o.slo_tpot_s))
    dev = system.device
    # the power model of simulator.power: idle power all the time, the busy floor while an
    # iteration runs, the iterations' dynamic energy (per FLOP, per byte, on-chip path) at
    # full clock; the limiter then holds the run's average at the power limit
    # (simulator.power.governor: it regulates the average, not each kernel)
    pm = power_model(dev, o.power_limit_w)
    static_w = pm.idle_w
    devices = o.tp * o.replicas
    busy = sum(r.busy_s for r in out.replicas)
    sus = sustained_power(pm, idle_j=devices * static_w * span,
                          floor_j=o.tp * pm.floor_above_idle_w * busy,
                          dynamic_j=sum(r.dynamic_j for r in out.replicas), span_s=span,
                          devices=devices)
    idle_j, floor_j, dyn = sus.idle_j, sus.floor_j, sus.dynamic_j
    device_j = sus.energy_j
    device_w = device_j / span
    share = devices / system.count if system.count > 1 else 1.0
    span_w = max(pm.tdp_w - static_w, 1e-9)
    activity = min(1.0, max(0.0, (device_w / devices - static_w) / span_w))
    over_w = (system.overhead_idle_power_w + (system.overhead_power_w -
                                              system.overhead_idle_power_w) * activity) * share
    total_j = device_j + over_w * span
    hourly = system_hourly_rate(system)
    usd_per_hour = hourly * share if hourly else None
    if usd_per_hour is None:
        price = (system.pricing.price_usd * system.nodes if system.pricing and
                 system.pricing.price_usd else (dev.pricing.price_usd or 0) * system.count)
        life = (system.pricing.lifetime_s if system.pricing and system.pricing.price_usd
                else dev.pricing.lifetime_s)
        usd_per_hour = price * share / life * 3600 + total_j / span * 3600 / 3.6e6 * 0.10 * 1.3 \
            if price else None
    usd = usd_per_hour * span / 3600 if usd_per_hour else None
    kv_util = []
    for r in out.replicas:
        if r.iterations:
            w = np.diff(np.append(np.asarray(r.start), out.end_s))
            kv_util.append(float(np.average(np.asarray(r.kv_used) / r.kv_total, weights=w))
                           if w.sum() > 0 else 0.0)
    # Little's law check: time-average number in the system vs throughput x mean latency
    ev = sorted(out.in_system)
    t_prev, n, area = ev[0][0], 0, 0.0
    for t, d in ev:
        area += n * (t - t_prev)
        n += d
        t_prev = t
    return {
        "requests": len(fin), "duration_s": span,
        "requests_per_s": len(fin) / span,
        "output_tokens_per_s": out_tokens / span,
        "input_tokens_per_s": in_tokens / span,
        "goodput_requests_per_s": good / span,
        "slo": {"ttft_s": o.slo_ttft_s, "tpot_s": o.slo_tpot_s, "met_fraction": good / len(fin)},
        "ttft_s": _summary(ttft), "tpot_s": _summary(tpot), "itl_s": _summary(out.gaps),
        "e2e_s": _summary(e2e),
        "mean_in_system": area / span, "littles_law_rhs": len(fin) / span * float(np.mean(e2e)),
        "kv_cache": {"blocks_per_replica": out.replicas[0].kv_total,
                     "block_size": o.block_size,
                     "mean_utilization": float(np.mean(kv_util)) if kv_util else 0.0,
                     "peak_utilization": max(r.kv_peak / r.kv_total for r in out.replicas)},
        "preemptions": sum(r.preemptions for r in out.replicas),
        "swaps": sum(r.swaps for r in out.replicas),
        "iterations": sum(r.iterations for r in out.replicas),
        "mean_batch_tokens": float(np.mean(np.concatenate(
            [np.asarray(r.tokens) for r in out.replicas if r.iterations]))),
        "device_utilization": busy / (span * o.replicas),
        "devices": devices, "tp": o.tp, "replicas": o.replicas,
        "avg_device_power_w": device_w / devices,
        "avg_power_w": total_j / span,
        "energy_j": total_j, "energy_per_output_token_j": total_j / max(out_tokens, 1),
        "devices_energy_j": device_j,
        "device_energy_per_output_token_j": device_j / max(out_tokens, 1),
        "energy_breakdown": {"idle_j": idle_j, "active_floor_j": floor_j, "dynamic_j": dyn,
                             "system_j": over_w * span},
        "power_limit_w": pm.limit_w, "sustained_clock_scale": sus.clock_scale,
        "usd_per_hour": usd_per_hour, "cost_usd": usd,
        "usd_per_million_tokens": usd / out_tokens * 1e6 if usd and out_tokens else None,
        "dtype": m.dtype, "iteration_predictions": m.predictions,
    }
