"""The compute layer of ``hwsim ui`` (simulator/ui/model.py), without a browser.

The page must be a thin layer over the Python API: a scenario gives exactly what
``simulate`` (and so ``hwsim run --set``) gives, a slider left at the spec value is no
override at all, bad values come back as the hwsim message, and physics holds (more bandwidth
is never slower, every op sits under the roofline). The Panel wiring (simulator/ui/app.py) is
checked the same way when panel is installed; the browser test is tests/ui/.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.api import simulate
from simulator.arch.loader import load_arch
from simulator.serve.planner import fleet_system
from simulator.ui import model as m

DEFAULT = m.Scenario()  # the CLI's default run: llama2-7b decode, batch 8, context 2048, H100


def _view(s: m.Scenario) -> m.View:
    o = m.run(s)
    assert o.error is None, o.error
    assert o.view is not None
    return o.view


# -- knobs and overrides ---------------------------------------------------------------------
def test_spec_knobs_read_the_spec_of_each_family() -> None:
    k = m.spec_knobs("h100-sxm")
    # arch_specs/gpu/h100-sxm.yaml: 528 tensor cores (132 SMs x 4) at 1.83 GHz, 3.35 TB/s HBM3,
    # 80 GB, 50 MiB L2
    assert (k.unit_name, k.units, k.clock_hz) == ("tensor_core", 528, 1.83e9)
    assert (k.dram_name, k.dram_bandwidth_Bps, k.dram_capacity_bytes) == ("hbm", 3.35e12, 80e9)
    assert (k.sram_name, k.sram_bytes) == ("l2", 50 * 2**20)
    t = m.spec_knobs("tpu-v5e")  # arch_specs/tpu/tpu-v5e.yaml: 4 MXUs, 16 GiB HBM, VMEM
    assert (t.unit_name, t.units, t.dram_name, t.sram_name) == ("mxu", 4, "hbm", "vmem")


def test_parts_are_single_parts_and_workloads_the_zoo() -> None:
    parts = m.parts()
    assert {"h100-sxm", "tpu-v5e", "alveo-u280", "eyeriss", "cpu-host"} <= set(parts)
    assert not {"dgx-h100", "tpu-v4-pod"} & set(parts)  # systems: their fields are not --set
    assert {"llama2-7b", "gpt2", "bert-base", "resnet50"} <= set(m.workloads())


def test_a_knob_at_the_spec_value_is_no_override() -> None:
    k = m.spec_knobs("h100-sxm")
    at_spec = m.Scenario(units=k.units, clock_hz=k.clock_hz,
                         dram_bandwidth_Bps=k.dram_bandwidth_Bps,
                         dram_capacity_bytes=k.dram_capacity_bytes, sram_bytes=k.sram_bytes)
    assert m.overrides_for(DEFAULT) == {} == m.overrides_for(at_spec)


def test_knobs_become_set_paths_named_by_the_part() -> None:
    ov = m.overrides_for(m.Scenario(arch="tpu-v5e", units=8, dram_bandwidth_Bps=1.6e12,
                                    sram_bytes=64 * 2**20,
                                    extra=("power.tdp=300 W", "  ")))
    assert ov == {"compute.mxu.count": "8", "memory.hbm.bandwidth": "1600000000000.0 B/s",
                  "memory.vmem.capacity": "67108864.0 B", "power.tdp": "300 W"}
    # an extra line wins over a knob on the same path, as the last --set does on the CLI
    ov = m.overrides_for(m.Scenario(dram_bandwidth_Bps=1e12,
                                    extra=("memory.hbm.bandwidth=2 TB/s",)))
    assert ov == {"memory.hbm.bandwidth": "2 TB/s"}


# -- the same numbers as the API -------------------------------------------------------------
def test_default_scenario_is_the_cli_default_run() -> None:
    v = _view(DEFAULT)
    r = simulate("llama2-7b", "h100-sxm", phase="decode", batch=8, context=2048)
    assert v.latency_s == pytest.approx(r.latency_s, rel=1e-12)
    assert v.energy_j == pytest.approx(r.energy_j, rel=1e-12)
    assert v.throughput == pytest.approx(r.throughput[0], rel=1e-12)
    assert v.throughput_unit == r.throughput[1] == "tokens/s"
    assert v.usd_per_million_tokens == pytest.approx(r.usd_per_million_tokens, rel=1e-12)
    assert v.overrides == {}


def test_a_knob_equals_the_same_set_override() -> None:
    v = _view(m.Scenario(dram_bandwidth_Bps=4.8e12, clock_hz=1.5e9))
    r = simulate("llama2-7b", "h100-sxm", phase="decode", batch=8, context=2048,
                 overrides=["memory.hbm.bandwidth=4.8 TB/s",
                            "compute.tensor_core.clock=1.5 GHz"])
    assert v.latency_s == pytest.approx(r.latency_s, rel=1e-12)
    assert v.energy_j == pytest.approx(r.energy_j, rel=1e-12)


def test_tp_runs_on_a_fleet_of_the_part() -> None:
    v = _view(m.Scenario(tp=2))
    r = simulate("llama2-7b", fleet_system(load_arch("h100-sxm"), 2), phase="decode", batch=8,
                 context=2048, tp=2)
    assert v.latency_s == pytest.approx(r.latency_s, rel=1e-12)
    # half the weights per device: the footprint per device drops (22.1 GB -> ~11 GB)
    assert v.memory_bytes < 0.6 * _view(DEFAULT).memory_bytes


def test_compare_drops_the_what_if_knobs() -> None:
    out = m.compare(m.Scenario(dram_bandwidth_Bps=1e12, workload="gpt2", context=512),
                    ["h100-sxm", "a100-sxm-80gb"])
    assert list(out) == ["h100-sxm", "a100-sxm-80gb"]
    h = simulate("gpt2", "h100-sxm", phase="decode", batch=8, context=512)
    assert out["h100-sxm"].view.latency_s == pytest.approx(h.latency_s, rel=1e-12)
    assert out["h100-sxm"].view.overrides == {}


# -- physics ---------------------------------------------------------------------------------
def test_more_bandwidth_is_never_slower() -> None:
    lat = [_view(m.Scenario(dram_bandwidth_Bps=bw)).latency_s
           for bw in (1e12, 2e12, 3.35e12, 6.7e12, 13.4e12)]
    assert all(b <= a for a, b in zip(lat, lat[1:])), lat
    # decode is memory-bound: 1 -> 2 TB/s cuts the step by more than a third
    assert lat[1] < 0.67 * lat[0]


def test_every_op_sits_under_the_roofline() -> None:
    for s in (DEFAULT, m.Scenario(workload="gpt2", phase="prefill", batch=4, seq=512),
              m.Scenario(workload="resnet50", phase="forward", arch="tpu-v5e", batch=16)):
        rf = _view(s).roofline
        assert rf["ridge"] == pytest.approx(rf["matrix_peak"] / rf["bandwidth_Bps"])
        assert rf["intensity"], s
        for x, y in zip(rf["intensity"], rf["flops_s"]):
            assert y <= min(rf["matrix_peak"], rf["bandwidth_Bps"] * x) * (1 + 1e-9), (s, x, y)


# -- bad values: the hwsim message, never an exception ---------------------------------------
@pytest.mark.parametrize("scenario, words", [
    (m.Scenario(dram_bandwidth_Bps=0.0), ("memory.hbm.bandwidth", "positive bandwidth",
                                          "from --set")),
    (m.Scenario(tp=3), ("tp=3 does not divide", "32")),
    (m.Scenario(batch=256), ("needs", "80 GB")),
    (m.Scenario(workload="llama2-70b"), ("needs", "h100-sxm")),
    (m.Scenario(extra=("memory.hbm.bandwidth=fast",)), ("memory.hbm.bandwidth", "fast")),
    (m.Scenario(extra=("no equals sign",)), ("expected dotted.path=value",)),
    (m.Scenario(arch="eyeriss", tp=2), ("TP degree 2", "no chip-to-chip link")),
    (m.Scenario(workload="bert-base", phase="decode"), ("not available for encoder",)),
    (m.Scenario(units=0), ("compute.tensor_core.count",)),
])
def test_bad_values_come_back_as_the_hwsim_message(scenario, words) -> None:
    o = m.run(scenario)
    assert o.view is None and o.error
    assert all(w in o.error for w in words), o.error
    assert "Traceback" not in o.error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bw=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()),
       cap=st.one_of(st.floats(-1e15, 1e15), st.none()),
       units=st.one_of(st.integers(-5, 10**7), st.none()),
       clock=st.one_of(st.floats(-1e10, 1e13), st.none()),
       tp=st.integers(1, 9), batch=st.integers(1, 64),
       extra=st.lists(st.text(max_size=30), max_size=2))
def test_fuzz_any_knob_gives_numbers_or_a_message(bw, cap, units, clock, tp, batch,
                                                  extra) -> None:
    o = m.run(m.Scenario(workload="gpt2", context=256, batch=batch, tp=tp,
                         dram_bandwidth_Bps=bw, dram_capacity_bytes=cap, units=units,
                         clock_hz=clock, extra=tuple(extra)))
    assert (o.view is None) != (o.error is None)
    if o.view is not None:
        v = o.view
        assert math.isfinite(v.latency_s) and v.latency_s > 0
        assert math.isfinite(v.energy_j) and v.energy_j > 0
    else:
        assert o.error.strip() and "Traceback" not in o.error


# -- the Panel wiring (no browser) -----------------------------------------------------------
def test_app_slider_moves_update_the_page_and_errors_replace_numbers() -> None:
    pytest.importorskip("panel")
    from simulator.ui.app import WhatIf

    w = WhatIf()
    # every slider at the spec: no override (seq is only used by prefill/forward)
    assert w.scenario() == replace(DEFAULT, seq=512)
    assert w.status.object == "" and w.metrics.visible
    base = _view(DEFAULT).latency_s
    assert f'data-value="{base!r}"' in w.metrics.object
    w.bw.value = 2 * 3350.0  # GB/s
    faster = _view(m.Scenario(dram_bandwidth_Bps=6.7e12)).latency_s
    assert faster < base and f'data-value="{faster!r}"' in w.metrics.object
    w.bw.value = 0.0
    assert "hwsim-error" in w.status.object and "positive bandwidth" in w.status.object
    assert not w.metrics.visible
    w.arch.value = "tpu-v5e"  # a new part resets the spec sliders to its spec
    assert w.scenario().dram_bandwidth_Bps is None and w.bw.value == pytest.approx(819.0)
    w.arch.value = "h100-sxm"
    assert w.metrics.visible and w.status.object == ""
    # the extra box is --set too: 8 GB of HBM cannot hold the 22 GB of the decode step
    w.bw.value, w.extra.value = 1000.0, "memory.hbm.capacity=8 GB"
    assert "needs 22.1 GB" in w.status.object and "8 GB of hbm" in w.status.object
    # the reset button puts the shipped part back
    w.reset.clicks += 1
    assert m.overrides_for(w.scenario()) == {} and w.extra.value == ""
    assert w.metrics.visible and f'data-value="{base!r}"' in w.metrics.object
    # a CNN has no decode: the phase falls back to auto and the page shows numbers again
    w.workload.value = "resnet50"
    assert (w.phase.value, w.phase.options) == ("auto", ["auto", "forward"])
    assert w.metrics.visible and w.status.object == ""
    w.tabs.active = 1
    w.compare_parts.value = ["h100-sxm"]
    assert "pick 2 to 4 parts" in w.compare_table.object
    w.compare_parts.value = ["h100-sxm", "a100-sxm-80gb"]
    assert w.compare_table.object.count("hwsim-compare-row") == 2
