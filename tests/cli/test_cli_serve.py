"""``hwsim serve`` on the command line: the example traces run, the JSON contract holds, runs
are reproducible, and bad input is one ``error: ...`` line with exit status 2, never a
traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import one_error_line, run_cli

from simulator.serve.requests import MAX_TRACE_BYTES, load_trace

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "examples" / "traces"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, "serve", *argv)


def usage_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("hwsim serve: error: "), err
    return err.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# the example traces
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,n", [("chat.csv", 600), ("rag.jsonl", 400)])
def test_serve_runs_each_example_trace(capsys, name, n):
    code, out, err = run(capsys, "--trace", str(TRACES / name), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["completed"] == d["requests"] == n
    assert d["ttft_s"]["p50"] > 0 and d["e2e_s"]["p99"] >= d["ttft_s"]["p99"]
    code, out, err = run(capsys, "--trace", str(TRACES / name), "--chunked-prefill",
                         "--max-batched-tokens", "1024")
    assert code == 0, err
    assert f"trace {TRACES / name}, {n} requests" in out


def test_example_traces_have_their_stated_shapes():
    """README: chat prompts mean ~250, outputs ~300; RAG prompts ~2,000, outputs ~100 (means
    of log-normal draws clipped at both ends: within 10%); arrivals at ~4 and ~1.5 req/s; the
    RAG arrivals bursty (inter-arrival CV well above Poisson's 1); files under 100 KB."""
    for name, prompt, output, rate, n in (("chat.csv", 250, 300, 4.0, 600),
                                          ("rag.jsonl", 2000, 100, 1.5, 400)):
        path = TRACES / name
        assert path.stat().st_size < 100_000
        reqs = load_trace(path)
        assert len(reqs) == n
        p = np.array([r.prompt_tokens for r in reqs])
        o = np.array([r.output_tokens for r in reqs])
        gaps = np.diff([r.arrival_s for r in reqs])
        assert p.mean() == pytest.approx(prompt, rel=0.1)
        assert o.mean() == pytest.approx(output, rel=0.1)
        assert 1 / gaps.mean() == pytest.approx(rate, rel=0.15)
        cv = gaps.std() / gaps.mean()
        assert (cv > 1.2) if name == "rag.jsonl" else (cv == pytest.approx(1.0, abs=0.15))


def test_make_traces_reproduces_the_shipped_files(tmp_path):
    """The generator is seeded: running it again writes the same bytes."""
    subprocess.run([sys.executable, str(TRACES / "make_traces.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=60)
    for name in ("chat.csv", "rag.jsonl"):
        assert (tmp_path / name).read_bytes() == (TRACES / name).read_bytes()


# ---------------------------------------------------------------------------------------------
# outputs and reproducibility
# ---------------------------------------------------------------------------------------------

ARGS = ("--workload", "gpt2", "--rate", "50", "--requests", "120", "--prompt-len", "200",
        "--output-len", "40", "--length-cv", "0.5", "--seed", "9")


def test_json_contract_and_trace_out(capsys, tmp_path):
    out_trace = tmp_path / "serve.json"
    code, out, err = run(capsys, *ARGS, "--json", "--trace-out", str(out_trace))
    assert code == 0, err
    d = json.loads(out)
    for key in ("workload", "arch", "completed", "requests_per_s", "output_tokens_per_s",
                "goodput_requests_per_s", "ttft_s", "tpot_s", "itl_s", "e2e_s", "kv_cache",
                "preemptions", "iterations", "energy_per_output_token_j", "usd_per_hour",
                "mean_in_system", "littles_law_rhs"):
        assert key in d
    assert d["completed"] == 120 and d["workload"] == "gpt2"
    tr = json.loads(out_trace.read_text())
    its = [e for e in tr["traceEvents"] if e["ph"] == "X"]
    assert len(its) == d["iterations"]
    assert all(e["dur"] > 0 for e in its)


def test_same_seed_same_output_different_seed_different(capsys):
    outs = [run(capsys, *ARGS, "--json")[1] for _ in range(2)]
    assert outs[0] == outs[1]
    other = run(capsys, *ARGS[:-1], "10", "--json")[1]
    assert other != outs[0]


def test_zero_in_any_spelling_for_non_negative_options(capsys):
    """Regression: ``--think 0.00`` and ``--length-cv 0e0`` were refused ('expected a finite
    number in (0, inf)') while ``0`` and ``0.0`` were accepted."""
    code, out, err = run(capsys, "--workload", "gpt2", "--users", "2", "--requests", "4",
                         "--think", "0.00", "--length-cv", "0e0", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 4
    code, _, err = run(capsys, "--workload", "gpt2", "--users", "2", "--think", "-1")
    usage_error(code, err)


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit 2
# ---------------------------------------------------------------------------------------------

BAD_TRACES = {
    "negative.csv": ("arrival_s,prompt_tokens,output_tokens\n0,-5,3\n", "prompt_tokens"),
    "missing.jsonl": ('{"arrival_s": 0, "prompt_tokens": 5}\n', "missing output_tokens"),
    "word.csv": ("arrival_s,prompt_tokens,output_tokens\n0,ten,3\n", "must be a number"),
    "nan.jsonl": ('{"arrival_s": NaN, "prompt_tokens": 5, "output_tokens": 3}\n',
                  "must be finite"),
    "inf.jsonl": ('{"arrival_s": 0, "prompt_tokens": Infinity, "output_tokens": 3}\n',
                  "must be finite"),
    "array.jsonl": ("[1, 2, 3]\n", "expected a JSON object"),
    "string.jsonl": ('"hello"\n', "expected a JSON object"),
    "empty.csv": ("", "empty trace"),
    "empty.jsonl": ("", "no requests"),
    "bigint.jsonl": ('{"arrival_s": 0, "prompt_tokens": 1' + "0" * 400 +
                     ', "output_tokens": 3}\n', "out of range"),
    "longfield.csv": ("arrival_s,prompt_tokens,output_tokens\n0," + "9" * 140_000 + ",3\n",
                      "not valid CSV"),
}


@pytest.mark.parametrize("name", sorted(BAD_TRACES))
def test_bad_trace_is_one_error_line(capsys, tmp_path, name):
    content, msg = BAD_TRACES[name]
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    line = one_error_line(*run(capsys, "--workload", "gpt2", "--trace", str(p))[::2])
    assert msg in line and name in line


def test_unreadable_and_huge_trace_files(capsys, tmp_path):
    line = one_error_line(*run(capsys, "--trace", str(tmp_path / "absent.csv"))[::2])
    assert "cannot read the trace" in line
    line = one_error_line(*run(capsys, "--trace", str(tmp_path))[::2])  # a folder
    assert "cannot read the trace" in line
    big = tmp_path / "huge.jsonl"
    with open(big, "wb") as f:  # sparse file: its size is over the limit, no disk used
        f.truncate(MAX_TRACE_BYTES + 1)
    line = one_error_line(*run(capsys, "--trace", str(big))[::2])
    assert "byte limit" in line


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf", "fast", ""])
def test_bad_rate_is_a_usage_error(capsys, rate):
    line = usage_error(*run(capsys, "--rate", rate)[::2])
    assert "--rate" in line


BAD_RUNS = {  # name: (argv, message)
    "no load": ((), "give exactly one load"),
    "two loads": (("--rate", "2", "--offline"), "give exactly one load"),
    "rate and users": (("--rate", "2", "--users", "3"), "(got --rate, --users)"),
    "prompt over budget": (("--rate", "1", "--requests", "3", "--prompt-len", "4000",
                            "--max-batched-tokens", "2048"), "exceeds --max-batched-tokens 2048"),
    "request over the cache": (("--rate", "1", "--requests", "3", "--prompt-len", "8000",
                                "--output-len", "8000", "--chunked-prefill",
                                "--gpu-memory-utilization", "0.2"), "a replica's cache holds"),
    "70b on one l4": (("--workload", "llama2-70b", "--arch", "l4", "--rate", "1"),
                      "leave no room for a KV cache"),
    "encoder model": (("--workload", "bert-base", "--rate", "1"), "bert-base"),
    "tp over the system": (("--arch", "dgx-a100", "--tp", "16", "--rate", "1"),
                           "needs 16 devices but dgx-a100 has 8"),
    "tp on one part": (("--tp", "2", "--rate", "1"), "exceeds the 1 device"),
    "burstiness huge": (("--rate", "1", "--burstiness", "1e300"), "--burstiness"),
    "length cv huge": (("--rate", "1", "--length-cv", "1e300"), "--length-cv"),
    "memory over 1": (("--rate", "1", "--gpu-memory-utilization", "1.5"),
                      "--gpu-memory-utilization"),
    "unknown dtype": (("--rate", "1", "--dtype", "fp7"), "unknown dtype"),
    "unknown model": (("--workload", "llama9", "--rate", "1"), "llama9"),
}


@pytest.mark.parametrize("name", sorted(BAD_RUNS))
def test_bad_run_is_one_error_line(capsys, name):
    argv, msg = BAD_RUNS[name]
    line = one_error_line(*run(capsys, "--requests", "5", *argv)[::2])
    assert msg in line
