"""``hwsim compare-measured`` and ``hwsim calibrate`` on profiler traces and per-op CSV profiles,
and the energy note of ``hwsim validate``: tables on success, one ``error:`` line naming the
file and the field on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _helpers import one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "kineto_llama2_7b_tp2_layer.json"
VIDUR = ROOT / "experiments" / "data" / "vidur-a100"


def _vidur_subset(tmp_path: Path, n: int = 40) -> Path:
    """The first ``n`` rows of the 7B compute profile (tp 1, the largest token counts)."""
    lines = (VIDUR / "llama2-7b_mlp.csv").read_text().splitlines()
    out = tmp_path / "llama2-7b_mlp.csv"
    out.write_text("\n".join(lines[: n + 1]) + "\n")
    return out


def test_trace_tables_per_class_per_kind_per_op(tmp_path, capsys):
    code, out, err = run_cli(capsys, "compare-measured", str(FIXTURE), "--arch", "dgx-a100",
                             "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "kernel time" in out.splitlines()[0]
    assert "per op kind:" in out and "per profiled op:" in out
    for word in ("matmul", "norm", "elementwise", "collective", "attention",
                 "aten::mm", "_C::rms_norm", "record_param_comms"):
        assert word in out, word
    assert "energy: not measured: profiler traces" in out
    assert "not matched: 1 x no CPU op linked" in err
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## By profiled op" in report and "## Energy and power" in report


def test_trace_json_output(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "compare-measured", str(FIXTURE), "--arch", "dgx-a100",
                           "--json", "--out", str(tmp_path / "rep"))
    assert code == 0
    d = json.loads(out)
    assert d["timing"] == "kernel"
    kinds = {s["label"]: s for s in d["by_kind"]}
    assert kinds["matmul"]["count"] == 4 and kinds["norm"]["count"] == 1
    assert {s["label"] for s in d["by_op"]} >= {"aten::mm", "_C::silu_and_mul"}
    assert d["energy"] == [] and d["power"] == []
    assert len(d["skipped"]) == 1


def test_csv_profile_and_trace_together(tmp_path, capsys):
    csv_path = _vidur_subset(tmp_path)
    code, out, err = run_cli(capsys, "compare-measured", str(FIXTURE), str(csv_path), "--arch",
                             "dgx-a100", "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "attn_pre_proj" in out and "aten::mm" in out


def test_calibrate_from_profiles_reports_held_out_error(tmp_path, capsys):
    csv_path = _vidur_subset(tmp_path, 12)
    prof = tmp_path / "a100.calib.yaml"
    code, out, err = run_cli(capsys, "calibrate", str(csv_path), "--arch", "dgx-a100",
                             "--holdout", "0.5", "--out", str(prof))
    assert code == 0, err
    assert "held-out MAPE" in out and "held-out matmul" in out
    text = prof.read_text()
    assert "timing: kernel" in text and "hwsim.calibration/1" in text
    # the profile applies like any other
    code, out, err = run_cli(capsys, "compare-measured", str(csv_path), "--arch", "dgx-a100",
                             "--calibration", str(prof), "--out", str(tmp_path / "rep"))
    assert code == 0 and "with calibration" in out, err


@pytest.mark.parametrize("content,field", [
    ("{not json", "not valid JSON"),
    ('{"events": []}', "traceEvents"),
    ('{"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "aten::mm"}]}', "no GPU kernel"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm", "dur": "12us"}]}', "dur"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm", "dur": -3}]}', "dur"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "dur": 3}]}', "name"),
    ('{"traceEvents": [7]}', "traceEvents[0]"),
])
def test_bad_traces_give_one_line_naming_file_and_field(tmp_path, capsys, content, field):
    p = tmp_path / "trace.json"
    p.write_text(content)
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    line = one_error_line(code, err)
    assert str(p) in line and field in line


def test_durations_in_nanoseconds_are_refused(tmp_path, capsys):
    """The fixture with every kernel dur x1000 (ns written where us belong): kernels of one
    stream would overlap, which a stream cannot do."""
    doc = json.loads(FIXTURE.read_text())
    for e in doc["traceEvents"]:
        if e.get("cat") == "kernel":
            e["dur"] *= 1000
    p = tmp_path / "ns.json"
    p.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    line = one_error_line(code, err)
    assert str(p) in line and "dur:" in line and "another unit" in line


def test_bad_shapes_name_the_event(tmp_path, capsys):
    doc = json.loads(FIXTURE.read_text())
    op = next(e for e in doc["traceEvents"] if e.get("name") == "aten::mm")
    op["args"]["Input Dims"] = [[512, "4096"], [4096, 6144]]
    p = tmp_path / "t.json"
    p.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    line = one_error_line(code, err)
    assert "traceEvents[" in line and "aten::mm" in line and "Input Dims" in line


@pytest.mark.parametrize("edit,field", [
    (lambda h: h.replace("num_tokens", "tokens"), "num_tokens: missing column"),
    (lambda h: h.replace("n_embd,", "embd,"), "n_embd: missing column"),
])
def test_csv_missing_columns(tmp_path, capsys, edit, field):
    lines = (VIDUR / "llama2-7b_mlp.csv").read_text().splitlines()[:5]
    p = tmp_path / "prof.csv"
    p.write_text("\n".join([edit(lines[0]), *lines[1:]]) + "\n")
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    line = one_error_line(code, err)
    assert str(p) in line and field in line


def test_csv_wrong_cells_and_units(tmp_path, capsys):
    p = tmp_path / "ops.csv"
    p.write_text("kind,m,n,k,time_ms\nmatmul,16,4096,4096,fast\n")
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    line = one_error_line(code, err)
    assert f"{p}:2: time_ms" in line and "'fast'" in line
    p.write_text("kind,m,n,k,time_ms,time_us\nmatmul,16,4096,4096,1,1000\n")
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    assert "expected one time column" in one_error_line(code, err)
    p.write_text("m,n,k,seconds\n16,4096,4096,1\n")
    code, _, err = run_cli(capsys, "compare-measured", str(p), "--arch", "dgx-a100",
                           "--out", str(tmp_path / "rep"))
    assert "kind: missing column" in one_error_line(code, err)


def test_missing_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compare-measured", str(tmp_path / "none.json"), "--arch",
                           "dgx-a100", "--out", str(tmp_path / "rep"))
    assert "no such file" in one_error_line(code, err)


@pytest.mark.torch
def test_validate_prints_the_energy_note(tmp_path, capsys, monkeypatch):
    from simulator.validate import energy

    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path / "no-powercap")
    code, out, err = run_cli(capsys, "validate", "--suite", "smoke", "--device", "cpu",
                             "--out", str(tmp_path / "ds"), "--warmup", "1", "--reps", "3",
                             "--min-time", "0.01", "--threads", "1")
    assert code == 0, err
    assert "energy: not measured: RAPL not readable" in out
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["energy"]["measured"] is False and "does not exist" in meta["energy"]["reason"]
    code, out, _ = run_cli(capsys, "compare-measured", str(tmp_path / "ds"), "--arch",
                           "cpu-host", "--out", str(tmp_path / "rep"))
    assert code == 0 and "energy: not measured: RAPL not readable" in out
