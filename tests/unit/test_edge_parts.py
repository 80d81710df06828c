"""Edge parts (issue 16): Jetson AGX Orin and its power modes, Orin Nano, Coral Edge TPU, Hailo-8,
the A17 Pro Neural Engine and the Raspberry Pi 5: what each spec expresses, the int8-only parts'
refusal of fp16, the Edge TPU's host memory over USB, and the power-mode recipes."""

from __future__ import annotations

import math
import re

import pytest

from simulator import CapacityError, load_arch, predict_op, simulate
from simulator.arch.loader import SPEC_ROOT, list_arch_files
from simulator.cli import main
from simulator.errors import MappingError
from workloads.ops import Conv2d, Elementwise, MatMul
from workloads.zoo import build

ORIN = "jetson-agx-orin-64gb"
#: power mode -> (file, TPCs, GPU clock Hz, LPDDR5 bandwidth B/s, module power W), as the MAXN
#: file's header tabulates them
MODES = {
    60: (ORIN, 8, 1.3e9, 204.8e9, 60.0),
    50: (f"{ORIN}-50w", 8, 828.75e6, 204.8e9, 50.0),
    30: (f"{ORIN}-30w", 4, 624.75e6, 204.8e9, 30.0),
    15: (f"{ORIN}-15w", 3, 420.75e6, 136.512e9, 15.0),
}
INT8_ONLY = ["coral-edge-tpu", "hailo-8"]
EDGE = [ORIN, *(f for f, *_ in MODES.values() if f != ORIN), "jetson-orin-nano-8gb",
        "coral-edge-tpu", "hailo-8", "apple-a17-pro-ane", "raspberry-pi-5"]


def _header(name: str) -> str:
    text = list_arch_files()[name].read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))


@pytest.mark.parametrize("name", EDGE)
def test_edge_parts_ship_in_arch_specs_edge_with_provenance(name):
    assert list_arch_files()[name] == SPEC_ROOT / "edge" / f"{name}.yaml"
    header = _header(name)
    for section in ("Sources", "Modelling decisions", "Derived vs published"):
        assert section in header, f"{name}: header lacks {section!r}"
    assert "http" in header and "estimate" in header.lower()
    for pct in re.findall(r"vs [^\n]*?:\s*([+-]?\d+(?:\.\d+)?)%", header):
        assert abs(float(pct)) <= 1.5, f"{name}: header reports {pct}%"
    assert load_arch(name).name == name


# -- Jetson AGX Orin power modes --------------------------------------------------------------
@pytest.mark.parametrize("watts", sorted(MODES))
def test_orin_power_mode_files_carry_the_mode_table(watts):
    name, tpcs, clock, bw, tdp = MODES[watts]
    d = load_arch(name).device
    sms = 2 * tpcs
    assert d.params["sm_count"] == sms
    assert {u.name: u.count for u in d.compute} == {"tensor_core": 4 * sms, "cuda_core": sms,
                                                   "sfu": sms}
    assert all(u.clock_hz == pytest.approx(clock, rel=1e-3) for u in d.compute)
    assert d.dram.bandwidth_Bps == pytest.approx(bw, rel=1e-3)
    assert d.power.tdp_w == tdp and d.power.static_w < tdp
    assert d.dram.capacity_bytes == 64e9
    pub = d.published
    assert pub["tdp"] == tdp and pub["memory_bandwidth"] == pytest.approx(bw, rel=1e-3)
    # NVIDIA publishes peaks for MAXN only: a mode's peak is MAXN's scaled by SMs and clock
    maxn = load_arch(ORIN).device
    scale = sms / 16 * clock / 1.3e9
    for dt in ("int8", "bf16", "fp32"):
        assert d.peak(dt)[0] == pytest.approx(maxn.peak(dt)[0] * scale, rel=1e-3)


def test_orin_power_modes_order_throughput_and_power():
    rates, watts = [], []
    for w in sorted(MODES, reverse=True):
        r = simulate("resnet50", MODES[w][0], batch=32, dtype="int8")
        rates.append(r.samples / r.latency_s)
        watts.append(r.avg_power_w)
        assert r.avg_power_w < MODES[w][4]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4
    assert watts == sorted(watts, reverse=True)


def test_orin_30w_set_recipe_equals_the_named_variant():
    recipe = ["compute.tensor_core.count=32", "compute.cuda_core.count=8", "compute.sfu.count=8",
              "params.sm_count=8", "compute.tensor_core.clock=624.75MHz",
              "compute.cuda_core.clock=624.75MHz", "compute.sfu.clock=624.75MHz",
              "power.tdp=30 W", "power.static=6 W"]
    assert recipe[0] in _header(ORIN)  # the recipe is the one the header documents
    via_set = load_arch(ORIN, recipe)
    named = load_arch(f"{ORIN}-30w")
    op = MatMul(m=1024, n=1024, k=1024, dtype="int8")
    assert via_set.device.peak("int8") == named.device.peak("int8")
    # the named file also scales the L2 and smem bandwidth with the clock: within a few percent
    assert predict_op(op, via_set).latency_s == pytest.approx(predict_op(op, named).latency_s,
                                                              rel=0.05)


def test_orin_nano_super_and_its_original_15w_recipe():
    super_ = load_arch("jetson-orin-nano-8gb").device
    assert super_.peak("int8")[0] == pytest.approx(67e12 / 2, rel=0.01)
    orig = load_arch("jetson-orin-nano-8gb",
                     ["compute.tensor_core.clock=625MHz", "compute.cuda_core.clock=625MHz",
                      "compute.sfu.clock=625MHz", "memory.lpddr5.bandwidth=68 GB/s",
                      "power.tdp=15 W"]).device
    assert 2 * orig.peak("int8")[0] == pytest.approx(40e12, rel=0.03)  # the blog's "40 TOPS"
    fast = simulate("resnet50", "jetson-orin-nano-8gb", batch=16, dtype="int8")
    slow = simulate("resnet50", load_arch("jetson-orin-nano-8gb", [
        "compute.tensor_core.clock=625MHz", "compute.cuda_core.clock=625MHz",
        "compute.sfu.clock=625MHz", "memory.lpddr5.bandwidth=68 GB/s"]), batch=16, dtype="int8")
    assert 1.3 < slow.latency_s / fast.latency_s < 1.7  # ~1.6x clock, 1.5x bandwidth


# -- int8-only parts ----------------------------------------------------------------------------
@pytest.mark.parametrize("part", INT8_ONLY)
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
def test_int8_only_parts_refuse_float_graphs_with_the_mappers_error(part, dtype):
    with pytest.raises(MappingError) as e:
        simulate("mobilenet-v2", part, dtype=dtype)
    msg = str(e.value)
    assert msg.startswith(f"{part}: matrix unit ") and f"cannot run {dtype}" in msg
    assert "it supports int8" in msg and "\n" not in msg
    with pytest.raises(MappingError, match="no vector unit can run"):
        predict_op(Elementwise(fn="add", numel=1024, dtype=dtype), part)


@pytest.mark.parametrize("part", INT8_ONLY)
def test_int8_only_parts_default_to_int8(part):
    r = simulate("mobilenet-v2", part)
    assert r.meta["dtype"] == "int8"
    assert all(rec.compute_class == "int8" for rec in r.records)


def test_cli_refuses_fp16_on_the_edge_tpu_in_one_line(capsys):
    rc = main(["run", "--workload", "mobilenet-v2", "--arch", "coral-edge-tpu", "--dtype", "fp16"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "coral-edge-tpu: matrix unit 'mxu' cannot run fp16 (it supports int8" in err


def test_neural_engine_runs_fp16_and_int8():
    d = load_arch("apple-a17-pro-ane").device
    assert d.peak("int8")[0] == pytest.approx(35e12, rel=0.01)
    assert d.peak("fp16")[0] == pytest.approx(d.peak("int8")[0] / 2)
    for dt in ("fp16", "int8"):
        assert simulate("mobilenet-v2", "apple-a17-pro-ane", dtype=dt).latency_s > 0


# -- Edge TPU: 8 MB on chip, host memory over USB ---------------------------------------------
def test_edge_tpu_memory_is_host_over_usb_then_8mb_sram():
    d = load_arch("coral-edge-tpu").device
    host, sram = d.memory
    assert (host.name, sram.name) == ("host", "sram")
    assert host.bandwidth_Bps == 0.625e9  # USB 3.0: 5 Gb/s
    assert host.bandwidth_Bps * d.params["bandwidth_efficiency"] == pytest.approx(0.4e9)
    assert sram.capacity_bytes == 8 * 2**20
    assert sum(d.params["sram"].values()) == sram.capacity_bytes


def test_a_model_over_the_8mb_sram_is_bound_by_usb():
    """ResNet-50's 25.6 MB of int8 weights do not fit the 8 MB SRAM: what the parameter
    cache cannot hold (beside the largest activation set) crosses USB every inference, so the
    latency is at least those bytes over the achievable USB rate, and every conv with weights
    off chip is memory-bound."""
    g = build("resnet50", dtype="int8")
    assert g.meta["weight_bytes"] > 8 * 2**20
    r = simulate("resnet50", "coral-edge-tpu")
    res = r.meta["residency"]
    streamed = res["weight_bytes"] - (res["capacity_bytes"] - res["activation_peak_bytes"])
    assert streamed > 0.7 * g.meta["weight_bytes"]
    assert r.latency_s >= streamed / 0.4e9
    convs = [rec for rec in r.records if rec.kind == "conv2d" and rec.dram_bytes > 0]
    assert convs and sum(rec.bound == "memory" for rec in convs) >= 0.9 * len(convs)
    # the M.2 / Mini PCIe module's recipe (PCIe Gen2 x1) from the header
    pcie = simulate("resnet50", "coral-edge-tpu", overrides=[
        "memory.host.bandwidth=500 MB/s", "params.bandwidth_efficiency=0.8"])
    assert pcie.latency_s == pytest.approx(r.latency_s, rel=0.02)  # both ~0.4 GB/s achievable
    usb2 = simulate("resnet50", "coral-edge-tpu", overrides=["memory.host.bandwidth=60 MB/s"])
    assert usb2.latency_s > 5 * r.latency_s  # USB 2.0 (480 Mb/s): ~10x slower link


def test_edge_tpu_depthwise_and_small_convs_run_on_the_array():
    c = predict_op(Conv2d(n=1, c=96, h=56, w=56, k=96, r=3, s=3, pad=1, groups=96, dtype="int8"),
                   "coral-edge-tpu")
    assert c.compute_class == "int8" and c.latency_s > 0 and math.isfinite(c.energy_j)


# -- Hailo-8: no DRAM ---------------------------------------------------------------------------
def test_hailo_has_no_dram_and_refuses_models_over_its_onchip_memory():
    s = load_arch("hailo-8")
    d = s.device
    assert d.dram.name == "onchip" and d.dram.capacity_bytes == 48 * 2**20
    assert s.host_link is not None and s.host_link.bandwidth_Bps == pytest.approx(3.94e9)
    assert simulate("resnet50", "hailo-8", batch=8).latency_s > 0
    with pytest.raises(CapacityError, match="llama3.2-1b"):
        simulate("llama3.2-1b", "hailo-8", phase="decode", context=128)


# -- Raspberry Pi 5 ----------------------------------------------------------------------------
def test_raspberry_pi_5_is_a_fixed_part_not_the_detected_host():
    d = load_arch("raspberry-pi-5").device
    assert not d.params.get("detect") and "detected" not in d.params
    simd = d.compute[0]
    assert (simd.count, simd.clock_hz) == (4, 2.4e9)
    assert dict(simd.flops_per_cycle) == {"fp32": 16, "fp16": 32, "bf16": 16, "int8": 64}
    assert [m.name for m in d.memory] == ["dram", "l3", "l2", "l1"]
    r = simulate("mobilenet-v2", "raspberry-pi-5")
    assert r.meta["dtype"] == "fp32" and r.avg_power_w < d.power.tdp_w


# -- the edge models' config formats ----------------------------------------------------------
@pytest.mark.parametrize("change, needle", [
    ({"blocks": [[4, 32, 16, 1, 0, "relu6"]]}, "kernel must be odd"),
    ({"blocks": [[3, 32, 16, 3, 0, "relu6"]]}, "stride must be 1 or 2"),
    ({"blocks": [[3, 32, 16, 1, 0, "gelu"]]}, "act must be one of relu, relu6, hswish, silu"),
    ({"blocks": [[3, 32, 16]]}, "expected [kernel, expanded, out, stride, se, act]"),
    ({"se_gate": "tanh"}, "field 'se_gate': expected one of sigmoid, hsigmoid"),
    ({"head_channels": 0}, "field 'head_channels': expected a positive integer"),
])
def test_mbconv_config_errors_name_the_field(change, needle):
    from workloads.errors import WorkloadError
    from workloads.importers.hf_config import parse_config
    from workloads.zoo import load_config

    with pytest.raises(WorkloadError) as e:
        parse_config({**load_config("mobilenet-v2"), **change}, "bad.yaml")
    assert needle in str(e.value) and "bad.yaml" in str(e.value)


def test_yolov8_config_errors_name_the_field():
    from workloads.errors import WorkloadError
    from workloads.importers.hf_config import parse_config
    from workloads.zoo import load_config

    with pytest.raises(WorkloadError) as e:
        parse_config({**load_config("yolov8n"), "width_multiple": 0, "image_size": 600}, "y.yaml")
    msg = str(e.value)
    assert "field 'width_multiple': expected a number in (0, 16], got 0" in msg
    assert "field 'image_size': a YOLOv8 input must be a multiple of 32" in msg
