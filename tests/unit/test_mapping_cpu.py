"""CPU mapper: cache-blocked GEMM on SIMD units, warm caches, unfused attention, streaming.

The device is a 32-core server CPU written here (not a shipped spec): AVX-512 with two FMA
units, 64 fp32 FLOP/cycle per core at 3.0 GHz (6.14 TFLOP/s), no native bf16; 200 GB/s DRAM,
128 MiB L3 at 1.6 TB/s and 32 x 1 MiB L2 at 3.2 TB/s (device totals). Mapper defaults:
compute_efficiency 0.7 (x0.7 for an emulated dtype), bandwidth_efficiency 0.85, dispatch 5 us,
write-allocate on, fresh outputs above 32 MiB fault in at 2 GB/s per thread (64 GB/s here).
"""

import itertools
import math

import pytest

from simulator.arch.loader import load_arch
from simulator.mapping.base import MapOptions
from simulator.mapping.registry import cost_op, registered
from workloads.ops import (
    OP_TYPES,
    Attention,
    Conv2d,
    Elementwise,
    Embedding,
    MatMul,
    Memcpy,
    Norm,
    Softmax,
)

CPU_YAML = """
name: cpu-like
kind: cpu
family: cpu
process_node: 7 nm
compute:
  - {name: avx512, unit: vector, count: 32, clock: 3.0 GHz, flops_per_cycle: {fp32: 64}}
memory:
  - {name: dram, capacity: 256 GB, bandwidth: 200 GB/s, energy_per_byte: 60 pJ/B}
  - {name: l3, capacity: 128 MiB, bandwidth: 1.6 TB/s, energy_per_byte: 10 pJ/B}
  - {name: l2, capacity: 32 MiB, bandwidth: 3.2 TB/s, energy_per_byte: 5 pJ/B}
power: {tdp: 280 W, static: 80 W}
"""

PEAK_FP32 = 32 * 64 * 3.0e9       # 6.14 TFLOP/s
DRAM_BW = 200e9 * 0.85            # 170 GB/s achievable
L2_BW = 3.2e12 * 0.85
LAUNCH = 5e-6
FAULT_BW = 2e9 * 32               # page faults: 2 GB/s per thread, 32 threads


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("cpu") / "cpu-like.yaml"
    p.write_text(CPU_YAML)
    return p


@pytest.fixture(scope="module")
def cpu(spec_path):
    return load_arch(spec_path).device


def _dev(spec_path, **overrides):
    return load_arch(spec_path, {k.replace("__", "."): v for k, v in overrides.items()}).device


SWEEP = [MatMul(m=m, n=n, k=k, dtype=dt)
         for m, n, k in itertools.product([1, 7, 64, 333, 1024, 4096], repeat=3)
         for dt in ("fp32", "bf16")]


def test_every_op_kind_is_registered():
    assert {kind for (_, kind) in registered("cpu")} == set(OP_TYPES)


def test_large_gemm_runs_at_efficiency_times_peak(cpu):
    op = MatMul(m=4096, n=4096, k=4096, dtype="fp32")
    c = cost_op(op, cpu)
    assert c.bound == "compute"
    # 137 GFLOP at 0.7 x 6.14 TFLOP/s = 32 ms; the 5 us dispatch is 0.02%; the fresh 64 MiB
    # output (above glibc's 32 MiB mmap threshold) faults in: 64 MiB / 64 GB/s = 1.05 ms
    fault = op.c_bytes() / FAULT_BW
    assert c.details["page_fault_s"] == pytest.approx(fault)
    assert c.latency_s == pytest.approx(op.flops().total / (0.7 * PEAK_FP32) + fault, rel=0.03)
    assert c.details["threads"] == 32
    assert c.details["resident"] is None          # 128 MiB of inputs fit in no cache
    assert c.details["output_resident"] == "l3"   # 64 MiB C: a recycled buffer, half the L3
    assert c.dram_bytes >= op.a_bytes() + op.b_bytes()


def test_bf16_without_native_support_is_slower_and_native_is_faster(cpu, spec_path):
    shape = {"m": 4096, "n": 4096, "k": 4096}
    fp32 = cost_op(MatMul(**shape, dtype="fp32"), cpu)
    bf16 = cost_op(MatMul(**shape, dtype="bf16"), cpu)
    assert bf16.compute_class == "fp32"           # converted, then fp32 FMAs
    assert bf16.details["efficiency"] == pytest.approx(0.7 * 0.7)
    # compute ratio 0.7/0.49; the bf16 output's page faults (32 MiB: at the threshold, none)
    # vs the fp32 output's (64 MiB: 1 ms) pull the ratio down by ~3%
    assert bf16.compute_s / fp32.compute_s == pytest.approx(0.7 / 0.49, rel=0.01)
    assert bf16.latency_s / fp32.latency_s == pytest.approx(0.7 / 0.49, rel=0.04)
    native = _dev(spec_path, **{"compute__avx512__flops_per_cycle": "{fp32: 64, bf16: 128}"})
    nb = cost_op(MatMul(**shape, dtype="bf16"), native)
    assert nb.compute_class == "bf16"
    assert nb.compute_s / fp32.compute_s == pytest.approx(0.5, rel=0.01)


def test_fewer_threads_are_proportionally_slower(cpu, spec_path):
    op = MatMul(m=4096, n=4096, k=4096, dtype="fp32")
    eight = cost_op(op, _dev(spec_path, params__threads=8))
    assert eight.details["threads"] == 8
    assert eight.latency_s / cost_op(op, cpu).latency_s == pytest.approx(4.0, rel=0.01)
    # a tiny GEMM cannot use all 32 cores: one 32x32 block of C per thread
    assert cost_op(MatMul(m=64, n=64, k=4096, dtype="fp32"), cpu).details["threads"] == 4


def test_gemv_is_memory_bound_at_dram_bandwidth(cpu):
    op = MatMul(m=1, n=8192, k=8192, dtype="fp32", weight=True)
    c = cost_op(op, cpu)
    weights = 8192 * 8192 * 4                     # 256 MiB, larger than the 128 MiB L3
    assert c.bound == "memory"
    assert c.latency_s - c.overhead_s == pytest.approx(weights / DRAM_BW, rel=0.05)
    assert c.overhead_s == pytest.approx(LAUNCH)


def test_small_gemm_is_served_from_cache(cpu):
    op = MatMul(m=64, n=64, k=64, dtype="fp32")   # 48 KiB
    c = cost_op(op, cpu)
    assert c.details["resident"] == "l2"
    assert c.dram_bytes == 0.0 and c.bytes_by_level["l2"] == op.min_bytes
    assert c.memory_s == pytest.approx(op.min_bytes / L2_BW)
    assert c.bound == "latency"                   # 5 us dispatch >> 0.1 us of work


def test_blocking_rereads_a_when_b_panels_do_not_cover_n(spec_path):
    small_l3 = _dev(spec_path, memory__l3__capacity="8 MiB")
    op = MatMul(m=8192, n=16384, k=4096, dtype="fp32")
    c = cost_op(op, small_l3)
    kc, nc = c.details["blocking"]["kc"], c.details["blocking"]["nc"]
    # kc from half a core's 1 MiB L2 share; nc from half the 8 MiB L3
    assert kc == math.isqrt(2**19 // 4)
    assert nc == (4 * 2**20) // (4 * kc)
    assert c.details["a_reads"] == math.ceil(16384 / nc) > 1
    assert c.dram_bytes > op.min_bytes
    big_l3 = cost_op(op, _dev(spec_path, memory__l3__capacity="1 GiB"))
    assert big_l3.dram_bytes < c.dram_bytes


def test_latency_never_beats_the_roofline(cpu):
    for op in SWEEP:
        c = cost_op(op, cpu)
        assert c.latency_s >= op.flops().total / PEAK_FP32, op.describe()
        assert c.latency_s >= c.dram_bytes / 200e9, op.describe()


def test_more_bandwidth_never_slower(cpu, spec_path):
    fast = _dev(spec_path, memory__dram__bandwidth="400 GB/s")
    for op in SWEEP:
        assert cost_op(op, fast).latency_s <= cost_op(op, cpu).latency_s, op.describe()


def test_streaming_ops_at_dram_or_cache_bandwidth(cpu):
    big = Elementwise(fn="add", numel=1 << 28, dtype="fp32")     # 3 GiB
    c = cost_op(big, cpu)
    assert c.bound == "memory"
    # inputs read once; the 1 GiB output does not fit a cache: write-allocate reads each line
    # before writing it (2x), and a fresh 1 GiB mmap faults in at 64 GB/s
    out = big.bytes_written()
    assert c.dram_bytes == big.bytes_read() + 2 * out
    assert c.latency_s == pytest.approx((big.bytes_read() + 2 * out) / DRAM_BW + LAUNCH
                                        + out / FAULT_BW, rel=1e-9)
    small = Norm(norm="layernorm", rows=512, cols=1024, dtype="fp32")   # 4 MiB
    s = cost_op(small, cpu)
    assert s.dram_bytes == 0.0 and s.bytes_by_level["l2"] == small.min_bytes
    # 24 MiB of inputs sit in the L3 (64 MiB usable) but not the L2 (16 MiB usable); the
    # 12 MiB output goes to a recycled buffer in the L2
    mid = Elementwise(fn="add", numel=3 << 20, dtype="fp32")
    m = cost_op(mid, cpu)
    assert m.dram_bytes == 0.0 and m.bytes_by_level["l3"] == mid.bytes_read()
    assert m.bytes_by_level["l2"] == mid.bytes_written()
    assert m.memory_s == pytest.approx(mid.bytes_read() / (1.6e12 * 0.85)
                                       + mid.bytes_written() / L2_BW)
    # a copy writes into an existing buffer: no page faults, but write-allocate
    cp = Memcpy(bytes=1 << 30)
    assert cost_op(cp, cpu).latency_s == pytest.approx(3 * (1 << 30) / DRAM_BW + LAUNCH)


def test_attention_as_a_cpu_flash_kernel(cpu, spec_path):
    """PyTorch's CPU SDPA is a flash kernel: matrix FLOPs at the GEMM efficiency, softmax at
    the vector rate, the KV cache read once (decode is memory-bound), no score matrix."""
    dec = Attention(batch=8, heads=32, kv_heads=8, head_dim=128, seq=1, context=4096,
                    phase="decode", dtype="fp32")
    d = cost_op(dec, cpu)
    assert d.bound == "memory" and d.details["kernel"] == "flash-cpu"
    # the 128 MiB fp32 KV cache streams from DRAM once (Q and O are 128 KiB each, and O
    # goes to a recycled buffer in the L2)
    kv = 2 * 8 * 4097 * 8 * 128 * 4
    assert d.memory_s == pytest.approx(kv / DRAM_BW, rel=0.01)
    pre = Attention(batch=1, heads=32, head_dim=128, seq=2048, dtype="fp32")
    p = cost_op(pre, cpu)
    assert p.bound == "compute" and p.details["q_block"] == 256
    parts = p.details["parts"]
    assert parts["matrix"]["compute_s"] == pytest.approx(pre.flops().matrix / (0.7 * PEAK_FP32))
    assert parts["pack"]["compute_s"] == 0.0          # the spec sets no pack_bandwidth
    # the 32 MiB output O is a fresh mmap: its faults join the dispatch in the fixed part
    assert p.overhead_s == pytest.approx(LAUNCH + (32 << 20) / FAULT_BW)
    assert p.latency_s == pytest.approx(p.compute_s + p.overhead_s)
    # with a pack bandwidth, each 256-row query block packs the keys it sees (causal:
    # 256, 512, ..., 2048 keys) per KV head: 36 x 256 keys x 128 x 4 B x 32 heads
    packed = cost_op(pre, _dev(spec_path, params__pack_bandwidth="10 GB/s"))
    keys = sum(256 * (i + 1) for i in range(8))
    assert packed.details["pack_s"] == pytest.approx(32 * keys * 128 * 4 / 10e9)
    assert packed.latency_s == pytest.approx(p.latency_s + packed.details["pack_s"])


def test_conv2d_implicit_gemm_and_depthwise(cpu):
    conv = Conv2d(n=8, c=64, h=56, w=56, k=64, r=3, s=3, pad=1, dtype="fp32")
    c = cost_op(conv, cpu)
    assert c.details["kernel"] == "implicit-gemm" and c.bound == "compute"
    assert c.compute_s == pytest.approx(conv.flops().total / (0.7 * PEAK_FP32))
    dw = cost_op(Conv2d(n=8, c=64, h=56, w=56, k=64, r=3, s=3, pad=1, groups=64,
                        dtype="fp32"), cpu)
    assert dw.details["kernel"] == "depthwise"


def test_kind_efficiency_divides_a_streaming_kinds_busy_time_only(cpu, spec_path):
    dev = _dev(spec_path, params__kind_efficiency="{softmax: 0.25, memcpy: 2}")
    sm = Softmax(rows=4096, cols=8192, dtype="fp32")        # 256 MiB: DRAM
    base, slow = cost_op(sm, cpu), cost_op(sm, dev)
    assert slow.compute_s == pytest.approx(base.compute_s / 0.25)
    assert slow.memory_s == pytest.approx(base.memory_s / 0.25)
    # the fixed part (dispatch + page faults of the fresh 128 MiB output) is not scaled
    fixed = LAUNCH + sm.bytes_written() / FAULT_BW
    assert slow.overhead_s == base.overhead_s == pytest.approx(fixed)
    assert slow.latency_s == pytest.approx((base.latency_s - fixed) / 0.25 + fixed)
    assert any("kind_efficiency[softmax] = 0.25" in n for n in slow.notes)
    assert not any("kind_efficiency" in n for n in base.notes)
    cp = Memcpy(bytes=1 << 30)
    assert cost_op(cp, dev).memory_s == pytest.approx(cost_op(cp, cpu).memory_s / 2)
    for op in (Norm(norm="layernorm", rows=4096, cols=4096, dtype="fp32"),   # other kinds,
               MatMul(m=1024, n=1024, k=1024, dtype="fp32"),                 # GEMM-like too
               Conv2d(n=1, c=64, h=56, w=56, k=64, r=3, s=3, pad=1, dtype="fp32")):
        assert cost_op(op, dev) == cost_op(op, cpu)


def test_kind_efficiency_scales_attention(cpu, spec_path):
    dev = _dev(spec_path, params__kind_efficiency="{attention: 0.5, softmax: 0.1}")
    pre = Attention(batch=1, heads=32, head_dim=128, seq=2048, dtype="fp32")
    base, slow = cost_op(pre, cpu), cost_op(pre, dev)
    fixed = base.overhead_s                      # dispatch + page faults: not scaled
    assert slow.latency_s == pytest.approx((base.latency_s - fixed) / 0.5 + fixed)
    assert (slow.compute_s, slow.memory_s) == pytest.approx((2 * base.compute_s,
                                                             2 * base.memory_s))
    assert slow.bound == base.bound and slow.energy == base.energy
    assert slow.utilization == pytest.approx(base.utilization * base.latency_s / slow.latency_s)
    assert "kind_efficiency[attention] = 0.5" in slow.notes[-1]
    assert slow.details["parts"] == base.details["parts"]   # the estimate, before the factor


def test_rotated_input_sets_defeat_the_cache(cpu):
    """Measured over rotated input sets (the validation harness), a small op is warm only if
    all the sets together fit; in a graph (no rotation) its own working set decides."""
    add = Elementwise(fn="add", numel=1 << 18, dtype="fp32")     # 3 MiB: L2-resident
    warm = cost_op(add, cpu)
    assert warm.dram_bytes == 0.0 and warm.bytes_by_level["l2"] == add.min_bytes
    assert cost_op(add, cpu, MapOptions(rotated_sets=1)) == warm
    # inputs over 12 sets: 24 MiB, L3 only; the 1 MiB output stays in a recycled L2 buffer
    l3 = cost_op(add, cpu, MapOptions(rotated_sets=12))
    assert l3.dram_bytes == 0.0 and l3.bytes_by_level["l3"] == add.bytes_read()
    assert l3.bytes_by_level["l2"] == add.bytes_written()
    cold = cost_op(add, cpu, MapOptions(rotated_sets=64))        # 128 MiB of inputs: DRAM
    assert cold.dram_bytes == add.bytes_read()
    assert cold.latency_s == pytest.approx(add.bytes_read() / DRAM_BW
                                           + add.bytes_written() / L2_BW + LAUNCH)
    gemm = MatMul(m=64, n=512, k=512, dtype="fp32")              # 1.25 MiB
    assert cost_op(gemm, cpu).details["resident"] == "l2"
    assert cost_op(gemm, cpu, MapOptions(rotated_sets=32)).details["resident"] == "l3"
    assert cost_op(gemm, cpu, MapOptions(rotated_sets=256)).details["resident"] is None
    # an embedding gather: rows of a table in DRAM in a graph; in a measurement loop each set
    # gathers the same rows every time, so they are as resident as any op's bytes
    emb = Embedding(tokens=1024, vocab=50257, dim=768, dtype="fp32")
    assert cost_op(emb, cpu).dram_bytes == emb.bytes_read()   # the output: an L2 buffer
    assert cost_op(emb, cpu, MapOptions(rotated_sets=1)).dram_bytes == 0.0
    assert cost_op(emb, cpu, MapOptions(rotated_sets=64)).dram_bytes == emb.bytes_read()


# -- memory-system and library behaviour (params measured by experiments/validation/probe_cpu.py)
def test_fresh_outputs_above_the_mmap_threshold_pay_page_faults(cpu, spec_path):
    """glibc serves allocations above 32 MiB with a fresh mmap, faulted in on first touch:
    a step at the threshold, linear in the bytes above it, divided over the threads."""
    below = cost_op(Elementwise(fn="relu", numel=(8 << 20) - 16, dtype="fp32"), cpu)  # < 32 MiB
    at = cost_op(Elementwise(fn="relu", numel=8 << 20, dtype="fp32"), cpu)    # 32 MiB + header
    above = cost_op(Elementwise(fn="relu", numel=9 << 20, dtype="fp32"), cpu)   # 36 MiB out
    assert below.overhead_s == LAUNCH
    assert at.overhead_s == pytest.approx(LAUNCH + (32 << 20) / FAULT_BW)
    assert above.overhead_s == pytest.approx(LAUNCH + (36 << 20) / FAULT_BW)
    dev = _dev(spec_path, params__page_fault_threshold="64 MiB", params__threads=8)
    assert cost_op(Elementwise(fn="relu", numel=9 << 20, dtype="fp32"), dev).overhead_s == LAUNCH
    dev = _dev(spec_path, params__threads=8)
    big = cost_op(Elementwise(fn="relu", numel=1 << 26, dtype="fp32"), dev)      # 256 MiB
    assert big.overhead_s == pytest.approx(LAUNCH + (256 << 20) / (2e9 * 8))
    # a copy writes into an existing buffer and Adam updates in place: no fresh pages
    assert cost_op(Memcpy(bytes=1 << 30), cpu).overhead_s == LAUNCH
    assert cost_op(Elementwise(fn="adam", numel=1 << 28, dtype="fp32"), cpu).overhead_s == LAUNCH


def test_write_allocate_doubles_the_dram_bytes_of_an_uncached_output(cpu, spec_path):
    op = Elementwise(fn="relu", numel=1 << 28, dtype="fp32")                    # 1 GiB each way
    on, off = cost_op(op, cpu), cost_op(op, _dev(spec_path, params__write_allocate="false"))
    assert on.dram_bytes == op.bytes_read() + 2 * op.bytes_written()
    assert off.dram_bytes == op.min_bytes
    assert on.memory_s / off.memory_s == pytest.approx(3 / 2)


def test_single_gemv_runs_on_gemv_threads_at_core_bandwidth(spec_path):
    """MKL streams a single sgemv on one thread (16 GB/s on the development VM); a batch of
    GEMVs spreads over up to one thread each."""
    dev = _dev(spec_path, params__gemv_threads=1, params__core_bandwidth="10 GB/s")
    gemv = MatMul(m=1, n=8192, k=8192, weight=True, dtype="fp32")              # 256 MiB
    c = cost_op(gemv, dev)
    assert c.details["path"] == "gemv" and c.details["threads"] == 1
    assert c.memory_s == pytest.approx(gemv.b_bytes() / 10e9, rel=0.01)
    batched = MatMul(m=1, n=4096, k=4096, batch=8, dtype="fp32")
    b = cost_op(batched, dev)
    assert b.details["threads"] == 8
    assert b.memory_s == pytest.approx(batched.b_bytes() / 80e9, rel=0.01)
    # without the params every thread streams at the DRAM's achievable bandwidth
    free = cost_op(gemv, load_arch(spec_path).device)
    assert free.memory_s == pytest.approx(gemv.b_bytes() / DRAM_BW, rel=0.01)


def test_weight_packing_makes_skinny_gemms_slow_by_the_measured_law(spec_path):
    """Packing the transposed weight is a fixed K*N cost, so the rate over M follows
    peak_eff * M / (M + m0) with m0 = peak_eff * (bytes of B / pack_bandwidth) / (2 K N)."""
    dev = _dev(spec_path, params__pack_bandwidth="50 GB/s")
    k = n = 4096
    rate = 0.7 * PEAK_FP32
    m0 = rate * (4 / 50e9) / 2
    for m in (2, 16, 128, 1024):
        op = MatMul(m=m, n=n, k=k, weight=True, dtype="fp32")
        c = cost_op(op, dev)
        assert c.details["pack_s"] == pytest.approx(k * n * 4 / 50e9)
        achieved = 2 * m * n * k / c.compute_s
        assert achieved == pytest.approx(rate * m / (m + m0), rel=1e-6), m
    # a convolution's filter is reordered (packed) on every eager call too
    conv = Conv2d(n=1, c=256, h=14, w=14, k=512, r=3, s=3, pad=1, dtype="fp32")
    assert cost_op(conv, dev).details["pack_s"] == pytest.approx(conv.weight_bytes() / 50e9)
    # activations x activations (bmm, attention) and GEMVs pack nothing here
    assert cost_op(MatMul(m=64, n=n, k=k, dtype="fp32"), dev).details["pack_s"] == 0.0
    assert cost_op(MatMul(m=1, n=n, k=k, weight=True, dtype="fp32"), dev).details["pack_s"] == 0.0


def test_eager_epilogues_are_extra_passes_and_fused_ones_are_not(cpu, spec_path):
    conv = Conv2d(n=8, c=256, h=56, w=56, k=256, r=1, s=1, dtype="fp32",
                  epilogue=("batchnorm", "add", "relu"))
    plain = cost_op(Conv2d(n=8, c=256, h=56, w=56, k=256, r=1, s=1, dtype="fp32"), cpu)
    eager = cost_op(conv, cpu)
    fused = cost_op(conv, _dev(spec_path, params__fused_epilogue="true"))
    assert plain.latency_s < fused.latency_s < eager.latency_s
    # three in-place passes over the 25 MiB output (read + write) and one residual read, from
    # the L3 where the recycled output sits
    c_bytes = conv.bytes_written()
    assert eager.details["epilogue_s"] >= (3 * 2 + 1) * c_bytes / (1.6e12 * 0.85) * 0.99


def test_composite_rmsnorm_streams_the_tensor_several_times(cpu, spec_path):
    op = Norm(norm="rmsnorm", rows=16384, cols=4096, dtype="fp32")             # 256 MiB
    fused = cost_op(op, cpu)
    dev = _dev(spec_path, params__eager_composites="true")
    composite = cost_op(op, dev)
    # x read once from DRAM plus 4 re-reads of temporaries, 4 writes (each fresh: faults),
    # against 1 read + 1 write: well over 3x the time
    assert composite.latency_s / fused.latency_s > 3
    assert composite.overhead_s == pytest.approx(LAUNCH + 4 * op.bytes_written() / FAULT_BW)
    small = Norm(norm="layernorm", rows=16384, cols=4096, dtype="fp32")
    assert cost_op(small, dev) == cost_op(small, cpu)                          # layernorm: fused


def test_special_functions_cost_what_the_spec_says(spec_path):
    """tanh (gelu) and exp (silu) differ several-fold on SIMD lanes (probe: tanh 160, exp 56
    vector FLOPs); ops name the function they evaluate."""
    dev = _dev(spec_path, params__special_cost="{exp: 10, tanh: 100}",
               params__vector_efficiency=1.0)
    vpeak = 32 * 64 * 3.0e9
    n = 1 << 16                                             # small: compute-bound from the L2
    gelu = cost_op(Elementwise(fn="gelu", numel=n, dtype="fp32"), dev)
    silu = cost_op(Elementwise(fn="silu", numel=n, dtype="fp32"), dev)
    assert gelu.compute_s == pytest.approx(n * (8 + 100) / vpeak)
    assert silu.compute_s == pytest.approx(n * (3 + 10) / vpeak)
    sm = Softmax(rows=64, cols=1024, dtype="fp32")
    assert cost_op(sm, dev).compute_s == pytest.approx(64 * 1024 * (4 + 10) / vpeak)
    # a function the table does not list costs the spec's energy.special_multiplier (4)
    rms = Norm(norm="rmsnorm", rows=64, cols=1024, dtype="fp32")
    assert cost_op(rms, dev).compute_s == pytest.approx((4 * 64 * 1024 + 4 * 64) / vpeak)


def test_eager_swiglu_writes_and_rereads_a_temporary(cpu, spec_path):
    """silu(gate) * up in eager mode: gate and up read, a temporary written and read back,
    the output written; each fresh above the mmap threshold."""
    op = Elementwise(fn="swiglu", numel=1 << 26, dtype="fp32")                # 256 MiB each
    fused = cost_op(op, cpu)
    eager = cost_op(op, _dev(spec_path, params__eager_composites="true"))
    t = op.bytes_written()
    # DRAM bytes: 2 inputs + the temporary re-read + 2 writes with write-allocate
    assert eager.dram_bytes == op.bytes_read() + t + 2 * 2 * t
    assert eager.overhead_s == pytest.approx(LAUNCH + 2 * t / FAULT_BW)
    assert eager.latency_s > 1.5 * fused.latency_s
