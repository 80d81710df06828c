"""Timing law (simulator/timing.py): for every op on every shipped part,
``kernel <= graph <= stream <= eager``. The kernel time drops the launch, a graph replaces it
by a gap never above it, and an eager op costs at least its stream time on the device, and
in a loop of such ops the slower of that and its host dispatch. A mode a family does not
model is refused with a one-line error naming the part and the mode, never costed."""

from __future__ import annotations

import pytest
from _parts import EXTRA_KINDS, LAW_KINDS, VARIANT_IDS, VARIANTS, law_settings, ops, target
from hypothesis import given
from hypothesis import strategies as st

from simulator import predict_op, simulate
from simulator.errors import HwsimError

TOL = 1e-12


def _per_op(op, sys_, mode):
    try:
        c = predict_op(op, sys_, timing=mode)
    except HwsimError as e:
        msg = str(e)
        assert f"--timing {mode}" in msg and sys_.device.name in msg and "\n" not in msg
        return None
    t = c.latency_s
    return max(t, float(c.details.get("host_s", 0.0))) if mode == "eager" else t


@pytest.mark.parametrize("part,base", VARIANTS, ids=VARIANT_IDS)
@law_settings(25)
@given(data=st.data())
def test_kernel_graph_stream_eager_are_ordered(part, base, data):
    op = data.draw(ops(part, base, LAW_KINDS + EXTRA_KINDS), label="op")
    sys_ = target(part, base)
    t = {m: _per_op(op, sys_, m) for m in ("kernel", "graph", "stream", "eager")}
    assert t["kernel"] is not None and t["stream"] is not None  # every family models them
    got = [(m, v) for m, v in t.items() if v is not None]
    for (ma, a), (mb, b) in zip(got, got[1:]):
        assert 0 < a <= b * (1 + TOL) + TOL, (f"{op.describe()} on {part}: {ma} {a:.6g} s > "
                                              f"{mb} {b:.6g} s")


@pytest.mark.parametrize("workload,arch,kw", [
    ("gpt2", "h100-sxm", {"phase": "decode", "context": 256}),
    ("bert-base", "l4", {"seq": 128}),
    ("resnet18", "tpu-v4", {}),
    ("mlp", "cpu-host", {}),
    ("llama2-7b", "dgx-h100", {"phase": "decode", "context": 512, "batch": 8}),
])
def test_run_latencies_are_ordered(workload, arch, kw):
    lat = {}
    for m in ("kernel", "graph", "stream", "eager"):
        try:
            lat[m] = simulate(workload, arch, timing=m, **kw).latency_s
        except HwsimError as e:
            assert f"--timing {m}" in str(e)
    order = [lat[m] for m in ("kernel", "graph", "stream", "eager") if m in lat]
    assert len(order) >= 3
    assert all(a <= b * (1 + 1e-9) for a, b in zip(order, order[1:])), lat
