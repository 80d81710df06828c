"""CPU mapper: cache-blocked GEMM on the SIMD units, warm caches, a framework dispatch cost.

Every op is one framework op (e.g. one torch CPU kernel); times are seconds, traffic bytes.
Parameters come from the spec's ``params`` (defaults in brackets): ``threads`` [the cores],
``compute_efficiency`` {class: fraction} [0.7, x0.7 for a dtype the SIMD units lack],
``bandwidth_efficiency`` [0.85], ``vector_efficiency`` [0.6], ``launch_overhead`` [5 us],
``kind_efficiency`` {kind: factor} [1.0] (streaming kinds and attention; see
:mod:`simulator.mapping.common`).
Memory-system and library behaviour of an eager framework (PyTorch) on Linux, each a param:
``write_allocate`` [true], ``page_fault_threshold`` [32 MiB], ``page_fault_bandwidth``
[2 GB/s per thread], ``core_bandwidth`` [none], ``gemv_threads`` [threads],
``pack_bandwidth`` [none: free], ``maxpool_cycles`` [none: the vector model],
``fused_epilogue``
[false], ``eager_composites`` [false]; see "Memory traffic" and "GEMM" below.
The cores are the count of the vector (SIMD) unit; memory levels are listed outermost first
(DRAM, then e.g. L3, L2, L1) with device totals, as for every family: a core's share of a
private level is its capacity / cores.

Memory traffic (every op)
    * Inputs and output are placed separately. Inputs are warm in the innermost cache that
      holds their footprint in half its capacity (times ``rotated_sets`` under a measurement loop) and
      otherwise stream from DRAM. The output goes to a buffer the allocator just recycled
      (glibc reuses the chunk the previous op freed), so it stays in the cache level that holds
      it whatever the input rotation; an output larger than that is written to DRAM, and a
      store to a line not in any cache first reads it (x86 write-allocate, ``write_allocate``),
      so it moves twice its bytes. In-place updates (Adam) write lines they just read.
    * A fresh output above ``page_fault_threshold`` (glibc's largest dynamic mmap threshold,
      DEFAULT_MMAP_THRESHOLD_MAX = 32 MiB on 64-bit) is a new mmap on every call: each 4 KiB
      page faults and is zeroed by the kernel on first touch, at ``page_fault_bandwidth`` per
      thread. Measured on the development VM: a 64 MiB ``torch.add`` output costs +29.6 ms
      (2.3 GB/s with 2 threads) over writing into a preallocated one. This is added to the
      op's fixed overhead (it is OS time, not the kernel's).
    * DRAM bandwidth is ``bandwidth * bandwidth_efficiency``, capped at ``threads used x
      core_bandwidth`` when the spec sets the bandwidth one core can pull (a core's
      outstanding-miss buffers bound it: ~16 GB/s on Zen 3).

GEMM (``matmul``; ``conv2d`` as an implicit GEMM with its groups as the batch)
    * Peak = ``device.peak(dtype, "matrix")`` (SIMD FMA lanes x cores x clock, or AMX-style
      matrix units where the spec has them), scaled by the threads that get work: a thread
      needs at least a 32 x 32 block of C, so ``used = min(threads, cores,
      batch * ceil(M/32) * ceil(N/32))``. ``compute = 2*M*N*K*batch / (peak * used/cores *
      efficiency)``. A dtype with no native rate (bf16 without AVX512_BF16) runs as fp32 after
      conversion in the packing routines, at 70% of the fp32 efficiency.
    * Blocking (Goto/BLIS): an ``mc x kc`` block of A fills half of a core's L2 share
      (``mc = kc = sqrt(L2 share / 2 / elem)``), a ``kc x nc`` panel of B half of the L3.
      DRAM traffic: B is read once, A once per B panel (``ceil(N / nc)`` times) and C once if
      an ``M x nc`` panel of it stays in (half) the L3, else read and written on each of the
      ``ceil(K / kc)`` passes (``2 * passes - 1``); never below the compulsory bytes.
    * A working set (A+B+C) that fits in half of a cache level is served warm from the
      innermost such level at its bandwidth, with no DRAM bytes: a small op's inputs were just
      written by its producer, or the op runs in a loop as when it is measured. Otherwise
      ``memory = DRAM bytes / (DRAM bandwidth * bandwidth_efficiency)``.
    * ``latency = max(compute, memory) + launch_overhead`` (+ page faults of a fresh C).
    * GEMV (M = 1 or N = 1): no blocking, the matrix streams once; BLAS libraries run a single
      GEMV on ``gemv_threads`` threads (MKL's sgemv on the development VM: one), and a batch of
      GEMVs on up to one thread per GEMV, so its bandwidth is capped by ``core_bandwidth`` per
      thread used.
    * Packing the weight of a linear layer (``x @ W^T``, ``weight=True``; M > 1): BLAS copies
      each ``kc x nc`` panel of the transposed weight into a contiguous buffer before the
      micro-kernel runs, once per call, at ``pack_bandwidth`` (bytes of B per second, all
      threads); not overlapped with the FMAs. A convolution pays the same for its filter:
      oneDNN reorders the plain (OIHW) weight into its blocked layout on every eager call
      (ResNet-18 batch 1 on the development VM: end-to-end error -31.5% without it, -17.6%
      with it; the 150-op suite 21.8% -> 19.8% MAPE). This fixed ``K*N`` cost is what makes skinny
      GEMMs slow: the rate is ``peak_eff * M / (M + m0)`` with ``m0 = peak_eff * t_pack / 2``.
      Measured on the development VM (MKL, K = N = 2048, experiments/validation/probe_cpu.py):
      a pack at 7.3 GB/s plus FMAs at ~92% of peak reproduce M = 2..256 within 10%
      (M = 8: 16% of peak, 32: 42%, 128: 74%, 256: 82%).
    * Epilogue (``op.epilogue``): an eager framework runs each pointwise fn as its own pass
      over C after the GEMM (in place: read and write C, plus any extra input) at the vector
      rate and the bandwidth of the level holding C; a runtime that fuses them (oneDNN
      post-ops, OpenVINO) sets ``fused_epilogue: true`` and pays only the vector work.

Weight sparsity (an op's :class:`~workloads.ops.Sparsity`): the weight is read in its
compressed form (the op's ``b_bytes``/``weight_bytes``: values kept plus index metadata), so
DRAM traffic, cache residency and the packing copy use the compressed bytes; the blocked
panels are dense once packed and the FMAs run the dense GEMM. No sparse SIMD kernel is
modelled (libraries such as DeepSparse do speed unstructured sparsity up on CPUs; that is
not costed here), so only memory-bound GEMMs, e.g. decode GEMVs, get faster.

Max pooling with ``maxpool_cycles``: PyTorch's channels-first (NCHW) CPU max-pool kernel is
scalar and tracks the argmax index, so it costs that many core cycles per window element
(spread over the threads) instead of vector work; measured by the probe.

With ``eager_composites``, ops that an eager framework runs as several kernels stream their
tensors several times, each pass writing a fresh temporary (so page faults apply per pass):
RMSNorm (PyTorch's CPU ``F.rms_norm`` is pow, mean, add, rsqrt, mul, mul plus a dtype copy:
the tensor read 5 times and written 4 times, profiled) and SwiGLU (``silu(gate) * up``: gate
and up read, a temporary written and read back, the output written). LayerNorm, BatchNorm,
softmax and the other pointwise ops have fused kernels.

Attention runs as PyTorch's CPU flash-attention kernel (see :func:`attention_cost`). Depthwise convolutions (one input channel per
filter) are vectorised over channels like a streaming op. Streaming ops use
:func:`simulator.mapping.common.streaming_cost`, from the innermost cache that holds their
working set when one does (not embedding gathers or copies across devices); collectives use
:func:`simulator.mapping.common.collective_cost`. Under a measurement loop over rotated input
sets (``MapOptions.rotated_sets``, as the validation harness runs ops) a working set is warm
only if all the sets together fit (see :func:`_resident_level`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from simulator.arch.params import default
from simulator.arch.spec import Device, MemoryLevel
from simulator.errors import MappingError
from simulator.frozen import FrozenMap
from simulator.mapping.base import MapOptions, OpCost, make_cost, register_cost
from simulator.mapping.common import (
    STREAMING_KINDS,
    GemmOperands,
    collective_cost,
    conv2d_by_gemm,
    depthwise_vector_rate,
    gemm_operands,
    kind_efficiency,
    param,
    scale_busy,
    special_vector_flops,
    streaming_cost,
    vector_time,
)
from simulator.units import format_quantity
from workloads.dtypes import DType
from workloads.ops import EPILOGUE_FNS, Attention, Conv2d, Elementwise, MatMul, Norm, Op, Pool

__all__ = ["FAMILY", "CpuGemmPlan"]

FAMILY = "cpu"
_PAR_BLOCK = 32            # the least block of C worth a thread
_RESIDENT_FRACTION = 0.5   # a working set this fraction of a cache survives between ops
_CACHE_SHARE = 0.5         # a blocked operand takes this fraction of its cache
# eager composites: (reads in units of the op's input bytes, writes in units of its output
# bytes, extra vector passes) -- see the module docstring
_EAGER_COMPOSITES = {"rmsnorm": (5.0, 4.0, 4.0), "swiglu": (1.5, 2.0, 0.0)}


# -- device facts ----------------------------------------------------------------------------
def _cores(device: Device) -> int:
    units = device.units("vector") or device.units("matrix") or device.compute
    return max(1, max(u.count for u in units))


def _vector_units(device: Device) -> tuple[Any, ...]:
    return device.units("vector") or device.units("matrix") or device.compute


def _threads(device: Device) -> int:
    return max(1, min(int(device.params.get("threads", _cores(device))), _cores(device)))


def _launch(device: Device) -> float:
    return float(param(device, "launch_overhead"))


def _efficiency(device: Device, cls: str, op_cls: str) -> float:
    table = device.params.get("compute_efficiency") or {}
    if op_cls in table:
        return float(table[op_cls])
    base = float(table.get(cls, default(device.family, "compute_efficiency")))
    return base if cls == op_cls else base * float(param(device, "emulation_penalty"))


def _caches(device: Device) -> tuple[MemoryLevel, ...]:
    return tuple(device.memory[1:])


def _named(device: Device, names: tuple[str, ...]) -> MemoryLevel | None:
    return next((m for m in _caches(device) if m.name.lower() in names), None)


def _blocking_levels(device: Device) -> tuple[MemoryLevel | None, MemoryLevel | None]:
    """(shared last-level cache, per-core L2) for blocking; either may be missing."""
    caches = _caches(device)
    llc = _named(device, ("l3", "llc", "slc")) or (caches[0] if caches else None)
    l2 = _named(device, ("l2",)) or (caches[1] if len(caches) > 1 else llc)
    return llc, l2


def _resident_level(device: Device, nbytes: float, options: MapOptions | None = None
                    ) -> MemoryLevel | None:
    """The innermost cache level that holds a working set warm, if any. In a measurement loop
    over rotated input sets (``options.rotated_sets``) the footprint between two uses of the
    same bytes is that many times the working set, and that is what must fit."""
    footprint = nbytes * ((options.rotated_sets if options else None) or 1)
    for lvl in reversed(_caches(device)):
        if footprint <= lvl.capacity_bytes * _RESIDENT_FRACTION:
            return lvl
    return None


def _bw(device: Device, lvl: MemoryLevel, threads: int | None = None) -> float:
    """Achievable bandwidth of a level; DRAM is capped at ``threads x core_bandwidth`` when
    the spec sets ``core_bandwidth`` (all threads when ``threads`` is None)."""
    bw = lvl.bandwidth_Bps * param(device, "bandwidth_efficiency")
    core_bw = device.params.get("core_bandwidth")
    if core_bw and lvl is device.dram:
        bw = min(bw, float(core_bw) * (threads or _threads(device)))
    return bw


def _write_allocate(device: Device) -> bool:
    return bool(device.params.get("write_allocate", True))


def _fault_s(device: Device, fresh_bytes: float, threads: int | None = None) -> float:
    """Seconds to fault in and zero a fresh allocation (0 below the mmap threshold)."""
    threshold = float(param(device, "page_fault_threshold"))
    if fresh_bytes < threshold:  # malloc adds a header: exactly 32 MiB is mmapped too
        return 0.0
    bw = float(param(device, "page_fault_bandwidth"))
    return fresh_bytes / (bw * (threads or _threads(device)))


@dataclass(frozen=True)
class _Traffic:
    """Where an op's inputs come from and its output goes, and what that costs."""

    memory_s: float
    by_level: dict[str, float]
    in_level: str | None     # cache holding the inputs (None: DRAM)
    out_level: str | None    # cache holding the output (None: DRAM)
    fault_s: float

    def describe(self, device: Device) -> str:
        dram = device.dram.name
        return (f"inputs from {self.in_level or dram}, output to {self.out_level or dram}"
                + (" (write-allocate: read before written)" if self.out_level is None
                   and _write_allocate(device) else "")
                + (f"; fresh output pages fault in: +{_t(self.fault_s)}" if self.fault_s else ""))


def _traffic(device: Device, in_bytes: float, out_bytes: float,
             options: MapOptions | None = None, *, inputs_cold: bool = False,
             in_place: bool = False, fresh_output: bool = True, threads: int | None = None,
             out_passes: float = 1.0, in_passes: float = 1.0,
             fresh_bytes: float | None = None) -> _Traffic:
    """Memory time of reading ``in_bytes`` and writing ``out_bytes`` (see "Memory traffic").

    ``inputs_cold``: the inputs are never cached (a gather from a large table, a copy from
    another device). ``in_place``: the output overwrites lines just read (no write-allocate,
    no fresh pages). ``in_passes``/``out_passes``: times the op streams them (unfused
    composites). ``fresh_bytes``: the part of the output that is a new allocation (default
    all of it)."""
    in_lvl = None if inputs_cold else _resident_level(device, in_bytes, options)
    # a recycled output buffer stays cached whatever the input rotation; an existing
    # destination (a copy's, fresh_output=False) rotates with the inputs
    out_lvl = (in_lvl if in_place else
               _resident_level(device, out_bytes, None if fresh_output else options))
    dram = device.dram
    by_level: dict[str, float] = {dram.name: 0.0}
    seconds = 0.0
    # a composite's extra reads are of its own temporaries (recycled, like the output)
    for nbytes, lvl, passes, write in ((in_bytes, in_lvl, 1.0, False),
                                       (in_bytes, out_lvl, in_passes - 1.0, False),
                                       (out_bytes, out_lvl, out_passes, True)):
        if nbytes <= 0 or passes <= 0:
            continue
        moved = nbytes * passes
        if write and lvl is None and _write_allocate(device) and not in_place:
            moved *= 2
        target = lvl or dram
        by_level[target.name] = by_level.get(target.name, 0.0) + moved
        seconds += moved / _bw(device, target, threads)
    fault = 0.0
    if fresh_output and not in_place:
        fault = out_passes * _fault_s(device, out_bytes if fresh_bytes is None
                                      else fresh_bytes, threads)
    return _Traffic(seconds, by_level, in_lvl.name if in_lvl else None,
                    out_lvl.name if out_lvl else None, fault)


# -- GEMM ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuGemmPlan:
    """Blocking, threads and cost of one GEMM on a CPU (seconds, bytes)."""

    mc: int
    kc: int
    nc: int
    threads: int
    cores: int
    a_reads: int
    c_passes: int
    compute_s: float
    memory_s: float
    dram_bytes: float
    bytes_by_level: dict[str, float]
    resident: str | None
    peak: float
    cls: str
    efficiency: float
    path: str = "blocked"          # blocked | gemv
    out_resident: str | None = None
    fault_s: float = 0.0
    pack_s: float = 0.0            # packing the transposed weight (part of compute_s)

    @property
    def busy_s(self) -> float:
        return max(self.compute_s, self.memory_s)


def _plan(device: Device, g: GemmOperands, dtype: DType, options: MapOptions | None = None,
          packs_b: bool = False) -> CpuGemmPlan:
    peak, cls = device.peak(dtype, "matrix")
    if peak <= 0:
        raise MappingError(f"{device.name}: no SIMD or matrix unit can run {dtype} "
                           f"(add a rate for {dtype.compute_class} to a compute unit)")
    cores, threads = _cores(device), _threads(device)
    gemv = min(g.m, g.n) == 1
    path = "gemv" if gemv else "blocked"
    eff = _efficiency(device, cls, dtype.compute_class)
    if gemv:
        single = int(device.params.get("gemv_threads", threads))
        used = max(1, min(threads, g.batch if g.batch > 1 else single))
    else:
        work = g.batch * math.ceil(g.m / _PAR_BLOCK) * math.ceil(g.n / _PAR_BLOCK)
        used = max(1, min(threads, work))
    compute_s = 2.0 * g.m * g.n * g.k * g.batch / (peak * used / cores * eff)
    pack_s = 0.0
    pack_bw = device.params.get("pack_bandwidth")
    if pack_bw and packs_b and not gemv:
        pack_s = g.b_bytes / float(pack_bw)
        compute_s += pack_s

    llc, l2 = _blocking_levels(device)
    if llc is None or l2 is None or gemv:  # nothing to block for (or a single stream)
        mc, kc, nc, a_reads, c_passes = g.m, g.k, g.n, 1, 1
        shared = g.compulsory
    else:
        share = l2.capacity_bytes / cores * _CACHE_SHARE
        kc = max(1, min(g.k, math.isqrt(int(share / g.a_elem))))
        mc = max(1, min(g.m, int(share // (g.a_elem * kc))))
        nc = max(1, min(g.n, int(llc.capacity_bytes * _CACHE_SHARE // (g.b_elem * kc))))
        a_reads = math.ceil(g.n / nc)
        c_fits = g.m * nc * g.c_elem <= llc.capacity_bytes * _CACHE_SHARE
        c_passes = 1 if c_fits else 2 * math.ceil(g.k / kc) - 1
        # the B panel is read from the LLC once per block of A
        shared = g.b_bytes * math.ceil(g.m / mc) + g.a_bytes * a_reads + g.c_bytes * c_passes

    in_lvl = _resident_level(device, g.a_bytes + g.b_bytes, options)
    out_lvl = _resident_level(device, g.c_bytes)
    dram_name = device.dram.name
    by_level: dict[str, float] = {dram_name: 0.0}
    memory_s = 0.0
    if in_lvl is not None:
        by_level[in_lvl.name] = g.a_bytes + g.b_bytes
        memory_s += (g.a_bytes + g.b_bytes) / _bw(device, in_lvl, used)
    else:
        moved = g.b_bytes + g.a_bytes * a_reads
        by_level[dram_name] += moved
        memory_s += moved / _bw(device, device.dram, used)
    if out_lvl is not None:
        by_level[out_lvl.name] = by_level.get(out_lvl.name, 0.0) + g.c_bytes
        memory_s += g.c_bytes / _bw(device, out_lvl, used)
    else:
        moved = g.c_bytes * (c_passes + (1 if _write_allocate(device) else 0))
        by_level[dram_name] += moved
        memory_s += moved / _bw(device, device.dram, used)
    if by_level[dram_name] and llc is not None:
        by_level[llc.name] = max(by_level.get(llc.name, 0.0), shared, by_level[dram_name])
    return CpuGemmPlan(mc, kc, nc, used, cores, a_reads, c_passes, compute_s, memory_s,
                       by_level[dram_name], by_level, in_lvl.name if in_lvl else None,
                       peak, cls, eff, path, out_lvl.name if out_lvl else None,
                       _fault_s(device, g.c_bytes, used), pack_s)


def _b(x: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} B"


def _t(x: float) -> str:
    return format_quantity(x, "s")


def _gemm_label(m: int, n: int, k: int, batch: int, dtype: DType) -> str:
    shape = f"{m} x {n} x {k}" + (f" x{batch} batched" if batch > 1 else "")
    what = f"{'M' if m == 1 else 'N'}=1 GEMV" if min(m, n) == 1 else "GEMM"
    return f"{what}: {shape} ({dtype})"


def _gemm_notes(device: Device, label: str, g: GemmOperands, p: CpuGemmPlan, dtype: DType
                ) -> tuple[str, ...]:
    flops = 2.0 * g.m * g.n * g.k * g.batch
    rate = p.peak * p.threads / p.cores * p.efficiency
    ai = flops / g.compulsory if g.compulsory else math.inf
    emulated = (f"; {dtype.compute_class} has no native rate here, so it runs as {p.cls} "
                f"after conversion" if p.cls != dtype.compute_class else "")
    notes = [f"{label} on {p.threads} of {p.cores} cores: {format_quantity(flops, 'FLOP')} at "
             f"{format_quantity(rate, 'FLOP/s')} achievable ({p.efficiency:.0%} of the "
             f"{format_quantity(p.peak * p.threads / p.cores, 'FLOP/s')} {p.cls} peak of those "
             f"cores){emulated}; arithmetic intensity {ai:.3g} FLOP/B vs ridge "
             f"{device.ridge_point(dtype):.0f}"]
    if p.pack_s:
        notes.append(f"packing the transposed weight ({_b(g.b_bytes)}) at "
                     f"{format_quantity(float(device.params['pack_bandwidth']), 'B/s')}: "
                     f"{_t(p.pack_s)} before the FMAs (the fixed cost that makes skinny "
                     f"GEMMs slow)")
    llc, l2 = _blocking_levels(device)
    if p.path == "gemv":
        notes.append(f"GEMV: the matrix streams once on {p.threads} thread"
                     f"{'s' if p.threads > 1 else ''} (no blocking)")
    elif llc is not None and l2 is not None:
        notes.append(
            f"cache blocking: {p.mc}x{p.kc} blocks of A ({_b(p.mc * p.kc * g.a_elem)}) in "
            f"each core's {_b(l2.capacity_bytes / p.cores)} share of {l2.name}, {p.kc}x{p.nc} "
            f"panels of B ({_b(p.kc * p.nc * g.b_elem)}) in the {_b(llc.capacity_bytes)} "
            f"{llc.name}: A read {p.a_reads}x, C {'written once' if p.c_passes == 1 else f'read and written over {p.c_passes} passes'}")
    else:
        notes.append("the spec lists no cache levels: operands counted once (compulsory)")
    ins = g.a_bytes + g.b_bytes
    if p.resident:
        lvl = next(m for m in device.memory if m.name == p.resident)
        notes.append(f"inputs {_b(ins)} fit in the {_b(lvl.capacity_bytes)} {lvl.name} (at "
                     f"most {_RESIDENT_FRACTION:.0%} of it): served warm at "
                     f"{format_quantity(_bw(device, lvl), 'B/s')} achievable")
    else:
        notes.append(f"inputs {_b(ins)} stream from DRAM at "
                     f"{format_quantity(_bw(device, device.dram, p.threads), 'B/s')} achievable "
                     f"on {p.threads} thread{'s' if p.threads > 1 else ''}")
    wa = " (write-allocate: each line read before it is written)" if _write_allocate(device) else ""
    notes.append(f"output {_b(g.c_bytes)} " + (
        f"to a recycled buffer in {p.out_resident}" if p.out_resident
        else f"to DRAM{wa}") + f"; DRAM traffic {_b(p.dram_bytes)} "
        f"({p.dram_bytes / g.compulsory:.2f}x compulsory)")
    return tuple(notes)


def _details(p: CpuGemmPlan, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"blocking": {"mc": p.mc, "kc": p.kc, "nc": p.nc},
                         "threads": p.threads, "cores": p.cores, "a_reads": p.a_reads,
                         "c_passes": p.c_passes, "dram_bytes": p.dram_bytes,
                         "resident": p.resident, "output_resident": p.out_resident,
                         "efficiency": p.efficiency, "path": p.path,
                         "page_fault_s": p.fault_s, "pack_s": p.pack_s}
    d.update(extra or {})
    return d


def _epilogue(op: Op, device: Device, g: GemmOperands, p: CpuGemmPlan,
              options: MapOptions | None) -> tuple[float, dict[str, float], str | None]:
    """(seconds, bytes by level, note) of the pointwise epilogue after the GEMM: one in-place
    pass over C per fn in an eager framework, only the vector work when fused."""
    fns: tuple[str, ...] = tuple(getattr(op, "epilogue", ()) or ())
    if not fns:
        return 0.0, {}, None
    vpeak, _ = device.peak(op.dtype, "vector")
    if vpeak <= 0:
        raise MappingError(f"{device.name}: no vector unit for the {'+'.join(fns)} epilogue")
    fl = op.flops()
    bias = g.m * g.n * g.batch if getattr(op, "bias", False) else 0.0
    vector_s = ((fl.vector - bias) + special_vector_flops(op, device)) / (
        vpeak * p.threads / p.cores * param(device, "vector_efficiency"))
    if device.params.get("fused_epilogue", False):
        return vector_s, {}, f"epilogue {'+'.join(fns)} fused into the GEMM: {_t(vector_s)}"
    extra = sum(EPILOGUE_FNS[f][0] for f in fns)
    c_lvl = next((m for m in device.memory if m.name == p.out_resident), None)
    x_lvl = _resident_level(device, g.c_bytes * extra, options) if extra else None
    by_level: dict[str, float] = {}
    memory_s = 0.0
    for lvl, nbytes in ((c_lvl, 2.0 * g.c_bytes * len(fns)), (x_lvl, g.c_bytes * extra)):
        if nbytes:
            target = lvl or device.dram
            by_level[target.name] = by_level.get(target.name, 0.0) + nbytes
            memory_s += nbytes / _bw(device, target, p.threads)
    seconds = max(vector_s, memory_s)
    note = (f"epilogue {'+'.join(fns)} runs unfused (eager framework): {len(fns)} in-place "
            f"pass{'es' if len(fns) > 1 else ''} over the {_b(g.c_bytes)} output in "
            f"{(c_lvl or device.dram).name}, {_t(seconds)}")
    return seconds, by_level, note


def _gemm_cost(op: Op, device: Device, g: GemmOperands, dtype: DType, label: str,
               extra: dict[str, Any] | None = None, options: MapOptions | None = None) -> OpCost:
    p = _plan(device, g, dtype, options,
              packs_b=isinstance(op, Conv2d) or (isinstance(op, MatMul) and op.weight))
    launch = _launch(device)
    epi_s, epi_bytes, epi_note = _epilogue(op, device, g, p, options)
    by_level = dict(p.bytes_by_level)
    for name, x in epi_bytes.items():
        by_level[name] = by_level.get(name, 0.0) + x
    notes = _gemm_notes(device, label, g, p, dtype)
    if p.fault_s:
        notes += (f"the {_b(g.c_bytes)} output is a fresh mmap (above the "
                  f"{_b(float(param(device, 'page_fault_threshold')))}"
                  f" threshold): its pages fault in on first touch, +{_t(p.fault_s)}",)
    if epi_note:
        notes += (epi_note,)
    sp = getattr(op, "sparsity", None)
    if sp is not None:
        notes += (f"weights {sp.label} sparse: read compressed from memory "
                  f"({op.weight_stored_fraction:.1%} of their dense bytes: values kept plus "  # type: ignore[attr-defined]
                  f"index metadata) and expanded while packing; the FMAs run the dense GEMM "
                  f"(no sparse SIMD kernel is modelled, so no compute speedup)",)
    overhead = launch + p.fault_s
    return make_cost(device, op, compute_s=p.compute_s + epi_s, memory_s=p.memory_s + epi_s,
                     overhead_s=overhead, latency_s=p.busy_s + epi_s + overhead,
                     bytes_by_level=by_level, compute_class=p.cls, peak_flops=p.peak,
                     details=_details(p, {**(extra or {}), "epilogue_s": epi_s}), notes=notes)


def _matmul_gemm(op: MatMul) -> GemmOperands:
    return gemm_operands(op)


# -- op kinds --------------------------------------------------------------------------------
@register_cost("matmul", FAMILY)
def matmul_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    assert isinstance(op, MatMul)
    return _gemm_cost(op, device, _matmul_gemm(op), op.dtype,
                      _gemm_label(op.m, op.n, op.k, op.batch, op.dtype), options=options)


def _depthwise(op: Conv2d, device: Device, options: MapOptions | None = None) -> OpCost:
    """Depthwise conv: vectorised over channels, a streaming kernel."""
    compute_s, rate, cls, vpeak = depthwise_vector_rate(op, device)
    tr = _traffic(device, op.bytes_read(), op.bytes_written(), options)
    notes = (f"depthwise conv ({op.c} channels, {op.r}x{op.s} filters): {op.r * op.s} MACs per "
             f"output, vectorised over channels at {format_quantity(rate, 'FLOP/s')}; "
             f"{tr.describe(device)}",)
    return make_cost(device, op, compute_s=compute_s, memory_s=tr.memory_s,
                     overhead_s=_launch(device) + tr.fault_s, bytes_by_level=tr.by_level,
                     compute_class=cls, peak_flops=vpeak, notes=notes,
                     details={"kernel": "depthwise", "dram_bytes": tr.by_level[device.dram.name],
                              "resident": tr.in_level, "output_resident": tr.out_level,
                              "page_fault_s": tr.fault_s})


@register_cost("conv2d", FAMILY)
def conv2d_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    return conv2d_by_gemm(
        op, device, options, depthwise=_depthwise, gemm_label=_gemm_label,
        gemm=lambda c, g, label: _gemm_cost(c, device, g, c.dtype, label,
                                            {"kernel": "implicit-gemm"}, options))


def _q_block(seq: int) -> int:
    """Query rows per block of PyTorch's CPU flash-attention kernel (ATen
    ``sdpa_flash_attention_cpu``: 256 from 768 query rows, 64 from 192, else 32)."""
    return 256 if seq >= 768 else 64 if seq >= 192 else 32


def _keys_seen(op: Attention, qs: int, seq: int | None = None) -> float:
    """Keys the query blocks of one (batch, KV head) multiply against, summed over blocks
    (a causal block sees the context plus the rows up to its last one); ``seq``: a sample's
    new tokens (default ``op.seq``)."""
    seq = op.seq if seq is None else seq
    blocks = math.ceil(seq / qs)
    if not op.causal:
        return float(blocks * (op.context + seq))
    return float(sum(op.context + min((i + 1) * qs, seq) for i in range(blocks)))


@register_cost("attention", FAMILY)
def attention_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """Fused (flash) attention as PyTorch runs it on a CPU: blocks of query rows against
    blocks of keys, a GEMM for QK^T and for PV per block pair with an online softmax between.

    * The (batch, head, query block) tasks are spread over the threads.
    * Matrix FLOPs at ``compute_efficiency`` of the peak of the threads used; the softmax's
      vector and exp work at the vector rate; packing the transposed keys (the QK^T GEMM's B)
      at ``pack_bandwidth``, once per query block over the keys it sees, per KV head (the
      query heads of a GQA group reuse it: measured on the development VM, GQA decode costs
      between one pack per KV head and one per query head). These run in sequence.
    * Q, K, V read once and O written once (``_traffic``); K/V blocks are re-read from the
      cache by later query blocks.
    * ``latency = max(compute, memory) + dispatch``, busy time divided by
      ``kind_efficiency["attention"]``.
    """
    assert isinstance(op, Attention)
    peak, cls = device.peak(op.dtype, "matrix")
    if peak <= 0:
        raise MappingError(f"{device.name}: no SIMD or matrix unit can run {op.dtype} attention")
    cores, threads = _cores(device), _threads(device)
    qs = min(op.seq, _q_block(op.seq))
    lens = {n: op.lengths.count(n) for n in set(op.lengths)}  # variable-length samples
    tasks = op.heads * sum(c * math.ceil(n / qs) for n, c in lens.items())
    used = max(1, min(threads, tasks))
    eff = _efficiency(device, cls, op.dtype.compute_class)
    fl = op.flops()
    matrix_s = fl.matrix / (peak * used / cores * eff)
    softmax_s = vector_time(op, device)[0] * cores / used
    pack_bw = device.params.get("pack_bandwidth")
    pack_bytes = (op.kv_heads * sum(c * _keys_seen(op, qs, n) for n, c in lens.items())
                  * op.head_dim * op.dtype.bytes)
    pack_s = pack_bytes / float(pack_bw) if pack_bw else 0.0
    compute_s = matrix_s + softmax_s + pack_s
    out_bytes = op.tokens * op.heads * op.head_dim * op.dtype.bytes  # O (K/V: in place)
    tr = _traffic(device, op.bytes_read(), op.bytes_written(), options, threads=used,
                  fresh_bytes=out_bytes)
    launch = _launch(device)
    notes = (
        f"attention ({op.phase}, {op.heads} heads / {op.kv_heads} KV heads, head_dim "
        f"{op.head_dim}, {op.seq} new token{'s' if op.seq > 1 else ''} over {op.kv_len} keys) "
        f"as a flash kernel: {tasks} tasks of {qs} query rows on {used} of {cores} cores",
        f"matrix {format_quantity(fl.matrix, 'FLOP')} in {_t(matrix_s)} ({eff:.0%} of peak), "
        f"softmax {_t(softmax_s)}, key packing {_b(pack_bytes)} in {_t(pack_s)}; "
        f"memory {_t(tr.memory_s)}: {tr.describe(device)}",
    )
    details = {"kernel": "flash-cpu", "threads": used, "cores": cores, "q_block": qs,
               "dram_bytes": tr.by_level[device.dram.name], "pack_s": pack_s,
               "page_fault_s": tr.fault_s, "resident": tr.in_level,
               "output_resident": tr.out_level,
               "parts": {"matrix": {"compute_s": matrix_s, "memory_s": 0.0},
                         "softmax": {"compute_s": softmax_s, "memory_s": 0.0},
                         "pack": {"compute_s": pack_s, "memory_s": 0.0},
                         "io": {"compute_s": 0.0, "memory_s": tr.memory_s}}}
    return scale_busy(
        make_cost(device, op, compute_s=compute_s, memory_s=tr.memory_s,
                  overhead_s=launch + tr.fault_s, bytes_by_level=tr.by_level,
                  compute_class=cls, peak_flops=peak, details=details, notes=notes),
        device, "attention")


def cpu_streaming_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """Streaming op on a CPU: inputs from the innermost cache holding them, else DRAM; the
    output to a recycled buffer in cache, else DRAM with write-allocate (see "Memory traffic").

    In a graph an embedding gather reads rows of a large table that no producer just wrote,
    so from DRAM. In a measurement loop (``options.rotated_sets``) each input set gathers the
    same rows on every use, so they are as resident as any other op's bytes. A copy writes
    into an existing buffer (no fresh pages); Adam updates its tensors in place.
    """
    cross = getattr(op, "src", "device") != getattr(op, "dst", "device")
    gather = op.kind == "embedding" and options.rotated_sets is None
    in_place = isinstance(op, Elementwise) and op.fn == "adam"
    passes, extra_vector = (1.0, 1.0), 0.0
    name = op.norm if isinstance(op, Norm) else op.fn if isinstance(op, Elementwise) else None
    if name in _EAGER_COMPOSITES and device.params.get("eager_composites"):
        reads, writes, extra_vector = _EAGER_COMPOSITES[name]
        passes = (reads, writes)
    tr = _traffic(device, op.bytes_read(), op.bytes_written(), options,
                  inputs_cold=gather or cross, in_place=in_place,
                  fresh_output=op.kind != "memcpy", in_passes=passes[0], out_passes=passes[1])
    where = (f"{tr.describe(device)}; DRAM at "
             f"{format_quantity(_bw(device, device.dram), 'B/s')} achievable"
             + (f"; eager composite {name}: inputs read {passes[0]:g}x, output-sized "
                f"tensors written {passes[1]:g}x" if passes != (1.0, 1.0) else ""))
    cost = streaming_cost(op, device, options, overhead_s=_launch(device) + tr.fault_s,
                          traffic=(tr.memory_s, tr.by_level, where))
    cost = replace(cost, details=FrozenMap({**cost.details, "page_fault_s": tr.fault_s,
                                            "resident": tr.in_level,
                                            "output_resident": tr.out_level}))
    cycles = device.params.get("maxpool_cycles")
    if isinstance(op, Pool) and op.mode == "max" and cycles:
        unit = max(_vector_units(device), key=lambda u: u.count)
        scalar_s = op.flops().vector * float(cycles) / (unit.clock_hz * _threads(device))
        f = kind_efficiency(device, op.kind)
        busy = max(scalar_s / f, cost.memory_s)
        cost = replace(cost, compute_s=scalar_s / f, latency_s=busy + cost.overhead_s,
                       bound="compute" if scalar_s / f >= cost.memory_s else cost.bound,
                       notes=(*cost.notes, f"scalar NCHW max-pool kernel: {cycles:g} cycles "
                              f"per window element on {_threads(device)} threads, "
                              f"{_t(scalar_s)}"))
    if extra_vector:  # the composite's extra vector passes (rmsnorm: pow, mul, mul, ...)
        extra = vector_time(op, device)[0] * extra_vector / kind_efficiency(device, op.kind)
        cost = replace(cost, compute_s=cost.compute_s + extra,
                       latency_s=cost.latency_s + extra)
    return cost


for _kind in STREAMING_KINDS:
    register_cost(_kind, FAMILY)(cpu_streaming_cost)
register_cost("collective", FAMILY)(collective_cost)
