"""GPU attention and streaming kernels: a fused flash-attention kernel, and the kernels a
library runs for elementwise, norm, softmax, pool, embedding and memcpy ops.

Shared GPU machinery (the device view, launch, startup, fill, L2 residency) is in
:mod:`simulator.mapping.gpu`, whose docstring also says which time is predicted.

Attention (flash-attention style, one fused kernel)
    * Prefill (:func:`prefill_plan`): FlashAttention-2 on pre-Hopper parts, FlashAttention-3
      where the spec has Hopper's warp-specialised kernels (``persistent_gemm`` /
      ``cluster_multicast``). Tiles of 128 query rows per (batch, head) loop over 128-key
      steps: all keys, or up to the diagonal under a causal mask (the diagonal block computed
      in full, then masked: at 512 tokens 20% of a causal kernel's scores are wasted, at 16k
      1%). A step costs its MMAs at an MMA efficiency plus the softmax the kernel does not
      hide (FA2: all of it, a warp runs its MMAs then its softmax; FA3: 64%, the other
      warpgroup's GEMMs hide the rest), the softmax at the peak exp rate of the SFUs and the
      fp32 vector rate. ``attention_efficiency`` is the published efficiency at head_dim
      128 on a long non-causal fp16 sequence; the MMA efficiency is what it leaves after
      that shape's softmax, so a smaller head_dim (the same softmax per score, half the MMA
      work) or fp8 (twice the MMA rate) is less efficient, a larger one more. Each tile adds
      its prologue and epilogue (the Q and first K/V blocks in, O out, at one SM's share of
      the L2 bandwidth, after a DRAM and an L2 latency); tiles run longest first on the SMs
      (wave quantisation; a causal kernel's unequal tiles). Kernel startup once.
    * Decode: the query rows of a KV-head group (``heads/kv_heads * seq``) are padded to 16
      for the MMA; the KV length is split over the SMs (flash-decoding), so there is no wave
      quantisation; the K/V cache read at achievable bandwidth bounds it. With more than one
      split, a second kernel combines the partial outputs (fp32, through the L2): its
      launch, startup, fill and bytes.
    * DRAM bytes are ``op.min_bytes`` (Q, K, V read once, O and the new K/V written once);
      the L2 also serves K/V once per 128-row query block (counted for energy).
    * The busy time is divided by ``kind_efficiency["attention"]`` (default 1; it multiplies
      with ``attention_efficiency``, which calibration fits instead).

Streaming ops (elementwise, norm, softmax, pool, embedding, memcpy), as the kernel a library
runs for each (:class:`StreamPlan`): memory- or latency-bound depending on the shape

    * Row kernels, norms (RMSNorm, LayerNorm) and softmax: one block of min(width, 1024)
      threads per row (vLLM / sarathi-serve ``rms_norm_kernel``, PyTorch
      ``cunn_SoftMaxForward``), ``params.norm_vector`` elements per access for norms (default
      1: scalar loads), 16 bytes for softmax; norms make 2 passes over the row (sum of
      squares, then scale), softmax 3 (max, sum, write). Each thread's accesses are
      dependent round trips: a loop iteration's load must return before the next is issued,
      so a pass costs ``iterations x latency``: the first pass the DRAM latency, later passes
      re-read what the same thread loaded, from the SM's L1 (the spec's ``smem`` latency;
      the L2's when the SM's resident rows do not fit it). Between two passes the block
      reduces (``blockReduceSum``: 16 dependent shuffles, shared-memory accesses and
      barriers at the ``smem`` latency, 0.4 us on the A100). Rows run
      ``max_threads_per_sm // block`` (at most ``max_blocks_per_sm``) blocks per SM at once,
      so rows beyond one wave repeat the chain: an RMSNorm over 4096 columns on the A100 is
      4 loads of 600 ns, a 0.4 us reduction and 4 L1 hits of 25 ns per row, 216 rows at a
      time.
    * Elementwise ops (PyTorch's ``vectorized_elementwise_kernel``: 128-thread blocks, 4
      elements a thread): one round trip per thread; the blocks of later waves overlap the
      earlier ones', so no chain beyond the first load. An elementwise op with a ``row``
      runs as vLLM's row kernels (:func:`_elementwise_row_plan`): SiLU-and-mul one block of
      min(row, 1024) threads per token, the rotary embedding (``mul``) one block of up to
      512 threads per token over (x, y) pairs after a position-id load; one dependent round
      trip per loop iteration (the rotary one also an integer division, below). Its op reads
      one cos/sin cache row (``table`` elements) per token, not a second full-size operand.
    * Embedding (PyTorch ``index_select``, what ``F.embedding`` runs): up to 16 tokens, each
      thread of one row's grid loops over the tokens (an index load, then the table row);
      beyond, at most 8 blocks of 128 threads per SM stride over the output, each element
      two dependent loads (the token id, then the table row): a chain of ``elements /
      threads`` x (DRAM + L2 latency). Integer index arithmetic (up to 20 instructions a
      division, CUDA Best Practices Guide) is issued by all of an SM's warps at once (they
      wait on the same round trips, so they reach it together): its issue time, four
      warp-instructions a clock per SM, adds to each iteration (:func:`_issue_s`).
    * The chain is not hidden (each thread has one load in flight, far below the
      bytes-in-flight that would cover the latency at full bandwidth), so the kernel's busy
      time is the chain with its DRAM round trips queueing behind the kernel's DRAM traffic
      (at utilisation ``rho`` each takes ``1 / (1 - rho)`` of its latency, an M/M/1 queue:
      ``chain + DRAM traffic / achievable bandwidth`` when every round trip goes to DRAM),
      its L2 round trips (a row's later passes) not (:func:`_loaded_chain_s`); at least its
      traffic at every level and its vector work.
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
      1-token RMSNorm over 4096 columns 4.3 us (Kineto: 2 and 4-5 us, Vidur profiles).
    * GEMM kernels pay the startup once and the fill per wave (above); attention kernels
      keep their pipeline fill as their fixed device cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from simulator.arch.spec import Device, MemoryLevel
from simulator.errors import MappingError
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
    _smem_per_sm,
    _startup,
    _t,
)
from workloads.dtypes import get_dtype
from workloads.ops import ELEMENTWISE_FNS, Attention, Elementwise, Embedding, Norm, Op, Softmax

__all__ = ["PrefillPlan", "StreamPlan", "attention_cost", "gpu_streaming_cost", "prefill_plan"]

@dataclass(frozen=True)
class PrefillPlan:
    """A flash-attention forward kernel's schedule: ``tiles`` query blocks of ``q_block`` rows
    (per batch and head), each looping over ``kv_blocks`` blocks of ``kv_block`` keys (all of
    them in total; a causal block stops at the diagonal, which it computes in full and
    masks), run longest first on the SMs. ``block_s`` is one (query block x key block) step:
    its MMAs at ``mma_efficiency`` plus the ``1 - softmax_hidden`` share of its softmax that
    the kernel does not overlap with them; ``tile_fill_s`` each tile's prologue and epilogue
    (the Q and first K/V tiles in, the O tile out)."""

    style: str              # "FlashAttention-2" (one warp does MMA then softmax) or "-3"
    q_block: int
    kv_block: int
    tiles: int
    kv_blocks: int          # key blocks over all tiles, the masked diagonal ones included
    mma_efficiency: float
    softmax_hidden: float
    softmax_ratio: float    # softmax time / MMA time of one step at 100% of the peaks
    block_s: float
    tile_fill_s: float
    makespan_s: float
    waves: float            # tiles / SMs
    useful: float           # useful score pairs / computed ones (the causal mask's waste)


_ATTN_Q_BLOCK = 128      # query rows per flash-attention tile (FA2: 128 on the A100 for
#                          head_dim <= 128; FA3: 128 on the H100 for head_dim 128 and 256)
_ATTN_KV_BLOCK = 128     # keys per step (FA2 A100 128 x 64 to 128 x 128, FA3 H100 128 x 80 to
#                          128 x 176 by head_dim; 128 as their middle, for the causal waste)
_ATTN_REF_HEAD_DIM = 128  # attention_efficiency is the efficiency at this head_dim (fp16)
# Share of the softmax FA3 hides behind the other warpgroup's GEMMs (ping-pong scheduling and
# intra-warpgroup pipelining), from its ablation (Shah et al. 2024, FlashAttention-3, table 2:
# head_dim 128, seq 8k, H100: 661 TFLOP/s with GEMM-softmax pipelining and warp
# specialisation, 582 without). With the H100's exp rate (3.9 TFLOP/s of MUFU vs 989 of
# fp16 MMA, the paper's figures: r = (1 / 3.9) / (4 x 128 / 989) = 0.50 of the MMA time per
# score), 661 / 582 = (1 + r) / (1 + (1 - h) r) gives h = 0.36. FA2 (and pre-Hopper parts)
# runs the MMAs and the softmax of a warp one after the other: h = 0.
_FA3_SOFTMAX_HIDDEN = 0.36
# Softmax / MMA time of one score at head_dim 128 and peak rates on the part each kernel's
# published efficiency was measured on, which turns that efficiency into the kernel's MMA
# efficiency (a property of its main loop, kept when a what-if changes the softmax units):
# A100 SXM (FA2): (1 / 2.44 T exp/s + 4 / 19.5 TFLOP/s fp32) / (512 / 312 TFLOP/s) = 0.375
# (108 SMs x 16 SFU results x 1.41 GHz); H100 SXM (FA3): (1 / 4.18 T + 4 / 67 T) /
# (512 / 989 T) = 0.577 (132 x 16 x 1.98 GHz). Whitepaper rates, as in the shipped specs.
_REF_SOFTMAX_RATIO = {"FlashAttention-2": 0.375, "FlashAttention-3": 0.577}


def _makespan(durations: list[tuple[float, int]], slots: int) -> float:
    """Finishing time of ``(duration, count)`` tiles on ``slots`` SMs, launched longest
    first (flash-attention orders a causal kernel's query blocks so): in waves of ``slots``
    tiles, each wave as long as its longest tile. Exact for equal tiles (``ceil(count /
    slots)`` waves) and for one wave (the longest tile); for unequal ones an upper bound
    (an SM that drew a short tile starts the next wave early), and never more than twice
    the time for twice the tiles."""
    out, start = 0.0, 0
    for d, c in sorted(durations, reverse=True):
        # waves that begin inside this group: the multiples of ``slots`` in [start, start+c)
        out += d * (-(-(start + c) // slots) - (-(-start // slots)))
        start += c
    return out


def _softmax_per_pair(device: Device) -> float:
    """Device seconds of the softmax of one score at the peak issue rates: its exp on the
    special-function units (on the vector lanes, at ``special_cost``, where a part has none)
    and its max, subtract, sum and rescale (the 4 vector FLOPs :class:`Attention` counts) on
    the fp32 vector lanes, where flash-attention keeps the scores."""
    vpeak, _ = device.peak(get_dtype("fp32"), "vector")
    if vpeak <= 0:
        raise MappingError(f"{device.name}: no fp32 vector unit for the attention softmax")
    speak, _ = device.peak(get_dtype("fp32"), "special")
    table = device.params.get("special_cost") or {}
    exp_s = (1.0 / speak if device.units("special") and speak > 0
             else float(table.get("exp", device.energy.special_multiplier)) / vpeak)
    return exp_s + 4.0 / vpeak


def prefill_plan(op: Attention, device: Device) -> PrefillPlan:
    """How a flash-attention forward kernel runs ``op`` (a prefill) on a GPU; see
    :class:`PrefillPlan`. ``params.attention_efficiency`` is the fraction of the matrix peak
    the kernel reaches on a long non-causal fp16 sequence at head_dim 128 (FlashAttention-2
    on the A100, -3 on the H100, as published); the MMA efficiency behind it is what is left
    after the softmax the kernel exposed at that shape on that part
    (``_REF_SOFTMAX_RATIO``); this part's own softmax and MMA rates, head_dim and dtype then
    set the softmax share (it does not grow with head_dim; an fp8 MMA runs twice as fast)."""
    ref_eff = float(param(device, "attention_efficiency"))
    hw = _gpu(device, op.dtype, efficiency=ref_eff)
    fa3 = hw.persistent
    hidden = _FA3_SOFTMAX_HIDDEN if fa3 else 0.0
    style = "FlashAttention-3" if fa3 else "FlashAttention-2"
    ratio = _softmax_per_pair(device) / (4.0 * op.head_dim / hw.peak)  # softmax / MMA at peak
    inv = 1.0 / ref_eff - (1.0 - hidden) * _REF_SOFTMAX_RATIO[style]
    mma_eff = 1.0 if inv <= 1.0 else 1.0 / inv
    bq, bk = _ATTN_Q_BLOCK, _ATTN_KV_BLOCK
    block_s = (4.0 * bq * bk * op.head_dim / (hw.peak / hw.sms)) / mma_eff \
        + (1.0 - hidden) * ratio * (4.0 * bq * bk * op.head_dim / (hw.peak / hw.sms))
    kvb = (op.kv_dtype or op.dtype).bytes
    tile_bytes = (2 * bq * op.head_dim * op.dtype.bytes      # Q in, O out
                  + 2 * bk * op.head_dim * kvb)               # the first K and V blocks
    per_sm_bw = min(hw.port_bw, hw.feed_bw / hw.sms) if hw.port_bw > 0 else hw.feed_bw / hw.sms
    tile_fill = hw.fill_s + tile_bytes / per_sm_bw
    samples: dict[int, int] = {}  # new tokens -> samples (variable-length: each on its own)
    for length in op.lengths:
        samples[length] = samples.get(length, 0) + 1
    per_tile: dict[int, int] = {}  # key blocks a tile steps over -> tiles
    for length, count in samples.items():
        for i in range(math.ceil(length / bq)):
            keys = op.context + (min((i + 1) * bq, length) if op.causal else length)
            n = math.ceil(keys / bk)
            per_tile[n] = per_tile.get(n, 0) + count * op.heads
    kv_blocks = sum(n * c for n, c in per_tile.items())
    tiles = sum(per_tile.values())
    makespan = _makespan([(tile_fill + n * block_s, c) for n, c in per_tile.items()], hw.sms)
    useful = op.batch * op.heads * op.score_pairs / (kv_blocks * bq * bk)
    return PrefillPlan(style, bq, bk, tiles,
                       kv_blocks, mma_eff, hidden, ratio, block_s, tile_fill, makespan,
                       tiles / hw.sms, useful)


@register_cost("attention", FAMILY)
def attention_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """A fused flash-attention kernel: a prefill as :func:`prefill_plan` schedules it, a
    decode step as flash-decoding (the KV cache split over the SMs, read once)."""
    assert isinstance(op, Attention)
    eff = float(param(device, "attention_efficiency"))
    hw = _gpu(device, op.dtype, efficiency=eff)
    fl = op.flops()
    assert op.kv_heads is not None
    group = op.heads // op.kv_heads
    kvb = (op.kv_dtype or op.dtype).bytes
    fixed = hw.launch_s + hw.fill_s
    if op.phase == "decode":
        rows = group * op.seq
        pad = _round_up(rows, _MMA_GRANULE) / rows
        units = op.batch * op.kv_heads
        split_kv = max(1, min(math.ceil(hw.sms / units), math.ceil(op.kv_len / _ATTN_Q_BLOCK)))
        tiles, waves = units * split_kv, 1
        wave_eff = min(1.0, tiles / hw.sms)
        matrix_s = fl.matrix * pad / (hw.peak * eff)
        soft_s, _, _ = vector_time(op, device)
        compute_s = max(matrix_s, soft_s)
        l2_bytes = op.min_bytes
        tile_note = (f"decode: {rows} query row{'s' if rows > 1 else ''} per KV head padded "
                     f"to {_round_up(rows, _MMA_GRANULE)} for the MMA ({pad:.0f}x the FLOPs); "
                     f"the {op.kv_len}-token KV cache of each of {units} (batch, KV head) pairs "
                     f"is split {split_kv} ways over the SMs (flash-decoding)")
        what = (f"{_rate(fl.matrix, 'FLOP')} on the {hw.cls} matrix units at {eff:.0%} of peak "
                f"({_t(matrix_s)}); softmax {_rate(fl.vector + fl.special, 'FLOP')} on the "
                f"vector/SFU units overlaps ({_t(soft_s)})")
        extra: dict[str, object] = {}
        if split_kv > 1:
            # flash-decoding's second kernel (FA2 flash_fwd_splitkv_combine, vLLM
            # paged_attention_v2_reduce): each split's fp32 partial output and its
            # log-sum-exp, written by the first kernel and read back from the L2
            partial = 2.0 * units * split_kv * rows * (op.head_dim + 1) * 4
            combine = (hw.launch_s + hw.startup_s + hw.fill_s
                       + partial / (hw.l2_bw or hw.dram_bw))
            fixed += combine
            l2_bytes += partial
            tile_note += (f"; a combine kernel merges the {split_kv} partial outputs "
                          f"({_b(partial)} through the L2): {_t(combine)} with its launch")
            extra = {"combine_s": combine, "launches": 2}
    else:
        plan = prefill_plan(op, device)
        tiles, split_kv = plan.tiles, 1
        waves = math.ceil(plan.waves)
        wave_eff = plan.waves / waves
        compute_s = plan.makespan_s
        q_o = 2.0 * op.tokens * op.heads * op.head_dim * op.dtype.bytes
        new_kv = 2.0 * op.tokens * op.kv_heads * op.head_dim * kvb
        kv_l2 = plan.kv_blocks * _ATTN_KV_BLOCK * 2 * op.head_dim * kvb
        l2_bytes = max(op.min_bytes, q_o + new_kv + kv_l2)
        fixed = hw.launch_s + hw.startup_s
        tflops = fl.matrix / compute_s if compute_s > 0 else 0.0
        hid = ("FA3 hides the rest behind the other warpgroup" if plan.softmax_hidden
               else "not overlapped: a warp runs its MMAs, then its softmax")
        what = (f"{plan.style} forward: {_rate(fl.matrix, 'FLOP')} in "
                f"{plan.q_block}x{plan.kv_block} steps; each step's MMAs at "
                f"{plan.mma_efficiency:.0%} of the {hw.cls} peak (what the spec's "
                f"attention_efficiency {eff:.0%} at head_dim {_ATTN_REF_HEAD_DIM} leaves after "
                f"the softmax) plus {1 - plan.softmax_hidden:.0%} of its softmax "
                f"({plan.softmax_ratio:.2f}x the MMA time at peak rates; "
                f"{hid}) "
                f"= {_t(plan.block_s)} a step")
        blocks = (f"batch*heads = {op.batch * op.heads} x {math.ceil(op.seq / plan.q_block)}"
                  if op.seq_lens is None else
                  f"{op.heads} heads x each of {op.batch} variable-length samples on its own")
        tile_note = (f"prefill: {plan.tiles} query blocks ({blocks}) over {hw.sms} SMs "
                     f"({plan.waves:.2f} waves), {plan.kv_blocks} key-block steps in all"
                     f"{f' ({plan.useful:.0%} of their scores unmasked)' if op.causal else ''}"
                     f", each tile {_t(plan.tile_fill_s)} of Q/K/V in and O out; longest first: "
                     f"{_t(plan.makespan_s)} = {tflops / 1e12:.0f} TFLOP/s "
                     f"({tflops / hw.peak:.0%} of peak)")
        extra = {"style": plan.style, "mma_efficiency": plan.mma_efficiency,
                 "softmax_hidden": plan.softmax_hidden, "block_s": plan.block_s,
                 "tile_fill_s": plan.tile_fill_s, "kv_blocks": plan.kv_blocks,
                 "useful": plan.useful}
    nbytes = op.min_bytes
    memory_s = nbytes / hw.dram_bw
    bound = "compute" if compute_s >= memory_s else "memory"
    notes = (
        f"fused flash-attention kernel ({op.phase}, {op.heads} heads / {op.kv_heads} KV heads, "
        f"head_dim {op.head_dim}, {op.seq} new token{'s' if op.seq > 1 else ''} over "
        f"{op.kv_len} keys): {what}",
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
               "efficiency": eff, "launch_s": hw.launch_s * int(extra.get("launches", 1)),
               **extra}
    return scale_busy(
        make_cost(device, op, compute_s=compute_s, memory_s=memory_s,
                  overhead_s=fixed, bytes_by_level=by_level,
                  compute_class=hw.cls, peak_flops=hw.peak, details=details, notes=notes),
        device, "attention")


# -- streaming kernels -----------------------------------------------------------------------
_ROW_BLOCK_MAX = 1024     # threads in a row kernel's block: min(row width, 1024)
_WARP = 32
_GRID_THREADS = 128       # PyTorch's elementwise kernels: 128-thread blocks, 4 items a thread
_GRID_ITEMS = 4
_GATHER_THREADS = 128     # index_select / embedding: 128-thread blocks, at most 8 per SM
_GATHER_BLOCKS_PER_SM = 8
_SMALL_INDEX_MAX = 16     # index_select runs indexSelectSmallIndex up to 16 indices
_DIVISION_INSTRUCTIONS = 20  # an integer division or modulo: up to 20 instructions (CUDA C++
#                              Best Practices Guide, "Arithmetic Instructions")
_ISSUE_PER_CLOCK = 4      # warp-instructions an SM issues a clock: four warp schedulers, one
#                           instruction a clock each (NVIDIA Volta, Ampere, Hopper whitepapers;
#                           taken for every GPU part: the kernels modelled are CUDA's)
_SOFTMAX_LOAD_BYTES = 16  # PyTorch cunn_SoftMaxForward: 16-byte (ILP) loads
_ROTARY_BLOCK_MAX = 512   # vLLM rotary_embedding: block(min(num_heads * rot_dim / 2, 512))
_WARP_REDUCE_STEPS = 5    # log2(32) xor-shuffles of a warp reduction


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
    lookups: int = 0        # dependent loads before a row kernel's loop (rotary: position)
    chain_dram_s: float = 0.0  # the DRAM round trips' share of chain_s (the rest: the L2's)


def _old_input_bytes(op: Op) -> float:
    """Bytes of ``op``'s inputs that its producer did not just write: every input of an
    elementwise op but the first (a residual add's skip connection, the cos/sin table of a
    rotary multiply, the optimizer state of Adam), which the weight streams of the GEMMs
    since have evicted from the L2. A gated activation (swiglu) reads the two halves its
    gate/up projection just wrote."""
    if isinstance(op, Elementwise) and op.table is not None and op.row is not None:
        return -(-op.numel // op.row) * op.table * op.dtype.bytes  # the rotary cos/sin rows
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


def _loaded_chain_s(dram_chain_s: float, l2_chain_s: float, dram_s: float) -> float:
    """Busy time of a kernel whose threads wait out ``dram_chain_s`` of DRAM round trips and
    ``l2_chain_s`` of L2 round trips (unloaded latencies) while the kernel moves ``dram_s``
    of DRAM traffic. Each DRAM round trip queues behind the traffic in flight: at DRAM
    utilisation ``rho = dram_s / T`` it takes ``1 / (1 - rho)`` times its unloaded latency
    (an M/M/1 queue, as the GEMM pipelines assume), so ``T = dram_chain / (1 - dram_s / T)
    + l2_chain``, the larger root of ``(T - l2_chain)(T - dram_s) = dram_chain T``. No chain:
    the traffic; no traffic: the chain; never more than their sum, nor more than one more
    second of time for one more second of traffic."""
    total = dram_chain_s + l2_chain_s + dram_s
    return 0.5 * (total + math.sqrt(max(0.0, total * total - 4.0 * l2_chain_s * dram_s)))


def _resident_blocks(device: Device, threads: int) -> int:
    return max(1, min(int(param(device, "max_threads_per_sm")) // threads,
                      int(param(device, "max_blocks_per_sm"))))


def _sm_sram(device: Device) -> MemoryLevel:
    """The SM's own SRAM (the spec's ``smem`` level: L1 and shared memory are one array on
    NVIDIA parts since Volta), else the L2, else DRAM: where a thread's re-read and a
    block's exchange go."""
    return device.level("smem") or _l2(device) or device.dram


def _reread_s(device: Device, resident_bytes: float) -> float:
    """Latency of re-reading what the same thread loaded earlier in the kernel: an L1 hit
    when the rows resident on one SM (``resident_bytes``) fit in its share of the
    ``smem`` level, else the L2 latency (DRAM without an L2)."""
    sram = device.level("smem")
    if sram is not None and resident_bytes <= _smem_per_sm(device):
        return sram.latency_s
    l2 = _l2(device)
    return l2.latency_s if l2 is not None else device.dram.latency_s


def _block_reduce_s(device: Device, threads: int) -> float:
    """Latency of one block-wide reduction and broadcast of its result (vLLM / sarathi-serve
    csrc/reduction_utils.cuh ``blockReduceSum``, from FasterTransformer, then the norm's
    ``s_variance``): a warp reduction of log2(32) = 5 dependent xor-shuffles; with more than
    one warp, lane 0 stores to shared memory, a barrier, a load, and another 5 shuffles
    (``warpReduce<T, 32>``); then one thread stores the result, a barrier, every thread loads
    it. Each step waits one access of the SM's SRAM (a shuffle crosses the same crossbar as
    a shared-memory access): 16 steps at 1024 threads, 25 ns each on the A100 spec (its
    ``smem`` latency) = 0.4 us, 8 steps for one warp."""
    steps = _WARP_REDUCE_STEPS + 3
    if threads > _WARP:
        steps += 3 + _WARP_REDUCE_STEPS
    return steps * _sm_sram(device).latency_s


def _row_plan(device: Device, rows: int, cols: int, vector: int, passes: int, *,
              elem_bytes: int, threads: int | None = None, lookups: int = 0,
              divisions: int = 0) -> StreamPlan:
    """A row kernel: one block of ``threads`` (default min(width, 1024)) threads per row,
    ``passes`` block-stride passes over the row, ``vector`` elements per access, after
    ``lookups`` dependent loads that locate the row (the rotary kernel's position id). The
    first pass loads the row from memory (the DRAM latency). Between two passes the block
    reduces (:func:`_block_reduce_s`: the norm's sum of squares, softmax's max and sum).
    Later passes re-read what the same thread loaded in the first: an L1 hit (its latency,
    the spec's ``smem`` level: the L1 and shared memory are one SRAM on NVIDIA parts since
    Volta) when the rows resident on an SM fit in it, else the L2 (its latency). A norm's
    weight vector, read with the row in the last pass by every row an SM runs, is counted
    at the same latency (its misses in the SM's first row are not counted apart).
    ``divisions``: integer divisions each loop iteration (the rotary kernel's head index),
    issued by the SM's warps together (:func:`_issue_s`)."""
    sms = _sm_count(device)
    if threads is None:
        threads = min(_ROW_BLOCK_MAX, _round_up(math.ceil(cols / vector), _WARP))
    iters = math.ceil(cols / (threads * vector))
    bps = _resident_blocks(device, threads)
    waves = math.ceil(rows / (sms * bps))
    lat = device.dram.latency_s
    dram_chain = max(0.0, waves * (lookups + iters) * lat - lat)
    chain = dram_chain
    if divisions:  # integer index arithmetic each iteration, issued by all resident warps
        warps = math.ceil(min(rows, sms * bps) / sms) * math.ceil(threads / _WARP)
        chain += waves * iters * _issue_s(device, warps,
                                          divisions * _DIVISION_INSTRUCTIONS)
    if passes > 1:
        chain += waves * (iters * (passes - 1) * _reread_s(device, bps * cols * elem_bytes)
                          + (passes - 1) * _block_reduce_s(device, threads))
    return StreamPlan("row", threads, rows, bps, waves, iters, passes, vector, lat, chain,
                      lookups, dram_chain)


def _elementwise_row_plan(device: Device, op: Elementwise, row: int) -> StreamPlan:
    """The kernels vLLM (and sarathi-serve, which Vidur profiles) runs for a row-wise
    pointwise op, one block per token (``row`` elements of a token, ``numel / row`` tokens):

    * ``mul``, the rotary embedding (csrc/pos_encoding_kernels.cu ``rotary_embedding_kernel``,
      in place on q and k): block min(heads x rot_dim / 2, 512) threads; the token's position
      id is loaded first (one dependent round trip), then a block-stride loop over q's
      (x, y) pairs and another over k's, each iteration loading the pair and its cos and
      sin (one round trip), 2 elements a thread. The op carries q + k only, so the block is
      taken as half the pairs (exact for multi-head attention: q and k the same width; with
      GQA the k loop is shorter, and both loops still run at least once).
    * any other ``fn`` (``swiglu``: csrc/activation_kernels.cu ``act_and_mul_kernel``,
      SiLU-and-mul over a token's ``d_ff`` outputs): block min(row, 1024) threads, one
      output element a thread per iteration, its two inputs loaded together (one round
      trip), scalar loads.
    """
    rows = max(1, math.ceil(op.numel / row))
    width = min(row, op.numel)
    if op.fn == "mul":
        pairs = math.ceil(width / 2)
        threads = min(_ROTARY_BLOCK_MAX, _round_up(math.ceil(pairs / 2), _WARP))
        return _row_plan(device, rows, width, 2, 1, elem_bytes=op.dtype.bytes,
                         threads=threads, lookups=1, divisions=1)
    return _row_plan(device, rows, width, 1, 1, elem_bytes=op.dtype.bytes)


def _grid_plan(device: Device, numel: float) -> StreamPlan:
    """A grid of 128-thread blocks, 4 elements a thread: one load round trip per thread, the
    blocks of later waves overlapping the earlier ones' (no chain beyond the first load)."""
    sms = _sm_count(device)
    blocks = max(1, math.ceil(numel / (_GRID_THREADS * _GRID_ITEMS)))
    bps = _resident_blocks(device, _GRID_THREADS)
    return StreamPlan("grid", _GRID_THREADS, blocks, bps, math.ceil(blocks / (sms * bps)), 1,
                      1, _GRID_ITEMS, device.dram.latency_s, 0.0)


def _issue_s(device: Device, warps_per_sm: int, instructions: float) -> float:
    """Time one SM takes to issue ``instructions`` per warp for ``warps_per_sm`` warps:
    ``_ISSUE_PER_CLOCK`` warp-instructions a clock of the vector units. The warps of a
    gather or a row kernel start together and wait on the same round trips, so they reach
    their index arithmetic together: its issue time adds to each iteration instead of
    hiding behind the other warps' loads."""
    clock = max((u.clock_hz for u in device.units("vector")), default=0.0)
    if clock <= 0:
        return 0.0
    per_scheduler = math.ceil(warps_per_sm / _ISSUE_PER_CLOCK)
    return per_scheduler * instructions / clock


def _gather_plan(device: Device, tokens: int, dim: int) -> StreamPlan:
    """PyTorch's index_select (what F.embedding runs; aten/src/ATen/native/cuda/Indexing.cu),
    grid min(ceil(n / 128), 8 x SMs) blocks of 128 threads striding over n elements:

    * up to 16 indices, ``indexSelectSmallIndex``: each thread loops over the indices, for
      each one loading the index, then its slice of that table row (n = the row width):
      per index a dependent index load (the first from the L2, the others from the line the
      first brought into the L1) and a table load from DRAM, and the offset arithmetic of
      2 integer divisions (``IndexToOffset`` of the output and of the table);
    * more, ``indexSelectLargeIndex``: each thread strides over all tokens x dim elements,
      each element a dependent index load (L2) and table load (DRAM) after 3 integer
      divisions (row and column of the linear index, then ``IndexToOffset`` of the output
      and the table), issued by all the SM's warps at once (:func:`_issue_s`).

    An integer division or modulo compiles to up to 20 instructions (CUDA C++ Best
    Practices Guide, 'Arithmetic Instructions'; the quotient and the remainder of one
    divisor share them)."""
    sms = _sm_count(device)
    small = tokens <= _SMALL_INDEX_MAX
    work = dim if small else tokens * dim
    threads = max(1, min(work, _GATHER_THREADS))
    blocks = max(1, min(math.ceil(work / _GATHER_THREADS), sms * _GATHER_BLOCKS_PER_SM))
    iters = math.ceil(work / (blocks * threads))
    bps = _resident_blocks(device, threads)
    warps = math.ceil(blocks / sms) * math.ceil(threads / _WARP)
    divisions = 2 if small else 3
    issue = _issue_s(device, warps, divisions * _DIVISION_INSTRUCTIONS)
    dram = device.dram.latency_s
    l2 = _l2(device)
    l2_lat = l2.latency_s if l2 is not None else dram
    if small:
        steps = tokens * iters
        index = _sm_sram(device).latency_s  # the later indices: the first one's L1 line
        chain = (l2_lat - index) + steps * (index + dram + issue) - dram
    else:
        steps = iters
        chain = steps * (l2_lat + dram + issue) - dram
    return StreamPlan("gather", threads, blocks, bps, math.ceil(blocks / (sms * bps)),
                      steps, 1, 1, dram + l2_lat, max(0.0, chain),
                      chain_dram_s=max(0.0, (steps - 1) * dram))


def _stream_plan(op: Op, device: Device) -> StreamPlan:
    """The kernel a library runs for ``op`` (see the module docstring)."""
    if isinstance(op, Norm) and op.norm != "batchnorm":
        return _row_plan(device, op.rows, op.cols, int(param(device, "norm_vector")), 2,
                         elem_bytes=op.dtype.bytes)
    if isinstance(op, Softmax):
        return _row_plan(device, op.rows, op.cols,
                         max(1, _SOFTMAX_LOAD_BYTES // op.dtype.bytes), 3,
                         elem_bytes=op.dtype.bytes)
    if isinstance(op, Embedding):
        return _gather_plan(device, op.tokens, op.dim)
    if isinstance(op, Elementwise) and op.row is not None:
        return _elementwise_row_plan(device, op, op.row)
    numel = op.numel if isinstance(op, Elementwise) else op.min_bytes / op.dtype.bytes
    return _grid_plan(device, numel)


def gpu_streaming_cost(op: Op, device: Device, options: MapOptions) -> OpCost:
    """Streaming op on a GPU, as the kernel a library runs for it (module docstring):
    kernel startup, the first load and last store (the fill), and its latency chain queued
    behind its DRAM traffic (:func:`_loaded_chain_s`; the traffic by :func:`_stream_traffic`:
    the L2 when the working set is resident, else DRAM; an embedding gather in a graph
    always DRAM), or its traffic or vector work where that is longer; all
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
    base = streaming_cost(op, device, options, level=level,
                          traffic=traffic,
                          overhead_s=launch + _fill(device, None))
    plan = _stream_plan(op, device)
    startup = _startup(device)
    f = kind_efficiency(device, op.kind)
    chain = plan.chain_s / f
    dram_bw = device.dram.bandwidth_Bps * param(device, "bandwidth_efficiency")
    dram_s = base.bytes_by_level.get(device.dram.name, 0.0) / dram_bw / f
    loaded = _loaded_chain_s(plan.chain_dram_s / f, (plan.chain_s - plan.chain_dram_s) / f,
                             dram_s)
    busy = max(base.compute_s, base.memory_s, loaded)
    latency = busy + startup / f + base.overhead_s
    stride = ("one row wide, looping over the tokens"
              if isinstance(op, Embedding) and op.tokens <= _SMALL_INDEX_MAX
              else "striding over the output")
    what = {"row": f"one block of {plan.threads} threads per row ({plan.blocks} rows, "
                   f"{plan.blocks_per_sm} blocks per SM, {plan.waves} wave"
                   f"{'s' if plan.waves > 1 else ''}), {plan.passes} pass"
                   f"{'es' if plan.passes > 1 else ''} of {plan.iterations} dependent "
                   f"load{'s' if plan.iterations > 1 else ''} of {plan.vector} element"
                   f"{'s' if plan.vector > 1 else ''} per thread",
            "grid": f"a grid of {plan.blocks} blocks of {plan.threads} threads, "
                    f"{plan.vector} elements a thread, one load round trip each",
            "gather": f"a gather of {plan.blocks} blocks of {plan.threads} threads "
                      f"({stride}): {plan.iterations} iteration"
                      f"{'s' if plan.iterations > 1 else ''} of two dependent loads (the "
                      f"token id, then the table row) and the index arithmetic per thread"
            }[plan.kernel]
    mem = max(base.memory_s, loaded)
    bound = (("its latency chain" if chain >= base.memory_s else "its traffic")
             if mem >= base.compute_s else "its vector work")
    notes = (*base.notes,
             f"kernel: {what}; each dependent load waits {_t(plan.round_trip_s)} (the spec's "
             f"DRAM latency{' plus its L2 latency' if plan.kernel == 'gather' else ''}; "
             f"re-reads of a row its L1's or L2's, block reductions and index arithmetic "
             f"on chip): a chain of {_t(chain)} after the first "
             f"load, not hidden while so few bytes are in flight; its DRAM round trips "
             f"queue behind the {_t(dram_s)} of DRAM traffic (M/M/1): {_t(loaded)} busy, vs "
             f"traffic {_t(base.memory_s)} and vector work {_t(base.compute_s)}: bound by "
             f"{bound}",
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
