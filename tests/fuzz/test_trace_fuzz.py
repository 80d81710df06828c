"""Fuzz: malformed profiler traces and per-op CSV profiles never give a traceback, a hang or a
NaN.

Each mutant of the Kineto fixture (fields deleted, values of the wrong type or unit, ids that
are not ids, shapes that are not shapes, truncated text) and of a CSV profile (a column
dropped, a cell replaced) either loads into records whose times are finite and positive and
whose ops are valid hwsim ops, or raises :class:`HwsimError` with one line that starts with the
file's path. Through the CLI: exit 0, or exit 2 with one ``error: ...`` line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from _timeouts import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.errors import HwsimError
from simulator.validate.traces import load_measurements, read_profile_csv
from workloads.ops import op_from_dict

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "kineto_llama2_7b_tp2_layer.json")
                     .read_text())
VIDUR = (ROOT / "experiments" / "data" / "vidur-a100" / "llama2-7b_mlp.csv").read_text() \
    .splitlines()[:4]
NET = (ROOT / "experiments" / "data" / "vidur-a100" / "dgx_all_reduce.csv").read_text() \
    .splitlines()
NET = [NET[0], *[x for x in NET[1:] if ",2,4194304," in x or ",8,16777216," in x][:4]]

BAD = [None, "", "12us", "1.5 ms", -1, -0.5, 0, 1e308, float("nan"), float("inf"), True, [],
       {}, [[1, 2]], [[512, "4096"]], [[-1, 2]], [[2**50]], 1.5, "x" * 50, 7]
KEYS = ["name", "cat", "ph", "dur", "ts", "args"]
ARG_KEYS = ["External id", "correlation", "Input Dims", "Input type", "Group size",
            "In msg nelems", "dtype", "Collective name"]


@st.composite
def trace_texts(draw) -> str:
    doc = json.loads(json.dumps(FIXTURE))
    events = doc["traceEvents"]
    for _ in range(draw(st.integers(1, 6))):
        ev = events[draw(st.integers(0, len(events) - 1))]
        op = draw(st.integers(0, 12))
        if not isinstance(ev, dict):                  # an inserted bad event
            continue
        if op <= 1:
            ev.pop(draw(st.sampled_from(KEYS)), None)
        elif op <= 3:
            ev[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(BAD))
        elif op <= 8 and isinstance(ev.get("args"), dict):
            ev["args"][draw(st.sampled_from(ARG_KEYS))] = draw(st.sampled_from(BAD))
        elif op <= 11 and isinstance(ev.get("args"), dict):
            ev["args"].pop(draw(st.sampled_from(ARG_KEYS)), None)
        elif op == 12:
            events.insert(draw(st.integers(0, len(events))), draw(st.sampled_from(BAD)))
    form = draw(st.integers(0, 19))
    if form == 0:
        doc = {"traceEvents": draw(st.sampled_from(BAD))}
    elif form == 1:
        doc = draw(st.sampled_from(BAD))
    text = json.dumps(doc)
    if draw(st.integers(0, 19)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _check(path: Path, fn) -> None:
    try:
        ds = fn()
    except HwsimError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        assert len(msg) < 800
        return
    records = ds.records if hasattr(ds, "records") else ds
    for r in records:
        assert math.isfinite(r.time_s) and r.time_s > 0, r
        op_from_dict(dict(r.op))                      # a valid hwsim op


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=trace_texts())
def test_trace_mutants_load_or_fail_naming_file_and_field(tmp_path, text):
    p = tmp_path / "trace.json"
    p.write_text(text)
    with no_hang():
        _check(p, lambda: load_measurements([p]))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=trace_texts())
def test_trace_mutants_through_the_cli(tmp_path, capsys, text):
    p = tmp_path / "trace.json"
    p.write_text(text)
    with no_hang(60):
        code = main(["compare-measured", str(p), "--arch", "dgx-a100", "--json",
                     "--out", str(tmp_path / "rep")])
    out, err = capsys.readouterr()
    if code == 0:
        d = json.loads(out)
        assert all(math.isfinite(s["mape"]) for s in d["by_kind"])
    else:
        assert code == 2 and "Traceback" not in err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {p}"), err


CELLS = ["", "x", "-1", "0", "2.5", "nan", "inf", "1e400", "9" * 40, " 7 ", "True", "3"]


@st.composite
def csv_texts(draw) -> str:
    form = draw(st.sampled_from(["vidur", "net", "hwsim"]))
    lines = list({"vidur": VIDUR, "net": NET,
                  "hwsim": ["name,kind,m,n,k,dtype,time_us", "a,matmul,16,4096,4096,fp16,25",
                            "b,matmul,512,4096,4096,bf16,90"]}[form])
    rows = [ln.split(",") for ln in lines]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        col = draw(st.integers(0, len(rows[0]) - 1))
        if op == 0:                                   # drop a column
            rows = [r[:col] + r[col + 1:] for r in rows]
        elif op == 1 and len(rows) > 1:               # break a cell
            r = rows[draw(st.integers(1, len(rows) - 1))]
            if col < len(r):
                r[col] = draw(st.sampled_from(CELLS))
        elif op == 2 and len(rows) > 1:               # shorten a row
            rows[-1] = rows[-1][: draw(st.integers(0, len(rows[-1])))]
        else:                                         # rename a header
            rows[0][col] = draw(st.sampled_from(["time_ms", "kind", "size", "x", "",
                                                 "num_tokens", "time_stats.add.median"]))
    return "\n".join(",".join(r) for r in rows) + "\n"


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_texts())
def test_csv_mutants_load_or_fail_naming_file_and_field(tmp_path, text):
    p = tmp_path / "profile.csv"
    p.write_text(text)
    with no_hang():
        _check(p, lambda: read_profile_csv(p)[0])
