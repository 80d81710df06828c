"""Run-level laws: a run's energy is exactly the sum of its parts, and its latency lies
between the longest single op and the serial sum of all ops.

The op-level laws, over every shipped part and random ops, are in their own files:
test_more_hardware_never_slower.py (more units or bandwidth never slower),
test_larger_batch.py (twice the batch at most twice the time, plus the memory hierarchy),
test_roofline_bounds.py (nothing beats its compute or memory bound) and
test_sane_and_deterministic.py (finite, non-negative, repeatable, the same in another process).
"""

import pytest

from simulator import simulate


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
