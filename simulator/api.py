"""Python API: ``simulate(workload, arch, ...) -> Result`` and ``predict_op(op, arch) -> OpCost``.

The CLI is a thin layer over these two functions.

Examples
--------
>>> from simulator import simulate
>>> r = simulate("gpt2", "h100-sxm", phase="prefill", batch=1, seq=128)
>>> r.latency_s > 0 and r.energy_j > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.cost.dollars import CostOptions, run_cost
from simulator.engine.runner import run_graph
from simulator.errors import CapacityError, HwsimError, WorkloadError
from simulator.frozen import FrozenMap
from simulator.mapping.base import MapOptions, Mapper, OpCost
from simulator.mapping.common import collective_cost
from simulator.results.result import EnergyBreakdown, OpRecord, Result
from simulator.units import format_quantity
from workloads.graph import WorkloadGraph
from workloads.ops import Collective, Op

__all__ = ["RunOptions", "simulate", "predict_op", "resolve_system", "footprint", "auto_dtype"]


@dataclass(frozen=True)
class RunOptions:
    """How to build and run a workload (shapes, precision, parallelism, mapping, cost)."""

    phase: str = "auto"
    batch: int = 1
    seq: int | None = None
    context: int | None = None
    dtype: str | None = None  # None: the part's natural precision (see auto_dtype)
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    tp: int | None = None
    image_size: int | None = None
    dataflow: str | None = None
    cost: CostOptions = field(default_factory=CostOptions)
    check_capacity: bool = True
    fuse: bool = True  # fold pointwise epilogues into GEMMs/convs, as compilers do
    calibration: Any = None  # a CalibrationProfile or its YAML path; never applied implicitly
    force_calibration: bool = False  # apply a profile fitted on another part


def resolve_system(arch: str | System, overrides: Mapping[str, Any] | Iterable[str] = ()
                   ) -> System:
    return arch if isinstance(arch, System) else load_arch(arch, overrides)


def predict_op(op: Op, arch: str | System, overrides: Mapping[str, Any] | Iterable[str] = (),
               dataflow: str | None = None, *, rotated_sets: int | None = None) -> OpCost:
    """Cost of one op on one device of ``arch`` (collectives over the system's link).

    ``rotated_sets``: cost it as measured in a loop over that many input sets (see
    :class:`~simulator.mapping.base.MapOptions`) instead of inside a graph.
    """
    system = resolve_system(arch, overrides)
    opts = MapOptions(dataflow=dataflow, rotated_sets=rotated_sets)
    if isinstance(op, Collective):
        return collective_cost(op, system.device, opts, link=system.link,
                               topology=system.topology)
    return Mapper(system.device, opts).cost(op)


def footprint(graph: WorkloadGraph) -> dict[str, float]:
    """Per-device bytes: weights, KV cache and activations (from the builder's meta)."""
    m = graph.meta
    w = float(m.get("weight_bytes", graph.weight_bytes()))
    kv = float(m.get("kv_cache_bytes", 0.0))
    act = float(m.get("activation_bytes", 0.0))
    return {"weights": w, "kv_cache": kv, "activations": act, "total": w + kv + act}


def _check_capacity(graph: WorkloadGraph, system: System, tp: int) -> dict[str, float]:
    fp = footprint(graph)
    cap = system.device.dram.capacity_bytes
    if fp["total"] > cap:
        g = lambda b: format_quantity(b, "B")  # noqa: E731
        hint = ("use a system with more devices (e.g. --arch dgx-h100), a larger --tp, "
                "--weight-dtype int4/int8, or a smaller batch/context")
        raise CapacityError(
            f"{graph.name} ({graph.phase}) needs {g(fp['total'])} per device (weights "
            f"{g(fp['weights'])}, KV cache {g(fp['kv_cache'])}, activations "
            f"{g(fp['activations'])}) but {system.device.name} has {g(cap)} of "
            f"{system.device.dram.name} (tensor-parallel {tp}); {hint}")
    return fp


def auto_dtype(system: System, requested: str | None) -> str:
    """``requested``, or for ``None``/``"auto"`` the part's natural precision: int8 on FPGAs and
    ASICs (inference designs), else bf16 (or fp16) where the matrix units run it natively,
    else int8 (TPU v1), else fp32."""
    if requested not in (None, "auto"):
        return str(requested)
    order = ("int8", "bf16", "fp16", "fp32") if system.device.kind in ("fpga", "asic") \
        else ("bf16", "fp16", "int8", "fp32")
    for d in order:
        if system.device.native_peak(d, "matrix") > 0:
            return d
    return "fp32"


def _plan(workload: str | WorkloadGraph, o: RunOptions, system: System, dtype: str
          ) -> tuple[WorkloadGraph, int, int]:
    """Build the per-replica graph and choose (tensor-parallel, data-parallel) degrees.

    With no ``tp`` given, the largest power-of-two share of the system's devices that the model
    can be split over is used (latency first), and the devices left over serve data-parallel
    replicas that split the batch. CNNs and MLPs are not tensor-parallel: on a system they run
    one replica per device.
    """
    if isinstance(workload, WorkloadGraph):
        return workload, int(o.tp or workload.meta.get("tp", 1)), 1
    from workloads.zoo import build

    if o.tp:
        candidates = [o.tp]
    else:
        candidates, t = [], system.count
        while t >= 1:
            candidates.append(t)
            t //= 2
    err: Exception | None = None
    for tp in candidates:
        dp = max(1, min(system.count // tp, o.batch))
        per_replica = -(-o.batch // dp)
        try:
            g = build(workload, phase=o.phase, batch=per_replica, seq=o.seq, context=o.context,
                      dtype=dtype, weight_dtype=o.weight_dtype, kv_dtype=o.kv_dtype, tp=tp,
                      image_size=o.image_size)
            return g, tp, dp
        except WorkloadError as e:
            err = e
            if "tp" not in str(e) and "tensor parallel" not in str(e):
                raise
    assert err is not None
    raise err


def simulate(workload: str | WorkloadGraph, arch: str | System,
             options: RunOptions | None = None, *,
             overrides: Mapping[str, Any] | Iterable[str] = (),
             progress: Callable[[int], None] | None = None, **kw: Any) -> Result:
    """Build (or take) a workload graph, map every op onto ``arch`` and run the DES.

    Keyword arguments are :class:`RunOptions` fields (``phase``, ``batch``, ``seq``, ...).

    Raises
    ------
    CapacityError
        If weights + KV cache + activations do not fit in one device's memory at this
        tensor-parallel degree.
    UnsupportedOpError, MappingError, SpecError, WorkloadError
        With a one-line message naming what is wrong.
    """
    o = options or RunOptions(**kw)
    system = resolve_system(arch, overrides)
    profile = None
    if o.calibration is not None:
        from simulator.validate.calibrate import CalibrationProfile

        profile = o.calibration if isinstance(o.calibration, CalibrationProfile) else \
            CalibrationProfile.load(o.calibration)
        system = profile.apply(system, force=o.force_calibration)
    if o.tp is not None and not 1 <= o.tp <= system.count:
        raise HwsimError(f"--tp must be between 1 and the {system.count} device(s) of "
                         f"{system.name}, got {o.tp}")
    dtype = auto_dtype(system, o.dtype)
    graph, tp, dp = _plan(workload, o, system, dtype)
    if o.fuse:
        from workloads.transforms.fuse import fuse_epilogues

        graph = fuse_epilogues(graph)
    fp = _check_capacity(graph, system, tp) if o.check_capacity else footprint(graph)

    mapper = Mapper(system.device, MapOptions(dataflow=o.dataflow))
    coll_cache: dict[Op, OpCost] = {}

    def cost_of(op: Op) -> OpCost:
        if isinstance(op, Collective):
            c = coll_cache.get(op)
            if c is None:
                c = coll_cache[op] = collective_cost(op, system.device, mapper.options,
                                                     link=system.link, topology=system.topology)
            return c
        return mapper.cost(op)

    timeline = run_graph(graph, cost_of, progress)
    latency = max((t.end_s for t in timeline), default=0.0)

    ranks = tp * dp  # every rank of every replica runs this same per-rank program
    compute_j = 0.0
    mem_j: dict[str, float] = {}
    records = []
    for t in timeline:
        c = t.cost
        compute_j += c.energy.compute_j * ranks
        for k, v in c.energy.memory_j.items():
            mem_j[k] = mem_j.get(k, 0.0) + v * ranks
        records.append(OpRecord(
            name=t.name, kind=t.op.kind, device=t.device, stream=t.stream, start_s=t.start_s,
            end_s=t.end_s, latency_s=c.latency_s, energy_j=c.energy_j, bound=c.bound,
            flops=c.flops.total, dram_bytes=c.dram_bytes, compute_s=c.compute_s,
            memory_s=c.memory_s, utilization=c.utilization, compute_class=c.compute_class,
            describe=t.op.describe(), details=c.details, notes=c.notes))
    static_j = (system.device.power.static_w * system.count + system.extra_power_w) * latency
    energy = EnergyBreakdown(compute_j, FrozenMap(mem_j), static_j)

    warnings = []
    avg_power = energy.total_j / latency if latency else 0.0
    if avg_power > system.tdp_w * 1.001:
        warnings.append(
            f"average power {avg_power:.0f} W exceeds the TDP of {system.name} "
            f"({system.tdp_w:.0f} W): the part would throttle; the energy model (pJ/FLOP, "
            "pJ/byte) or the achievable rates are too optimistic for this workload")
    cost = run_cost(system, latency, energy.total_j, o.cost)
    if cost.mode == "unpriced":
        warnings.append(f"{system.name} has no price in its spec (cost.price or cost.hourly): "
                        "cost is unknown; set one with --set cost.price=...")
    m = graph.meta
    samples = float(m.get("samples", o.batch)) * dp
    tokens = float(m.get("tokens", 0.0)) * dp if m.get("family") in ("decoder", "encoder") \
        else 0.0
    peak, _ = system.device.peak(dtype, "matrix")
    band = None
    if profile is not None:
        from simulator.validate.calibrate import band_for

        band = band_for(profile, "e2e")
    meta = {"footprint": fp, "tp": tp, "dp": dp, "fused_ops": m.get("fused_ops", 0),
            "calibration": (profile.source or profile.arch) if profile else None,
            "latency_band_rel": band, "graph_ops": graph.count_ops(),
            "unique_ops": len(graph.unique_ops()), "dtype": dtype,
            "weight_dtype": o.weight_dtype, "seq": m.get("seq"), "context": m.get("context"),
            "family": m.get("family"), "params": m.get("params")}
    return Result(
        workload=graph.name, arch=system.name, phase=graph.phase, batch=int(m.get("batch", o.batch)),
        devices=system.count, latency_s=latency, energy=energy, cost=cost, samples=samples,
        tokens=tokens, memory_bytes=fp["total"], memory_capacity_bytes=system.device.dram.capacity_bytes,
        peak_flops=peak * ranks, records=tuple(records), warnings=tuple(warnings),
        meta=FrozenMap(meta))
