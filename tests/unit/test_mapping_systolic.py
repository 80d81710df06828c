"""Systolic mapper and the shared fold/cycle/SRAM model (simulator.mapping.systolic_core).

Devices are built here from YAML written to tmp_path (through the real loader), so these tests
do not depend on the shipped specs. Cycle counts are hand-computed from the SCALE-Sim formulas
in the systolic_core docstring; the test names say which law or formula they check.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml

from simulator.arch.loader import load_arch
from simulator.arch.spec import Device
from simulator.errors import MappingError
from simulator.mapping import systolic_core as core
from simulator.mapping.base import MapOptions
from simulator.mapping.common import STREAMING_KINDS, streaming_cost
from simulator.mapping.registry import cost_op, registered
from workloads.ops import Attention, Collective, Conv2d, MatMul, Softmax

MiB = 2**20


def _spec(**over) -> dict:
    """A 32x32 bf16/int8 array at 1 GHz, 100 GB/s DRAM (100 B/cycle at efficiency 1)."""
    spec = {
        "name": "toy-systolic", "kind": "asic", "family": "systolic", "process_node": "28 nm",
        "compute": [
            {"name": "array", "unit": "matrix", "count": 1, "clock": "1 GHz",
             "flops_per_cycle": {"bf16": 2048, "int8": 2048}, "shape": [32, 32]},
            {"name": "vpu", "unit": "vector", "count": 1, "clock": "1 GHz",
             "flops_per_cycle": {"bf16": 64, "fp32": 32}},
        ],
        "memory": [
            {"name": "dram", "capacity": "8 GiB", "bandwidth": "100 GB/s",
             "energy_per_byte": "20 pJ/B"},
            {"name": "sram", "capacity": "3 MiB", "bandwidth": "1 TB/s",
             "energy_per_byte": "1 pJ/B"},
        ],
        "power": {"tdp": "10 W", "static": "1 W"},
        "params": {"dataflow": "os", "double_buffered": True, "bandwidth_efficiency": 1.0,
                   "sram": {"ifmap": "1 MiB", "filter": "1 MiB", "ofmap": "1 MiB"}},
    }
    params = over.pop("params", {})
    spec["params"].update(params)
    array = over.pop("array", {})
    spec["compute"][0].update(array)
    spec.update(over)
    return spec


@pytest.fixture
def make_device(tmp_path):
    counter = iter(range(1000))

    def make(**over) -> Device:
        path = tmp_path / f"spec{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(_spec(**over)))
        return load_arch(str(path)).device

    return make


@pytest.fixture
def dev(make_device) -> Device:
    return make_device()


def _cost(op, device, dataflow=None):
    return cost_op(op, device, MapOptions(dataflow=dataflow))


def _with_bandwidth(device: Device, bw: float) -> Device:
    dram = dataclasses.replace(device.dram, bandwidth_Bps=bw)
    return dataclasses.replace(device, memory=(dram, *device.memory[1:]))


def _with_params(device: Device, **params) -> Device:
    return dataclasses.replace(device, params={**device.params, **params})


# -- exact fold and cycle counts ------------------------------------------------------------
@pytest.mark.parametrize("dataflow,db,folds,per_fold", [
    ("os", True, 4, 64 + 32 + 32 - 2),        # ceil(64/32)*ceil(64/32) folds, K + R + C - 2
    ("os", False, 4, 126),                    # os has no weight load to hide
    ("ws", True, 4, 126),                     # ceil(K/R)*ceil(N/C), M + R + C - 2
    ("ws", False, 4, 126 + 32),               # + R cycles to load the weights
    ("is", True, 4, 126),                     # ceil(K/R)*ceil(M/C), N + R + C - 2
    ("is", False, 4, 158),
])
def test_small_gemm_exact_cycles(dev, dataflow, db, folds, per_fold):
    d = _with_params(dev, double_buffered=db)
    c = _cost(MatMul(m=64, n=64, k=64), d, dataflow)
    assert c.details["folds"] == folds
    assert c.details["cycles_per_fold"] == per_fold
    assert c.details["compute_cycles"] == folds * per_fold  # 504 for os: the brief's example
    assert c.details["dataflow"] == dataflow
    assert c.details["array"] == [32, 32]


@pytest.mark.parametrize("dataflow,folds,per_fold", [
    ("os", 4 * 2, 70 + 62),   # ceil(100/32) * ceil(40/32), K streamed
    ("ws", 3 * 2, 100 + 62),  # ceil(70/32) * ceil(40/32), M streamed
    ("is", 3 * 4, 40 + 62),   # ceil(70/32) * ceil(100/32), N streamed
])
def test_rectangular_gemm_distinguishes_dataflows(dev, dataflow, folds, per_fold):
    c = _cost(MatMul(m=100, n=40, k=70), dev, dataflow)
    assert (c.details["folds"], c.details["cycles_per_fold"]) == (folds, per_fold)
    assert c.details["compute_cycles"] == folds * per_fold
    assert c.details["utilization"] == pytest.approx(100 * 40 * 70 / (32 * 32 * folds * per_fold))


def test_stalls_and_latency_hand_computed(make_device):
    # 64^3 bf16, all operands fit: DRAM = 3 * 64*64*2 = 24576 B at 100 B/cycle = 245.76 cycles.
    # os first fold = A row block 32x64 + B column block 64x32 = 8192 B = 81.92 cycles.
    d = make_device(params={"launch_overhead": "1 us"})
    c = _cost(MatMul(m=64, n=64, k=64), d, "os")
    assert c.details["dram_bytes"] == {"ifmap": 8192, "filter": 8192, "ofmap": 8192}
    assert c.details["first_load_cycles"] == pytest.approx(81.92)
    # double buffered: first load + max(504, 245.76 - 81.92)
    assert c.details["cycles"] == pytest.approx(81.92 + 504)
    assert c.details["stall_cycles"] == pytest.approx(81.92)
    assert c.latency_s == pytest.approx(585.92e-9 + 1e-6)
    assert c.overhead_s == pytest.approx(1e-6)
    assert c.bound == "latency"  # 1 us launch overhead > 0.5 us of work
    nodb = _cost(MatMul(m=64, n=64, k=64), _with_params(d, double_buffered=False), "os")
    assert nodb.details["cycles"] == pytest.approx(504 + 245.76)  # compute + memory, serial


def test_bytes_by_level_and_energy(dev):
    c = _cost(MatMul(m=64, n=64, k=64), dev, "os")
    assert list(c.bytes_by_level) == ["dram", "sram"]
    assert c.dram_bytes == 3 * 64 * 64 * 2
    # os SRAM reads: A once per N fold (2x), B once per M fold (2x), C written once
    assert c.bytes_by_level["sram"] == 2 * 8192 + 2 * 8192 + 8192
    assert c.energy.memory_j["dram"] == pytest.approx(24576 * 20e-12)
    assert c.energy.memory_j["sram"] == pytest.approx(40960 * 1e-12)
    assert c.energy.compute_j > 0


# -- laws -----------------------------------------------------------------------------------
SHAPES = [(1, 1, 1), (7, 100, 33), (32, 32, 32), (33, 32, 32), (64, 64, 64), (100, 40, 70),
          (256, 512, 128), (1, 4096, 4096), (2048, 64, 333)]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_utilization_at_most_one_and_latency_above_roofline(dev, dataflow, m, n, k):
    op = MatMul(m=m, n=n, k=k)
    c = _cost(op, dev, dataflow)
    assert 0 < c.details["utilization"] <= 1
    assert 0 < c.utilization <= 1
    assert c.details["compute_cycles"] >= m * n * k / (32 * 32)
    assert c.dram_bytes >= op.min_bytes  # every operand crosses DRAM at least once
    assert c.latency_s >= c.dram_bytes / dev.dram.bandwidth_Bps
    assert c.details["stall_cycles"] >= 0


@pytest.mark.parametrize("dataflow,ragged", [
    ("os", dict(m=33, n=32, k=32)),  # M folds over the rows
    ("ws", dict(m=32, n=32, k=33)),  # K folds over the rows
    ("is", dict(m=33, n=32, k=32)),  # M folds over the columns
])
def test_ragged_edge_doubles_folds(dev, dataflow, ragged):
    exact = _cost(MatMul(m=32, n=32, k=32), dev, dataflow)
    edge = _cost(MatMul(**ragged), dev, dataflow)
    assert exact.details["folds"] == 1
    assert edge.details["folds"] == 2
    # one extra row of work costs a whole extra fold (the streamed length is unchanged):
    # twice the cycles for 33/32 of the MACs
    assert edge.details["compute_cycles"] == 2 * exact.details["compute_cycles"]
    assert edge.details["utilization"] == pytest.approx(exact.details["utilization"] * 33 / 64)
    assert any("ragged edge" in n for n in edge.notes)
    assert not any("ragged edge" in n for n in exact.notes)


@pytest.mark.parametrize("dataflow,spilled", [("os", "filter"), ("ws", "ifmap"),
                                              ("is", "filter")])
def test_small_sram_refetches_and_stalls(make_device, dataflow, spilled):
    op = MatMul(m=512, n=512, k=512)
    big = _cost(op, make_device(), dataflow)
    small = _cost(op, make_device(params={"sram": {"ifmap": "4 KiB", "filter": "4 KiB",
                                                   "ofmap": "4 KiB"}}), dataflow)
    assert all(big.details["sram_fits"].values())
    assert big.dram_bytes == pytest.approx(op.min_bytes)
    assert big.details["blocks"] is None  # everything fits whole: no blocking needed
    assert not small.details["sram_fits"][spilled]
    # the streamed operand is re-read once per fold of the other dimension: 512/32 = 16x
    assert small.details["refetch"][spilled] == 16
    assert small.details["dram_bytes"][spilled] == pytest.approx(16 * 512 * 512 * 2)
    # 2 KiB usable per SRAM holds exactly one 32x32 bf16 tile. os: the unblocked schedule reads
    # A and B 16x each, C once (33 passes of 512 KiB); 32x32x32 blocks move the same bytes, so
    # the unblocked schedule is kept. ws/is (changed by SRAM blocking): unblocked they would
    # also spill the 512x32 partial sums (2*16-1 = 31 passes of C, 48 in all); 32x32x32 blocks
    # keep one 32x32 block of accumulators on chip: A and B 16x each, C written once (33).
    assert small.dram_bytes == pytest.approx(33 * 512 * 512 * 2)
    if dataflow == "os":
        assert small.details["blocks"] is None
        assert any("cannot hold" in n and spilled in n for n in small.notes)
    else:
        assert small.details["blocks"] == {"m": 32, "n": 32, "k": 32}
        assert small.details["refetch"] == {"ifmap": 16, "filter": 16, "ofmap": 1}
        assert any("blocked 512x512x512 (M x N x K) into 32x32x32 blocks" in n
                   and "A read 16x, B read 16x, C written once" in n for n in small.notes)
    assert small.dram_bytes > big.dram_bytes
    assert small.details["stall_cycles"] > big.details["stall_cycles"]
    assert small.latency_s > big.latency_s


@pytest.mark.parametrize("dataflow", ["ws", "is"])
def test_partial_sums_spill_when_k_folds_and_ofmap_is_small(make_device, dataflow):
    # K = 128 -> 4 K folds; psums of one column fold = 512 x 32 x 2 B = 32 KiB > 1 KiB usable.
    # 1 KiB cannot hold even one 32x32 bf16 tile of psums (2 KiB), so no SRAM block fits and
    # the unblocked schedule spills (with 8 KiB, 64-row blocks would avoid the spill).
    d = make_device(params={"sram": {"ifmap": "1 MiB", "filter": "1 MiB", "ofmap": "2 KiB"}})
    c = _cost(MatMul(m=512, n=512, k=128), d, dataflow)
    assert not c.details["sram_fits"]["ofmap"]
    assert c.details["blocks"] is None
    assert c.details["dram_bytes"]["ofmap"] == pytest.approx((2 * 4 - 1) * 512 * 512 * 2)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_blocked_schedule_hand_computed_and_spills_only_when_k_is_split(make_device, dataflow):
    # 64x64x1024 bf16: A = B = 128 KiB, C = 8 KiB. Single buffered, usable 64/64/8 KiB:
    # Mb = Nb = 64 (all of M and N), the largest K block whose A block (64 x Kb x 2 B) and B
    # block fit 64 KiB is Kb = 512; the 64x64 accumulators (8 KiB) fit: A and B read once
    # (one M and one N block), C written once -> compulsory 264 KiB.
    sram = {"ifmap": 64 * 1024, "filter": 64 * 1024, "ofmap": 8 * 1024}
    op = MatMul(m=64, n=64, k=1024)
    single = _cost(op, make_device(params={"double_buffered": False, "sram": sram}), dataflow)
    assert single.details["blocks"] == {"m": 64, "n": 64, "k": 512}
    assert single.details["dram_bytes"] == {"ifmap": 128 * 1024, "filter": 128 * 1024,
                                            "ofmap": 8 * 1024}
    # Double buffered, usable 32/32/4 KiB: Kb = 256 (4 K blocks) and the 8 KiB of accumulators
    # no longer fit, so the partial sums spill: 2*4 - 1 = 7 passes of C (56 KiB). This beats
    # every alternative: 32x64 blocks keep C on chip but read B (or A) twice (+128 KiB), and
    # the unblocked schedule re-reads A (ws) or B (is), or both (os), twice.
    db = _cost(op, make_device(params={"sram": sram}), dataflow)
    assert db.details["blocks"] == {"m": 64, "n": 64, "k": 256}
    assert db.details["dram_bytes"] == {"ifmap": 128 * 1024, "filter": 128 * 1024,
                                        "ofmap": 7 * 8 * 1024}
    assert db.details["refetch"]["ofmap"] == 7 and not db.details["sram_fits"]["ofmap"]
    assert any("cannot hold the 64x64 accumulators" in n and "spills partial sums 7x" in n
               for n in db.notes)
    # with the K dimension whole (Kb = K) nothing spills, however small the ofmap SRAM
    short = _cost(MatMul(m=64, n=64, k=256), make_device(params={"sram": sram}), dataflow)
    assert short.details["dram_bytes"]["ofmap"] == 8 * 1024


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_more_dram_bandwidth_never_slower(make_device, dataflow, m, n, k):
    d = make_device(params={"sram": {"ifmap": "16 KiB", "filter": "16 KiB",
                                     "ofmap": "16 KiB"}})
    lat = [_cost(MatMul(m=m, n=n, k=k), _with_bandwidth(d, bw), dataflow).latency_s
           for bw in (1e9, 1e10, 1e11, 1e12, 1e13)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lat, lat[1:], strict=False))


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", [(64, 64, 64), (128, 256, 64), (256, 256, 256),
                                   (512, 128, 1024)])
def test_bigger_array_never_more_compute_cycles_for_multiples(make_device, dataflow, m, n, k):
    cycles = []
    for side in (16, 32, 64):
        d = make_device(array={"shape": [side, side],
                               "flops_per_cycle": {"bf16": 2 * side * side}})
        cycles.append(_cost(MatMul(m=m, n=n, k=k), d, dataflow).details["compute_cycles"])
    assert cycles[0] >= cycles[1] >= cycles[2]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_double_buffering_never_slower_when_working_sets_fit(dev, dataflow, m, n, k):
    op = MatMul(m=m, n=n, k=k)
    big = {"ifmap": 64 * MiB, "filter": 64 * MiB, "ofmap": 64 * MiB}
    db = _cost(op, _with_params(dev, double_buffered=True, sram=big), dataflow)
    single = _cost(op, _with_params(dev, double_buffered=False, sram=big), dataflow)
    assert db.dram_bytes == single.dram_bytes
    assert db.latency_s <= single.latency_s


def test_double_buffering_halves_usable_sram(dev):
    # ws, A = 64 x 1024 x 2 B = 128 KiB. Single buffered, the 160 KiB ifmap SRAM holds all of
    # A: read once. Double buffered only 80 KiB is usable, so A no longer fits whole; the 4 KiB
    # usable of the filter SRAM holds at most a 32 x 64 block of B (Kb >= 32), so N comes in
    # two 64-column blocks and A is read once per N block: 2x (changed by SRAM blocking: the
    # unblocked rule re-read A once per 32-column N fold, 4x).
    op = MatMul(m=64, n=128, k=1024)
    sram = {"ifmap": 160 * 1024, "filter": 8 * 1024, "ofmap": MiB}
    single = _cost(op, _with_params(dev, double_buffered=False, sram=sram), "ws")
    db = _cost(op, _with_params(dev, double_buffered=True, sram=sram), "ws")
    assert single.details["sram_fits"]["ifmap"] and not db.details["sram_fits"]["ifmap"]
    assert single.details["dram_bytes"]["ifmap"] == 128 * 1024
    assert db.details["dram_bytes"]["ifmap"] == 2 * 128 * 1024
    assert db.details["blocks"] == {"m": 64, "n": 64, "k": 32}
    assert db.details["dram_bytes"]["filter"] == single.details["dram_bytes"]["filter"]


def _tpu_v4_like(make_device, sram: str) -> Device:
    """8 arrays of 128x128 over 2 cores at 1.05 GHz, 1.2 TB/s HBM, ``sram`` per SRAM role."""
    return make_device(
        array={"count": 8, "shape": [128, 128], "clock": "1.05 GHz",
               "flops_per_cycle": {"bf16": 32768, "int8": 32768}},
        memory=[{"name": "hbm", "capacity": "32 GiB", "bandwidth": "1200 GB/s",
                 "energy_per_byte": "1 pJ/B"},
                {"name": "vmem", "capacity": "32 MiB", "bandwidth": "16 TB/s",
                 "energy_per_byte": "0.1 pJ/B"}],
        params={"dataflow": "ws", "cores": 2,
                "sram": {"ifmap": sram, "filter": sram, "ofmap": sram}})


@pytest.mark.parametrize("sram", ["8 MiB", "16 MiB"])
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_large_gemm_on_a_tpu_v4_like_spec_is_compute_bound(make_device, sram, dataflow):
    # 8192^3 bf16 = 1.1 TFLOP: 4.0 ms at 275 TFLOP/s, while 1.2 TB/s moves 4.8 GB in that time.
    # Without SRAM blocking the streamed operand was re-read once per 128-wide fold (64x,
    # 8.99 GB): memory-bound at ~53% of peak. Blocked, the SRAMs' blocks cut the re-reads to a
    # few passes (A 2x and B 16x per array share at 8 MiB for ws).
    op = MatMul(m=8192, n=8192, k=8192)
    c = _cost(op, _tpu_v4_like(make_device, sram), dataflow)
    assert c.bound == "compute"
    assert c.utilization > 0.8
    assert c.details["blocks"] is not None
    assert c.dram_bytes < 3e9  # 8.99 GB unblocked
    assert c.details["stall_cycles"] < 0.01 * c.details["cycles"]
    assert max(c.details["refetch"].values()) <= 16
    assert any(n.startswith("blocked ") and "A read" in n and "B read" in n for n in c.notes)


SRAM_SWEEP = [2.0**e for e in range(10, 27)]  # 1 KiB .. 64 MiB per SRAM


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", [*SHAPES, (1000, 3000, 700), (4096, 7, 512)])
@pytest.mark.parametrize("role", [None, *core.OPERANDS])  # all three SRAMs, or one of them
def test_dram_traffic_never_increases_as_sram_grows(dev, dataflow, m, n, k, role):
    # One array: the blocked schedule is the cheapest over a candidate set that only grows
    # with the SRAMs, and each candidate's traffic only shrinks, so the total never goes up.
    op = MatMul(m=m, n=n, k=k)
    traffic, latency = [], []
    for cap in SRAM_SWEEP:
        sram = {o: (cap if role in (None, o) else MiB) for o in core.OPERANDS}
        c = _cost(op, _with_params(dev, sram=sram), dataflow)
        assert c.dram_bytes >= op.min_bytes * (1 - 1e-12)
        traffic.append(c.dram_bytes)
        latency.append(c.latency_s)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(traffic, traffic[1:], strict=False))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(latency, latency[1:], strict=False))
    assert traffic[-1] == pytest.approx(op.min_bytes) or role is not None


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", [(8192, 8192, 8192), (4096, 4096, 4096), (1000, 3000, 700)])
def test_dram_traffic_never_increases_as_sram_grows_on_eight_arrays(make_device, dataflow,
                                                                     m, n, k):
    # On several arrays the mapper picks the split with the fewest cycles, not bytes, so only
    # the latency is a law in general; for these GEMMs on the TPU-v4-like spec the traffic is
    # monotone too (the split does not change over the sweep).
    op = MatMul(m=m, n=n, k=k)
    d = _tpu_v4_like(make_device, "8 MiB")
    runs = [_cost(op, _with_params(d, sram={o: 2.0**e for o in core.OPERANDS}), dataflow)
            for e in range(16, 29)]  # 64 KiB .. 256 MiB per SRAM
    traffic = [c.dram_bytes for c in runs]
    latency = [c.latency_s for c in runs]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(traffic, traffic[1:], strict=False))
    assert all(b <= a * (1 + 1e-12) for a, b in zip(latency, latency[1:], strict=False))


# -- dtypes, efficiencies, several arrays ---------------------------------------------------
def test_weights_only_quantisation_reads_fewer_filter_bytes(dev):
    bf16 = _cost(MatMul(m=64, n=256, k=256, weight=True), dev, "ws")
    int4 = _cost(MatMul(m=64, n=256, k=256, weight=True, weight_dtype="int4"), dev, "ws")
    assert bf16.details["dram_bytes"]["filter"] == 256 * 256 * 2
    assert int4.details["dram_bytes"]["filter"] == 256 * 256 * 0.5
    assert int4.details["compute_cycles"] == bf16.details["compute_cycles"]  # computes in bf16
    assert int4.compute_class == "bf16"


def test_dtype_the_array_cannot_run_is_a_mapping_error(make_device):
    d = make_device(array={"flops_per_cycle": {"int8": 2048}})
    with pytest.raises(MappingError, match="cannot run fp32"):
        _cost(MatMul(m=8, n=8, k=8, dtype="fp32"), d)
    # fp16 falls back to bf16 (DTYPE_FALLBACK), which this array has
    c = _cost(MatMul(m=8, n=8, k=8, dtype="fp16"), make_device())
    assert c.compute_class == "bf16"


def test_unknown_dataflow_is_a_mapping_error(dev):
    with pytest.raises(MappingError, match="unknown dataflow 'xs'"):
        _cost(MatMul(m=8, n=8, k=8), dev, "xs")
    with pytest.raises(MappingError, match="unknown dataflow"):
        _cost(MatMul(m=8, n=8, k=8), _with_params(dev, dataflow="rs"))


def test_dataflow_from_options_then_spec_then_ws(dev):
    assert _cost(MatMul(m=8, n=8, k=8), dev).details["dataflow"] == "os"  # the spec's
    assert _cost(MatMul(m=8, n=8, k=8), dev, "is").details["dataflow"] == "is"
    bare = dataclasses.replace(dev, params={k: v for k, v in dev.params.items()
                                            if k != "dataflow"})
    assert _cost(MatMul(m=8, n=8, k=8), bare).details["dataflow"] == "ws"


def test_compute_efficiency_and_packed_macs_scale_compute_cycles(make_device):
    base = _cost(MatMul(m=64, n=64, k=64), make_device(), "os")
    slow = _cost(MatMul(m=64, n=64, k=64),
                 make_device(params={"compute_efficiency": {"bf16": 0.5}}), "os")
    assert slow.details["compute_cycles"] == pytest.approx(2 * base.details["compute_cycles"])
    # an array whose int8 rate is twice its bf16 rate does 2 int8 MACs per PE per cycle
    packed = make_device(array={"flops_per_cycle": {"bf16": 2048, "int8": 4096}})
    i8 = _cost(MatMul(m=64, n=64, k=64, dtype="int8"), packed, "os")
    assert i8.details["compute_cycles"] == pytest.approx(504 / 2)
    assert i8.details["utilization"] == pytest.approx(base.details["utilization"])


def test_four_arrays_split_the_work_and_count_imbalance_by_ceil(make_device):
    one = make_device()
    four = make_device(array={"count": 4})
    op = MatMul(m=64, n=128, k=64)
    c1, c4 = _cost(op, one, "os"), _cost(op, four, "os")
    assert c1.details["compute_cycles"] == 2 * 4 * 126
    assert c4.details["arrays"] == 4 and c4.details["arrays_used"] == 4
    assert c4.details["compute_cycles"] == 2 * 126  # N = 128 -> 32 per array, 2 M folds
    # N = 130 over 4 arrays -> ceil = 33 columns each, so every array needs 2 column folds
    ragged = _cost(MatMul(m=64, n=130, k=64), four, "os")
    assert ragged.details["split"] in ("n", "m")
    assert ragged.details["compute_cycles"] >= 2 * 126
    assert ragged.details["compute_cycles"] <= c1.details["compute_cycles"]


def test_split_operand_broadcast_is_fetched_once(make_device):
    # os, split over N: every array needs all of A; it is fetched once and broadcast.
    four = make_device(array={"count": 4})
    c = _cost(MatMul(m=64, n=128, k=64), four, "os")
    assert c.details["split"] == "n"
    assert c.details["dram_bytes"] == {"ifmap": 64 * 64 * 2, "filter": 64 * 128 * 2,
                                       "ofmap": 64 * 128 * 2}


@pytest.mark.parametrize("m,n,k,batch", [(1, 1, 1, 1), (7, 100, 33, 1), (64, 64, 64, 4),
                                         (1, 4096, 4096, 1), (333, 2048, 64, 1),
                                         (128, 128, 128, 64), (4096, 7, 512, 3)])
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_more_arrays_never_slower(make_device, m, n, k, batch, dataflow):
    op = MatMul(m=m, n=n, k=k, batch=batch)
    lat = []
    for count in (1, 2, 4, 8):
        d = make_device(array={"count": count},
                        params={"cores": 2, "sram": {"ifmap": "64 KiB", "filter": "64 KiB",
                                                     "ofmap": "64 KiB"}})
        lat.append(_cost(op, d, dataflow).latency_s)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lat, lat[1:], strict=False))


def test_batched_gemm_splits_over_the_batch(make_device):
    d = make_device(array={"count": 8})
    c = _cost(MatMul(m=32, n=32, k=32, batch=64), d, "os")
    assert c.details["split"] == "batch"
    assert c.details["folds"] == 8  # 64 GEMMs of one fold each over 8 arrays
    assert c.details["compute_cycles"] == 8 * 94


# -- conv2d and attention -------------------------------------------------------------------
def test_conv2d_is_an_im2col_gemm(dev):
    op = Conv2d(n=1, c=64, h=56, w=56, k=128, r=3, s=3, pad=1)
    c = _cost(op, dev, "os")
    assert c.details["gemm"] == [1, 56 * 56, 128, 64 * 9]
    # ceil(3136/32) * ceil(128/32) folds of 576 + 62 cycles
    assert c.details["compute_cycles"] == 98 * 4 * 638
    assert c.flops.matrix == op.flops().matrix


def test_grouped_conv_runs_groups_gemms(dev):
    op = Conv2d(n=1, c=64, h=28, w=28, k=64, r=3, s=3, pad=1, groups=2)
    c = _cost(op, dev, "os")
    assert c.details["gemm"] == [2, 28 * 28, 32, 32 * 9]
    assert c.details["folds"] == 2 * math.ceil(784 / 32) * 1
    assert c.details["compute_cycles"] == 2 * 25 * (288 + 62)


def test_conv_input_expansion_reaches_dram_only_without_room_for_input_rows(make_device):
    op = Conv2d(n=1, c=64, h=56, w=56, k=64, r=3, s=3, pad=1)
    raw = 64 * 56 * 56 * 2
    roomy = _cost(op, make_device(), "ws")
    assert roomy.details["im2col_on_chip"]
    assert roomy.details["dram_bytes"]["ifmap"] == pytest.approx(raw)
    # input rows band = 3 rows x 58 x 64 ch x 2 B = 22 KiB > 8 KiB usable
    tight = _cost(op, make_device(params={"sram": {"ifmap": "16 KiB", "filter": "1 MiB",
                                                   "ofmap": "1 MiB"}}), "ws")
    assert not tight.details["im2col_on_chip"]
    expanded = 56 * 56 * 64 * 9 * 2
    # the expanded matrix is read once (changed by SRAM blocking: the unblocked rule re-read
    # all of A once per N fold, 64 / 32 = 2x): B (576 x 64 x 2 B = 72 KiB) stays whole in the
    # filter SRAM and N = 64 is one block, so A streams in 64 x 64 blocks (8 KiB) exactly once
    assert tight.details["dram_bytes"]["ifmap"] == pytest.approx(expanded)
    assert tight.details["blocks"] == {"m": 64, "n": 64, "k": 64}
    assert any("im2col" in n for n in tight.notes)


def test_attention_is_two_gemms_plus_vector_softmax(dev):
    op = Attention(batch=1, heads=8, head_dim=64, seq=256)
    c = _cost(op, dev, "os")
    qk, pv = op.as_gemms()
    g = c.details["gemms"]
    assert g["qk"]["folds"] == qk.batch * math.ceil(qk.m / 32) * math.ceil(qk.n / 32)
    assert g["pv"]["folds"] == pv.batch * math.ceil(pv.m / 32) * math.ceil(pv.n / 32)
    kv_append = 2 * 256 * 8 * 64 * 2
    assert c.details["dram_bytes"]["kv_append"] == kv_append
    append_cycles = kv_append / 100.0
    assert c.details["cycles"] == pytest.approx(g["qk"]["cycles"] + g["pv"]["cycles"]
                                                + append_cycles)
    assert c.latency_s == pytest.approx(c.details["cycles"] / 1e9 + c.details["softmax_s"])
    assert c.details["softmax_s"] > 0
    assert c.dram_bytes >= op.min_bytes
    assert c.flops == op.flops()


def test_decode_attention_has_low_utilisation(dev):
    prefill = _cost(Attention(batch=1, heads=8, head_dim=64, seq=512), dev, "ws")
    decode = _cost(Attention(batch=1, heads=8, head_dim=64, seq=1, context=512,
                             phase="decode"), dev, "ws")
    assert decode.details["utilization"] < 0.1 < prefill.details["utilization"]
    assert any("GEMV-like" in n for n in decode.notes)


def test_attention_scores_round_trip_dram_when_they_do_not_fit(make_device):
    op = Attention(batch=1, heads=2, head_dim=64, seq=512, causal=False)
    fused = _cost(op, make_device(), "os")  # 512 x 512 x 2 B = 512 KiB <= 512 KiB usable
    spilled = _cost(op, make_device(params={"sram": {"ifmap": "1 MiB", "filter": "1 MiB",
                                                     "ofmap": "256 KiB"}}), "os")
    assert fused.details["scores_on_chip"] and not spilled.details["scores_on_chip"]
    scores = 2 * 512 * 512 * 2
    assert spilled.dram_bytes - fused.dram_bytes == pytest.approx(2 * scores)


# -- registration, streaming ops and explanations -------------------------------------------
def test_registered_kinds():
    kinds = {k for (_, k) in registered("systolic")}
    assert kinds == {"matmul", "conv2d", "attention", "collective", *STREAMING_KINDS}


def test_streaming_ops_use_the_common_model(dev):
    op = Softmax(rows=128, cols=1024)
    assert _cost(op, dev) == streaming_cost(op, dev, MapOptions())


def test_collective_without_a_link_is_a_mapping_error(dev):
    with pytest.raises(MappingError, match="needs a link"):
        _cost(Collective(collective="allreduce", bytes=1e6, devices=4), dev)


def test_notes_explain_folds_fill_drain_and_bound(dev):
    c = _cost(MatMul(m=64, n=64, k=64), dev, "os")
    text = "\n".join(c.notes)
    assert "4 folds per array of 126 cycles" in text
    assert "fill/drain is 49.2% of array time" in text  # 62 / 126
    assert "compute-bound" in text
    assert c.details["sram_fits"] == {"ifmap": True, "filter": True, "ofmap": True}


def test_fold_cycles_rejects_unknown_dataflow():
    with pytest.raises(MappingError):
        core.fold_cycles("xs", 1, 1, 1, 1, 1, True)


def test_sram_defaults_to_the_on_chip_level_split_in_three(dev):
    bare = dataclasses.replace(dev, params={k: v for k, v in dev.params.items() if k != "sram"})
    caps, source = core.sram_capacities(bare)
    assert caps == {k: MiB for k in core.OPERANDS}
    assert "sram" in source


def test_kind_efficiency_scales_streaming_ops_and_attention_only():
    base, dev = (load_arch("tpu-v4", ov).device
                 for ov in ({}, {"params.kind_efficiency": "{softmax: 0.5, attention: 0.2}"}))
    sm = Softmax(rows=8192, cols=8192, dtype="bf16")
    b, s = cost_op(sm, base), cost_op(sm, dev)
    assert (s.compute_s, s.memory_s) == pytest.approx((2 * b.compute_s, 2 * b.memory_s))
    att = Attention(batch=4, heads=16, head_dim=128, seq=2048, dtype="bf16")
    b, s = cost_op(att, base), cost_op(att, dev)
    assert s.latency_s - s.overhead_s == pytest.approx((b.latency_s - b.overhead_s) / 0.2)
    mm = MatMul(m=2048, n=2048, k=2048, dtype="bf16")
    assert cost_op(mm, dev) == cost_op(mm, base)
