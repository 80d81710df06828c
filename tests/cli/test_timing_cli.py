"""``--timing`` on the commands that print a Predictor latency (simulator/timing.py)."""

from __future__ import annotations

import json

import pytest

from tests.cli._helpers import one_error_line, run_cli

RUN = ("run", "--workload", "gpt2", "--arch", "h100-sxm", "--phase", "decode", "--batch", "1",
       "--context", "64")


def _lat(capsys, *argv: str) -> dict:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_run_json_names_the_timing_and_orders_the_latencies(capsys):
    d = {t: _lat(capsys, *RUN, "--timing", t) for t in ("kernel", "graph", "stream", "eager")}
    assert [d[t]["timing"] for t in d] == list(d)
    assert d["kernel"]["latency_s"] < d["graph"]["latency_s"] < d["stream"]["latency_s"] \
        <= d["eager"]["latency_s"]
    assert _lat(capsys, *RUN)["latency_s"] == d["stream"]["latency_s"]  # the default
    assert "host_end_s" in d["eager"]["ops"][0] and "host_s" not in d["stream"]["ops"][0]


def test_run_text_and_explain_say_which_timing(capsys):
    # a slow host (10 us per Python call) makes GPT-2 decode host-bound
    code, out, _ = run_cli(capsys, *RUN, "--timing", "eager", "--explain",
                           "--set", "params.eager_dispatch=10 us")
    assert code == 0
    assert "eager timing" in out.splitlines()[0]
    assert "HOST-BOUND" in out and "Timing: eager" in out and "eager_dispatch = 10 us" in out
    assert "eager recipe norm.layernorm" in out and "eager_launch = 3 us" in out
    code, out, _ = run_cli(capsys, *RUN)
    assert "stream timing" in out.splitlines()[0]


def test_eager_trace_has_a_host_track(capsys, tmp_path):
    path = tmp_path / "t.json"
    code, _, err = run_cli(capsys, *RUN, "--timing", "eager", "--trace", str(path))
    assert code == 0, err
    tr = json.loads(path.read_text())
    assert any(e.get("cat") == "host" for e in tr["traceEvents"])
    assert tr["otherData"]["timing"] == "eager"


def test_op_timing(capsys):
    base = ("op", "add", "--numel", "4096", "--arch", "h100-sxm")
    k = _lat(capsys, *base, "--timing", "kernel")
    s = _lat(capsys, *base)
    assert (k["timing"], s["timing"]) == ("kernel", "stream")
    assert s["latency_s"] - k["latency_s"] == pytest.approx(4e-6, rel=1e-9)
    code, out, _ = run_cli(capsys, *base, "--timing", "graph", "--explain")
    assert code == 0 and "Which time this is" in out and "graph_launch_gap = 1 us" in out


@pytest.mark.parametrize("argv,msg", [
    (("op", "add", "--numel", "64", "--arch", "cpu-host", "--timing", "graph"),
     "cpu-host (cpu family): --timing graph is not modelled"),
    (("run", "--workload", "resnet18", "--arch", "tpu-v4", "--timing", "eager"),
     "tpu-v4 (systolic family): --timing eager is not modelled"),
])
def test_a_mode_the_family_lacks_is_one_clear_line(capsys, argv, msg):
    code, _, err = run_cli(capsys, *argv)
    assert msg in one_error_line(code, err)


def test_unknown_timing_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, *RUN, "--timing", "wall")
    assert code == 2 and "invalid choice: 'wall'" in err and "Traceback" not in err


def test_compare_serve_and_train_take_timing(capsys):
    code, out, err = run_cli(capsys, "compare", "--workload", "gpt2", "--arch", "h100-sxm,l4",
                             "--batch", "1", "--seq", "64", "--timing", "graph", "--json")
    assert code == 0, err
    assert {d["timing"] for d in json.loads(out)} == {"graph"}
    code, out, err = run_cli(capsys, "serve", "--workload", "gpt2", "--rate", "5",
                             "--requests", "10", "--timing", "eager", "--json")
    assert code == 0, err
    assert json.loads(out)["timing"] == "eager"
    code, out, err = run_cli(capsys, "train", "--workload", "gpt2", "--arch", "h100-sxm",
                             "--global-batch", "4", "--seq", "128", "--timing", "kernel",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["timing"] == "kernel"


def test_compare_measured_takes_timing(capsys, tmp_path):
    from pathlib import Path

    csv = Path(__file__).resolve().parents[2] / "experiments/data/vidur-a100/llama2-7b_mlp.csv"
    code, out, err = run_cli(capsys, "compare-measured", str(csv), "--arch", "a100-sxm-80gb",
                             "--timing", "graph", "--out", str(tmp_path / "r"), "--json")
    assert code == 0, err
    assert json.loads(out)["timing"] == "graph"


def test_explore_sweeps_timing_as_a_run_option(capsys, tmp_path):
    import csv

    study = tmp_path / "s.yaml"
    study.write_text("name: t\nbase: h100-sxm\nworkloads:\n"
                     "  - {workload: gpt2, phase: decode, context: 128}\n"
                     "axes:\n  timing: [kernel, graph, stream, eager]\n"
                     "objectives: {latency_s: min}\n")
    code, out, err = run_cli(capsys, "explore", str(study), "--out", str(tmp_path / "o"),
                             "--no-plot", "--json")
    assert code == 0, err
    assert json.loads(out)["front"][0]["timing"] == "kernel"
    with open(tmp_path / "o" / "points.csv", newline="") as f:
        lat = {r["timing"]: float(r["latency_s"]) for r in csv.DictReader(f)}
    assert lat["kernel"] < lat["graph"] < lat["stream"] < lat["eager"]
