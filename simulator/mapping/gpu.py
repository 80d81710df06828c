"""GPU mapper: thread-block tiles in waves over the SMs, tensor-core efficiency, the operand
feed from the L2 into the SMs, L2 reuse, split-K, a fused attention kernel, and the fixed cost
of every kernel (launch, pipeline fill).

Every op is one kernel; times are seconds, traffic bytes. Parameters come from the spec's
``params`` (defaults in brackets): ``sm_count`` [matrix units / 4], ``tile_shapes``
[128x256, 128x128, 64x128, 64x64], ``compute_efficiency`` {class: fraction} [0.8],
``attention_efficiency`` [0.55], ``bandwidth_efficiency`` [0.85], ``vector_efficiency`` [0.6],
``l2_level`` ["l2"], ``launch_overhead`` [4 us], ``sm_l2_bandwidth`` [64 B per clock of the
matrix units], ``cluster_multicast`` [1], ``pipeline_latency`` [the spec's DRAM latency plus
its L2 latency], ``kind_efficiency`` {kind: factor} [1.0] (streaming kinds and attention; see
:mod:`simulator.mapping.common`).

GEMM (``matmul``; ``conv2d`` as an implicit GEMM with its groups as the batch)
    * C[M, N] of each batch is cut into thread-block tiles tm x tn from the spec's
      ``tile_shapes``. cuBLAS and CUTLASS build kernels from power-of-two tiles (kernel names
      ``..._64x64_...``, ``..._256x128_...``; Hopper's ``nvjet_..._64x8_...`` for decode), so a
      side longer than the problem is cut to the smallest power of two that covers it, at
      least 16 (the MMA instruction's granularity): an M=1 GEMV pays for 16 rows, not 128,
      and M=96 runs a 128-row tile, not a 96-row one. Ragged edge tiles are padded (paid
      for) but load only the rows and columns inside the problem. Twice the rows never cost
      more than twice: the larger problem has the same tiles, twice as many or, where a side
      was cut, each twice as tall.
    * ``tiles = ceil(M/tm) * ceil(N/tn) * batch`` run one per SM per wave:
      ``waves = ceil(tiles / SMs)``, wave efficiency ``tiles / (waves * SMs)``.
    * An SM runs at ``matrix peak / SMs * compute_efficiency[class]`` (the peak of the class
      the dtype runs as: fp32 falls back to the CUDA cores): the rate of a large, well-fed
      tile. Padded tiles are paid for: ``compute = waves * 2*tm*tn*K / per-SM rate``.
    * Operand feed (why small tiles are slow). For every K element a tile streams
      ``tm*a + tn*b`` bytes of A and B (a, b: bytes per element) from the L2 into its shared
      memory and does ``2*tm*tn`` FLOPs on them: ``(a/tn + b/tm) / 2`` bytes per FLOP, so
      halving both sides of a tile doubles the bytes each FLOP needs. Two limits: all blocks
      together draw at most the L2's achievable bandwidth (``bandwidth * bandwidth_efficiency``
      of the ``l2_level``), and one SM at most ``sm_l2_bandwidth`` (its port into the
      L2-to-SM crossbar): ``feed = max(all blocks' bytes / L2 rate, waves * one block's bytes
      / port)``, overlapped with the tensor work like the DRAM time. Edge tiles load only the
      rows and columns inside the problem. The numbers that decide it, with every SM busy:
      A100 (L2 5,120 B/clk, whitepaper; 0.88 achievable = 41.7 B/clk per SM) against a bf16
      SM at 80% of 2,048 FLOP/clk: a 128x128 tile needs 25.6 B/clk (compute-bound), 64x64
      needs 51.2 (feed-bound, 1.23x slower per FLOP). H100 (L2 11.5 TB/s, an estimate: the
      A100 figure scaled by SMs and clock; 0.87 achievable = 41.4 B/clk per SM at 1.83 GHz)
      against 80% of 4,096 FLOP/clk: 128x256 needs 38.4 B/clk, 128x128 51.2 (38.4 with the
      2-CTA multicast below). So huge GEMMs
      pick 128x256/128x128 tiles, while a skinny or batch-1 GEMM still takes the small tile
      that fills the SMs when that beats the feed cost. The port default, 64 B per clock of
      the matrix units (A100 90 GB/s, H100 117 GB/s, ~1.5x an SM's share of the achievable L2),
      is an estimate (NVIDIA publishes only the aggregate): it matters when few blocks run,
      e.g. a GEMV on 32 SMs draws at most 32 x 117 GB/s from an H100's L2.
    * Thread-block clusters (Hopper): with ``cluster_multicast = c`` the c CTAs of a cluster
      receive one TMA multicast of the tile they share (H100 whitepaper: TMA multicast to the
      SMs of a cluster), so that operand's L2 reads divide by c, along whichever of M or N
      saves more (and only when that dimension has at least c tiles). cuBLAS's Hopper kernels
      run in 2x1 clusters, hence 2 in the H100/H200 specs.
    * Split-K, only when ``tiles < SMs``: K is cut into ``s <= SMs / tiles`` chunks (each at
      least 64 deep) so ``tiles * s`` blocks fill the idle SMs; ``s`` is a power of two, the
      factors a problem with twice the tiles can halve and still fill its one wave (with
      ``s = 3`` on ``t`` tiles, ``2t`` tiles would have no split between 1 and 3 that fits,
      and a GEMM with twice the rows would run up to 1.5x slower than its two halves in
      turn). The fp32 partials (``s*M*N*4`` B per batch, in the L2 when they fit, else DRAM)
      are summed as cuBLAS does, out of place, by a second kernel
      (``cublasLt::splitKreduce_kernel`` in profiles, 2.6-3.8 us each in public Hopper and
      Blackwell traces): its startup, one pipeline fill, then the partials at the achievable
      bandwidth; launched right after the GEMM in the same library call, so its launch
      share is only the back-to-back gap between two queued kernels (``graph_launch_gap``,
      never more than ``launch_overhead``). ``details["kernels"]`` is 2 then, and
      ``details["launch_s"]`` holds both launch shares. This is what keeps split-K from
      being free on batch-1 convs and short-K GEMVs.
    * DRAM traffic: if A+B+C of one batch fit in the L2, each operand crosses DRAM once
      (compulsory bytes). Otherwise a wave covers a roughly square block of ``wm x wn`` tiles
      (``wm = wn = floor(sqrt(SMs))``, or all of a dimension narrower than that and as much of
      the other as the SMs allow) whose A and B panels stay in the L2 while it runs, so A is
      read ``ceil(N_tiles / wn)`` times and B ``ceil(M_tiles / wm)`` times; C is written once.
      Without an L2 level every tile reads its own panels from DRAM (and the feed limit is
      the DRAM's). A fused epilogue with a second input (``add``/``mul``: a residual) reads
      that C-sized tensor once, with the output tiles (``details["epilogue_bytes"]``); its
      vector work runs on the CUDA cores under the MMAs.
    * Bytes in flight (why weight-streaming GEMMs sustain less than a copy kernel). Each
      CTA's K loop cycles ``stages`` 64-deep shared-memory buffers (as many as fit in the
      spec's ``smem`` per SM, 2 to 6: cuBLAS's ``stages_64x3`` .. ``64x6`` kernels); all but
      the one being consumed are loads in flight, ``r = CTAs x in-flight bytes / (DRAM
      latency x achievable bandwidth)``, and with the latency growing under load as
      ``L0 / (1 - X / X_max)`` the stream sustains ``X = X_max r / (1 + r)``: 1.6-1.7 TB/s
      of the A100's 1.79 achievable with 108 CTAs (Kineto: 1.6-1.65), much less with the 16
      CTAs of a narrow GEMM, so split-K (more CTAs in flight) pays at small M.
      ``memory = DRAM bytes / X``.
    * The kernel's first pipeline fill (``fill``, below) is serial: the first MMA waits for
      the first stage's load and no other load or math is under way yet, so it is a fixed
      cost of the kernel (in ``overhead_s``, not hidden under the weight stream: the
      stream's Little's-law rate holds once the stages are in flight). A memory-bound
      GEMV therefore pays startup, fill and its bytes at the sustained rate, as the
      streaming kernels of :mod:`simulator.mapping.gpu_kernels` do.
    * Per later wave (one large CTA per SM at a time): its pipeline fill and the
      epilogue, the wave's output tiles written together at the achievable DRAM bandwidth
      (3 us of a 25 us wave for 128x256 fp16 tiles at K = 2304 on an H100: short-K GEMMs
      run further from peak, as measured); the last, partial wave writes only its own
      tiles, so the epilogues add up to every output tile once. A persistent kernel
      (``persistent_gemm``, default on parts with thread-block clusters: Hopper's
      warp-specialised cuBLAS kernels overlap a tile's epilogue with the next tile's main
      loop) pays no later fill and one epilogue, and so does a GEMM whose K loop is short
      enough that two CTAs' stages fit in an SM's shared memory at once (one's prologue
      and epilogue run under the other's math).
    * Math and data: a stage waits for the later of its math and its data; with the data
      time exponentially distributed (requests queue in the loaded memory system),
      ``busy = c + m exp(-c/m)`` for ``c`` = math + later waves' overheads and ``m`` =
      memory: the roofline's max far from the ridge, 1.37x it at the ridge (measured GEMMs
      at 64-512 tokens show that rounded knee; a knee sharpened by the stages' buffering,
      as a finite-buffer tandem queue with 2-8 buffered stages would give, fits the Vidur
      A100 profiles worse: 7.2-8.8% MAPE, -2.6 to -6.5% bias; so does the S-stage form, a
      stage's data, the S loads ahead of it served in order (an Erlang-S time), hidden by
      the math of the S stages in flight, ``c + m [Q(S+1, Sc/m) - (c/m) Q(S, Sc/m)]`` with
      Q the regularised upper incomplete gamma, which is this formula at S = 1 and tends to
      ``max(c, m)`` as S grows: 8.3% / -5.9% at S = stages - 1 against 7.3% / -2.3%,
      although it moves the external checks toward their measurements: Jetson AGX Orin
      bf16 2048^3-8192^3 27.4-28.9 -> 29.4-30.6 TFLOP/s (measured 33.4-34.1), H100 8192^3
      758 -> 764 (797.5), ResNet-50 Offline on an A100 37.1k -> 38.8k samples/s (42.4k)).
      ``latency = max(busy, feed) + split-K reduction + kernel_startup + fill +
      launch_overhead`` (+ the reduction kernel's gap with split-K). The
      reported ``memory_s`` is ``max(memory, feed) + reduction``.
    * Every tile shape (and split) is evaluated and the one that ends first wins, the
      reduction kernel's gap counted; ties go to the tile that pulls fewer bytes through the
      L2 (the larger tile), then to the smaller split.

Fixed cost of every kernel (GEMM, attention, streaming, depthwise)
    * ``launch_overhead``: launch and the gap between dependent kernels.
    * Pipeline fill and drain: nothing overlaps the first operand load (the first MMA waits
      for it) or the last store (the kernel ends when it reaches the L2), so each kernel pays
      one latency of the level its inputs come from (DRAM for GEMMs, attention and
      non-resident streaming ops; the L2 for a streaming op whose working set is resident)
      plus the L2 latency: 0.8 us on the A100 spec, 0.75 us on the H100 (the specs' memory
      latencies, estimates from pointer-chase microbenchmarks). Paid once per kernel, never
      overlapped; a non-persistent GEMM's later waves each pay one more, overlapped with the
      stream like the math (see GEMM above).
    * Why: at batch 1 most kernels run a few microseconds, so per-kernel fixed costs and the
      split-K reduction set the latency (ResNet-50 int8 on an A100: 56 kernels; the MLPerf
      SingleStream p90 is 0.457 ms, about 8 us per kernel).
    * Considered and not modelled: Stream-K decompositions (which would smooth wave
      quantisation); several CTAs of a small tile resident on one SM (more splits in one
      wave: the reduction kernel still costs more than the extra bytes in flight save on
      the narrow GEMMs where it would apply); the stages are sized to the spec's ``smem``
      level, which on the A100 specs is the 192 KiB L1/shared of an SM, of which a kernel
      may use 164 KiB as shared memory (CUDA C++ Programming Guide, compute capability
      8.0): with 164 KiB the Vidur A100 replay moves from 7.3% / -1.9% to 7.2% / -0.7%
      but the 70B decode GEMVs (470 MB) from +4% to +8%, fewer stages in flight. A
      cuBLAS-like fill-the-SMs rule (a tile that leaves SMs idle and could split K must
      split; not a minimum over plans) reads 7.0% / -1.2% on that replay but breaks the
      twice-the-batch law (an MI250X fp32 129 x 1665 x 512 GEMM: 18.7 us at batch 1,
      40.8 us at batch 2, a 128x128 split plan forced where 64x64 tiles cannot split).
      A latency chain for short K loops (a CTA keeps ``stages - 1`` loads in flight, so
      ``ceil(iters / (stages - 1))`` DRAM round trips per wave, the stream time floored at
      ``waves x trips x latency + bytes / bandwidth``): it is the Little's-law stream above
      with whole trips, so it adds at most one DRAM latency (0.6 us on the A100) per wave,
      not the 2-2.5 us the Vidur A100 profiles leave unexplained on 5-20 us GEMMs (a fit of
      the 1-16-token GEMMs: 4.5 us + weight / 1.69 TB/s; the model's fixed part is 2.0 us).
      With the S-stage overlap on, the chain counted once (its first trip inside the fill)
      reads 7.3% / -3.2% on that replay (today 7.3% / -2.3%); counting the first trip in
      both, 6.9% / -2.5%; each trip at the loaded latency of a full round, 7.0% / -1.2%; a
      trip whose stage hits the L2 at the L2's latency, 7.5% / -4.6%; the TP 8, 1-16-token
      GEMMs stay 5-20% fast in all. The gains come from the accounting, not the physics:
      the bare floor ``waves x trips x latency`` never binds on that replay (8.3% / -5.9%,
      the S-stage overlap's alone), and the additive forms break the Orin BERT Offline
      check (-21%) and the twice-the-tiles and skinny-GEMM laws.

Weight sparsity (an op's :class:`~workloads.ops.Sparsity`, set by
:func:`workloads.transforms.prune.prune`)
    * The weight is stored compressed (values kept plus index metadata, the op's
      ``b_bytes``/``weight_bytes``): its DRAM bytes and the bytes each tile streams from the L2
      into its SM (B bytes per element x ``weight_stored_fraction``) shrink, whatever the
      pattern: the kernel loads compressed tiles into shared memory (sparse tensor cores take
      the compressed operand and its metadata; an unstructured kernel such as SpInfer's
      decodes its bitmap in shared memory). So a memory-bound decode GEMV gets faster by the
      compression ratio on every GPU.
    * 2:4 on a part with sparse tensor cores (``sparse_speedup`` {class: sparse peak / dense
      peak}, 2 on A100/H100/H200/L4/MI300X for their 8/16-bit classes per the datasheets) for
      the class the dtype runs as: the per-SM math rate is multiplied by ``sparse_speedup x
      sparse_efficiency`` (default 0.7: measured 2:4 GEMMs run 1.2-1.4x faster than dense
      cuBLAS, not 2x; see :mod:`simulator.arch.params`), never below 1 (a library falls
      back to the dense kernel). The executed matrix FLOPs (energy, utilisation) are the
      kept half.
    * Any other N:M, unstructured sparsity, a class without a sparse rate (tf32 needs 1:2 on
      NVIDIA, fp32 runs on the CUDA cores) or a part without sparse tensor cores: the dense
      math on decompressed tiles, said in the notes; decompression is assumed hidden under
      the math and memory time (optimistic for compute-bound unstructured kernels).

Which time is predicted
    Every GPU op's ``latency_s`` is the kernel's device time plus ``launch_overhead``
    (``details["launch_s"]``: the launch and the gap to the previous kernel on the stream).
    The device time alone, what a profiler's kernel trace (Kineto, Nsight Systems) reports,
    is :func:`kernel_time` (``latency_s - launch_s``); the Python dispatch of an eager
    framework op is in neither.

Attention and streaming kernels are in :mod:`simulator.mapping.gpu_kernels`.

Depthwise convolutions have one input channel per filter, too little reuse for the tensor
cores: they are costed like a streaming op, their FLOPs on the CUDA cores at
``vector_efficiency``. Collectives use :func:`simulator.mapping.common.collective_cost`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from simulator.arch.params import default
from simulator.arch.spec import Device, MemoryLevel
from simulator.errors import MappingError
from simulator.mapping.base import MapOptions, OpCost, make_cost, register_cost
from simulator.mapping.common import (
    GemmOperands,
    collective_cost,
    conv2d_by_gemm,
    depthwise_vector_rate,
    gemm_operands,
    param,
)
from simulator.units import format_quantity
from workloads.dtypes import DType
from workloads.ops import (
    Conv2d,
    Flops,
    MatMul,
    Op,
)

__all__ = ["FAMILY", "DEFAULT_TILES", "GemmPlan", "kernel_time"]

FAMILY = "gpu"
DEFAULT_TILES: tuple[tuple[int, int], ...] = ((128, 256), (128, 128), (64, 128), (64, 64))
_MMA_GRANULE = 16        # rows/cols of one MMA instruction: the least a tile side is padded to
_MIN_SPLIT_K = 64        # a split-K chunk is at least one main-loop K block deep
_L2_RESIDENT_FRACTION = 0.5
_PARTIAL_BYTES = 4       # split-K partial sums are fp32
_SM_PORT_BYTES_PER_CYCLE = 64  # L2 -> SM bytes per clock one SM can take (see the docstring)
_K_BLOCK = 64            # K depth of one main-loop stage (cuBLAS/CUTLASS sm80 "stages_64xS")
_L2_BLOCKING_FRACTION = 0.5  # of the L2 for a resident block of panels (see _rereads)
_MAX_STAGES = 6          # deepest software pipeline in cuBLAS's kernel names ("stages_64x6")


# -- device facts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Gpu:
    """The facts of one device that the GPU formulas need, for one compute class."""

    device: Device
    sms: int
    peak: float          # matrix FLOP/s of the class the dtype runs as
    cls: str
    efficiency: float    # fraction of peak a well-shaped kernel reaches
    dram_bw: float       # achievable DRAM B/s
    l2: MemoryLevel | None
    l2_bw: float         # achievable L2 B/s (0 without an L2)
    launch_s: float
    feed_bw: float       # achievable B/s of the level that feeds operand tiles to the SMs
    port_bw: float       # the most one SM takes from that level (B/s)
    fill_s: float        # pipeline fill and drain: first operand load + last store latency
    l2_lat: float        # L2 round-trip latency (s; 0 without an L2)
    multicast: int       # CTAs of a thread-block cluster sharing one L2 read of a tile
    startup_s: float = 0.0  # kernel startup before the first load (instruction, parameters)
    dram_lat: float = 0.0   # unloaded DRAM latency (s)
    smem_per_sm: float = 0.0  # shared memory one SM gives a GEMM's pipeline stages (B)
    persistent: bool = False  # GEMM kernels overlap a tile's epilogue with the next mainloop
    gap_s: float = 0.0      # gap before a library's second kernel, launched back to back

    @property
    def rate_per_sm(self) -> float:
        return self.peak / self.sms * self.efficiency


def _sm_count(device: Device) -> int:
    if "sm_count" in device.params:
        return int(device.params["sm_count"])
    matrix = sum(u.count for u in device.units("matrix"))
    return max(1, matrix // 4)  # 4 tensor cores per SM since Volta


def _efficiency(device: Device, cls: str, op_cls: str, default: float) -> float:
    table = device.params.get("compute_efficiency") or {}
    return float(table.get(cls, table.get(op_cls, default)))


def _l2(device: Device) -> MemoryLevel | None:
    lvl = device.level(str(device.params.get("l2_level", "l2")))
    return lvl if lvl is not None and lvl is not device.dram else None


def _launch(device: Device) -> float:
    return float(param(device, "launch_overhead"))


def _startup(device: Device) -> float:
    """Device time from a kernel's start to its first data load (s): ``kernel_startup``, else
    two DRAM latencies (instruction fetch, then the kernel's parameters, both cold)."""
    v = param(device, "kernel_startup")
    return float(v) if v is not None else 2.0 * device.dram.latency_s


def kernel_time(cost: OpCost) -> float:
    """Device time of the kernel(s) behind ``cost`` as a profiler (Kineto, Nsight Systems)
    reports it: the op's latency less its ``launch_overhead`` (the launch and the gap to the
    previous kernel on the stream, which a kernel trace does not count).

    >>> from simulator import predict_op
    >>> from workloads.ops import Norm
    >>> c = predict_op(Norm(norm="rmsnorm", rows=1, cols=4096, dtype="fp16"), "a100-sxm-80gb")
    >>> round(kernel_time(c) * 1e6, 1), round(c.details["launch_s"] * 1e6, 1)
    (4.3, 4.0)
    """
    return cost.latency_s - float(cost.details.get("launch_s", 0.0))


def _fill(device: Device, source: MemoryLevel | None = None) -> float:
    """Pipeline fill and drain of one kernel (s): the latency of its first operand load (from
    ``source``, by default DRAM) plus that of its last store into the L2; or the spec's
    ``pipeline_latency``."""
    if "pipeline_latency" in device.params:
        return float(device.params["pipeline_latency"])
    l2 = _l2(device)
    src = source or device.dram
    return src.latency_s + (l2.latency_s if l2 is not None else 0.0)


def _smem_per_sm(device: Device) -> float:
    """Shared memory of one SM (B): the spec's ``smem`` level over the SMs; 0 without one
    (then no bytes-in-flight limit is applied to GEMM streams)."""
    lvl = device.level("smem")
    return lvl.capacity_bytes / _sm_count(device) if lvl is not None else 0.0


def _port(device: Device) -> float:
    """The most one SM takes from the L2 (B/s): ``sm_l2_bandwidth``, else 64 B per cycle of
    the matrix units' clock."""
    if "sm_l2_bandwidth" in device.params:
        return float(device.params["sm_l2_bandwidth"])
    units = device.units("matrix") or device.units("vector")
    clock = max((u.clock_hz for u in units), default=0.0)
    return _SM_PORT_BYTES_PER_CYCLE * clock if clock > 0 else math.inf


def _back_to_back_gap(device: Device) -> float:
    """Launch share of a library's second kernel (split-K's reduction), issued right after
    the first in the same call: the host launches it while the first runs, so the device
    sees only the gap between two kernels queued back to back, ``graph_launch_gap`` (0.9 us
    measured on a V100, NVIDIA's CUDA Graphs blog, see :mod:`simulator.arch.params`), never
    more than ``launch_overhead``."""
    launch = _launch(device)
    gap = param(device, "graph_launch_gap", None)
    return launch if gap is None else min(float(gap), launch)


def _gpu(device: Device, dtype: DType, efficiency: float | None = None) -> _Gpu:
    """Resolve the device's parameters for a kernel in ``dtype`` (``efficiency`` overrides
    the spec's compute_efficiency, e.g. with attention_efficiency)."""
    peak, cls = device.peak(dtype, "matrix")
    if peak <= 0:
        raise MappingError(f"{device.name}: no matrix or vector unit can run {dtype} "
                           f"(add a rate for {dtype.compute_class} to a compute unit)")
    eff = efficiency if efficiency is not None else \
        _efficiency(device, cls, dtype.compute_class, float(default(device.family, "compute_efficiency")))
    bw_eff = param(device, "bandwidth_efficiency")
    l2 = _l2(device)
    dram_bw = device.dram.bandwidth_Bps * bw_eff
    l2_bw = l2.bandwidth_Bps * bw_eff if l2 else 0.0
    return _Gpu(device, _sm_count(device), peak, cls, eff, dram_bw, l2, l2_bw, _launch(device),
                feed_bw=l2_bw or dram_bw, port_bw=_port(device), fill_s=_fill(device),
                l2_lat=l2.latency_s if l2 else 0.0,
                multicast=int(device.params.get("cluster_multicast", 1)),
                startup_s=_startup(device), dram_lat=device.dram.latency_s,
                smem_per_sm=_smem_per_sm(device),
                persistent=bool(device.params.get("persistent_gemm",
                                                  int(device.params.get("cluster_multicast", 1))
                                                  > 1)),
                gap_s=_back_to_back_gap(device))


# -- GEMM planning ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmPlan:
    """The chosen tiling of one GEMM and what it costs (seconds, bytes)."""

    tile: tuple[int, int]
    m_tiles: int
    n_tiles: int
    tiles: int
    split_k: int
    waves: int
    wave_efficiency: float
    wave_block: tuple[int, int]
    a_reads: int
    b_reads: int
    l2_hit: bool
    compute_s: float
    memory_s: float
    feed_s: float
    reduce_s: float
    reduce_bytes: float
    reduce_in_l2: bool
    dram_bytes: float
    l2_bytes: float
    unsplit_s: float  # best time of this tile without split-K (for the notes)
    wave_overhead_s: float = 0.0  # every wave's prologue (first stage) and epilogue (C tiles)
    stream_bw: float = 0.0        # DRAM B/s the tiles' pipelines sustain (Little's law)
    stages: int = 0               # K-loop pipeline stages that fit in shared memory
    kernels: int = 1              # 2 with split-K: the GEMM, then the reduction kernel
    later_fills: int = 0          # pipeline fills after the kernel's first (in wave_overhead_s)

    @property
    def busy_s(self) -> float:
        return max(_overlap(self.compute_s + self.wave_overhead_s, self.memory_s),
                   self.feed_s) + self.reduce_s


def _round_up(x: int, q: int) -> int:
    return -(-x // q) * q


def _overlap(math_s: float, data_s: float) -> float:
    """Time of a K loop whose stages each need their math (``math_s`` in all, deterministic)
    and their data from DRAM (``data_s`` in all): ``math + data * exp(-math / data)``. A
    stage waits for the later of the two; with the data's arrival time exponentially
    distributed about its mean (requests queue in a loaded memory system, the M/M/1
    picture), ``E[max(c, X)] = c + m exp(-c/m)`` for X ~ Exp(mean m), summed over the
    stages; no fitted constant. Far from the ridge this is the roofline's max; at the ridge
    1.37x it: the rounded knee measured GEMMs show between the memory- and compute-bound
    regimes. Convex and of degree 1, so doing twice the work never costs more than twice.
    Only DRAM traffic queues so: the operand feed from the L2 (a fixed ~200 ns hit, hidden by
    the stages) stays a hard limit beside it."""
    return math_s + data_s * math.exp(-math_s / data_s) if data_s > 0 else math_s


def _stream_bw(hw: _Gpu, in_flight: float) -> float:
    """DRAM B/s that ``in_flight`` bytes of outstanding tile loads sustain (Little's law with
    a loaded latency). A GEMM's loads are bounded by its pipeline stages in shared memory,
    not by threads as in a copy kernel; under load the DRAM latency grows as
    ``latency / (1 - X / X_max)`` (queueing), so ``X = in_flight / latency(X)`` gives
    ``X = X_max r / (1 + r)`` with ``r = in_flight / (latency x X_max)``. A100: 108 SMs x
    ~130 KiB of stages = 14 MB in flight over 600 ns x 1.79 TB/s = 1.08 MB: r = 13, 93% of
    the achievable 1.79 TB/s (Kineto A100 weight-streaming GEMMs: 1.6-1.65 TB/s); 16 CTAs of
    a narrow GEMM reach only r = 2, 65%, which is why split-K pays at small M."""
    if hw.smem_per_sm <= 0 or hw.dram_lat <= 0 or in_flight <= 0:
        return hw.dram_bw
    r = in_flight / (hw.dram_lat * hw.dram_bw)
    return hw.dram_bw * r / (1.0 + r)


def _rereads(m_t: int, n_t: int, sms: int, a_panel: float = 0.0, b_panel: float = 0.0,
             l2_bytes: float = 0.0) -> tuple[int, int, tuple[int, int]]:
    """(A reads, B reads, block) when the operands do not fit in the L2 together.

    Tiles that run at once share their panels through the L2: the wave block, whose sides
    grow with the SM count. And the L2 keeps panels between waves: a block of ``wm`` tile
    rows (``a_panel`` bytes each) by ``wn`` tile columns (``b_panel`` each) whose panels fit
    in ``_L2_BLOCKING_FRACTION`` of the L2 is read from DRAM once (the cache blocking of
    Goto and van de Geijn 2008, who fill about half of the L2 with the resident block: the
    other half streams the other operand and the output). A is then read once per block
    column, B once per block row; the block with the least traffic wins. The resident block
    may also be one operand's alone, as in Goto and van de Geijn's GEBP (the packed block of
    A stays in the L2 while B streams past it): ``bn`` tile columns of B (``bn x b_panel``
    within the fraction) stay while every tile row of A streams by once per block column,
    so B is read once; or ``bm`` tile rows of A stay and B streams. A streamed panel needs
    the L2 only for the K stages in flight, which the other half holds. This is what lets a
    GEMM whose weights are about the L2's size (BERT-Large's 3-4 MiB int8 layers on the 4 MiB
    L2 of a Jetson AGX Orin) read its weights once per block column instead of once per
    wave. More SMs or more L2 only add candidates, so neither ever means more traffic.
    """
    if m_t * n_t <= sms:
        return 1, 1, (m_t, n_t)
    side = math.isqrt(sms)
    if n_t <= side:
        wm, wn = min(m_t, sms // n_t), n_t
    elif m_t <= side:
        wm, wn = m_t, min(n_t, sms // m_t)
    else:
        wm = wn = side

    def traffic(bm: int, bn: int) -> float:
        return a_panel * m_t * math.ceil(n_t / bn) + b_panel * n_t * math.ceil(m_t / bm)

    best = (traffic(wm, wn), wm, wn)
    budget = _L2_BLOCKING_FRACTION * l2_bytes
    if a_panel > 0 and b_panel > 0 and budget > 0:
        root = math.isqrt(n_t) + 2  # every distinct ceil(n_t / r): the large r give the small
        for bn in sorted({math.ceil(n_t / r) for r in range(1, root)} | set(range(1, root))):
            room = budget - bn * b_panel
            if room < 0:
                break
            best = min(best, (traffic(m_t, bn), m_t, bn))  # B's block stays, A streams
            if room >= a_panel:
                bm = min(m_t, int(room // a_panel))
                best = min(best, (traffic(bm, bn), bm, bn))
        root_m = math.isqrt(m_t) + 2
        for bm in sorted({math.ceil(m_t / r) for r in range(1, root_m)} | set(range(1, root_m))):
            if bm * a_panel > budget:
                break
            best = min(best, (traffic(bm, n_t), bm, n_t))  # A's block stays, B streams
    _, wm, wn = best
    return math.ceil(n_t / wn), math.ceil(m_t / wm), (wm, wn)


def _splits(tiles: int, k: int, sms: int) -> list[int]:
    """Split-K factors to cost: powers of two up to the SMs the tiles leave idle (one wave),
    each chunk at least ``_MIN_SPLIT_K`` deep. Powers of two so that twice the tiles can
    always use half the factor (see the module docstring)."""
    if tiles >= sms:
        return [1]
    top = max(1, min(sms // tiles, k // _MIN_SPLIT_K))
    return [1 << j for j in range(top.bit_length())]


def _feed_per_k(g: GemmOperands, tm: int, tn: int, m_t: int, n_t: int, cluster: int
                ) -> tuple[float, float]:
    """Operand bytes per K element that one block streams from the L2 into its SM, and that
    all blocks together stream (rows and columns past the edge of the problem are not
    loaded). With thread-block clusters of ``cluster`` CTAs the operand tile the cluster
    shares is multicast: read from the L2 once per cluster, along whichever dimension saves
    more."""
    rows, cols = min(tm, g.m) * g.a_elem, min(tn, g.n) * g.b_elem
    blk, full = rows + cols, g.m * n_t * g.a_elem + g.n * m_t * g.b_elem
    if cluster > 1:
        if m_t >= cluster:  # a cluster along M shares the B tile
            blk_b = rows + cols / cluster
            full_b = g.m * n_t * g.a_elem + g.n * math.ceil(m_t / cluster) * g.b_elem
            blk, full = min((blk, full), (blk_b, full_b), key=lambda x: x[1])
        if n_t >= cluster:  # a cluster along N shares the A tile
            blk_a = rows / cluster + cols
            full_a = g.m * math.ceil(n_t / cluster) * g.a_elem + g.n * m_t * g.b_elem
            blk, full = min((blk, full), (blk_a, full_a), key=lambda x: x[1])
    return blk, full * g.batch


def _reduce_time(red: float, red_l2: bool, hw: _Gpu) -> float:
    """Device seconds of the split-K reduction kernel that sums ``red`` bytes of fp32
    partials (written by the GEMM and read back): cuBLAS's out-of-place scheme, a second
    kernel (``cublasLt::splitKreduce_kernel`` in profiles) that starts up, waits one
    pipeline fill for its first partials, then streams them at the achievable bandwidth of
    where they live (the L2 when they fit). Its launch is counted with the op's launches."""
    return hw.startup_s + hw.fill_s + red / (hw.l2_bw if red_l2 else hw.dram_bw)


def _side(size: int, tile: int) -> int:
    """A tile side for a problem side: the library's tile, or, when the problem is
    narrower, the smallest power of two (at least the MMA granule) that covers it. cuBLAS
    and CUTLASS build their kernels from power-of-two tiles (``..._64x64_...``,
    ``..._128x256_...``, Hopper's ``nvjet_..._64x8_...`` for decode), so an M=96 GEMM runs
    a 128-row tile, not a 96-row one."""
    return min(tile, max(_MMA_GRANULE, 1 << (size - 1).bit_length()))


def _tile_candidates(m: int, n: int, tile_shapes: Sequence[tuple[int, int]]
                     ) -> list[tuple[int, int]]:
    """Tiles to evaluate: each shape with its sides cut to the problem (:func:`_side`), in
    order, without repeats. The edge tiles of a ragged problem are padded: a kernel's tile
    is fixed (they load only rows and columns inside the problem). Twice the rows never
    cost more than twice: the larger problem has the same tiles, twice as many of them or,
    when the side was cut, each twice as tall."""
    out: dict[tuple[int, int], None] = {}
    for tm, tn in tile_shapes:
        out[(_side(m, tm), _side(n, tn))] = None
    return list(out)


def _plan_gemm(g: GemmOperands, hw: _Gpu, tile_shapes: Sequence[tuple[int, int]],
               epilogue_bytes: float = 0.0) -> GemmPlan:
    """Evaluate every tile shape and split-K factor; return the fastest plan (ties: fewer L2
    bytes, then the smaller split). Only the winner is built as a :class:`GemmPlan`."""
    l2 = hw.l2
    l2_hit = l2 is not None and (g.compulsory + epilogue_bytes) / g.batch <= l2.capacity_bytes
    best: dict[str, Any] = {}
    best_key: tuple[float, float, int] | None = None
    for tm_e, tn_e in _tile_candidates(g.m, g.n, tile_shapes):
        m_t, n_t = math.ceil(g.m / tm_e), math.ceil(g.n / tn_e)
        tiles = m_t * n_t * g.batch
        if l2_hit:
            a_r, b_r, block = 1, 1, (m_t, n_t)
        elif l2 is None:  # no L2 to share panels: every tile reads its own from DRAM
            a_r, b_r, block = n_t, m_t, (1, 1)
        else:
            a_r, b_r, block = _rereads(m_t, n_t, hw.sms, g.a_bytes / g.batch / m_t,
                                       g.b_bytes / g.batch / n_t, l2.capacity_bytes)
        dram_main = g.a_bytes * a_r + g.b_bytes * b_r + g.c_bytes + epilogue_bytes
        l2_main = max(tiles * g.k * (tm_e * g.a_elem + tn_e * g.b_elem) + g.c_bytes
                      + epilogue_bytes, dram_main)
        blk_row, all_row = _feed_per_k(g, tm_e, tn_e, m_t, n_t, hw.multicast)
        # K-loop pipeline: as many 64-deep stages as fit in shared memory (2.._MAX_STAGES);
        # all but the one being consumed are loads in flight (rows past the problem are not
        # loaded)
        stage = (tm_e * g.a_elem + tn_e * g.b_elem) * _K_BLOCK
        stages = max(2, min(_MAX_STAGES, int(hw.smem_per_sm // stage))) if stage else 2
        in_flight_blk = (stages - 1) * blk_row * _K_BLOCK
        unsplit = math.inf
        for s in _splits(tiles, g.k, hw.sms):
            waves = math.ceil(tiles * s / hw.sms)
            active = min(tiles * s, hw.sms)
            kc = math.ceil(g.k / s)
            bw = _stream_bw(hw, active * in_flight_blk)
            memory_s = dram_main / bw
            compute_s = waves * 2.0 * tm_e * tn_e * kc / hw.rate_per_sm
            # every wave (one CTA per SM at a time) fills its pipeline (the first stage's
            # latency) and ends writing its output tiles together, at the DRAM's rate; a
            # persistent kernel hides both behind its other tiles' main loops but the first
            # fill and the last epilogue
            c_tile = g.m * g.n / (m_t * n_t) * (_PARTIAL_BYTES if s > 1 else g.c_elem)
            # a short K loop needs fewer stages: when two CTAs' stages fit in shared memory
            # at once, one's fill and epilogue overlap the other's math, as in a persistent
            # kernel
            used = min(stages, math.ceil(kc / _K_BLOCK)) * stage
            overlapped = hw.persistent or (used > 0 and 2 * used <= hw.smem_per_sm)
            # each wave ends writing its own tiles (the last, partial wave fewer): every
            # output tile once, plus one fill per later wave (the first fill is the
            # kernel's fixed cost, paid before any math or stream overlaps it);
            # overlapped, only the last wave's tiles and no later fill
            wave_oh = (active * c_tile / hw.dram_bw) if overlapped else \
                ((waves - 1) * hw.fill_s + tiles * s * c_tile / hw.dram_bw)
            feed_s = max(all_row * kc * s / hw.feed_bw, waves * blk_row * kc / hw.port_bw)
            red = 2.0 * s * g.m * g.n * _PARTIAL_BYTES * g.batch if s > 1 else 0.0
            red_l2 = s > 1 and l2 is not None and red / 2 <= l2.capacity_bytes
            reduce_s = _reduce_time(red / 2 + g.c_bytes, red_l2, hw) if s > 1 else 0.0
            busy = max(_overlap(compute_s + wave_oh, memory_s), feed_s) + reduce_s
            if s == 1:
                unsplit = busy
            # the plan that finishes first, its launches counted: a split's reduction kernel
            # is one more launch
            key = (busy + (hw.gap_s if s > 1 else 0.0), l2_main + red, s)
            if best_key is None or key < best_key:
                best_key = key
                best = dict(
                    tile=(tm_e, tn_e), m_tiles=m_t, n_tiles=n_t, tiles=tiles, split_k=s,
                    waves=waves, wave_efficiency=tiles * s / (waves * hw.sms),
                    wave_block=block, a_reads=a_r, b_reads=b_r, l2_hit=l2_hit,
                    compute_s=compute_s, memory_s=memory_s, feed_s=feed_s, reduce_s=reduce_s,
                    reduce_bytes=red, reduce_in_l2=red_l2,
                    dram_bytes=dram_main + (0.0 if red_l2 else red), l2_bytes=l2_main + red,
                    unsplit_s=unsplit, wave_overhead_s=wave_oh, stream_bw=bw, stages=stages,
                    kernels=2 if s > 1 else 1, later_fills=0 if overlapped else waves - 1)
    assert best
    return GemmPlan(**best)


# -- formatting helpers for notes ------------------------------------------------------------
def _b(x: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} B"


def _t(x: float) -> str:
    return format_quantity(x, "s")


def _rate(x: float, unit: str = "FLOP/s") -> str:
    return format_quantity(x, unit)


def _gemm_notes(label: str, g: GemmOperands, p: GemmPlan, hw: _Gpu, dtype: DType, flops: float,
                asked: tuple[int, int] | None, sparse: float = 1.0) -> tuple[str, ...]:
    dev = hw.device
    ai = flops / g.compulsory if g.compulsory else math.inf
    ridge = dev.ridge_point(dtype)
    if p.compute_s >= max(p.memory_s, p.feed_s) and sparse > 1.0:
        how = (f"compute-bound at {_rate(hw.peak * hw.efficiency)} dense-equivalent achievable "
               f"({hw.efficiency / sparse:.0%} of the {hw.cls} peak {_rate(hw.peak)}, "
               f"x{sparse:.3g} on the sparse tensor cores)")
    elif p.compute_s >= max(p.memory_s, p.feed_s):
        how = (f"compute-bound at {_rate(hw.peak * hw.efficiency)} achievable "
               f"({hw.efficiency:.0%} of the {hw.cls} peak {_rate(hw.peak)})")
    elif p.memory_s >= p.feed_s:
        how = f"memory-bound at {_rate(hw.dram_bw, 'B/s')} achievable"
    else:
        how = "bound by the operand feed from the L2 into the SMs (below)"
    notes = [f"{label} reads {_b(g.compulsory - g.c_bytes)} and writes {_b(g.c_bytes)}, "
             f"arithmetic intensity {ai:.3g} FLOP/B vs ridge {ridge:.0f} -> {how}"]
    clip = ""
    if asked and asked != p.tile:
        clip = (f" (from {asked[0]}x{asked[1]}, cut to the power of two that covers the "
                f"problem, at least {_MMA_GRANULE})")
    blocks = p.tiles * p.split_k
    batch = f" ({p.m_tiles} x {p.n_tiles} x {g.batch} batches)" if g.batch > 1 else ""
    notes.append(f"tiles {p.tile[0]}x{p.tile[1]}{clip}: {blocks} {'blocks' if p.split_k > 1 else 'tiles'}"
                 f"{batch} over {hw.sms} SMs = {blocks / hw.sms:.2f} -> {p.waves} wave"
                 f"{'s' if p.waves > 1 else ''} ({p.wave_efficiency:.0%} wave efficiency)")
    src = hw.l2.name if hw.l2 else "DRAM"
    per_flop = (hw.feed_bw / hw.sms) / hw.rate_per_sm
    notes.append(f"operand feed: each {p.tile[0]}x{p.tile[1]} tile streams its A and B panels "
                 f"from the {src} into its SM ({_feed_note(p.tile, g, hw)}); "
                 f"{_t(p.feed_s)} at {_rate(hw.feed_bw, 'B/s')} achievable in all and at most "
                 f"{_rate(hw.port_bw, 'B/s')} into one SM, vs {_t(p.compute_s)} of tensor work "
                 f"(the {src} supplies {per_flop:.3g} B per FLOP of an SM's share)")
    if p.split_k > 1:
        where = f"the {hw.l2.name}" if p.reduce_in_l2 and hw.l2 else "DRAM"
        notes.append(f"split-K x{p.split_k}: only {p.tiles} output tiles for {hw.sms} SMs, so "
                     f"K={g.k} is cut into {p.split_k} chunks of {math.ceil(g.k / p.split_k)}; "
                     f"the {_b(p.reduce_bytes / 2)} of fp32 partials go through {where} and "
                     f"are summed by a second kernel, as cuBLAS does (splitKreduce: "
                     f"{_t(p.reduce_s)} with its startup and fill, after a "
                     f"{_t(hw.gap_s)} back-to-back gap), {_t(p.unsplit_s)} -> "
                     f"{_t(p.busy_s)} without launch and startup")
    elif len(_splits(p.tiles, g.k, hw.sms)) > 1:
        notes.append(f"split-K considered ({p.tiles} tiles < {hw.sms} SMs) but not faster: "
                     f"{'the kernel is memory-bound' if p.memory_s >= p.compute_s else 'the reduction kernel costs more than it saves'}")
    l2 = hw.l2
    if l2 is None:
        notes.append(f"no {dev.params.get('l2_level', 'l2')!r} level in the spec: every tile "
                     f"reads its A and B panels from DRAM -> {_b(p.dram_bytes)}")
    elif p.l2_hit:
        notes.append(f"A+B+C = {_b(g.compulsory / g.batch)}{' per batch' if g.batch > 1 else ''} "
                     f"fit in the {_b(l2.capacity_bytes)} {l2.name}: each operand crosses DRAM "
                     f"once ({_b(p.dram_bytes)})")
    else:
        notes.append(f"A+B+C = {_b(g.compulsory / g.batch)}{' per batch' if g.batch > 1 else ''} "
                     f"exceed the {_b(l2.capacity_bytes)} {l2.name}: a wave covers ~"
                     f"{p.wave_block[0]}x{p.wave_block[1]} tiles whose panels stay in the "
                     f"{l2.name}, so A is read {p.a_reads}x and B {p.b_reads}x from DRAM -> "
                     f"{_b(p.dram_bytes)} ({p.dram_bytes / g.compulsory:.2f}x compulsory)")
    notes.append(f"pipeline: {p.stages} stages of K={_K_BLOCK} fit in the "
                 f"{_b(hw.smem_per_sm)} of shared memory per SM; {min(blocks, hw.sms)} CTAs "
                 f"keep their loads in flight against the loaded DRAM latency: "
                 f"{_rate(p.stream_bw, 'B/s')} sustained of {_rate(hw.dram_bw, 'B/s')} "
                 f"achievable (Little's law); math c and data m of the stages overlap as "
                 f"c + m exp(-c/m)")
    later = p.later_fills
    notes.append(f"fixed: {_t(hw.startup_s)} kernel startup, {_t(hw.fill_s)} first pipeline "
                 f"fill (nothing overlaps it) and {_t(hw.launch_s)} launch per kernel; the "
                 f"output tiles written together at the end of each wave"
                 f"{f' and {later} later fill' + ('s' if later > 1 else '') if later else ''}"
                 f": {_t(p.wave_overhead_s)} over {p.waves} wave{'s' if p.waves > 1 else ''}")
    return tuple(notes)


def _feed_note(tile: tuple[int, int], g: GemmOperands, hw: _Gpu) -> str:
    tm, tn = min(tile[0], g.m), min(tile[1], g.n)
    per = (tm * g.a_elem + tn * g.b_elem) / (2.0 * tm * tn)
    shared = f", one tile read per cluster of {hw.multicast}" if hw.multicast > 1 else ""
    return f"{per:.3g} B per FLOP{shared}"


def _fixed_note(launch: float, fill: float) -> str:
    return (f"fixed per kernel: {_t(launch)} launch and {_t(fill)} pipeline fill and drain "
            f"(the first operand load's and the last store's memory latency)")


def _launches(p: GemmPlan, hw: _Gpu) -> float:
    """Launch share of a GEMM's latency: its launch, and the back-to-back gap before its
    split-K reduction kernel."""
    return hw.launch_s + (p.kernels - 1) * hw.gap_s


def _gemm_details(p: GemmPlan, hw: _Gpu, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "tile": [p.tile[0], p.tile[1]], "tiles": p.tiles, "waves": p.waves,
        "wave_efficiency": p.wave_efficiency, "split_k": p.split_k, "sms": hw.sms,
        "l2_hit": p.l2_hit, "dram_bytes": p.dram_bytes, "a_reads": p.a_reads,
        "b_reads": p.b_reads, "efficiency": hw.efficiency, "feed_s": p.feed_s,
        "reduce_s": p.reduce_s, "fill_s": hw.fill_s, "launch_s": _launches(p, hw),
        "kernels": p.kernels,
        "startup_s": hw.startup_s, "wave_overhead_s": p.wave_overhead_s,
        "stream_bw": p.stream_bw, "stages": p.stages,
    }
    d.update(extra or {})
    return d


def _sparse_math(op: Op, hw: _Gpu) -> tuple[float, tuple[str, ...]]:
    """(factor on the per-SM math rate, notes) for a pruned weight (see the module
    docstring); (1.0, ()) for a dense op."""
    sp = getattr(op, "sparsity", None)
    if sp is None:
        return 1.0, ()
    dev = hw.device
    frac = op.weight_stored_fraction  # type: ignore[attr-defined]
    stored = (f"weights {sp.label} sparse, stored compressed at {frac:.1%} of their dense "
              f"bytes ({sp.density:.3g} of the values + {sp.metadata_bits:.3g} index bits each): "
              f"DRAM and L2 traffic of the weight shrink by that much")
    table = param(dev, "sparse_speedup") or {}
    speed = float(table.get(hw.cls, 0.0))
    if sp.pattern == "n:m" and (sp.n, sp.m) == (2, 4) and speed > 0:
        eff = float(param(dev, "sparse_efficiency"))
        factor = max(1.0, speed * eff)
        why = (f"2:4 on the sparse tensor cores: the {hw.cls} sparse peak is {speed:g}x dense "
               f"(sparse_speedup), of which {eff:.0%} is realised (sparse_efficiency) -> math "
               f"x{factor:.3g}; the executed matrix FLOPs are the kept {sp.density:.0%}")
        if factor == 1.0:
            why += " (no gain: the dense kernel is as fast)"
        return factor, (stored, why)
    if sp.pattern == "n:m" and (sp.n, sp.m) == (2, 4):
        why = (f"no sparse tensor-core rate for {hw.cls} on {dev.name} (sparse_speedup lists "
               f"{', '.join(sorted(table)) or 'none'}): dense math on decompressed tiles")
    elif sp.pattern == "n:m":
        why = (f"{sp.label} is not the 2:4 pattern sparse tensor cores run: dense math on "
               f"decompressed tiles, no tensor-core speedup")
    else:
        why = ("unstructured sparsity: no tensor-core speedup, the kernel decodes the bitmap "
               "in shared memory and runs the dense math (decoding assumed hidden)")
    return 1.0, (stored, why)


def _gemm_cost(op: Op, device: Device, g: GemmOperands, dtype: DType, label: str,
               extra: dict[str, Any] | None = None) -> OpCost:
    """A GEMM's cost; for a pruned weight, the faster of the sparse kernel (compressed tiles,
    2:4 math where the tensor cores run it) and the dense one a library would fall back to:
    fewer bytes in flight can leave a latency-bound sparse kernel a hair slower."""
    cost = _gemm_cost_as(op, device, g, dtype, label, extra)
    if getattr(op, "sparsity", None) is None:
        return cost
    dense = _gemm_cost_as(replace(op, sparsity=None), device, g, dtype, label, extra)
    if dense.latency_s < cost.latency_s:
        return replace(dense, notes=(*dense.notes, "the dense kernel is faster than the sparse "
                                     "one for this shape: the library runs it (weights read "
                                     "uncompressed)"))
    return cost


def _gemm_cost_as(op: Op, device: Device, g: GemmOperands, dtype: DType, label: str,
                  extra: dict[str, Any] | None = None) -> OpCost:
    hw = _gpu(device, dtype)
    sparse, sparse_notes = _sparse_math(op, hw)
    if sparse_notes:  # compressed tiles stream from the L2; 2:4 math on sparse tensor cores
        g = replace(g, b_elem=g.b_elem * op.weight_stored_fraction)  # type: ignore[attr-defined]
        hw = replace(hw, efficiency=hw.efficiency * sparse)
    shapes = tuple(device.params.get("tile_shapes") or DEFAULT_TILES)
    # C-sized inputs of a fused epilogue (a residual add): read once, with the output tiles
    epi = max(0.0, op.bytes_read() - g.a_bytes - g.b_bytes)
    p = _plan_gemm(g, hw, shapes, epi)
    asked = next(((tm, tn) for tm, tn in shapes
                  if p.tile in _tile_candidates(g.m, g.n, ((tm, tn),))), None)
    fl = op.flops()
    executed = fl
    if sparse > 1.0:  # the sparse tensor cores skip the pruned half of the MACs
        density = float(op.sparsity.density)  # type: ignore[attr-defined]
        executed = Flops(fl.matrix * density, fl.vector, fl.special)
    by_level = {device.dram.name: p.dram_bytes}
    if hw.l2:
        by_level[hw.l2.name] = p.l2_bytes
    # the first stage's load: nothing overlaps it (the first MMA waits for it, the loads
    # behind it are not issued yet); later waves' fills are inside busy_s
    fixed = _launches(p, hw) + hw.startup_s + hw.fill_s
    more = dict(extra or {})
    if sparse_notes:
        sp = op.sparsity  # type: ignore[attr-defined]
        more.update(sparsity=sp.label, sparse_math=sparse,
                    weight_stored_fraction=op.weight_stored_fraction)  # type: ignore[attr-defined]
    return make_cost(device, op, compute_s=p.compute_s,
                     memory_s=max(p.memory_s, p.feed_s) + p.reduce_s,
                     latency_s=p.busy_s + fixed, overhead_s=fixed,
                     bytes_by_level=by_level, compute_class=hw.cls, peak_flops=hw.peak,
                     details=_gemm_details(p, hw, {**more, "epilogue_bytes": epi}),
                     notes=_gemm_notes(label, g, p, hw, dtype, fl.matrix, asked, sparse)
                     + sparse_notes
                     + ((f"the fused epilogue also reads {_b(epi)} (a C-sized input such as a "
                         f"residual), streamed from DRAM with the output tiles",) if epi else ()),
                     flops=executed)


def _gemm_label(m: int, n: int, k: int, batch: int, dtype: DType, what: str = "GEMM") -> str:
    shape = f"{m} x {n} x {k}" + (f" x{batch} batched" if batch > 1 else "")
    if min(m, n) == 1:
        what = f"{'M' if m == 1 else 'N'}=1 GEMV"
    elif min(m, n) <= _MMA_GRANULE:
        what = f"skinny {what} ({'M' if m <= n else 'N'}={min(m, n)})"
    return f"{what}: {shape} ({dtype})"


# -- op kinds --------------------------------------------------------------------------------
@register_cost("matmul", FAMILY)
def matmul_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    assert isinstance(op, MatMul)
    g = gemm_operands(op)
    label = _gemm_label(op.m, op.n, op.k, op.batch, op.dtype)
    if op.weight:
        label = label.replace(f"({op.dtype})", f"({op.dtype}, {op.b_dtype} weights)")
    return _gemm_cost(op, device, g, op.dtype, label)


def _depthwise(op: Conv2d, device: Device, options: MapOptions | None = None) -> OpCost:
    """Depthwise conv: a streaming kernel, its MACs on the vector units."""
    compute_s, _, cls, vpeak = depthwise_vector_rate(op, device)
    fl = op.flops()
    nbytes = op.min_bytes
    l2 = _resident_level(device, nbytes, options)
    lvl = l2 or device.dram
    bw = lvl.bandwidth_Bps * param(device, "bandwidth_efficiency")
    memory_s = nbytes / bw
    by_level = {device.dram.name: 0.0 if l2 else nbytes}
    if l2:
        by_level[l2.name] = nbytes
    notes = (f"depthwise conv ({op.c} channels, {op.r}x{op.s} filters): {op.r * op.s} MACs per "
             f"output, too little reuse for the tensor cores -> {_rate(fl.total, 'FLOP')} on the "
             f"{cls} vector units at {param(device, 'vector_efficiency'):.0%} efficiency, "
             f"{_b(nbytes)} streamed from {lvl.name} at {_rate(bw, 'B/s')}",)
    if op.sparsity is not None:
        notes += (f"filter {op.sparsity.label} sparse: read compressed "
                  f"({op.weight_stored_fraction:.1%} of its dense bytes), dense math on the "
                  f"vector units",)
    fixed = _launch(device) + _fill(device, lvl)
    return make_cost(device, op, compute_s=compute_s, memory_s=memory_s, overhead_s=fixed,
                     bytes_by_level=by_level, compute_class=cls, peak_flops=vpeak,
                     details={"kernel": "depthwise", "dram_bytes": by_level[device.dram.name],
                              "l2_hit": l2 is not None, "launch_s": _launch(device)},
                     notes=notes)


@register_cost("conv2d", FAMILY)
def conv2d_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    return conv2d_by_gemm(
        op, device, options, depthwise=_depthwise, gemm_label=_gemm_label,
        gemm=lambda c, g, label: _gemm_cost(c, device, g, c.dtype, label,
                                            {"kernel": "implicit-gemm"}))


def _resident_level(device: Device, nbytes: float, options: MapOptions | None = None
                    ) -> MemoryLevel | None:
    """The L2, if a working set this small is still resident there from its producer (in a
    measurement loop over ``options.rotated_sets`` input sets: if all the sets fit)."""
    l2 = _l2(device)
    footprint = nbytes * ((options.rotated_sets if options else None) or 1)
    if l2 is not None and footprint <= l2.capacity_bytes * _L2_RESIDENT_FRACTION:
        return l2
    return None


register_cost("collective", FAMILY)(collective_cost)
