"""GPU mapper: tiles and waves, split-K, L2 reuse, flash attention, streaming from L2.

The device is an H100-SXM-like part written here (not the shipped spec, which may change):
132 SMs (528 tensor cores / 4), 1024 bf16 FLOP/cycle per tensor core at 1.83 GHz
(989.5 TFLOP/s), fp32 on 132 x 256 FLOP/cycle CUDA cores (61.8 TFLOP/s), 3.35 TB/s HBM,
50 MB L2 at 12 TB/s. Mapper defaults: compute_efficiency 0.8, bandwidth_efficiency 0.85,
attention_efficiency 0.55, launch overhead 4 us, an L2 port of 64 B/clk per SM (117 GB/s),
no cluster multicast. The spec gives no memory latencies, so its pipeline fill is zero.

The tests at the end use the shipped h100-sxm and a100-sxm-80gb specs for properties the
issue asks of them (big-GEMM efficiency, tile choice, GEMV bandwidth, batch-1 fixed costs).
"""

import itertools
import math

import pytest

from simulator import predict_op
from simulator.arch.loader import load_arch
from simulator.arch.params import param
from simulator.errors import MappingError
from simulator.mapping.base import MapOptions
from simulator.mapping.registry import cost_op, registered
from workloads.ops import (
    OP_TYPES,
    Attention,
    Collective,
    Conv2d,
    Elementwise,
    Embedding,
    MatMul,
)

H100_YAML = """
name: h100-like
kind: gpu
family: gpu
process_node: 4 nm
compute:
  - {name: tensor_core, unit: matrix, count: 528, clock: 1.83 GHz,
     flops_per_cycle: {tf32: 512, bf16: 1024, fp16: 1024, fp8: 2048, int8: 2048}}
  - {name: cuda_core, unit: vector, count: 132, clock: 1.83 GHz,
     flops_per_cycle: {fp32: 256, bf16: 512, fp16: 512}}
  - {name: sfu, unit: special, count: 132, clock: 1.83 GHz, flops_per_cycle: {fp32: 16}}
memory:
  - {name: hbm, capacity: 80 GB, bandwidth: 3.35 TB/s, energy_per_byte: 31 pJ/B}
  - {name: l2, capacity: 50 MB, bandwidth: 12 TB/s, energy_per_byte: 5 pJ/B}
link: {name: nvlink, bandwidth: 450 GB/s, latency: 2 us, energy_per_byte: 10 pJ/B}
power: {tdp: 700 W, static: 100 W}
"""

PEAK_BF16 = 528 * 1024 * 1.83e9          # 989.5 TFLOP/s
PEAK_FP32 = 132 * 256 * 1.83e9           # 61.8 TFLOP/s on the CUDA cores
HBM = 3.35e12
ACHIEVABLE_BW = HBM * 0.85               # 2.85 TB/s
L2_ACHIEVABLE_BW = 12e12 * 0.85
RATE_PER_SM = PEAK_BF16 / 132 * 0.8      # 6.0 TFLOP/s
LAUNCH = 4e-6


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("gpu") / "h100-like.yaml"
    p.write_text(H100_YAML)
    return p


@pytest.fixture(scope="module")
def gpu(spec_path):
    return load_arch(spec_path).device


def _dev(spec_path, **overrides):
    return load_arch(spec_path, {k.replace("__", "."): v for k, v in overrides.items()}).device


SWEEP = [MatMul(m=m, n=n, k=k, dtype=dt)
         for m, n, k in itertools.product([1, 7, 64, 333, 1024, 4096], repeat=3)
         for dt in ("bf16", "fp32", "int8")]


def test_every_op_kind_is_registered():
    kinds = {kind for (_, kind) in registered("gpu")}
    assert kinds == set(OP_TYPES)


def test_large_bf16_gemm_reaches_compute_efficiency_times_peak(gpu):
    op = MatMul(m=8192, n=8192, k=8192)
    c = cost_op(op, gpu)
    achieved = op.flops().total / c.latency_s
    # 0.8 x peak, less the wave quantisation of the chosen 128x256 tile (2048 tiles over 132
    # SMs: 15.5 -> 16 waves, 97%), each wave's epilogue (132 output tiles of 64 KiB written
    # together at 2.85 TB/s: 3 us per 89 us wave, a non-persistent kernel) and the 4 us
    # launch on a 1.5 ms kernel: 8% below, never above.
    assert achieved == pytest.approx(0.8 * PEAK_BF16 * 0.92, rel=0.02)
    assert achieved <= 0.8 * PEAK_BF16 * 0.97
    assert c.bound == "compute"
    assert min(c.details["tile"]) >= 128  # small tiles would be starved by the L2 feed
    assert c.details["split_k"] == 1  # 2048+ tiles already fill the SMs
    assert c.details["sms"] == 132
    assert c.details["waves"] == math.ceil(c.details["tiles"] / 132)
    assert c.details["wave_efficiency"] == pytest.approx(
        c.details["tiles"] / (c.details["waves"] * 132))
    assert any("waves" in n for n in c.notes)


def test_gemv_is_memory_bound_at_achievable_hbm_bandwidth(gpu):
    op = MatMul(m=1, n=8192, k=8192, weight=True)
    c = cost_op(op, gpu)
    weights = 8192 * 8192 * 2  # 128 MiB of bf16
    assert c.bound == "memory"
    # activations and output add 32 KiB to 128 MiB: well inside 5%
    assert c.latency_s - c.overhead_s == pytest.approx(weights / ACHIEVABLE_BW, rel=0.05)
    assert c.overhead_s == pytest.approx(LAUNCH)
    assert c.dram_bytes == pytest.approx(op.min_bytes)
    assert c.details["tile"][0] == 16  # M=1 padded to one MMA, not to a 128-row tile
    assert "GEMV" in c.notes[0] and "memory-bound" in c.notes[0]


def test_one_extra_tile_costs_a_second_wave(spec_path):
    # A single 128x128 tile shape so the mapper cannot dodge the extra wave with another tile,
    # and an L2 fast enough that the operand feed (51 B/clk per SM for a 128x128 tile at
    # this spec's rate, vs 42 from a 12 TB/s L2) does not hide the compute time being tested.
    dev = _dev(spec_path, params__tile_shapes="[[128, 128]]",
               memory__l2__bandwidth="24 TB/s")
    full = cost_op(MatMul(m=128 * 12, n=128 * 11, k=8192), dev)     # 132 tiles = SMs
    extra = cost_op(MatMul(m=128 * 7, n=128 * 19, k=8192), dev)     # 133 tiles
    assert (full.details["tiles"], full.details["waves"]) == (132, 1)
    assert (extra.details["tiles"], extra.details["waves"]) == (133, 2)
    assert full.bound == extra.bound == "compute"
    # 2 waves of identical 128x128x8192 tiles: exactly twice the compute time
    assert extra.compute_s == pytest.approx(2 * full.compute_s, rel=1e-12)
    assert full.compute_s == pytest.approx(2 * 128 * 128 * 8192 / RATE_PER_SM, rel=1e-12)
    # the fixed time (4 us launch, 1.2 us startup, 0.8 us first fill) on ~45 us keeps the
    # latency ratio below 2; the two-wave GEMM also re-reads less per tile (an L2-resident
    # operand block), so its data hides a little better: 1.84 on this spec
    assert 1.8 < extra.latency_s / full.latency_s < 2.0


def test_latency_never_beats_the_roofline(gpu):
    for op in SWEEP:
        c = cost_op(op, gpu)
        peak, _ = gpu.peak(op.dtype, "matrix")
        assert c.latency_s >= op.flops().total / peak, op.describe()
        assert c.latency_s >= op.min_bytes / HBM, op.describe()
        assert c.dram_bytes >= op.min_bytes * (1 - 1e-12), op.describe()


def test_more_bandwidth_never_slower(gpu, spec_path):
    fast = _dev(spec_path, memory__hbm__bandwidth="6.7 TB/s")
    for op in SWEEP:
        assert cost_op(op, fast).latency_s <= cost_op(op, gpu).latency_s, op.describe()
    gemv = MatMul(m=1, n=8192, k=8192)
    assert cost_op(gemv, fast).latency_s < 0.6 * cost_op(gemv, gpu).latency_s


def test_more_sms_never_slower(gpu, spec_path):
    # twice the SMs (sm_count follows the tensor-core count) and twice the CUDA cores
    big = _dev(spec_path, compute__tensor_core__count=1056, compute__cuda_core__count=264)
    assert cost_op(MatMul(m=64, n=64, k=64), big).details["sms"] == 264
    for op in SWEEP:
        assert cost_op(op, big).latency_s <= cost_op(op, gpu).latency_s, op.describe()


def test_sm_count_and_launch_overhead_params(spec_path):
    dev = _dev(spec_path, params__sm_count=66, params__launch_overhead="10 us")
    c = cost_op(MatMul(m=4096, n=4096, k=4096), dev)
    assert c.details["sms"] == 66
    assert c.overhead_s == pytest.approx(10e-6)


def test_narrow_dtypes_are_faster_and_fp32_runs_on_cuda_cores(gpu):
    shape = {"m": 8192, "n": 8192, "k": 8192}
    bf16 = cost_op(MatMul(**shape, dtype="bf16"), gpu)
    for dt in ("int8", "fp8"):
        c = cost_op(MatMul(**shape, dtype=dt), gpu)
        assert c.compute_class == ("int8" if dt == "int8" else "fp8")
        # twice the tensor-core rate, same tiling: half the math, the same bf16 output tiles
        # to write at the end of each wave (3 us of 89 us at bf16), and half-size operand
        # panels, of which twice as many stay in the L2 (fewer re-reads): about half
        assert 0.48 < c.latency_s / bf16.latency_s < 0.54
    fp32 = cost_op(MatMul(**shape, dtype="fp32"), gpu)
    tf32 = cost_op(MatMul(**shape, dtype="tf32"), gpu)
    assert fp32.compute_class == "fp32" and tf32.compute_class == "tf32"
    # 989.5 / 61.8 = 16x fewer FLOP/s on the CUDA cores; the bf16 GEMM loses 3% to the wave
    # quantisation of its 128x256 tiles, which the slow fp32 one avoids with small tiles
    # (the L2 feed never binds at the CUDA cores' rate), and 3% to its wave epilogues, which
    # are 16x smaller a share of the fp32 one's waves
    assert fp32.latency_s / bf16.latency_s == pytest.approx(PEAK_BF16 / PEAK_FP32 * 0.94,
                                                            rel=0.03)
    assert tf32.latency_s < fp32.latency_s / 7  # tf32 tensor cores: 8x the CUDA-core rate


def test_no_unit_for_the_dtype_is_an_error(tmp_path):
    p = tmp_path / "bf16-only.yaml"
    p.write_text(H100_YAML.replace("{fp32: 256, bf16: 512, fp16: 512}", "{bf16: 512}")
                 .replace("tf32: 512, ", ""))
    with pytest.raises(MappingError, match="fp32"):
        cost_op(MatMul(m=64, n=64, k=64, dtype="fp32"), load_arch(p).device)


def test_l2_resident_gemm_reads_dram_once_and_large_one_rereads(gpu):
    small = MatMul(m=1024, n=1024, k=1024)     # 6 MiB of operands << 50 MB L2
    c = cost_op(small, gpu)
    assert c.details["l2_hit"] is True
    assert c.dram_bytes == small.min_bytes
    assert c.bytes_by_level["l2"] >= c.bytes_by_level["hbm"]
    big = MatMul(m=8192, n=8192, k=8192)       # 384 MiB
    b = cost_op(big, gpu)
    assert b.details["l2_hit"] is False
    a_r, b_r = b.details["a_reads"], b.details["b_reads"]
    # GEBP (Goto and van de Geijn): one operand's block stays in the L2 while the other
    # streams past it, so one operand is read once and the other re-read per block
    assert min(a_r, b_r) == 1 and max(a_r, b_r) > 1
    assert b.dram_bytes == pytest.approx(big.a_bytes() * a_r + big.b_bytes() * b_r
                                         + big.c_bytes())
    # energy counts both levels: 31 pJ/B of HBM and 5 pJ/B of L2
    assert b.energy.memory_j["hbm"] == pytest.approx(b.dram_bytes * 31e-12)
    assert b.energy.memory_j["l2"] == pytest.approx(b.bytes_by_level["l2"] * 5e-12)


def test_split_k_fills_idle_sms_on_a_skinny_gemm(gpu):
    op = MatMul(m=128, n=128, k=65536)
    c = cost_op(op, gpu)
    assert c.details["split_k"] > 1
    # without split-K the best tile (64x64, 4 tiles) would take one 64x64x65536 tile time
    unsplit = 2 * 64 * 64 * 65536 / RATE_PER_SM          # 89.5 us
    assert c.latency_s < 0.25 * unsplit
    # with the SMs filled it is bound by reading A and B (32 MiB) from HBM, plus the serial
    # sum of the partial tiles (the split stops where another split costs more than it saves)
    assert c.bound == "memory"
    hbm_s = op.min_bytes / ACHIEVABLE_BW
    assert hbm_s <= c.memory_s <= 1.4 * hbm_s
    assert any("split-K" in n for n in c.notes)


def test_attention_decode_is_memory_bound(gpu):
    op = Attention(batch=8, heads=32, kv_heads=8, head_dim=128, seq=1, context=4096,
                   phase="decode")
    c = cost_op(op, gpu)
    assert c.bound == "memory"
    assert c.memory_s == pytest.approx(op.min_bytes / ACHIEVABLE_BW, rel=1e-9)
    # the cache split 3 ways over the SMs: a second kernel combines the partial outputs
    assert c.details["split_kv"] == 3 and c.details["combine_s"] > LAUNCH
    assert c.latency_s == pytest.approx(op.min_bytes / ACHIEVABLE_BW + LAUNCH
                                        + c.details["combine_s"], rel=1e-9)


def test_attention_prefill_is_compute_bound_with_waves(gpu, spec_path):
    op = Attention(batch=1, heads=32, head_dim=128, seq=8192)
    c = cost_op(op, gpu)
    assert c.bound == "compute"
    # 32 heads x 64 query blocks = 2048 tiles -> 16 waves over 132 SMs (97%)
    assert (c.details["tiles"], c.details["waves"]) == (2048, 16)
    # causal: query block i steps over i + 1 key blocks, longest first in waves
    from simulator.mapping.gpu_kernels import prefill_plan
    plan = prefill_plan(op, gpu)
    assert c.compute_s == pytest.approx(plan.makespan_s, rel=1e-9)
    assert plan.kv_blocks == 32 * 64 * 65 // 2
    assert 0.4 < op.flops().matrix / c.compute_s / PEAK_BF16 < 0.55
    assert c.dram_bytes == op.min_bytes
    faster = cost_op(op, _dev(spec_path, params__attention_efficiency=0.7))
    assert faster.latency_s < c.latency_s


def test_streaming_op_uses_l2_when_resident_else_hbm(gpu):
    small = Elementwise(fn="add", numel=1 << 20)        # 6 MiB: resident in the L2
    c = cost_op(small, gpu)
    # the 2 MiB input its producer just wrote streams from the L2; the 2 MiB skip input and
    # the write-back of the 2 MiB output go to DRAM, overlapped with the L2 reads
    mib2 = 2 * 2**20
    assert c.bytes_by_level["l2"] == small.min_bytes and c.dram_bytes == 2 * mib2
    assert c.details["l2_hit"] is True
    assert c.memory_s == pytest.approx(max(2 * mib2 / ACHIEVABLE_BW, mib2 / L2_ACHIEVABLE_BW))
    big = Elementwise(fn="add", numel=1 << 28)          # 1.5 GiB
    b = cost_op(big, gpu)
    assert b.bound == "memory"
    # the LRU L2 still holds the last 25 MB (half of it) of the 512 MiB its producer wrote
    hit = (1 << 28) * 2 * 25e6 / big.min_bytes
    assert b.latency_s == pytest.approx((big.min_bytes - hit) / ACHIEVABLE_BW + LAUNCH,
                                        rel=1e-9)
    emb = Embedding(tokens=16, vocab=32000, dim=4096)   # gathers rows of a table in HBM
    assert cost_op(emb, gpu).dram_bytes == emb.min_bytes


def test_conv2d_as_implicit_gemm_and_depthwise_on_vector_units(gpu):
    conv = Conv2d(n=32, c=256, h=56, w=56, k=256, r=3, s=3, pad=1)
    c = cost_op(conv, gpu)
    assert c.details["kernel"] == "implicit-gemm" and c.bound == "compute"
    assert c.latency_s >= conv.flops().total / (0.8 * PEAK_BF16)
    # 784 tiles in 6 waves (99%); K = 2304 is short, so each wave's 25 us of math ends with
    # 3 us writing its 132 output tiles (a non-persistent kernel): ~86% of 0.8 x peak
    assert conv.flops().total / c.latency_s == pytest.approx(0.8 * PEAK_BF16 * 0.86,
                                                             rel=0.03)
    grouped = cost_op(Conv2d(n=8, c=256, h=28, w=28, k=256, r=3, s=3, pad=1, groups=8), gpu)
    assert grouped.details["tiles"] % 8 == 0             # each group is a batch of tiles
    dw = Conv2d(n=32, c=256, h=56, w=56, k=256, r=3, s=3, pad=1, groups=256)
    d = cost_op(dw, gpu)
    assert d.details["kernel"] == "depthwise" and d.bound == "memory"
    assert d.memory_s == pytest.approx(dw.min_bytes / ACHIEVABLE_BW)


def test_collective_uses_the_link(gpu):
    c = cost_op(Collective(collective="allreduce", bytes=1e8, devices=8), gpu)
    assert c.bound == "communication"
    # ring: 2 * 7/8 * 100 MB over 450 GB/s plus 14 link latencies
    assert c.latency_s == pytest.approx(2 * 7 / 8 * 1e8 / 450e9 + 14 * 2e-6, rel=1e-9)


def test_without_an_l2_every_tile_reads_its_own_panels(tmp_path):
    p = tmp_path / "no-l2.yaml"
    p.write_text(H100_YAML.replace(
        "  - {name: l2, capacity: 50 MB, bandwidth: 12 TB/s, energy_per_byte: 5 pJ/B}\n", ""))
    op = MatMul(m=2048, n=2048, k=2048)
    c = cost_op(op, load_arch(p).device)
    m_t = 2048 // c.details["tile"][0]
    n_t = 2048 // c.details["tile"][1]
    assert (c.details["a_reads"], c.details["b_reads"]) == (n_t, m_t)
    assert c.dram_bytes == pytest.approx(op.a_bytes() * n_t + op.b_bytes() * m_t + op.c_bytes())
    assert list(c.bytes_by_level) == ["hbm"]


def test_kind_efficiency_scales_streaming_ops_and_fused_attention(gpu, spec_path):
    dev = _dev(spec_path, params__kind_efficiency="{elementwise: 0.5, attention: 0.25}")
    big = Elementwise(fn="gelu", numel=1 << 28)
    b = cost_op(big, dev)
    hit = (1 << 28) * 2 * 25e6 / big.min_bytes  # the last half-L2 of its input, still there
    assert b.latency_s == pytest.approx(2 * (big.min_bytes - hit) / ACHIEVABLE_BW + LAUNCH,
                                        rel=1e-9)
    for att in (Attention(batch=8, heads=32, head_dim=128, seq=4096),      # compute-bound
                Attention(batch=8, heads=32, kv_heads=8, head_dim=128, seq=1, context=8192,
                          phase="decode")):                              # memory-bound
        base, slow = cost_op(att, gpu), cost_op(att, dev)
        assert slow.latency_s == pytest.approx((base.latency_s - base.overhead_s) / 0.25
                                               + base.overhead_s)
        assert slow.bound == base.bound and slow.details == base.details
    mm = MatMul(m=4096, n=4096, k=4096)
    assert cost_op(mm, dev) == cost_op(mm, gpu)


def test_rotated_input_sets_keep_a_streaming_op_out_of_the_l2(gpu):
    small = Elementwise(fn="add", numel=1 << 20)        # 6 MiB: resident in the L2 ...
    assert cost_op(small, gpu).details["l2_hit"] is True
    cold = cost_op(small, gpu, MapOptions(rotated_sets=8))   # ... not 8 sets of it
    assert cold.dram_bytes == small.min_bytes
    emb = Embedding(tokens=16, vocab=32000, dim=4096)   # the same rows on every call
    assert cost_op(emb, gpu, MapOptions(rotated_sets=1)).dram_bytes == 0.0


def test_small_tiles_cost_more_per_flop_than_big_ones(spec_path):
    """The same GEMM tiled two ways that both fill every SM in whole waves (132 tiles of
    128x128 = 1 wave, 528 of 64x64 = 4 waves): identical tensor work, but a 64x64 tile
    streams twice the operand bytes per FLOP from the L2 ((2/64 + 2/64) / 2 = 0.031 B/FLOP
    against 0.016), i.e. 187 GB/s per SM at this spec's 6 TFLOP/s per SM where the L2's
    share is 77 GB/s. So the small tiling is slower per FLOP, by about the ratio of the
    two feed times (the 128x128 one is itself 1.2x feed-bound on this 12 TB/s L2)."""
    op = MatMul(m=128 * 12, n=128 * 11, k=8192)
    big = cost_op(op, _dev(spec_path, params__tile_shapes="[[128, 128]]"))
    small = cost_op(op, _dev(spec_path, params__tile_shapes="[[64, 64]]"))
    assert big.details["wave_efficiency"] == small.details["wave_efficiency"] == 1.0
    assert small.compute_s == pytest.approx(big.compute_s, rel=1e-12)
    assert small.details["feed_s"] == pytest.approx(2 * big.details["feed_s"], rel=0.05)
    assert small.latency_s > 1.5 * big.latency_s


def test_one_sm_draws_at_most_its_l2_port(gpu, spec_path):
    """A GEMV pulls its weights through the SMs' L2 ports: at 20 GB/s per SM even all 132
    SMs take only 2.64 TB/s, below the 2.85 TB/s the HBM delivers, so the kernel is bound by
    the ports however the mapper splits it."""
    op = MatMul(m=1, n=4096, k=8192, weight=True)
    slow = cost_op(op, _dev(spec_path, params__sm_l2_bandwidth="20 GB/s"))
    assert slow.latency_s - slow.overhead_s >= op.b_bytes() / (132 * 20e9)
    assert slow.latency_s > cost_op(op, gpu).latency_s


def test_cluster_multicast_halves_the_shared_operand_feed(gpu, spec_path):
    """Hopper TMA multicast: the two CTAs of a 2x1 cluster read their shared tile from the L2
    once, so a 128x128 tiling streams 384 instead of 512 B per K element per tile; DRAM
    traffic is unchanged (those reads hit in the L2 anyway)."""
    op = MatMul(m=4096, n=4096, k=4096)
    plain = cost_op(op, _dev(spec_path, params__tile_shapes="[[128, 128]]"))
    shared = cost_op(op, _dev(spec_path, params__tile_shapes="[[128, 128]]",
                              params__cluster_multicast=2))
    assert shared.details["feed_s"] == pytest.approx(0.75 * plain.details["feed_s"], rel=1e-9)
    assert shared.dram_bytes == plain.dram_bytes


def test_split_k_reduction_is_not_free(gpu):
    """Split-K partials are summed out of place by a second kernel, as cuBLAS does
    (``cublasLt::splitKreduce_kernel``): it reads the s fp32 partial tiles and writes C, so
    a short-K GEMM on few tiles is not split as far as it could be, and the reduction and
    its launch show in the latency."""
    c = cost_op(MatMul(m=64, n=64, k=8192), gpu)   # one 64x64 tile for 132 SMs
    d = c.details
    s = d["split_k"]
    assert 1 < s < 128                              # 128 = K / 64, the most it could split
    assert d["kernels"] == 2
    # this spec gives no latencies (no startup, no fill): the partials and C through the
    # 12 TB/s L2 at 85%
    nbytes = s * 64 * 64 * 4 + 64 * 64 * 2
    assert d["reduce_s"] == pytest.approx(nbytes / L2_ACHIEVABLE_BW, rel=1e-9)
    # the reduction kernel is queued right behind the GEMM: a back-to-back gap, not a
    # second full launch
    gap = min(float(param(gpu, "graph_launch_gap", LAUNCH)), LAUNCH)
    assert d["launch_s"] == pytest.approx(LAUNCH + gap)
    assert c.overhead_s == pytest.approx(LAUNCH + gap)


# -- the shipped H100 / A100 specs: what issue 3 part 5 asks of them -------------------------
SHIPPED = ("h100-sxm", "a100-sxm-80gb")


@pytest.mark.parametrize("arch", SHIPPED)
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("size", [4096, 8192, 16384])
def test_big_gemms_land_at_75_to_85_percent_of_dense_peak(arch, dtype, size):
    """The issue's hard target, uncalibrated: compute-bound bf16/fp16 GEMMs at 75-85% of the
    datasheet dense peak (cuBLAS measures 74-81% on an H100 SXM at 4096^3-8192^3 bf16/fp16,
    torch-performance-test-data issue #79); from 70% at 4096^3, where a wave's epilogue is a
    larger share (the A100 Kineto profile in experiments/data/vidur-a100 measures 4096^3
    fp16 at 607 us: 72.5% of peak)."""
    c = predict_op(MatMul(m=size, n=size, k=size, dtype=dtype), arch)
    peak, _ = load_arch(arch).device.peak(dtype, "matrix")
    assert (0.70 if size == 4096 else 0.75) <= c.flops.total / c.latency_s / peak <= 0.85
    assert c.bound == "compute"


@pytest.mark.parametrize("arch", SHIPPED)
def test_huge_gemm_picks_a_big_tile(arch):
    """8192^3 bf16: a 64x64 tile would need 1.23x (A100) to 1.6x (H100) the bytes per FLOP
    the L2 can feed an SM, so the mapper picks a tile with both sides >= 128. (Without the
    feed limit it used to pick 64x64 for its perfect wave quantisation.)"""
    c = predict_op(MatMul(m=8192, n=8192, k=8192, dtype="bf16"), arch)
    assert min(c.details["tile"]) >= 128
    assert c.details["feed_s"] < c.compute_s


def test_batch1_conv_pays_pipeline_fill_and_split_k_reduction():
    """ResNet-50's layer-3 3x3 conv at batch 1, int8 on the A100: 196 x 256 x 2304 as an
    implicit GEMM, 16 tiles of 64x64 for 108 SMs. The zero-gap estimate (busy time at the
    int8 rate on all SMs, plus the launch) is 4.5 us; the kernel also pays (a) its startup
    (1.2 us) and its wave's pipeline fill, one DRAM plus one L2 latency of the spec
    (0.6 + 0.2 us), and (b) with split-K, a reduction kernel with its own startup and fill:
    so it runs well above that estimate, and with the fill the reduction kernel costs more
    than the split saves (16 CTAs, unsplit), while without it K is split 4 ways."""
    conv = Conv2d(n=1, c=256, h=14, w=14, k=256, r=3, s=3, pad=1, dtype="int8")
    c = predict_op(conv, "a100-sxm-80gb")
    nofill = predict_op(conv, "a100-sxm-80gb", ["params.pipeline_latency=0 s"])
    assert c.details["fill_s"] == pytest.approx(0.8e-6)
    # the fill is on the critical path (less what the overlap with the weight stream
    # hides), at most twice (the GEMM's wave and a reduction kernel)
    assert 0.7e-6 <= c.latency_s - nofill.latency_s <= 2 * 0.8e-6 * (1 + 1e-6)
    assert (c.details["split_k"], c.details["kernels"]) == (1, 1)
    assert c.overhead_s == pytest.approx(4e-6 + 1.2e-6 + 0.8e-6)  # launch, startup, fill
    assert nofill.details["split_k"] > 1 and nofill.details["reduce_s"] > 0
    zero_gap = conv.flops().total / (0.75 * 624e12) + 4e-6
    assert c.latency_s > 1.5 * zero_gap


def test_every_kernel_pays_the_fill_of_where_its_inputs_live():
    """Streaming kernels pay their first load at the DRAM latency, L2-resident working set or
    not (a kernel's first touch of what another kernel wrote: see simulator.mapping.gpu),
    plus the L2 latency of their last store, 0.6 + 0.2 us on the A100 (the spec's
    latencies); the kernel startup (two DRAM latencies) is device time on top."""
    small = predict_op(Elementwise(fn="add", numel=1 << 20), "a100-sxm-80gb")
    big = predict_op(Elementwise(fn="add", numel=1 << 28), "a100-sxm-80gb")
    assert small.overhead_s == pytest.approx(4e-6 + 0.8e-6)
    assert big.overhead_s == pytest.approx(4e-6 + 0.8e-6)
    assert small.details["startup_s"] == pytest.approx(1.2e-6)
    assert small.latency_s == pytest.approx(4e-6 + 0.8e-6 + 1.2e-6 + small.memory_s)


GEMV_MS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 288, 384, 512, 768, 1024, 2048)


def test_large_gemv_streams_at_published_achievable_hbm_bandwidth():
    """Decode GEMV, 8192 x 8192 bf16 weights (128 MiB) on the H100 SXM: large GEMVs and
    copies measure 2.6-3.0 TB/s of the 3.35 TB/s datasheet figure; the kernel (less its
    fixed launch and fill) lands inside that range."""
    op = MatMul(m=1, n=8192, k=8192, dtype="bf16", weight=True)
    c = predict_op(op, "h100-sxm")
    assert 2.6e12 <= c.dram_bytes / (c.latency_s - c.overhead_s) <= 3.0e12


def test_skinny_gemms_stay_weight_bound_then_rise_without_steps_back():
    """M = 1..64, N = K = 8192 bf16 on the H100: the 128 MiB weight read dominates (the
    activations add at most 2 MiB), so the time stays within 8% of M=1 (the Vidur A100
    Kineto profiles rise 4-8% from M = 1 to 64 at N, K = 4096-8192: taller A tiles leave
    fewer pipeline stages of the weight in flight). Past the ridge
    (M ~ 256) it rises: never falling with M, and never more than 1.8x the roofline at
    compute_efficiency and achievable bandwidth. The worst step is M=288: the library's
    power-of-two tiles pad it to 320 rows (320 tiles of 64x128) in three waves of 132 SMs
    (81% of the slots), 1.78x; every other M stays within 1.45x."""
    t = {}
    for m in GEMV_MS:
        op = MatMul(m=m, n=8192, k=8192, dtype="bf16", weight=True)
        c = predict_op(op, "h100-sxm")
        t[m] = c.latency_s
        roof = max(op.flops().total / (0.8 * 989.4e12), op.min_bytes / (3.35e12 * 0.87))
        assert c.latency_s <= (1.8 if m == 288 else 1.45) * roof + c.overhead_s, m
    for m in GEMV_MS:
        if m <= 64:
            assert t[m] == pytest.approx(t[1], rel=0.08), m
    assert all(t[a] <= t[b] for a, b in itertools.pairwise(GEMV_MS))
