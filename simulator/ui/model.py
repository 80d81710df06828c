"""The compute layer of ``hwsim ui``: a scenario in, the numbers and plot data out.

No UI framework is imported here, so the layer is unit-tested without a browser
(tests/unit/test_ui_model.py). It is a thin layer over the Python API: spec sliders become
``--set`` overrides handed to :func:`simulator.arch.loader.load_arch` (the same validation
and error messages as the CLI), the run is :func:`simulator.plan.make_plan` + a
:class:`simulator.predict.Predictor` (memoised op costs: one predictor per part, overrides and
TP degree is reused across slider moves), and everything the page shows is read off the
:class:`simulator.results.result.Result`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.arch.loader import list_arch_files, load_arch, parse_overrides
from simulator.arch.spec import Device, System
from simulator.errors import HwsimError, WorkloadError
from simulator.predict import Predictor
from simulator.results.result import Result
from simulator.units import format_quantity as fq

__all__ = ["PHASES", "DTYPES", "SpecKnobs", "Scenario", "View", "Outcome", "parts",
           "workloads", "phases_for", "spec_knobs", "overrides_for", "system_for", "make_predictor",
           "evaluate", "run", "compare"]

PHASES = ("auto", "prefill", "decode", "forward")
#: precisions the page offers ("auto": the part's natural one, as the CLI's default)
DTYPES = ("auto", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")
#: errors a user can act on: shown as their message, never as a traceback
USER_ERRORS = (HwsimError, WorkloadError, ValueError)


@dataclass(frozen=True)
class SpecKnobs:
    """The main spec fields of one part, in SI units, and the ``--set`` paths they map to.

    ``units``/``clock_hz``: the matrix engine (tensor cores, MXUs, a PE array, DSP array);
    ``dram_*``: the outermost memory level (HBM, GDDR, DDR); ``sram_bytes``: the on-chip level
    next to it (L2, CMEM, a global buffer), None on a part with a single memory level.
    """

    unit_name: str
    units: int
    clock_hz: float
    dram_name: str
    dram_bandwidth_Bps: float
    dram_capacity_bytes: float
    sram_name: str | None
    sram_bytes: float | None


@dataclass(frozen=True)
class Scenario:
    """Everything one evaluation depends on (hashable: it keys the page's caches).

    ``spec``: the knob values the user set (None fields: the spec's own value);
    ``extra``: further ``PATH=VALUE`` overrides, exactly as ``hwsim run --set`` takes them.
    """

    workload: str = "llama2-7b"
    arch: str = "h100-sxm"
    phase: str = "decode"
    batch: int = 8
    seq: int | None = None
    context: int | None = 2048
    dtype: str = "auto"
    tp: int = 1
    units: int | None = None
    clock_hz: float | None = None
    dram_bandwidth_Bps: float | None = None
    dram_capacity_bytes: float | None = None
    sram_bytes: float | None = None
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class View:
    """What the page shows for one scenario: headline numbers, tables and plot data."""

    title: str
    latency_s: float
    throughput: float
    throughput_unit: str
    energy_j: float
    energy_per_sample_j: float
    avg_power_w: float
    usd: float | None
    usd_per_million_tokens: float | None
    usd_per_sample: float | None
    cost_mode: str
    memory_bytes: float
    memory_capacity_bytes: float
    peak_fraction: float
    by_kind: tuple[dict[str, Any], ...]
    top_ops: tuple[dict[str, Any], ...]
    roofline: dict[str, Any]
    warnings: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)

    def headline(self) -> dict[str, str]:
        """The headline numbers as display strings (label -> text)."""
        cost = ("unpriced" if self.usd is None else
                f"${self.usd_per_million_tokens:.3g} / 1M tokens"
                if self.usd_per_million_tokens else f"${self.usd_per_sample:.3g} / sample")
        return {"latency": fq(self.latency_s, "s"),
                "throughput": f"{self.throughput:,.4g} {self.throughput_unit}",
                "energy": f"{fq(self.energy_per_sample_j, 'J')} / sample",
                "power": f"{self.avg_power_w:,.1f} W",
                "cost": cost,
                "memory": f"{fq(self.memory_bytes, 'B')} of {fq(self.memory_capacity_bytes, 'B')}"}


@dataclass(frozen=True)
class Outcome:
    """A view, or the one-line hwsim error that stopped it (never both)."""

    view: View | None = None
    error: str | None = None


# -- choices ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def parts() -> tuple[str, ...]:
    """Shipped single parts (systems and clusters are left out: their device fields are not
    ``--set`` paths of their own file; the TP slider makes a fleet of a part instead)."""
    out = []
    for name in list_arch_files():
        try:
            if load_arch(name).kind not in ("system", "cluster"):
                out.append(name)
        except HwsimError:  # a broken spec stays out of the menu (hwsim archs reports it)
            continue
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _families() -> dict[str, str]:
    from workloads.zoo import list_models

    return {m.name: m.family for m in list_models()}


def workloads() -> tuple[str, ...]:
    """Shipped zoo models, smallest first."""
    return tuple(_families())


def phases_for(workload: str) -> tuple[str, ...]:
    """The phases the page offers for a zoo model: prefill and decode are for decoders."""
    if _families().get(workload) == "decoder":
        return PHASES
    return ("auto", "forward")


def spec_knobs(arch: str) -> SpecKnobs:
    """The knob defaults of ``arch``, read from its spec."""
    d = load_arch(arch).device
    unit = _matrix_unit(d)
    dram = d.dram
    sram = d.memory[1] if len(d.memory) > 1 else None
    return SpecKnobs(unit.name, unit.count, unit.clock_hz, dram.name, dram.bandwidth_Bps,
                     dram.capacity_bytes, sram.name if sram else None,
                     sram.capacity_bytes if sram else None)


def _matrix_unit(d: Device):
    return next((u for u in d.compute if u.unit == "matrix"), d.compute[0])


# -- scenario -> overrides -> system -> result -----------------------------------------------
def _num(x: float) -> str:
    """A float as the shortest text YAML reads back to the same value."""
    return repr(float(x))


def overrides_for(s: Scenario) -> dict[str, str]:
    """The ``--set`` overrides of a scenario: a knob that differs from the spec, then the
    extra ``PATH=VALUE`` lines (which win). Units are written out ("3.35e12 B/s"), as a user
    would type them on the command line."""
    k = spec_knobs(s.arch)
    out: dict[str, str] = {}
    pairs = [(s.units, k.units, f"compute.{k.unit_name}.count", lambda v: str(int(v))),
             (s.clock_hz, k.clock_hz, f"compute.{k.unit_name}.clock", lambda v: f"{_num(v)} Hz"),
             (s.dram_bandwidth_Bps, k.dram_bandwidth_Bps, f"memory.{k.dram_name}.bandwidth",
              lambda v: f"{_num(v)} B/s"),
             (s.dram_capacity_bytes, k.dram_capacity_bytes, f"memory.{k.dram_name}.capacity",
              lambda v: f"{_num(v)} B")]
    if k.sram_name:
        pairs.append((s.sram_bytes, k.sram_bytes, f"memory.{k.sram_name}.capacity",
                      lambda v: f"{_num(v)} B"))
    for value, spec, path, text in pairs:
        if value is not None and not math.isclose(value, spec, rel_tol=1e-9):
            out[path] = text(value)
    out.update(parse_overrides([x for x in s.extra if x.strip()]))
    return out


def system_for(arch: str, overrides: Mapping[str, str] | Iterable[tuple[str, str]] = (),
               tp: int = 1) -> System:
    """``arch`` with ``overrides`` applied (validated as ``--set``), as ``tp`` devices joined by
    its own link when ``tp`` > 1 (as :func:`simulator.serve.planner.fleet_system`)."""
    from simulator.serve.planner import fleet_system

    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise HwsimError(f"TP degree: expected a positive integer, got {tp!r}")
    system = load_arch(arch, dict(overrides))
    if tp > 1 and system.device.link is None:
        raise HwsimError(f"TP degree {tp}: {arch} has no chip-to-chip link in its spec, so it "
                         "runs on one device (set TP to 1)")
    return fleet_system(system, tp)


def make_predictor(arch: str, overrides: tuple[tuple[str, str], ...] = (), tp: int = 1
                   ) -> Predictor:
    """A fresh predictor for one (part, overrides, TP): the unit the page's cache keeps."""
    return Predictor(system_for(arch, overrides, tp))


_default_predictor = functools.lru_cache(maxsize=32)(make_predictor)


def evaluate(s: Scenario,
             predictor_for: Callable[[str, tuple[tuple[str, str], ...], int], Predictor]
             | None = None) -> View:
    """Run a scenario and read off what the page shows.

    ``predictor_for(arch, overrides, tp)`` returns a (cached) predictor; the default is a
    process-wide LRU cache of :func:`make_predictor`.

    Raises
    ------
    HwsimError, WorkloadError, ValueError
        With the same one-line message the CLI prints (a spec field, a capacity overflow, a
        TP degree that does not divide the heads).
    """
    from simulator.plan import make_plan

    ov = tuple(sorted(overrides_for(s).items()))
    predictor = (predictor_for or _default_predictor)(s.arch, ov, s.tp)
    # as the CLI: a sequence length for a forward pass or a prefill, a KV-cache length for
    # decode (and for a prefill that extends a cache); the other is left to the model default
    plan = make_plan(s.workload, predictor.system, phase=s.phase, batch=s.batch,
                     seq=s.seq if s.phase != "decode" else None,
                     context=s.context if s.phase in ("decode", "prefill") else None,
                     dtype=None if s.dtype == "auto" else s.dtype, tp=s.tp)
    r = predictor.predict(plan.build(), plan)
    return _view(r, predictor.system, dict(ov))


def run(s: Scenario, predictor_for: Callable[..., Predictor] | None = None) -> Outcome:
    """:func:`evaluate`, with a user error turned into its message (for the page).

    Examples
    --------
    >>> run(Scenario(tp=3)).error
    'llama2-7b: tp=3 does not divide num_attention_heads=32; choose a tp that divides it'
    >>> run(Scenario()).view.throughput_unit
    'tokens/s'
    """
    try:
        return Outcome(view=evaluate(s, predictor_for))
    except USER_ERRORS as e:
        return Outcome(error=_message(e))


def compare(s: Scenario, archs: Iterable[str],
            predictor_for: Callable[..., Predictor] | None = None) -> dict[str, Outcome]:
    """The same scenario on several parts, each with its own spec (the knobs and extra
    overrides belong to the what-if part and are dropped here)."""
    base = replace(s, units=None, clock_hz=None, dram_bandwidth_Bps=None,
                   dram_capacity_bytes=None, sram_bytes=None, extra=())
    return {a: run(replace(base, arch=a), predictor_for) for a in archs}


def _message(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


def _view(r: Result, system: System, overrides: dict[str, str]) -> View:
    tp, unit = r.throughput
    fp = r.meta.get("footprint", {})
    priced = r.cost.mode != "unpriced"
    return View(
        title=f"{r.workload} {r.phase} on {r.arch}: batch {r.batch}, {r.meta.get('dtype')}",
        latency_s=r.latency_s, throughput=tp, throughput_unit=unit, energy_j=r.energy_j,
        energy_per_sample_j=r.energy_per_sample_j, avg_power_w=r.avg_power_w,
        usd=r.cost.usd if priced else None,
        usd_per_million_tokens=r.usd_per_million_tokens if priced else None,
        usd_per_sample=r.usd_per_sample if priced else None, cost_mode=r.cost.mode,
        memory_bytes=float(fp.get("total", 0.0)), memory_capacity_bytes=r.memory_capacity_bytes,
        peak_fraction=r.peak_fraction, by_kind=tuple(r.by_kind()),
        top_ops=tuple(r.top_op_groups(8)),
        roofline=roofline_data(r, system.device, r.meta.get("dtype") or "bf16"),
        warnings=tuple(r.warnings), overrides=overrides)


def roofline_data(r: Result, device: Device, dtype: str) -> dict[str, Any]:
    """Roofs (DRAM bandwidth, matrix and vector peaks, the ridge) and one point per op
    instance at (FLOP per DRAM byte, achieved FLOP/s), as plots.roofline_plot draws them."""
    from simulator.mapping.common import achievable_bandwidth

    bw = device.dram.bandwidth_Bps
    mpeak, mcls = device.peak(dtype, "matrix")
    vpeak, _ = device.peak(dtype, "vector")
    pts = [(x.flops / x.dram_bytes, x.flops / x.latency_s, x.latency_s, x.kind)
           for x in r.records if x.flops > 0 and x.dram_bytes > 0 and x.latency_s > 0]
    ridge = mpeak / bw if bw > 0 else math.inf
    return {"bandwidth_Bps": bw, "matrix_peak": mpeak, "matrix_class": mcls,
            "vector_peak": vpeak, "achievable_Bps": achievable_bandwidth(device),
            "ridge": ridge, "intensity": [p[0] for p in pts], "flops_s": [p[1] for p in pts],
            "latency_s": [p[2] for p in pts], "kind": [p[3] for p in pts]}
