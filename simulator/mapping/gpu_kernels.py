"""GPU attention and streaming kernels: a fused flash-attention kernel, and the kernels a
library runs for elementwise, norm, softmax, pool, embedding and memcpy ops.

Shared GPU machinery (the device view, launch, startup, fill, L2 residency) is in
:mod:`simulator.mapping.gpu`, whose docstring also says which time is predicted.

Attention (flash-attention style, one fused kernel)
    * Prefill: matrix FLOPs at ``matrix peak * attention_efficiency``, in tiles of 128 query
      rows over ``(batch*heads, ceil(seq/128))`` for wave quantisation (the last partial
      query block is paid in full). Softmax vector/special FLOPs run on the CUDA cores and
      SFUs concurrently with the tensor cores, so ``compute = max(matrix, softmax)``.
    * Decode: the query rows of a KV-head group (``heads/kv_heads * seq``) are padded to 16
      for the MMA; the KV length is split over the SMs (flash-decoding), so there is no wave
      quantisation; the K/V cache read at achievable bandwidth bounds it.
    * DRAM bytes are ``op.min_bytes`` (Q, K, V read once, O and the new K/V written once);
      the L2 also serves K/V once per 128-row query block (counted for energy).
    * The busy time is divided by ``kind_efficiency["attention"]`` (default 1; for a prefill
      it multiplies with ``attention_efficiency``, which calibration fits instead).

Streaming ops (elementwise, norm, softmax, pool, embedding, memcpy), as the kernel a library
runs for each (:class:`StreamPlan`): memory- or latency-bound depending on the shape

    * Row kernels, norms (RMSNorm, LayerNorm) and softmax: one block of min(width, 1024)
      threads per row (vLLM / sarathi-serve ``rms_norm_kernel``, PyTorch
      ``cunn_SoftMaxForward``), ``params.norm_vector`` elements per access for norms (default
      1: scalar loads), 16 bytes for softmax; norms make 2 passes over the row (sum of
      squares, then scale), softmax 3 (max, sum, write). Each thread's accesses are
      dependent round trips: a loop iteration's load must return before the next is issued,
      so a pass costs ``iterations x latency``: the first pass the DRAM latency, later passes
      (the row is now cached) the L2 latency. Rows run ``max_threads_per_sm // block``
      (at most ``max_blocks_per_sm``) blocks per SM at once, so rows beyond one wave repeat
      the chain: an RMSNorm over 4096 columns on the A100 is 4 loads of 600 ns and 4 of
      200 ns per row, 216 rows at a time.
    * Elementwise ops (PyTorch's ``vectorized_elementwise_kernel``: 128-thread blocks, 4
      elements a thread): one round trip per thread; the blocks of later waves overlap the
      earlier ones', so no chain beyond the first load.
    * Embedding (PyTorch ``index_select``, what ``F.embedding`` runs): at most 8 blocks of
      128 threads per SM stride over the output, each element two dependent loads (the token
      id, then the table row): a chain of ``elements / threads`` x (DRAM + L2 latency).
    * The chain is not hidden (each thread has one load in flight, far below the
      bytes-in-flight that would cover the latency at full bandwidth), so the kernel's busy
      time is ``chain + traffic / achievable bandwidth`` (at least its vector work).
    * Traffic: the working set (every input and output) is resident in the L2 when it is at
      most half the L2. Then the inputs the producer just wrote stream from the L2, while an
      elementwise op's other inputs (a residual's skip input, a rotary table, optimizer
      state: written before the GEMMs in between streamed their weights) and every write
      (the L2 is write-back: each newly written line evicts a dirty one to DRAM) cost DRAM
      bandwidth, overlapped with the L2 reads. Otherwise the L2 (LRU) still holds the last
      half-capacity of what the producer wrote: that share of the just-written input streams
      from the L2, every other byte at the achievable DRAM bandwidth, overlapped (A100: a
      25 MB residual add runs at ~2.1 TB/s in the Kineto profiles, above the 1.79 TB/s
      DRAM). An embedding gather in a graph, and a copy across devices (a DMA transfer:
      fill plus bytes, no kernel), always go to DRAM. Under a measurement loop over rotated
      input sets (``MapOptions.rotated_sets``) that all fit, every byte stays in the L2 (the
      loop re-reads its sets and rewrites one output), else all at DRAM.
    * Fixed device time: ``kernel_startup`` (before the first load: the first warps fetch
      their instructions and the kernel's parameters, both cold; default two DRAM
      latencies, 1.2 us on the A100 spec), then the first load at the DRAM latency, L2
      resident or not (a kernel's first touch of lines another kernel wrote; measured A100
      rms_norm and silu_and_mul kernels on 1-token, L2-resident inputs spend 0.6-0.75 us
      per dependent load, the DRAM figure, not the 200 ns of a pointer-chase L2 hit), and the
      L2 latency of the last store. On the A100 a 1-token residual add is 1.2 + 0.8 us, a
      1-token RMSNorm over 4096 columns 4.6 us (Kineto: 2 and 4-5 us, Vidur profiles).
    * GEMM kernels pay the startup once and the fill per wave (above); attention kernels
      keep their pipeline fill as their fixed device cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from simulator.arch.spec import Device, MemoryLevel
from simulator.frozen import FrozenMap
from simulator.mapping.base import MapOptions, OpCost, make_cost, register_cost
from simulator.mapping.common import (
    STREAMING_KINDS,
    kind_efficiency,
    param,
    scale_busy,
    streaming_cost,
    vector_time,
)
from simulator.mapping.gpu import (
    _L2_RESIDENT_FRACTION,
    _MMA_GRANULE,
    FAMILY,
    _b,
    _fill,
    _gpu,
    _l2,
    _launch,
    _rate,
    _resident_level,
    _round_up,
    _sm_count,
    _startup,
    _t,
)
from workloads.ops import ELEMENTWISE_FNS, Attention, Elementwise, Embedding, Norm, Op, Softmax

__all__ = ["StreamPlan", "attention_cost", "gpu_streaming_cost"]

_ATTN_Q_BLOCK = 128      # query rows per flash-attention thread block


@register_cost("attention", FAMILY)
def attention_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    assert isinstance(op, Attention)
    eff = float(param(device, "attention_efficiency"))
    hw = _gpu(device, op.dtype, efficiency=eff)
    fl = op.flops()
    assert op.kv_heads is not None
    group = op.heads // op.kv_heads
    kvb = (op.kv_dtype or op.dtype).bytes
    if op.phase == "decode":
        rows = group * op.seq
        pad = _round_up(rows, _MMA_GRANULE) / rows
        units = op.batch * op.kv_heads
        split_kv = max(1, min(math.ceil(hw.sms / units), math.ceil(op.kv_len / _ATTN_Q_BLOCK)))
        tiles, waves = units * split_kv, 1
        wave_eff = min(1.0, tiles / hw.sms)
        matrix_s = fl.matrix * pad / (hw.peak * eff)
        l2_bytes = op.min_bytes
        tile_note = (f"decode: {rows} query row{'s' if rows > 1 else ''} per KV head padded "
                     f"to {_round_up(rows, _MMA_GRANULE)} for the MMA ({pad:.0f}x the FLOPs); "
                     f"the {op.kv_len}-token KV cache of each of {units} (batch, KV head) pairs "
                     f"is split {split_kv} ways over the SMs (flash-decoding)")
    else:
        q_blocks = math.ceil(op.seq / _ATTN_Q_BLOCK)
        pad = q_blocks * _ATTN_Q_BLOCK / op.seq
        tiles = op.batch * op.heads * q_blocks
        waves = math.ceil(tiles / hw.sms)
        wave_eff = tiles / (waves * hw.sms)
        split_kv = 1
        matrix_s = waves * (fl.matrix * pad / tiles) / (hw.peak / hw.sms * eff)
        q_o = 2.0 * op.batch * op.seq * op.heads * op.head_dim * op.dtype.bytes
        new_kv = 2.0 * op.batch * op.seq * op.kv_heads * op.head_dim * kvb
        kv_l2 = op.batch * op.heads * op.score_pairs / _ATTN_Q_BLOCK * 2 * op.head_dim * kvb
        l2_bytes = max(op.min_bytes, q_o + new_kv + kv_l2)
        tile_note = (f"prefill: {_ATTN_Q_BLOCK}-row query blocks over (batch*heads = "
                     f"{op.batch * op.heads}) x {q_blocks} = {tiles} tiles over {hw.sms} SMs = "
                     f"{tiles / hw.sms:.2f} -> {waves} wave{'s' if waves > 1 else ''} "
                     f"({wave_eff:.0%} wave efficiency)")
    soft_s, _, _ = vector_time(op, device)
    compute_s = max(matrix_s, soft_s)
    nbytes = op.min_bytes
    memory_s = nbytes / hw.dram_bw
    bound = "compute" if compute_s >= memory_s else "memory"
    notes = (
        f"fused flash-attention kernel ({op.phase}, {op.heads} heads / {op.kv_heads} KV heads, "
        f"head_dim {op.head_dim}, {op.seq} new token{'s' if op.seq > 1 else ''} over "
        f"{op.kv_len} keys): "
        f"{_rate(fl.matrix, 'FLOP')} on the {hw.cls} matrix units at {eff:.0%} of peak "
        f"({_t(matrix_s)}); softmax {_rate(fl.vector + fl.special, 'FLOP')} on the vector/SFU "
        f"units overlaps ({_t(soft_s)})",
        tile_note,
        f"Q, K, V read once and O (plus the new K/V) written once: {_b(nbytes)} at "
        f"{_rate(hw.dram_bw, 'B/s')} achievable = {_t(memory_s)} -> {bound}-bound",
    )
    by_level = {device.dram.name: nbytes}
    if hw.l2:
        by_level[hw.l2.name] = l2_bytes
    details = {"kernel": "flash-attention", "phase": op.phase,
               "tile": [_ATTN_Q_BLOCK if op.phase == "prefill" else _round_up(group * op.seq,
                                                                             _MMA_GRANULE),
                        op.head_dim],
               "tiles": tiles, "waves": waves, "wave_efficiency": wave_eff, "split_k": 1,
               "split_kv": split_kv, "sms": hw.sms, "l2_hit": False, "dram_bytes": nbytes,
               "efficiency": eff, "launch_s": hw.launch_s}
    return scale_busy(
        make_cost(device, op, compute_s=compute_s, memory_s=memory_s,
                  overhead_s=hw.launch_s + hw.fill_s, bytes_by_level=by_level,
                  compute_class=hw.cls, peak_flops=hw.peak, details=details, notes=notes),
        device, "attention")


# -- streaming kernels -----------------------------------------------------------------------
_ROW_BLOCK_MAX = 1024     # threads in a row kernel's block: min(row width, 1024)
_WARP = 32
_GRID_THREADS = 128       # PyTorch's elementwise kernels: 128-thread blocks, 4 items a thread
_GRID_ITEMS = 4
_GATHER_THREADS = 128     # index_select / embedding: 128-thread blocks, at most 8 per SM
_GATHER_BLOCKS_PER_SM = 8
_SOFTMAX_LOAD_BYTES = 16  # PyTorch cunn_SoftMaxForward: 16-byte (ILP) loads


@dataclass(frozen=True)
class StreamPlan:
    """How a library runs one streaming op on a GPU, and what its latency chain costs.

    ``kernel`` is ``row`` (one block per row, a block-stride loop over the row, ``passes``
    passes), ``grid`` (one element group per thread, as many blocks as the tensor needs) or
    ``gather`` (a grid of at most 8 blocks per SM striding over the output, two dependent
    loads per element: the index, then the table). ``chain_s`` is the latency of its
    dependent memory round trips after the first (which the fill counts): ``round_trip_s``
    each for a first touch, the L2 latency for a re-read of a cached row.
    """

    kernel: str
    threads: int            # per block
    blocks: int
    blocks_per_sm: int
    waves: int
    iterations: int         # dependent round trips of one thread per pass
    passes: int
    vector: int             # elements a thread moves per access
    round_trip_s: float
    chain_s: float


def _old_input_bytes(op: Op) -> float:
    """Bytes of ``op``'s inputs that its producer did not just write: every input of an
    elementwise op but the first (a residual add's skip connection, the cos/sin table of a
    rotary multiply, the optimizer state of Adam), which the weight streams of the GEMMs
    since have evicted from the L2. A gated activation (swiglu) reads the two halves its
    gate/up projection just wrote."""
    if isinstance(op, Elementwise) and op.fn != "swiglu":
        n_in = ELEMENTWISE_FNS[op.fn][0]
        if n_in > 1:
            return op.bytes_read() * (n_in - 1) / n_in
    return 0.0


def _stream_traffic(op: Op, device: Device, options: MapOptions, level: MemoryLevel | None
                    ) -> tuple[float, dict[str, float], str]:
    """(memory seconds, bytes by level, where) of a streaming op. Working set resident in
    the L2 (``level``): the inputs its producer just wrote stream from the L2; its older
    inputs come from DRAM; and its writes cost DRAM bandwidth all the same (the L2 is write
    back: the dirty lines each new line evicts go to DRAM during the kernel), overlapped with
    the L2 reads. Not resident: every byte at the achievable DRAM bandwidth. In a
    measurement loop over ``options.rotated_sets`` input sets that all fit, every byte
    (inputs re-read, the same output rewritten in place) stays in the L2."""
    dram, eff = device.dram, param(device, "bandwidth_efficiency")
    dram_bw = dram.bandwidth_Bps * eff
    nbytes = op.min_bytes
    l2 = _l2(device)
    partial = (level is None and l2 is not None and options.rotated_sets is None
               and op.kind != "embedding")
    if partial:
        # an LRU L2 still holds the most recent half-capacity of what the producer wrote:
        # that share of the just-written input streams from the L2, the rest from DRAM
        fresh = op.bytes_read() - _old_input_bytes(op)
        share = min(1.0, l2.capacity_bytes * _L2_RESIDENT_FRACTION / nbytes)
        hit = max(0.0, fresh * share)
        l2_bw = l2.bandwidth_Bps * eff
        if hit > 0:
            seconds = max((nbytes - hit) / dram_bw, hit / l2_bw)
            return seconds, {dram.name: nbytes - hit, l2.name: hit}, \
                (f"{dram_bw / 1e9:.0f} GB/s achievable DRAM bandwidth for {_b(nbytes - hit)}; "
                 f"the last {share:.0%} of the producer's output ({_b(hit)}) still in the "
                 f"{l2.name} (LRU, half its capacity), at {l2_bw / 1e9:.0f} GB/s, overlapped")
    if level is None:
        return nbytes / dram_bw, {dram.name: nbytes}, \
            f"{dram_bw / 1e9:.0f} GB/s achievable DRAM bandwidth"
    if options.rotated_sets is not None:  # a loop re-reading its sets, rewriting one output
        return nbytes / (level.bandwidth_Bps * eff), {dram.name: 0.0, level.name: nbytes}, \
            (f"{level.bandwidth_Bps * eff / 1e9:.0f} GB/s achievable {level.name} bandwidth "
             f"(every input set and the rewritten output resident in the "
             f"{level.capacity_bytes / 2**20:.3g} MiB {level.name})")
    old = _old_input_bytes(op)
    to_dram = old + op.bytes_written()
    l2_bw = level.bandwidth_Bps * eff
    seconds = max(to_dram / dram_bw, (nbytes - to_dram) / l2_bw)
    where = (f"the {level.name} (working set resident in its {level.capacity_bytes / 2**20:.3g} "
             f"MiB) at {l2_bw / 1e9:.0f} GB/s for the {_b(nbytes - to_dram)} just written by "
             f"the producer, DRAM at {dram_bw / 1e9:.0f} GB/s for the {_b(to_dram)} of "
             f"{'older inputs and ' if old else ''}write-backs")
    return seconds, {dram.name: to_dram, level.name: nbytes}, where


def _resident_blocks(device: Device, threads: int) -> int:
    return max(1, min(int(param(device, "max_threads_per_sm")) // threads,
                      int(param(device, "max_blocks_per_sm"))))


def _row_plan(device: Device, rows: int, cols: int, vector: int, passes: int) -> StreamPlan:
    """A row kernel: one block of min(width, 1024) threads per row, ``passes`` block-stride
    passes over the row, ``vector`` elements per access. The first pass loads the row from
    memory (the DRAM latency), later passes find it in the L2 (its latency)."""
    sms = _sm_count(device)
    threads = min(_ROW_BLOCK_MAX, _round_up(math.ceil(cols / vector), _WARP))
    iters = math.ceil(cols / (threads * vector))
    bps = _resident_blocks(device, threads)
    waves = math.ceil(rows / (sms * bps))
    lat = device.dram.latency_s
    l2 = _l2(device)
    again = l2.latency_s if l2 is not None else lat
    chain = waves * iters * (lat + (passes - 1) * again)
    return StreamPlan("row", threads, rows, bps, waves, iters, passes, vector, lat,
                      max(0.0, chain - lat))


def _grid_plan(device: Device, numel: float) -> StreamPlan:
    """A grid of 128-thread blocks, 4 elements a thread: one load round trip per thread, the
    blocks of later waves overlapping the earlier ones' (no chain beyond the first load)."""
    sms = _sm_count(device)
    blocks = max(1, math.ceil(numel / (_GRID_THREADS * _GRID_ITEMS)))
    bps = _resident_blocks(device, _GRID_THREADS)
    return StreamPlan("grid", _GRID_THREADS, blocks, bps, math.ceil(blocks / (sms * bps)), 1,
                      1, _GRID_ITEMS, device.dram.latency_s, 0.0)


def _gather_plan(device: Device, numel: float) -> StreamPlan:
    """PyTorch's index_select (F.embedding): at most 8 blocks of 128 threads per SM striding
    over the output, each element two dependent loads (the token id from the L2, then the
    table from DRAM)."""
    sms = _sm_count(device)
    blocks = max(1, min(math.ceil(numel / _GATHER_THREADS), sms * _GATHER_BLOCKS_PER_SM))
    iters = math.ceil(numel / (blocks * _GATHER_THREADS))
    bps = _resident_blocks(device, _GATHER_THREADS)
    l2 = _l2(device)
    lat = device.dram.latency_s + (l2.latency_s if l2 is not None else 0.0)
    return StreamPlan("gather", _GATHER_THREADS, blocks, bps, math.ceil(blocks / (sms * bps)),
                      iters, 1, 1, lat, max(0.0, iters * lat - device.dram.latency_s))


def _stream_plan(op: Op, device: Device) -> StreamPlan:
    """The kernel a library runs for ``op`` (see the module docstring)."""
    if isinstance(op, Norm) and op.norm != "batchnorm":
        return _row_plan(device, op.rows, op.cols, int(param(device, "norm_vector")), 2)
    if isinstance(op, Softmax):
        return _row_plan(device, op.rows, op.cols,
                         max(1, _SOFTMAX_LOAD_BYTES // op.dtype.bytes), 3)
    if isinstance(op, Embedding):
        return _gather_plan(device, op.tokens * op.dim)
    numel = op.numel if isinstance(op, Elementwise) else op.min_bytes / op.dtype.bytes
    return _grid_plan(device, numel)


def gpu_streaming_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """Streaming op on a GPU, as the kernel a library runs for it (module docstring):
    kernel startup, the first load and last store (the fill), and its latency chain plus its
    traffic (:func:`_stream_traffic`: the L2 when the working set is resident, else DRAM; an
    embedding gather in a graph always DRAM), or its vector work where that is longer; all
    but the launch divided by ``kind_efficiency``. Copies across devices are DMA transfers:
    the fill and the bytes, no kernel."""
    cross = getattr(op, "src", "device") != getattr(op, "dst", "device")
    gather = op.kind == "embedding" and options.rotated_sets is None
    level = None if gather or cross else _resident_level(device, op.min_bytes, options)
    launch = _launch(device)
    if cross:
        return streaming_cost(op, device, options, level=None,
                              overhead_s=launch + _fill(device, None))
    traffic = None if cross or gather else _stream_traffic(op, device, options, level)
    base = streaming_cost(op, device, options, level=level, traffic=traffic,
                          overhead_s=launch + _fill(device, None))
    plan = _stream_plan(op, device)
    startup = _startup(device)
    f = kind_efficiency(device, op.kind)
    chain = plan.chain_s / f
    busy = max(base.compute_s, base.memory_s + chain)
    latency = busy + startup / f + base.overhead_s
    what = {"row": f"one block of {plan.threads} threads per row ({plan.blocks} rows, "
                   f"{plan.blocks_per_sm} blocks per SM, {plan.waves} wave"
                   f"{'s' if plan.waves > 1 else ''}), {plan.passes} pass"
                   f"{'es' if plan.passes > 1 else ''} of {plan.iterations} dependent "
                   f"load{'s' if plan.iterations > 1 else ''} of {plan.vector} element"
                   f"{'s' if plan.vector > 1 else ''} per thread",
            "grid": f"a grid of {plan.blocks} blocks of {plan.threads} threads, "
                    f"{plan.vector} elements a thread, one load round trip each",
            "gather": f"a gather of {plan.blocks} blocks of {plan.threads} threads striding "
                      f"over the output: {plan.iterations} iteration"
                      f"{'s' if plan.iterations > 1 else ''} of two dependent loads (the "
                      f"token id, then the table row) per thread"}[plan.kernel]
    mem = base.memory_s + chain
    bound = (("its latency chain" if chain >= base.memory_s else "its traffic")
             if mem >= base.compute_s else "its vector work")
    notes = (*base.notes,
             f"kernel: {what}; each dependent load waits {_t(plan.round_trip_s)} (the spec's "
             f"DRAM latency{' plus its L2 latency' if plan.kernel == 'gather' else ''}; "
             f"re-reads of a row the L2 latency): a chain of {_t(chain)} after the first "
             f"load, not hidden while so few bytes are in flight, plus the traffic "
             f"{_t(base.memory_s)}, vs vector work {_t(base.compute_s)}: bound by {bound}",
             f"fixed: {_t(startup)} kernel startup (instruction and parameter fetch), "
             f"{_t(base.overhead_s - launch)} first load and last store, "
             f"{_t(launch)} launch and gap (not in a profiler's kernel time)")
    details = {"kernel": plan.kernel, "threads": plan.threads, "blocks": plan.blocks,
               "blocks_per_sm": plan.blocks_per_sm, "waves": plan.waves,
               "iterations": plan.iterations, "passes": plan.passes, "vector": plan.vector,
               "chain_s": chain, "startup_s": startup, "launch_s": launch,
               "fill_s": base.overhead_s - launch, "l2_hit": level is not None,
               "dram_bytes": base.bytes_by_level.get(device.dram.name, 0.0)}
    util = min(1.0, base.utilization * base.latency_s / latency) if latency > 0 else 0.0
    out_bound = "latency" if base.overhead_s + startup > max(base.compute_s, mem) else \
        "compute" if base.compute_s >= mem else "memory"
    return replace(base, latency_s=latency, memory_s=mem, bound=out_bound, utilization=util,
                   details=FrozenMap(details), notes=notes)


for _kind in STREAMING_KINDS:
    register_cost(_kind, FAMILY)(gpu_streaming_cost)
