"""ASIC area, power and die cost (simulator.cost.silicon): formulas, published checks, errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.arch.loader import load_arch
from simulator.cli import main
from simulator.cost.process import area_model, node_for
from simulator.cost.silicon import (
    die_yield,
    dies_per_wafer,
    mac_area_45nm,
    silicon_report,
)
from simulator.errors import HwsimError, SpecError


def _report(name: str, **overrides):
    return silicon_report(load_arch(name, overrides).device)


# -- formulas -------------------------------------------------------------------------------
def test_dies_per_wafer_is_chiplet_actuarys_formula():
    # 100 mm^2: A_s = (10 + 0.2)^2 = 104.04; pi*145^2/104.04 - pi*290/sqrt(208.08) = 571.7
    assert dies_per_wafer(100.0, area_model()) == 571
    assert dies_per_wafer(1.0e5, area_model()) == 0


def test_negative_binomial_yield_matches_nodes_yaml_examples():
    # nodes.yaml: at D0 0.09/cm^2 a 100 mm^2 die yields 91.4% (alpha 10), 600 mm^2 59.1%
    assert die_yield(100, 0.09, 10) == pytest.approx(0.914, abs=5e-4)
    assert die_yield(600, 0.09, 10) == pytest.approx(0.591, abs=5e-4)
    # alpha -> infinity is Poisson
    assert die_yield(600, 0.09, 1e9) == pytest.approx(math.exp(-0.54), rel=1e-6)


def test_mac_areas_follow_horowitz():
    m = area_model()
    assert mac_area_45nm("int8", m) == 282 + 137       # 8b mult + 32b accumulate
    assert mac_area_45nm("fp16", m) == 1640 + 4184     # fp16 mult + fp32 accumulate
    assert mac_area_45nm("fp32", m) == 7700 + 4184
    order = [mac_area_45nm(d, m) for d in ("int4", "int8", "int16", "fp16", "fp32")]
    assert order == sorted(order)


def test_node_data_resolves_published_figures():
    assert node_for(28).sram_bitcell_um2 == 0.127
    assert node_for(7).logic_kgates_per_mm2 == pytest.approx(91.2e3 / 4)
    assert node_for(3).logic_kgates_per_mm2 == pytest.approx(node_for(5).logic_kgates_per_mm2 * 1.7)
    assert node_for(65).defect_density_per_cm2 == 0.07  # the stated fallback
    assert any("no published defect density" in n for n in node_for(65).notes)


# -- published checks -----------------------------------------------------------------------
def test_tpu_v1_die_is_under_its_published_bound_and_floor_plan_ratio():
    """Jouppi et al. 2017: die < 331 mm^2; floor plan: matrix unit 24%, Unified Buffer 29%.

    The ratio of the two does not depend on the unknown die size; tolerance 30% (a
    first-order model: the UB is a wide, double-ported buffer and the array's wiring is a
    single estimate, nodes.yaml's wiring_overhead)."""
    r = _report("tpu-v1")
    assert 50 < r.area_mm2 < 331
    ratio = r.area_of("mxu") / r.area_of("unified_buffer")
    assert ratio == pytest.approx(24 / 29, rel=0.30)
    # per MAC cell: under the bound the floor plan implies (24% of 331 mm^2 / 65,536)
    assert r.area_of("mxu") / 65536 * 1e6 < 0.24 * 331e6 / 65536


def test_eyeriss_core_area_within_tolerance():
    """Chen et al. 2016: 3.5 mm x 3.5 mm = 12.25 mm^2 core, 65 nm, 168 PEs. Tolerance 30%:
    the model does not enumerate the NoC, the configuration chain or the 27 small GLB banks'
    periphery."""
    r = _report("eyeriss")
    assert r.node == "65nm"
    assert r.area_mm2 == pytest.approx(12.25, rel=0.30)
    assert r.power_w < load_arch("eyeriss").device.power.tdp_w


def test_tpu_v1_peak_power_is_below_tdp():
    r = _report("tpu-v1")
    assert 0 < r.leakage_w < r.power_w < r.tdp_w


# -- physics --------------------------------------------------------------------------------
@pytest.mark.parametrize("path, small, big", [
    ("compute.pe_array.count", 1, 4),
    ("compute.pe_array.shape", "[16, 16]", "[32, 32]"),
    ("memory.sram.capacity", "96 KiB", "4 MiB"),
    ("memory.dram.bandwidth", "10 GB/s", "100 GB/s"),
])
def test_more_hardware_more_area_and_cost(path, small, big):
    a, b = _report("systolic-32x32", **{path: small}), _report("systolic-32x32", **{path: big})
    assert b.area_mm2 > a.area_mm2
    assert b.die_usd > a.die_usd
    assert b.leakage_w > a.leakage_w


def test_a_newer_node_shrinks_the_same_design():
    sizes = [_report("systolic-32x32", process_node=f"{n} nm").area_mm2 for n in (65, 28, 7)]
    assert sizes == sorted(sizes, reverse=True)


def test_hbm_part_pays_for_its_stacks_and_interposer():
    r = _report("tpu-v4")
    m = area_model()
    dram = load_arch("tpu-v4").device.dram
    assert r.memory_usd == pytest.approx(dram.capacity_bytes / 1e9 * m.hbm_usd_per_gb)
    assert r.package_usd == m.cowos_usd + m.package_test_usd
    assert r.unit_cost_usd == pytest.approx(r.die_usd + r.package_usd + r.memory_usd)


# -- errors ---------------------------------------------------------------------------------
def test_a_gpu_is_outside_the_model():
    with pytest.raises(SpecError, match="family 'gpu'"):
        silicon_report(load_arch("h100-sxm").device)


def test_an_unknown_node_names_the_field_and_the_known_nodes():
    with pytest.raises(SpecError) as e:
        _report("systolic-32x32", process_node="12 nm")
    msg = str(e.value)
    assert "process_node: 12 nm" in msg and "28nm" in msg and "systolic-32x32.yaml" in msg


def test_a_regfile_level_that_is_not_on_chip_is_named():
    with pytest.raises(SpecError, match="params.regfile_levels: nope"):
        _report("systolic-32x32", **{"params.regfile_levels": "nope"})


def test_a_bad_pe_datapath_is_refused_by_the_loader():
    with pytest.raises(SpecError, match="params.pe_datapath"):
        load_arch("systolic-32x32", {"params.pe_datapath": "int7"})


# -- CLI ------------------------------------------------------------------------------------
def test_run_reports_area_power_and_unit_cost(capsys):
    assert main(["run", "--workload", "resnet50", "--arch", "tpu-v1", "--batch", "1",
                 "--dtype", "int8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    r = _report("tpu-v1")
    assert d["area_mm2"] == pytest.approx(r.area_mm2)
    assert d["chip_power_w"] == pytest.approx(r.power_w)
    assert d["silicon_cost_usd"] == pytest.approx(r.unit_cost_usd)
    assert d["silicon"]["area_breakdown_mm2"]["mxu"] > 0
    assert main(["run", "--workload", "resnet50", "--arch", "tpu-v1", "--batch", "1",
                 "--dtype", "int8"]) == 0
    out = capsys.readouterr().out
    assert "chip area" in out and "unit cost" in out and "28nm" in out


def test_run_on_a_node_outside_the_data_says_so_and_still_runs(capsys):
    assert main(["run", "--workload", "mlp", "--arch", "systolic-32x32", "--set",
                 "process_node=12 nm", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "area_mm2" not in d and "not modelled" in d["silicon_note"]
    assert d["latency_s"] > 0


def test_gpu_results_carry_no_silicon(capsys):
    assert main(["run", "--workload", "mlp", "--arch", "h100-sxm", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert "area_mm2" not in d and "silicon_note" not in d


# -- fuzz -----------------------------------------------------------------------------------
VALUES = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from(["", "int8", "fp16", "int7", "spad", "sram", "3 nm", "7 nm",
                                    "65 nm", "0 nm", "1e9 nm", "[1, 1]", "[0, 4]",
                                    "[100000, 100000]", "1 B", "1 TiB", "abc"]))
FIELDS = ["process_node", "params.pe_datapath", "params.regfile_levels",
          "compute.pe_array.shape", "compute.pe_array.count", "memory.sram.capacity",
          "memory.dram.bandwidth", "memory.dram.capacity"]


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=3))
def test_any_override_gives_a_finite_report_or_a_clear_error(edits):
    try:
        dev = load_arch("systolic-32x32", {k: str(v) for k, v in edits.items()}).device
        r = silicon_report(dev)
    except HwsimError as e:
        assert str(e).strip()
        return
    d = r.to_dict()
    for k in ("area_mm2", "power_w", "unit_cost_usd", "leakage_w", "die_usd"):
        assert math.isfinite(d[k]) and d[k] > 0, (k, d[k], edits)
    assert 0 < d["yield"] <= 1
