"""FPGA mapper: a PE array sized from the DSP budget, run on the shared systolic model.

Devices are built from YAML written to tmp_path (through the real loader); the numbers are an
Alveo-U280-like part (9,024 DSP48E2 slices, HBM2 at 460 GB/s) so the tests do not depend on
the shipped spec.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from simulator.arch.loader import load_arch
from simulator.arch.spec import Device
from simulator.errors import MappingError
from simulator.mapping.base import MapOptions
from simulator.mapping.fpga import DEFAULT_PE_ARRAY, array_setup, pe_layout
from simulator.mapping.registry import cost_op, registered
from workloads.ops import Attention, Conv2d, MatMul, Softmax


def _spec(**over) -> dict:
    spec = {
        "name": "toy-fpga", "kind": "fpga", "family": "fpga", "process_node": "16 nm",
        "compute": [
            # a DSP48E2: one fp16 MAC (2 FLOP) or two packed int8 MACs (4 FLOP) per cycle
            {"name": "dsp_array", "unit": "matrix", "count": 9024, "clock": "300 MHz",
             "flops_per_cycle": {"int8": 4, "fp16": 2}},
            {"name": "lut_vector", "unit": "vector", "count": 1, "clock": "300 MHz",
             "flops_per_cycle": {"fp16": 512, "int8": 1024, "fp32": 256}},
        ],
        "memory": [
            {"name": "hbm", "capacity": "8 GiB", "bandwidth": "460 GB/s",
             "energy_per_byte": "4 pJ/B"},
            {"name": "ddr4", "capacity": "32 GiB", "bandwidth": "38 GB/s"},
            {"name": "uram", "capacity": "30 MiB", "bandwidth": "10 TB/s",
             "energy_per_byte": "0.5 pJ/B"},
        ],
        "power": {"tdp": "225 W", "static": "25 W"},
        "params": {"bandwidth_efficiency": 1.0, "dataflow": "ws"},
    }
    spec["params"].update(over.pop("params", {}))
    spec["compute"][0].update(over.pop("dsp", {}))
    spec.update(over)
    return spec


@pytest.fixture
def make_device(tmp_path):
    counter = iter(range(1000))

    def make(**over) -> Device:
        path = tmp_path / f"fpga{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(_spec(**over)))
        return load_arch(str(path)).device

    return make


def _cost(op, device, dataflow=None):
    return cost_op(op, device, MapOptions(dataflow=dataflow))


def test_pe_layout_replicates_a_fixed_engine():
    assert DEFAULT_PE_ARRAY == (32, 32)
    assert pe_layout(1024) == (1, 1.0)
    assert pe_layout(9024) == (8, 1.0)       # 9024 // 1024; 832 lanes unused
    assert pe_layout(18048) == (17, 1.0)     # 17408 PEs, 640 lanes unused
    assert pe_layout(256) == (1, 0.25)       # below one engine: time-multiplexed
    assert pe_layout(5000, (64, 64)) == (1, 1.0)
    with pytest.raises(ValueError):
        pe_layout(0)


def test_int8_packs_two_macs_per_dsp(make_device):
    d = make_device()
    i8 = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int8"), d)
    f16 = _cost(MatMul(m=1024, n=1024, k=1024, dtype="fp16"), d)
    assert i8.details["macs_per_dsp"] == 2 and f16.details["macs_per_dsp"] == 1
    assert i8.details["mac_lanes"] == 2 * f16.details["mac_lanes"] == 2 * 9024
    # no shape in the spec: copies of the default 32x32 engine (18048 // 1024, 9024 // 1024)
    assert i8.details["array"] == f16.details["array"] == [32, 32]
    assert (i8.details["arrays"], f16.details["arrays"]) == (17, 8)
    assert (i8.details["pe_count"], f16.details["pe_count"]) == (17 * 1024, 8 * 1024)
    assert i8.details["pe_array_source"] == "default"
    assert "DSP48E2" in i8.details["dsp_packing"] and f16.details["dsp_packing"] is None
    assert any("two int8 MACs packed per DSP48E2" in n for n in i8.notes)
    assert any("17 x the default 32x32 PE array (640 MAC lanes unused)" in n for n in i8.notes)
    assert not any("DSP48E2" in n for n in f16.notes)
    # ws, split over N: 17 engines get ceil(1024/17) = 61 columns (2 column folds) each, 8
    # engines 128 (4 column folds); 32 K folds of 1024 + 62 cycles either way
    assert i8.details["compute_cycles"] == 32 * 2 * 1086
    assert f16.details["compute_cycles"] == 32 * 4 * 1086


def test_int8_gets_twice_the_replicated_arrays_of_fp16(make_device):
    d = make_device(dsp={"shape": [32, 32], "count": 4096})
    i8 = array_setup(MatMul(m=8, n=8, k=8, dtype="int8"), d, MapOptions())
    f16 = array_setup(MatMul(m=8, n=8, k=8, dtype="fp16"), d, MapOptions())
    assert (i8.rows, i8.cols, i8.arrays) == (32, 32, 8)   # 8192 lanes / 1024 PEs
    assert (f16.rows, f16.cols, f16.arrays) == (32, 32, 4)
    assert i8.macs_per_pe == f16.macs_per_pe == 1.0


def test_budget_below_one_array_time_multiplexes_it(make_device):
    d = make_device(dsp={"shape": [32, 32], "count": 256})  # 256 fp16 lanes for 1024 PEs
    s = array_setup(MatMul(m=8, n=8, k=8, dtype="fp16"), d, MapOptions())
    assert (s.arrays, s.macs_per_pe) == (1, 0.25)
    c = _cost(MatMul(m=64, n=64, k=64, dtype="fp16"), d, "os")
    assert c.details["compute_cycles"] == pytest.approx(504 * 4)


def test_exact_cycles_match_the_shared_systolic_model(make_device):
    # 1024 fp16 DSPs -> a 32x32 array: the systolic unit tests' hand-computed 64^3 numbers
    d = make_device(dsp={"count": 1024})
    os_ = _cost(MatMul(m=64, n=64, k=64, dtype="fp16"), d, "os")
    assert os_.details["array"] == [32, 32]
    assert os_.details["folds"] == 4
    assert os_.details["compute_cycles"] == 4 * (64 + 32 + 32 - 2)
    ws = _cost(MatMul(m=100, n=40, k=70, dtype="fp16"), d, "ws")
    assert ws.details["compute_cycles"] == 3 * 2 * (100 + 62)  # double buffered by default
    # the design clock sets the time: 300 MHz
    assert os_.compute_s == pytest.approx(504 / 300e6)


def test_hbm_is_dram_and_uram_is_the_sram(make_device):
    c = _cost(MatMul(m=256, n=256, k=256, dtype="int8"), make_device())
    assert list(c.bytes_by_level) == ["hbm", "uram"]
    assert c.dram_bytes == pytest.approx(3 * 256 * 256)
    assert c.details["sram_source"] == "memory.uram split in three"
    assert c.energy.memory_j["hbm"] == pytest.approx(c.dram_bytes * 4e-12)


def test_dsp_utilization_scales_the_array(make_device):
    op = MatMul(m=1024, n=1024, k=1024, dtype="fp16")
    full = _cost(op, make_device())
    half = _cost(op, make_device(params={"dsp_utilization": 0.5}))
    assert full.details["mac_lanes"] == 9024 and half.details["mac_lanes"] == 4512
    assert (full.details["arrays"], half.details["arrays"]) == (8, 4)  # 32x32 engines
    assert full.details["array"] == half.details["array"] == [32, 32]
    # ws, split over N: 8 engines get N = 128 each, ceil(1024/32) * ceil(128/32) = 128 folds
    # of 1024 + 62 cycles; 4 engines get N = 256 each, 256 folds: exactly twice the cycles
    assert full.details["split"] == half.details["split"] == "n"
    assert full.details["compute_cycles"] == 128 * 1086
    assert half.details["compute_cycles"] == 256 * 1086
    # a small GEMM takes one fold either way: the same engine, so the same fill and drain
    # (a single array sized to the budget was faster at half the DSPs)
    small = MatMul(m=64, n=64, k=64, dtype="fp16")
    assert (_cost(small, make_device()).latency_s
            <= _cost(small, make_device(params={"dsp_utilization": 0.5})).latency_s)


def test_dsp_fmax_caps_the_design_clock(make_device):
    fast = make_device(dsp={"clock": "500 MHz"})
    capped = make_device(dsp={"clock": "500 MHz"}, params={"dsp_fmax": "250 MHz"})
    op = MatMul(m=512, n=512, k=512, dtype="int8")
    a, b = _cost(op, fast), _cost(op, capped)
    assert a.details["design_clock_hz"] == 500e6 and b.details["design_clock_hz"] == 250e6
    assert b.compute_s == pytest.approx(2 * a.compute_s)
    assert any("dsp_fmax" in n for n in b.notes)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 100, 33), (64, 64, 64), (333, 2048, 64),
                                   (1, 4096, 4096), (1024, 1024, 1024)])
def test_more_dsps_never_slower_with_a_replicated_array_shape(make_device, m, n, k):
    op = MatMul(m=m, n=n, k=k, dtype="int8")
    lat = [_cost(op, make_device(dsp={"shape": [32, 32], "count": dsps})).latency_s
           for dsps in (512, 1024, 2048, 4096, 8192)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lat, lat[1:], strict=False))


FPGA_SHAPES = [(1, 1, 1), (7, 100, 33), (32, 32, 32), (64, 64, 64), (100, 40, 70),
               (333, 2048, 64), (1, 4096, 4096), (2048, 7, 512), (1024, 1024, 1024),
               (4096, 4096, 4096)]


@pytest.mark.parametrize("dtype", ["int8", "fp16"])
@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k", FPGA_SHAPES)
def test_more_dsps_never_slower_without_a_shape(make_device, m, n, k, dataflow, dtype):
    # No shape in the spec: the budget becomes copies of the default 32x32 engine, so doubling
    # the DSPs only adds copies (a single near-square array grew its fill and drain instead).
    op = MatMul(m=m, n=n, k=k, dtype=dtype)
    lat = []
    for dsps in (128, 256, 512, 1024, 2048, 4096, 9024, 18048, 36096):
        c = _cost(op, make_device(dsp={"count": dsps}), dataflow)
        assert c.details["array"] == [32, 32]
        lat.append(c.latency_s)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lat, lat[1:], strict=False))


def test_more_hbm_bandwidth_never_slower(make_device):
    d = make_device()
    op = MatMul(m=1, n=4096, k=4096, dtype="int8")
    lat = []
    for bw in (1e10, 1e11, 1e12):
        dram = dataclasses.replace(d.dram, bandwidth_Bps=bw)
        lat.append(_cost(op, dataclasses.replace(d, memory=(dram, *d.memory[1:]))).latency_s)
    assert lat[0] > lat[1] >= lat[2]


def test_unknown_dataflow_and_unsupported_dtype_are_mapping_errors(make_device):
    d = make_device()
    with pytest.raises(MappingError, match="unknown dataflow"):
        _cost(MatMul(m=8, n=8, k=8, dtype="int8"), d, "xs")
    with pytest.raises(MappingError, match="cannot run fp32"):
        _cost(MatMul(m=8, n=8, k=8, dtype="fp32"), d)  # fp32 falls back to nothing


def test_no_dsp_unit_is_a_mapping_error(make_device):
    d = make_device()
    vec_only = dataclasses.replace(d, compute=d.units("vector"))
    with pytest.raises(MappingError, match="DSP"):
        _cost(MatMul(m=8, n=8, k=8, dtype="int8"), vec_only)


def test_conv_and_attention_run_on_the_pe_array(make_device):
    d = make_device()
    conv = _cost(Conv2d(n=1, c=64, h=28, w=28, k=64, r=3, s=3, pad=1, dtype="int8"), d)
    assert conv.details["gemm"] == [1, 784, 64, 576]
    assert conv.details["dsp_count"] == 9024
    att = _cost(Attention(batch=1, heads=8, head_dim=64, seq=128, dtype="fp16"), d)
    assert set(att.details["gemms"]) == {"qk", "pv"}
    assert att.latency_s > 0 and att.details["softmax_s"] > 0


def test_same_kinds_as_the_systolic_family(make_device):
    fpga = {k for (_, k) in registered("fpga")}
    assert fpga == {k for (_, k) in registered("systolic")}
    c = _cost(Softmax(rows=64, cols=512, dtype="fp16"), make_device())
    assert c.bound in ("memory", "compute")
