"""Fuzz of ``hwsim edge-vs-cloud`` flags (rates, RTT, batch, utilisations, networks, token
counts, some garbage): each run either prints a JSON document whose numbers are finite and
non-negative, or exits with status 2 and an ``error:``/usage line naming the problem; never a
traceback, never NaN in a row that ran."""

from __future__ import annotations

import json
import math

import pytest
from _timeouts import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main

_RATE = st.one_of(st.sampled_from(["20Mbps", "1 Gbps", "500kbps", "0Mbps", "-5Mbps", "fast",
                                   "1e30Mbps", "nanMbps", "3"]),
                  st.floats(1e3, 1e10).map(lambda x: f"{x:.6g}bps"))
_TIME = st.one_of(st.sampled_from(["30ms", "0s", "1 s", "-1ms", "soon", "infs"]),
                  st.floats(0, 10).map(lambda x: f"{x:.6g}s"))
_FRAC = st.sampled_from(["0", "0.01", "0.5", "1", "1.5", "nan", "x"])
_INT = st.sampled_from(["1", "4", "0", "-2", "x", "16"])


def _numbers(d):
    if isinstance(d, dict):
        for v in d.values():
            yield from _numbers(v)
    elif isinstance(d, list):
        for v in d:
            yield from _numbers(v)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield d


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(workload=st.sampled_from(["resnet18", "mobilenet-v2", "llama3.2-1b", "bert-base"]),
       network=st.sampled_from(["wifi", "lte", "5g", "wifi,5g", "dialup", ""]),
       up=st.none() | _RATE, down=st.none() | _RATE, rtt=st.none() | _TIME,
       batch=st.none() | _INT, eu=st.none() | _FRAC, cu=st.none() | _FRAC,
       gen=st.none() | _INT, comp=st.none() | st.sampled_from(["1", "10", "0", "-1", "x"]))
def test_edge_vs_cloud_flags(capsys, workload, network, up, down, rtt, batch, eu, cu, gen,
                             comp):
    argv = ["edge-vs-cloud", "--workload", workload, f"--network={network}", "--json",
            "--prompt-tokens", "16"]
    for flag, v in (("--uplink", up), ("--downlink", down), ("--rtt", rtt),
                    ("--batch-cloud", batch), ("--edge-utilization", eu),
                    ("--cloud-utilization", cu), ("--gen-tokens", gen),
                    ("--image-compression", comp)):
        if v is not None:
            argv.append(f"{flag}={v}")
    with no_hang(30):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse usage error
            rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if rc == 0:
        d = json.loads(out)
        for o in d["options"]:
            if o["error"] is None:
                for k in ("latency_s", "device_energy_j", "cloud_energy_j", "usd_per_million"):
                    assert o[k] is not None and math.isfinite(o[k]) and o[k] >= 0, (k, o)
        assert all(math.isfinite(x) for x in _numbers(d))
    else:
        assert rc == 2
        assert err.strip(), argv
        last = err.strip().splitlines()[-1]
        assert last.startswith(("error:", "hwsim edge-vs-cloud: error:")), last


@pytest.mark.parametrize("flag", ["--uplink", "--downlink"])
def test_huge_rates_run_or_are_refused(flag, capsys):
    """1e8 Gbps is within the unit parser's range and runs; 1e17 Gbps is refused by name."""
    assert main(["edge-vs-cloud", "--workload", "resnet18", "--json", f"{flag}=1e8Gbps"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["edge-vs-cloud", "--workload", "resnet18", f"{flag}=1e17Gbps"])
    assert flag in capsys.readouterr().err
