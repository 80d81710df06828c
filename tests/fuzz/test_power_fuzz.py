"""Fuzz of the power-limit inputs: ``--power-limit`` on ``hwsim run`` / ``hwsim serve`` and the
spec fields ``power.limit`` / ``power.active`` through ``--set``. Every value either runs with
finite, non-negative power figures under the limit it asked for, or fails with one clean
``error:`` line (never a traceback, NaN or hang)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli._helpers import run_cli as _run
from tests.fuzz._timeouts import no_hang

_SETTINGS = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x}"),
    st.integers(-10, 3000).map(str),
    st.sampled_from(["", "W", "500W", "500 W", "1e3", "-0", "nan", "inf", "abc", "0x20",
                     "90", "91", "2800", "2801"]),
)


def _clean_error(code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.strip(), err
    assert err.strip().splitlines()[-1].startswith(("error:", "hwsim run: error:",
                                                    "hwsim serve: error:")), err


@_SETTINGS
@given(text=_TEXT)
def test_power_limit_flag(capsys, text):
    with no_hang(60):
        code, out, err = _run(capsys, "run", "--arch", "h100-sxm", "--workload", "gpt2",
                              "--batch", "2", "--seq", "64", "--json", f"--power-limit={text}")
    if code != 0:
        _clean_error(code, err)
        return
    d = json.loads(out)
    for k in ("device_power_w", "peak_power_w", "energy_j", "power_limit_w"):
        assert math.isfinite(d[k]) and d[k] >= 0, (k, d[k])
    assert d["effective_clock_hz"] > 0


@_SETTINGS
@given(field=st.sampled_from(["power.limit", "power.active"]), text=_TEXT)
def test_power_spec_fields(capsys, field, text):
    with no_hang(60):
        code, out, err = _run(capsys, "run", "--arch", "h100-sxm", "--workload", "gpt2",
                              "--batch", "1", "--seq", "32", "--json", "--set",
                              f"{field}={text} W" if text and text[-1].isdigit() else
                              f"{field}={text}")
    if code != 0:
        _clean_error(code, err)
        return
    d = json.loads(out)
    assert all(math.isfinite(d[k]) for k in ("device_power_w", "energy_j", "peak_power_w"))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(limit=st.one_of(st.floats(91, 2800), st.sampled_from(["0", "-5", "nan", "x"])))
def test_serve_power_limit(capsys, limit):
    with no_hang(120):
        code, out, err = _run(capsys, "serve", "--workload", "gpt2", "--arch", "h100-sxm",
                              "--offline", "--requests", "8", "--prompt-len", "32",
                              "--output-len", "8", "--json", f"--power-limit={limit}")
    if code != 0:
        _clean_error(code, err)
        return
    m = json.loads(out)
    m = m.get("metrics", m)
    assert math.isfinite(m["avg_device_power_w"]) and m["avg_device_power_w"] > 0
    assert m["power_limit_w"] == float(limit)
