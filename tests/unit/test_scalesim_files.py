"""SCALE-Sim inputs (simulator/scalesim_files.py): the config and topology parsers on the
shipped examples and edge cases, the device built from a config, and the report figures,
with golden numbers from SCALE-Sim v3.0.0 (pip ``scalesim``) itself."""

from __future__ import annotations

import math

import pytest

from simulator.errors import SpecError
from simulator.scalesim_files import (
    BANDWIDTH_COLUMNS,
    CALC_WORDS_PER_CYCLE,
    COMPUTE_COLUMNS,
    DETAIL_COLUMNS,
    EXAMPLES,
    build_system,
    conv_geometry,
    parse_config_text,
    parse_topology_text,
    read_config,
    read_topology,
    report_csv,
    run_study,
    totals,
)
from workloads.ops import Conv2d, MatMul

CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,\n")
GEMM_HEADER = "Layer, M, N, K,\n"

V3_CFG = """[general]
run_name = v3_run

[architecture_presets]
ArrayHeight:    32
ArrayWidth:     32
IfmapSramSzkB:   64
FilterSramSzkB:  64
OfmapSramSzkB:   64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : os
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 1
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 1
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def cfg_text(**changes: str) -> str:
    """The example config with ``Key=value`` lines replaced (``""`` drops the key)."""
    lines = (EXAMPLES / "scale.cfg").read_text().splitlines()
    out = []
    for line in lines:
        key = line.split(":")[0].split("=")[0].strip()
        if key in changes:
            if changes[key]:
                out.append(f"{key}: {changes[key]}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def problems(excinfo) -> list[str]:
    return str(excinfo.value).splitlines()


# -- config --------------------------------------------------------------------------------
def test_example_config():
    c = read_config(EXAMPLES / "scale.cfg")
    assert (c.run_name, c.rows, c.cols, c.dataflow) == ("scale_example_run_32x32_os", 32, 32,
                                                         "os")
    assert c.sram_bytes == {"ifmap": 65536, "filter": 65536, "ofmap": 65536}
    assert (c.bandwidth_mode, c.bandwidth_words, c.version) == ("USER", 10, 2)
    assert any("MemoryBanks" in n for n in c.notes)
    assert c.path.endswith("scale.cfg")


def test_v3_config_is_version_3_and_notes_what_is_not_modelled():
    c = parse_config_text(V3_CFG, "v3.cfg")
    assert c.version == 3 and c.bandwidth_mode == "CALC" and c.bandwidth_words == 10
    text = " ".join(c.notes)
    assert "Bandwidth 10 is not used" in text and "ReadRequestBuffer" in text
    on = V3_CFG.replace("SparsitySupport : false", "SparsitySupport : true") \
        .replace("UseRamulatorTrace: False", "UseRamulatorTrace: True") \
        .replace("IfmapCustomLayout: False", "IfmapCustomLayout: True")
    text = " ".join(parse_config_text(on, "v3.cfg").notes)
    assert "runs every layer dense" in text and "Ramulator" in text and "SRAM banks" in text


def test_keys_are_case_insensitive_and_values_stripped():
    c = parse_config_text(cfg_text(Dataflow="WS", ArrayHeight=" 128 ", ArrayWidth="8"), "x.cfg")
    assert (c.dataflow, c.rows, c.cols) == ("ws", 128, 8)
    c = parse_config_text(cfg_text().replace("ArrayHeight", "arrayheight")
                          .replace("[general]", "[General]"), "x.cfg")
    assert c.rows == 32 and c.run_name == "scale_example_run_32x32_os"


def test_no_run_presets_is_calc_as_in_scalesim_v1():
    text = cfg_text().split("[run_presets]")[0]
    c = parse_config_text(text, "v1.cfg")
    assert c.bandwidth_mode == "CALC" and any("SCALE-Sim v1" in n for n in c.notes)


def test_bandwidth_list_uses_the_first():
    c = parse_config_text(cfg_text(Bandwidth="20, 10, 10"), "x.cfg")
    assert c.bandwidth_words == 20 and any("uses the first" in n for n in c.notes)


def test_unknown_sections_and_keys_are_notes_not_errors():
    c = parse_config_text(cfg_text() + "[memory]\nfoo = 1\n", "x.cfg")
    assert any("[memory]" in n for n in c.notes)
    c = parse_config_text(cfg_text().replace("Dataflow : os", "Dataflow : os\nFancy: 3"),
                          "x.cfg")
    assert any("fancy" in n for n in c.notes)


@pytest.mark.parametrize("key, value, needle", [
    ("ArrayHeight", "0", "[architecture_presets] ArrayHeight: expected a whole number of PEs "
                         "from 1 to 16,384, got '0'"),
    ("ArrayWidth", "32.5", "ArrayWidth: expected a whole number of PEs"),
    ("ArrayWidth", "100000", "ArrayWidth: expected a whole number of PEs"),
    ("IfmapSramSzkB", "-4", "IfmapSramSzkB: expected a whole number of kB"),
    ("OfmapSramSzkB", "lots", "OfmapSramSzkB: expected a whole number of kB"),
    ("Dataflow", "rs", "Dataflow: expected os, ws or is"),
    ("Bandwidth", "0", "Bandwidth: expected words per cycle"),
    ("Bandwidth", "10,,", "Bandwidth: expected words per cycle"),
    ("InterfaceBandwidth", "AUTO", "[run_presets] InterfaceBandwidth: expected CALC or USER, "
                                   "got 'AUTO'"),
    ("IfmapOffset", "x", "IfmapOffset: expected a whole number"),
])
def test_malformed_value_names_file_section_key_and_value(key, value, needle):
    with pytest.raises(SpecError) as e:
        parse_config_text(cfg_text(**{key: value}), "study.cfg")
    lines = problems(e)
    assert len(lines) == 1 and lines[0].startswith("study.cfg: ") and needle in lines[0], lines


def test_every_problem_is_reported_at_once():
    with pytest.raises(SpecError) as e:
        parse_config_text(cfg_text(ArrayHeight="0", ArrayWidth="", Dataflow="",
                                   IfmapSramSzkB="x"), "s.cfg")
    lines = problems(e)
    assert len(lines) == 4, lines
    assert any("Dataflow: missing required key" in x for x in lines)


@pytest.mark.parametrize("text, needle", [
    ("ArrayHeight: 32\n", "line 1: expected a section header"),
    ("[architecture_presets]\nArrayHeight: 32\nArrayHeight: 16\n",
     "line 3: [architecture_presets] arrayheight: given twice"),
    ("[general]\n[general]\n", "section [general] given twice"),
    ("[general]\nrun_name = x\n", "missing section [architecture_presets]"),
    ("[architecture_presets]\nthis line has no separator\n", "malformed INI"),
])
def test_malformed_ini(text, needle):
    with pytest.raises(SpecError) as e:
        parse_config_text(text, "m.cfg")
    assert needle in str(e.value) and str(e.value).startswith("m.cfg: "), str(e.value)


def test_user_bandwidth_needs_bandwidth():
    with pytest.raises(SpecError, match="Bandwidth: missing; InterfaceBandwidth USER"):
        parse_config_text(cfg_text(Bandwidth=""), "u.cfg")


def test_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read the config file"):
        read_config(tmp_path / "none.cfg")
    with pytest.raises(SpecError, match="is a folder"):
        read_topology(tmp_path)
    p = tmp_path / "bin.cfg"
    p.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(SpecError, match="not UTF-8"):
        read_config(p)


# -- topology ------------------------------------------------------------------------------
def test_example_conv_topology_and_stride_4():
    t = read_topology(EXAMPLES / "alexnet_conv.csv")
    assert t.form == "conv" and [x.name for x in t.layers] == ["Conv1", "Conv2", "Conv3"]
    op = t.layers[0].op
    assert isinstance(op, Conv2d)
    assert (op.n, op.c, op.h, op.w, op.k, op.r, op.s, op.stride) == (1, 3, 224, 224, 96, 11,
                                                                      11, 4)
    assert (op.p, op.q) == (55, 55)  # SCALE-Sim: ceil((224 - 11 + 4) / 4)
    assert t.layers[0].gemm == (55 * 55, 96, 11 * 11 * 3)
    assert t.layers[0].line == 2 and dict(t.layers[0].fields)["Strides"] == 4
    assert op.dtype.name == "int8"


def test_conv_stride_2_exact_dims():
    t = parse_topology_text(CONV_HEADER + "S2, 224, 224, 3, 3, 3, 32, 2,\n"
                            "D2, 225, 225, 3, 3, 3, 32, 2,\n", "s.csv")
    a, b = (x.op for x in t.layers)
    # (224 - 3) is odd: SCALE-Sim's last window reaches past the ifmap, ofmap 112 x 112
    assert (a.h, a.w, a.pad, a.p, a.q) == (224, 224, 1, 112, 112)
    assert (b.h, b.w, b.pad, b.p, b.q) == (225, 225, 0, 112, 112)
    assert t.layers[0].gemm == (112 * 112, 32, 27)
    assert any("ceil((ifmap - filter) / stride) + 1" in n for n in t.notes)


def test_conv_geometry_matches_scalesim_formula():
    for stride in range(1, 6):
        for r in range(1, 6):
            for s in range(1, 6):
                for h in range(r, r + 9):
                    for w in range(s, s + 9):
                        hh, ww, pad = conv_geometry(h, w, r, s, stride)
                        assert ((hh + 2 * pad - r) // stride + 1,
                                (ww + 2 * pad - s) // stride + 1) == \
                            (math.ceil((h - r + stride) / stride),
                             math.ceil((w - s + stride) / stride))
                        assert hh >= h and ww >= w and (pad == 0 or (hh, ww) == (h, w))


def test_example_gemm_topology_is_m_n_k():
    t = read_topology(EXAMPLES / "gpt2_gemm.csv")
    assert t.form == "gemm" and len(t.layers) == 4
    op = t.layers[2].op
    assert isinstance(op, MatMul)
    assert (t.layers[2].name, op.m, op.n, op.k, op.batch) == ("Linear1", 1024, 4800, 1600, 1)
    assert t.layers[2].gemm == (1024, 4800, 1600)


def test_gemm_k_is_the_contraction():
    t = parse_topology_text("Layer Name, M, N, K,\nT, 256, 128, 64,\n", "g.csv")
    op = t.layers[0].op
    assert (op.m, op.n, op.k) == (256, 128, 64)
    assert op.flops().matrix == 2 * 256 * 128 * 64
    assert op.a_bytes() == 256 * 64 and op.b_bytes() == 64 * 128 and op.c_bytes() == 256 * 128


def test_rows_as_found_in_the_wild():
    # no trailing commas (gpt2.csv), '#' comments after the last comma and tabs
    # (mobilnet_paper.csv), blank lines, a v3 sparsity column
    t = parse_topology_text("Layer,M,N,K\nQKT,1024,1024,64\n\n", "g.csv")
    assert t.layers[0].gemm == (1024, 1024, 64)
    text = (CONV_HEADER.replace("Strides,", "Strides, Sparsity,") + "\n"
            "Conv2_dw, 112, 112, 3, 3, 1, 1, 1,#dw\n"
            "\tConv14_dw_0,14,14,3,3,1,1,1,\n"
            "Conv11,28,28,1,1,256,256,1\n"
            "# a comment line\n"
            "Conv1, 224, 224, 3, 3, 3, 32, 2, 2:4,\n")
    t = parse_topology_text(text, "m.csv")
    assert [x.name for x in t.layers] == ["Conv2_dw", "Conv14_dw_0", "Conv11", "Conv1"]
    assert t.layers[3].sparsity == "2:4" and t.layers[2].sparsity is None
    assert any("dense" in n for n in t.notes)


def test_dp_layers_expand_per_channel_as_scalesim_does():
    t = parse_topology_text(CONV_HEADER + "DP_conv, 14, 14, 3, 3, 3, 2, 1,\n", "d.csv")
    assert [x.name for x in t.layers] == [f"DP_convChannel_{i}" for i in range(3)]
    assert all(x.op.c == 1 and x.op.k == 2 for x in t.layers)
    assert any("depthwise" in n for n in t.notes)


def test_dtype_sets_the_word():
    t = read_topology(EXAMPLES / "gpt2_gemm.csv", dtype="bf16")
    assert t.layers[0].op.dtype.name == "bf16"


@pytest.mark.parametrize("body, needle", [
    ("C, 3, 3, 5, 5, 1, 1, 1,\n", "line 2: layer 'C': filter 5x5 is larger than the ifmap 3x3"),
    ("C, 0, 3, 1, 1, 1, 1, 1,\n", "line 2: layer 'C': IFMAP Height '0': expected a whole "
                                  "number from 1"),
    ("C, 8, 8, 1, 1, 1, 1, 0,\n", "Strides '0'"),
    ("C, 8, 8, 1, 1, x, 1, 1,\n", "Channels 'x'"),
    ("C, 8, 8, 1, 1, 2.0, 1, 1,\n", "Channels '2.0'"),
    ("C, 8, 8, 1, 1, 1, 1,\n", "line 2: 7 values, expected 8"),
    ("C, 8, 8, 1, 1, 1, 1, 1, 1, 1,\n", "line 2: 10 values, expected 8"),
    ("C, 8, 8, 1, 1, 1, 1, 1, half,\n", "sparsity 'half'"),
    ("C, 8, 8, 1, 1, 1, 1, 99999999999,\n", "Strides '99999999999'"),
    ("", "no layers after the header on line 1"),
])
def test_malformed_conv_rows(body, needle):
    with pytest.raises(SpecError) as e:
        parse_topology_text(CONV_HEADER + body, "t.csv")
    assert needle in str(e.value) and str(e.value).startswith("t.csv: "), str(e.value)


@pytest.mark.parametrize("text, needle", [
    ("", "empty: expected a header line"),
    ("Layer, A, B, C,\nx, 1, 2, 3,\n", "line 1: header 'Layer, A, B, C,': expected"),
    (GEMM_HEADER + "L, 1, 0, 1,\n", "layer 'L': N '0'"),
    (GEMM_HEADER + "L, 1, 1,\n", "line 2: 3 values, expected 4 (Layer, M, N, K)"),
])
def test_malformed_gemm_files(text, needle):
    with pytest.raises(SpecError) as e:
        parse_topology_text(text, "g.csv")
    assert needle in str(e.value), str(e.value)


def test_every_bad_row_is_reported():
    with pytest.raises(SpecError) as e:
        parse_topology_text(GEMM_HEADER + "a, 0, 1, 1,\nb, 1, x, 1,\nc, 1, 1,\n", "g.csv")
    assert len(problems(e)) == 3


# -- device and study ----------------------------------------------------------------------
def test_device_from_config():
    c = read_config(EXAMPLES / "scale.cfg")
    s = build_system(c)
    d = s.device
    unit = d.units("matrix")[0]
    assert unit.shape == (32, 32) and unit.flops_per_cycle == {"int8": 2048.0}
    assert d.params["dataflow"] == "os"
    assert dict(d.params["sram"]) == {"ifmap": 65536.0, "filter": 65536.0, "ofmap": 65536.0}
    assert d.dram.bandwidth_Bps == pytest.approx(10e9)  # 10 words/cycle x 1 B x 1 GHz
    g = parse_config_text(cfg_text(ArrayHeight="256", ArrayWidth="128", Dataflow="ws",
                                   Bandwidth="16"), "g.cfg")
    d = build_system(g, dtype="bf16", clock_hz=1.5e9).device
    unit = d.units("matrix")[0]
    assert unit.shape == (256, 128) and unit.clock_hz == 1.5e9
    assert unit.flops_per_cycle == {"bf16": 2.0 * 256 * 128}
    assert d.dram.bandwidth_Bps == pytest.approx(16 * 2 * 1.5e9)
    assert d.params["dataflow"] == "ws"


def test_calc_mode_is_stall_free():
    c = parse_config_text(V3_CFG, "v3.cfg")
    assert build_system(c).device.dram.bandwidth_Bps == pytest.approx(CALC_WORDS_PER_CYCLE * 1e9)
    assert build_system(c, calc_stall_free=False).device.dram.bandwidth_Bps == \
        pytest.approx(10e9)


def _run(cfg_text_: str, topo_text: str, **kw):
    c = parse_config_text(cfg_text_, "c.cfg")
    t = parse_topology_text(topo_text, "t.csv", kw.get("dtype", "int8"))
    return run_study(c, t, build_system(c, **kw), **kw)


# Golden figures from SCALE-Sim v3.0.0 (pip scalesim) on V3_CFG (32x32, 64 kB, CALC), run
# with `scalesim -c v3.cfg -t <file>`: (Total Cycles, Mapping Efficiency %, Compute Util %,
# SRAM IFMAP Reads, SRAM Filter Reads).
SCALESIM_V3 = {
    ("os", "gemm"): (10175, 100.0, 80.503, 262144, 262144),
    ("os", "conv"): (7655, 94.53125, 85.345, 209088, 221184),
    ("os", "alexnet1"): (121124, 99.5066, 84.990, None, None),
}
TOPOS = {"gemm": GEMM_HEADER + "T1, 256, 128, 256,\n",
         "conv": CONV_HEADER + "C3, 13, 13, 3, 3, 64, 96, 1,\n",
         "alexnet1": CONV_HEADER + "Conv1, 224, 224, 11, 11, 3, 96, 4,\n"}


@pytest.mark.parametrize("key", sorted(SCALESIM_V3))
def test_output_stationary_cycles_match_scalesim(key):
    df, topo = key
    cycles, mapping, util, sram_if, sram_fl = SCALESIM_V3[key]
    (r,) = _run(V3_CFG, TOPOS[topo])
    # SCALE-Sim's "Total Cycles" is the run after the first prefetch
    assert r.total_cycles - r.prefetch_cycles == pytest.approx(cycles, rel=2e-3)
    assert r.mapping_efficiency_pct == pytest.approx(mapping, rel=1e-4)
    assert r.compute_util_pct == pytest.approx(util, rel=2e-3)
    if sram_if is not None:
        assert (r.sram_words["ifmap"], r.sram_words["filter"]) == (sram_if, sram_fl)


def test_weight_stationary_ofmap_writes_count_partial_sums():
    (r,) = _run(V3_CFG.replace("Dataflow : os", "Dataflow : ws"), TOPOS["gemm"])
    # SCALE-Sim v3.0.0: 262144 OFMAP SRAM writes (256 x 128 outputs x 8 K folds)
    assert r.sram_words["ofmap"] == 256 * 128 * 8
    assert r.mapping_efficiency_pct == 100.0


def test_report_figures_are_consistent():
    rs = _run(cfg_text(), (EXAMPLES / "alexnet_conv.csv").read_text())
    for r in rs:
        assert r.total_cycles >= r.compute_cycles >= 1 and r.stall_cycles >= 0
        assert 0 < r.overall_util_pct <= r.compute_util_pct <= 100.0 + 1e-9
        assert 0 < r.mapping_efficiency_pct <= 100.0
        assert r.latency_s == pytest.approx(r.total_cycles / 1e9, rel=1e-5)
        assert r.energy_j == pytest.approx(r.dynamic_energy_j + r.static_energy_j)
        assert r.dram_words["ofmap"] >= 1 and r.sram_words["ifmap"] >= r.dram_words["ifmap"]
        assert len(r.compute_row(2)) == 6 and len(r.compute_row(3)) == 7
        assert len(r.bandwidth_row()) == 7 and len(r.detail_row()) == 19
    t = totals(rs)
    assert t["total_cycles"] == sum(r.total_cycles for r in rs) and t["layers"] == 3


def test_mapping_efficiency_by_dataflow():
    # 40 x 24 outputs, K = 50 on a 32 x 32 array
    topo = GEMM_HEADER + "G, 40, 24, 50,\n"
    want = {"os": 40 * 24 / (2 * 32 * 1 * 32), "ws": 50 * 24 / (2 * 32 * 1 * 32),
            "is": 50 * 40 / (2 * 32 * 2 * 32)}
    for df, eff in want.items():
        (r,) = _run(cfg_text(Dataflow=df), topo)
        assert r.mapping_efficiency_pct == pytest.approx(100 * eff)


def test_report_csv_is_scalesim_style():
    text = report_csv(COMPUTE_COLUMNS[2], [[0, 10, 1, 50.0, 100.0, 50.0]])
    assert text == ("LayerID, Total Cycles, Stall Cycles, Overall Util %, Mapping Efficiency %, "
                    "Compute Util %,\n0, 10, 1, 50.0, 100.0, 50.0,\n")
    assert COMPUTE_COLUMNS[3][1] == "Total Cycles (incl. prefetch)"
    assert BANDWIDTH_COLUMNS[1] == "Avg IFMAP SRAM BW" and len(DETAIL_COLUMNS) == 19
    assert DETAIL_COLUMNS[9] == "SRAM OFMAP Writes" and DETAIL_COLUMNS[-1] == "DRAM OFMAP Writes"
