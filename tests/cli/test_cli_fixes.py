"""CLI regressions: each test would have caught one reported bug (op flags, defaults, output
paths, JSONL input, JSON validity, spec provenance)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from simulator.cli import main

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "experiments" / "validation" / "data" / "cpu-host-ops"
CONV = ("--c", "64", "--h", "56", "--w", "56", "--k", "64", "--r", "3", "--s", "3", "--pad", "1")
ATTN = ("--heads", "32", "--head-dim", "128", "--seq", "512")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def strict_loads(text: str):
    """json.loads that fails on NaN / Infinity / -Infinity instead of accepting them."""
    def no_constant(name):
        raise AssertionError(f"invalid JSON token {name} in the output")
    return json.loads(text, parse_constant=no_constant)


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert re.search(n, lines[0]), (n, lines[0])


# -- 1. op conv2d: --batch is the batch ------------------------------------------------------
def test_conv2d_batch_flag_is_the_batch(capsys):
    code, out, _ = run(capsys, "op", "conv2d", "--batch", "8", *CONV, "--json")
    assert code == 0
    d = strict_loads(out)
    assert "n=8," in d["op"]
    # 2 * N * K * P * Q * C * R * S with P = Q = 56 (pad 1, stride 1)
    assert d["flops"] == 2 * 8 * 64 * 56 * 56 * 64 * 3 * 3


def test_conv2d_n_still_works_as_an_alias(capsys):
    _, a, _ = run(capsys, "op", "conv2d", "--batch", "4", *CONV, "--json")
    _, b, _ = run(capsys, "op", "conv2d", "--n", "4", *CONV, "--json")
    assert strict_loads(a)["flops"] == strict_loads(b)["flops"]
    code, out, _ = run(capsys, "op", "conv2d", "--n", "4", "--batch", "4", *CONV, "--json")
    assert code == 0 and "n=4," in strict_loads(out)["op"]


def test_conv2d_batch_and_n_disagreeing_is_an_error(capsys):
    code, _, err = run(capsys, "op", "conv2d", "--n", "4", "--batch", "8", *CONV)
    one_line_error(code, err, "--batch 8 and --n 4 disagree")


def test_conv2d_batch_defaults_to_one(capsys):
    code, out, _ = run(capsys, "op", "conv2d", *CONV, "--json")
    assert code == 0 and "n=1," in strict_loads(out)["op"]


def test_op_flag_of_another_kind_is_refused(capsys):
    code, _, err = run(capsys, "op", "matmul", "--m", "4", "--n", "4", "--k", "4", "--heads", "2")
    one_line_error(code, err, "--heads does not apply", "--m, --n, --k, --batch")


# -- 2. op attention without --phase ---------------------------------------------------------
def test_attention_defaults_to_prefill_and_says_so(capsys):
    code, out, err = run(capsys, "op", "attention", *ATTN)
    assert code == 0, err
    assert "phase=prefill" in out and "--phase not given: prefill assumed" in out
    code, out, _ = run(capsys, "op", "attention", *ATTN, "--explain")
    assert code == 0 and "prefill assumed" in out and "Explain:" in out
    code, out, _ = run(capsys, "op", "attention", *ATTN, "--json")
    d = strict_loads(out)
    assert code == 0 and d["assumed"] == {"phase": "prefill"}


def test_attention_with_a_phase_assumes_nothing(capsys):
    code, out, _ = run(capsys, "op", "attention", *ATTN, "--phase", "decode", "--context", "4096",
                       "--json")
    d = strict_loads(out)
    assert code == 0 and "phase=decode" in d["op"] and "assumed" not in d


# -- 3. compare without --arch ---------------------------------------------------------------
def test_compare_without_arch_uses_one_part_per_family(capsys):
    from simulator.cli import DEFAULT_COMPARE_ARCHS

    code, out, err = run(capsys, "compare", "--workload", "gpt2", "--json")
    assert code == 0 and "Traceback" not in err
    assert [r["arch"] for r in strict_loads(out)] == DEFAULT_COMPARE_ARCHS.split(",")
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert DEFAULT_COMPARE_ARCHS in re.sub(r"\s+", "", capsys.readouterr().out)  # help wraps


def test_compare_with_an_empty_arch_list_is_one_line(capsys):
    code, _, err = run(capsys, "compare", "--workload", "gpt2", "--arch", ",")
    one_line_error(code, err, "comma-separated list")


# -- 4. compare-measured writes its report under --out, default ./hwsim-reports ---------------
def _dataset_copy(tmp_path: Path) -> Path:
    ds = tmp_path / "data" / "cpu-host-ops"
    shutil.copytree(DATASET, ds)
    return ds


def test_compare_measured_default_report_goes_to_the_working_directory(capsys, tmp_path,
                                                                       monkeypatch):
    ds = _dataset_copy(tmp_path)
    before = sorted(p.name for p in ds.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run(capsys, "compare-measured", str(ds), "--arch", "cpu-host", "--json")
    assert code == 0, err
    report = Path(strict_loads(out)["report"])
    assert report == work / "hwsim-reports" / "cpu-host-ops" / "cpu-host" / "report.md"
    assert report.is_file() and (report.parent / "scatter.png").is_file()
    assert sorted(p.name for p in ds.iterdir()) == before     # nothing written into the dataset


def test_compare_measured_out_is_honoured(capsys, tmp_path, monkeypatch):
    ds = _dataset_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "compare-measured", str(ds), "--arch", "cpu-host",
                       "--out", str(tmp_path / "rep" / "a"))
    assert code == 0 and (tmp_path / "rep" / "a" / "report.md").is_file()
    assert f"report: {tmp_path / 'rep' / 'a' / 'report.md'}" in out


def test_default_report_dir_is_never_inside_the_dataset(tmp_path):
    from simulator.validate.compare import default_report_dir

    d = default_report_dir(DATASET, "cpu-host", base=tmp_path)
    assert d == tmp_path / "hwsim-reports" / "cpu-host-ops" / "cpu-host"
    assert DATASET not in d.parents
    assert default_report_dir(DATASET, "cpu-host", calibrated=True, base=tmp_path).name == \
        "cpu-host-calibrated"


# -- 6. ops --input: bad lines are one line naming file and line ------------------------------
GOOD = '{"kind": "matmul", "m": 8, "n": 4096, "k": 4096}'


@pytest.mark.parametrize("bad,needle", [
    ("[1, 2]", "expected a JSON object.*got an array"),
    ('"x"', "expected a JSON object.*got a string"),
    ("42", "expected a JSON object.*got a number"),
    ("null", "expected a JSON object.*got null"),
    ("{not json", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"kind": "warp_drive", "m": 1}', "unknown op kind 'warp_drive'"),
    ('{"m": 1}', "missing field 'kind'"),
    ('{"kind": "matmul", "m": NaN, "n": 2, "k": 2}', "NaN is not a number JSON allows"),
    ('{"kind": "matmul", "m": Infinity, "n": 2, "k": 2}', "Infinity is not a number"),
    ('{"kind": "matmul", "m": -Infinity, "n": 2, "k": 2}', "-Infinity is not a number"),
    ('{"kind": "matmul", "m": 1e999, "n": 2, "k": 2}', "field 'm': inf is not a finite number"),
    ('{"kind": "matmul", "m": 123456789012345678901234567890, "n": 2, "k": 2}',
     "field 'm': .* too large"),
    ('{"kind": "matmul", "m": ' + "9" * 5000 + ', "n": 2, "k": 2}', "thousands of digits"),
    ('{"kind": "matmul", "m": {"x": 1}, "n": 2, "k": 2}', "field 'm': expected a number"),
    ('{"kind": "matmul", "m": [[1]], "n": 2, "k": 2}', "field 'm': lists may not nest"),
    ('{"kind": "matmul", "m": 4.5, "n": 2, "k": 2}', "m must be a whole number, got 4.5"),
    ('{"kind": "matmul", "m": -3, "n": 2, "k": 2}', "m must be a positive number"),
    ('{"kind": "matmul", "m": "4", "n": 2, "k": 2}', "m must be a positive number"),
    ('{"kind": "matmul", "m": 4, "n": 2, "k": 2, "weight": "yes"}', "weight must be true or false"),
    ('{"kind": "matmul", "m": 4, "n": 2, "k": 2, "warp": 9}', "unknown field 'warp'"),
    ('{"kind": "matmul", "m": 4, "n": 2, "k": 2, "dtype": "fp7"}', "unknown dtype 'fp7'"),
    ('{"kind": "attention", "batch": 1, "heads": 2, "head_dim": 8, "seq": 1, '
     '"phase": "decode"}', "decode needs a KV cache"),
])
def test_ops_bad_line_is_one_line_with_file_and_line(capsys, tmp_path, bad, needle):
    f = tmp_path / "k.jsonl"
    f.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n")
    code, out, err = run(capsys, "ops", "--input", str(f), "--arch", "a100-sxm-80gb", "--json")
    one_line_error(code, err, re.escape(f"{f}:3: "), needle)
    assert out == ""          # every line is checked before any is predicted


def test_ops_input_that_is_not_utf8_or_missing_or_empty(capsys, tmp_path):
    f = tmp_path / "k.jsonl"
    f.write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    code, _, err = run(capsys, "ops", "--input", str(f))
    one_line_error(code, err, re.escape(f"{f}:2: "), "not UTF-8")
    code, _, err = run(capsys, "ops", "--input", str(tmp_path / "nope.jsonl"))
    one_line_error(code, err, "nope.jsonl: cannot read")
    f.write_text("\n\n")
    code, _, err = run(capsys, "ops", "--input", str(f))
    one_line_error(code, err, "no ops")


def test_ops_prediction_error_names_the_line(capsys):
    # cpu-host has no link, so the all-reduce on line 13 cannot be costed
    code, out, err = run(capsys, "ops", "--input", str(REPO / "examples" / "kernels.jsonl"),
                         "--arch", "cpu-host")
    one_line_error(code, err, r"kernels\.jsonl:13: ", "link")


# -- 7. unwritable output paths fail fast, in one line ---------------------------------------
def _calls_simulate(monkeypatch) -> list:
    import simulator.api

    calls = []
    real = simulator.api.simulate
    monkeypatch.setattr(simulator.api, "simulate", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


@pytest.mark.parametrize("make_bad,needle", [
    (lambda t: t / "missing" / "t.json", "folder .*missing does not exist"),
    (lambda t: (t / "f.txt").write_text("x") and t / "f.txt" / "t.json", "is not a folder"),
    (lambda t: t, "is a folder"),
])
def test_unwritable_trace_is_refused_before_simulating(capsys, tmp_path, monkeypatch, make_bad,
                                                       needle):
    calls = _calls_simulate(monkeypatch)
    bad = make_bad(tmp_path)
    code, out, err = run(capsys, "run", "--workload", "gpt2", "--trace", str(bad))
    one_line_error(code, err, "--trace", needle)
    assert calls == [] and out == ""


def test_unwritable_roofline_out_is_refused_before_simulating(capsys, tmp_path, monkeypatch):
    calls = _calls_simulate(monkeypatch)
    code, _, err = run(capsys, "roofline", "--out", str(tmp_path / "no" / "r.png"))
    one_line_error(code, err, "--out", "does not exist")
    assert calls == []


def test_unwritable_compare_measured_out_is_refused(capsys, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    code, _, err = run(capsys, "compare-measured", str(DATASET), "--arch", "cpu-host",
                       "--out", str(tmp_path / "f.txt"))
    one_line_error(code, err, "--out", "not a folder")
    code, _, err = run(capsys, "compare-measured", str(DATASET), "--arch", "cpu-host",
                       "--out", str(tmp_path / "f.txt" / "sub"))
    one_line_error(code, err, "--out", "not a folder")


def test_unwritable_calibrate_paths_are_refused_before_fitting(capsys, tmp_path, monkeypatch):
    import simulator.validate.calibrate as cal

    monkeypatch.setattr(cal, "fit", lambda *a, **k: pytest.fail("fit ran"))
    (tmp_path / "f.txt").write_text("x")
    code, _, err = run(capsys, "calibrate", str(DATASET), "--arch", "cpu-host",
                       "--out", str(tmp_path / "f.txt" / "p.yaml"))
    one_line_error(code, err, "--out")
    code, _, err = run(capsys, "calibrate", str(DATASET), "--arch", "cpu-host",
                       "--out", str(tmp_path / "p.yaml"), "--report", str(tmp_path / "f.txt"))
    one_line_error(code, err, "--report", "not a folder")


def test_unwritable_validate_out_is_refused_before_measuring(capsys, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    code, _, err = run(capsys, "validate", "--suite", "smoke", "--out", str(tmp_path / "f.txt"))
    one_line_error(code, err, "--out", "not a folder")


def test_writable_trace_in_a_new_file_still_works(capsys, tmp_path):
    code, _, _ = run(capsys, "run", "--workload", "mlp", "--trace", str(tmp_path / "t.json"))
    assert code == 0
    strict_loads((tmp_path / "t.json").read_text())


# -- 8. JSON output never holds NaN or Infinity ----------------------------------------------
@pytest.mark.parametrize("argv", [
    ("run", "--workload", "gpt2", "--arch", "systolic-32x32", "--json"),   # unpriced: NaN cost
    ("run", "--workload", "mlp", "--arch", "eyeriss", "--json"),
    ("compare", "--workload", "gpt2", "--arch", "systolic-32x32,h100-sxm,eyeriss", "--json"),
    ("op", "memcpy", "--bytes", "1", "--arch", "systolic-32x32", "--json"),  # AI = 0 / inf
    ("op", "matmul", "--m", "1", "--n", "1", "--k", "1", "--arch", "systolic-32x32", "--json"),
    ("archs", "--json"),
    ("workloads", "--json"),
])
def test_json_output_is_strict_json(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0
    for doc in [out] if argv[0] != "ops" else out.splitlines():
        strict_loads(doc)
    assert "NaN" not in out and "Infinity" not in out


def test_json_helpers_turn_non_finite_numbers_into_null():
    from simulator.cli import _dumps

    text = _dumps({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (1, 2)})
    assert strict_loads(text) == {"a": None, "b": [None, None, 1.5], "c": [1, 2]}


def test_non_finite_value_reaching_the_printer_becomes_null(capsys, monkeypatch):
    import simulator.cli as cli

    monkeypatch.setattr(cli, "_op_cost_dict", lambda *a: {"latency_s": float("inf"),
                                                          "energy_j": float("nan"),
                                                          "details": {"x": -float("inf")}})
    code, out, _ = run(capsys, "op", "matmul", "--m", "2", "--n", "2", "--k", "2", "--json")
    assert code == 0
    assert strict_loads(out) == {"latency_s": None, "energy_j": None, "details": {"x": None}}


def test_ops_json_and_trace_are_strict(capsys, tmp_path):
    code, out, _ = run(capsys, "ops", "--input", str(REPO / "examples" / "kernels.jsonl"),
                       "--arch", "systolic-32x32", "--json")
    # systolic-32x32 has no link either: the lines before the all-reduce print, then an error
    assert out.strip()
    for line in out.splitlines():
        strict_loads(line)
    code, _, _ = run(capsys, "run", "--workload", "mlp", "--arch", "systolic-32x32",
                     "--trace", str(tmp_path / "t.json"), "--json")
    assert code == 0
    strict_loads((tmp_path / "t.json").read_text())


# -- 9. spec headers cite public sources, not a document outside the repository --------------
def test_specs_cite_no_document_outside_the_repository():
    pattern = re.compile(r"/work/|shared/|DESIGN\.md|design doc|hardware-figures|reference "
                         r"sheet|\.\./", re.IGNORECASE)
    bad = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
           for p in sorted((REPO / "arch_specs").rglob("*.yaml"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert bad == []


# -- the same through a real process: exit status and stderr as a shell sees them -------------
@pytest.mark.parametrize("argv,code", [
    (["compare", "--workload", "mlp"], 0),
    (["op", "attention", "--heads", "4", "--head-dim", "64", "--seq", "16"], 0),
    (["ops", "--input", "README.md"], 2),
    (["run", "--workload", "mlp", "--trace", "/nonexistent-dir/t.json"], 2),
    (["run", "--batch", "-1"], 2),
])
def test_exit_status_in_a_subprocess(tmp_path, argv, code):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "simulator.cli", *argv], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    if code:
        assert "error" in p.stderr.splitlines()[-1]
