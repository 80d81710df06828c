"""Laws every mapping and run must obey, checked with hypothesis over random shapes.

- more DRAM bandwidth or more compute units never makes an op slower;
- an op's latency is at least its roofline bound (FLOPs over the total peak of the device,
  DRAM bytes over the peak DRAM bandwidth);
- a run's energy is exactly the sum of its parts, and its latency lies between the longest
  single op and the serial sum of all ops.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import load_arch, predict_op, simulate
from workloads.ops import MatMul, Softmax

PARTS = {  # part -> (matrix unit name for the "more PEs" override, dtype)
    "h100-sxm": ("tensor_core", "bf16"),
    "tpu-v4": ("mxu", "bf16"),
    "alveo-u280": ("dsp_array", "int8"),
    "systolic-32x32": (None, "int8"),
    "cpu-host": (None, "fp32"),
}
dims = st.sampled_from([1, 7, 32, 64, 100, 128, 333, 512, 1024, 2048, 4096])
cfg = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _dram(part: str) -> str:
    return load_arch(part).device.dram.name


@pytest.mark.parametrize("part", list(PARTS))
@cfg
@given(m=dims, n=dims, k=dims)
def test_more_bandwidth_never_slower(part, m, n, k):
    op = MatMul(m=m, n=n, k=k, dtype=PARTS[part][1])
    dev = load_arch(part).device
    bw = dev.dram.bandwidth_Bps
    base = predict_op(op, part)
    faster = predict_op(op, part, [f"memory.{_dram(part)}.bandwidth={bw * 2}"])
    assert faster.latency_s <= base.latency_s * (1 + 1e-9)


@pytest.mark.parametrize("part", [p for p, (u, _) in PARTS.items() if u])
@cfg
@given(m=dims, n=dims, k=dims)
def test_more_compute_units_never_slower(part, m, n, k):
    unit, dtype = PARTS[part]
    op = MatMul(m=m, n=n, k=k, dtype=dtype)
    count = next(u.count for u in load_arch(part).device.compute if u.name == unit)
    base = predict_op(op, part)
    more = predict_op(op, part, [f"compute.{unit}.count={count * 2}"])
    assert more.latency_s <= base.latency_s * (1 + 1e-9)


@pytest.mark.parametrize("part", list(PARTS))
@cfg
@given(m=dims, n=dims, k=dims, soft=st.booleans())
def test_latency_at_least_roofline_bound(part, m, n, k, soft):
    dtype = PARTS[part][1]
    dev = load_arch(part).device
    op = Softmax(rows=m, cols=n, dtype=dtype) if soft else MatMul(m=m, n=n, k=k, dtype=dtype)
    c = predict_op(op, part)
    total_peak = sum(dev.native_peak(cls, u) for u in ("matrix", "vector", "special")
                     for cls in ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"))
    assert c.latency_s >= op.flops().total / total_peak * (1 - 1e-9)
    assert c.latency_s >= c.dram_bytes / dev.dram.bandwidth_Bps * (1 - 1e-9)


@pytest.mark.parametrize("workload,arch,kw", [
    ("gpt2", "h100-sxm", {"phase": "prefill", "seq": 256}),
    ("resnet18", "tpu-v4", {}),
    ("bert-base", "alveo-u280", {"dtype": "int8"}),
    ("llama2-13b", "dgx-a100", {"phase": "decode", "context": 1024, "batch": 4}),
])
def test_run_energy_is_sum_of_parts_and_latency_is_bracketed(workload, arch, kw):
    r = simulate(workload, arch, **kw)
    e = r.energy
    assert e.total_j == pytest.approx(e.compute_j + sum(e.memory_j.values()) + e.static_j)
    # every device is simulated: the dynamic energy is the sum over all of their records, and
    # the per-device energies plus the system overhead make up the total (no rank multiplier)
    assert e.dynamic_j == pytest.approx(sum(x.energy_j for x in r.records), rel=1e-9)
    assert sum(d.energy_j for d in r.per_device) + e.system_j == pytest.approx(e.total_j)
    assert {x.device for x in r.records} == set(range(r.meta["devices_used"]))
    serial = sum(x.latency_s for x in r.records)
    longest = max(x.latency_s for x in r.records)
    assert longest <= r.latency_s <= serial * (1 + 1e-9)
