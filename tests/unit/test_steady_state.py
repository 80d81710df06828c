"""A long pipeline or gradient accumulation simulated on three short ones and extrapolated
(simulator/train.py: _steady_state_runs, _extrapolate) gives the numbers of the full run.

Once every stage holds a micro-batch, the schedule repeats every pp micro-batches, so every
additive quantity (step time, FLOPs, energy, busy time per device) grows by the same amount
per period. The short runs check that; what they let through is bounded by
``train.STEADY_RTOL`` (0.01% of a total, were a drift between the two increments to go on),
which is the tolerance here (twice it, for the round-off of the comparison).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator.train import STEADY_RTOL, _extrapolate, _steady_state_runs, train

RTOL = 2 * STEADY_RTOL
NUMBERS = ("step_time_s", "tokens_per_s", "mfu", "hfu", "compute_time_s",
           "comm_time_s", "exposed_comm_s", "energy_j", "avg_power_w", "cost_usd",
           "executed_flops", "model_flops")


def _same(a: dict, b: dict) -> None:
    for k in NUMBERS:
        assert a[k] == pytest.approx(b[k], rel=RTOL, abs=1e-12), k
    # the stages' busy time settles later than the step time (train.BUBBLE_RTOL): the
    # bubble fraction is held to a tenth of a percentage point
    assert a["bubble_fraction"] == pytest.approx(b["bubble_fraction"], abs=1e-3)
    assert a["memory_per_device_bytes"] == b["memory_per_device_bytes"]


CASES = {
    "1f1b": dict(tp=2, pp=4, dp=1, global_batch=40, micro_batch=1),
    "interleaved": dict(tp=1, pp=2, dp=2, global_batch=64, micro_batch=1,
                        schedule="interleaved", virtual_stages=2),
    "accumulation": dict(tp=1, pp=1, dp=4, global_batch=32, micro_batch=1, zero=1),
}


@pytest.mark.parametrize("name", list(CASES))
def test_extrapolated_step_equals_the_full_run(name):
    kw = dict(CASES[name], seq=128, recompute="selective")
    short = train("gpt2", "dgx-a100", **kw)
    full = train("gpt2", "dgx-a100", extrapolate=False, **kw)
    assert short.metrics["simulated_repeats"] is not None, "expected the short runs"
    assert full.metrics["simulated_repeats"] is None
    _same(short.metrics, full.metrics)


def test_repeats_simulated_are_the_steady_state_ones():
    # a pipeline repeats every pp micro-batches (see train._steady_state_runs): pp, 2 pp, 3 pp
    r = train("gpt2", "dgx-a100", seq=128, **CASES["1f1b"])
    assert r.metrics["simulated_repeats"] == [4, 8, 12]
    # ranking (--search) steps by one micro-batch: pp, pp + 1, pp + 2
    quick = train("gpt2", "dgx-a100", seq=128, screen=True, **CASES["1f1b"])
    assert quick.metrics["simulated_repeats"] == [4, 5, 6]
    assert quick.metrics["step_time_s"] == pytest.approx(r.metrics["step_time_s"], rel=0.005)
    # the tries after it: later starts (a longer warm-up) and steps of two (a schedule that
    # repeats every other micro-batch), aligned with the 40 micro-batches, cheapest first
    tries = [c for _, c in _steady_state_runs(quick.plan, quick=True)]
    assert tries[:4] == [(4, 5, 6), (5, 6, 7), (4, 6, 8), (6, 7, 8)]
    assert all((40 - c[2]) % (c[1] - c[0]) == 0 for c in tries)
    assert all((40 - c[2]) % 4 == 0 for _, c in _steady_state_runs(r.plan))
    r = train("gpt2", "dgx-a100", seq=128, **CASES["interleaved"])
    # in groups of pp, from past the warm-up: 2 (pp - 1) + (v - 1) pp = 4 chunk passes
    assert r.metrics["simulated_repeats"] == [4, 6, 8]
    r = train("gpt2", "dgx-a100", seq=128, **CASES["accumulation"])
    assert r.metrics["simulated_repeats"] == [1, 2, 3]


def test_short_steps_gpipe_and_exact_runs_are_simulated_whole():
    # GPipe keeps every micro-batch's activations: a shorter run would under-count memory
    r = train("gpt2", "dgx-a100", seq=128, tp=1, pp=2, dp=4, global_batch=96, micro_batch=1,
              schedule="gpipe")
    assert r.metrics["simulated_repeats"] is None
    # 4 + 8 + 12 micro-batches cost more than 20: the step itself is simulated
    r = train("gpt2", "dgx-a100", seq=128, tp=2, pp=4, global_batch=20, micro_batch=1)
    assert r.metrics["simulated_repeats"] is None
    r = train("gpt2", "dgx-a100", seq=128, exact=True, **CASES["1f1b"])
    assert r.metrics["simulated_repeats"] is None


def test_no_steady_state_no_extrapolation():
    steady = [{"t": 1.0}, {"t": 1.5}, {"t": 2.0}]
    assert _extrapolate(steady, (4, 5, 6), 10) == {"t": 4.0}
    # the second increment differs from the first: still in the warm-up, not extrapolated
    assert _extrapolate([{"t": 1.0}, {"t": 1.5}, {"t": 2.1}], (4, 5, 6), 10) is None
    # a drift of 1e-7 s per period, over the 4 left: at most 1e-6 s off 4.4 s, let through
    got = _extrapolate([{"t": 1.0}, {"t": 1.6}, {"t": 2.2 + 1e-7}], (4, 5, 6), 10)
    assert got is not None and got["t"] == pytest.approx(4.6, rel=1e-6)
    # every quantity must be steady, not only the step time
    mixed = [{"t": 1.0, "e": 3.0}, {"t": 1.5, "e": 4.0}, {"t": 2.0, "e": 6.0}]
    assert _extrapolate(mixed, (4, 5, 6), 10) is None


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tp=st.sampled_from([1, 2, 4]), pp=st.sampled_from([2, 3, 4]),
       dp=st.sampled_from([1, 2]), extra=st.integers(0, 12),
       zero=st.sampled_from([0, 1]), sp=st.booleans(),
       recompute=st.sampled_from(["none", "selective", "full"]),
       schedule=st.sampled_from(["1f1b", "interleaved"]))
def test_extrapolation_is_the_full_run_on_random_layouts(tp, pp, dp, extra, zero, sp,
                                                         recompute, schedule):
    assume(tp * pp * dp <= 16)
    if zero and dp == 1:
        zero = 0
    m = 10 * pp + extra  # long enough for runs of pp, 2 pp and 3 pp to be worth it
    if schedule == "interleaved":
        m = pp * (10 + extra % 4)  # a multiple of pp (Megatron), long enough to extrapolate
    kw = dict(tp=tp, pp=pp, dp=dp, zero=zero, sequence_parallel=sp and tp > 1,
              recompute=recompute, schedule=schedule, global_batch=dp * m, micro_batch=1,
              seq=64)
    short = train("gpt2", "dgx-a100", nodes=2, **kw)
    full = train("gpt2", "dgx-a100", nodes=2, extrapolate=False, **kw)
    _same(short.metrics, full.metrics)


def test_ranking_runs_keep_zero3_layer_gathers():
    # --search ranks with every repeated block collapsed; ZeRO-3's per-layer weight gathers
    # share ports with tensor-parallel collectives there, which a collapsed block misplaces
    # (it ranked this layout at 25.7 s against 39.4 s), so ZeRO-3 keeps the normal fast path
    kw = dict(tp=2, pp=1, dp=64, zero=3, global_batch=256, micro_batch=1, seq=2048,
              dtype="fp16", recompute="full", nodes=16)
    quick = train("gpt3-175b", "dgx-a100", screen=True, **kw)
    normal = train("gpt3-175b", "dgx-a100", **kw)
    assert quick.metrics["step_time_s"] == pytest.approx(normal.metrics["step_time_s"],
                                                         rel=1e-9)
