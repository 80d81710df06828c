"""Fuzz of NCCL's kernel model (simulator.network.nccl) and its spec field
``params.nccl_channels``: any buffer size, rank count, channel count, HBM rate and latency of
the ring's local copy and tuner bandwidth gives a finite time no
shorter than the bytes at the bus bandwidth, the same time twice; any ``--set
params.nccl_channels=...`` either loads as a positive count or fails with one clean
``error:`` line naming the field (never a traceback, NaN or hang)."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.arch.spec import Link
from simulator.network import NcclModel, Route, collective
from tests.cli._helpers import run_cli as _run
from tests.fuzz._timeouts import no_hang

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(kind=st.sampled_from(["allreduce", "allgather", "reducescatter"]),
       nbytes=st.one_of(st.integers(0, 2**40).map(float),
                        st.floats(0, 1e13, allow_nan=False, allow_infinity=False)),
       ranks=st.integers(2, 72), channels=st.integers(1, 64), unroll=st.sampled_from([4, 8]),
       latency=st.floats(1e-9, 1e-4), bw=st.floats(1e9, 2e12),
       hbm=st.one_of(st.just(0.0), st.floats(1e10, 1e13)), hbm_latency=st.floats(0, 2e-6),
       tuner=st.one_of(st.just(0.0), st.floats(1e9, 2e12)))
def test_kernel_times_are_finite_and_at_least_the_bytes(kind, nbytes, ranks, channels, unroll,
                                                        latency, bw, hbm, hbm_latency, tuner):
    with no_hang(20):
        link = Link("nvlink", bw, latency)
        model = NcclModel(0.8, channels=channels, unroll=unroll, local_Bps=hbm,
                          local_latency_s=hbm_latency, tuner_bus_Bps=tuner)
        r = collective(kind, nbytes, Route.in_node(ranks, link), nccl=model)
        again = collective(kind, nbytes, Route.in_node(ranks, link), nccl=model)
    assert math.isfinite(r.time_s) and r.time_s >= 0 and r.time_s == again.time_s
    steps = 2 * (ranks - 1) if kind == "allreduce" else ranks - 1
    assert r.time_s >= steps / ranks * nbytes / (bw * 0.8) * (1 - 1e-9)
    assert r.time_s >= r.alpha_s >= 0


_VALUES = st.one_of(st.integers(-5, 10**20).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.sampled_from(["", "many", "24 channels", "true", "null", "0x18", "[24]",
                                     "24.0", " 24"]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(value=_VALUES)
def test_channel_overrides_load_or_fail_cleanly(capsys, value):
    with no_hang(60):
        code, out, err = _run(capsys, "op", "--arch", "a100-sxm-80gb", "--set",
                              f"params.nccl_channels={value}", "allreduce", "--bytes", "64e6",
                              "--devices", "8", "--json")
    if code == 0:
        assert "nan" not in out.lower() and "Traceback" not in err
    else:
        assert code == 2 and "Traceback" not in err, err
        assert "nccl_channels" in err, err
