"""Collective algorithms (simulator.network): hand-computed alpha-beta numbers, NCCL's bus
bandwidth relation, where a group sits (one node, one rank per node, several per node, a
torus box), the links it occupies, and laws (more bytes never faster, more bandwidth never
slower).

Hand numbers use the shipped figures: DGX A100 NVLink 300 GB/s per direction and 2 us per
step, HDR 25 GB/s per NIC and 5 us; TPU v4 ICI 45 GB/s per link and 1 us per hop. rel=1e-9:
the formulas are closed-form, only float rounding may differ.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.arch.loader import load_arch
from simulator.arch.spec import Fabric, Link
from simulator.errors import MappingError
from simulator.mapping.common import collective_time
from simulator.network import (
    Route,
    candidates,
    collective,
    links_used,
    nics_of,
    route_for,
)
from simulator.predict import Predictor
from workloads.ops import COLLECTIVES, Collective

REL = 1e-9
NV = Link("nvlink3-nvswitch", 300e9, 2e-6)
GB = 1e9


def _two_dgx(*extra: str):
    return load_arch("dgx-a100", ["count=16", *extra])


# -- one node -------------------------------------------------------------------------------
def test_8_gpu_nvlink_allreduce_of_1_gb():
    r = collective("allreduce", GB, Route.in_node(8, NV))
    # ring: 2(p-1) = 14 steps x 2 us + 2 x 7/8 x 1 GB / 300 GB/s = 28 us + 5.8333 ms
    assert r.algorithm == "ring"
    assert r.time_s == pytest.approx(28e-6 + 2 * 7 / 8 * GB / 300e9, rel=REL)
    assert r.alpha_s == pytest.approx(28e-6, rel=REL)
    assert r.bytes_sent == pytest.approx(1.75e9, rel=REL)
    tree = collective("allreduce", GB, Route.in_node(8, NV), "tree")
    # double binary tree: 2 ceil(log2 8) = 6 steps x 2 us + 2 x 1 GB / 300 GB/s = 6.679 ms
    assert tree.time_s == pytest.approx(12e-6 + 2 * GB / 300e9, rel=REL)


def test_small_messages_take_the_tree():
    r = collective("allreduce", 1024, Route.in_node(8, NV))
    # 6 steps beat 14 steps when the bytes cost nothing: 12 us + 6.8 ns
    assert r.algorithm == "tree" and r.time_s == pytest.approx(12e-6 + 2048 / 300e9, rel=REL)


@pytest.mark.parametrize("kind, steps, factor, algo", [
    ("allgather", 7, 7 / 8, "ring"), ("reducescatter", 7, 7 / 8, "ring"),
    ("alltoall", 7, 7 / 8, "pairwise"), ("sendrecv", 1, 1.0, "p2p")])
def test_other_collectives_in_one_node(kind, steps, factor, algo):
    r = collective(kind, GB, Route.in_node(8, NV))
    assert r.algorithm == algo
    assert r.time_s == pytest.approx(steps * 2e-6 + factor * GB / 300e9, rel=REL)


@pytest.mark.parametrize("p", [2, 4, 8, 64])
def test_busbw_is_algbw_times_2_p_minus_1_over_p(p):
    """NCCL's bus bandwidth of a ring all-reduce is the link's bandwidth (no latency)."""
    link = Link("l", 100e9, 0.0)
    r = collective("allreduce", GB, Route.in_node(p, link), "ring")
    algbw = GB / r.time_s
    assert algbw * 2 * (p - 1) / p == pytest.approx(100e9, rel=REL)


def test_legacy_collective_time_is_unchanged():
    op = Collective(collective="allreduce", bytes=GB, devices=8, dtype="bf16")
    t, sent, algo = collective_time(op, NV, "switch")
    assert (t, sent, algo) == pytest.approx((28e-6 + 2 * 7 / 8 * GB / 300e9, 1.75e9, "ring"))
    # a torus without a shape multiplies the link bandwidth by its dimensions (as before)
    t3, _, _ = collective_time(op, NV, "torus3d")
    assert t3 == pytest.approx(28e-6 + 2 * 7 / 8 * GB / 900e9, rel=REL)
    assert collective_time(replace(op, devices=1), NV) == (0.0, 0.0, "none")


# -- several nodes --------------------------------------------------------------------------
def test_one_rank_per_node_runs_on_its_rail_as_before():
    """A data-parallel group with TP=8 (devices 3 and 11): one rank per node, each on its own
    NIC, exactly the flat ring/tree over the 25 GB/s network of before."""
    r = route_for(_two_dgx(), (3, 11))
    assert (r.nodes, r.per_node, r.nics, r.nic_bandwidth) == (2, 1, 1, 25e9)
    c = collective("allreduce", GB, r)
    # ring over 2 ranks: 2 steps x 5 us + 2 x 1/2 x 1 GB / 25 GB/s = 40.01 ms (tree: 80 ms)
    assert c.algorithm == "ring"
    assert c.time_s == pytest.approx(10e-6 + GB / 25e9, rel=REL)


def test_16_gpu_allreduce_on_2_dgx_a100_ring_tree_and_hierarchical():
    """2 nodes x 8 GPUs, 1 GB. Ring (NCCL: one channel per NIC, NVLink and the NICs
    pipelined): 30 steps x 5 us + 2 x 15/16 x 1 GB / (8 x 25 GB/s) = 9.525 ms, bus bandwidth
    ~197 GB/s (the node's 8 HDR NICs). Hierarchical: reduce-scatter in the node 14 us +
    7/8 GB / 300 GB/s, ring all-reduce of 1/8 GB over 2 nodes on each rail 10 us + 125 MB /
    25 GB/s, all-gather as the reduce-scatter = 10.871 ms. Tree: 38 us + 2 GB / 200 GB/s."""
    r = route_for(_two_dgx(), tuple(range(16)))
    assert (r.nodes, r.per_node, r.nics, r.nic_bandwidth) == (2, 8, 8, 200e9)
    ring = collective("allreduce", GB, r, "ring")
    hier = collective("allreduce", GB, r, "hierarchical")
    tree = collective("allreduce", GB, r, "tree")
    assert ring.time_s == pytest.approx(150e-6 + 2 * 15 / 16 * GB / 200e9, rel=REL)
    in_node = 14e-6 + 7 / 8 * GB / 300e9
    assert hier.time_s == pytest.approx(2 * in_node + 10e-6 + GB / 8 / 25e9, rel=REL)
    assert tree.time_s == pytest.approx(2 * (7 * 2e-6 + 5e-6) + 2 * GB / 200e9, rel=REL)
    assert [ph.link for ph in hier.phases] == ["nvlink3-nvswitch", "infiniband-hdr",
                                               "nvlink3-nvswitch"]
    assert collective("allreduce", GB, r).algorithm == "ring"
    busbw = GB / ring.beta_s * 2 * 15 / 16
    assert busbw == pytest.approx(200e9, rel=REL)
    # the old model put all 16 ranks on one 25 GB/s NIC: 8x slower than the node's 8 NICs
    naive = 150e-6 + 2 * 15 / 16 * GB / 25e9
    assert naive / ring.time_s > 7.5


def test_hierarchical_wins_when_the_node_has_one_nic():
    """2 x 8 GPUs sharing one HDR NIC per node: the two-level algorithm sends 1/8 of the data
    across per rank (45.87 ms) where the ring sends 2 x 15/16 of it through the NIC
    (75.15 ms) and the tree 2 GB (80.04 ms)."""
    r = route_for(_two_dgx("network.nics_per_node=1"), tuple(range(16)))
    assert (r.nics, r.nic_bandwidth) == (1, 25e9)
    best = collective("allreduce", GB, r)
    in_node = 14e-6 + 7 / 8 * GB / 300e9
    assert best.algorithm == "hierarchical"
    assert best.time_s == pytest.approx(2 * in_node + 10e-6 + GB / 25e9, rel=REL)
    ring = collective("allreduce", GB, r, "ring")
    assert ring.time_s == pytest.approx(150e-6 + 2 * 15 / 16 * GB / 25e9, rel=REL)


def test_two_ranks_per_node_drive_two_nics():
    """TP=4 on 4 nodes: a data-parallel group holds 2 GPUs of each node, on 2 rails."""
    s = load_arch("dgx-a100", ["count=32"])
    r = route_for(s, (0, 4, 8, 12, 16, 20, 24, 28))
    assert (r.nodes, r.per_node, r.nics, r.nic_bandwidth) == (4, 2, 2, 50e9)


def test_fat_tree_oversubscription_halves_cross_leaf_bandwidth():
    s = load_arch("dgx-a100", ["count=32", "network.topology=fat-tree",
                               "network.nodes_per_leaf=2", "network.oversubscription=2",
                               "network.switch_latency=0.5 us"])
    same_leaf, across = route_for(s, (0, 8)), route_for(s, (0, 16))
    assert not same_leaf.cross_leaf and same_leaf.net.bandwidth_Bps == 25e9
    assert across.cross_leaf and across.net.bandwidth_Bps == 12.5e9
    assert across.net.latency_s == pytest.approx(5e-6 + 1e-6)
    assert collective("allreduce", GB, across).time_s > \
        collective("allreduce", GB, same_leaf).time_s


def test_rail_optimized_cross_rail_goes_through_the_spine():
    s = load_arch("a100-cluster-hdr", ["network.oversubscription=2"])
    assert not route_for(s, (3, 11)).cross_leaf  # same rail, same SU: one hop
    assert route_for(s, (3, 12)).cross_leaf      # rail 3 to rail 4
    assert route_for(s, (3, 8 * 20 + 3)).cross_leaf  # same rail, another SU
    assert route_for(s, (3, 12)).net.bandwidth_Bps == 12.5e9


def test_no_network_is_a_clear_error():
    s = replace(_two_dgx(), network=None)
    with pytest.raises(MappingError, match="spans 2 nodes of 8 devices.*no network"):
        route_for(s, (0, 8))


def test_forcing_an_algorithm_that_does_not_apply():
    with pytest.raises(MappingError, match="'hierarchical' does not apply.*applicable: ring, "
                                           "tree"):
        collective("allreduce", GB, Route.in_node(8, NV), "hierarchical")
    with pytest.raises(MappingError, match="finite, non-negative size"):
        collective("allreduce", -1.0, Route.in_node(8, NV))


# -- TPU torus --------------------------------------------------------------------------------
def test_tpu_cube_allreduce_runs_rings_along_three_dimensions():
    """4x4x4 torus, 1 GB: bidirectional rings on x, y, z give each chip 6 x 45 GB/s:
    2 x (3+3+3) hops x 1 us + 2 x 63/64 x 1 GB / 270 GB/s = 7.310 ms, against 43.876 ms for
    one unidirectional ring through all 64 chips (126 steps, 45 GB/s)."""
    s = load_arch("tpu-v4-pod-cube")
    r = route_for(s, tuple(range(64)))
    assert [(d.size, d.wraps) for d in r.torus] == [(4, True)] * 3
    torus = collective("allreduce", GB, r)
    ring = collective("allreduce", GB, r, "ring")
    assert torus.algorithm == "torus"
    assert torus.time_s == pytest.approx(18e-6 + 2 * 63 / 64 * GB / 270e9, rel=REL)
    assert ring.time_s == pytest.approx(126e-6 + 2 * 63 / 64 * GB / 45e9, rel=REL)
    assert ring.time_s / torus.time_s > 6


def test_tpu_subgroups_on_the_torus():
    s = load_arch("tpu-v4-pod-cube")
    plane = route_for(s, tuple(range(0, 64, 4)))   # z = 0: a 4x4 torus plane
    assert [(d.size, d.wraps) for d in plane.torus] == [(4, True)] * 2
    assert collective("allreduce", GB, plane).time_s == pytest.approx(
        12e-6 + 2 * 15 / 16 * GB / 180e9, rel=REL)
    line = route_for(s, (0, 16))                   # x in {0, 1}: a line, not a ring
    assert [(d.size, d.wraps) for d in line.torus] == [(2, False)]
    far = route_for(s, (0, 48))                    # x = 0 and 3: one hop round the torus
    assert far.hops == 1
    assert collective("sendrecv", GB, far).time_s == pytest.approx(1e-6 + GB / 45e9, rel=REL)
    odd = route_for(s, (0, 1, 5))                  # not a box: one ring at one link's rate
    assert odd.torus == () and odd.intra_bandwidth == 45e9


def test_full_tpu_v4_pod_allreduce():
    s = load_arch("tpu-v4-pod")
    r = collective("allreduce", GB, route_for(s, tuple(range(4096))))
    # 16x16x16: 2 x 45 steps x 1 us + 2 x 4095/4096 x 1 GB / (6 x 45 GB/s) = 7.496 ms
    assert r.time_s == pytest.approx(90e-6 + 2 * 4095 / 4096 * GB / 270e9, rel=REL)


# -- links ------------------------------------------------------------------------------------
def test_links_used_names():
    s = _two_dgx()
    assert links_used(s, (3, 11)) == ("node0.nic3", "node1.nic3")
    assert links_used(s, (0, 1)) == ("node0.dev0.link", "node0.dev1.link")
    assert links_used(s, (5,)) == () and links_used(s, ()) == ()
    assert links_used(s, (0, 1, 8)) == ("node0.dev0.link", "node0.dev1.link", "node0.nic0",
                                        "node0.nic1", "node1.nic0")
    shared = _two_dgx("network.nics_per_node=4")
    assert nics_of(shared, 3) == (1,) and nics_of(shared, 11) == (1,)
    assert links_used(shared, (2, 3, 10, 11)) == (
        "node0.dev2.link", "node0.dev3.link", "node0.nic1",
        "node1.dev2.link", "node1.dev3.link", "node1.nic1")


def test_links_used_is_memoised_and_fast():
    s = load_arch("a100-cluster-hdr")
    groups = [tuple(range(r, 1024, 8)) for r in range(8)]
    first = [links_used(s, g) for g in groups]
    assert all(links_used(s, g) is f for g, f in zip(groups, first))
    t = time.perf_counter()
    for _ in range(2000):
        for g in groups:
            links_used(s, g)
    assert time.perf_counter() - t < 2.0  # 16,000 calls on 128-rank groups


def test_predictor_details_carry_the_algorithm_and_links():
    s = _two_dgx()
    p = Predictor(s)
    op = Collective(collective="allreduce", bytes=GB, devices=2, dtype="bf16")
    a, b = p.cost(op, (0, 8)), p.cost(op, (1, 9))
    assert a.details["algorithm"] == "ring" and a.details["link"] == "infiniband-hdr"
    assert a.details["links"] == ("node0.nic0", "node1.nic0")
    assert b.details["links"] == ("node0.nic1", "node1.nic1")
    # NCCL's multi-node ring (simulator.network.nccl): one channel of 24 GB/s on the 25 GB/s
    # NIC; latency (8.4 + (2 - 4) x 3.4 + 4 x 14) x 1.4 = 80.64 us
    assert a.latency_s == b.latency_s == pytest.approx(80.64e-6 + GB / 24e9, rel=REL)
    wide = p.cost(Collective(collective="allreduce", bytes=GB, devices=16, dtype="bf16"))
    assert wide.details["algorithm"] == "ring" and len(wide.details["links"]) == 32
    assert set(wide.bytes_by_level) == {"infiniband-hdr", "nvlink3-nvswitch"}
    assert wide.energy.memory_j["infiniband-hdr"] == pytest.approx(
        2 * 15 / 16 * GB / 8 * 15e-12 * 8, rel=1e-6)  # NIC bytes per rank x 15 pJ/bit


# -- laws -------------------------------------------------------------------------------------
_SYSTEMS = {"two-dgx": ("dgx-a100", ("count=16",)), "cluster": ("a100-cluster-hdr", ()),
            "cube": ("tpu-v4-pod-cube", ())}
_GROUPS = {"two-dgx": [tuple(range(8)), (3, 11), tuple(range(16)), (0, 1, 8, 9)],
           "cluster": [tuple(range(0, 1024, 8)), tuple(range(64)), (0, 1, 2, 3, 160, 161, 162,
                                                                     163)],
           "cube": [tuple(range(64)), tuple(range(0, 64, 4)), (0, 16), (0, 1, 5)]}


def _system(name: str, net_x: float = 1.0, link_x: float = 1.0):
    arch, ov = _SYSTEMS[name]
    s = load_arch(arch, list(ov))
    net = s.network
    if net is not None and net_x != 1.0:
        net = replace(net, bandwidth_Bps=net.bandwidth_Bps * net_x)
    return replace(s, link=replace(s.link, bandwidth_Bps=s.link.bandwidth_Bps * link_x),
                   network=net)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(_SYSTEMS)), gi=st.integers(0, 3),
       kind=st.sampled_from(COLLECTIVES), e=st.integers(0, 34), more=st.integers(1, 1 << 20))
def test_more_bytes_never_faster(name, gi, kind, e, more):
    groups = _GROUPS[name]
    r = route_for(_system(name), groups[gi % len(groups)])
    a = collective(kind, float(1 << e), r)
    b = collective(kind, float((1 << e) + more), r)
    assert b.time_s >= a.time_s * (1 - REL)
    assert math.isfinite(b.time_s) and b.time_s > 0


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(_SYSTEMS)), gi=st.integers(0, 3),
       kind=st.sampled_from(COLLECTIVES), e=st.integers(0, 34),
       net_x=st.sampled_from([1.0, 1.1, 2.0, 8.0]), link_x=st.sampled_from([1.0, 1.5, 4.0]))
def test_more_bandwidth_never_slower(name, gi, kind, e, net_x, link_x):
    groups = _GROUPS[name]
    g = groups[gi % len(groups)]
    before = collective(kind, float(1 << e), route_for(_system(name), g))
    after = collective(kind, float(1 << e), route_for(_system(name, net_x, link_x), g))
    assert after.time_s <= before.time_s * (1 + REL)


@pytest.mark.parametrize("kind", COLLECTIVES)
def test_every_candidate_is_finite_and_phases_add_up(kind):
    for name, groups in _GROUPS.items():
        for g in groups:
            for c in candidates(kind, 123456789.0, route_for(_system(name), g)):
                parts = sum(ph.time_s for ph in c.phases)
                assert 0 < c.time_s <= parts * (1 + REL)
                if not c.pipelined:
                    assert c.time_s == pytest.approx(parts, rel=REL)
                assert c.alpha_s + c.beta_s == pytest.approx(c.time_s, rel=REL)


def test_plain_link_network_gets_fabric_defaults():
    s = replace(_two_dgx(), network=Link("ib", 25e9, 5e-6))
    r = route_for(s, (0, 8))
    assert r.net == Link("ib", 25e9, 5e-6) and not r.cross_leaf
    assert isinstance(_two_dgx().network, Fabric)
