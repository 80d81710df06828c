"""Cost formulas shared by every family: streaming (memory-bound) ops and collectives.

Streaming ops (elementwise, norms, softmax, pooling, embedding gathers, memcpy) do little
arithmetic per byte, so every family runs them the same way: vector and special-function work
at the achievable vector rate, DRAM traffic at the achievable bandwidth, overlapped, plus a
fixed dispatch overhead. On a device without special-function units a transcendental costs
``params.special_cost[function]`` vector FLOPs (exp, tanh, erf, rsqrt, sqrt; default the
spec's ``energy.special_multiplier``). Families register these functions for their op kinds rather than
copying them.

``params.kind_efficiency`` ({op kind: factor}, default 1 for every kind) is the achievable
fraction of this estimate for one kind of kernel: a streaming op's vector time and memory time
are both divided by the factor of its kind (not the dispatch overhead), and each family's
attention cost likewise by ``kind_efficiency["attention"]`` (:func:`scale_busy`). It exists
because one vector and one bandwidth efficiency cannot describe a framework whose pointwise,
norm and softmax kernels run far below the roofline while its copies stream at full bandwidth
(PyTorch on a CPU). Factors above 1 are allowed (up to 4): the estimate is not a hard bound for
every kernel, e.g. an embedding gather whose rows stay cached. GEMM-like kinds (matmul,
conv2d) keep ``compute_efficiency`` per dtype.

Collectives use the alpha-beta model of :mod:`simulator.network`: each of the algorithm's
steps costs the link latency (alpha) plus its bytes over the per-direction link bandwidth
(beta); every algorithm that applies to where the group's devices sit (ring, tree,
hierarchical, torus, pairwise) is evaluated and the fastest is taken, as NCCL's tuner does.
A part whose spec sets ``params.collectives: nccl`` (the shipped NVIDIA GPUs) prices its
all-reduce, all-gather and reduce-scatter inside one node with NCCL's own model instead
(algorithms x protocols, NCCL's latency and bandwidth constants, ``params.nvlink_efficiency``
and ``params.nvls``: :class:`simulator.network.NcclModel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from simulator.arch.params import param as _arch_param
from simulator.arch.spec import Device, Link, MemoryLevel
from simulator.errors import MappingError
from simulator.frozen import FrozenMap
from simulator.mapping.base import EnergyParts, MapOptions, OpCost, make_cost
from simulator.network.collectives import NcclModel, collective
from simulator.network.topology import Route
from workloads.ops import Collective, Conv2d, MatMul, Op

__all__ = ["param", "achievable_bandwidth", "vector_time", "streaming_cost",
           "collective_time", "collective_cost", "STREAMING_KINDS", "GemmOperands",
           "gemm_operands", "kind_efficiency", "scale_busy", "special_vector_flops",
           "depthwise_vector_rate", "conv2d_by_gemm", "nccl_model"]

STREAMING_KINDS = ("elementwise", "norm", "softmax", "pool", "embedding", "memcpy")



@dataclass(frozen=True)
class GemmOperands:
    """A GEMM as the GPU and CPU mappers see it: shape, bytes of each operand as stored in
    DRAM (all batches) and bytes per element (A and C in the activation dtype, B in the
    weight dtype)."""

    m: int
    n: int
    k: int
    batch: int
    a_bytes: float
    b_bytes: float
    c_bytes: float
    a_elem: float
    b_elem: float
    c_elem: float

    @property
    def compulsory(self) -> float:
        return self.a_bytes + self.b_bytes + self.c_bytes


def gemm_operands(op: MatMul | Conv2d) -> GemmOperands:
    """The GEMM of a MatMul, or the implicit (im2col) GEMM of a Conv2d with groups as batch:
    the convolution's input is read once, not its im2col expansion."""
    if isinstance(op, MatMul):
        return GemmOperands(op.m, op.n, op.k, op.batch, op.a_bytes(), op.b_bytes(),
                            op.c_bytes(), op.dtype.bytes, op.b_dtype.bytes, op.dtype.bytes)
    groups, m, n, k = op.gemm_shape()
    wdt = op.weight_dtype or op.dtype
    return GemmOperands(m, n, k, groups, op.n * op.c * op.h * op.w * op.dtype.bytes,
                        op.weight_bytes(), op.bytes_written(), op.dtype.bytes, wdt.bytes,
                        op.dtype.bytes)


def param(device: Device, key: str, default: Any = None) -> Any:
    """A family parameter from the spec, else the family default of
    :mod:`simulator.arch.params` (with its source), else ``default``."""
    return _arch_param(device, key, default)


def kind_efficiency(device: Device, kind: str) -> float:
    """``params.kind_efficiency[kind]``: the factor an op of ``kind`` divides its busy time
    by (1.0 when the spec does not set it)."""
    table = device.params.get("kind_efficiency") or {}
    return float(table.get(kind, 1.0))


def _kind_note(kind: str, f: float) -> str:
    return (f"kind_efficiency[{kind}] = {f:.3g}: busy time (compute and memory) divided by it, "
            f"i.e. this kind of kernel reaches {f:.0%} of the modelled rate")


def scale_busy(cost: OpCost, device: Device, kind: str) -> OpCost:
    """``cost`` with its busy time (compute, memory, and the latency less the fixed overhead)
    divided by ``kind_efficiency[kind]``; the same object when the factor is 1.

    The bound is re-derived as :func:`~simulator.mapping.base.make_cost` does (the overhead may
    now dominate); energy is unchanged (it counts work and bytes, not time).
    """
    f = kind_efficiency(device, kind)
    if f == 1.0:
        return cost
    busy = cost.latency_s - cost.overhead_s
    latency = busy / f + cost.overhead_s
    compute_s, memory_s = cost.compute_s / f, cost.memory_s / f
    bound = cost.bound
    if bound in ("compute", "memory", "latency"):
        top = max(compute_s, memory_s)
        bound = ("latency" if cost.overhead_s > top else
                 "compute" if compute_s >= memory_s else "memory")
    util = min(cost.utilization * cost.latency_s / latency, 1.0) if latency > 0 else 0.0
    return replace(cost, latency_s=latency, compute_s=compute_s, memory_s=memory_s,
                   bound=bound, utilization=util, notes=(*cost.notes, _kind_note(kind, f)))


def achievable_bandwidth(device: Device) -> float:
    """DRAM bandwidth a streaming kernel reaches (B/s)."""
    return device.dram.bandwidth_Bps * param(device, "bandwidth_efficiency")


def vector_time(op: Op, device: Device) -> tuple[float, str, float]:
    """Seconds for an op's vector + special FLOPs; returns (time, compute class, peak)."""
    fl = op.flops()
    if fl.vector + fl.special == 0:
        vpeak, cls = device.peak(op.dtype, "vector")
        return 0.0, cls or op.dtype.compute_class, vpeak
    vpeak, cls = device.peak(op.dtype, "vector")
    if vpeak <= 0:
        raise MappingError(f"{device.name}: no vector unit can run {op.kind} in {op.dtype}")
    eff = param(device, "vector_efficiency")
    t = fl.vector / (vpeak * eff)
    speak, _ = device.peak(op.dtype, "special")
    if fl.special:
        if device.units("special") and speak > 0:
            t += fl.special / (speak * eff)
        else:  # no special-function unit: evaluate on vector lanes
            t += special_vector_flops(op, device) / (vpeak * eff)
    return t, cls, vpeak


def special_vector_flops(op: Op, device: Device) -> float:
    """Vector-FLOP equivalents of an op's transcendental functions evaluated on SIMD lanes:
    each evaluation costs ``params.special_cost[function]`` (default: the spec's
    ``energy.special_multiplier``), since a tanh or erf costs several times an exp there."""
    table = device.params.get("special_cost") or {}
    default = device.energy.special_multiplier
    return sum(n * float(table.get(fn, default)) for fn, n in op.special_evaluations().items())


def streaming_cost(op: Op, device: Device, options: MapOptions, *,
                   level: MemoryLevel | None = None, overhead_s: float | None = None,
                   traffic: tuple[float, Mapping[str, float], str] | None = None) -> OpCost:
    """Memory-bound op: vector work overlapped with compulsory DRAM traffic, plus dispatch.

    A family may pass ``level``, an on-chip level that holds the op's whole working set (the
    producer's output still resident there): the traffic is then served at that level's
    bandwidth and no DRAM bytes are counted. ``overhead_s`` replaces the spec's
    ``launch_overhead`` (for a family whose default dispatch cost is not zero). Both the
    vector and the memory time are divided by ``kind_efficiency[op.kind]`` (default 1).
    ``traffic`` = (memory seconds, bytes by level, where), from a family that places inputs
    and outputs itself (the CPU), replaces the single-level estimate.
    """
    compute_s, cls, vpeak = vector_time(op, device)
    nbytes = op.min_bytes
    bw = (level.bandwidth_Bps * param(device, "bandwidth_efficiency") if level
          else achievable_bandwidth(device))
    memory_s = nbytes / bw if traffic is None else traffic[0]
    f = kind_efficiency(device, op.kind)
    compute_s, memory_s = compute_s / f, memory_s / f
    overhead = param(device, "launch_overhead") if overhead_s is None else overhead_s
    ai = op.flops().total / nbytes if nbytes else math.inf
    where = (traffic[2] if traffic is not None else
             f"{bw / 1e9:.0f} GB/s achievable {level.name} bandwidth (working set resident "
             f"in the {level.capacity_bytes / 2**20:.3g} MiB {level.name})" if level
             else f"{bw / 1e9:.0f} GB/s achievable DRAM bandwidth")
    notes = (
        f"{op.kind}: {op.flops().total:.3g} FLOP over {nbytes:.3g} B "
        f"(arithmetic intensity {ai:.2f} FLOP/B, far below the ridge point "
        f"{device.ridge_point(op.dtype):.0f} FLOP/B) -> streams at {where}",
    ) + ((_kind_note(op.kind, f),) if f != 1.0 else ())
    by_level = (dict(traffic[1]) if traffic is not None else
                {device.dram.name: 0.0, level.name: nbytes} if level
                else {device.dram.name: nbytes})
    return make_cost(device, op, compute_s=compute_s, memory_s=memory_s, overhead_s=overhead,
                     bytes_by_level=by_level, compute_class=cls,
                     peak_flops=vpeak, notes=notes)


def nccl_model(device: Device) -> NcclModel | None:
    """NCCL's model for a part whose spec sets ``params.collectives: nccl``, else None (the
    alpha-beta model)."""
    if param(device, "collectives", "alpha-beta") != "nccl":
        return None
    eff = float(param(device, "nvlink_efficiency", 0.8))
    dram = device.dram
    return NcclModel(eff, bool(param(device, "nvls", False)),
                     int(param(device, "nccl_channels", 0) or 0),
                     local_Bps=dram.bandwidth_Bps * float(param(device, "bandwidth_efficiency")),
                     local_latency_s=dram.latency_s,
                     tuner_bus_Bps=device.link.bandwidth_Bps * eff if device.link else 0.0,
                     # the copy loop unrolls 8 deep from sm80, 4 before (COLL_UNROLL)
                     unroll=4 if nccl_generation(device) == "volta" else 8,
                     generation=nccl_generation(device), ll128=nccl_ll128(device))


def nccl_ll128(device: Device) -> bool:
    """Whether NCCL enables its LL128 protocol on the part: by default only on compute
    capability 7.0, 8.0, 9.0 and 10.0 (tuning.cc: "Enable LL128 by default only on
    Volta/Ampere/Hopper/Blackwell+NVLink. Other cases are not tested and may cause silent
    data corruption"); a spec without ``params.compute_capability`` keeps it on."""
    cc = param(device, "compute_capability", None)
    return cc is None or float(cc) in (7.0, 8.0, 9.0, 10.0)


def nccl_generation(device: Device) -> str:
    """NCCL's table row for the part (tuning.cc's compCapIndex): "volta" below compute
    capability 8.0, "ampere" below 9.0, else "hopper"; a spec without
    ``params.compute_capability``: "hopper" where it sets ``nvls`` (NVLink SHARP exists from
    sm90, NVSwitch 3), else "ampere"."""
    cc = param(device, "compute_capability", None)
    if cc is None:
        return "hopper" if param(device, "nvls", False) else "ampere"
    cc = float(cc)
    return "volta" if cc < 8.0 else "ampere" if cc < 9.0 else "hopper"


def collective_time(op: Collective, link: Link, topology: str = "switch"
                    ) -> tuple[float, float, str]:
    """Alpha-beta time of a collective over ``op.devices`` ranks of one node joined by
    ``link`` in ``topology`` (the fastest applicable algorithm of
    :mod:`simulator.network.collectives`): returns (seconds, bytes sent per rank, algorithm)."""
    r = collective(op.collective, op.bytes, Route.in_node(op.devices, link, topology))
    return r.time_s, r.bytes_sent, r.algorithm


def collective_cost(op: Op, device: Device, options: MapOptions,
                    link: Link | None = None, topology: str = "switch", *,
                    route: Route | None = None, links: tuple[str, ...] = (),
                    algorithm: str | None = None) -> OpCost:
    """Collective over the device's own link (or a system link passed by the engine), or over
    ``route`` (where the group's devices sit: :func:`simulator.network.route_for`), whose
    physical ``links`` (:func:`simulator.network.links_used`) go into the details.
    ``algorithm`` forces one (ring, tree, hierarchical, torus, pairwise, p2p)."""
    assert isinstance(op, Collective)
    if route is None:
        link = link or device.link
        if link is None and op.devices > 1:
            article = "an" if op.collective[:1] in ("a", "e", "i", "o", "u") else "a"
            raise MappingError(f"{device.name}: {article} {op.collective} over {op.devices} "
                               "devices needs a link; the spec has none (add link: to the part "
                               "or use a system)")
        route = Route.in_node(op.devices, link or Link("none", 1.0), topology)
    ct = collective(op.collective, op.bytes, route, algorithm, nccl_model(device))
    main = route.net if route.nodes > 1 and route.net is not None else route.intra
    name = main.name if main is not None else "none"
    t, sent, algo = ct.time_s, ct.bytes_sent, ct.algorithm
    reduce_s, cls, vpeak = vector_time(op, device)
    by_link = {name: 0.0, **ct.bytes_by_link()}
    energy = {k: 0.0 for k in by_link} | ct.energy_by_link()
    where = (f"{name} ({main.bandwidth_Bps / 1e9:.0f} GB/s per direction, "
             f"{main.latency_s * 1e6:.1f} us latency)" if main is not None else name)
    if route.nodes > 1:
        where += (f", {route.nodes} nodes x {route.per_node} rank(s), {route.nics} NIC(s) per "
                  f"node{', across leaves/rails' if route.cross_leaf else ''}")
    if ct.protocol:
        algo_word = f"NCCL {algo}/{ct.protocol}"
    else:
        algo_word = f"{algo} algorithm"
    notes = (f"{op.collective} of {op.bytes:.3g} B over {op.devices} ranks, {algo_word} on "
             f"{where}: each rank sends {sent:.3g} B"
             + (" on average (one end of each pair sends, the other receives)"
                if op.collective == "sendrecv" else ""), *ct.describe())
    details = {"algorithm": algo, "link": name, "bytes_sent": sent, "links": tuple(links),
               "alpha_s": ct.alpha_s, "beta_s": ct.beta_s, "phases": ct.describe(),
               "protocol": ct.protocol, "launch_s": 0.0}
    c = make_cost(device, op, compute_s=reduce_s, memory_s=0.0, overhead_s=0.0,
                  latency_s=max(t, reduce_s), bytes_by_level=by_link,
                  compute_class=cls, peak_flops=vpeak, details=details, notes=notes)
    bound = "latency" if t == 0 or ct.alpha_s > t / 2 else "communication"
    return replace(c, bound=bound, memory_s=t,
                   energy=EnergyParts(c.energy.compute_j, FrozenMap(energy)))


# -- convolution: one rule for every family that runs GEMMs on matrix units --------------------
def depthwise_vector_rate(op: Conv2d, device: Device) -> tuple[float, float, str, float]:
    """A depthwise conv has too little reuse for matrix units: its MACs run on the vector
    units. Returns ``(compute seconds, achievable rate, compute class, vector peak)``.

    Raises
    ------
    MappingError
        If no vector unit can run the dtype.
    """
    vpeak, cls = device.peak(op.dtype, "vector")
    if vpeak <= 0:
        raise MappingError(f"{device.name}: no vector unit can run a {op.dtype} depthwise conv")
    rate = vpeak * param(device, "vector_efficiency")
    return op.flops().total / rate, rate, cls, vpeak


def conv2d_by_gemm(op: Op, device: Device, options: MapOptions, *,
                   depthwise: Callable[[Conv2d, Device, MapOptions], OpCost],
                   gemm: Callable[[Conv2d, GemmOperands, str], OpCost],
                   gemm_label: Callable[[int, int, int, int, Any], str]) -> OpCost:
    """The conv2d rule the GPU and CPU families share: a depthwise conv is a streaming kernel
    (the family's ``depthwise``), any other conv an implicit GEMM with its groups as the batch
    (the family's ``gemm`` on :func:`gemm_operands`, described by its ``gemm_label``)."""
    assert isinstance(op, Conv2d)
    if op.groups == op.c and op.groups > 1:
        return depthwise(op, device, options)
    groups, m, n, k = op.gemm_shape()
    label = (f"conv {op.r}x{op.s}/{op.stride} {op.c}->{op.k}"
             f"{f' in {groups} groups' if groups > 1 else ''} as implicit "
             + gemm_label(m, n, k, groups, op.dtype))
    return gemm(op, gemm_operands(op), label)
