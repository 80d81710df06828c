"""FPGA parts from resources: a part lists its fabric (``resources:``), a design (``design:``,
``designs:``, ``--set design.<field>=...``) builds engines on it, and the loader refuses a
design that overflows a resource, naming the resource, the need, the budget and by how much.

Toy parts are written to tmp_path and loaded through the real loader; the shipped Alveo U280
and U250 are checked for the numbers their headers quote.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml

from simulator import predict_op
from simulator.arch.loader import fpga_design_config, list_arch_files, load_arch
from simulator.arch.spec import (
    BRAM36_BYTES,
    URAM288_BYTES,
    FpgaResources,
    fpga_buffer_use,
)
from simulator.cli import main
from simulator.errors import MappingError, SpecError
from workloads.ops import MatMul

MIB = 2**20


def _toy(**over) -> dict:
    """An Alveo-U280-like part: 9,024 DSP48E2 (int8 two MACs per slice, fp16 two slices per
    MAC, fp32 three), ample LUTs/FFs unless a test says otherwise, 32 HBM channels."""
    spec = {
        "name": "toy-fpga", "kind": "fpga", "family": "fpga", "process_node": "16 nm",
        "compute": [
            {"name": "dsp_array", "unit": "matrix", "count": 9024,
             "flops_per_cycle": {"int8": 4, "fp16": 1, "fp32": 0.667}},
            {"name": "lut_vector", "unit": "vector", "count": 256,
             "flops_per_cycle": {"fp32": 1, "fp16": 2, "int8": 4}},
        ],
        "memory": [
            {"name": "hbm", "capacity": "8 GiB", "bandwidth": "460 GB/s"},
            {"name": "on_chip", "capacity": "40 MiB", "bandwidth": "10 TB/s"},
        ],
        "power": {"tdp": "225 W", "static": "30 W"},
        "params": {"bandwidth_efficiency": 1.0, "dsp_utilization": 0.75},
        "resources": {"luts": 10_000_000, "ffs": 20_000_000, "bram36": 2016, "uram288": 960,
                      "clock": {"min": "50 MHz", "max": "500 MHz"},
                      "channels": {"hbm": 32}},
        "design": {"pe_array": [32, 32], "clock": "300 MHz",
                   "buffers": {"ifmap": "8 MiB", "filter": "8 MiB", "ofmap": "8 MiB"},
                   "memory": "hbm", "channels": 32},
    }
    for key in ("resources", "design", "params"):
        if key in over:
            val = over.pop(key)
            if val is None:
                del spec[key]
            else:
                spec[key].update(val)
    spec["compute"][0].update(over.pop("dsp", {}))
    spec.update(over)
    return spec


@pytest.fixture
def load(tmp_path):
    counter = iter(range(10_000))

    def make(overrides=(), **over):
        path = tmp_path / f"toy{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(_toy(**over), sort_keys=False), encoding="utf-8")
        return load_arch(str(path), list(overrides))

    return make


def _problems(load, overrides=(), **over) -> list[str]:
    with pytest.raises(SpecError) as e:
        load(overrides, **over)
    return e.value.problems


def _cost(op, system):
    return predict_op(op, system)


# -- DSP packing: MACs per cycle per dtype --------------------------------------------------
def test_dsp_packing_sets_the_macs_per_cycle_of_each_dtype(load):
    s = load()
    unit = s.device.units("matrix")[0]
    got = {cls: fpga_design_config(s.device, unit, cls) for cls in ("int8", "fp16", "fp32")}
    # 9,024 DSPs x 0.75 = 6,768 in the budget: int8 2 MACs each, fp16 1/2, fp32 1/3 (0.3335)
    assert {c: g.mac_lanes for c, g in got.items()} == {"int8": 13536, "fp16": 3384,
                                                       "fp32": 2257}
    assert {c: g.engines for c, g in got.items()} == {"int8": 13, "fp16": 3, "fp32": 2}
    assert {c: g.dsp_per_mac for c, g in got.items()} == pytest.approx(
        {"int8": 0.5, "fp16": 2.0, "fp32": 2 / 0.667})
    # the DSPs the built engines use: 13,312 / 2, 3,072 x 2, ceil(2,048 x 2.9985)
    assert {c: g.use("dsps").used for c, g in got.items()} == {"int8": 6656, "fp16": 6144,
                                                              "fp32": 6141}
    assert all(g.filled and g.limit.startswith("DSP slices x dsp_utilization")
               for g in got.values())


def test_int4_packs_four_macs_per_dsp_on_the_shipped_u280():
    s = load_arch("alveo-u280")
    c4 = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int4"), s)
    c8 = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int8"), s)
    assert c4.details["macs_per_dsp"] == 4 and c8.details["macs_per_dsp"] == 2
    assert (c4.details["arrays"], c8.details["arrays"]) == (26, 13)
    assert "four int4 MACs packed per DSP48E2" in c4.details["dsp_packing"]
    assert "WP486" in c8.details["dsp_packing"] and "WP521" in c4.details["dsp_packing"]


def test_the_shipped_u280_keeps_its_engine_counts():
    s = load_arch("alveo-u280")
    d = s.device
    assert d.design.name == "balanced" and d.design.pe_array == (32, 32)
    assert d.design.engines == {} and d.design.buffers == {k: 8 * MIB for k in
                                                          ("ifmap", "filter", "ofmap")}
    assert dict(d.params["sram"]) == dict(d.design.buffers)
    assert all(u.clock_hz == 300e6 for u in d.compute)
    engines = {}
    for dt in ("int8", "int4", "fp16", "bf16", "fp32"):
        engines[dt] = _cost(MatMul(m=512, n=512, k=512, dtype=dt), s).details["arrays"]
    assert engines == {"int8": 13, "int4": 26, "fp16": 3, "bf16": 3, "fp32": 2}


# -- fit and overflow, one resource at a time -------------------------------------------------
def test_dsp_overflow_names_the_need_the_budget_and_the_excess(load):
    problems = _problems(load, design={"pe_array": [80, 64], "engines": {"fp16": 1},
                                       "dtypes": ["fp16"]})
    assert problems == ["design: needs 10,240 DSP slices for 1 x 80 x 64 fp16 PEs at 2 DSP "
                        "per MAC; the part has 9,024 (13% over)"]


def test_a_design_exactly_at_the_dsp_budget_fits(load):
    # 9,024 DSPs = 18,048 int8 MACs = 141 engines of 8 x 16
    s = load(design={"pe_array": [8, 16], "engines": 141, "dtypes": ["int8"]})
    cfg = fpga_design_config(s.device, s.device.units("matrix")[0], "int8")
    assert cfg.use("dsps").used == 9024 and cfg.use("dsps").utilization == 1.0
    assert _problems(load, design={"pe_array": [8, 16], "engines": 142, "dtypes": ["int8"]}) \
        == ["design: needs 9,088 DSP slices for 142 x 8 x 16 int8 PEs at 0.5 DSP per MAC; the "
            "part has 9,024 (1% over)"]


def test_lut_overflow(load):
    problems = _problems(load, resources={"luts": 300_000},
                         design={"engines": {"int8": 13}, "dtypes": ["int8"]})
    assert problems == ["design: needs 319,488 LUTs for 13 x 32 x 32 int8 PEs at 24 LUTs per "
                        "PE (params.luts_per_pe); the part has 300,000 (6% over)"]


def test_ff_overflow(load):
    problems = _problems(load, resources={"ffs": 500_000},
                         design={"engines": {"int8": 13}, "dtypes": ["int8"]})
    assert problems == ["design: needs 559,104 FFs for 13 x 32 x 32 int8 PEs at 42 FFs per "
                        "PE (params.ffs_per_pe); the part has 500,000 (12% over)"]


def test_luts_per_pe_is_a_param_with_family_defaults(load):
    s = load(params={"luts_per_pe": {"int8": 30}})
    cfg = fpga_design_config(s.device, s.device.units("matrix")[0], "int8")
    assert cfg.use("luts").used == 13 * 1024 * 30
    fp16 = fpga_design_config(s.device, s.device.units("matrix")[0], "fp16")
    assert fp16.use("luts").used == 3 * 1024 * 150  # the family default for fp16
    with pytest.raises(SpecError, match=re.escape("params.luts_per_pe.int8: expected a number "
                                                  "in (0, 1e+06], got -3")):
        load(params={"luts_per_pe": {"int8": -3}})


def test_bram_overflow_after_the_uram_is_used(load):
    # 3 x 16 MiB: 456 URAM288 blocks each for ifmap and filter, the last 48 (1.69 MiB) for
    # ofmap, whose remaining 14.31 MiB take 4.5 KiB BRAM36 blocks: 3,257
    problems = _problems(load, design={"buffers": {"ifmap": "16 MiB", "filter": "16 MiB",
                                                   "ofmap": "16 MiB"}})
    assert problems == ["design.buffers: needs 3,257 BRAM36 blocks for the 48 MiB of buffers "
                        "(ifmap 16 MiB, filter 16 MiB, ofmap 16 MiB) once all 960 URAM288 "
                        "blocks are used; the part has 2,016 (62% over)"]


def test_buffer_blocks_are_counted_by_capacity():
    res = FpgaResources(luts=1, bram36=100, uram288=10, clock_min_hz=1e6, clock_max_hz=1e9)
    assert (BRAM36_BYTES, URAM288_BYTES) == (4608, 36864)
    uram, bram = fpga_buffer_use(res, {"ifmap": 36864 * 3 + 1, "filter": 4608,
                                       "ofmap": 36864 * 7})
    # ifmap: 4 URAM (the last one holds a byte); filter: 1 URAM; ofmap: the 5 left + 2 x
    # 36 KiB in 16 BRAM36 blocks
    assert (uram.used, bram.used) == (10, 16)
    assert uram.over is False and bram.over is False
    res = FpgaResources(luts=1, bram36=10, uram288=0, clock_min_hz=1e6, clock_max_hz=1e9)
    _, bram = fpga_buffer_use(res, {"ifmap": 4608 * 11, "filter": 0.0, "ofmap": 0.0})
    assert bram.used == 11 and bram.over and "10 (10% over)" in bram.shortfall()


def test_clock_outside_the_fabric_range(load):
    assert _problems(load, design={"clock": "650 MHz"}) == [
        "design.clock: needs 650 MHz; the fabric's clock range is 50 MHz (resources.clock.min) "
        "to 500 MHz (resources.clock.max) (30% over)"]
    assert _problems(load, design={"clock": "20 MHz"}) == [
        "design.clock: 20 MHz is below the fabric's clock range, 50 MHz (resources.clock.min) "
        "to 500 MHz (resources.clock.max)"]


def test_memory_channels(load):
    assert _problems(load, design={"channels": 40}) == [
        "design.channels: needs 40 hbm channels; the part has 32 (resources.channels.hbm) "
        "(25% over)"]
    half = load(design={"channels": 16}).device
    assert half.dram.name == "hbm" and half.dram.bandwidth_Bps == pytest.approx(230e9)
    assert half.design.channels == 16


def test_platform_shell_takes_its_share(load):
    # 3 x 64 x 64 int8 PEs need 6,144 DSPs: they fit the 8,244 the shell leaves, and the
    # utilisation is of those
    s = load(resources={"shell": {"dsps": 780}},
             design={"pe_array": [64, 64], "engines": {"int8": 3}, "dtypes": ["int8"]})
    use = fpga_design_config(s.device, s.device.units("matrix")[0], "int8").use("dsps")
    assert (use.used, use.available, use.total) == (6144, 8244, 9024)
    assert use.summary() == "DSP slices 6,144 of 8,244 (75%)"
    assert _problems(load, resources={"shell": {"dsps": 780}},
                     design={"pe_array": [64, 64], "engines": {"int8": 5},
                             "dtypes": ["int8"]}) == [
        "design: needs 10,240 DSP slices for 5 x 64 x 64 int8 PEs at 0.5 DSP per MAC; the part "
        "has 8,244 outside the platform shell (9,024 less 780) (24% over)"]


def test_shell_caps_a_filled_budget(load):
    # the shell leaves 6,000 DSPs, fewer than 0.75 x 9,024 = 6,768: the fill stops there
    s = load(resources={"shell": {"dsps": 3024}})
    cfg = fpga_design_config(s.device, s.device.units("matrix")[0], "int8")
    assert cfg.mac_lanes == 12000 and cfg.engines == 11
    assert cfg.limit == "DSP slices outside the platform shell"
    assert _problems(load, resources={"shell": {"dsps": 3024}},
                     design={"engines": {"int8": 12}, "dtypes": ["int8"]}) == [
        "design: needs 6,144 DSP slices for 12 x 32 x 32 int8 PEs at 0.5 DSP per MAC; the part "
        "has 6,000 outside the platform shell (9,024 less 3,024) (2% over)"]


def test_every_problem_is_listed_at_once(load):
    problems = _problems(load, design={"clock": "900 MHz", "channels": 64, "dtypes": ["int8"],
                                       "engines": 200, "memory": "nowhere"})
    text = "\n".join(problems)
    assert "design.clock: needs 900 MHz" in text
    assert "design.memory: expected the name of a memory level (hbm, on_chip), got 'nowhere'" \
        in text
    # the fit (engines) is checked once the design itself is valid
    problems = _problems(load, design={"clock": "900 MHz", "channels": 64})
    assert [p.split(":")[0] for p in problems] == ["design.channels", "design.clock"]


# -- a filled budget and more hardware -------------------------------------------------------
def test_luts_cap_a_filled_design(load):
    s = load(resources={"luts": 200_000})  # 200,000 / 24 = 8,333 int8 lanes < 13,536
    c = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int8"), s)
    assert c.details["mac_lanes"] == 8333 and c.details["arrays"] == 8
    assert c.details["fill_limit"] == "LUTs"
    assert any("capped by the LUTs" in n for n in c.notes)


@pytest.mark.parametrize("dtype", ["int8", "fp16", "fp32"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (64, 64, 64), (333, 2048, 64), (1, 4096, 4096),
                                   (1024, 1024, 1024)])
def test_more_dsps_never_slower_with_a_lut_cap(load, dtype, m, n, k):
    op = MatMul(m=m, n=n, k=k, dtype=dtype)
    lat = [_cost(op, load(dsp={"count": dsps}, resources={"luts": 400_000})).latency_s
           for dsps in (1024, 2048, 4096, 9024, 18048, 36096)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(lat, lat[1:], strict=False))


def test_more_dsps_never_slower_and_an_explicit_design_keeps_its_engines(load):
    op = MatMul(m=2048, n=2048, k=2048, dtype="int8")
    explicit = [_cost(op, load(dsp={"count": dsps},
                               design={"engines": {"int8": 4}, "dtypes": ["int8"]}))
                for dsps in (4096, 9024, 36096)]
    assert {c.details["arrays"] for c in explicit} == {4}
    assert len({c.latency_s for c in explicit}) == 1
    assert all(c.details["engines_source"] == "design" for c in explicit)


def test_a_faster_design_clock_speeds_a_compute_bound_op_up():
    op = MatMul(m=4096, n=4096, k=4096, dtype="int8")
    slow = _cost(op, load_arch("alveo-u280"))
    fast = _cost(op, load_arch("alveo-u280", ["design.clock=400MHz"]))
    assert fast.details["design_clock_hz"] == 400e6
    assert fast.compute_s == pytest.approx(slow.compute_s * 300 / 400)
    assert fast.latency_s < slow.latency_s
    # the vector unit runs at the design clock too, and the roofline peak follows it
    d = load_arch("alveo-u280", ["design.clock=400MHz"]).device
    assert {u.clock_hz for u in d.compute} == {400e6}
    assert d.peak("int8")[0] == pytest.approx(9024 * 4 * 400e6)


# -- designs: named examples, --set, dtypes, conflicts -----------------------------------------
@pytest.mark.parametrize("part,base,dsps,pct", [
    ("alveo-u280", "balanced", {"int8": 6656, "fp16": 6144, "fp32": 6141}, None),
    ("alveo-u280", "int8-wide", {"int8": 7168, "int4": 7168}, 0.79),
    ("alveo-u280", "fp16-fast", {"fp16": 6144, "bf16": 6144}, 0.68),
    ("alveo-u250", "balanced", {"int8": 9216, "fp16": 8192, "fp32": 9212}, None),
    ("alveo-u250", "int8-wide", {"int8": 9216, "int4": 9216}, 0.80),
    ("alveo-u250", "fp32-2ddr", {"fp32": 9212}, 0.80),
])
def test_every_example_design_fits_and_uses_what_its_header_says(part, base, dsps, pct):
    s = load_arch(part, [f"design.base={base}"])
    d = s.device
    assert d.design.name == base
    unit = d.units("matrix")[0]
    assert set(unit.flops_per_cycle) == set(d.design.dtypes)
    for cls, used in dsps.items():
        cfg = fpga_design_config(d, unit, cls)
        assert cfg.use("dsps").used == used
        assert not any(u.over for u in cfg.uses)
        if pct is not None:
            assert cfg.use("dsps").utilization == pytest.approx(pct, abs=0.005)
        c = _cost(MatMul(m=512, n=512, k=512, dtype=cls), s)
        assert c.latency_s > 0 and math.isfinite(c.latency_s)


def test_design_base_and_field_overrides():
    d = load_arch("alveo-u280", ["design.base=fp16-fast"]).device
    assert d.dram.bandwidth_Bps == pytest.approx(230e9)  # 16 of 32 pseudo-channels
    assert {u.clock_hz for u in d.compute} == {400e6}
    d = load_arch("alveo-u280", ["design.base=int8-wide", "design.engines.int8=8"]).device
    assert dict(d.design.engines) == {"int8": 8, "int4": 14}  # merged with the base's
    assert d.design.name == "int8-wide (modified)"
    d = load_arch("alveo-u280", ["design.buffers.ifmap=12MiB"]).device
    assert dict(d.params["sram"]) == {"ifmap": 12 * MIB, "filter": 8 * MIB, "ofmap": 8 * MIB}


def test_an_override_that_overflows_says_which_override():
    with pytest.raises(SpecError) as e:
        load_arch("alveo-u280", ["design.base=fp16-fast", "design.pe_array=[80,64]",
                                 "design.engines=1"])
    assert e.value.problems[0] == (
        "design: the fp16-fast (modified) design needs 10,240 DSP slices for 1 x 80 x 64 fp16 "
        "PEs at 2 DSP per MAC; the part has 9,024 (13% over) (from --set design.base=fp16-fast, "
        "--set design.engines=1, --set design.pe_array=[80,64])")
    assert str(e.value).startswith("arch_specs/fpga/alveo-u280.yaml: design: ")
    with pytest.raises(SpecError, match=re.escape("(from --set compute.dsp_array.count=4000, "
                                                  "--set design.base=int8-wide)")):
        load_arch("alveo-u280", ["design.base=int8-wide", "compute.dsp_array.count=4000"])


def test_a_design_builds_only_its_dtypes():
    s = load_arch("alveo-u280", ["design.base=int8-wide"])
    with pytest.raises(MappingError, match=r"the int8-wide design builds int8, int4 engines; "
                                           r"add the dtype to design\.dtypes"):
        _cost(MatMul(m=64, n=64, k=64, dtype="fp16"), s)
    rate, cls = s.device.peak("fp16")
    assert cls == "fp16" and rate == pytest.approx(512 * 2 * 300e6)  # the LUT vector unit


@pytest.mark.parametrize("over, needle", [
    ({"dsp": {"clock": "250 MHz"}},
     "compute.dsp_array.clock: expected no clock, or the design clock (300 MHz, design.clock): "
     "the DSP array runs at the design clock, got '250 MHz'"),
    ({"dsp": {"shape": [16, 16]}},
     "compute.dsp_array.shape: expected no shape, or the design's pe_array [32, 32], got "
     "[16, 16]"),
    ({"params": {"sram": {"ifmap": "1 MiB", "filter": "1 MiB", "ofmap": "1 MiB"}}},
     "params.sram: expected no value, or the design's buffers (design.buffers set them)"),
    ({"design": {"engines": {"fp16": 2}, "dtypes": ["int8"]}},
     "design.engines.fp16: expected a dtype of the design (int8), got 'fp16'"),
    ({"design": {"dtypes": ["bf16"]}},
     "design.dtypes: expected dtypes the DSP unit dsp_array runs (int8, fp16, fp32), got 'bf16'"),
    ({"design": {"memory": "on_chip"}},
     "design.memory: expected an off-chip memory level with channels in resources.channels "
     "(hbm), got 'on_chip'"),
    ({"resources": {"channels": {"ddr": 2}}},
     "resources.channels.ddr: expected the name of a memory level (hbm, on_chip), got 'ddr'"),
    ({"resources": {"clock": {"min": "600 MHz", "max": "500 MHz"}}},
     "resources.clock.min: expected at most resources.clock.max (500 MHz), got '600 MHz'"),
    ({"resources": {"shell": {"luts": 20_000_000}}},
     "resources.shell.luts: expected at most resources.luts (10,000,000), got 20000000"),
    ({"resources": {"bram36": -1}},
     "resources.bram36: expected a non-negative integer of at most 1,000,000,000, got -1"),
    ({"design": {"base": "fast"}},
     "design.base: expected the name of a design in designs (none), got 'fast'"),
])
def test_inconsistent_specs_are_refused(load, over, needle):
    problems = _problems(load, **over)
    assert any(needle in p for p in problems), problems


def test_a_problem_with_a_base_design_names_the_base_field(tmp_path):
    raw = _toy()
    base = raw.pop("design")
    raw["designs"] = {"slow": {**base, "clock": "1 MHz", "channels": 64}}
    raw["design"] = {"base": "slow"}
    p = tmp_path / "based.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(SpecError) as e:
        load_arch(p)
    assert [x.split(":")[0] for x in e.value.problems] == ["designs.slow.channels",
                                                           "designs.slow.clock"]
    # a field the design itself sets is named there
    raw["design"] = {"base": "slow", "clock": "1 MHz", "channels": 8}
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(SpecError) as e:
        load_arch(p)
    assert [x.split(":")[0] for x in e.value.problems] == ["design.clock"]


def test_resources_belong_to_fpga_parts_only(tmp_path):
    raw = yaml.safe_load(list_arch_files()["tpu-v4"].read_text(encoding="utf-8"))
    raw["resources"] = {"luts": 1, "bram36": 1, "uram288": 1,
                        "clock": {"min": "1 MHz", "max": "1 GHz"}}
    raw["design"] = {"clock": "1 GHz"}
    p = tmp_path / "tpu.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(SpecError) as e:
        load_arch(p)
    assert [x.split(":")[0] for x in e.value.problems] == ["resources", "design"]
    assert "only an FPGA part (family: fpga)" in e.value.problems[0]


def test_a_spec_without_resources_or_design_works_as_before(load):
    s = load(resources=None, design=None, dsp={"clock": "300 MHz"},
             compute=[{"name": "dsp_array", "unit": "matrix", "count": 9024, "clock": "300 MHz",
                       "flops_per_cycle": {"int8": 4, "fp16": 2}}])
    assert s.device.resources is None and s.device.design is None
    c = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int8"), s)
    assert c.details["arrays"] == 13 and c.details["pe_array_source"] == "default"
    assert not any(n.startswith("FPGA resources") for n in c.notes)
    assert set(c.details["fpga_resources"]) >= {"dsps", "power"}


# -- what an op reports ------------------------------------------------------------------------
def test_op_cost_reports_the_utilisation_of_every_resource():
    c = _cost(MatMul(m=1024, n=1024, k=1024, dtype="int8"), load_arch("alveo-u280"))
    r = c.details["fpga_resources"]
    assert r["dsps"] == {"used": 6656, "available": 9024, "utilization": pytest.approx(0.7376,
                                                                                     abs=1e-4)}
    assert r["luts"]["used"] == 13 * 1024 * 24 and r["ffs"]["used"] == 13 * 1024 * 42
    assert r["uram288"]["used"] == 3 * 228 and r["bram36"]["used"] == 0
    assert r["channels"] == {"memory": "hbm2", "used": 32, "available": 32, "utilization": 1.0}
    assert r["clock"] == {"hz": 300e6, "min_hz": 50e6, "max_hz": 500e6}
    assert r["power"]["total_w"] == pytest.approx(30 + 2 * 13312 * 300e6 * 2.1275e-12)
    note = next(n for n in c.notes if n.startswith("FPGA resources (balanced): "))
    assert "DSP slices 6,656 of 9,024 (74%)" in note and "URAM288 blocks 684 of 960 (71%)" in note


# -- the Alveo U250 ----------------------------------------------------------------------------
def test_u250_derived_vs_published():
    d = load_arch("alveo-u250").device
    dsp = d.units("matrix")[0]
    assert dsp.count == 12288 and d.resources.luts == 1_728_000
    assert d.peak("int8")[0] * d.params["dsp_fmax"] / dsp.clock_hz == pytest.approx(
        33.3e12, rel=0.002)
    assert d.resources.onchip_bytes / MIB == pytest.approx(54, rel=0.005)  # 53.8 MiB
    assert d.dram.name == "ddr4" and d.dram.bandwidth_Bps == 77e9
    assert d.dram.capacity_bytes == 64e9 and d.power.tdp_w == 225
    free = {k: d.resources.free(k, t) for k, t in (("luts", 1_728_000), ("dsps", 12288),
                                                   ("bram36", 2688), ("ffs", 3_456_000))}
    assert free == {"luts": 1_341_000, "dsps": 11_508, "bram36": 2000, "ffs": 2_749_000}


def test_u250_default_design_fits_and_runs():
    s = load_arch("alveo-u250")
    c = _cost(MatMul(m=2048, n=2048, k=2048, dtype="int8"), s)
    assert c.details["arrays"] == 18 and c.details["dsp_used"] == 9216
    assert c.details["fpga_resources"]["dsps"]["available"] == 11508


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_run_takes_design_what_ifs(capsys):
    assert main(["run", "--workload", "bert-base", "--arch", "alveo-u280", "--dtype", "int8",
                 "--set", "design.clock=400MHz", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert main(["run", "--workload", "bert-base", "--arch", "alveo-u280", "--dtype", "int8",
                 "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert fast["latency_s"] < base["latency_s"]
    code = main(["run", "--workload", "bert-base", "--arch", "alveo-u280", "--set",
                 "design.clock=650MHz"])
    err = capsys.readouterr().err
    assert code == 2 and "design.clock: needs 650 MHz" in err and "(from --set" in err
