"""Non-GEMM GPU kernels by shape, and NCCL's collective model (simulator.mapping.gpu,
simulator.network.collectives): hand-computed numbers on the shipped A100 spec (HBM 600 ns,
L2 200 ns, 2.039 TB/s x 0.88, L2 7.2 TB/s x 0.88, 108 SMs, 2048 threads and 32 blocks per
SM, launch 4 us) and laws (more rows never faster, a longer row never faster, kernel time
never includes the launch).
"""

from __future__ import annotations

import itertools

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
DRAM_LAT, L2_LAT = 0.6 * US, 0.2 * US
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
    at the DRAM latency, the second (the row now cached) at the L2's. Kernel time =
    startup 1.2 + first load 0.6 + 3 x 0.6 + 4 x 0.2 + last store 0.2 = 4.6 us (plus
    negligible transfer)."""
    c = _k(Norm(norm="rmsnorm", rows=1, cols=4096, dtype="fp16"))
    d = c.details
    assert (d["kernel"], d["threads"], d["iterations"], d["passes"]) == ("row", 1024, 4, 2)
    assert d["chain_s"] == pytest.approx(3 * DRAM_LAT + 4 * L2_LAT)
    assert kernel_time(c) == pytest.approx(STARTUP + FILL + 3 * DRAM_LAT + 4 * L2_LAT,
                                           abs=0.02 * US)
    assert c.bound == "latency"  # launch, startup and fill exceed the chain
    wide = _k(Norm(norm="rmsnorm", rows=1, cols=8192, dtype="fp16"))  # 8 loads per pass
    assert kernel_time(wide) - kernel_time(c) == pytest.approx(4 * (DRAM_LAT + L2_LAT),
                                                               rel=0.02)


def test_rows_beyond_one_wave_repeat_the_chain():
    """Two 1024-thread blocks per SM: 216 rows run at once on 108 SMs; row 217 starts a
    second wave with its own chain of dependent loads."""
    one = _k(Norm(norm="rmsnorm", rows=216, cols=4096, dtype="fp16"))
    two = _k(Norm(norm="rmsnorm", rows=217, cols=4096, dtype="fp16"))
    assert (one.details["waves"], two.details["waves"]) == (1, 2)
    assert two.details["chain_s"] - one.details["chain_s"] == pytest.approx(
        4 * (DRAM_LAT + L2_LAT))
    fewer = _k(Norm(norm="rmsnorm", rows=217, cols=4096, dtype="fp16"), A100,
               "params.max_threads_per_sm=1024")  # one block per SM: 108 rows a wave
    assert fewer.details["waves"] == 3


def test_large_rmsnorm_adds_its_chain_to_its_traffic():
    """4096 x 4096 fp16, 67 MB (not resident): 19 waves x 4 x (0.6 + 0.2) us of chain plus
    the bytes at the achievable DRAM bandwidth, less the last 20 MiB (half the L2) of its
    input, which the LRU L2 still holds from the producer; far slower than the roofline."""
    op = Norm(norm="rmsnorm", rows=4096, cols=4096, dtype="fp16")
    c = _k(op)
    chain = 19 * 4 * (DRAM_LAT + L2_LAT) - DRAM_LAT
    assert c.details["waves"] == 19 and c.details["l2_hit"] is False
    hit = op.bytes_read() * 20 * 2**20 / op.min_bytes
    assert kernel_time(c) == pytest.approx(
        STARTUP + FILL + chain + (op.min_bytes - hit) / DRAM_BW, rel=1e-3)
    assert kernel_time(c) > 2 * op.min_bytes / DRAM_BW
    vec = _k(op, A100, "params.norm_vector=8")  # a 128-bit vectorised kernel
    assert vec.details["threads"] == 512 and vec.details["iterations"] == 1
    assert kernel_time(vec) < 0.5 * kernel_time(c)


def test_softmax_is_a_three_pass_row_kernel_with_16_byte_loads():
    c = _k(Softmax(rows=4, cols=4096, dtype="fp16"))
    d = c.details
    assert (d["kernel"], d["vector"], d["threads"], d["passes"]) == ("row", 8, 512, 3)
    assert d["chain_s"] == pytest.approx(2 * L2_LAT)  # 1 load per pass, the first in the fill


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
    """4096 tokens x 4096 fp16 from a 32k-row table: 864 blocks of 128 threads (8 per SM)
    stride over 16.8 M elements, 152 iterations of (L2 + DRAM latency) each."""
    op = Embedding(tokens=4096, vocab=32000, dim=4096, dtype="fp16")
    c = _k(op)
    d = c.details
    assert (d["kernel"], d["blocks"], d["iterations"]) == ("gather", 864, 152)
    assert d["chain_s"] == pytest.approx(152 * (DRAM_LAT + L2_LAT) - DRAM_LAT)
    assert c.dram_bytes == op.min_bytes


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
    lambda r: Embedding(tokens=r, vocab=32000, dim=4096, dtype="fp16"),
])
def test_more_rows_never_faster(make):
    rows = (1, 2, 7, 64, 215, 216, 217, 500, 1024, 3000, 4096, 10000)
    t = [kernel_time(_k(make(r))) for r in rows]
    assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(t)), t


def test_a_longer_row_is_never_faster():
    t = [kernel_time(_k(Norm(norm="rmsnorm", rows=64, cols=c, dtype="fp16")))
         for c in (64, 512, 1024, 1025, 4096, 8192, 16384)]
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


def test_a100_spec_uses_nccl_in_a_node_and_alpha_beta_across_nodes():
    s = load_arch("dgx-a100", ["count=16"])
    p = Predictor(s)
    op = Collective(collective="allreduce", bytes=64e6, devices=8, dtype="fp16")
    c = p.cost(op, tuple(range(8)))
    assert c.details["protocol"] == "Simple" and c.details["algorithm"] == "ring"
    assert c.latency_s == pytest.approx(56 * US + 64e6 / (240e9 * 8 / 14), rel=1e-9)
    across = p.cost(Collective(collective="allreduce", bytes=64e6, devices=16, dtype="fp16"))
    assert across.details["protocol"] == ""  # NCCL's multi-node refinements: not modelled
    ab = predict_op(op, A100, ["params.collectives=alpha-beta"])
    assert ab.details["protocol"] == ""


def test_more_bytes_never_faster_under_nccl():
    m = NcclModel(0.8)
    sizes = [2**k for k in range(2, 33)]
    for p in (2, 4, 8):
        t = [collective("allreduce", n, Route.in_node(p, NV), nccl=m).time_s for n in sizes]
        assert all(a <= b for a, b in itertools.pairwise(t)), p
