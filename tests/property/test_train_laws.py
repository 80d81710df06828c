"""Laws of a training step (:func:`simulator.train.train`) over random small layouts.

- nothing beats its compute bound: the step lasts at least the executed FLOPs over the peak
  matrix rate of the dtype on every device used;
- the same input gives the same output, to the last bit;
- energy is finite and positive, and the average power times the step time;
- more inter-node bandwidth is never slower (two nodes, the network scaled up);
- more micro-batches of the same size (a larger global batch) never take less time;
- the fast path (fold + macro ops, the default) runs the same FLOPs as ``exact=True``, and
  its step time is meant to be within 10% of the exact run's. engine/blocks.py says what the
  fast path loses: a block's collectives no longer interleave with unrelated transfers on
  the same port, so data-parallel reductions that share a device's in-node port with
  tensor-parallel all-reduces hide a little more behind compute. The observed gap is larger
  than "a little", and in both directions: see the xfail below.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, Phase, example, given, reject, settings
from hypothesis import strategies as st

from simulator.errors import HwsimError
from simulator.train import train, train_system

laws = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def layouts(draw, devices: int = 8, span_nodes: bool = False) -> dict:
    """A valid step on ``devices`` devices (rarely refused: a model that does not fit)."""
    workload = draw(st.sampled_from(["gpt2", "gpt2", "llama2-7b"]))
    tp = draw(st.sampled_from([1, 2, 4] + ([8] if workload != "gpt2" else [])))
    pp = draw(st.sampled_from([p for p in (1, 2, 4) if tp * p <= devices]))
    most = devices // (tp * pp)
    dps = [d for d in (1, 2, 4, 8, 16) if d <= most]
    if span_nodes:  # the layout crosses the node boundary of 8 devices
        dps = [d for d in dps if tp * pp * d > 8] or [most]
    dp = draw(st.sampled_from(dps))
    schedule = None if pp == 1 else draw(st.sampled_from(["1f1b", "gpipe", "interleaved"]))
    micro = draw(st.sampled_from([1, 2]))
    k = draw(st.sampled_from([1, 2, 4])) * (pp if schedule == "interleaved" else 1)
    zeros = [0] if dp == 1 else [0, 1, 2] + ([3] if pp == 1 else [])
    return {"workload": workload, "global_batch": dp * micro * k, "micro_batch": micro,
            "seq": 128, "tp": tp, "pp": pp, "dp": dp, "zero": draw(st.sampled_from(zeros)),
            "recompute": draw(st.sampled_from(["none", "selective", "full"])),
            "schedule": schedule,
            "sequence_parallel": tp > 1 and workload != "gpt2" and draw(st.booleans()),
            "bucket_mb": draw(st.sampled_from([25.0, 0, None])),
            "dtype": draw(st.sampled_from([None, None, "fp16", "fp8"]))}


def _run(**kw):
    try:
        return train(**kw)
    except HwsimError:  # a model that does not fit the layout's memory: not this law's case
        reject()


@laws
@given(kw=layouts(), arch=st.sampled_from(["dgx-a100", "dgx-h100"]), exact=st.booleans())
def test_nothing_beats_its_compute_bound(kw, arch, exact):
    r = _run(arch=arch, exact=exact, **kw)
    m = r.metrics
    peak = r.plan.system.device.peak(r.plan.dtype, "matrix")[0]
    assert peak > 0
    bound = m["executed_flops"] / (m["devices"] * peak)
    assert m["step_time_s"] >= bound * (1 - 1e-9), (m["step_time_s"], bound)
    assert m["hfu"] <= 1 + 1e-9 and m["mfu"] <= m["hfu"] * (1 + 1e-9)


@laws
@given(kw=layouts(), exact=st.booleans())
def test_same_input_same_output(kw, exact):
    a = _run(arch="dgx-a100", exact=exact, **kw)
    b = train(arch="dgx-a100", exact=exact, **kw)
    assert a.to_json() == b.to_json()
    assert a.metrics["memory_per_device_bytes"] == b.metrics["memory_per_device_bytes"]


@laws
@given(kw=layouts(), arch=st.sampled_from(["dgx-a100", "dgx-h100"]))
def test_energy_is_finite_positive_and_power_times_time(kw, arch):
    m = _run(arch=arch, **kw).metrics
    assert math.isfinite(m["energy_j"]) and m["energy_j"] > 0
    assert math.isfinite(m["avg_power_w"]) and m["avg_power_w"] > 0
    assert m["avg_power_w"] * m["step_time_s"] == pytest.approx(m["energy_j"], rel=1e-9)
    assert m["cost_usd"] is not None and math.isfinite(m["cost_usd"]) and m["cost_usd"] >= 0


def _two_nodes(arch: str, gb_s: float):
    return train_system(arch, 2, (f"network.bandwidth={gb_s} GB/s",))


@laws
@given(kw=layouts(devices=16, span_nodes=True), arch=st.sampled_from(["dgx-a100", "dgx-h100"]),
       exact=st.booleans(), base=st.sampled_from([5.0, 12.5, 25.0]),
       factor=st.sampled_from([2.0, 4.0, 16.0]))
def test_more_network_bandwidth_is_never_slower(kw, arch, exact, base, factor):
    slow = _two_nodes(arch, base)
    fast = _two_nodes(arch, base * factor)
    assert slow.count == fast.count == 16 and slow.nodes == 2
    assert fast.network.bandwidth_Bps > slow.network.bandwidth_Bps
    a = _run(arch=slow, exact=exact, **kw).metrics
    b = train(arch=fast, exact=exact, **kw).metrics
    assert a["devices"] > 8  # the step crosses the nodes
    assert b["step_time_s"] <= a["step_time_s"] * (1 + 1e-9), (a["step_time_s"],
                                                               b["step_time_s"])


@laws
@given(kw=layouts(), arch=st.sampled_from(["dgx-a100", "dgx-h100"]), exact=st.booleans(),
       more=st.sampled_from([2, 3, 4]))
def test_more_micro_batches_never_take_less_time(kw, arch, exact, more):
    fewer = _run(arch=arch, exact=exact, **kw).metrics
    bigger = {**kw, "global_batch": kw["global_batch"] * more}
    m = _run(arch=arch, exact=exact, **bigger).metrics
    runs = lambda x: x["pipeline_microbatches"] if x["pp"] > 1 else x["accumulation_steps"]  # noqa: E731
    assert runs(m) == runs(fewer) * more and m["micro_batch"] == fewer["micro_batch"]
    assert m["step_time_s"] >= fewer["step_time_s"] * (1 - 1e-9), (fewer["step_time_s"],
                                                                    m["step_time_s"])


@laws
@given(kw=layouts(), nodes=st.sampled_from([1, 2]))
def test_fast_path_runs_the_exact_flops(kw, nodes):
    fast = _run(arch="dgx-a100", nodes=nodes, **kw).metrics
    exact = train(arch="dgx-a100", nodes=nodes, exact=True, **kw).metrics
    assert fast["executed_flops"] == pytest.approx(exact["executed_flops"], rel=1e-9)
    assert fast["model_flops"] == pytest.approx(exact["model_flops"], rel=1e-9)


@laws
@given(kw=layouts(), nodes=st.sampled_from([1, 2]))
def test_fast_path_matches_exact_with_one_replica(kw, nodes):
    """With ``dp`` 1 no data-parallel reduction shares a port: the fast path is within 10%."""
    kw = {**kw, "dp": 1, "zero": 0, "global_batch": kw["global_batch"] // kw["dp"]}
    fast = _run(arch="dgx-a100", nodes=nodes, **kw).metrics
    exact = train(arch="dgx-a100", nodes=nodes, exact=True, **kw).metrics
    assert fast["step_time_s"] == pytest.approx(exact["step_time_s"], rel=0.10)


# Former counterexamples (fast 16% faster; 15% slower) from before blocks whose in-node
# ports also carry data-parallel or pipeline transfers were kept op by op
FAST_VS_EXACT = [
    {"workload": "llama2-7b", "global_batch": 8, "micro_batch": 4, "seq": 128, "tp": 2,
     "pp": 1, "dp": 2, "zero": 0, "recompute": "none", "schedule": None,
     "sequence_parallel": False, "bucket_mb": 25.0, "dtype": None},
    {"workload": "llama2-7b", "global_batch": 4, "micro_batch": 1, "seq": 128, "tp": 1,
     "pp": 4, "dp": 2, "zero": 0, "recompute": "none", "schedule": "gpipe",
     "sequence_parallel": False, "bucket_mb": 25.0, "dtype": None},
]


@settings(laws, phases=[Phase.explicit, Phase.generate])
@example(kw=FAST_VS_EXACT[0], nodes=1)
@example(kw=FAST_VS_EXACT[1], nodes=1)
@given(kw=layouts(), nodes=st.sampled_from([1, 2]))
def test_fast_path_step_time_matches_exact(kw, nodes):
    # a collapsed block only stands where nothing else uses its in-node ports, and folded
    # devices did identical work: the step time is the exact run's up to float rounding
    fast = _run(arch="dgx-a100", nodes=nodes, **kw).metrics
    exact = train(arch="dgx-a100", nodes=nodes, exact=True, **kw).metrics
    assert fast["step_time_s"] == pytest.approx(exact["step_time_s"], rel=0.02), (
        kw, fast["step_time_s"], exact["step_time_s"])
