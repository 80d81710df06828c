"""Fuzz of ``train()`` and ``hwsim train``: every combination of layout, schedule, ZeRO,
recomputation, micro-batch, bucket and node options either runs, with finite non-negative
metrics (MFU <= HFU <= 1, a bubble in [0, 1)), or fails with one of hwsim's one-line errors
that names the offending option or value; the command line exits 0 or 2, never a traceback.

The bugs this fuzz found (type errors and zero divisions on odd micro-batch and bucket values,
errors naming the wrong option, hours-long runs for huge accumulation counts or node counts,
an out-of-range tensor as a bare ValueError) are fixed; the ``test_fixed_*`` tests at the end
pin one reproducer each.
"""

from __future__ import annotations

import atexit
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _timeouts import no_hang
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.errors import HwsimError
from simulator.train import train

MODELS = ["gpt2", "gpt2", "llama2-7b"]
SYSTEMS = ["dgx-a100", "dgx-a100", "dgx-h100", "h100-sxm"]
fuzz = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

#: per option, values that are wrong (0, negative, huge, floats, strings, bools) or extreme
BAD_VALUES = {
    "tp": ("--tp", [0, -1, 2.0, "2", True, 10**9]),
    "pp": ("--pp", [0, -1, 1.5, "2", 10**9]),
    "dp": ("--dp", [0, -3, 2.5, "4"]),
    "ep": ("--ep", [0, -1, 1.5]),
    "zero": ("--zero", [4, -1, "1", True, 2.5]),
    "micro_batch": ("--micro-batch", [-1, 0, 2.5, "2", 3]),
    "global_batch": ("batch", [0, -1, 2.5, "16"]),
    "seq": ("seq", [0, -1, 1.5, "128"]),
    "nodes": ("--nodes", [0, -1, 1.5, "2", True]),
    "schedule": ("--schedule", ["x", 1, "GPIPE"]),
    "recompute": ("--recompute", ["half", None, 1]),
    "virtual_stages": ("--virtual-stages", [0, -1, 1.5, "2"]),
    "bucket_mb": ("--bucket-mb", [-1, -0.5, math.nan, math.inf]),
    "dtype": ("dtype", ["xx", 5]),
}
EXTREME = {"tp": [16, 3], "pp": [3, 8, 64], "dp": [10**9, 16, 3], "ep": [2, 8],
           "global_batch": [10**9, 1, 3, 6], "seq": [10**7, 1, 64], "nodes": [10**9, 4],
           "virtual_stages": [10**9, 1, 3], "bucket_mb": [1e300, 1e-9, 25, 0],
           "dtype": ["int4", "int8", "fp8_e5m2", "tf32"], "micro_batch": [10**9, 64, 8],
           "schedule": ["1f1b", "gpipe"], "recompute": ["full"], "zero": [3, 1.0]}
CORRUPT = [(k, v) for k, (_, vals) in BAD_VALUES.items() for v in vals] + \
    [(k, v) for k, vals in EXTREME.items() for v in vals] + [("bucket_mb", "x")]


@st.composite
def train_inputs(draw) -> dict:
    """A mostly consistent step (what each option needs of the others), then zero to two
    options set to a wrong or extreme value."""
    workload = draw(st.sampled_from(MODELS))
    pp = draw(st.sampled_from([1, 1, 2, 4]))
    tp = draw(st.sampled_from([None, 1, 2, 4] + ([8] if workload != "gpt2" else [])))
    dp = draw(st.sampled_from([None, None, 1, 2, 4]))
    schedule = None if pp == 1 else draw(st.sampled_from([None, "gpipe", "1f1b",
                                                          "interleaved"]))
    kw = {"workload": workload, "arch": draw(st.sampled_from(SYSTEMS)),
          "global_batch": draw(st.sampled_from([8, 16, 32, 64])),
          "seq": draw(st.sampled_from([128, 128, 256])),
          "micro_batch": draw(st.sampled_from([None, None, 1, 2])),
          "nodes": draw(st.sampled_from([None, None, 1, 2])), "tp": tp, "pp": pp, "dp": dp,
          "ep": 1, "zero": draw(st.sampled_from([0, 0, 1, 2] + ([3] if pp == 1 else []))),
          "recompute": draw(st.sampled_from(["none", "none", "selective", "full"])),
          "schedule": schedule,
          "virtual_stages": draw(st.sampled_from([None, 2])) if schedule == "interleaved"
          else None,
          "sequence_parallel": draw(st.booleans()) if tp and tp > 1 else False,
          "exact": draw(st.sampled_from([False, False, False, True])),
          "bucket_mb": draw(st.sampled_from([25.0, 25.0, 0, None, 1.0])),
          "dtype": draw(st.sampled_from([None, None, "fp16", "fp32", "fp8"]))}
    for k, v in draw(st.lists(st.sampled_from(CORRUPT), max_size=2, unique_by=lambda c: c[0])):
        kw[k] = v
    return kw


#: words (option names and what a message about them says) one of which an error must name
OPTION_WORDS = (
    "--tp", "--pp", "--dp", "--ep", "--zero", "--micro-batch", "--microbatches", "--nodes",
    "--schedule", "--virtual-stages", "--bucket-mb", "--recompute", "--sequence-parallel",
    "batch", "seq", "dtype", "layout", "tensor-parallel", "pipeline", "interleaved",
    "micro-batches", "virtual_stages", "expert", "count", "needs", "has no", "cannot run",
    "does not divide", "layers", "sequence parallelism",
)


def _check_metrics(r, kw: dict) -> None:
    m = r.metrics
    for k, v in m.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            assert math.isfinite(v) and v >= 0, (k, v)
    for k, v in m["memory_per_device_bytes"].items():
        assert math.isfinite(v) and v >= 0, (k, v)
    assert m["step_time_s"] > 0 and m["energy_j"] > 0 and m["executed_flops"] > 0
    assert m["mfu"] <= m["hfu"] * (1 + 1e-12) and m["hfu"] <= 1 + 1e-12, (m["mfu"], m["hfu"])
    assert 0 <= m["bubble_fraction"] < 1
    assert m["exposed_comm_s"] <= m["step_time_s"] * (1 + 1e-9)
    assert m["compute_time_s"] <= m["step_time_s"] * (1 + 1e-9)
    assert m["tp"] * m["pp"] * m["dp"] * m["ep"] == m["devices"] <= r.plan.system.count
    gb = kw["global_batch"]
    assert m["tokens_per_s"] == pytest.approx(gb * m["seq"] / m["step_time_s"], rel=1e-9)
    # the micro-batch asked for is the one run (test_fixed_micro_batch_ignored_when_dp_is_chosen)
    if kw.get("micro_batch") is not None and kw.get("dp") is not None and gb % m["dp"] == 0:
        runs = m["pipeline_microbatches"] if m["pp"] > 1 else m["accumulation_steps"]
        assert m["micro_batch"] * runs * m["dp"] == gb, m
    json.loads(r.to_json(), parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))


def _check_error(e: HwsimError, kw: dict) -> None:
    msg = str(e)
    assert msg.strip(), type(e).__name__
    assert "\n" not in msg.strip(), msg
    assert any(w in msg for w in OPTION_WORDS) or kw["workload"] in msg, msg


RAN: list[bool] = []


@fuzz
@given(kw=train_inputs())
def test_any_train_input_runs_or_fails_cleanly(kw):
    try:
        with no_hang(20):
            r = train(**kw)
    except HwsimError as e:  # WorkloadError, CapacityError, SpecError are HwsimErrors
        _check_error(e, kw)
        RAN.append(False)
        return
    RAN.append(True)
    _check_metrics(r, kw)


def test_the_train_fuzz_runs_a_fair_share():
    """Guards the fuzz above against rejecting everything (run after it, in file order)."""
    assert len(RAN) >= 200 and sum(RAN) >= 60, (len(RAN), sum(RAN))


# one bad option at a time, on a step that runs: the message names that option and its value
GOOD = {"workload": "gpt2", "arch": "dgx-a100", "global_batch": 16, "seq": 128, "tp": 2,
        "dp": 4}
GOOD_PP = {**GOOD, "pp": 2, "dp": 2, "micro_batch": 2}
ONE_BAD = [(opt, v) for opt, (_, vals) in BAD_VALUES.items() for v in vals]


def _named(value, msg: str) -> bool:
    """``value`` appears in ``msg`` as itself (``-1`` not as the start of ``-1000000.0``)."""
    return any(re.search(rf"(?<![\w.]){re.escape(t)}(?![\w.]|\.\d)", msg)
               for t in {repr(value), str(value)})


@pytest.mark.parametrize("piped", [False, True], ids=["pp1", "pp2"])
@pytest.mark.parametrize("opt,value", ONE_BAD, ids=[f"{k}={v!r}" for k, v in ONE_BAD])
def test_one_bad_option_is_named_with_its_value(opt, value, piped):
    kw = {**(GOOD_PP if piped else GOOD), opt: value}
    if opt == "schedule" and not piped:
        kw["pp"] = 2
        kw["dp"] = 2
    with pytest.raises(HwsimError) as e, no_hang(20):
        train(**kw)
    msg, word = str(e.value), BAD_VALUES[opt][0]
    assert word in msg and _named(value, msg), (kw, msg)


# -- the command line --------------------------------------------------------------------------
_TMP = Path(tempfile.mkdtemp(prefix="hwsim-train-fuzz-"))
atexit.register(shutil.rmtree, _TMP, True)
_WRONG = ["0", "-1", "1e9", "2.5", "x", "nan", "", "-0", "99999999999999999999"]
#: per flag, good values (most draws) then wrong ones; --trace only ever writes under _TMP
CLI_VALUES = {
    "--tp": ["1", "2", "4", "8", "3"], "--pp": ["1", "2", "4", "3"],
    "--dp": ["1", "2", "4", "8"], "--ep": ["1", "2"], "--zero": ["0", "1", "2", "3", "4"],
    "--micro-batch": ["1", "2", "4", "3"], "--global-batch": ["8", "16", "32", "6"],
    "--seq": ["128", "64", "256"], "--nodes": ["1", "2"],
    "--schedule": ["gpipe", "1f1b", "interleaved", "GPipe"],
    "--virtual-stages": ["1", "2", "3"], "--bucket-mb": ["0", "25", "1", "inf", "-1"],
    "--recompute": ["none", "selective", "full", "half"],
    "--dtype": ["fp16", "fp32", "fp8", "int4", "xx"], "--top": ["1", "3"],
    "--jobs": ["1", "2"],
    "--trace": [str(_TMP / "t.json"), str(_TMP), str(_TMP / "no" / "t.json")],
    "--arch": ["dgx-a100", "dgx-h100", "h100-sxm", "nope"],
}
SWITCHES = ["--exact", "--sequence-parallel", "--json", "--json", "--search"]


@st.composite
def cli_args(draw) -> list[str]:
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(CLI_VALUES)), max_size=5, unique=True)):
        good = CLI_VALUES[flag]
        pool = good if flag == "--trace" else good * 3 + _WRONG
        argv += [flag, draw(st.sampled_from(pool))]
    return argv + draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(workload=st.sampled_from(["gpt2", "gpt2", "llama2-7b"]), args=cli_args())
def test_cli_train_never_traces(workload, args, capsys):
    capsys.readouterr()  # the fixture is shared by the generated cases: start clean
    argv = ["train", "--workload", workload, "--seq", "128", "--global-batch", "16", *args]
    # --search over a larger model or many devices is the slow search itself, not a fuzz case
    assume("--search" not in args or (workload == "gpt2" and "--nodes" not in args))
    try:
        with no_hang(30):
            code = main(argv)
    except SystemExit as e:  # argparse usage error
        code = e.code
    out, err = capsys.readouterr()
    # 1: --search found no layout that fits (cli_train._search)
    assert code in ((0, 1, 2) if "--search" in args else (0, 2)), (argv, code)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.strip() and err.count("error: ") + err.count("usage: ") >= 1, (argv, err)
    if code == 0 and "--json" in args:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    CLI_CODES.append(code)


CLI_CODES: list[int] = []


def test_the_cli_fuzz_runs_a_fair_share():
    assert len(CLI_CODES) >= 50 and CLI_CODES.count(0) >= 10, CLI_CODES


def test_cli_train_errors_are_one_line_with_status_2(capsys):
    for argv, word in [(["--pp", "2", "--micro-batch", "3"], "--micro-batch"),
                       (["--zero", "3", "--pp", "2"], "--zero"),
                       (["--bucket-mb", "nan"], "--bucket-mb"),
                       (["--trace", "/nonexistent/t.json"], "--trace"),
                       (["--search", "--tp", "2"], "--search"),
                       (["--virtual-stages", "2"], "interleaved"),
                       (["--jobs", "2"], "--jobs")]:
        capsys.readouterr()
        code = main(["train", "--workload", "gpt2", "--seq", "128", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and word in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err


# -- bugs this fuzz found, fixed: one reproducer each --------------------------------------------------
def _finishes_within(seconds: float, call: str) -> None:
    """``call`` (an expression on :func:`train`) in a fresh interpreter, killed after
    ``seconds`` (a SIGALRM in this process can land in a finaliser and be swallowed)."""
    code = f"from simulator.train import train; {call}"
    try:
        subprocess.run([sys.executable, "-c", code], timeout=seconds, check=True,
                       cwd=Path(__file__).resolve().parents[2], capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{call} did not finish within {seconds} s")


def _xfail(reason: str):
    return pytest.mark.xfail(strict=True, reason=reason)


def test_fixed_string_bucket_mb_is_a_type_error():
    with pytest.raises(HwsimError, match="--bucket-mb"):
        train("gpt2", "dgx-a100", global_batch=16, seq=128, bucket_mb="x")


def test_fixed_huge_seq_is_a_value_error():
    with pytest.raises(HwsimError, match="seq"):
        train("llama2-7b", "dgx-a100", global_batch=64, seq=10**7, tp=1)


def test_fixed_zero_micro_batch_with_pipeline():
    with pytest.raises(HwsimError, match="--micro-batch"):
        train("gpt2", "dgx-a100", global_batch=16, seq=128, tp=2, pp=2, dp=2, micro_batch=0)


def test_fixed_string_micro_batch_with_pipeline():
    with pytest.raises(HwsimError, match="--micro-batch"):
        train("gpt2", "dgx-a100", global_batch=16, seq=128, tp=2, pp=2, dp=2, micro_batch="2")


def test_fixed_negative_micro_batch_with_pipeline():
    with pytest.raises(HwsimError, match=r"--micro-batch.*-1\b"):
        train("gpt2", "dgx-a100", global_batch=16, seq=128, tp=2, pp=2, dp=2, micro_batch=-1)


def test_fixed_bucket_mb_message_shows_bytes():
    with pytest.raises(HwsimError) as e:
        train("gpt2", "dgx-a100", global_batch=16, seq=128, bucket_mb=-1)
    assert _named(-1, str(e.value)), str(e.value)


def test_fixed_nodes_on_a_part_blames_set_count():
    with pytest.raises(HwsimError, match="--nodes"):
        train("gpt2", "h100-sxm", global_batch=8, seq=128, nodes=2)


def test_fixed_micro_batch_ignored_when_dp_is_chosen():
    m = train("llama2-7b", "dgx-a100", global_batch=16, micro_batch=4, seq=128, tp=1,
              pp=2).metrics
    assert m["micro_batch"] * m["pipeline_microbatches"] * m["dp"] == 16, m


def test_fixed_many_accumulation_steps_take_minutes():
    _finishes_within(5, "train('gpt2', 'dgx-a100', global_batch=64000, seq=128, micro_batch=1)")


def test_fixed_many_nodes_take_minutes():
    # 8 million devices were simulated idle one by one (110 s); now a clear error before any
    # build (beyond the largest clusters built)
    with pytest.raises(HwsimError, match="--nodes 1000000"):
        train("gpt2", "dgx-a100", global_batch=64, seq=128, nodes=10**6)
