"""Fuzz of the timing inputs: ``--timing`` on ``hwsim run`` / ``hwsim op`` and the spec params
``graph_launch_gap`` / ``eager_dispatch`` / ``launch_overhead`` through ``--set``. Every value
either runs with a finite latency that keeps kernel <= graph <= stream <= eager, or fails with
one clean ``error:`` line (never a traceback, NaN or hang)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.errors import HwsimError
from tests.cli._helpers import run_cli as _run
from tests.fuzz._timeouts import no_hang

_SETTINGS = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
_MODE = st.one_of(st.sampled_from(["kernel", "graph", "stream", "eager"]),
                  st.sampled_from(["", "KERNEL", "wall", "eager ", "graph\n", "none", "-1"]),
                  st.text(max_size=8))
_TIME = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x} us"),
    st.integers(-5, 2000).map(lambda n: f"{n} us"),
    st.sampled_from(["", "0", "0 s", "1 us", "2us", "-1 us", "nan us", "inf s", "abc",
                     "1 GB", "1e-3 s", "1 ms", "true"]),
)


def _clean_error(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.strip(), err
    assert err.strip().splitlines()[-1].startswith(("error:", "hwsim run: error:",
                                                    "hwsim op: error:",
                                                    "usage:")) or "error:" in err, err


@_SETTINGS
@given(mode=_MODE)
def test_timing_flag(capsys, mode):
    with no_hang(60):
        code, out, err = _run(capsys, "op", "add", "--numel", "4096", "--arch", "h100-sxm",
                              "--json", f"--timing={mode}")
    if code != 0:
        _clean_error(code, err)
        return
    d = json.loads(out)
    assert d["timing"] == mode and math.isfinite(d["latency_s"]) and d["latency_s"] > 0


@_SETTINGS
@given(field=st.sampled_from(["graph_launch_gap", "eager_dispatch", "eager_alloc", "eager_launch",
                             "launch_overhead"]),
       text=_TIME, arch=st.sampled_from(["h100-sxm", "tpu-v4", "cpu-host"]))
def test_timing_params(capsys, field, text, arch):
    lat = {}
    for mode in ("kernel", "graph", "stream", "eager"):
        with no_hang(60):
            code, out, err = _run(capsys, "run", "--arch", arch, "--workload", "mlp",
                                  "--json", "--timing", mode, "--set",
                                  f"params.{field}={text}")
        if code != 0:
            _clean_error(code, err)
            continue
        d = json.loads(out)
        assert d["timing"] == mode
        assert math.isfinite(d["latency_s"]) and d["latency_s"] > 0, d["latency_s"]
        lat[mode] = d["latency_s"]
    order = [lat[m] for m in ("kernel", "graph", "stream", "eager") if m in lat]
    assert all(a <= b * (1 + 1e-9) for a, b in zip(order, order[1:])), lat


@_SETTINGS
@given(mode=_MODE)
def test_timing_api(mode):
    from simulator import simulate

    try:
        r = simulate("mlp", "h100-sxm", timing=mode)
    except HwsimError as e:
        assert "--timing" in str(e) and "\n" not in str(e)
        return
    assert r.timing == mode and math.isfinite(r.latency_s)
