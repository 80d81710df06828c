"""Every shipped part runs every shipped model at its defaults, or refuses with a clear
capacity error: no other exception, no zero or non-finite latency/energy."""

import math

import pytest

from simulator import CapacityError, simulate
from simulator.arch.loader import list_arch_files
from workloads.zoo import list_models

PARTS = list(list_arch_files())
MODELS = [m.name for m in list_models()]


@pytest.mark.parametrize("part", PARTS)
def test_part_runs_every_model(part):
    ran = 0
    for model in MODELS:
        try:
            r = simulate(model, part)
        except CapacityError as e:
            msg = str(e)
            assert model in msg and "per device" in msg and " has " in msg, msg
            continue
        ran += 1
        assert r.latency_s > 0 and math.isfinite(r.latency_s), (part, model)
        assert r.energy_j > 0 and math.isfinite(r.energy_j), (part, model)
        assert all(x.latency_s > 0 for x in r.records), (part, model)
        assert r.memory_bytes <= r.memory_capacity_bytes
        # the energy model must stay physical: the run's limiter holds the average power at
        # most at the TDP (the default limit; per device, so a system's idle devices and its
        # node overhead keep its average below its total)
        assert r.avg_power_w <= _tdp(part), (part, model, r.avg_power_w)
    assert ran >= 5, f"{part} ran only {ran} models"   # every part fits at least the small ones


def _tdp(part: str) -> float:
    from simulator import load_arch

    return load_arch(part).tdp_w
