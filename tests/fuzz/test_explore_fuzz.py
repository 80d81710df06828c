"""Fuzz of study files (simulator/explore/study.py): any YAML gives a Study or a StudyError
naming the file, never another exception; and a study that loads evaluates without one."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.explore import StudyError, load_study
from simulator.explore.design import design_points
from simulator.explore.evaluate import STATUSES, evaluate_point

VALID = {
    "name": "fuzz",
    "base": "h100-sxm",
    "workloads": [{"workload": "gpt2", "phase": "decode", "batch": 2, "context": 128}],
    "axes": {"memory.hbm.bandwidth": ["2 TB/s", "4 TB/s"],
             "compute.tensor_core.count": {"range": [66, 132], "steps": 2},
             "batch": [1, 4]},
    "objectives": {"tokens_per_s": "max", "energy_j": "min"},
    "constraints": ["avg_power_w <= 700"],
    "search": {"method": "grid"},
}
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(-5, 5), max_size=3),
    st.sampled_from(["2 TB/s", "-1 GB", "1e99 W", "nan", "max", "min", "grid", "random",
                     "memory.hbm.capacity", "x.y", {"range": [1, 0]}, {"log_range": [0, 4]},
                     {"range": [1, 4], "steps": 1}, ["a", "a"], "avg_power_w < 1 kW",
                     {"values": [1, 2], "when": {"kind": "gpu"}}, {"values": [1], "when": 3},
                     {"values": [1], "when": {"arch": ["h100-sxm"]}}, {"when": {"kind": "x"}},
                     ["h100-sxm", "l4"], ["h100-sxm", "nope"]]),
)
PATHS = [("name",), ("base",), ("workloads",), ("workloads", 0, "workload"),
         ("workloads", 0, "batch"), ("workloads", 0, "weight"), ("axes",),
         ("axes", "memory.hbm.bandwidth"), ("axes", "compute.tensor_core.count"),
         ("axes", "compute.tensor_core.count", "steps"), ("axes", "batch"), ("objectives",),
         ("objectives", "tokens_per_s"), ("constraints",), ("constraints", 0), ("search",),
         ("search", "method"), ("search", "samples"), ("extra_field",),
         ("axes", "no.such.field"), ("objectives", "chip_power_w"), ("axes", "arch")]


def _set(d, path, value):
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), JUNK), max_size=3),
       drop=st.lists(st.sampled_from(["name", "base", "workloads", "axes", "objectives",
                                      "constraints", "search"]), max_size=2))
def test_any_study_file_loads_or_says_why(tmp_path_factory, edits, drop):
    raw = copy.deepcopy(VALID)
    for path, value in edits:
        try:
            _set(raw, path, value)
        except (KeyError, IndexError, TypeError):
            pass  # the parent was replaced by an earlier edit
    for k in drop:
        raw.pop(k, None)
    p = tmp_path_factory.mktemp("study") / "s.yaml"
    p.write_text(yaml.safe_dump(raw), encoding="utf-8")
    try:
        study = load_study(p)
    except StudyError as e:
        assert str(p) in str(e) and e.problems and "Traceback" not in str(e)
        return
    # it loaded: its first point evaluates to a row with a status, never an exception
    pts = design_points(study)
    if pts:
        row = evaluate_point(study, pts[0])
        assert row["status"] in STATUSES


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.text(max_size=200))
def test_any_text_is_a_study_or_a_study_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("text") / "s.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_study(p)
    except StudyError as e:
        assert str(p) in str(e)
