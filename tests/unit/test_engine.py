"""engine: DAG order, stream serialisation and compute/communication overlap."""

import pytest

from simulator.engine.runner import run_graph
from simulator.frozen import FrozenMap
from simulator.mapping.base import EnergyParts, OpCost
from workloads.graph import WorkloadGraph
from workloads.ops import Collective, Elementwise, Flops


def _cost(t: float) -> OpCost:
    return OpCost(t, t, 0.0, 0.0, "compute", Flops(), FrozenMap({}), 0.0, EnergyParts())


def _fixed(op, group=None):
    # latency encoded in numel (elementwise) or bytes (collective), in microseconds
    return _cost((op.numel if isinstance(op, Elementwise) else op.bytes) * 1e-6)


def test_chain_is_serial_sum():
    g = WorkloadGraph("chain")
    prev = ()
    for i in range(5):
        prev = (g.add_op(f"op{i}", Elementwise(fn="relu", numel=10 + i), prev),)
    tl = run_graph(g, _fixed)
    assert tl[-1].end_s == pytest.approx(sum(10 + i for i in range(5)) * 1e-6)
    assert all(a.end_s <= b.start_s + 1e-15 for a, b in zip(tl, tl[1:]))


def test_independent_ops_share_one_compute_stream():
    g = WorkloadGraph("fan")
    g.add_op("a", Elementwise(fn="relu", numel=10))
    g.add_op("b", Elementwise(fn="relu", numel=20))
    tl = run_graph(g, _fixed)
    assert max(t.end_s for t in tl) == pytest.approx(30e-6)   # serialised, not 20 us


def test_collective_overlaps_compute_on_its_own_stream():
    g = WorkloadGraph("overlap")
    g.add_op("comm", Collective(collective="allreduce", bytes=50, devices=8))
    g.add_op("work", Elementwise(fn="relu", numel=40))
    tl = run_graph(g, _fixed)
    assert max(t.end_s for t in tl) == pytest.approx(50e-6)   # max, not the 90 us sum
    streams = {t.name: t.stream for t in tl}
    assert streams == {"comm": "comm", "work": "compute"}


def test_no_two_ops_overlap_on_one_stream():
    g = WorkloadGraph("many")
    for i in range(20):
        g.add_op(f"x{i}", Elementwise(fn="add", numel=1 + i % 3))
    tl = run_graph(g, _fixed)
    spans = sorted((t.start_s, t.end_s) for t in tl)
    assert all(a[1] <= b[0] + 1e-15 for a, b in zip(spans, spans[1:]))
