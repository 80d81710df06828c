"""Non-GEMM GPU kernels by shape, and NCCL's collective model (simulator.mapping.gpu,
simulator.network.collectives): hand-computed numbers on the shipped A100 spec (HBM 600 ns,
L2 200 ns, L1/shared memory 25 ns, 1.41 GHz, 2.039 TB/s x 0.88, L2 7.2 TB/s x 0.88, 108 SMs, 2048 threads and 32 blocks per
SM, launch 4 us) and laws (more rows never faster, a longer row never faster, kernel time
never includes the launch).
"""

from __future__ import annotations

import itertools
import math

import pytest

from simulator import predict_op
from simulator.arch.loader import load_arch
from simulator.arch.spec import Link
from simulator.mapping.gpu import kernel_time
from simulator.network import NcclModel, Route, candidates, collective
from simulator.predict import Predictor
from workloads.ops import Collective, Elementwise, Embedding, Norm, Softmax

A100 = "a100-sxm-80gb"
US = 1e-6
DRAM_LAT, L2_LAT, L1_LAT = 0.6 * US, 0.2 * US, 0.025 * US
# a block reduction (sarathi-serve blockReduceSum, then the broadcast of its result): 5 + 5
# shuffles, 3 + 3 shared-memory stores, barriers and loads, each one L1/shared latency
REDUCE = 16 * L1_LAT
DRAM_BW = 2.039e12 * 0.88
L2_BW = 7.2e12 * 0.88
STARTUP = 2 * DRAM_LAT
FILL = DRAM_LAT + L2_LAT
NV = Link("nvlink3-nvswitch", 300e9, 2e-6)


def _k(op, arch=A100, *sets):
    return predict_op(op, arch, list(sets)) if sets else predict_op(op, arch)


# -- which time ------------------------------------------------------------------------------
def test_kernel_time_is_latency_less_the_launch():
    c = _k(Elementwise(fn="add", numel=4096, dtype="fp16"))
    assert c.details["launch_s"] == pytest.approx(4 * US)
    assert kernel_time(c) == pytest.approx(c.latency_s - 4 * US)
    slow = _k(Elementwise(fn="add", numel=4096, dtype="fp16"), A100,
              "params.launch_overhead=10 us")
    assert kernel_time(slow) == pytest.approx(kernel_time(c))  # launch is a separate term


# -- row kernels ------------------------------------------------------------------------------
def test_one_token_rmsnorm_is_a_chain_of_dependent_loads():
    """1 x 4096 fp16: one block of 1024 threads, 4 loads per thread per pass; the first pass
    at the DRAM latency, then the block reduction (0.4 us), then the second pass re-reads
    what each thread loaded (its L1: 25 ns). Kernel time = startup 1.2 + first load 0.6 +
    3 x 0.6 + 0.4 + 4 x 0.025 + last store 0.2 = 4.3 us (plus negligible transfer)."""
    c = _k(Norm(norm="rmsnorm", rows=1, cols=4096, dtype="fp16"))
    d = c.details
    assert (d["kernel"], d["threads"], d["iterations"], d["passes"]) == ("row", 1024, 4, 2)
    assert d["chain_s"] == pytest.approx(3 * DRAM_LAT + REDUCE + 4 * L1_LAT)
    assert kernel_time(c) == pytest.approx(STARTUP + FILL + 3 * DRAM_LAT + REDUCE
                                           + 4 * L1_LAT, abs=0.02 * US)
    assert c.bound == "latency"  # launch, startup and fill exceed the chain
    wide = _k(Norm(norm="rmsnorm", rows=1, cols=8192, dtype="fp16"))  # 8 loads per pass
    assert kernel_time(wide) - kernel_time(c) == pytest.approx(4 * (DRAM_LAT + L1_LAT),
                                                               rel=0.02)
    # rows that no longer fit the L1 (2 x 128 KiB per SM) re-read from the L2
    huge = _k(Norm(norm="rmsnorm", rows=1, cols=65536, dtype="fp16"))
    assert huge.details["chain_s"] == pytest.approx(63 * DRAM_LAT + REDUCE + 64 * L2_LAT)


def test_rows_beyond_one_wave_repeat_the_chain():
    """Two 1024-thread blocks per SM: 216 rows run at once on 108 SMs; row 217 starts a
    second wave with its own chain of dependent loads."""
    one = _k(Norm(norm="rmsnorm", rows=216, cols=4096, dtype="fp16"))
    two = _k(Norm(norm="rmsnorm", rows=217, cols=4096, dtype="fp16"))
    assert (one.details["waves"], two.details["waves"]) == (1, 2)
    assert two.details["chain_s"] - one.details["chain_s"] == pytest.approx(
        4 * (DRAM_LAT + L1_LAT) + REDUCE)
    fewer = _k(Norm(norm="rmsnorm", rows=217, cols=4096, dtype="fp16"), A100,
               "params.max_threads_per_sm=1024")  # one block per SM: 108 rows a wave
    assert fewer.details["waves"] == 3


def _loaded(dram_chain: float, l2_chain: float, dram_s: float) -> float:
    """The larger root of (T - l2_chain)(T - dram_s) = dram_chain T: DRAM round trips
    inflated by 1 / (1 - utilisation), an M/M/1 queue."""
    tot = dram_chain + l2_chain + dram_s
    return 0.5 * (tot + math.sqrt(tot * tot - 4 * l2_chain * dram_s))


def test_large_rmsnorm_queues_its_chain_behind_its_traffic():
    """4096 x 4096 fp16, 67 MB (not resident): 19 waves x (4 x 0.6 us of DRAM round trips,
    the block reduction and 4 L1 re-reads) of chain while
    the bytes stream at the achievable DRAM bandwidth, less the last 20 MiB (half the L2) of
    its input, which the LRU L2 still holds from the producer. Its DRAM round trips queue
    behind that traffic (M/M/1: 1 / (1 - utilisation) their latency), its L2 round trips do
    not; far slower than the roofline, a little faster than chain plus traffic."""
    op = Norm(norm="rmsnorm", rows=4096, cols=4096, dtype="fp16")
    c = _k(op)
    dram_chain, l2_chain = 19 * 4 * DRAM_LAT - DRAM_LAT, 19 * (REDUCE + 4 * L1_LAT)
    assert c.details["waves"] == 19 and c.details["l2_hit"] is False
    hit = op.bytes_read() * 20 * 2**20 / op.min_bytes
    dram_s = (op.min_bytes - hit) / DRAM_BW
    assert kernel_time(c) == pytest.approx(STARTUP + FILL + _loaded(dram_chain, l2_chain,
                                                                     dram_s), rel=1e-3)
    assert 2 * op.min_bytes / DRAM_BW < kernel_time(c) < STARTUP + FILL + dram_chain \
        + l2_chain + dram_s
    vec = _k(op, A100, "params.norm_vector=8")  # a 128-bit vectorised kernel
    assert vec.details["threads"] == 512 and vec.details["iterations"] == 1
    assert kernel_time(vec) < 0.5 * kernel_time(c)


def test_loaded_chain_is_the_chain_plus_traffic_without_l2_round_trips():
    """With no L2 round trips the M/M/1 loaded chain is exactly chain + traffic (the DRAM
    latency at utilisation rho is 1 / (1 - rho) of itself); with no traffic the chain; one
    more second of traffic never costs more than one more second."""
    from simulator.mapping.gpu_kernels import _loaded_chain_s
    assert _loaded_chain_s(3.0, 0.0, 2.0) == pytest.approx(5.0)
    assert _loaded_chain_s(3.0, 1.0, 0.0) == pytest.approx(4.0)
    assert _loaded_chain_s(0.0, 1.0, 2.0) == pytest.approx(2.0)
    for c, c2, d in itertools.product((0.0, 0.5, 3.0), (0.0, 0.7, 2.0), (0.0, 1.0, 4.0)):
        t = _loaded_chain_s(c, c2, d)
        assert max(c + c2, d) - 1e-12 <= t <= c + c2 + d + 1e-12
        assert _loaded_chain_s(c, c2, d + 0.1) - t <= 0.1 + 1e-12


def test_softmax_is_a_three_pass_row_kernel_with_16_byte_loads():
    c = _k(Softmax(rows=4, cols=4096, dtype="fp16"))
    d = c.details
    assert (d["kernel"], d["vector"], d["threads"], d["passes"]) == ("row", 8, 512, 3)
    # 1 load per pass, the first in the fill; two block reductions (max, sum); L1 re-reads
    assert d["chain_s"] == pytest.approx(2 * (REDUCE + L1_LAT))


# -- elementwise and gathers ----------------------------------------------------------------
def test_tiny_elementwise_is_latency_bound_not_launch_bound():
    c = _k(Elementwise(fn="add", numel=4096, dtype="fp16"))
    assert c.details["kernel"] == "grid" and c.details["chain_s"] == 0.0
    assert kernel_time(c) == pytest.approx(STARTUP + FILL, rel=0.01)  # 2.0 us
    assert c.bound == "latency"


def test_resident_residual_add_reads_its_skip_input_and_writes_back_through_dram():
    """A 4096 x 1024 fp16 add (24 MiB: 8 MiB per tensor) is not resident (> 20 MiB, half the
    L2): of its fresh input, the 20/24 the LRU L2 still holds streams from it; 2048 x 1024
    (12 MiB) is resident: the fresh input from the L2 (4 MiB), the skip input and the
    output's write-back from DRAM (8 MiB), overlapped."""
    mib = 2**20
    res = _k(Elementwise(fn="add", numel=2048 * 1024, dtype="fp16"))
    assert res.details["l2_hit"] is True and res.dram_bytes == 8 * mib
    t_res = max(8 * mib / DRAM_BW, 4 * mib / L2_BW)
    assert kernel_time(res) == pytest.approx(STARTUP + FILL + t_res, rel=1e-6)
    big = _k(Elementwise(fn="add", numel=4096 * 1024, dtype="fp16"))
    hit = 8 * mib * 20 / 24
    assert big.details["l2_hit"] is False and big.dram_bytes == pytest.approx(24 * mib - hit)
    assert kernel_time(big) == pytest.approx(STARTUP + FILL + (24 * mib - hit) / DRAM_BW,
                                             rel=1e-6)
    # a gated activation reads the two halves its projection just wrote: only its writes
    act = _k(Elementwise(fn="swiglu", numel=2048 * 1024, dtype="fp16"))
    assert act.dram_bytes == 4 * mib


def test_embedding_gather_chains_two_dependent_loads_per_element():
    """index_select's large-index kernel: 4096 tokens x 4096 fp16 from a 32k-row table: 864
    blocks of 128 threads (8 per SM, 32 warps, 8 per scheduler) stride over 16.8 M
    elements, 152 iterations of (L2 + DRAM latency) each, plus the issue of 3 integer
    divisions (20 instructions each) by the SM's warps: 8 x 60 / 1.41 GHz = 0.34 us."""
    op = Embedding(tokens=4096, vocab=32000, dim=4096, dtype="fp16")
    c = _k(op)
    d = c.details
    assert (d["kernel"], d["blocks"], d["iterations"]) == ("gather", 864, 152)
    issue = 8 * 3 * 20 / 1.41e9
    assert d["chain_s"] == pytest.approx(152 * (DRAM_LAT + L2_LAT + issue) - DRAM_LAT)
    assert c.dram_bytes == op.min_bytes


def test_embedding_of_up_to_16_tokens_loops_over_the_indices():
    """index_select's small-index kernel (<= 16 indices): 32 blocks of 128 threads cover one
    4096-wide row; each thread loops over the tokens: the first index from the L2, the
    others from its L1 line, each a table load from DRAM after 2 integer divisions (one
    warp per SM: 40 instructions). Kernel time grows by ~0.63 us a token (Vidur A100
    profile: 3, 4, 5, 8, 14 us at 1, 2, 4, 8, 16 tokens), then drops to the large-index
    kernel at 17 (the profile: 4 us at 24 tokens)."""
    issue = 40 / 1.41e9
    t = {n: _k(Embedding(tokens=n, vocab=32000, dim=4096, dtype="fp16")) for n in (1, 16, 17)}
    assert (t[16].details["blocks"], t[16].details["iterations"]) == (32, 16)
    assert t[16].details["chain_s"] == pytest.approx(
        L2_LAT - L1_LAT + 16 * (L1_LAT + DRAM_LAT + issue) - DRAM_LAT)
    per_token = (kernel_time(t[16]) - kernel_time(t[1])) / 15
    # (+1.3%: the DRAM round trips queue behind the 16 rows' traffic, M/M/1)
    assert per_token == pytest.approx(L1_LAT + DRAM_LAT + issue, rel=0.02)
    assert t[17].details["iterations"] == 1 and kernel_time(t[17]) < kernel_time(t[16]) / 3


def test_silu_and_mul_runs_one_block_per_token():
    """vLLM's act_and_mul_kernel on a 70B TP1 token (d_ff 28672): one block of 1024
    threads, 28 iterations of one round trip (both inputs loaded together) at the DRAM
    latency: kernel = startup + first load and last store + 27 x 0.6 us (+ 0.17 MB from the
    L2); the same op without a row is PyTorch's flat grid, one round trip."""
    op = Elementwise(fn="swiglu", numel=28672, row=28672, dtype="fp16")
    c = _k(op)
    d = c.details
    assert (d["kernel"], d["threads"], d["iterations"], d["blocks"]) == ("row", 1024, 28, 1)
    assert d["chain_s"] == pytest.approx(27 * DRAM_LAT)
    assert kernel_time(c) == pytest.approx(STARTUP + FILL + 27 * DRAM_LAT, abs=0.05 * US)
    flat = _k(Elementwise(fn="swiglu", numel=28672, dtype="fp16"))
    assert flat.details["kernel"] == "grid" and kernel_time(flat) < 0.25 * kernel_time(c)


def test_rotary_kernel_loads_the_position_then_loops_over_pairs():
    """vLLM's rotary_embedding_kernel on a 7B TP1 token (q and k: 2 x 4096 = 8192
    elements, 4096 (x, y) pairs): 512 threads (2048 q pairs at most 512), 8 iterations
    (4 over q, 4 over k) after the position id: a chain of 9 round trips, the first in the
    fill, each iteration also issuing its head index and offset (``i / embed_dim``,
    ``i % embed_dim``: one integer division, 20 instructions) for the block's 16 warps, 4
    per scheduler: 80 cycles at 1.41 GHz. TP8 (1024 elements): 256 threads, one iteration
    each over q and k."""
    c = _k(Elementwise(fn="mul", numel=8192, row=8192, dtype="fp16"))
    d = c.details
    assert (d["threads"], d["iterations"], d["vector"]) == (512, 8, 2)
    assert d["chain_s"] == pytest.approx(8 * (DRAM_LAT + 4 * 20 / 1.41e9))
    tp8 = _k(Elementwise(fn="mul", numel=1024, row=1024, dtype="fp16"))
    assert (tp8.details["threads"], tp8.details["iterations"]) == (256, 2)
    # 4096 tokens: 512-thread blocks, 4 per SM, 432 tokens a wave: 10 waves of 9 round trips,
    # the divisions now issued by 64 warps an SM (16 per scheduler)
    big = _k(Elementwise(fn="mul", numel=4096 * 8192, row=8192, dtype="fp16"))
    assert big.details["waves"] == 10
    assert big.details["chain_s"] == pytest.approx(10 * 9 * DRAM_LAT - DRAM_LAT
                                                   + 10 * 8 * 16 * 20 / 1.41e9)


def test_resident_row_kernel_l2_round_trips_do_not_queue():
    """512 x 4096 fp16 RMSNorm (8 MiB, resident): 3 waves x (4 x 0.6 us + reduction + 4 L1
    re-reads) of chain; its only DRAM traffic is the 4 MiB the L2 writes back (2.3 us),
    which the DRAM round trips queue behind and the on-chip steps do not."""
    op = Norm(norm="rmsnorm", rows=512, cols=4096, dtype="fp16")
    c = _k(op)
    dram_chain, l2_chain = 3 * 4 * DRAM_LAT - DRAM_LAT, 3 * (REDUCE + 4 * L1_LAT)
    dram_s = op.bytes_written() / DRAM_BW
    assert c.details["l2_hit"] is True and c.dram_bytes == op.bytes_written()
    assert kernel_time(c) == pytest.approx(
        STARTUP + FILL + _loaded(dram_chain, l2_chain, dram_s), rel=1e-6)
    assert kernel_time(c) < STARTUP + FILL + dram_chain + l2_chain + dram_s


def test_builders_pass_the_row_and_tensor_parallelism_shards_it():
    from workloads.transforms.tensor_parallel import tensor_parallel
    from workloads.zoo import build_model
    for tp, rope, act in ((1, (64 + 8) * 128, 28672), (8, (8 + 1) * 128, 28672 // 8)):
        block = tensor_parallel(build_model("llama2-70b"), tp).item("layers").block
        assert block.item("rope").row == rope and block.item("act").row == act
        assert block.item("rope").numel % rope == 0 and block.item("act").numel % act == 0


def test_elementwise_row_is_validated():
    assert Elementwise(fn="add", numel=8, dtype="fp16").row is None
    for bad in (0, -1, 1.5, "8", True):
        with pytest.raises(ValueError, match="row"):
            Elementwise(fn="add", numel=8, row=bad, dtype="fp16")


def test_rotated_measurement_loop_keeps_everything_in_the_l2():
    op = Elementwise(fn="add", numel=1 << 20, dtype="fp16")   # 6 MiB
    warm = predict_op(op, A100, rotated_sets=2)
    assert warm.dram_bytes == 0.0
    cold = predict_op(op, A100, rotated_sets=8)
    assert cold.dram_bytes == op.min_bytes


@pytest.mark.parametrize("make", [
    lambda r: Norm(norm="rmsnorm", rows=r, cols=8192, dtype="fp16"),
    lambda r: Norm(norm="layernorm", rows=r, cols=1000, dtype="bf16"),
    lambda r: Softmax(rows=r, cols=2048, dtype="fp16"),
    lambda r: Elementwise(fn="add", numel=r * 4096, dtype="fp16"),
    lambda r: Elementwise(fn="swiglu", numel=r * 3584, row=3584, dtype="fp16"),
    lambda r: Elementwise(fn="mul", numel=r * 1152, row=1152, dtype="fp16"),
])
def test_more_rows_never_faster(make):
    rows = (1, 2, 7, 64, 215, 216, 217, 500, 1024, 3000, 4096, 10000)
    t = [kernel_time(_k(make(r))) for r in rows]
    assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(t)), t


def test_more_tokens_never_faster_within_each_gather_kernel():
    """index_select switches from its small-index kernel to its large-index one above 16
    indices, which the A100 profile shows 3.5x faster at 24 tokens than at 16; within each
    kernel more tokens never run faster."""
    for tokens in ((1, 2, 7, 15, 16), (17, 64, 215, 216, 217, 1024, 4096, 10000)):
        t = [kernel_time(_k(Embedding(tokens=n, vocab=32000, dim=4096, dtype="fp16")))
             for n in tokens]
        assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(t)), t


def test_a_longer_row_is_never_faster():
    widths = (64, 512, 1024, 1025, 4096, 8192, 16384)
    for make in (lambda c: Norm(norm="rmsnorm", rows=64, cols=c, dtype="fp16"),
                 lambda c: Elementwise(fn="swiglu", numel=64 * c, row=c, dtype="fp16"),
                 lambda c: Elementwise(fn="mul", numel=64 * c, row=c, dtype="fp16")):
        t = [kernel_time(_k(make(c))) for c in widths]
        assert all(a <= b for a, b in itertools.pairwise(t)), t


def test_kernel_params_are_validated():
    from simulator.errors import SpecError
    with pytest.raises(SpecError, match="max_threads_per_sm"):
        load_arch(A100, ["params.max_threads_per_sm=0"])
    with pytest.raises(SpecError, match="collectives"):
        load_arch(A100, ["params.collectives=mpi"])


# -- NCCL's model -----------------------------------------------------------------------------
def test_nccl_picks_protocols_by_size_as_its_tuner_does():
    """8 x A100 on NVSwitch, 300 GB/s line rate x 0.8 = 240 GB/s of NCCL bus bandwidth.
    Ring all-reduce: LL (6.6 + 14 x 0.6 = 15 us, 240/4 = 60 GB/s), LL128 (14 + 14 x 1.9 =
    40.6 us, 240 x 0.92), Simple (8.4 + 14 x 3.4 = 56 us, 240 GB/s); algbw = busbw x 8/14."""
    r8 = Route.in_node(8, NV)
    m = NcclModel(0.8)
    small = collective("allreduce", 4096, r8, nccl=m)
    assert (small.algorithm, small.protocol) == ("ring", "LL")
    assert small.time_s == pytest.approx(15.0 * US + 4096 / (60e9 * 8 / 14), rel=1e-9)
    mid = collective("allreduce", 4 << 20, r8, nccl=m)
    assert mid.protocol == "LL128"
    assert mid.time_s == pytest.approx(40.6 * US + (4 << 20) / (240e9 * 0.92 * 8 / 14),
                                       rel=1e-9)
    big = collective("allreduce", 1 << 30, r8, nccl=m)
    assert big.protocol == "Simple"
    assert big.time_s == pytest.approx(56.0 * US + (1 << 30) / (240e9 * 8 / 14), rel=1e-9)
    # NCCL's bus bandwidth relation: busbw = algbw x 2(p-1)/p -> 240 GB/s at large sizes
    assert (1 << 30) / (big.time_s - big.alpha_s) * 14 / 8 == pytest.approx(240e9)
    names = {(c.algorithm, c.protocol) for c in candidates("allreduce", 1e6, r8, m)}
    assert names == {(a, p) for a in ("ring", "tree") for p in ("LL", "LL128", "Simple")}


def test_nccl_all_gather_and_reduce_scatter_take_p_minus_1_steps():
    m = NcclModel(0.8)
    for kind in ("allgather", "reducescatter"):
        r = collective(kind, 1 << 30, Route.in_node(8, NV), nccl=m)
        assert r.algorithm == "ring" and r.protocol == "Simple"
        assert r.time_s == pytest.approx((8.4 + 7 * 3.4) * US + (1 << 30) * 7 / 8 / 240e9,
                                         rel=1e-9)


def test_nvls_on_hopper_nvswitch():
    """NVLink SHARP: one step of 23 us, algbw = busbw x 5/6: 450 GB/s x 0.824 x 5/6 = 309
    GB/s, so it beats the ring's 371 x 8/14 = 212 GB/s at large sizes."""
    nv4 = Link("nvlink4", 450e9, 2e-6)
    r = collective("allreduce", 1 << 30, Route.in_node(8, nv4), nccl=NcclModel(0.824, True))
    assert r.algorithm == "nvls" and r.protocol == "Simple"
    assert r.time_s == pytest.approx(23 * US + (1 << 30) / (450e9 * 0.824 * 5 / 6), rel=1e-9)
    plain = collective("allreduce", 1 << 30, Route.in_node(8, nv4), nccl=NcclModel(0.824))
    assert plain.algorithm == "ring" and plain.time_s > r.time_s


def test_a100_spec_uses_nccl_in_a_node_and_over_the_nics_across_nodes():
    s = load_arch("dgx-a100", ["count=16"])
    p = Predictor(s)
    op = Collective(collective="allreduce", bytes=64e6, devices=8, dtype="fp16")
    c = p.cost(op, tuple(range(8)))
    assert c.details["protocol"] == "Simple" and c.details["algorithm"] == "ring"
    # as NCCL's kernels run it (nccl_channels 24): 64e6 / (24 x 8) B per channel and rank in
    # 2 slices of 3 64-KiB rounds, + 1 flag, per step: 8.4 us + 14 steps x 7 x 2 us; + the
    # loop's local copy: 6 rounds x 600 ns HBM latency + 1 flag, 2 x 8e6 B at 0.88 x 2.039 TB/s
    assert c.latency_s == pytest.approx(
        (8.4 + 14 * 7 * 2 + 6 * 0.6 + 2) * US + 64e6 * 14 / 8 / 240e9
        + 2 * 8e6 / (0.88 * 2.039e12), rel=1e-9)
    across = p.cost(Collective(collective="allreduce", bytes=64e6, devices=16, dtype="fp16"))
    # across nodes: NCCL's multi-node tuner (simulator.network.nccl) picks the LL128 ring
    assert (across.details["algorithm"], across.details["protocol"]) == ("ring", "LL128")
    ab = predict_op(op, A100, ["params.collectives=alpha-beta"])
    assert ab.details["protocol"] == ""


def test_more_bytes_never_faster_under_nccl():
    m = NcclModel(0.8)
    sizes = [2**k for k in range(2, 33)]
    for p in (2, 4, 8):
        t = [collective("allreduce", n, Route.in_node(p, NV), nccl=m).time_s for n in sizes]
        assert all(a <= b for a, b in itertools.pairwise(t)), p


# -- flash-attention schedule -----------------------------------------------------------------
def test_tile_waves_are_exact_for_equal_tiles_and_never_superadditive():
    """Equal tiles run in ceil(n / SMs) waves; one wave takes its longest tile; unequal
    tiles (a causal kernel's), longest first, take each wave's longest; twice the tiles
    never take more than twice the time."""
    from simulator.mapping.gpu_kernels import _makespan
    assert _makespan([(2.0, 10)], 4) == 6.0
    assert _makespan([(3.0, 2), (1.0, 1)], 4) == 3.0
    assert _makespan([(3.0, 5), (2.0, 3), (1.0, 4)], 4) == 3.0 + 3.0 + 1.0
    for groups in ([(5.0, 3), (4.0, 7), (1.0, 11)], [(9.0, 1), (8.0, 130), (2.0, 2)]):
        for slots in (1, 4, 108, 132):
            one = _makespan(groups, slots)
            two = _makespan([(d, 2 * c) for d, c in groups], slots)
            assert one <= two <= 2 * one


def test_causal_prefill_computes_its_diagonal_blocks_in_full():
    """512 causal tokens: 4 query blocks step over 1 + 2 + 3 + 4 = 10 key blocks of 128,
    of whose scores 512 x 513 / 2 are unmasked (80%); at 16k tokens 99%."""
    from workloads.ops import Attention
    short = _k(Attention(batch=1, heads=1, head_dim=128, seq=512, dtype="fp16"))
    assert short.details["kv_blocks"] == 10
    assert short.details["useful"] == pytest.approx(512 * 513 / 2 / (10 * 128 * 128))
    long = _k(Attention(batch=1, heads=1, head_dim=128, seq=16384, dtype="fp16"))
    assert long.details["useful"] > 0.99
