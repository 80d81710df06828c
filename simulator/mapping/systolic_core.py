"""Analytical systolic-array model shared by the ``systolic`` (TPU/ASIC) and ``fpga`` mappers.

The cycle model follows SCALE-Sim's analytical runtime: A. Samajdar, J. M. Joseph, Y. Zhu,
P. Whatmough, M. Mattina and T. Krishna, "A Systematic Methodology for Characterizing
Scalability of DNN Accelerators using SCALE-Sim", ISPASS 2020 (arXiv:1811.02883). Operand
names are SCALE-Sim's: for a GEMM ``C[M,N] = A[M,K] @ B[K,N]``, A is the *ifmap*, B the
*filter* and C the *ofmap*; each has its own SRAM.

Folds and cycles on one R x C array
-----------------------------------
A *fold* is one mapping of a tile of the GEMM onto the array; the array streams operands
through, and the first result leaves ``R + C - 2`` cycles after the first operand enters
(fill and drain skew).

==========  ============================  =======================  ===========================
dataflow    pinned in the PEs             folds                    cycles per fold
==========  ============================  =======================  ===========================
``os``      one output C[m, n] per PE     ceil(M/R) * ceil(N/C)    K + R + C - 2
``ws``      B tile (K on rows, N on cols) ceil(K/R) * ceil(N/C)    M + R + C - 2 (+ R)
``is``      A^T tile (K on rows, M cols)  ceil(K/R) * ceil(M/C)    N + R + C - 2 (+ R)
==========  ============================  =======================  ===========================

The ``+ R`` is the weight (input) load into the array, hidden behind the previous fold when the
SRAMs are double buffered. ``compute_cycles = batch * folds * cycles_per_fold`` (array busy
including fill and drain); MAC utilisation is ``batch*M*N*K / (R*C*arrays*compute_cycles)``.

A unit whose ``flops_per_cycle`` for the dtype differs from ``2*R*C`` per array (packed narrow
dtypes, multi-pass wide ones) runs ``macs_per_pe = flops_per_cycle / (2*R*C)`` MACs per PE per
cycle; the model divides the cycle count by it. ``params.compute_efficiency[dtype]`` (default
1.0) models non-ideal issue (bubbles between folds, control): compute cycles are divided by it.

Schedules
---------
``MapOptions.schedule`` (``--schedule``) picks how memory is modelled. ``best`` (default) is
the rest of this docstring: hwsim's SRAM tiling search over one shared DRAM, the stationary
preload hidden behind the previous fold when double buffered (the TPU v1 paper's weight
double buffering, Jouppi et al. 2017). ``scalesim`` reproduces SCALE-Sim v3 itself: one
array, :func:`array_counts` (the preload always exposed, SCALE-Sim's ``-1``), and
:mod:`simulator.mapping.scalesim_memory` for its read buffers (a FIFO window over the fetch
order, half of each SRAM), write buffer, per-interface bandwidth and stall accounting;
exact on the 222 rows of experiments/scalesim/reference.csv. Both report SRAM and DRAM
reads and writes per operand (:func:`access_counts`). A pruned weight (``op.sparsity``)
shrinks K on arrays with ``params.sparse_nm`` (N:M, SCALE-Sim v3's layer-wise form) and the
filter's DRAM bytes everywhere (:func:`_sparse_gemm`).

Loop nests and DRAM traffic
---------------------------
SRAM capacity decides DRAM re-fetches. Two schedules are costed and the one moving fewer DRAM
bytes is kept (ties: the unblocked one; the cycles do not depend on the choice, see below).

*Unblocked* (SCALE-Sim's own schedule, the array-level loop nest over the whole GEMM):

- ``os``: ``for m_tile: for n_tile: stream A[m_tile, :] and B[:, n_tile] for K steps``.
  A's row block (R x K) is reused across the inner n loop: if it fits in the ifmap SRAM, A is
  read once, else once per N fold. B is reused across the outer m loop: if all of B fits in the
  filter SRAM it is read once, else once per M fold. Each output is written once.
- ``ws``: ``for n_tile: for k_tile: pin B[k_tile, n_tile]; stream A[:, k_tile] (M rows)``.
  B is read once. All of A is reused across the outer n loop: read once if A fits in the ifmap
  SRAM, else once per N fold. The partial sums of one column fold (M x C) accumulate over the
  K folds: if they fit in the ofmap SRAM the output is written once, else the partial sums
  spill, costing ``2 * ceil(K/R) - 1`` passes over C (written each K fold, read back for all
  but the first).
- ``is``: the transpose of ``ws`` (``C^T = B^T A^T``: A pinned from the ifmap SRAM, B streamed
  from the filter SRAM, M and N swapped).

*Blocked* (what a compiler does with a GEMM larger than its SRAMs: TPU/XLA, FPGA HLS tiling):
the GEMM is cut into ``Mb x Nb x Kb`` blocks and an outer loop nest moves one block of each
operand between DRAM and SRAM at a time::

    for m_blk in range(ceil(M/Mb)):            # order "mnk"; "nmk" swaps the two outer loops
        for n_blk in range(ceil(N/Nb)):
            for k_blk in range(ceil(K/Kb)):    # K innermost: the C block accumulates on chip
                load A[m_blk, k_blk] (Mb x Kb) into the ifmap SRAM
                load B[k_blk, n_blk] (Kb x Nb) into the filter SRAM
                run the dataflow's own fold loop (above) on the Mb x Nb x Kb sub-GEMM
            write C[m_blk, n_blk] (Mb x Nb) from the ofmap SRAM

A block of A must fit the ifmap SRAM and a block of B the filter SRAM (usable part, per array
share); the C block of ``Mb x Nb`` accumulators should fit the ofmap SRAM. Then, for ``mnk``,
A is read ``ceil(N/Nb)`` times and B ``ceil(M/Mb)`` times (``nmk``: the same counts), C is
written once. A loop of one iteration does not re-fetch: with ``Kb = K`` the A block of
``mnk`` (B block of ``nmk``) stays in SRAM across the middle loop and is read once, and an
operand whose block is all of it is read once. An input that fits its SRAM whole stays there
and is read once whatever the blocks (the unblocked rule, kept). If the ofmap SRAM cannot
hold the ``Mb x Nb`` accumulators and K is split (``Kb < K``), the partial sums spill to
DRAM: ``2 * ceil(K/Kb) - 1`` passes over C. Such a block is allowed only if the dataflow's own
fold loop still has room for its partial sums (``os``: one R x C tile; ``ws``: ``Mb x C``;
``is``: ``C x Nb``). Partial sums of successive K blocks are added in the ofmap SRAM.

Candidates: ``Mb``, ``Nb``, ``Kb`` each ``edge * 2**i`` below the problem dimension, plus the
dimension itself, where ``edge`` is the array edge that dimension folds over (``os``: M on R,
N on C; ``ws``: K on R, N on C; ``is``: K on R, M on C; the streamed dimension uses R, or C
for ``is``). For each ``(Mb, Nb)`` the largest ``Kb`` whose A and B blocks fit is taken (a
larger K block never moves more bytes), both loop orders are costed, and the fewest DRAM
bytes win (ties: the fewest block iterations, i.e. the largest blocks, then ``mnk``). The
chosen blocks are reported as ``details["blocks"]`` (``None`` when the unblocked schedule is
kept), with ``details["block_order"]``, and in the notes. With blocks, ``sram_fits[o]`` says
whether operand ``o`` crosses DRAM once, and ``working_set`` holds the block sizes in bytes.
Every candidate's traffic only shrinks as an SRAM grows, and a bigger SRAM only adds
candidates, so one array's DRAM traffic never increases with SRAM capacity.

Blocking leaves the compute side unchanged: the fold and cycle counts are those of the
unblocked problem above. Blocking reorders the folds and, when it cuts the streamed dimension
(``K`` for ``os``, ``M`` for ``ws``, ``N`` for ``is``), splits each fold's stream into
per-block chunks. The model assumes those chunks follow each other through the array with no
extra fill and drain (the next block is already in the other half of the double buffer). A
stricter SCALE-Sim reading would charge one more ``R + C - 2`` per chunk. The first fold's
tiles (``first_load``) are also those of the unblocked schedule. The SRAM byte counts (for
energy) are the array's reads, which blocking does not change.

With double buffering each SRAM holds two tiles in flight, so only half of it is usable for
reuse. An SRAM smaller than one array tile is still modelled by the unblocked schedule (the
tile streams through); the spec is then simply unrealistic.

Several arrays
--------------
``arrays`` identical arrays (``ComputeUnit.count``; TPU v4 = 2 cores x 4 MXUs = 8) split a
GEMM over N, over M, or (for batched GEMMs) over the batch; each array gets ``ceil(d/a)`` of
the split dimension ``d``, so the imbalance of a ragged split is counted by the ceiling. The
mapper tries every ``a`` from one array to all of them (an implementation can leave arrays
idle), and keeps the fewest cycles, so a part with more arrays, by any number, is never
slower. ``params.sram`` sizes are device totals,
divided evenly over ``params.cores`` (default 1). The operand a split does not divide (A when
N is split, B when M is split) is fetched once per core and broadcast to that core's arrays,
using the core's whole SRAM for it; split operands and outputs use a per-array share of it.
An op-level choice that depends on the per-array SRAM share (a convolution's im2col on chip,
attention's scores kept on chip) is costed both ways: on the most arrays whose shares still
hold the data, and off chip on all arrays; the faster wins.

DRAM stalls
-----------
``memory_cycles = dram_bytes / (bandwidth * bandwidth_efficiency / clock)``. Double buffered:
``cycles = first_load + max(compute_cycles, memory_cycles - first_load)`` where ``first_load``
is the first fold's input tiles, which cannot overlap with compute (that is
``max(compute, memory) + first tile`` without counting the first tile twice, so double
buffering with the same traffic is never slower). Not double buffered: ``cycles =
compute_cycles + memory_cycles``. ``stall_cycles = cycles - compute_cycles``. An op's latency
is ``cycles / clock + params.launch_overhead``.

Ops
---
:func:`matmul_cost`, :func:`conv2d_cost` (im2col GEMMs) and :func:`attention_cost` (two GEMMs
plus the softmax on the vector unit) build :class:`Gemm` problems and run them on the
:class:`ArraySetup` a family derives from its spec (``systolic.py``: the shaped matrix unit;
``fpga.py``: a PE array sized from the DSP budget). The dataflow is ``MapOptions.dataflow``,
else ``params.dataflow``, else ``ws``. A fused epilogue with a second input (``add``/``mul``:
a residual) reads that C-sized tensor from DRAM as the output drains: its bytes join the DRAM
traffic (and the stall arithmetic above); its pointwise work is left to the vector unit,
overlapped.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.arch.spec import DTYPE_FALLBACK, ComputeUnit, Device
from simulator.errors import MappingError
from simulator.frozen import FrozenMap
from simulator.mapping.base import MapOptions, OpCost, make_cost
from simulator.mapping.common import depthwise_vector_rate, param, scale_busy, vector_time
from simulator.units import format_quantity
from workloads.dtypes import DType
from workloads.ops import EPILOGUE_FNS, Attention, Conv2d, Flops, MatMul, Op

__all__ = ["DATAFLOWS", "OPERANDS", "Gemm", "ArraySetup", "SystolicRun", "fold_cycles",
           "ArrayCounts", "array_counts", "SCHEDULES", "resolve_schedule",
           "resolve_dataflow", "sram_capacities", "onchip_level", "array_compute_class",
           "make_setup", "simulate_gemm", "matmul_cost", "conv2d_cost", "attention_cost",
           "SetupFn"]

DATAFLOWS = {"os": "output stationary", "ws": "weight stationary", "is": "input stationary"}
OPERANDS = ("ifmap", "filter", "ofmap")  # A, B, C


# -- problem and hardware descriptions ------------------------------------------------------
@dataclass(frozen=True)
class Gemm:
    """``batch`` independent GEMMs ``C[m,n] = A[m,k] @ B[k,n]`` with element sizes in bytes.

    ``unique`` scales each operand's DRAM bytes relative to its dense size (``m*k*a_bytes``
    for A): 1.0 is dense; a convolution whose im2col expansion happens on chip reads only the
    raw input (A's ``unique < 1``); 0.0 keeps an operand on chip (attention scores). Order
    follows :data:`OPERANDS`.
    """

    m: int
    n: int
    k: int
    batch: int = 1
    a_bytes: float = 2.0
    b_bytes: float = 2.0
    c_bytes: float = 2.0
    unique: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def macs(self) -> float:
        return float(self.batch) * self.m * self.n * self.k


@dataclass(frozen=True)
class ArraySetup:
    """The array one op runs on, as a family mapper derived it from the device spec."""

    unit: str
    rows: int
    cols: int
    arrays: int
    cores: int
    clock_hz: float
    compute_class: str
    macs_per_pe: float
    peak_flops: float
    dataflow: str
    double_buffered: bool
    sram: Mapping[str, float]
    sram_level: str
    dram_bytes_per_cycle: float
    compute_efficiency: float
    launch_overhead_s: float
    notes: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    schedule: str = "best"  # "best" (hwsim's tiling search) or "scalesim" (SCALE-Sim's own)
    #: fraction of (input activations, weights, output activations) crossing the off-chip
    #: level (MapOptions.offchip; "best" schedule only): 0 keeps the operand on chip
    offchip: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def usable_sram(self) -> dict[str, float]:
        """Bytes of each SRAM usable for reuse (half when double buffered)."""
        f = 0.5 if self.double_buffered else 1.0
        return {k: self.sram.get(k, 0.0) * f for k in OPERANDS}


SetupFn = Callable[[Op, Device, MapOptions], ArraySetup]


@dataclass(frozen=True)
class SystolicRun:
    """The result of one (batched) GEMM on the arrays; cycles are array clock cycles."""

    gemm: Gemm
    dataflow: str
    rows: int
    cols: int
    arrays: int
    arrays_used: int
    split: str
    split_size: int
    folds: int               # per array, all GEMMs of the batch it runs
    folds_per_gemm: int
    cycles_per_fold: int
    fill_drain_per_fold: int
    weight_load_per_fold: int
    padded_macs: float       # MACs of one array-sized-tile-rounded problem (fold quantisation)
    compute_cycles: float
    memory_cycles: float
    first_load_cycles: float
    cycles: float
    utilization: float
    sram_fits: Mapping[str, bool]
    refetch: Mapping[str, float]
    working_set: Mapping[str, float]
    capacity: Mapping[str, float]
    dram_bytes: Mapping[str, float]
    sram_bytes: Mapping[str, float]
    blocks: Mapping[str, int] | None = None  # SRAM blocks of one array's GEMM, if blocked
    block_order: str | None = None           # "mnk" or "nmk" (outer loop first)
    schedule: str = "best"
    method: str | None = None                # scalesim schedule: closed form or replay

    @property
    def stall_cycles(self) -> float:
        return self.cycles - self.compute_cycles

    @property
    def dram_total(self) -> float:
        return sum(self.dram_bytes.values())


# -- spec helpers ---------------------------------------------------------------------------
def resolve_dataflow(device: Device, options: MapOptions) -> str:
    """``options.dataflow``, else the spec's ``params.dataflow``, else ``ws``.

    Raises
    ------
    MappingError
        For a dataflow other than ``os``, ``ws`` or ``is``.
    """
    df = options.dataflow or param(device, "dataflow")
    df = str(df).lower()
    if df not in DATAFLOWS:
        raise MappingError(f"{device.name}: unknown dataflow {df!r}; known: "
                           + ", ".join(f"{k} ({v})" for k, v in DATAFLOWS.items()))
    return df


def onchip_level(device: Device) -> str | None:
    """Name of the on-chip SRAM level: the smallest level after DRAM, if smaller than DRAM."""
    inner = [m for m in device.memory[1:] if m.capacity_bytes < device.dram.capacity_bytes]
    return min(inner, key=lambda m: m.capacity_bytes).name if inner else None


def sram_capacities(device: Device) -> tuple[dict[str, float], str]:
    """(ifmap, filter, ofmap SRAM bytes as device totals, where they came from).

    ``params.sram`` if the spec sets it, else the on-chip memory level split in three equal
    parts, else nothing on chip (every reuse goes to DRAM).
    """
    sram = device.params.get("sram")
    if sram:
        return {k: float(sram.get(k, 0.0)) for k in OPERANDS}, "params.sram"
    name = onchip_level(device)
    if name is not None:
        cap = device.level(name).capacity_bytes  # type: ignore[union-attr]
        return {k: cap / 3.0 for k in OPERANDS}, f"memory.{name} split in three"
    return {k: 0.0 for k in OPERANDS}, "no on-chip memory in the spec"


def array_compute_class(device: Device, unit: ComputeUnit, dtype: DType) -> str:
    """Compute class the array runs ``dtype`` as (the dtype's fallback chain, as
    :meth:`Device.peak` does, restricted to the array).

    Raises
    ------
    MappingError
        If the array supports neither the dtype nor anything it falls back to.
    """
    key = dtype.compute_class
    for cls in (key, *DTYPE_FALLBACK.get(key, ())):
        if unit.flops_per_cycle.get(cls):
            return cls
    raise MappingError(
        f"{device.name}: matrix unit {unit.name!r} cannot run {dtype} (it supports "
        f"{', '.join(unit.flops_per_cycle) or 'nothing'}; {key} falls back to "
        f"{', '.join(DTYPE_FALLBACK.get(key, ())) or 'nothing'})")


def make_setup(device: Device, options: MapOptions, *, unit: str, rows: int, cols: int,
               arrays: int, clock_hz: float, compute_class: str, macs_per_pe: float,
               peak_flops: float, cores: int = 1, notes: tuple[str, ...] = (),
               details: Mapping[str, Any] | None = None) -> ArraySetup:
    """Fill the parameters every array family shares (dataflow, SRAM, DRAM rate, efficiency)."""
    sram, sram_src = sram_capacities(device)
    eff_map = param(device, "compute_efficiency", None) or {}
    eff = float(eff_map.get(compute_class, 1.0))
    bw = device.dram.bandwidth_Bps * param(device, "bandwidth_efficiency")
    d = dict(details or {})
    d.setdefault("sram_source", sram_src)
    schedule = resolve_schedule(device, options)
    offchip = (1.0, 1.0, 1.0)
    if options.offchip is not None and schedule == "best":
        offchip = tuple(float(x) for x in options.offchip)  # type: ignore[assignment]
        if offchip != (1.0, 1.0, 1.0):
            d["offchip"] = list(offchip)
    return ArraySetup(
        unit=unit, rows=rows, cols=cols, arrays=arrays, cores=max(1, cores),
        clock_hz=clock_hz, compute_class=compute_class, macs_per_pe=macs_per_pe,
        peak_flops=peak_flops, dataflow=resolve_dataflow(device, options),
        double_buffered=bool(param(device, "double_buffered", True)), sram=sram,
        sram_level=onchip_level(device) or "sram", dram_bytes_per_cycle=bw / clock_hz,
        compute_efficiency=eff, launch_overhead_s=float(param(device, "launch_overhead")),
        notes=notes, details=FrozenMap(d), schedule=schedule, offchip=offchip)


SCHEDULES = {"best": "hwsim's SRAM tiling search (the fewest DRAM bytes of the unblocked and "
                     "blocked loop nests), the stationary preload hidden when double buffered",
             "scalesim": "SCALE-Sim v3's fixed schedule and memory model, one array, each "
                         "operand interface at the DRAM bandwidth (simulator.mapping."
                         "scalesim_memory)"}


def resolve_schedule(device: Device, options: MapOptions) -> str:
    """``options.schedule``, else ``best``.

    Raises
    ------
    MappingError
        For a schedule other than ``best`` or ``scalesim``.
    """
    sch = str(options.schedule or "best").lower()
    if sch not in SCHEDULES:
        raise MappingError(f"{device.name}: unknown schedule {sch!r}; known: "
                           + "; ".join(f"{k} ({v})" for k, v in SCHEDULES.items()))
    return sch


# -- one GEMM on one array ------------------------------------------------------------------
def fold_cycles(dataflow: str, m: int, n: int, k: int, rows: int, cols: int,
                double_buffered: bool) -> tuple[int, int, int]:
    """(folds, cycles per fold, weight-load cycles per fold) of one GEMM on one array.

    Examples
    --------
    >>> fold_cycles("os", 64, 64, 64, 32, 32, True)
    (4, 126, 0)
    >>> fold_cycles("ws", 64, 64, 64, 32, 32, False)
    (4, 158, 32)
    """
    load = 0 if double_buffered else rows
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols), k + rows + cols - 2, 0
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols), m + rows + cols - 2 + load, load
    if dataflow == "is":
        return math.ceil(k / rows) * math.ceil(m / cols), n + rows + cols - 2 + load, load
    raise MappingError(f"unknown dataflow {dataflow!r}; known: {', '.join(DATAFLOWS)}")


@dataclass(frozen=True)
class ArrayCounts:
    """SCALE-Sim's cycle and SRAM-access counts of one GEMM on one R x C array.

    ``folds`` mappings of ``lines_per_fold`` cycles each; SCALE-Sim reports
    ``folds * lines_per_fold - 1`` compute cycles. SRAM reads and writes are in elements.
    """

    folds: int
    lines_per_fold: int
    compute_cycles: int
    sram_reads: Mapping[str, int]
    sram_writes: Mapping[str, int]


def array_counts(dataflow: str, m: int, n: int, k: int, rows: int, cols: int) -> ArrayCounts:
    """Cycles and SRAM accesses of ``C[m,n] = A[m,k] @ B[k,n]`` with SCALE-Sim's semantics.

    Every fold streams its operands through the whole array, padded at the edges, so a
    partial fold costs as much as a full one. Per fold: ``os`` streams ``K`` steps and
    drains the skew (``K + R + C - 2``); ``ws``/``is`` first shift the stationary tile in
    (``R`` cycles), then stream ``T`` rows with the skew (``2R + C + T - 2``). Writes to the
    ofmap SRAM: every output once (``os``), or every partial sum of every K fold
    (``ws``/``is``). Checked cycle by cycle in tests/property/test_systolic_stepper.py and
    against SCALE-Sim v3's own output in experiments/scalesim/.

    >>> array_counts("ws", 64, 64, 64, 32, 32).compute_cycles
    631
    >>> array_counts("os", 64, 64, 64, 32, 32).compute_cycles
    503
    """
    sr, sc, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]
    row_folds, col_folds = math.ceil(sr / rows), math.ceil(sc / cols)
    folds = row_folds * col_folds
    lines = t + rows + cols - 2 + (0 if dataflow == "os" else rows)
    if dataflow == "os":
        reads = {"ifmap": col_folds * m * k, "filter": row_folds * k * n}
        writes = m * n
    elif dataflow == "ws":
        reads = {"ifmap": col_folds * m * k, "filter": k * n}
        writes = row_folds * m * n
    else:
        reads = {"ifmap": m * k, "filter": col_folds * k * n}
        writes = row_folds * m * n
    return ArrayCounts(folds, lines, folds * lines - 1, FrozenMap(reads),
                       FrozenMap({"ofmap": writes}))


@dataclass(frozen=True)
class _Traffic:
    """Per-operand bytes of one GEMM (one batch element) on one array, A/B/C order."""

    dram: tuple[float, float, float]
    sram: tuple[float, float, float]
    fits: tuple[bool, bool, bool]
    refetch: tuple[float, float, float]
    working_set: tuple[float, float, float]
    first: tuple[float, float]  # input bytes of the first fold (A, B)
    blocks: tuple[int, int, int] | None = None  # (Mb, Nb, Kb) when the blocked schedule won
    order: str | None = None                    # its outer loop order, "mnk" or "nmk"


def _stationary(ms: int, ns: int, k: int, r: int, c: int, e: tuple[float, float, float],
                u: tuple[float, float, float], cap: tuple[float, float, float]
                ) -> _Traffic:
    """Traffic of ``O[ms,ns] = T[ms,k] @ S[k,ns]`` with S pinned, T streamed (order S, T, O).

    Loop nest: ``for ns_tile: for k_tile: pin S[k_tile, ns_tile]; stream T[:, k_tile]``.
    """
    es, et, eo = e
    us, ut, uo = u
    kf, nf = math.ceil(k / r), math.ceil(ns / c)
    s_dense, t_dense, o_dense = k * ns * es, ms * k * et, ms * ns * eo
    ws_s = min(k, r) * min(ns, c) * es * us          # one pinned tile
    ws_t = t_dense * ut                               # all of T, reused across ns folds
    ws_o = ms * min(ns, c) * eo * uo                  # psums of one column fold
    fit_t = nf == 1 or ws_t <= cap[1]
    fit_o = kf == 1 or ws_o <= cap[2]
    re_t = 1.0 if fit_t else float(nf)
    re_o = 1.0 if fit_o else float(2 * kf - 1)
    return _Traffic(
        dram=(s_dense * us, t_dense * ut * re_t, o_dense * uo * re_o),
        sram=(s_dense, t_dense * nf, o_dense * (2 * kf - 1)),
        fits=(ws_s <= cap[0], fit_t, fit_o),
        refetch=(1.0, re_t, re_o),
        working_set=(ws_s, ws_t, ws_o),
        first=(ws_s, ms * min(k, r) * et * ut))


def _output_stationary(m: int, n: int, k: int, r: int, c: int, e: tuple[float, float, float],
                       u: tuple[float, float, float], cap: tuple[float, float, float]
                       ) -> _Traffic:
    """Loop nest: ``for m_tile: for n_tile: stream A[m_tile, :] and B[:, n_tile]``."""
    ea, eb, ec = e
    ua, ub, uc = u
    mf, nf = math.ceil(m / r), math.ceil(n / c)
    a_dense, b_dense, c_dense = m * k * ea, k * n * eb, m * n * ec
    ws_a = min(m, r) * k * ea * ua                    # A row block, reused across n tiles
    ws_b = b_dense * ub                               # all of B, reused across m tiles
    ws_c = min(m, r) * min(n, c) * ec * uc            # one output tile draining
    fit_a = nf == 1 or ws_a <= cap[0]
    fit_b = mf == 1 or ws_b <= cap[1]
    re_a = 1.0 if fit_a else float(nf)
    re_b = 1.0 if fit_b else float(mf)
    return _Traffic(
        dram=(a_dense * ua * re_a, b_dense * ub * re_b, c_dense * uc),
        sram=(a_dense * nf, b_dense * mf, c_dense),
        fits=(fit_a, fit_b, ws_c <= cap[2]),
        refetch=(re_a, re_b, 1.0),
        working_set=(ws_a, ws_b, ws_c),
        first=(ws_a, k * min(n, c) * eb * ub))


def _block_sizes(d: int, edge: int) -> list[int]:
    """Candidate block edges for a dimension ``d``: ``edge * 2**i`` below ``d``, then ``d``."""
    out, b = [], max(1, edge)
    while b < d:
        out.append(b)
        b *= 2
    out.append(d)
    return out


def _blocked(dataflow: str, m: int, n: int, k: int, r: int, c: int,
             e: tuple[float, float, float], u: tuple[float, float, float],
             cap: tuple[float, float, float]) -> _Traffic | None:
    """DRAM traffic of the best SRAM-blocked schedule (module docstring), A/B/C order.

    Returns ``None`` when no block fits (an SRAM smaller than one array tile). ``sram`` and
    ``first`` are left at zero: the caller keeps the unblocked schedule's.
    """
    ea, eb, ec = (x * y for x, y in zip(e, u, strict=True))  # DRAM bytes per element
    a_pass, b_pass, c_pass = m * k * ea, k * n * eb, m * n * ec
    whole = (a_pass <= cap[0], b_pass <= cap[1])  # stays in its SRAM: read once
    ks = _block_sizes(k, r)
    best: tuple | None = None
    for mb in _block_sizes(m, c if dataflow == "is" else r):
        m_blocks = math.ceil(m / mb)
        for nb in _block_sizes(n, c):
            n_blocks = math.ceil(n / nb)
            c_blk = mb * nb * ec
            c_fit = c_blk <= cap[2]
            if not c_fit:  # the fold loop inside the block still needs room for its psums
                inner = {"os": min(mb, r) * min(nb, c), "ws": mb * min(nb, c),
                         "is": min(mb, c) * nb}[dataflow] * ec
                if inner > cap[2]:
                    continue
            kmax = float(k)  # the largest K block whose A and B blocks fit their SRAMs
            if mb * ea > 0:
                kmax = min(kmax, cap[0] / (mb * ea))
            if nb * eb > 0:
                kmax = min(kmax, cap[1] / (nb * eb))
            i = bisect.bisect_right(ks, kmax)
            if i == 0:
                continue
            kb = ks[i - 1]
            k_blocks = math.ceil(k / kb)
            re_c = 1 if c_fit or k_blocks == 1 else 2 * k_blocks - 1
            for order in ("mnk", "nmk"):
                if order == "mnk":  # A[m_blk, :] stays across the n loop when Kb = K
                    re_a = 1 if k_blocks == 1 else n_blocks
                    re_b = 1 if k_blocks == 1 and n_blocks == 1 else m_blocks
                else:               # B[:, n_blk] stays across the m loop when Kb = K
                    re_b = 1 if k_blocks == 1 else m_blocks
                    re_a = 1 if k_blocks == 1 and m_blocks == 1 else n_blocks
                re_a = 1 if whole[0] else re_a  # all of it stays in its SRAM
                re_b = 1 if whole[1] else re_b
                total = a_pass * re_a + b_pass * re_b + c_pass * re_c
                key = (total, m_blocks * n_blocks * k_blocks, order != "mnk")
                if best is None or key < best[0]:
                    best = (key, (mb, nb, kb), order, (re_a, re_b, re_c),
                            (mb * kb * ea, kb * nb * eb, c_blk), c_fit)
    if best is None:
        return None
    _, blocks, order, re, ws, c_fit = best
    return _Traffic(
        dram=(a_pass * re[0], b_pass * re[1], c_pass * re[2]), sram=(0.0, 0.0, 0.0),
        fits=(re[0] == 1, re[1] == 1, re[2] == 1),
        refetch=(float(re[0]), float(re[1]), float(re[2])), working_set=ws, first=(0.0, 0.0),
        blocks=blocks, order=order)


def _traffic(dataflow: str, m: int, n: int, k: int, r: int, c: int, g: Gemm,
             cap: tuple[float, float, float]) -> _Traffic:
    """The unblocked schedule's traffic, or the blocked one's where it moves fewer DRAM bytes."""
    e = (g.a_bytes, g.b_bytes, g.c_bytes)
    u = g.unique
    if dataflow == "os":
        t = _output_stationary(m, n, k, r, c, e, u, cap)
    elif dataflow == "is":  # C^T = B^T A^T: S = A (ifmap SRAM), T = B (filter SRAM), M <-> N
        t = _stationary(n, m, k, r, c, e, u, cap)
    else:
        def swap(x: tuple) -> tuple:  # ws: S = B, T = A; back to (A, B, C) order
            return (x[1], x[0], *x[2:])

        s = _stationary(m, n, k, r, c, swap(e), swap(u), swap(cap))
        t = _Traffic(swap(s.dram), swap(s.sram), swap(s.fits), swap(s.refetch),
                     swap(s.working_set), swap(s.first))
    b = _blocked(dataflow, m, n, k, r, c, e, u, cap)
    if b is None or sum(b.dram) >= sum(t.dram) * (1 - 1e-12):
        return t
    return dataclasses.replace(b, sram=t.sram, first=t.first)


def _padded_macs(dataflow: str, m: int, n: int, k: int, r: int, c: int) -> float:
    """MACs of the problem with its folded dimensions rounded up to the array edges."""
    def up(x: int, e: int) -> int:
        return math.ceil(x / e) * e

    if dataflow == "os":
        return float(up(m, r) * up(n, c) * k)
    if dataflow == "ws":
        return float(m * up(n, c) * up(k, r))
    return float(up(m, c) * n * up(k, r))


def _run(g: Gemm, s: ArraySetup, split: str, alloc: int) -> SystolicRun:
    """One candidate mapping: ``alloc`` of the arrays share the GEMM, split along ``split``."""
    r, c, p = s.rows, s.cols, s.arrays
    d = {"none": 1, "batch": g.batch, "m": g.m, "n": g.n}[split]
    size = math.ceil(d / alloc) if split != "none" else d
    used = math.ceil(d / size) if split != "none" else 1
    m = size if split == "m" else g.m
    n = size if split == "n" else g.n
    b_arr = size if split == "batch" else g.batch
    # The operand the split does not divide is broadcast within a core (index into A, B, C).
    shared = {"n": 0, "m": 1}.get(split)
    cores_used = min(s.cores, used)
    arrays_per_core = math.ceil(used / cores_used)
    total = s.usable_sram
    cap = tuple(total[o] / s.cores / (1 if i == shared else arrays_per_core)
                for i, o in enumerate(OPERANDS))
    t = _traffic(s.dataflow, m, n, g.k, r, c, g, cap)  # type: ignore[arg-type]
    # Scale one array's traffic to the whole device: split operands by the exact fraction of
    # the split dimension (a ragged last share moves fewer bytes), shared ones once per core.
    frac = d / size if split in ("m", "n") else 1.0
    scale = tuple(float(cores_used) if i == shared else frac for i in range(3))
    nb = float(g.batch)
    dram = tuple(x * f * nb for x, f in zip(t.dram, scale, strict=True))
    sram = tuple(x * f * nb for x, f in zip(t.sram, scale, strict=True))
    # The first fold's input tiles, loaded by every array before any compute can start.
    first = sum(t.first[i] * (scale[i] if split in ("m", "n") else used) for i in range(2))
    first = min(first, sum(dram))

    folds_g, cpf, load = fold_cycles(s.dataflow, m, n, g.k, r, c, s.double_buffered)
    compute = b_arr * folds_g * cpf / (s.macs_per_pe * s.compute_efficiency)
    bpc = s.dram_bytes_per_cycle
    memory = sum(dram) / bpc
    first_c = first / bpc
    if s.double_buffered:
        cycles = first_c + max(compute, memory - first_c)
    else:
        cycles = compute + memory
    util = g.macs / (r * c * s.macs_per_pe * p * compute) if compute > 0 else 0.0
    return SystolicRun(
        gemm=g, dataflow=s.dataflow, rows=r, cols=c, arrays=p, arrays_used=used, split=split,
        split_size=size, folds=b_arr * folds_g, folds_per_gemm=folds_g, cycles_per_fold=cpf,
        fill_drain_per_fold=r + c - 2, weight_load_per_fold=load,
        padded_macs=_padded_macs(s.dataflow, m, n, g.k, r, c), compute_cycles=compute,
        memory_cycles=memory, first_load_cycles=first_c, cycles=cycles,
        utilization=min(util, 1.0),
        sram_fits=FrozenMap(dict(zip(OPERANDS, t.fits, strict=True))),
        refetch=FrozenMap(dict(zip(OPERANDS, t.refetch, strict=True))),
        working_set=FrozenMap(dict(zip(OPERANDS, t.working_set, strict=True))),
        capacity=FrozenMap(dict(zip(OPERANDS, cap, strict=True))),
        dram_bytes=FrozenMap(dict(zip(OPERANDS, dram, strict=True))),
        sram_bytes=FrozenMap(dict(zip(OPERANDS, sram, strict=True))),
        blocks=(FrozenMap(dict(zip("mnk", t.blocks, strict=True))) if t.blocks
                else None),
        block_order=t.order)


def _allocations(d: int, arrays: int) -> list[int]:
    """Array counts worth costing for a split of dimension ``d`` over 2 .. ``arrays`` arrays:
    a split's cost depends on its count ``a`` only through the share ``ceil(d/a)``, so one
    count per distinct share (the fewest arrays that give it)."""
    return sorted({math.ceil(d / math.ceil(d / a)) for a in range(2, min(arrays, d) + 1)})


def _scalesim_run(g: Gemm, s: ArraySetup,
                  conv: tuple[int, int, int, int, int, int] | None = None) -> SystolicRun:
    """One (batched) GEMM as SCALE-Sim runs it: one array, its fixed fold order, its read and
    write buffers, each operand interface at the DRAM bandwidth, the stationary preload
    exposed (``simulator.mapping.scalesim_memory``). Counts are SCALE-Sim's words, turned
    into bytes with each operand's element size; a batch runs its GEMMs back to back."""
    from simulator.mapping.scalesim_memory import scalesim_layer

    r, c = s.rows, s.cols
    e = (g.a_bytes, g.b_bytes, g.c_bytes)
    word = max(g.a_bytes, 1e-9)
    words = {o: max(1, int(s.sram.get(o, 0.0) / max(b, 1e-9)))
             for o, b in zip(OPERANDS, e, strict=True)}
    bw = max(1, int(s.dram_bytes_per_cycle / word))
    rep = None
    if conv is not None:  # the conv form (im2col addresses) if the geometry gives this GEMM
        try:
            rep = scalesim_layer(rows=r, cols=c, dataflow=s.dataflow, m=g.m, n=g.n, k=g.k,
                                 bandwidth_words=bw, sram_words=words, conv=conv)
        except ValueError:
            rep = None
    if rep is None:
        rep = scalesim_layer(rows=r, cols=c, dataflow=s.dataflow, m=g.m, n=g.n, k=g.k,
                             bandwidth_words=bw, sram_words=words)
    ac = array_counts(s.dataflow, g.m, g.n, g.k, r, c)
    method = str(rep.pop("method"))
    nb = float(g.batch)
    compute = nb * ac.compute_cycles
    cycles = nb * rep["total_cycles"]
    dram = tuple(nb * rep[f"dram_{o}_{'writes' if o == 'ofmap' else 'reads'}"] * b
                 for o, b in zip(OPERANDS, e, strict=True))
    sram = (nb * ac.sram_reads["ifmap"] * e[0], nb * ac.sram_reads["filter"] * e[1],
            nb * ac.sram_writes["ofmap"] * e[2])
    dense = (g.m * g.k * e[0], g.k * g.n * e[1], g.m * g.n * e[2])
    refetch = tuple(d / (nb * x) if x else 1.0 for d, x in zip(dram, dense, strict=True))
    util = g.macs / (r * c * compute) if compute > 0 else 0.0
    return SystolicRun(
        gemm=g, dataflow=s.dataflow, rows=r, cols=c, arrays=s.arrays, arrays_used=1,
        split="none", split_size=1, folds=int(nb * ac.folds), folds_per_gemm=ac.folds,
        cycles_per_fold=ac.lines_per_fold, fill_drain_per_fold=r + c - 2,
        weight_load_per_fold=0 if s.dataflow == "os" else r,
        padded_macs=_padded_macs(s.dataflow, g.m, g.n, g.k, r, c), compute_cycles=compute,
        memory_cycles=cycles - compute, first_load_cycles=0.0, cycles=cycles,
        utilization=min(util, 1.0),
        sram_fits=FrozenMap({o: f <= 1.0 + 1e-9 for o, f in zip(OPERANDS, refetch,
                                                                 strict=True)}),
        refetch=FrozenMap(dict(zip(OPERANDS, refetch, strict=True))),
        working_set=FrozenMap(dict(zip(OPERANDS, dense, strict=True))),
        capacity=FrozenMap({o: float(s.sram.get(o, 0.0)) for o in OPERANDS}),
        dram_bytes=FrozenMap(dict(zip(OPERANDS, dram, strict=True))),
        sram_bytes=FrozenMap(dict(zip(OPERANDS, sram, strict=True))),
        schedule="scalesim", method=method)


def simulate_gemm(g: Gemm, s: ArraySetup, max_arrays: int | None = None,
                  conv: tuple[int, int, int, int, int, int] | None = None) -> SystolicRun:
    """Run a (batched) GEMM on the setup's arrays, choosing how to split it across them.

    Candidates: one array alone, and for every ``a`` from 2 to the arrays (at most
    ``max_arrays``) a split of N, M or the batch over ``a`` arrays; the fewest cycles win
    (ties: fewer compute cycles, then fewer DRAM bytes). Every count of arrays is a candidate,
    not only halvings, so a device with more arrays (any number more) has every mapping of the
    smaller one and is never slower: an implementation can always leave arrays idle (a GEMV
    whose shared SRAM share would shrink may be better on fewer arrays). A split's cost
    depends on ``a`` only through the share ``ceil(d/a)``, so each distinct share is costed
    once.

    Examples
    --------
    >>> s = ArraySetup("mxu", 32, 32, 1, 1, 1e9, "bf16", 1.0, 2.048e12, "os", True,
    ...                {"ifmap": 2**20, "filter": 2**20, "ofmap": 2**20}, "sram", 100.0, 1.0, 0.0)
    >>> simulate_gemm(Gemm(64, 64, 64), s).compute_cycles
    504.0
    """
    if s.schedule == "scalesim":
        return _scalesim_run(g, s, conv)
    arrays = s.arrays if max_arrays is None else max(1, min(s.arrays, max_arrays))
    cands = [_run(g, s, "none", 1)]
    for sp, d in (("n", g.n), ("m", g.m), ("batch", g.batch)):
        cands += [_run(g, s, sp, a) for a in _allocations(d, arrays)]
    return min(cands, key=lambda x: (x.cycles, x.compute_cycles, x.dram_total))


# -- explanation ----------------------------------------------------------------------------
def _b(x: float) -> str:
    return format_quantity(x, "B")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


_OPERAND_WORDS = {"ifmap": "A (ifmap)", "filter": "B (filter)", "ofmap": "C (ofmap)"}


def _what_reused(dataflow: str, operand: str) -> str:
    return {
        ("os", "ifmap"): "an R x K row block of A",
        ("os", "filter"): "all of B",
        ("ws", "ifmap"): "all of A",
        ("ws", "ofmap"): "the M x C partial sums of one column fold",
        ("is", "filter"): "all of B",
        ("is", "ofmap"): "the C x N partial sums of one column fold",
    }.get((dataflow, operand), "one array tile")


def run_notes(run: SystolicRun, s: ArraySetup, label: str) -> list[str]:
    """Plain-words lines for ``--explain``: shape, split, folds, SRAM spills, stalls."""
    g = run.gemm
    batch = f" x{g.batch}" if g.batch > 1 else ""
    notes = [f"{label}: [{g.m}x{g.k}] @ [{g.k}x{g.n}]{batch} on {run.arrays} x "
             f"{run.rows}x{run.cols} array{'s' if run.arrays > 1 else ''} "
             f"({DATAFLOWS[run.dataflow]}, {s.compute_class})"]
    if run.schedule == "scalesim":
        dram = ", ".join(f"{o} {_b(run.dram_bytes[o])} ({run.refetch[o]:.3g}x its size)"
                         for o in OPERANDS)
        return notes + [
            f"schedule scalesim: SCALE-Sim v3's fold order on one array, the stationary "
            f"preload exposed: {run.folds} folds of {run.cycles_per_fold} cycles = "
            f"{run.compute_cycles:,.0f} compute cycles; MAC utilisation "
            f"{_pct(run.utilization)}",
            f"its read buffers (a FIFO window over the fetch order, half of each SRAM) move "
            f"{dram} through interfaces of {_b(s.dram_bytes_per_cycle)} per cycle each: "
            f"{run.stall_cycles:,.0f} stall cycles of {run.cycles:,.0f}; {run.method}"]
    if run.split != "none":
        dim = {"m": g.m, "n": g.n, "batch": g.batch}[run.split]
        idle = 1 - dim / (run.split_size * run.arrays)
        notes.append(f"split over {run.split.upper() if run.split != 'batch' else 'the batch'} "
                     f"across {run.arrays_used} of {run.arrays} arrays ({dim} -> {run.split_size} "
                     f"each; {_pct(idle)} of the arrays' time idle)")
    elif run.arrays > 1:
        notes.append(f"runs on 1 of the {run.arrays} arrays: splitting it would not be faster")
    stream = run.cycles_per_fold - run.fill_drain_per_fold - run.weight_load_per_fold
    extra = f" + {run.weight_load_per_fold} weight load" if run.weight_load_per_fold else ""
    notes.append(
        f"{run.folds} fold{'s' if run.folds != 1 else ''} per array of {run.cycles_per_fold} "
        f"cycles ({stream} streamed + {run.fill_drain_per_fold} fill/drain{extra}): fill/drain "
        f"is {_pct(run.fill_drain_per_fold / run.cycles_per_fold)} of array time; MAC "
        f"utilisation {_pct(run.utilization)}")
    sub_m = run.split_size if run.split == "m" else g.m
    sub_n = run.split_size if run.split == "n" else g.n
    per_gemm = float(sub_m) * sub_n * g.k  # one array's share of one GEMM
    if run.padded_macs > per_gemm * 1.0001:
        notes.append(f"ragged edge: the tiles round the folded dimensions up to the "
                     f"{run.rows}x{run.cols} array, wasting "
                     f"{_pct(1 - per_gemm / run.padded_macs)} of the PEs")
    if s.macs_per_pe != 1.0 or s.compute_efficiency != 1.0:
        notes.append(f"{s.macs_per_pe:g} MAC per PE per cycle in {s.compute_class}, compute "
                     f"efficiency {s.compute_efficiency:g}: cycles divided by "
                     f"{s.macs_per_pe * s.compute_efficiency:g}")
    half = ", half of it for double buffering" if s.double_buffered else ""
    if run.blocks:
        bl = run.blocks
        share = ", one array's share" if run.split in ("m", "n") else ""
        caps = ", ".join(f"{o} {_b(run.capacity[o])}" for o in OPERANDS)
        re_a, re_b, re_c = (run.refetch[o] for o in OPERANDS)
        c_words = ("C written once" if re_c == 1 else
                   f"the ofmap SRAM cannot hold the {bl['m']}x{bl['n']} accumulators "
                   f"({_b(run.working_set['ofmap'])}): C spills partial sums {re_c:g}x")
        notes.append(
            f"blocked {sub_m}x{sub_n}x{g.k} (M x N x K{share}) into {bl['m']}x{bl['n']}x"
            f"{bl['k']} blocks (loop {', '.join(run.block_order or 'mnk')}) that fit the "
            f"SRAMs ({caps} usable{half.replace(' of it', ' of each')}): A read {re_a:g}x, "
            f"B read {re_b:g}x, {c_words}")
        spilled = [o for o in OPERANDS if run.refetch[o] > 1]
    else:
        spilled = [o for o in OPERANDS if not run.sram_fits[o] and run.refetch[o] > 1]
        for o in spilled:
            what = "spills partial sums" if o == "ofmap" else "is re-read"
            notes.append(
                f"{o} SRAM ({_b(run.capacity[o])} usable for this operand{half}) cannot hold "
                f"{_what_reused(run.dataflow, o)} ({_b(run.working_set[o])}): "
                f"{_OPERAND_WORDS[o]} {what} {run.refetch[o]:g}x from DRAM")
    if not spilled:
        notes.append("every working set fits its SRAM: each operand crosses DRAM once")
    bound = "compute" if run.compute_cycles >= run.memory_cycles else "memory (DRAM)"
    overlap = (f"double buffered: loads overlap compute except the first fold's "
               f"({run.first_load_cycles:.0f} cycles)" if s.double_buffered
               else "not double buffered: every load stalls the array")
    notes.append(
        f"DRAM {_b(run.dram_total)} at "
        f"{format_quantity(s.dram_bytes_per_cycle * s.clock_hz, 'B/s')} achievable = "
        f"{run.memory_cycles:.0f} cycles vs {run.compute_cycles:.0f} compute cycles; {overlap} "
        f"-> {bound}-bound, {_pct(run.stall_cycles / run.cycles if run.cycles else 0)} stall "
        f"cycles")
    return notes


def access_counts(run: SystolicRun) -> dict[str, dict[str, float]]:
    """SRAM and DRAM reads and writes per operand, bytes, over the whole device.

    The ofmap's partial sums of ``ws``/``is`` are written once per K fold (K block when
    blocked) and read back for all but the first; SCALE-Sim counts only the writes.
    """
    g = run.gemm
    c_once = float(g.batch) * g.m * g.n * g.c_bytes
    sram_c, dram_c = run.sram_bytes["ofmap"], run.dram_bytes["ofmap"]
    if run.schedule == "scalesim":
        sram_w, sram_r, dram_w, dram_r = sram_c, 0.0, dram_c, 0.0
    else:
        sram_w, sram_r = (sram_c + c_once) / 2, max(0.0, sram_c - c_once) / 2
        once = c_once * g.unique[2]
        dram_w, dram_r = (dram_c + once) / 2, max(0.0, dram_c - once) / 2
    return {
        "sram_reads": {"ifmap": run.sram_bytes["ifmap"], "filter": run.sram_bytes["filter"],
                       "ofmap": sram_r},
        "sram_writes": {"ofmap": sram_w},
        "dram_reads": {"ifmap": run.dram_bytes["ifmap"], "filter": run.dram_bytes["filter"],
                       "ofmap": dram_r},
        "dram_writes": {"ofmap": dram_w},
    }


def run_details(run: SystolicRun) -> dict[str, Any]:
    return {
        "schedule": run.schedule, "scalesim_method": run.method, **access_counts(run),
        "dataflow": run.dataflow, "array": [run.rows, run.cols], "arrays": run.arrays,
        "arrays_used": run.arrays_used, "split": run.split, "folds": run.folds,
        "folds_per_gemm": run.folds_per_gemm, "cycles_per_fold": run.cycles_per_fold,
        "cycles": run.cycles, "compute_cycles": run.compute_cycles,
        "memory_cycles": run.memory_cycles, "stall_cycles": run.stall_cycles,
        "first_load_cycles": run.first_load_cycles, "utilization": run.utilization,
        "sram_fits": dict(run.sram_fits), "dram_bytes": dict(run.dram_bytes),
        "sram_bytes": dict(run.sram_bytes), "refetch": dict(run.refetch),
        "blocks": dict(run.blocks) if run.blocks else None, "block_order": run.block_order,
    }


# -- op-level costs (the family modules register these with their own setup) ---------------
def _homed(g: Gemm, s: ArraySetup, b_is_weight: bool) -> Gemm:
    """``g`` with each operand's DRAM share scaled by where the graph keeps it
    (:attr:`ArraySetup.offchip`): B is a weight or, for an activation x activation GEMM, an
    input activation."""
    f_in, f_w, f_out = s.offchip
    if (f_in, f_w, f_out) == (1.0, 1.0, 1.0):
        return g
    u = g.unique
    return dataclasses.replace(g, unique=(u[0] * f_in, u[1] * (f_w if b_is_weight else f_in),
                                          u[2] * f_out))


def _homing_note(s: ArraySetup) -> tuple[str, ...]:
    f_in, f_w, f_out = s.offchip
    if (f_in, f_w, f_out) == (1.0, 1.0, 1.0):
        return ()
    return (f"operands homed on chip by the graph's residency: {1 - f_in:.0%} of the input "
            f"activations, {1 - f_w:.0%} of the weights and {1 - f_out:.0%} of the output stay "
            f"in {s.sram_level} (see the run's residency note)",)


def _finish(op: Op, device: Device, s: ArraySetup, *, compute_cycles: float,
            memory_cycles: float, cycles: float, dram: float, onchip: float,
            details: dict[str, Any], notes: list[str], extra_compute_s: float = 0.0,
            flops: Flops | None = None) -> OpCost:
    clk = s.clock_hz
    details = {**details, "compute_class": s.compute_class, "clock_hz": clk,
               "unit": s.unit, **s.details}
    return make_cost(
        device, op, compute_s=compute_cycles / clk + extra_compute_s,
        memory_s=memory_cycles / clk, overhead_s=s.launch_overhead_s,
        latency_s=cycles / clk + extra_compute_s + s.launch_overhead_s,
        bytes_by_level={device.dram.name: dram, s.sram_level: onchip},
        compute_class=s.compute_class, peak_flops=s.peak_flops, details=details,
        notes=(*s.notes, *notes), flops=flops)


def _epilogue_bytes(op: MatMul | Conv2d) -> float:
    """Bytes of the C-sized inputs a fused epilogue reads (``add``/``mul``: a residual)."""
    return sum(EPILOGUE_FNS[f][0] for f in op.epilogue) * op.bytes_written()


def _sparse_gemm(op: MatMul | Conv2d, device: Device, k: int, eb: float
                 ) -> tuple[int, float, Flops | None, tuple[str, ...], dict[str, Any]]:
    """How a pruned weight (``op.sparsity``) changes the GEMM the array runs.

    Returns ``(K executed, B bytes per executed element, executed FLOPs or None, notes,
    details)``. On an array with N:M support (``params.sparse_nm: true``) N:M is SCALE-Sim
    v3's layer-wise N:M: the same positions are pruned in every filter column, so the array
    skips them (K shrinks to ``ceil(K/M) * N``), the ifmap columns at those positions are not
    fetched, and the filter is read compressed with its index metadata. Without it (TPUs
    have none), and for unstructured sparsity, the math is dense (a zero still occupies its
    PE slot) and only the compressed weight read is saved.
    """
    sp = op.sparsity
    if sp is None:
        return k, eb, None, (), {}
    stored = op.weight_stored_fraction
    fl = op.flops()
    if sp.pattern == "n:m" and not param(device, "sparse_nm", False):
        note = (f"weights {sp.label} sparse, but {device.name} has no N:M support "
                f"(params.sparse_nm false): dense math; the filter is read compressed "
                f"({stored:.3g} of its dense bytes with {sp.metadata_bits:g}-bit indices) and "
                f"expanded on chip")
        return k, eb * stored, None, (note,), {"sparsity": sp.label, "k_executed": k}
    if sp.pattern == "n:m":
        k_eff = max(1, math.ceil(k / sp.m) * sp.n)
        note = (f"weights {sp.label} sparse (layer-wise, as SCALE-Sim v3): the array skips "
                f"the pruned K positions, K {k} -> {k_eff}; the filter is read compressed "
                f"({stored:.3g} of its dense bytes with {sp.metadata_bits:g}-bit indices) and "
                f"the ifmap columns at pruned positions are not fetched")
        executed = Flops(fl.matrix * k_eff / k, fl.vector, fl.special)
    else:
        k_eff = k
        note = (f"weights {sp.label} sparse: dense math on the array (a zero still occupies "
                f"its PE slot); the filter is read compressed ({stored:.3g} of its dense "
                f"bytes, bitmap included)")
        executed = None
    return (k_eff, eb * stored * k / k_eff, executed, (note,),
            {"sparsity": sp.label, "k_executed": k_eff})


def _single(op: Op, device: Device, s: ArraySetup, g: Gemm, label: str,
            extra_notes: tuple[str, ...] = (), extra: Mapping[str, Any] | None = None,
            run: SystolicRun | None = None, epilogue_bytes: float = 0.0,
            flops: Flops | None = None) -> OpCost:
    """One GEMM's cost; ``epilogue_bytes`` more are read from DRAM as the output drains (a
    fused residual), overlapped with compute like every other load when double buffered."""
    run = run or simulate_gemm(g, s)
    head, *rest = run_notes(run, s, label)
    memory, cycles, dram = run.memory_cycles, run.cycles, run.dram_total
    details = {**run_details(run), **(extra or {})}
    if epilogue_bytes:
        memory += epilogue_bytes / s.dram_bytes_per_cycle
        dram += epilogue_bytes
        first = run.first_load_cycles
        cycles = (first + max(run.compute_cycles, memory - first) if s.double_buffered
                  else run.compute_cycles + memory)
        details.update(memory_cycles=memory, cycles=cycles,
                       stall_cycles=cycles - run.compute_cycles, epilogue_bytes=epilogue_bytes)
        rest.append(f"the fused epilogue reads {_b(epilogue_bytes)} more from DRAM (a C-sized "
                    f"input such as a residual) as the output drains")
    return _finish(op, device, s, compute_cycles=run.compute_cycles,
                   memory_cycles=memory, cycles=cycles, dram=dram,
                   onchip=sum(run.sram_bytes.values()), details=details,
                   notes=[head, *extra_notes, *rest], flops=flops)


def matmul_cost(op: Op, device: Device, options: MapOptions, setup: SetupFn) -> OpCost:
    """A (batched) GEMM; A and C in ``op.dtype``, B in ``op.b_dtype`` (weights-only quant)."""
    assert isinstance(op, MatMul)
    s = setup(op, device, options)
    k, eb, flops, notes, extra = _sparse_gemm(op, device, op.k, op.b_dtype.bytes)
    g = _homed(Gemm(op.m, op.n, k, op.batch, op.dtype.bytes, eb, op.dtype.bytes), s,
               op.weight_bytes() > 0)
    return _single(op, device, s, g, "matmul", (*notes, *_homing_note(s)), extra,
                   epilogue_bytes=_epilogue_bytes(op) * s.offchip[0], flops=flops)


def conv2d_cost(op: Op, device: Device, options: MapOptions, setup: SetupFn) -> OpCost:
    """Convolution as ``groups`` im2col GEMMs (M = n*p*q, N = k/g, K = c/g*r*s).

    DRAM traffic for the input: if the ifmap SRAM (per-array share, usable part) holds the
    input rows one output row needs (``r`` padded rows of one image, ``c/g`` channels), the
    im2col expansion happens on chip and A's DRAM bytes are the raw input per group (times the
    dataflow's re-fetch factor); otherwise the expanded im2col matrix is read from DRAM.
    """
    assert isinstance(op, Conv2d)
    s = setup(op, device, options)
    groups, m, n, k_dense = op.gemm_shape()
    ea = op.dtype.bytes
    k, eb, flops, sp_notes, sp_extra = _sparse_gemm(op, device, k_dense,
                                                    (op.weight_dtype or op.dtype).bytes)
    # N:M skips the ifmap channels at pruned positions: the raw input read shrinks with K
    raw = op.n * (op.c // groups) * op.h * op.w * ea * k / k_dense
    dense = float(m) * k * ea
    band = op.r * (op.w + 2 * op.pad) * (op.c // groups) * ea
    # The band must fit each array's share of the ifmap SRAM, so on fewer arrays it may fit
    # where on all of them it does not: cost both and keep the faster (more arrays never
    # slower). ``fit`` is the most arrays whose shares hold the band.
    fit = next((a for a in range(s.arrays, 0, -1) if band <= s.usable_sram["ifmap"] / a), 0)
    runs = []
    if s.schedule == "scalesim":  # SCALE-Sim streams the im2col matrix itself from DRAM
        geo = (op.h, op.w, op.r, op.s, op.c // groups, op.stride) if op.n == 1 else None
        run = simulate_gemm(Gemm(m, n, k, groups, ea, eb, op.dtype.bytes), s, conv=geo)
        note = (f"im2col: {groups} GEMM{'s' if groups > 1 else ''} of M={m}, N={n}, K={k}, "
                f"streamed from DRAM as SCALE-Sim does (duplicates included)")
        return _single(op, device, s, run.gemm, "conv2d", (note, *sp_notes),
                       {"gemm": [groups, m, n, k_dense], "im2col_on_chip": False, **sp_extra},
                       run=run, epilogue_bytes=_epilogue_bytes(op), flops=flops)
    if fit >= 1:
        g_on = _homed(Gemm(m, n, k, groups, ea, eb, op.dtype.bytes, (raw / dense, 1.0, 1.0)),
                      s, True)
        runs.append((simulate_gemm(g_on, s, max_arrays=fit), True))
    if fit < s.arrays:
        g_off = _homed(Gemm(m, n, k, groups, ea, eb, op.dtype.bytes,
                            (max(1.0, raw / dense), 1.0, 1.0)), s, True)
        runs.append((simulate_gemm(g_off, s), False))
    run, on_chip = min(runs, key=lambda x: (x[0].cycles, x[0].compute_cycles,
                                            x[0].dram_total))
    expansion = dense / raw
    if on_chip and fit < s.arrays:
        where = (f"fits the ifmap SRAM share of {fit} of the {s.arrays} arrays (not of all: "
                 f"the GEMM runs on at most {fit}, faster than reading the expanded matrix)")
    else:
        where = "fits the ifmap SRAM"
    off = ("does not fit the ifmap SRAM" if fit < 1 else
           f"fits the ifmap SRAM share of at most {fit} of the {s.arrays} arrays, slower than "
           f"all of them reading the expanded matrix")
    note = (f"im2col: {groups} GEMM{'s' if groups > 1 else ''} of M={m}, N={n}, K={k} "
            f"(expansion {expansion:.2f}x of the input); input rows band {_b(band)} "
            + (f"{where}: expanded on chip, DRAM reads the raw input"
               if on_chip else f"{off}: DRAM reads the expanded matrix"))
    best = _single(op, device, s, run.gemm, "conv2d", (note, *sp_notes, *_homing_note(s)),
                   {"gemm": [groups, m, n, k_dense], "im2col_on_chip": on_chip, **sp_extra},
                   run=run, epilogue_bytes=_epilogue_bytes(op) * s.offchip[0], flops=flops)
    if op.groups == op.c and op.groups > 1 and op.sparsity is None:
        return min((best, *_depthwise_options(op, device, s)), key=lambda c: c.latency_s)
    return best


def _depthwise_options(op: Conv2d, device: Device, s: ArraySetup) -> list[OpCost]:
    """Two more ways to run a depthwise conv than one channel per array column (each
    channel's GEMM has N = the depth multiplier and K = r*s, so it lights up a sliver of the
    array): (1) ``p`` channels packed into one GEMM with a block-diagonal filter (K = p*r*s
    rows, N = p*multiplier columns; the zeros cost PE slots, not DRAM bytes), as compilers
    for weight-stationary arrays pack depthwise layers; (2) the MACs on the vector unit, as a
    streaming kernel. The caller keeps the fastest of the three."""
    out: list[OpCost] = []
    groups, m, n, k = op.gemm_shape()
    ea, eb = op.dtype.bytes, (op.weight_dtype or op.dtype).bytes
    p = min(groups, max(1, s.rows // k))
    if p > 1:
        raw = op.n * op.h * op.w * ea  # one channel's input
        u_a = max(raw / (float(m) * k * ea), 0.0)
        packs = math.ceil(groups / p)
        g = _homed(Gemm(m, n * p, k * p, packs, ea, eb, op.dtype.bytes, (u_a, 1.0 / p, 1.0)),
                   s, True)
        run = simulate_gemm(g, s)
        note = (f"depthwise: {p} channels packed per GEMM with a block-diagonal filter: "
                f"{packs} GEMMs of M={m}, N={n * p}, K={k * p} (the off-diagonal zeros take PE "
                f"slots, not DRAM bytes)")
        out.append(_single(op, device, s, run.gemm, "conv2d", (note, *_homing_note(s)),
                           {"gemm": [packs, m, n * p, k * p], "depthwise_pack": p}, run=run,
                           epilogue_bytes=_epilogue_bytes(op) * s.offchip[0]))
    vpeak, cls = device.peak(op.dtype, "vector")
    if vpeak > 0:
        compute_s, rate, cls, vpeak = depthwise_vector_rate(op, device)
        w = float(op.weight_bytes())
        act_in = float(op.bytes_read()) - w
        act_out = float(op.bytes_written()) + _epilogue_bytes(op)
        f_in, f_w, f_out = s.offchip
        dram = act_in * f_in + w * f_w + act_out * f_out
        onchip = act_in + w + act_out - dram
        bw = s.dram_bytes_per_cycle * s.clock_hz
        memory_s = dram / bw if dram else 0.0
        note = (f"depthwise on the vector unit: {op.flops().total:.3g} FLOP at "
                f"{rate / 1e9:.3g} GFLOP/s ({cls}); {_b(dram)} from {device.dram.name} at "
                f"{bw / 1e9:.3g} GB/s")
        out.append(make_cost(device, op, compute_s=compute_s, memory_s=memory_s,
                             overhead_s=s.launch_overhead_s,
                             bytes_by_level={device.dram.name: dram, s.sram_level: onchip},
                             compute_class=cls, peak_flops=vpeak,
                             details={"depthwise_on": "vector", "dram_bytes": dram},
                             notes=(note, *_homing_note(s))))
    return out


def attention_cost(op: Op, device: Device, options: MapOptions, setup: SetupFn) -> OpCost:
    """Attention as QK^T and PV on the array plus the softmax on the vector unit, summed.

    K and V are read in full (``kv_dtype``) although causal masking shrinks the GEMMs' key
    dimension to the average visible length. The score matrix stays on chip (fused) when one
    (batch, kv head)'s scores fit the array's ofmap SRAM share, else it round-trips DRAM.
    Appending the new K/V to the cache is counted as DRAM writes. Decode is GEMV-like
    (M = query heads per KV head): expect low MAC utilisation. The busy time is divided by
    ``kind_efficiency["attention"]`` (default 1).
    """
    assert isinstance(op, Attention)
    s = setup(op, device, options)
    qk, pv = op.as_gemms()
    e = op.dtype.bytes
    kvb = (op.kv_dtype or op.dtype).bytes
    u_kv = op.kv_tokens / op.batch / qk.n  # keys per sample (the mean with seq_lens)
    score_bytes = qk.m * qk.n * e
    # The scores must fit each array's share of the ofmap SRAM, so on fewer arrays they may
    # stay on chip where on all of them they do not: cost both and keep the faster (more
    # arrays never slower). ``fit`` is the most arrays whose shares hold them.
    fit = next((a for a in range(s.arrays, 0, -1)
                if score_bytes <= s.usable_sram["ofmap"] / a), 0)
    pairs = []
    for fused, limit in ((True, fit), (False, s.arrays)):
        if limit < 1 or (not fused and fit == s.arrays):
            continue
        u_s = 0.0 if fused else 1.0
        g1 = Gemm(qk.m, qk.n, qk.k, qk.batch, e, kvb, e, (1.0, u_kv, u_s))
        g2 = Gemm(pv.m, pv.n, pv.k, pv.batch, e, kvb, e, (u_s, u_kv, 1.0))
        pairs.append((simulate_gemm(g1, s, limit), simulate_gemm(g2, s, limit), fused))
    r1, r2, fused = min(pairs, key=lambda x: (x[0].cycles + x[1].cycles,
                                              x[0].compute_cycles + x[1].compute_cycles))
    soft_s, _, _ = vector_time(op, device)
    append = 2.0 * op.tokens * op.kv_heads * op.head_dim * kvb
    append_cycles = append / s.dram_bytes_per_cycle
    cycles = r1.cycles + r2.cycles + append_cycles
    notes = [*run_notes(r1, s, "QK^T"), *run_notes(r2, s, "PV"),
             f"scores {_b(score_bytes)} per (batch, kv head) "
             + (("stay in the ofmap SRAM (fused)" if fit == s.arrays else
                 f"stay in the ofmap SRAM (fused) on at most {fit} of the {s.arrays} arrays "
                 f"(whose shares hold them; faster than the round trip to DRAM)")
                if fused else "do not fit on chip: written to and read back from DRAM"),
             f"softmax on the vector unit: {soft_s * 1e6:.3g} us, added after the GEMMs; "
             f"K/V append {_b(append)} to DRAM: {append_cycles:.0f} cycles"]
    if op.phase == "decode":
        notes.append("decode is GEMV-like (M = query heads per KV head): the array is mostly "
                     "fill and drain, so low utilisation is expected")
    d1, d2 = run_details(r1), run_details(r2)
    dram_by = {o: r1.dram_bytes[o] + r2.dram_bytes[o] for o in OPERANDS}
    details = {
        "dataflow": s.dataflow, "array": [s.rows, s.cols], "arrays": s.arrays,
        "folds": r1.folds + r2.folds, "cycles": cycles,
        "compute_cycles": r1.compute_cycles + r2.compute_cycles,
        "stall_cycles": cycles - r1.compute_cycles - r2.compute_cycles,
        "utilization": (r1.gemm.macs + r2.gemm.macs) / (
            s.rows * s.cols * s.macs_per_pe * s.arrays * (r1.compute_cycles + r2.compute_cycles)),
        "sram_fits": {o: r1.sram_fits[o] and r2.sram_fits[o] for o in OPERANDS},
        "dram_bytes": {**dram_by, "kv_append": append},
        "scores_on_chip": fused, "softmax_s": soft_s, "gemms": {"qk": d1, "pv": d2},
    }
    return scale_busy(
        _finish(op, device, s, compute_cycles=r1.compute_cycles + r2.compute_cycles,
                memory_cycles=r1.memory_cycles + r2.memory_cycles + append_cycles,
                cycles=cycles, dram=r1.dram_total + r2.dram_total + append,
                onchip=sum(r1.sram_bytes.values()) + sum(r2.sram_bytes.values()),
                details=details, notes=notes, extra_compute_s=soft_s), device, "attention")



def homed_streaming_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """A streaming op (norm, pooling, elementwise) on an array part: from the on-chip level
    when the graph keeps its activations there (and its weights, if it has any), else the
    common DRAM-streaming cost."""
    from simulator.mapping.common import streaming_cost

    f = options.offchip
    if f is not None and f[0] == 0.0 and f[2] == 0.0 and (
            f[1] == 0.0 or op.weight_bytes() == 0) and resolve_schedule(device, options) == "best":
        name = onchip_level(device)
        level = next((lv for lv in device.memory if lv.name == name), None)
        if level is not None:
            return streaming_cost(op, device, options, level=level)
    return streaming_cost(op, device, options)


def register_array_family(family: str, array_setup) -> None:
    """Register the cost functions of a systolic-array family (TPU/ASIC ``systolic``, FPGA
    ``fpga``): GEMM-like ops through this module with the family's ``array_setup``, streaming
    ops and collectives through :mod:`simulator.mapping.common`."""
    from simulator.mapping.base import register_cost
    from simulator.mapping.common import STREAMING_KINDS, collective_cost

    for kind in STREAMING_KINDS:
        register_cost(kind, family)(homed_streaming_cost)
    register_cost("collective", family)(collective_cost)
    for kind, fn in (("matmul", matmul_cost), ("conv2d", conv2d_cost),
                     ("attention", attention_cost)):
        register_cost(kind, family)(
            lambda op, device, options, fn=fn: fn(op, device, options, array_setup))
