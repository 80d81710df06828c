"""``plan()``: capacity planning for LLM serving - the cheapest fleets that meet latency SLOs.

The search space is parts (or systems) x tensor-parallel degree x precision x batch limit x
replica count. The work is ordered so that most of it is never simulated:

1. **Bounds per (part, tp, precision)**, from one :class:`IterationModel` (no simulation):

   - *memory*: the weights and the activations of the largest iteration must leave a KV cache
     (:func:`kv_blocks_for`) that holds the longest request of the load;
   - *TTFT*: a request's first token comes no sooner than its own prefill run alone, so the
     p99 of those alone-prefills is a lower bound of the TTFT p99 (order statistics are
     monotone);
   - *TPOT*: every decode step of a request costs at least a decode of batch 1 at the
     shortest prompt of the load, so that bounds every request's TPOT from below.

2. **Throughput bound per batch limit**: a replica spends on each request at least a prefill
   (the cheapest per prompt over the batch sizes the limits allow) plus (output - 1) decode
   tokens at the cheapest time per token (a decode batch as large as the batch limit and the KV
   cache allow, at the shortest prompt). The requests that meet both SLOs (all but the ~1% each
   p99 lets through) are done by the last arrival + the TTFT SLO + (longest output - 1) x the
   TPOT SLO, so ``replicas >= their work / that time``, taken 10% loose: the replica search
   starts there. On a long load this is the arrival rate x the work per request; on a short
   one it also counts the tail in which a fleet that cannot keep up drains its backlog (an
   overload smaller than about the TTFT SLO / the load's duration hides there: plan with
   enough requests).

3. **Branch and bound on cost**: configurations wait in a queue keyed by the cost of their
   smallest possible fleet (one replica, then, once the bounds above are computed for it, the
   throughput bound's replicas); whatever costs more than the ``top``-th cheapest passing
   fleet found so far cannot enter the ranking and is never looked at, so the bounds of
   expensive parts and degrees are not even computed.

4. **Replica search**: from the bound upward, ``N, N+1, N+3, N+7, ...`` until the SLOs hold,
   then bisection back (adding replicas only helps), so the smallest passing count is found in
   a logarithmic number of simulations; once one batch limit of a model has an answer, the
   others start from it (walking down while it passes). A configuration is given up when
   doubling the added replicas no longer brings it meaningfully closer (e.g. the TTFT p99 is
   set by long prompts, not queueing) or it would need more than ``max_devices``. With spread
   lengths (``length_cv``) the throughput bound, taken at the shortest request, is weak and
   the search does more of the work.

Simulations are :func:`serve` runs sharing one :class:`Predictor` per part and one
:class:`IterationModel` per (part, tp, precision) across replica counts and batch limits, and a
simulation whose whole fleet never held more requests than a batch limit stands for every
larger limit too (the limit never bound, so the run would be identical).

Costs (per hour of the fleet, at the simulated load):

- ``cloud``: the spec's cloud $/hour, per device; for a system spec (e.g. ``dgx-h100``) the
  fleet pays its share of a system, ``devices / devices per system`` (say 1.5 systems).
- ``tco``: purchase price over ``years`` (parts bought one by one; systems bought whole, so a
  fleet of 12 GPUs of ``dgx-h100`` buys 2 systems and leaves 4 GPUs idle), plus energy (the
  simulated average power, idle spare devices included, x PUE x $/kWh), plus hosting
  ($/kW-year of the provisioned TDP). A part's price and power are the accelerator's alone
  (no host server); a system's include its host.

``$/1M tokens`` is the fleet's $/hour over the output tokens the load offers per hour (its
arrival rate x mean output length: every fleet that meets the SLOs serves the same load);
energy per output token and average power are the simulated fleet's (devices, a system's host
share, and in TCO the idle devices of a system bought whole), without PUE.

>>> from simulator.serve import ServeOptions
>>> r = plan("gpt2", ["h100-sxm"], ServeOptions(rate=20.0, requests=60, prompt_len=128,
...          output_len=16), 0.5, 0.05, tps=[1], dtypes=["bf16"], max_batches=[64])
>>> r.feasible, r.fleets[0].replicas
(True, 1)
"""

from __future__ import annotations

import heapq
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.cost.dollars import system_hourly_rate
from simulator.errors import HwsimError, WorkloadError
from simulator.plan import auto_dtype
from simulator.predict import Predictor
from simulator.results.result import finite_json
from simulator.serve.api import ServeOptions, ServeResult, kv_blocks_for, make_requests, serve
from simulator.serve.iteration import Batch, IterationModel
from simulator.units import format_quantity as fq

__all__ = ["plan", "PlanResult", "Fleet", "NearMiss", "SearchStats", "fleet_system", "COST_MODES",
           "PART_MAX_TP", "HOSTING_USD_PER_KW_YEAR"]

COST_MODES = ("cloud", "tco")
#: A single part (a GPU spec) is assumed installed up to 8 to a server, joined by its own link
#: (NVLink, Infinity Fabric, PCIe): tensor parallelism up to 8 (HGX/OAM baseboards).
PART_MAX_TP = 8
#: Hosting (data-centre space, power delivery and cooling) per kW of provisioned TDP and year.
#: An estimate: US wholesale colocation is roughly $100-$200 per kW-month (CBRE and JLL data
#: centre market reports, 2023-2024); $125/kW-month = $1,500/kW-year. Override it.
HOSTING_USD_PER_KW_YEAR = 1500.0
HOURS_PER_YEAR = 8760.0
_PRECISIONS = ("fp8", "int8")  # tried besides the part's default when its matrix units run them
_GIVE_UP = 0.995  # a step that leaves the miss ratio above this fraction of the last one
# The throughput bound takes the cheapest time per token at power-of-two batch sizes; between
# them an iteration could be a little cheaper per token, so the bound is taken 10% loose.
_SLACK = 0.9
_PRUNED = {"memory": "pruned_memory", "ttft-bound": "pruned_ttft_bound",
           "tpot-bound": "pruned_tpot_bound"}


# -- results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fleet:
    """A fleet that meets the SLOs: ``replicas`` x ``tp`` devices of ``part``, and what it
    achieves and costs (``usd_per_hour`` splits into ``cost_breakdown``)."""

    part: str
    device: str
    tp: int
    dtype: str
    max_batch: int
    replicas: int
    devices: int
    hardware: str               # what is bought or rented, in words
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float | None
    tpot_p99_s: float | None
    output_tokens_per_s: float
    usd_per_hour: float
    usd_per_million_tokens: float
    energy_per_output_token_j: float
    avg_power_w: float
    provisioned_w: float        # TDP of what is bought or rented
    cost_breakdown: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NearMiss:
    """A candidate that misses, and why. ``replicas`` is None when no replica count can help
    (an analytical bound); ``miss`` is how far off it is (1.2: 20% over an SLO or capacity);
    ``usd_per_hour`` is that of the fleet tried (of one replica for a bound)."""

    part: str
    tp: int
    dtype: str
    max_batch: int | None
    replicas: int | None
    stage: str                  # memory | ttft-bound | tpot-bound | simulated | layout | price
    reason: str
    miss: float
    usd_per_hour: float | None = None
    ttft_p99_s: float | None = None
    tpot_p99_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchStats:
    """How much of the space the bounds removed and how much was simulated.

    ``configurations`` counts (part, tp, precision, batch limit) combinations, and splits into
    the ``pruned_*`` ones (memory, TTFT and TPOT bounds; a tp the model or the part cannot
    take; no price; ``pruned_cost``: the cheapest fleet they could make costs more than the
    ``top``-th found) and the ``searched`` ones. ``stopped_cost`` counts searches cut short
    when the next replica count could no longer beat the ranking; ``replicas_skipped`` sums
    the replica counts below each searched configuration's throughput bound; ``simulations``
    counts :func:`serve` runs and ``reused`` the runs taken from an identical one at another
    batch limit (one the fleet never reached)."""

    configurations: int = 0
    pruned_memory: int = 0
    pruned_ttft_bound: int = 0
    pruned_tpot_bound: int = 0
    pruned_layout: int = 0
    pruned_price: int = 0
    pruned_cost: int = 0
    searched: int = 0
    stopped_cost: int = 0
    replicas_skipped: int = 0
    simulations: int = 0
    reused: int = 0
    wall_s: float = 0.0

    @property
    def pruned_by_bound(self) -> int:
        return self.pruned_memory + self.pruned_ttft_bound + self.pruned_tpot_bound


@dataclass(frozen=True)
class PlanResult:
    """Ranked fleets that meet the SLOs (cheapest first), the near-misses (closest first) and
    the search statistics. ``to_json()`` is byte-identical for the same inputs (the wall time
    is left out unless asked for)."""

    workload: str
    load: Mapping[str, Any]
    slo: Mapping[str, float]
    cost: Mapping[str, Any]
    fleets: tuple[Fleet, ...]
    near_misses: tuple[NearMiss, ...]
    stats: SearchStats
    bounds: tuple[Mapping[str, Any], ...] = ()  # per (part, tp, precision): what the bounds say

    @property
    def feasible(self) -> bool:
        return bool(self.fleets)

    def to_dict(self, timing: bool = False) -> dict[str, Any]:
        stats = asdict(self.stats)
        stats["pruned_by_bound"] = self.stats.pruned_by_bound
        if not timing:
            stats.pop("wall_s")
        return {"workload": self.workload, "load": dict(self.load), "slo": dict(self.slo),
                "cost": dict(self.cost), "feasible": self.feasible,
                "fleets": [f.to_dict() for f in self.fleets],
                "near_misses": [m.to_dict() for m in self.near_misses], "search": stats,
                "bounds": [dict(b) for b in self.bounds]}

    def to_json(self, timing: bool = False) -> str:
        return json.dumps(finite_json(self.to_dict(timing)), allow_nan=False)



# -- validation ------------------------------------------------------------------------------
def _positive(name: str, v: Any, *, zero_ok: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (v < 0 if zero_ok else v <= 0):
        raise HwsimError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}, "
                         f"got {v!r}")
    return float(v)


def _ints(name: str, vs: Iterable[Any] | None) -> tuple[int, ...] | None:
    if vs is None:
        return None
    out = tuple(vs) if not isinstance(vs, (str, bytes)) else (vs,)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HwsimError(f"{name} must be positive integers, got {v!r}")
    if not out:
        raise HwsimError(f"{name}: give at least one value")
    return tuple(dict.fromkeys(out))


# -- parts -----------------------------------------------------------------------------------
def fleet_system(arch: str | System, devices: int) -> System:
    """The system a fleet of ``devices`` devices of ``arch`` is simulated on: a single part
    ``devices`` times over, joined by its own link through a switch, or enough whole copies of
    a system (a node each). Pass it to :func:`serve` to re-run a planned fleet.

    >>> fleet_system("h100-sxm", 4).count, fleet_system("dgx-h100", 12).count
    (4, 16)
    """
    system = arch if isinstance(arch, System) else load_arch(arch)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise HwsimError(f"devices must be a positive integer, got {devices!r}")
    if system.count > 1:
        per = system.devices_per_node or system.count
        return replace(system, count=-(-devices // per) * per, devices_per_node=per)
    if devices == 1:
        return system
    dev = system.device
    return replace(system, count=devices, topology="switch", link=dev.link,
                   host_link=system.host_link or dev.host_link, devices_per_node=None)


@dataclass
class _Part:
    """One part or system of the search: how it is simulated and priced."""

    idx: int
    system: System
    per: int           # devices per system bought whole (1 for a part)
    max_tp: int
    predictor: Predictor = field(repr=False)

    @property
    def name(self) -> str:
        return self.system.name

    @property
    def is_system(self) -> bool:
        return self.per > 1

    @staticmethod
    def make(idx: int, arch: str | System) -> _Part:
        system = arch if isinstance(arch, System) else load_arch(arch)
        dev = system.device
        if system.count > 1:
            per = system.devices_per_node or system.count
            # a spec scaled to several nodes is planned as nodes bought one by one
            if system.count != per:
                system = replace(system, count=per)
            return _Part(idx, system, per, per, Predictor(system))
        max_tp = PART_MAX_TP if dev.link is not None else 1
        return _Part(idx, system, 1, max_tp, Predictor(fleet_system(system, max_tp)))

    def sim_system(self, devices: int) -> System:
        return fleet_system(self.system, devices)

    def price_problem(self, mode: str) -> str | None:
        if mode == "cloud" and not system_hourly_rate(self.system):
            return f"{self.name}: no cloud price (cost.hourly) in the spec"
        if mode == "tco" and self._purchase() is None:
            return f"{self.name}: no purchase price (cost.price) in the spec"
        return None

    def _purchase(self) -> float | None:
        """Purchase price of one part, or of one whole system."""
        s = self.system
        if self.is_system and s.pricing and s.pricing.price_usd:
            return s.pricing.price_usd
        p = s.device.pricing.price_usd
        return p * self.per if p else None

    def fixed(self, devices: int, c: _CostOpts) -> tuple[float, float, float, str, int]:
        """(hardware $/h, hosting $/h, provisioned W, what is bought, spare devices)."""
        dev = self.system.device
        if c.mode == "cloud":
            rate = system_hourly_rate(self.system) or 0.0  # whole system (or one part)
            hw = rate * devices / self.per
            if self.is_system:
                what = (f"{devices} x {dev.name} = {devices / self.per:g} x {self.name} "
                        "(cloud share)")
            else:
                what = f"{devices} x {self.name}"
            node_w = dev.power.tdp_w * self.per + self.system.extra_power_w
            return hw, 0.0, node_w * devices / self.per, what, 0
        units = -(-devices // self.per)
        spare = units * self.per - devices
        hw = (self._purchase() or 0.0) * units / (c.years * HOURS_PER_YEAR)
        prov_w = units * (dev.power.tdp_w * self.per + self.system.extra_power_w)
        host = prov_w / 1e3 * c.hosting / HOURS_PER_YEAR
        what = f"{units} x {self.name}" + (f" ({spare} {dev.name} idle)" if spare else "")
        return hw, host, prov_w, what, spare

    def spare_w(self, spare: int) -> float:
        """Idle power of devices bought with a system but not used by the fleet."""
        if not spare:
            return 0.0
        s = self.system
        idle_over = s.extra_idle_power_w if s.extra_idle_power_w is not None \
            else s.extra_power_w
        return spare * s.device.power.static_w + idle_over * spare / self.per


@dataclass(frozen=True)
class _CostOpts:
    mode: str
    years: float
    pue: float
    usd_per_kwh: float
    hosting: float


# -- the load --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Load:
    options: ServeOptions
    n: int
    prompts: np.ndarray
    outputs: np.ndarray
    rate: float | None          # arrivals per second over the sample (None: all at once)
    span: float                 # seconds from the first arrival to the last
    describe: Mapping[str, Any]

    @property
    def max_tokens(self) -> int:
        return int((self.prompts + self.outputs).max())

    @property
    def decode_prompts(self) -> np.ndarray:
        return self.prompts[self.outputs > 1]


def _load(load: ServeOptions) -> _Load:
    if not isinstance(load, ServeOptions):
        raise HwsimError(f"load must be ServeOptions, got {type(load).__name__}")
    if load.offline or load.users is not None:
        raise HwsimError("hwsim plan needs an open-loop load with a rate: --rate R or "
                         "--trace FILE (not --offline or --users)")
    reqs, _ = make_requests(load)
    assert reqs is not None
    arr = np.array([r.arrival_s for r in reqs])
    prompts = np.array([r.prompt_tokens for r in reqs], dtype=np.int64)
    outputs = np.array([r.output_tokens for r in reqs], dtype=np.int64)
    span = float(arr.max() - arr.min())
    rate = (len(reqs) - 1) / span if span > 0 and len(reqs) > 1 else None
    if not load.chunked_prefill and int(prompts.max()) > load.max_batched_tokens:
        raise HwsimError(f"the load has a {int(prompts.max())}-token prompt, over "
                         f"--max-batched-tokens {load.max_batched_tokens} (raise it)")
    kind = (f"trace {load.trace}" if load.trace is not None else
            f"Poisson {load.rate:g} req/s" if load.burstiness == 1 else
            f"bursty {load.rate:g} req/s (CV {load.burstiness:g})")
    desc = {"kind": kind, "requests": len(reqs),
            "arrival_rate_per_s": rate,
            "output_tokens_per_s": rate * float(outputs.mean()) if rate else None,
            "mean_prompt_tokens": float(prompts.mean()),
            "mean_output_tokens": float(outputs.mean()),
            "max_request_tokens": int((prompts + outputs).max()), "seed": load.seed}
    return _Load(load, len(reqs), prompts, outputs, rate, span, desc)


# -- one (part, tp, precision) ---------------------------------------------------------------
@dataclass
class _Model:
    part: _Part
    tp: int
    dtype: str
    model: IterationModel
    blocks: int = 0
    stage: str | None = None         # set when a bound prunes it
    reason: str = ""
    miss: float = 0.0
    order: tuple = ()
    ttft_lb: float | None = None
    tpot_lb: float | None = None
    n_min: dict[int, int] = field(default_factory=dict)

    def bounds(self) -> dict[str, Any]:
        return {"part": self.part.name, "tp": self.tp, "dtype": self.dtype,
                "kv_blocks": self.blocks or None, "pruned": self.stage,
                "ttft_p99_lower_s": self.ttft_lb, "tpot_lower_s": self.tpot_lb,
                "min_replicas": {str(k): v for k, v in self.n_min.items()}}


def _fit(pm: _Model, load: _Load, o: ServeOptions) -> None:
    """Memory bound: the weights leave a KV cache that holds the longest request."""
    m, dev = pm.model, pm.part.system.device
    cap = dev.dram.capacity_bytes * o.gpu_memory_utilization
    try:
        pm.blocks = kv_blocks_for(m, pm.part.system, replace(o, tp=pm.tp))
    except HwsimError:
        w = m.weights_bytes()
        act = m.activation_bytes(min(o.max_batched_tokens, m.max_tokens))
        pm.stage, pm.miss = "memory", (w + act) / cap
        pm.reason = (f"does not fit: weights {fq(w, 'B')} + activations {fq(act, 'B')} > "
                     f"{fq(cap, 'B')} usable ({o.gpu_memory_utilization:.0%} of "
                     f"{fq(dev.dram.capacity_bytes, 'B')}) per device at tp {pm.tp}")
        return
    need = -(-load.max_tokens // o.block_size)
    if need > pm.blocks:
        kv = m.kv_bytes_per_token() * o.block_size
        pm.stage, pm.miss = "memory", need / pm.blocks
        pm.reason = (f"does not fit: a {load.max_tokens:,}-token request needs "
                     f"{fq(need * kv, 'B')} of KV cache per device, {fq(pm.blocks * kv, 'B')} "
                     f"left after the weights at tp {pm.tp}")


def _latency_bounds(pm: _Model, load: _Load, slo_ttft: float, slo_tpot: float) -> None:
    """TTFT and TPOT lower bounds (no queueing, no batching)."""
    m = pm.model
    if not load.options.chunked_prefill:
        alone = {int(p): m.cost(Batch(prefill=((int(p), 0),))).latency_s
                 for p in np.unique(load.prompts)}
        ttft = pm.ttft_lb = float(np.percentile([alone[int(p)] for p in load.prompts], 99))
        if ttft > slo_ttft:
            pm.stage, pm.miss = "ttft-bound", ttft / slo_ttft
            pm.reason = (f"TTFT p99 >= {fq(ttft, 's')} (each prompt's prefill alone) > "
                         f"{fq(slo_ttft, 's')} at any replica count")
            return
    dp = load.decode_prompts
    if dp.size:
        tpot = pm.tpot_lb = m.cost(Batch(decode=(int(dp.min()),))).latency_s
        if tpot > slo_tpot:
            pm.stage, pm.miss = "tpot-bound", tpot / slo_tpot
            pm.reason = (f"TPOT >= {fq(tpot, 's')} (a decode step at batch 1) > "
                         f"{fq(slo_tpot, 's')} at any replica count")


def _pow2_upto(n: int) -> list[int]:
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return [*out, n] if n >= 1 else [1]


def _allowed_misses(n: int) -> int:
    """Values of ``n`` that may exceed a limit while their p99 (numpy's linear interpolation)
    stays within it: those above sorted position floor(0.99 (n - 1))."""
    return n - (math.floor(0.99 * (n - 1)) + 1) if n else 0


def _min_replicas(pm: _Model, load: _Load, max_batch: int, slo_ttft: float,
                  slo_tpot: float) -> int:
    """Throughput bound: the fewest replicas that can do the work the SLOs require in time."""
    m, o = pm.model, load.options
    p_min = int(load.prompts.min())
    per_req = -(-(p_min + 1) // o.block_size)  # blocks a request holds at admission
    n_kv = max(1, pm.blocks // per_req)
    k_max = max(1, min(max_batch, n_kv, load.n, o.max_batched_tokens // p_min))
    t_pre = min(m.cost(Batch(prefill=((p_min, 0),) * k)).latency_s / k
                for k in _pow2_upto(k_max))
    t_dec = 0.0
    dp = load.decode_prompts
    if dp.size:
        c = int(dp.min())
        n_max = max(1, min(max_batch, n_kv, load.n))
        t_dec = min(m.cost(Batch(decode=(c,) * n)).latency_s / n for n in _pow2_upto(n_max))
    # replica-seconds each request needs at least; the requests that meet both SLOs (all but
    # the few each p99 lets through) finish by the last arrival + TTFT + (output - 1) x TPOT
    work = np.sort(t_pre + (load.outputs - 1) * t_dec)
    done = load.n - _allowed_misses(load.n) - _allowed_misses(int(dp.size))
    horizon = load.span + slo_ttft + float(load.outputs.max() - 1) * slo_tpot
    need = float(work[:max(done, 0)].sum()) / horizon
    return max(1, math.ceil(need * _SLACK - 1e-9))


# -- the search ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cfg:
    pm: _Model
    max_batch: int
    n_min: int
    order: tuple


def _p99(r: ServeResult, key: str) -> float | None:
    return r.metrics[key]["p99"]


def plan(workload: str, parts: Sequence[str | System], load: ServeOptions,
         slo_ttft_p99: float, slo_tpot_p99: float, *, tps: Iterable[int] | None = None,
         dtypes: Iterable[str] | None = None, max_batches: Iterable[int] = (64, 128, 256),
         cost_mode: str = "cloud", years: float = 4.0, pue: float = 1.3,
         usd_per_kwh: float = 0.12, hosting_usd_per_kw_year: float = HOSTING_USD_PER_KW_YEAR,
         top: int = 5, max_devices: int = 1024,
         progress: Callable[[int, int], None] | None = None) -> PlanResult:
    """The cheapest fleets serving ``load`` of ``workload`` within the p99 SLOs (seconds).

    ``load`` gives the requests (``rate`` or ``trace``, ``requests``, lengths, ``seed``) and
    the scheduler settings; its ``tp``, ``replicas``, ``max_batch`` and ``dtype`` are the
    planner's to choose. ``tps`` defaults to every power of two up to a system's devices (up to
    :data:`PART_MAX_TP` for a single part, which is replicated as a building block) that
    divides the model; ``dtypes`` to the part's default precision plus fp8 and int8 where its
    matrix units run them natively (hwsim does not model the accuracy cost of either).

    Raises
    ------
    HwsimError
        Bad SLOs, load, part names, cost settings or search ranges. A search in which no fleet
        meets the SLOs is not an error: the result is not ``feasible`` and its near-misses
        say how close each candidate came.
    """
    t0 = time.perf_counter()
    slo_t = _positive("--ttft-p99", slo_ttft_p99)
    slo_p = _positive("--tpot-p99", slo_tpot_p99)
    if cost_mode not in COST_MODES:
        raise HwsimError(f"--cost must be one of {', '.join(COST_MODES)}, got {cost_mode!r}")
    copts = _CostOpts(cost_mode, _positive("--years", years), _positive("--pue", pue),
                      _positive("--kwh", usd_per_kwh, zero_ok=True),
                      _positive("--hosting", hosting_usd_per_kw_year, zero_ok=True))
    if copts.pue < 1:
        raise HwsimError(f"--pue must be >= 1 (facility power over IT power), got {pue!r}")
    for name, v in (("--top", top), ("--max-devices", max_devices)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise HwsimError(f"{name} must be a positive integer, got {v!r}")
    tp_req = _ints("--tp", tps)
    mbs = sorted(_ints("--max-batch", max_batches) or ())
    dt_req = None
    if dtypes is not None:
        from workloads.dtypes import get_dtype

        dt_req = tuple(dict.fromkeys([dtypes] if isinstance(dtypes, str) else dtypes))
        if not dt_req:
            raise HwsimError("--dtype: give at least one precision")
        for d in dt_req:
            try:
                get_dtype(d)
            except (ValueError, TypeError) as e:
                raise HwsimError(f"--dtype: {e}") from None
    if isinstance(parts, (str, System)):
        parts = [parts]
    names = [p.strip() if isinstance(p, str) else p for p in parts]
    if not names or any(isinstance(p, str) and not p for p in names):
        raise HwsimError("--arch: give a comma-separated list of parts or systems, e.g. "
                         "h100-sxm,a100-sxm-80gb,dgx-h100")
    ld = _load(load)
    base = replace(load, tp=1, replicas=1, dtype=None, weight_dtype=None, kv_dtype=None,
                   slo_ttft_s=slo_t, slo_tpot_s=slo_p)
    seen: dict[str, _Part] = {}
    for p in names:
        part = _Part.make(len(seen), p)
        seen.setdefault(part.name, part)
    plist = list(seen.values())

    from workloads.zoo import build

    family = build(workload, phase="forward", batch=1).meta.get("family")
    if family != "decoder":
        raise WorkloadError(f"{workload}: hwsim plan serves decoder (LLM) models, not "
                            f"{family} models")
    search = _Search(workload, ld, base, slo_t, slo_p, copts, top, max_devices)
    search.enqueue(plist, tp_req, dt_req, mbs)
    search.run(progress)
    return search.result(time.perf_counter() - t0)


class _Search:
    """The state of one :func:`plan`: the queue of configurations keyed by the cost of their
    cheapest possible fleet, the models and simulations shared between them, what was found
    and what missed."""

    def __init__(self, workload: str, ld: _Load, base: ServeOptions, slo_t: float,
                 slo_p: float, copts: _CostOpts, top: int, max_devices: int):
        self.workload, self.ld, self.base = workload, ld, base
        self.slo_t, self.slo_p, self.copts = slo_t, slo_p, copts
        self.top, self.max_devices = top, max_devices
        self.stats: dict[str, int] = {f.name: 0 for f in fields(SearchStats)
                                      if f.name != "wall_s"}
        self.heap: list[tuple[float, tuple, int, Any]] = []
        self.misses: list[NearMiss] = []
        self.models: dict[tuple, _Model] = {}       # (part, tp, dtype) -> bounds and model
        self.sims: dict[tuple, list[tuple[int, int, ServeResult]]] = {}
        self.fleets: list[Fleet] = []
        self.best: dict[tuple, float] = {}          # hardware -> cheapest $/h that passes
        self.hints: dict[tuple, int] = {}           # (part, tp, dtype) -> replicas that passed
        self.parts: list[_Part] = []

    # -- the space --------------------------------------------------------------------------
    def enqueue(self, parts: list[_Part], tp_req: tuple[int, ...] | None,
                dt_req: tuple[str, ...] | None, mbs: list[int]) -> None:
        """Every configuration, keyed by the cost of one replica (no model needed yet); those
        with no price or a tp that cannot be are near-misses at once."""
        from workloads.transforms.tensor_parallel import tp_degrees
        from workloads.zoo import build

        self.parts = parts
        st = self.stats
        for part in parts:
            dev = part.system.device
            default = auto_dtype(part.system, None)
            dts = dt_req or (default, *(d for d in _PRECISIONS
                                        if d != default and dev.native_peak(d, "matrix") > 0))
            probe = build(self.workload, phase="prefill", batch=1, seq=16, dtype=default)
            fits = set(tp_degrees(probe, part.max_tp))
            tps = list(tp_req) if tp_req is not None else \
                [t for t in _pow2_upto(part.max_tp) if t in fits and t & (t - 1) == 0]
            price = part.price_problem(self.copts.mode)
            for tp in tps:
                for j, dt in enumerate(dts):
                    st["configurations"] += len(mbs)
                    why = price
                    if why is None and (tp > part.max_tp or tp not in fits):
                        why = (f"tp {tp} does not divide the model's heads and layers"
                               if tp <= part.max_tp else
                               f"tp {tp} exceeds the {part.max_tp} devices of one "
                               f"{'system' if part.is_system else 'server'}")
                    if why is not None:
                        stage = "price" if price is not None else "layout"
                        st[f"pruned_{stage}"] += len(mbs)
                        self.misses.append(NearMiss(part.name, tp, dt, None, None, stage, why,
                                                    math.inf))
                        continue
                    one = self.fixed_cost(part, tp)
                    for mb in mbs:
                        heapq.heappush(self.heap, (one, (part.idx, tp, j, mb), 0,
                                                   (part, dt, mb)))

    def fixed_cost(self, part: _Part, devices: int) -> float:
        """$/hour of ``devices`` devices before energy: a lower bound of a fleet's cost."""
        hw, host, _, _, _ = part.fixed(devices, self.copts)
        return hw + host

    def model_for(self, part: _Part, tp: int, dt: str, order: tuple) -> _Model:
        """Step 1: the memory, TTFT and TPOT bounds of (part, tp, precision), once."""
        key = (part.idx, tp, dt)
        pm = self.models.get(key)
        if pm is None:
            im = IterationModel(part.predictor, self.workload, tp=tp, dtype=dt,
                                max_tokens=self.base.max_batched_tokens)
            pm = self.models[key] = _Model(part, tp, im.dtype, im, order=order)
            _fit(pm, self.ld, self.base)
            if pm.stage is None:
                _latency_bounds(pm, self.ld, self.slo_t, self.slo_p)
            if pm.stage is not None:
                self.misses.append(NearMiss(part.name, tp, pm.dtype, None, None, pm.stage,
                                            pm.reason, pm.miss, self.fixed_cost(part, tp)))
        return pm

    def kth(self) -> float:
        """$/hour of the ``top``-th cheapest passing fleet (distinct hardware) so far."""
        if len(self.best) < self.top:
            return math.inf
        return sorted(self.best.values())[self.top - 1]

    # -- simulations ------------------------------------------------------------------------
    def simulate(self, c: _Cfg, n: int) -> ServeResult:
        key = (c.pm.part.idx, c.pm.tp, c.pm.dtype, n)
        for mb, peak, r in self.sims.get(key, ()):
            if peak <= mb and peak <= c.max_batch:  # the limit never bound: the same run
                self.stats["reused"] += 1
                return r
        o = replace(self.base, tp=c.pm.tp, replicas=n, max_batch=c.max_batch,
                    dtype=c.pm.dtype)
        r = serve(self.workload, c.pm.part.sim_system(n * c.pm.tp), o,
                  predictor=c.pm.part.predictor, model=c.pm.model)
        self.stats["simulations"] += 1
        peak = int(np.max(np.cumsum([d for _, d in r.sim.in_system])))  # in event order
        self.sims.setdefault(key, []).append((c.max_batch, peak, r))
        return r

    def miss_ratio(self, r: ServeResult) -> float:
        return max((_p99(r, "ttft_s") or 0.0) / self.slo_t,
                   (_p99(r, "tpot_s") or 0.0) / self.slo_p)

    def sim_miss(self, c: _Cfg, n: int, r: ServeResult, extra: str = "") -> None:
        t, p = _p99(r, "ttft_s") or 0.0, _p99(r, "tpot_s") or 0.0
        why = [f"TTFT p99 {fq(t, 's')} > {fq(self.slo_t, 's')}"] if t > self.slo_t else []
        if p > self.slo_p:
            why.append(f"TPOT p99 {fq(p, 's')} > {fq(self.slo_p, 's')}")
        reason = " and ".join(why) + f" at {n} replica{'s' if n > 1 else ''}" + extra
        self.misses.append(NearMiss(c.pm.part.name, c.pm.tp, c.pm.dtype, c.max_batch, n,
                                    "simulated", reason, self.miss_ratio(r),
                                    self.fixed_cost(c.pm.part, n * c.pm.tp),
                                    _p99(r, "ttft_s"), _p99(r, "tpot_s")))

    def replicas(self, c: _Cfg) -> tuple[int, ServeResult] | None:
        """Step 4: the fewest replicas (from the throughput bound up) that meet the SLOs.

        Galloping up from the bound (or from the answer of the same model at another batch
        limit, walking down from there when it passes), then bisecting between the last miss
        and the first pass."""
        hint = self.hints.get((c.pm.part.idx, c.pm.tp, c.pm.dtype), c.n_min)
        fail: tuple[int, ServeResult] | None = None
        n = hint
        if hint > c.n_min and hint * c.pm.tp <= self.max_devices \
                and self.fixed_cost(c.pm.part, hint * c.pm.tp) <= self.kth():
            r = self.simulate(c, hint)
            if self.miss_ratio(r) > 1.0:
                fail, n = (hint, r), hint + 1
            else:  # walk down until a miss (or the bound)
                hi, ok, step = hint, r, 1
                while (m := max(hi - step, c.n_min)) < hi:
                    rm = self.simulate(c, m)
                    if self.miss_ratio(rm) > 1.0:
                        fail = (m, rm)
                        break
                    hi, ok, step = m, rm, step * 2
                return self._bisect(c, fail, hi, ok)
        else:
            n = c.n_min
        step = 1
        cap = max(c.n_min, self.ld.n)
        while True:  # gallop up: n, n+1, n+3, n+7, ...
            if n * c.pm.tp > self.max_devices or n > cap:
                if fail is not None:
                    limit = (f"more than {self.max_devices} devices"
                             if n * c.pm.tp > self.max_devices
                             else f"more replicas than the {self.ld.n} requests")
                    self.sim_miss(c, *fail, f"; would need {limit}")
                return None
            if self.fixed_cost(c.pm.part, n * c.pm.tp) > self.kth():
                self.stats["stopped_cost"] += 1
                if fail is not None:
                    self.sim_miss(c, *fail)
                return None
            r = self.simulate(c, n)
            if self.miss_ratio(r) <= 1.0:
                return self._bisect(c, fail, n, r)
            if fail is not None and self.miss_ratio(r) > _GIVE_UP * self.miss_ratio(fail[1]):
                self.sim_miss(c, n, r, f" (no better than at {fail[0]})")
                return None
            fail = (n, r)
            n, step = n + step, step * 2

    def _bisect(self, c: _Cfg, fail: tuple[int, ServeResult] | None, hi: int,
                ok: ServeResult) -> tuple[int, ServeResult]:
        """Bisect between the last miss (or the bound) and the first pass; the miss next to
        the answer is a near-miss ("... at 3 replicas")."""
        lo = fail[0] if fail is not None else c.n_min - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            rm = self.simulate(c, mid)
            if self.miss_ratio(rm) <= 1.0:
                hi, ok = mid, rm
            else:
                lo, fail = mid, (mid, rm)
        if fail is not None:
            self.sim_miss(c, *fail)
        self.hints[(c.pm.part.idx, c.pm.tp, c.pm.dtype)] = hi
        return hi, ok

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None) -> None:
        """Configurations in order of their cheapest possible fleet: the bounds when first
        reached (step 1), then the throughput bound re-keys them (2), then the replica search
        (4); whatever costs more than the ``top``-th fleet found is left (3)."""
        st, total, done = self.stats, self.stats["configurations"], 0
        while self.heap:
            if progress is not None:
                progress(done, total)
            key, order, _, item = heapq.heappop(self.heap)
            if key > self.kth():  # nothing left can enter the ranking
                st["pruned_cost"] += 1 + len(self.heap)
                break
            if not isinstance(item, _Cfg):
                part, dt, mb = item
                pm = self.model_for(part, order[1], dt, order[:3])
                if pm.stage is not None:
                    st[_PRUNED[pm.stage]] += 1
                    done += 1
                    continue
                n_min = pm.n_min[mb] = _min_replicas(pm, self.ld, mb, self.slo_t, self.slo_p)
                c = _Cfg(pm, mb, n_min, order)
                heapq.heappush(self.heap, (self.fixed_cost(part, n_min * pm.tp), order, 1, c))
                continue
            done += 1
            st["searched"] += 1
            st["replicas_skipped"] += item.n_min - 1
            found = self.replicas(item)
            if found is not None:
                f = _fleet(item, *found, self.copts, self.ld)
                self.fleets.append(f)
                hk = (item.pm.part.idx, item.pm.tp, item.pm.dtype, f.replicas)
                self.best[hk] = min(self.best.get(hk, math.inf), f.usd_per_hour)
        if progress is not None:
            progress(total, total)

    def result(self, wall_s: float) -> PlanResult:
        """Fleets ranked by cost (one per hardware choice), near-misses closest first."""
        order = {(pm.part.name, pm.tp, pm.dtype): pm.order for pm in self.models.values()}
        self.fleets.sort(key=lambda f: (f.usd_per_hour, f.usd_per_million_tokens,
                                        f.energy_per_output_token_j,
                                        order[(f.part, f.tp, f.dtype)], f.max_batch))
        ranked = _first_of_each(self.fleets, lambda f: (f.part, f.tp, f.dtype, f.replicas))
        pidx = {p.name: p.idx for p in self.parts}
        self.misses.sort(key=lambda m: (m.miss, math.inf if m.usd_per_hour is None
                                        else m.usd_per_hour, pidx[m.part], m.tp, m.dtype,
                                        m.max_batch or 0, m.replicas or 0))
        misses = _first_of_each(self.misses, lambda m: (m.part, m.tp, m.dtype, m.replicas,
                                                        m.stage, m.reason))
        c = self.copts
        return PlanResult(
            workload=self.workload, load=self.ld.describe,
            slo={"ttft_p99_s": self.slo_t, "tpot_p99_s": self.slo_p},
            cost={"mode": c.mode, "years": c.years, "pue": c.pue,
                  "usd_per_kwh": c.usd_per_kwh, "hosting_usd_per_kw_year": c.hosting,
                  "notes": _cost_notes(c)},
            fleets=tuple(ranked[:self.top]), near_misses=tuple(misses),
            bounds=tuple(pm.bounds() for pm in self.models.values()),
            stats=SearchStats(**self.stats, wall_s=wall_s))


def _first_of_each(items: list, key: Callable[[Any], tuple]) -> list:
    seen: set[tuple] = set()
    out = []
    for x in items:
        k = key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def _cost_notes(c: _CostOpts) -> list[str]:
    if c.mode == "cloud":
        return ["cloud $/hour from each spec, per device used; a system spec (e.g. dgx-h100) "
                "is paid as a share of the system (devices / devices per system); electricity "
                "is in the price"]
    return [f"TCO: purchase price over {c.years:g} years (parts one by one, systems whole), "
            f"energy x PUE {c.pue:g} x ${c.usd_per_kwh:g}/kWh, hosting "
            f"${c.hosting:,.0f}/kW-year of provisioned TDP"
            + (" (an estimate: US colocation ~$125/kW-month)"
               if c.hosting == HOSTING_USD_PER_KW_YEAR else ""),
            "a part's price and power are the accelerator's alone (no host server); a "
            "system's include its host"]


def _fleet(c: _Cfg, n: int, r: ServeResult, copts: _CostOpts, load: _Load) -> Fleet:
    pm, m = c.pm, r.metrics
    devices = n * pm.tp
    hw, host, prov_w, what, spare = pm.part.fixed(devices, copts)
    power = m["avg_power_w"] + (pm.part.spare_w(spare) if copts.mode == "tco" else 0.0)
    energy = power / 1e3 * copts.pue * copts.usd_per_kwh if copts.mode == "tco" else 0.0
    usd_h = hw + host + energy
    tok_s = m["output_tokens_per_s"]
    offered = load.rate * float(load.outputs.mean()) if load.rate is not None else tok_s
    return Fleet(
        part=pm.part.name, device=pm.part.system.device.name, tp=pm.tp, dtype=pm.model.dtype,
        max_batch=c.max_batch, replicas=n, devices=devices, hardware=what,
        ttft_p50_s=m["ttft_s"]["p50"], ttft_p99_s=m["ttft_s"]["p99"],
        tpot_p50_s=m["tpot_s"]["p50"], tpot_p99_s=m["tpot_s"]["p99"],
        output_tokens_per_s=tok_s, usd_per_hour=usd_h,
        usd_per_million_tokens=usd_h / (offered * 3600) * 1e6 if offered > 0 else math.inf,
        energy_per_output_token_j=power / tok_s if tok_s > 0 else math.inf,
        avg_power_w=power, provisioned_w=prov_w,
        cost_breakdown={"hardware_usd_per_hour": hw, "energy_usd_per_hour": energy,
                        "hosting_usd_per_hour": host})
