"""Fuzz of the layout and plan inputs (tp, pp, dp, ep, micro-batches, recompute, batch, phase):
every combination either runs, with finite positive numbers and a consistent layout, or fails
with one of hwsim's one-line errors; never another exception, never NaN."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import HwsimError, simulate
from simulator.cli import main

SYSTEMS = ["dgx-h100", "dgx-a100", "h100-sxm", "tpu-v4", "alveo-u280"]
MODELS = ["gpt2", "llama2-7b", "mixtral-8x7b", "resnet18", "mlp", "bert-base"]
degree = st.one_of(st.none(), st.none(), st.none(), st.sampled_from([1, 1, 2, 4, 8]),
                   st.integers(min_value=-2, max_value=10))
# mostly valid values, so a fair share of layouts runs; the rest must fail cleanly
small = st.sampled_from([1] * 12 + [2, 4, 8, 0, -1, 3])
fuzz = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def _check(r) -> None:
    d = r.to_dict(ops=False)
    json.loads(r.to_json(ops=False), parse_constant=lambda c: (_ for _ in ()).throw(
        AssertionError(f"non-finite {c} in JSON")))
    assert r.latency_s > 0 and math.isfinite(r.latency_s)
    assert r.energy_j > 0 and math.isfinite(r.energy_j)
    lay = d["layout"]
    used = lay["tp"] * lay["pp"] * lay["dp"] * lay.get("ep", 1)
    assert used <= r.devices
    assert r.meta["devices_used"] == used
    assert all(x.energy_j >= 0 for x in r.per_device)


@fuzz
@given(arch=st.sampled_from(SYSTEMS), model=st.sampled_from(MODELS),
       phase=st.sampled_from(["auto", "prefill", "decode", "forward", "train"]),
       batch=st.sampled_from([8, 1, 2, 3, 4, 16, 40, 0, -1]),
       tp=degree, dp=degree, pp=small, ep=small, mb=small,
       recompute=st.sampled_from(["none", "none", "full", "half"]))
def test_any_layout_runs_or_fails_cleanly(arch, model, phase, batch, tp, dp, pp, ep, mb,
                                          recompute):
    try:
        seq = 64 if model not in ("resnet18", "mlp") else None
        r = simulate(model, arch, phase=phase, batch=batch, seq=seq, tp=tp, dp=dp, pp=pp,
                     ep=ep, microbatches=mb, recompute=recompute)
    except HwsimError as e:  # WorkloadError, CapacityError, MappingError are HwsimErrors
        assert str(e) and "\n" not in str(e).strip() or type(e).__name__ == "SpecError"
        RAN.append(False)
        return
    RAN.append(True)
    _check(r)


RAN: list[bool] = []


def test_the_fuzz_runs_a_fair_share_of_layouts():
    """Guards the fuzz above against rejecting everything (run after it, in file order)."""
    assert len(RAN) >= 300 and sum(RAN) >= 30, (len(RAN), sum(RAN))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.lists(st.sampled_from(
    ["--tp", "--pp", "--dp", "--ep", "--microbatches", "--recompute", "--batch"]),
    min_size=1, max_size=4),
    values=st.lists(st.sampled_from(["0", "-1", "1", "2", "3", "8", "64", "1e9", "x", "full",
                                     "none", "nan", ""]), min_size=4, max_size=4))
def test_cli_layout_flags_never_trace(flags, values, capsys):
    capsys.readouterr()  # the fixture is shared by the generated cases: start clean
    argv = ["run", "--workload", "gpt2", "--arch", "dgx-a100", "--seq", "64", "--json"]
    for f, v in zip(flags, values):
        argv += [f, v]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage error
        code = e.code
    out, err = capsys.readouterr()
    assert code in (0, 2)
    assert "Traceback" not in err
    if code == 0:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
