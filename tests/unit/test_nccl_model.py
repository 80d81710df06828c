"""NCCL's kernels inside one node (simulator.network.nccl): chunks, slices, copy rounds and
handoffs, numbers worked by hand from NCCL's constants (module docstring); and NCCL's
multi-node ring and tree over the NICs (ncclTopoTuneModel for nNodes > 1), also by hand."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.arch.loader import load_arch
from simulator.arch.spec import Link
from simulator.errors import SpecError
from simulator.mapping.common import nccl_model
from simulator.network import NcclModel, Route, candidates, collective
from simulator.network.nccl import net_channel_Bps, ring_time

US = 1e-6
MIB = 2**20
GIB = 2**30
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
    """Each (algorithm, protocol) pair's kernel time grows with the buffer. NCCL's choice
    can drop where its tuner switches from LL128 to Simple (8 GPUs, 23 MiB: the Vidur DGX
    A100 profile drops from 369 to 310 us there), never elsewhere."""
    sizes = sorted({2**k for k in range(2, 33)} | {3 * 2**k for k in range(2, 31)})
    for p, kind in itertools.product((2, 4, 8), ("allreduce", "allgather", "reducescatter")):
        route = Route.in_node(p, NV)
        by_pair = [{(c.algorithm, c.protocol): c.time_s for c in candidates(kind, n, route, A100)}
                   for n in sizes]
        for pair in by_pair[0]:
            t = [d[pair] for d in by_pair]
            assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(t)), (p, kind, pair)
        chosen = [collective(kind, n, route, nccl=A100) for n in sizes]
        for a, b in itertools.pairwise(chosen):
            assert a.time_s <= b.time_s * (1 + 1e-12) or a.protocol != b.protocol, (p, kind)


def test_the_ring_loop_has_one_local_copy_more_than_link_steps():
    """runRing (all_reduce.h) runs send, p-2 recvReduceSend, recvReduceCopySend, p-2
    recvCopySend and recv: 2p-1 primitives per loop for 2(p-1) link steps; one of them
    copies between the rank's own buffers. 2 ranks, 6 MiB: 6 MiB / (24 x 2) = 128 KiB per
    channel, two 64 KiB slices of one round each: the copy waits 2 HBM latencies (0.6 us) and
    hands off one flag (2 us), and moves 2 x 3 MiB through HBM at 1.8 TB/s."""
    hbm = NcclModel(0.8, channels=24, local_Bps=1.8e12, local_latency_s=0.6e-6)
    n = 6 * MIB
    a0, b0, _ = ring_time("allreduce", n, 2, "Simple", A100, 2e-6, 240e9)
    a1, b1, how = ring_time("allreduce", n, 2, "Simple", hbm, 2e-6, 240e9)
    assert a0 == pytest.approx((8.4 + 2 * 3 * 2) * US)
    assert a1 - a0 == pytest.approx((2 * 0.6 + 2) * US)
    assert b1 - b0 == pytest.approx(2 * n / 2 / 1.8e12)
    assert "1 local copy per loop" in how
    # LL128: its flags travel in the lines; the copy waits one HBM latency per grain
    g0, _, _ = ring_time("allreduce", 4 * MIB, 8, "LL128", A100, 2e-6, 220.8e9)
    g1, _, _ = ring_time("allreduce", 4 * MIB, 8, "LL128", hbm, 2e-6, 220.8e9)
    assert g1 - g0 == pytest.approx(2 * 0.6 * US)
    # the copy's share shrinks with the ring: 1 primitive of 3 at 2 ranks, of 15 at 8
    share = [ring_time("allreduce", 64 * MIB, p, "Simple", hbm, 2e-6, 240e9)
             for p in (2, 8)]
    base = [ring_time("allreduce", 64 * MIB, p, "Simple", A100, 2e-6, 240e9) for p in (2, 8)]
    rel = [(h[0] + h[1]) / (b[0] + b[1]) - 1 for h, b in zip(share, base, strict=True)]
    assert rel[0] > 2 * rel[1] > 0


def test_nccl_runs_its_tuners_pick():
    """NCCL runs the pair its tuner estimates fastest (getAlgoInfo), not the fastest as run:
    on 8 ranks at 240 GB/s the tuner keeps LL128 up to ~23 MiB (crossover 15.4 us x 137 GB/s
    x 0.92 / 0.08 = 24.3 MB), where the kernels' Simple would be faster; above, Simple."""
    route = Route.in_node(8, NV)
    at16 = collective("allreduce", 16 * MIB, route, nccl=A100)
    assert at16.protocol == "LL128"
    simple16 = next(c for c in candidates("allreduce", 16 * MIB, route, A100)
                    if c.algorithm == "ring" and c.protocol == "Simple")
    assert simple16.time_s < at16.time_s
    assert collective("allreduce", 24 * MIB, route, nccl=A100).protocol == "Simple"
    # 2 ranks: Simple's lower latency and higher bandwidth win at every size
    assert all(collective("allreduce", 2**k, Route.in_node(2, NV), nccl=A100).protocol
               == "Simple" for k in range(21, 31))


def test_more_link_bandwidth_never_slower_under_a_fixed_tuner():
    """NCCL's tuner prices NVLink by its per-generation constant times the part's links
    (tuner_bus_Bps), not by the fabric's rate: a faster fabric keeps NCCL's choice and every
    pair's kernel time falls with bandwidth, so the collective is never slower."""
    m = NcclModel(0.8, channels=24, local_Bps=1.8e12, local_latency_s=0.6e-6,
                  tuner_bus_Bps=240e9)
    sizes = [2**k for k in range(12, 31)] + [23 * MIB, 23 * MIB + 65536]
    for p, kind, n, f in itertools.product((2, 4, 8), ("allreduce", "allgather"), sizes,
                                           (1.1, 2.0, 8.0)):
        slow = collective(kind, n, Route.in_node(p, NV), nccl=m)
        fast = collective(kind, n, Route.in_node(p, Link("nvlink3", 300e9 * f, 2e-6)), nccl=m)
        assert fast.protocol == slow.protocol and fast.algorithm == slow.algorithm
        assert fast.time_s <= slow.time_s * (1 + 1e-12), (p, kind, n, f)


def test_the_a100_specs_give_nccl_its_channels():
    for part in ("a100-sxm-80gb", "a100-sxm-40gb"):
        d = load_arch(part).device
        m = nccl_model(d)
        assert m is not None and m.channels == 24 and m.unroll == 8
        # the local copy streams at the part's achievable HBM rate and waits its latency;
        # the tuner believes NCCL's 20 of 25 GB/s on each of the 12 NVLinks
        assert m.local_Bps == pytest.approx(d.dram.bandwidth_Bps * 0.88)
        assert m.local_latency_s == pytest.approx(600e-9)
        assert m.tuner_bus_Bps == pytest.approx(240e9)


def test_unknown_protocol_is_an_error():
    with pytest.raises(ValueError, match="LL"):
        ring_time("allreduce", 1e6, 8, "LL", A100, 2e-6, 60e9)


@pytest.mark.parametrize("value", [0, -3, 2.5, "many", True])
def test_bad_channel_counts_name_the_field(value):
    with pytest.raises(SpecError, match="nccl_channels"):
        load_arch("a100-sxm-80gb", [f"params.nccl_channels={value}"])


def test_more_channels_never_slower():
    """More ring channels cut each channel's chunk: fewer copy rounds per step, never more
    (the tuner's choice does not depend on the channel count)."""
    m = NcclModel(0.8, channels=24, local_Bps=1.8e12, local_latency_s=0.6e-6,
                  tuner_bus_Bps=240e9)
    sizes = [2**k for k in range(10, 31)] + [k * MIB // 3 for k in range(1, 200, 7)]
    for p, kind, n in itertools.product((2, 3, 8), ("allreduce", "allgather"), sizes):
        t = [collective(kind, n, Route.in_node(p, NV), nccl=replace(m, channels=c)).time_s
             for c in (8, 12, 16, 23, 24, 32, 48)]
        assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(t)), (p, kind, n)


# -- across nodes: ncclTopoTuneModel for nNodes > 1 (simulator.network.nccl) ----------------
A100_NET = NcclModel(0.8, channels=24, tuner_bus_Bps=240e9)
H100_NET = NcclModel(0.824, True, channels=0, tuner_bus_Bps=371e9, generation="hopper")


def _two_nodes(nic_Bps: float = 25e9, m: int = 8) -> Route:
    net = Link("infiniband", nic_Bps, 5e-6)
    return Route(2 * m, 2, m, True, NV, 300e9, (), 1, net, m, m * nic_Bps)


def test_net_channel_takes_nccls_search_speed_below_the_nic():
    """search.cc's speedArrayInter: HDR 25 GB/s -> 24, NDR 50 -> 48, 100 Gb/s 12.5 -> 12;
    an NVLink share below the NIC caps it; below NCCL's slowest entry the bound itself."""
    assert net_channel_Bps(25e9, 0, A100_NET) == 24e9
    assert net_channel_Bps(50e9, 0, H100_NET) == 48e9
    assert net_channel_Bps(12.5e9, 0, A100_NET) == 12e9
    assert net_channel_Bps(50e9, 41e9, H100_NET) == 40e9
    assert net_channel_Bps(50e9, 41e9, A100_NET) == 30e9  # Ampere's array has no 40
    assert net_channel_Bps(1e8, 0, A100_NET) == 1e8


def test_two_node_simple_ring_by_hand():
    """1 GiB over 2 x 8 A100: 30 steps, 4 across the network. Latency 8.4 + 26 x max(3.4,
    3 x 1) + 4 x 14 = 152.8 us, x1.4 (ring plateau) = 213.92 us; bus bandwidth 8 channels x
    24 GB/s = 192 GB/s, algorithm bandwidth x 16/30."""
    cands = {(c.algorithm, c.protocol): c for c in candidates(
        "allreduce", GIB, _two_nodes(), nccl=A100_NET)}
    ring = cands[("ring", "Simple")]
    assert ring.alpha_s == pytest.approx(213.92 * US)
    assert ring.time_s == pytest.approx(213.92 * US + GIB / (192e9 * 16 / 30))
    assert collective("allreduce", GIB, _two_nodes(), nccl=A100_NET) == ring


def test_two_node_ll128_tree_by_hand():
    """1 MiB: tree bus 192 x 0.92 = 176.6 (under 8 x 23.6), LL128 x 120/128 = 165.6 capped at
    8 x 20 = 160 GB/s, x 1/2 x treeCorrectionFactor[LL128][log2(1 MiB / 64) = 14] 0.6 = 48
    GB/s; latency 14 + 2 (7 x 1.25 + 1 x 8.5) = 48.5 us. NCCL picks it over the rings."""
    r = collective("allreduce", MIB, _two_nodes(), nccl=A100_NET)
    assert (r.algorithm, r.protocol) == ("tree", "LL128")
    assert r.time_s == pytest.approx(48.5 * US + MIB / 48e9)


def test_all_gather_across_nodes_takes_k_minus_1_network_steps():
    """All-gather, LL128 ring, 2 x 8: 15 steps, 1 across nodes: 14 + 14 x 1.9 + 1 x 4.0 =
    44.6 us; bus min(192 x 0.92, 8 x 20) = 160 GB/s, x 16/15."""
    cands = {(c.algorithm, c.protocol): c for c in candidates(
        "allgather", 64 * MIB, _two_nodes(), nccl=A100_NET)}
    assert set(cands) == {("ring", p) for p in ("LL", "LL128", "Simple")}
    r = cands[("ring", "LL128")]
    assert r.time_s == pytest.approx(44.6 * US + 64 * MIB / (160e9 * 16 / 15))


def test_forced_hierarchical_falls_back_to_alpha_beta():
    """NCCL has no hierarchical all-reduce; forcing it keeps the alpha-beta model."""
    r = collective("allreduce", GIB, _two_nodes(), "hierarchical", nccl=A100_NET)
    assert r.algorithm == "hierarchical" and r.protocol == ""


def test_more_nic_bandwidth_never_slower_across_nodes():
    """NCCL reads the NIC's speed, so its estimate is the time and each pair's time falls
    with the NIC rate: the minimum never rises."""
    sizes = [2**k for k in range(6, 34, 3)]
    for kind, n, m in itertools.product(("allreduce", "allgather", "reducescatter"), sizes,
                                        (1, 2, 8)):
        t = [collective(kind, n, _two_nodes(b, m), nccl=A100_NET).time_s
             for b in (1e9, 12.5e9, 25e9, 31e9, 50e9, 100e9)]
        assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(t)), (kind, n, m)


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(["allreduce", "allgather", "reducescatter"]),
       nbytes=st.floats(0, 1e12, allow_nan=False), k=st.integers(2, 64),
       m=st.integers(1, 8), nic=st.floats(1e8, 2e11), hopper=st.booleans())
def test_network_times_are_finite_and_at_least_the_nic_bytes(kind, nbytes, k, m, nic, hopper):
    """Any size, node count, ranks per node and NIC rate: a finite time, no shorter than the
    bytes each node's NICs must move at their line rate."""
    model = H100_NET if hopper else A100_NET
    net = Link("infiniband", nic, 5e-6)
    route = Route(k * m, k, m, True, NV if m > 1 else None, 300e9 if m > 1 else 0.0, (), 1,
                  net, m, m * nic)
    r = collective(kind, nbytes, route, nccl=model)
    p = k * m
    sent = (2 if kind == "allreduce" else 1) * (p - 1) / p * nbytes
    assert math.isfinite(r.time_s) and r.time_s >= r.alpha_s > 0
    assert r.time_s >= sent / (m * nic) * (1 - 1e-9)


def test_across_nodes_a_slower_nvlink_is_never_faster():
    """Across nodes every NCCL channel also crosses the node's NVLink (its share of the GPU's
    links caps the channel) and the in-node hops move their bytes over it: cutting the
    NVLink must slow a 2-node all-reduce as it slows a 1-node one (it did not, when the
    tuner's fixed NVLink figure stood in for the link)."""
    from simulator import predict_op
    from workloads.ops import Collective

    op = Collective(collective="allreduce", bytes=1e9, devices=16)
    base = predict_op(op, "a100-cluster-hdr").latency_s
    times = [predict_op(op, "a100-cluster-hdr", (f"link.bandwidth={bw} GB/s",)).latency_s
             for bw in (300, 100, 10, 1)]
    assert times == sorted(times) and times[-1] > 100 * base
    # 1 GB/s links: at least the in-node bytes of a 16-rank ring (7/8 of 2 x 15/16 GB) at
    # 1 GB/s times NCCL's link efficiency
    assert times[-1] >= 2 * 15 / 16 * 1e9 * 7 / 8 / 1e9


V100_NET = NcclModel(0.8, channels=0, unroll=4, tuner_bus_Bps=120e9, generation="volta")


def test_volta_takes_nccls_volta_row_across_nodes():
    """tuning.cc indexes its tables by compute capability (Volta < 8.0 <= Ampere < 9.0 <=
    Hopper). 1 GiB over 4 x 8 GPUs, tree Simple: Volta caps a channel at 10.0 GB/s beyond 2
    nodes (perChMaxTreeBws), Ampere at 17.8; the Simple ring's latency plateau is x1.9 before
    sm80, x1.4 after: 62 steps, 8 across nodes: (8.4 + 54 x 3.4 + 8 x 14) x 1.9 = 577.6 us."""
    net = Link("infiniband", 25e9, 5e-6)
    route = Route(32, 4, 8, True, NV, 300e9, (), 1, net, 8, 8 * 25e9)
    volta = {(c.algorithm, c.protocol): c for c in candidates("allreduce", GIB, route,
                                                               nccl=V100_NET)}
    ampere = {(c.algorithm, c.protocol): c for c in candidates("allreduce", GIB, route,
                                                                nccl=A100_NET)}
    tree_v, tree_a = volta[("tree", "Simple")], ampere[("tree", "Simple")]
    # 8 channels (one per NIC) x min(24 x 0.92, cap) x 1/2 (tree), correction 1 at 1 GiB
    assert tree_v.time_s - tree_v.alpha_s == pytest.approx(GIB / (8 * 10.0e9 * 0.5))
    assert tree_a.time_s - tree_a.alpha_s == pytest.approx(GIB / (8 * 17.8e9 * 0.5))
    assert volta[("ring", "Simple")].alpha_s == pytest.approx(577.6 * US)
    assert ampere[("ring", "Simple")].alpha_s == pytest.approx(304.0 * 1.4 * US)


def test_the_specs_compute_capability_picks_the_generation():
    """``params.compute_capability`` (CUDA Programming Guide) picks the row and the copy
    loop's unroll (4 before sm80); a spec without it keeps the old rule (nvls: Hopper)."""
    gens = {a: nccl_model(load_arch(a).device) for a in
            ("v100-sxm2-32gb", "a100-sxm-80gb", "h100-sxm", "b200")}
    assert {a: m.generation for a, m in gens.items()} == {
        "v100-sxm2-32gb": "volta", "a100-sxm-80gb": "ampere", "h100-sxm": "hopper",
        "b200": "hopper"}
    assert gens["v100-sxm2-32gb"].unroll == 4 and gens["a100-sxm-80gb"].unroll == 8
    dev = load_arch("h100-sxm").device
    no_cc = replace(dev, params={k: v for k, v in dev.params.items()
                                 if k != "compute_capability"})
    assert nccl_model(no_cc).generation == "hopper"


@pytest.mark.parametrize("value", ["eight", 0, 2.9, 20, True, -8.0])
def test_bad_compute_capability_names_the_field(value):
    with pytest.raises(SpecError, match="compute_capability"):
        load_arch("a100-sxm-80gb", [f"params.compute_capability={value}"])


def test_volta_caps_ll_at_its_own_llmaxbw_in_a_node():
    """llMaxBws in one node: Volta 39.0 GB/s, Ampere 87.7. An all-gather's LL ring on 300
    GB/s NVLink x 0.8 = 240 GB/s of bus, / 3: 80 GB/s, which Volta caps at 39.0 and Ampere
    leaves; so Volta's LL bandwidth time is 80 / 39 of Ampere's (tuner estimates, no
    channels)."""
    n, route = 64 * MIB, Route.in_node(8, NV)
    ll = {g: next(c for c in candidates("allgather", n, route, nccl=NcclModel(
        0.8, generation=g)) if c.protocol == "LL") for g in ("volta", "ampere")}
    beta = {g: c.time_s - c.alpha_s for g, c in ll.items()}
    assert beta["volta"] / beta["ampere"] == pytest.approx(80.0 / 39.0, rel=1e-9)


def test_ll128_only_on_the_compute_capabilities_nccl_enables_it():
    """tuning.cc enables LL128 by default only on compute capability 7.0, 8.0, 9.0 and 10.0
    ("other cases are not tested and may cause silent data corruption"): an A100 spec set to
    8.6 weighs only LL and Simple, in a node and across nodes; 8.0 weighs all three."""
    for cc, expect in ((8.0, {"LL", "LL128", "Simple"}), (8.6, {"LL", "Simple"})):
        m = nccl_model(load_arch("a100-sxm-80gb", [f"params.compute_capability={cc}"]).device)
        assert m is not None
        inside = {c.protocol for c in candidates("allreduce", 64 * MIB, Route.in_node(8, NV),
                                                 nccl=m)}
        across = {c.protocol for c in candidates("allreduce", 64 * MIB, _two_nodes(),
                                                 nccl=replace(m, tuner_bus_Bps=240e9))}
        assert inside - {""} == expect and across - {""} == expect, (cc, inside, across)


def test_explain_names_nccls_table_row():
    """``--explain`` says which of NCCL's rows a part gets and why (its capability)."""
    from simulator import predict_op
    from simulator.explain import op_lines
    from workloads.ops import Collective

    op = Collective(collective="allreduce", bytes=1e9, devices=8, dtype="fp16")
    for arch, row in (("v100-sxm2-32gb", "Volta (compute capability 7.0)"),
                      ("a100-sxm-80gb", "Ampere (compute capability 8.0)"),
                      ("h100-sxm", "Hopper (compute capability 9.0)")):
        s = load_arch(arch)
        text = "\n".join(op_lines(op, predict_op(op, s), s))
        assert f"its {row} tables" in text, (arch, text)
