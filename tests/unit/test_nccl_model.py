"""NCCL's kernels inside one node (simulator.network.nccl): chunks, slices, copy rounds and
handoffs, numbers worked by hand from NCCL's constants (module docstring)."""

from __future__ import annotations

import itertools

import pytest

from simulator.arch.loader import load_arch
from simulator.arch.spec import Link
from simulator.errors import SpecError
from simulator.mapping.common import nccl_model
from simulator.network import NcclModel, Route, candidates, collective
from simulator.network.nccl import ring_time

US = 1e-6
MIB = 2**20
NV = Link("nvlink3", 300e9, 2e-6)   # DGX A100: 300 GB/s per direction, 2 us per handoff
A100 = NcclModel(0.8, channels=24)  # 240 GB/s of NCCL bus bandwidth, 24 ring channels


def test_simple_ring_by_hand():
    """64e6 B over 8 ranks: 64e6 / (24 x 8) = 333 kB per channel and rank (one loop: < 2 MiB),
    two 167 kB slices of three 64 KiB rounds, + one flag: 7 handoffs in each of 14 steps."""
    alpha, beta, how = ring_time("allreduce", 64e6, 8, "Simple", A100, 2e-6, 240e9)
    assert alpha == pytest.approx((8.4 + 14 * 7 * 2) * US)
    assert beta == pytest.approx(64e6 * 14 / 8 / 240e9)
    assert how.startswith("24 channels, 1 loop(s), 7 handoff(s) per ring step")


def test_simple_ring_loops_past_the_chunk():
    """Past 24 x 8 x 2 MiB = 384 MiB a second, short loop (runRing's realChunkSize): the
    first moves full 2 MiB chunks (2 slices x 16 rounds + 1 flag per step), the second the
    4 KiB left (one slice, one round, one flag)."""
    one, _, _ = ring_time("allreduce", 384 * MIB, 8, "Simple", A100, 2e-6, 240e9)
    two, _, how = ring_time("allreduce", 384 * MIB + 4096, 8, "Simple", A100, 2e-6, 240e9)
    assert "2 loop(s)" in how and "1 loop(s)" in ring_time(
        "allreduce", 384 * MIB, 8, "Simple", A100, 2e-6, 240e9)[2]
    assert one == pytest.approx((8.4 + 14 * 33 * 2) * US)
    assert two == pytest.approx((8.4 + 14 * 35 * 2) * US)


def test_ll128_rounds_a_chunk_up_to_grains():
    """LL128 grains of 640 x 60 / 2 = 19,200 B per channel and rank: 4 MiB over 8 ranks is
    4 MiB / (24 x 8) = 21.8 kB, two grains per step."""
    alpha, beta, _ = ring_time("allreduce", 4 * MIB, 8, "LL128", A100, 2e-6, 240e9 * 0.92)
    assert alpha == pytest.approx((14 + 14 * 2 * 2) * US)
    assert beta == pytest.approx(4 * MIB * 14 / 8 / (240e9 * 0.92))


def test_small_buffers_use_fewer_channels():
    """Below 24 x 512 threads x 64 B = 768 KiB NCCL's Simple ring uses fewer channels."""
    _, _, how = ring_time("allreduce", 256 * 1024, 2, "Simple", A100, 2e-6, 240e9)
    assert how.startswith("8 channels")
    _, _, how = ring_time("allreduce", 1 * MIB, 2, "Simple", A100, 2e-6, 240e9)
    assert how.startswith("24 channels")


def test_all_gather_and_reduce_scatter_take_p_minus_1_steps():
    """Same chunking (nranks chunks per channel and loop), p-1 steps, (p-1)/p n bus bytes."""
    n = 64e6
    for kind in ("allgather", "reducescatter"):
        alpha, beta, _ = ring_time(kind, n, 8, "Simple", A100, 2e-6, 240e9)
        assert alpha == pytest.approx((8.4 + 7 * 7 * 2) * US)
        assert beta == pytest.approx(n * 7 / 8 / 240e9)
    ag = collective("allgather", n, Route.in_node(8, NV), nccl=A100)
    rs = collective("reducescatter", n, Route.in_node(8, NV), nccl=A100)
    assert ag.time_s == pytest.approx(rs.time_s) and ag.protocol == "Simple"


def test_without_channels_the_tuner_estimate_prices_it():
    r = collective("allreduce", 1 << 30, Route.in_node(8, NV), nccl=NcclModel(0.8))
    assert r.time_s == pytest.approx(56.0 * US + (1 << 30) / (240e9 * 8 / 14), rel=1e-9)
    assert "tuner estimate" in r.phases[0].name


def test_kernels_cost_at_least_the_bus_bandwidth_and_baselat():
    for p, n in itertools.product((2, 4, 8), (4096, 1 << 20, 37 << 20, 1 << 30)):
        for c in candidates("allreduce", n, Route.in_node(p, NV), A100):
            assert c.time_s >= 2 * (p - 1) / p * n / 240e9
            assert c.time_s > 0


def test_more_bytes_never_faster_with_channels():
    """The kernels' times grow with the buffer (the fastest protocol of each size)."""
    sizes = sorted({2**k for k in range(2, 33)} | {3 * 2**k for k in range(2, 31)})
    for p, kind in itertools.product((2, 4, 8), ("allreduce", "allgather", "reducescatter")):
        t = [collective(kind, n, Route.in_node(p, NV), nccl=A100).time_s for n in sizes]
        assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(t)), (p, kind)


def test_the_a100_specs_give_nccl_its_channels():
    for part in ("a100-sxm-80gb", "a100-sxm-40gb"):
        m = nccl_model(load_arch(part).device)
        assert m is not None and m.channels == 24 and m.unroll == 8


def test_unknown_protocol_is_an_error():
    with pytest.raises(ValueError, match="LL"):
        ring_time("allreduce", 1e6, 8, "LL", A100, 2e-6, 60e9)


@pytest.mark.parametrize("value", [0, -3, 2.5, "many", True])
def test_bad_channel_counts_name_the_field(value):
    with pytest.raises(SpecError, match="nccl_channels"):
        load_arch("a100-sxm-80gb", [f"params.nccl_channels={value}"])
