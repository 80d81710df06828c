"""``hwsim scalesim`` on the command line: the shipped SCALE-Sim examples run, the JSON
document and the report files hold SCALE-Sim's columns, and bad input is one ``error: ...``
line with exit status 2, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from _helpers import one_error_line, run_cli

from simulator.mapping.base import MapOptions
from simulator.scalesim_files import BANDWIDTH_COLUMNS, COMPUTE_COLUMNS, DETAIL_COLUMNS

EX = Path(__file__).resolve().parents[2] / "examples" / "scalesim"
CFG, CONV, GEMM = str(EX / "scale.cfg"), str(EX / "alexnet_conv.csv"), str(EX / "gpt2_gemm.csv")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "scalesim", *argv)


@pytest.mark.parametrize("topology, n", [(CONV, 3), (GEMM, 4)])
def test_examples_print_scalesim_columns(capsys, topology, n):
    code, out, err = run(capsys, "--config", CFG, "--topology", topology)
    assert code == 0, err
    for col in ("Total Cycles", "Stall Cycles", "Overall Util %", "Mapping Efficiency %",
                "Compute Util %", "Avg IFMAP DRAM BW", "SRAM IFMAP Reads", "SRAM Filter Reads",
                "SRAM OFMAP Writes", "DRAM IFMAP Reads", "DRAM Filter Reads",
                "DRAM OFMAP Writes", "latency", "energy"):
        assert col in out, col
    assert "COMPUTE_REPORT" in out and "BANDWIDTH_REPORT" in out
    assert "DETAILED_ACCESS_REPORT" in out
    assert out.count("\ntotal ") == 3 and "\ntotal: " in out
    assert f"({'conv' if topology == CONV else 'gemm'}, {n} layers)" in out
    assert "silicon" in out  # the figures, or a note saying why not


def test_json_document(capsys):
    code, out, err = run(capsys, "--config", CFG, "--topology", GEMM, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["config"]["rows"] == 32 and d["config"]["dataflow"] == "os"
    assert d["config"]["bandwidth_mode"] == "USER"
    assert d["config"]["bandwidth_words_per_cycle"] == 10
    assert d["topology"]["form"] == "gemm" and d["topology"]["layers"] == 4
    assert d["device"]["dram_bandwidth_Bps"] == pytest.approx(10e9)
    assert d["device"]["word_bytes"] == 1.0 and d["device"]["dtype"] == "int8"
    assert d["report_version"] == 2 and len(d["layers"]) == 4
    first = d["layers"][0]
    for k in ("layer_id", "name", "total_cycles", "stall_cycles", "overall_util_pct",
              "mapping_efficiency_pct", "compute_util_pct", "sram_words", "dram_words",
              "latency_s", "energy_j", "bound"):
        assert k in first, k
    assert first["name"] == "QKT" and "m=1024, n=1024, k=64" in first["op"]
    assert set(first["dram_words"]) == {"ifmap", "filter", "ofmap"}
    assert d["total"]["total_cycles"] == sum(x["total_cycles"] for x in d["layers"])
    assert d["total"]["energy_j"] == pytest.approx(sum(x["energy_j"] for x in d["layers"]))
    sil = d["silicon"]
    assert sil is None or (sil["area_mm2"] > 0 and sil["power_w"] > 0
                           and sil["unit_cost_usd"] > 0)
    if sil is None:
        assert any("silicon" in n for n in d["notes"])
    assert isinstance(d["notes"], list) and d["files"] == {}


def test_dtype_and_clock(capsys):
    _, out, _ = run(capsys, "--config", CFG, "--topology", GEMM, "--json")
    base = json.loads(out)
    code, out, err = run(capsys, "--config", CFG, "--topology", GEMM, "--json",
                         "--dtype", "bf16", "--clock", "2GHz")
    assert code == 0, err
    d = json.loads(out)
    assert d["device"]["word_bytes"] == 2.0 and d["device"]["clock_hz"] == 2e9
    assert d["device"]["dram_bandwidth_Bps"] == pytest.approx(10 * 2 * 2e9)
    # the same compute cycles at twice the clock; SRAM words do not depend on the word size
    a, b = base["layers"][0], d["layers"][0]
    assert b["compute_cycles"] == a["compute_cycles"]
    assert b["sram_words"]["ifmap"] == a["sram_words"]["ifmap"]


def test_out_writes_scalesim_reports(capsys, tmp_path):
    out_dir = tmp_path / "run" / "reports"
    code, out, err = run(capsys, "--config", CFG, "--topology", CONV, "--out", str(out_dir))
    assert code == 0, err
    assert "reports written to" in out

    def read(name: str) -> list[list[str]]:
        text = (out_dir / name).read_text()
        assert text.endswith(",\n")
        return [[c.strip() for c in line.split(",")][:-1] for line in text.splitlines()]

    comp = read("COMPUTE_REPORT.csv")
    assert comp[0] == COMPUTE_COLUMNS[2] and len(comp) == 4
    assert comp[0] == ["LayerID", "Total Cycles", "Stall Cycles", "Overall Util %",
                       "Mapping Efficiency %", "Compute Util %"]
    assert [r[0] for r in comp[1:]] == ["0", "1", "2"] and int(comp[1][1]) > 0
    bw = read("BANDWIDTH_REPORT.csv")
    assert bw[0] == BANDWIDTH_COLUMNS and len(bw) == 4
    det = read("DETAILED_ACCESS_REPORT.csv")
    assert det[0] == DETAIL_COLUMNS and len(det) == 4
    assert all(len(r) == 19 for r in det)
    hw = read("HWSIM_REPORT.csv")
    assert hw[0][:4] == ["LayerID", "Layer name", "Latency (s)", "Energy (J)"]
    assert hw[1][1] == "Conv1" and float(hw[1][3]) > 0
    code, out, err = run(capsys, "--config", CFG, "--topology", CONV, "--out", str(out_dir),
                         "--report-version", "3", "--json")
    assert code == 0, err
    assert read("COMPUTE_REPORT.csv")[0][1:3] == ["Total Cycles (incl. prefetch)",
                                                   "Total Cycles"]
    assert set(json.loads(out)["files"]) == {"COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv",
                                              "DETAILED_ACCESS_REPORT.csv", "HWSIM_REPORT.csv"}


def test_v3_config_gets_v3_columns(capsys, tmp_path):
    cfg = tmp_path / "v3.cfg"
    cfg.write_text((EX / "scale.cfg").read_text().replace(
        "InterfaceBandwidth: USER", "InterfaceBandwidth: CALC\nUseRamulatorTrace: False"))
    code, out, err = run(capsys, "--config", str(cfg), "--topology", GEMM, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["report_version"] == 3 and d["config"]["bandwidth_mode"] == "CALC"
    assert all(x["stall_cycles"] <= x["prefetch_cycles"] + 1 for x in d["layers"])


def test_schedule_is_passed_or_noted(capsys):
    has = "schedule" in {f.name for f in dataclasses.fields(MapOptions)}
    for sched in ("scalesim", "best"):
        code, out, err = run(capsys, "--config", CFG, "--topology", GEMM, "--json",
                             "--schedule", sched)
        assert code == 0, err
        d = json.loads(out)
        assert d["device"]["schedule"] == sched
        noted = any("not applied" in n for n in d["notes"])
        assert noted != has


def test_without_the_silicon_module_a_note(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "simulator.cost.silicon", None)  # import fails
    code, out, err = run(capsys, "--config", CFG, "--topology", CONV, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["silicon"] is None
    assert any("silicon area, power and unit cost: not available" in n for n in d["notes"])
    code, out, err = run(capsys, "--config", CFG, "--topology", CONV)
    assert code == 0 and "note: silicon area, power and unit cost: not available" in out


def test_with_a_silicon_module(capsys, monkeypatch):
    import types

    fake = types.ModuleType("simulator.cost.silicon")
    seen = []

    def silicon_report(device):
        seen.append(device)
        return types.SimpleNamespace(area_mm2=1.5, power_w=0.25, unit_cost_usd=12.0)

    fake.silicon_report = silicon_report
    monkeypatch.setitem(sys.modules, "simulator.cost.silicon", fake)
    code, out, err = run(capsys, "--config", CFG, "--topology", CONV)
    assert code == 0, err
    assert "area 1.5 mm^2, power 0.25 W, unit cost $12.00" in out
    assert seen and seen[0].units("matrix")[0].shape == (32, 32)


# -- errors ----------------------------------------------------------------------------------
CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,\n")


@pytest.mark.parametrize("cfg, topo, needle", [
    (None, "C, 3, 3, 5, 5, 1, 1, 1,\n", "filter 5x5 is larger than the ifmap 3x3"),
    (None, "C, 8, 0, 1, 1, 1, 1, 1,\n", "IFMAP Width '0'"),
    (None, "C, 8, 8, 1, 1, 1, 1,\n", "7 values, expected 8"),
    ("[architecture_presets]\nArrayHeight: 0\n", None, None),
    ("no header = 1\n", None, "expected a section header"),
])
def test_malformed_inputs_are_one_line(capsys, tmp_path, cfg, topo, needle):
    c, t = tmp_path / "c.cfg", tmp_path / "t.csv"
    c.write_text(cfg if cfg is not None else (EX / "scale.cfg").read_text())
    t.write_text(CONV_HEADER + topo if topo is not None else (EX / "alexnet_conv.csv").read_text())
    code, out, err = run(capsys, "--config", str(c), "--topology", str(t))
    if needle is None:  # several problems in one file: one line each, all named
        assert code == 2 and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) > 1 and all(x.startswith(f"error: {c}: ") for x in lines), err
        return
    line = one_error_line(code, err)
    assert needle in line and (str(t) in line or str(c) in line), line


def test_missing_files(capsys, tmp_path):
    code, out, err = run(capsys, "--config", str(tmp_path / "x.cfg"), "--topology", GEMM)
    assert "x.cfg: cannot read the config file" in one_error_line(code, err)
    code, out, err = run(capsys, "--config", CFG, "--topology", str(tmp_path / "y.csv"))
    assert "y.csv: cannot read the topology file" in one_error_line(code, err)
    code, out, err = run(capsys, "--config", str(tmp_path / "x.cfg"),
                         "--topology", str(tmp_path / "y.csv"))
    assert code == 2 and len(err.strip().splitlines()) == 2  # both files at once


@pytest.mark.parametrize("args, needle", [
    (["--dtype", "int3"], "argument --dtype: unknown dtype"),
    (["--clock", "fast"], "argument --clock: expected a frequency"),
    (["--schedule", "greedy"], "argument --schedule: invalid choice"),
])
def test_bad_options_are_usage_errors(capsys, args, needle):
    code, out, err = run(capsys, "--config", CFG, "--topology", GEMM, *args)
    assert code == 2 and "Traceback" not in err and needle in err, err


def test_out_that_is_a_file(capsys):
    code, out, err = run(capsys, "--config", CFG, "--topology", GEMM, "--out", CFG)
    assert "exists and is not a folder" in one_error_line(code, err)


def test_huge_array_beyond_spec_limits_is_one_line(capsys, tmp_path):
    c = tmp_path / "big.cfg"
    c.write_text((EX / "scale.cfg").read_text().replace("Bandwidth : 10",
                                                        "Bandwidth : 1000000"))
    code, out, err = run(capsys, "--config", str(c), "--topology", GEMM, "--dtype", "fp32",
                         "--clock", "900 GHz")
    assert code == 2 and "Traceback" not in err, err
    assert all(x.startswith(f"error: {c}: ") for x in err.strip().splitlines()), err
