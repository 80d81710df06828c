"""Eager timing laws on every GPU part (simulator/timing.py): for ops eager PyTorch runs as
several kernels (RMSNorm, SwiGLU, a GEMM and its epilogue) and ops whose mapper runs two
kernels (split-K, flash-decoding), ``kernel <= graph <= stream <= eager`` on the device; the
eager host time is the recipe's calls, outputs and kernels times the spec's host costs; and
over a chain of such ops the run latencies keep the same order. The graph gap is per kernel:
never more than the stream's launch share."""

from __future__ import annotations

import pytest
from _parts import DEVICE_IDS, DEVICE_VARIANTS, law_settings, target
from hypothesis import given
from hypothesis import strategies as st

from simulator import predict_op, simulate
from simulator.arch.params import param
from simulator.errors import MappingError
from simulator.mapping.gpu import kernel_time
from simulator.timing import eager_recipe, kernels_of
from workloads.graph import WorkloadGraph
from workloads.ops import Attention, Elementwise, MatMul, Norm

GPUS = [(p, b) for p, b in DEVICE_VARIANTS if target(p, b).device.family == "gpu"]
GPU_IDS = [i for i, (p, b) in zip(DEVICE_IDS, DEVICE_VARIANTS) if (p, b) in GPUS]
DTYPES = st.sampled_from(["fp16", "bf16", "fp32"])
TOL = 1e-12

_OPS = st.one_of(
    st.builds(lambda r, c, d: Norm(norm="rmsnorm", rows=r, cols=c, dtype=d),
              st.integers(1, 4096), st.sampled_from([768, 2048, 4096, 8192]), DTYPES),
    st.builds(lambda r, c, d: Norm(norm="layernorm", rows=r, cols=c, dtype=d),
              st.integers(1, 4096), st.sampled_from([768, 4096]), DTYPES),
    st.builds(lambda n, d: Elementwise(fn="swiglu", numel=n, dtype=d),
              st.integers(1, 1 << 24), DTYPES),
    st.builds(lambda n, d: Elementwise(fn="add", numel=n, dtype=d),
              st.integers(1, 1 << 24), DTYPES),
    st.builds(lambda t, w, d: Elementwise(fn="mul", numel=t * w, row=w, table=128, dtype=d),
              st.integers(1, 4096), st.sampled_from([256, 1536, 8192, 9216]), DTYPES),
    st.builds(lambda m, n, k, e, d: MatMul(m=m, n=n, k=k, weight=True, epilogue=e, dtype=d),
              st.integers(1, 2048), st.sampled_from([1024, 4096, 11008]),
              st.sampled_from([1024, 4096, 11008]),
              st.sampled_from([(), ("add",), ("silu",), ("gelu", "add")]), DTYPES),
    st.builds(lambda b, c, d: Attention(batch=b, heads=32, kv_heads=8, head_dim=128, seq=1,
                                        context=c, phase="decode", dtype=d),
              st.integers(1, 16), st.integers(16, 8192), st.sampled_from(["fp16", "bf16"])),
)


def _costs(op, sys_):
    try:
        return {m: predict_op(op, sys_, timing=m) for m in ("kernel", "graph", "stream", "eager")}
    except MappingError:  # a dtype the part cannot run
        return None


@pytest.mark.parametrize("part,base", GPUS, ids=GPU_IDS)
@law_settings(15)
@given(op=_OPS)
def test_device_times_are_ordered_and_host_follows_the_recipe(part, base, op):
    sys_ = target(part, base)
    c = _costs(op, sys_)
    if c is None:
        return
    t = [c[m].latency_s for m in ("kernel", "graph", "stream", "eager")]
    assert all(0 < a <= b * (1 + TOL) + TOL for a, b in zip(t, t[1:])), (op.describe(), t)
    dev = sys_.device
    # graph: one gap per kernel, never more than the stream's launch share
    k = kernels_of(c["stream"])
    gap = min(k * float(param(dev, "graph_launch_gap")),
              c["stream"].latency_s - kernel_time(c["stream"]))
    assert c["graph"].latency_s == pytest.approx(c["kernel"].latency_s + gap, rel=1e-9)
    # eager host: per call from Python, per output, per kernel
    _, calls, _ = eager_recipe(op, c["stream"], dev)
    want = (sum(x.python for x in calls) * float(param(dev, "eager_dispatch"))
            + sum(x.outputs for x in calls) * float(param(dev, "eager_alloc"))
            + sum(x.kernels for x in calls) * float(param(dev, "eager_launch")))
    assert c["eager"].details["host_s"] == pytest.approx(want, rel=1e-9)
    assert 0 <= c["eager"].details.get("host_lead_s", 0.0) <= c["eager"].details["host_s"]


@pytest.mark.parametrize("part", ["a100-sxm-80gb", "h100-sxm", "l4"])
@law_settings(8)
@given(chain=st.lists(_OPS, min_size=1, max_size=6))
def test_run_latencies_of_a_chain_are_ordered(part, chain):
    g = WorkloadGraph("chain")
    prev: tuple[str, ...] = ()
    for i, op in enumerate(chain):
        prev = (g.add_op(f"op{i}", op, prev),)
    try:
        lat = [simulate(g, part, timing=m).latency_s
               for m in ("kernel", "graph", "stream", "eager")]
    except MappingError:
        return
    assert all(0 < a <= b * (1 + 1e-9) for a, b in zip(lat, lat[1:])), lat
