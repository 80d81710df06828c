"""hwsim explore: study files, their errors, the points, the store and the resume guarantee."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from simulator.cli import main
from simulator.explore import StudyError, front, load, load_study, run_study
from simulator.explore.study import point_id

ROOT = Path(__file__).resolve().parents[2]

STUDY = """\
name: h100-whatif
base: h100-sxm
workloads:
  - {workload: gpt2, phase: decode, batch: 8, context: 512}
axes:
  memory.hbm.bandwidth: [2 TB/s, 3.35 TB/s, 4.8 TB/s]
  compute.tensor_core.count: {range: [66, 198], steps: 3}
  batch: [1, 8, 64]
objectives: {tokens_per_s: max, energy_per_sample_j: min}
constraints: ["avg_power_w <= 700"]
"""


def _write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# -- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize("old, new, field, value", [
    ("memory.hbm.bandwidth:", "memory.hbm.bandwdth:", "axes.memory.hbm.bandwdth", "2 TB/s"),
    ("{range: [66, 198], steps: 3}", "{range: [66, 66], steps: 3}",
     "axes.compute.tensor_core.count.range", "[66, 66]"),
    ("[1, 8, 64]", "[]", "axes.batch", "empty"),
    ('["avg_power_w <= 700"]', '["watts <= 700"]', "constraints[0]", "watts"),
    ("{tokens_per_s: max,", "{tokens_per_sec: max,", "objectives.tokens_per_sec", "unknown"),
    ("tokens_per_s: max", "tokens_per_s: most", "objectives.tokens_per_s", "most"),
    ("base: h100-sxm", "base: h100-sxn", "base", "h100-sxn"),
    ("workload: gpt2", "workload: gpt-7", "workloads[0].workload", "gpt-7"),
    ("batch: 8, context", "batch: -8, context", "workloads[0].batch", "-8"),
])
def test_study_errors_name_file_field_and_value(tmp_path, old, new, field, value):
    assert old in STUDY
    p = _write(tmp_path, STUDY.replace(old, new, 1))
    with pytest.raises(StudyError) as e:
        load_study(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg and value in msg, msg


def test_every_problem_is_reported_at_once(tmp_path):
    text = STUDY.replace("memory.hbm.bandwidth:", "memory.hbm.bandwdth:") \
        .replace('"avg_power_w <= 700"', '"watts <= 700"')
    with pytest.raises(StudyError) as e:
        load_study(_write(tmp_path, text))
    assert len(e.value.problems) == 2, e.value.problems


def test_area_on_a_gpu_is_an_error_row_that_says_why(tmp_path):
    """The area model covers systolic parts; a GPU point is recorded with the reason."""
    text = STUDY.replace("energy_per_sample_j: min", "area_mm2: min") \
        .replace("  batch: [1, 8, 64]\n", "")
    df = load(run_study(load_study(_write(tmp_path, text)), tmp_path / "o",
                        limit=2).directory)
    assert set(df["status"]) == {"error"}
    assert all("systolic-array parts" in e and "'gpu'" in e for e in df["error"])


def test_area_and_silicon_cost_objectives_on_a_systolic_part(tmp_path):
    """More arrays: more area, more silicon dollars, never slower."""
    text = """\
name: array-size
base: systolic-32x32
workloads:
  - {workload: bert-base, batch: 1, seq: 128, dtype: int8}
axes:
  compute.pe_array.count: [1, 2, 4]
objectives: {latency_s: min, area_mm2: min}
constraints: ["silicon_cost_usd <= 1000"]
"""
    df = load(run_study(load_study(_write(tmp_path, text)), tmp_path / "o").directory)
    assert list(df["status"]) == ["ok"] * 3, df["error"].tolist()
    df = df.sort_values("area_mm2")
    assert df["area_mm2"].is_monotonic_increasing and df["area_mm2"].iloc[0] > 0
    assert df["silicon_cost_usd"].is_monotonic_increasing
    assert df["latency_s"].is_monotonic_decreasing


def test_unit_cost_and_tco_from_the_spec_price(tmp_path):
    from simulator.arch.loader import load_arch
    from simulator.cost.dollars import J_PER_KWH, CostOptions

    text = STUDY.replace("energy_per_sample_j: min", "tco_usd: min")
    df = load(run_study(load_study(_write(tmp_path, text)), tmp_path / "o").directory)
    spec = load_arch("h100-sxm")
    price, life = spec.device.pricing.price_usd, spec.device.pricing.lifetime_s
    o = CostOptions()
    assert (df["unit_cost_usd"] == price).all()  # $27,500: the spec's price
    # purchase + electricity of the run's average power over the lifetime (PUE, $/kWh)
    expect = price + df["avg_power_w"] * life / J_PER_KWH * o.pue * o.usd_per_kwh
    assert np.allclose(df["tco_usd"], expect, rtol=1e-12)
    assert (df["tco_usd"] > price).all()


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "missing.yaml")
    with pytest.raises(StudyError, match="not valid YAML"):
        load_study(_write(tmp_path, "axes: [unclosed"))
    with pytest.raises(StudyError, match="expected a mapping"):
        load_study(_write(tmp_path, "- just\n- a list\n"))


# -- points ---------------------------------------------------------------------------------
def test_grid_points_are_the_product_in_a_fixed_order(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    pts = s.points()
    assert len(pts) == s.grid_size() == 27
    expect = list(itertools.product(["2 TB/s", "3.35 TB/s", "4.8 TB/s"], [66, 132, 198],
                                    [1, 8, 64]))
    assert [tuple(p.values()) for p in pts] == expect
    assert len({point_id(p) for p in pts}) == 27


def test_ranges_linear_and_log(tmp_path):
    text = STUDY.replace("{range: [66, 198], steps: 3}", "{log_range: [33, 264], steps: 4}")
    s = load_study(_write(tmp_path, text))
    axis = next(a for a in s.axes if a.name == "compute.tensor_core.count")
    assert axis.values == (33, 66, 132, 264)  # geometric, integers stay integers
    text = STUDY.replace("[2 TB/s, 3.35 TB/s, 4.8 TB/s]", "{range: [2 TB/s, 4 TB/s], steps: 3}")
    axis = next(a for a in load_study(_write(tmp_path, text)).axes
                if a.name == "memory.hbm.bandwidth")
    assert axis.values == (2e12, 3e12, 4e12)  # SI, as the spec loader takes a bare number


def test_random_search_is_seeded(tmp_path):
    text = STUDY.replace("{range: [66, 198], steps: 3}", "{range: [66, 198]}") \
        + "search: {method: random, samples: 12, seed: 7}\n"
    a = load_study(_write(tmp_path, text)).points()
    b = load_study(_write(tmp_path, text, "again.yaml")).points()
    assert a == b and len(a) == 12
    counts = [p["compute.tensor_core.count"] for p in a]
    assert all(isinstance(c, int) and 66 <= c <= 198 for c in counts)
    assert len(set(counts)) > 3  # sampled from the range, not its ends
    other = load_study(_write(tmp_path, text.replace("seed: 7", "seed: 8"), "o.yaml"))
    assert other.points() != a


# -- running and storing --------------------------------------------------------------------
def test_run_stores_every_point_and_the_front_is_the_brute_force_one(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    run = run_study(s, tmp_path / "out")
    df = load(run.directory)
    assert len(df) == 27 and set(df["status"]) == {"ok"}
    assert df.attrs["manifest"]["fingerprint"] == s.fingerprint()
    # more HBM bandwidth never makes decode slower (same compute, batch)
    for (_, _), g in df.groupby(["compute.tensor_core.count", "batch"]):
        g = g.set_index("memory.hbm.bandwidth")
        assert g.loc["4.8 TB/s", "tokens_per_s"] >= g.loc["2 TB/s", "tokens_per_s"]
    f = front(df, s)
    v = df[["tokens_per_s", "energy_per_sample_j"]].to_numpy()
    brute = [i for i in range(len(v)) if not any(
        v[j, 0] >= v[i, 0] and v[j, 1] <= v[i, 1] and (v[j] != v[i]).any()
        for j in range(len(v)))]
    assert sorted(f.index) == brute


def test_failed_points_are_recorded_not_dropped(tmp_path):
    text = STUDY.replace("workload: gpt2, phase: decode, batch: 8, context: 512",
                         "workload: llama2-7b, phase: decode, batch: 8, context: 512") \
        .replace("memory.hbm.bandwidth: [2 TB/s, 3.35 TB/s, 4.8 TB/s]",
                 "memory.hbm.capacity: [4 GB, 80 GB]")
    df = load(run_study(load_study(_write(tmp_path, text)), tmp_path / "out").directory)
    small = df[df["memory.hbm.capacity"] == "4 GB"]
    assert len(small) == 9 and set(small["status"]) == {"does_not_fit"}
    assert small["tokens_per_s"].isna().all()  # no metric, never a zero
    assert small["error"].str.contains("needs").all()
    assert set(df[df["memory.hbm.capacity"] == "80 GB"]["status"]) == {"ok"}


def test_constraints_mark_points_infeasible(tmp_path):
    text = STUDY.replace('"avg_power_w <= 700"', '"avg_power_w <= 250"')
    df = load(run_study(load_study(_write(tmp_path, text)), tmp_path / "out").directory)
    bad = df[df["status"] == "infeasible"]
    assert len(bad) and (bad["avg_power_w"] > 250).all()
    assert (df[df["status"] == "ok"]["avg_power_w"] <= 250).all()
    assert bad["error"].str.contains("avg_power_w <= 250").all()


def test_a_study_directory_is_not_overwritten(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    run_study(s, tmp_path / "out", limit=3)
    with pytest.raises(Exception, match="--resume"):
        run_study(s, tmp_path / "out")
    run = run_study(s, tmp_path / "out", resume=True)
    assert (run.resumed, run.evaluated) == (3, 24)
    # another study in the same directory is refused
    other = load_study(_write(tmp_path, STUDY.replace("batch: [1, 8, 64]", "batch: [2]"),
                              "other.yaml"))
    with pytest.raises(Exception, match="another version of the study"):
        run_study(other, tmp_path / "out", resume=True)


def test_a_torn_last_row_is_cut_on_resume(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    run_study(s, tmp_path / "out", limit=5)
    pts = tmp_path / "out" / "points.csv"
    with pts.open("a", encoding="utf-8") as f:
        f.write("deadbeef,2 TB/s,66,1,ok,,0.1,12")  # killed mid-write: no newline
    run_study(s, tmp_path / "out", resume=True)
    df = load(tmp_path / "out")
    assert len(df) == 27 and "deadbeef" not in set(df["point_id"])


def _metrics(df):
    cols = ["point_id", "status", "tokens_per_s", "energy_j", "latency_s"]
    return {tuple(r) for r in df[cols].astype(str).itertuples(index=False)}


def test_killed_and_resumed_equals_uninterrupted(tmp_path):
    # a study in a child process, killed with SIGKILL once some rows are stored, then
    # resumed: the same set of points and numbers as one uninterrupted run
    text = STUDY.replace("[1, 8, 64]", "[1, 2, 4, 8, 16, 32, 64]") \
        .replace("steps: 3}", "steps: 5}")
    study = _write(tmp_path, text)
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "explore", str(study),
                             "--out", str(out), "--no-plot"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pts = out / "points.csv"
    deadline = time.time() + 120
    while time.time() < deadline:
        if pts.exists() and pts.read_bytes().count(b"\n") > 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = pts.read_bytes().count(b"\n") - 1
    assert 0 < stored < 105, f"kill landed at {stored} of 105 rows"
    assert main(["explore", str(study), "--out", str(out), "--resume", "--no-plot"]) == 0
    whole = tmp_path / "whole"
    assert main(["explore", str(study), "--out", str(whole), "--no-plot"]) == 0
    a, b = load(out), load(whole)
    assert len(a) == len(b) == 105
    assert _metrics(a) == _metrics(b)


def test_worker_processes_store_the_same_points(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    one = load(run_study(s, tmp_path / "one").directory)
    two = load(run_study(s, tmp_path / "two", jobs=2).directory)
    assert _metrics(one) == _metrics(two)


# -- the command line -----------------------------------------------------------------------
def test_cli_explore_prints_the_front_and_json(tmp_path, capsys):
    study = _write(tmp_path, STUDY)
    assert main(["explore", str(study), "--out", str(tmp_path / "o"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["points"] == 27 and out["status"] == {"ok": 27}
    assert out["front"] and out["hypervolume"] > 0
    assert Path(out["plot"]).stat().st_size > 1000
    # a second run without --resume: a clear one-line error
    assert main(["explore", str(study), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err
    bad = _write(tmp_path, STUDY.replace("batch: [1, 8, 64]", "batchh: [1]"), "bad.yaml")
    assert main(["explore", str(bad)]) == 2
    assert "axes.batchh" in capsys.readouterr().err


def test_objective_values_are_finite_for_ok_points(tmp_path):
    df = load(run_study(load_study(_write(tmp_path, STUDY)), tmp_path / "o").directory)
    ok = df[df["status"] == "ok"]
    assert np.isfinite(ok[["tokens_per_s", "energy_per_sample_j", "edp", "perf_per_w"]]
                       .to_numpy()).all()


def test_dask_local_cluster_stores_the_same_points(tmp_path):
    pytest.importorskip("distributed")  # the explore extra, which .ci/run installs
    s = load_study(_write(tmp_path, STUDY))
    local = load(run_study(s, tmp_path / "local").directory)
    dask = load(run_study(s, tmp_path / "dask", backend="dask", jobs=2).directory)
    assert _metrics(local) == _metrics(dask)


def test_backend_errors_are_clear(tmp_path):
    s = load_study(_write(tmp_path, STUDY))
    with pytest.raises(Exception, match="--scheduler names a Dask scheduler"):
        run_study(s, tmp_path / "x", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(Exception, match="--backend 'ray'"):
        run_study(s, tmp_path / "y", backend="ray")


MORRIS = """\
name: decode-morris
base: h100-sxm
workloads:
  - {workload: gpt2, phase: decode, batch: 16, context: 512}
axes:
  memory.hbm.bandwidth: {range: [1.5 TB/s, 6 TB/s]}
  memory.hbm.capacity: {range: [40 GB, 160 GB]}
objectives: {latency_s: min}
search: {method: morris, samples: 6, seed: 3}
"""


def test_morris_study_ranks_bandwidth_over_capacity_for_decode(tmp_path, capsys):
    pytest.importorskip("SALib")
    study = _write(tmp_path, MORRIS)
    assert main(["explore", str(study), "--out", str(tmp_path / "m"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rank = dict(out["sensitivity"]["ranking"]["latency_s"])
    # decode of a small model streams its weights: bandwidth moves latency, capacity cannot
    assert rank["memory.hbm.bandwidth"] == 1.0 and rank["memory.hbm.capacity"] < 0.01
    assert all(Path(p).stat().st_size > 1000 for p in out["sensitivity"]["plots"])


@pytest.mark.parametrize("method", ["nsga2", "tpe"])
def test_adaptive_search_resumes_to_the_same_trials(tmp_path, method):
    pytest.importorskip("optuna")
    text = STUDY.replace("[2 TB/s, 3.35 TB/s, 4.8 TB/s]", "{log_range: [1 TB/s, 8 TB/s]}") \
        .replace("{range: [66, 198], steps: 3}", "{range: [33, 264]}") \
        + f"search: {{method: {method}, samples: 24, seed: 5}}\n"
    s = load_study(_write(tmp_path, text))
    whole = load(run_study(s, tmp_path / "whole").directory)
    run_study(s, tmp_path / "cut", limit=9)
    resumed = run_study(s, tmp_path / "cut", resume=True)
    assert (resumed.resumed, resumed.evaluated) == (9, 15)
    cut = load(tmp_path / "cut")
    assert list(cut["point_id"]) == list(whole["point_id"])  # the same trials, in order
    assert _metrics(cut) == _metrics(whole)
    assert len(whole) == 24 and len(front(whole, s)) >= 1


COND = """\
name: cond
workloads:
  - {workload: bert-base, phase: forward, batch: 8, seq: 128}
axes:
  arch: [l4, alveo-u280]
  params.dsp_utilization: {values: [0.5, 0.75, 0.9], when: {kind: fpga}}
  batch: [1, 8]
objectives: {throughput: max, perf_per_w: max}
"""


def test_conditional_axes_apply_only_to_matching_parts(tmp_path):
    s = load_study(_write(tmp_path, COND))
    pts = s.points()
    # the FPGA knob: 3 values on the FPGA, unset (None) on the GPU: 2 x 1 + 2 x 3 points
    assert len(pts) == s.grid_size() == 8
    assert {p["params.dsp_utilization"] for p in pts if p["arch"] == "l4"} == {None}
    assert {p["params.dsp_utilization"] for p in pts if p["arch"] == "alveo-u280"} \
        == {0.5, 0.75, 0.9}
    df = load(run_study(s, tmp_path / "o").directory)
    assert set(df["status"]) == {"ok"}
    fpga = df[df["arch"] == "alveo-u280"].set_index(["batch", "params.dsp_utilization"])
    # more of the DSPs used: never slower
    for b in (1, 8):
        assert fpga.loc[(b, 0.9), "throughput"] >= fpga.loc[(b, 0.5), "throughput"]


@pytest.mark.parametrize("when, msg", [
    ("{kind: npu}", "is not a kind of part"),
    ("{kind: tpu}", "no part of the study matches kind tpu"),
    ("{chip: fpga}", "expected {kind"),
])
def test_bad_conditions_are_named(tmp_path, when, msg):
    p = _write(tmp_path, COND.replace("{kind: fpga}", when))
    with pytest.raises(StudyError, match=msg) as e:
        load_study(p)
    assert "axes.params.dsp_utilization" in str(e.value)
