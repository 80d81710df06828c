"""Pruned weights on systolic arrays and FPGAs (issue 13 part 8): SCALE-Sim v3's layer-wise
N:M where the array supports it, compressed weight traffic everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from simulator.api import predict_op
from simulator.arch.loader import load_arch
from workloads.ops import Conv2d, MatMul, Sparsity

NM = {"params.sparse_nm": "true"}


def _cost(op, arch="systolic-32x32", **over):
    return predict_op(op, load_arch(arch, over))


def _mm(sp=None, m=256, n=512, k=1024):
    return MatMul(m=m, n=n, k=k, weight=True, dtype="int8", sparsity=sp)


def test_two_four_halves_the_executed_k_and_the_mac_count():
    dense, sparse = _cost(_mm()), _cost(_mm(Sparsity.nm(2, 4)), **NM)
    assert sparse.details["k_executed"] == 512
    assert sparse.flops.matrix == pytest.approx(dense.flops.matrix / 2)
    # fold count over K halves for ws (K on the rows): compute cycles about halve
    assert sparse.details["compute_cycles"] < 0.6 * dense.details["compute_cycles"]
    assert sparse.latency_s < dense.latency_s


def test_filter_traffic_is_the_compressed_bytes():
    op = _mm(Sparsity.nm(2, 4))
    c = _cost(op, **NM)
    # int8: half the values + 2 bits each = 0.5 * (1 + 2/8) = 0.625 of the dense bytes
    assert op.weight_stored_fraction == pytest.approx(0.625)
    assert op.b_bytes() == pytest.approx(0.625 * 512 * 1024)
    assert c.details["dram_bytes"]["filter"] == pytest.approx(
        op.b_bytes() * c.details["refetch"]["filter"], rel=1e-9)


def test_without_nm_support_math_stays_dense_but_reads_shrink():
    dense, sparse = _cost(_mm()), _cost(_mm(Sparsity.nm(2, 4)))
    assert sparse.details["k_executed"] == 1024
    assert sparse.details["compute_cycles"] == dense.details["compute_cycles"]
    assert sparse.details["dram_bytes"]["filter"] < dense.details["dram_bytes"]["filter"]
    assert any("no N:M support" in n for n in sparse.notes)


def test_unstructured_saves_traffic_not_math():
    dense = _cost(_mm(), **NM)
    sparse = _cost(_mm(Sparsity.unstructured(zeros=0.7)), **NM)
    assert sparse.details["compute_cycles"] == dense.details["compute_cycles"]
    assert sparse.details["dram_bytes"]["filter"] < dense.details["dram_bytes"]["filter"]
    assert sparse.latency_s <= dense.latency_s


@pytest.mark.parametrize("arch", ["systolic-32x32", "tpu-v4", "alveo-u280", "eyeriss"])
@pytest.mark.parametrize("sp", [Sparsity.nm(2, 4), Sparsity.nm(1, 4),
                                Sparsity.unstructured(zeros=0.5)])
@pytest.mark.parametrize("nm", [False, True])
def test_pruning_never_slower_and_energy_never_negative(arch, sp, nm):
    dt = "int8" if arch != "eyeriss" else "fp16"
    over = NM if nm else {}
    for dense_op in (MatMul(m=64, n=256, k=512, weight=True, dtype=dt),
                     MatMul(m=1, n=1024, k=1024, weight=True, dtype=dt),
                     Conv2d(n=1, c=64, h=28, w=28, k=64, r=3, s=3, pad=1, dtype=dt)):
        sparse_op = dataclasses.replace(dense_op, sparsity=sp)
        d, s = _cost(dense_op, arch, **over), _cost(sparse_op, arch, **over)
        assert s.latency_s <= d.latency_s * (1 + 1e-9), (arch, sp.label, dense_op)
        assert s.energy_j >= 0


def test_conv_nm_skips_input_channels_in_dram_reads():
    conv = Conv2d(n=1, c=64, h=56, w=56, k=64, r=3, s=3, pad=1, dtype="int8")
    sparse = dataclasses.replace(conv, sparsity=Sparsity.nm(2, 4))
    d, s = _cost(conv, **NM), _cost(sparse, **NM)
    assert s.details["k_executed"] == d.details["gemm"][3] // 2
    assert s.details["dram_bytes"]["ifmap"] < d.details["dram_bytes"]["ifmap"]
