"""Law 4: every cost is a sane number, and the same question always gets the same answer.

For every shipped part and random ops of every kind (and collectives on the systems):

- latency is finite and positive, and at least its own parts: ``max(compute_s, memory_s) +
  overhead_s`` (compute and memory overlap at best; the fixed overhead never does);
- every time, byte count and energy (compute, each memory level) is finite and non-negative;
  utilisation lies in [0, 1];
- costing the same op twice gives an identical OpCost (every number, note and detail).

And across processes: a few small whole-model runs give the same ``Result.to_json()`` in a
fresh interpreter with another hash seed (no dict/set ordering or global state leaks into a
prediction). Cases: 15 variants x 150 + 2 systems x 100 = 2,450, plus the cross-process run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _parts import (
    EXTRA_KINDS,
    LAW_KINDS,
    SYSTEMS,
    VARIANT_IDS,
    VARIANTS,
    cost,
    law_settings,
    ops,
    system,
    target,
)
from hypothesis import given
from hypothesis import strategies as st

from simulator import simulate
from workloads.ops import COLLECTIVES, Collective

TOL = 1e-9
BOUNDS = ("compute", "memory", "latency", "communication")


def _finite_nonneg(x: float) -> bool:
    return math.isfinite(x) and x >= 0


def check_sane(c, what: str) -> None:
    assert math.isfinite(c.latency_s) and c.latency_s > 0, (what, c.latency_s)
    for name in ("compute_s", "memory_s", "overhead_s"):
        assert _finite_nonneg(getattr(c, name)), (what, name, getattr(c, name))
    assert c.latency_s >= (max(c.compute_s, c.memory_s) + c.overhead_s) * (1 - TOL), (
        what, c.latency_s, c.compute_s, c.memory_s, c.overhead_s)
    assert 0.0 <= c.utilization <= 1.0, (what, c.utilization)
    assert c.bound in BOUNDS, (what, c.bound)
    assert all(_finite_nonneg(b) for b in c.bytes_by_level.values()), (what, c.bytes_by_level)
    e = c.energy
    assert _finite_nonneg(e.compute_j), (what, e.compute_j)
    assert all(_finite_nonneg(j) for j in e.memory_j.values()), (what, dict(e.memory_j))
    assert _finite_nonneg(c.energy_j), (what, c.energy_j)


@pytest.mark.parametrize("part,base", VARIANTS, ids=VARIANT_IDS)
@law_settings(150)
@given(data=st.data())
def test_costs_are_finite_non_negative_and_repeatable(part, base, data):
    op = data.draw(ops(part, base, LAW_KINDS + EXTRA_KINDS), label="op")
    sys_ = target(part, base)
    c = cost(op, sys_)
    check_sane(c, f"{op.describe()} on {part} {base}")
    assert cost(op, sys_) == c


@pytest.mark.parametrize("part", SYSTEMS)
@law_settings(100)
@given(collective=st.sampled_from(COLLECTIVES),
       nbytes=st.integers(0, 34).map(lambda e: float(1 << e)),
       devices=st.integers(2, 8))
def test_collectives_are_sane_and_repeatable(part, collective, nbytes, devices):
    op = Collective(collective=collective, bytes=nbytes, devices=devices)
    c = cost(op, system(part))
    check_sane(c, f"{op.describe()} on {part}")
    assert cost(op, system(part)) == c


# -- across processes -------------------------------------------------------------------------
RUNS = [
    ("mlp", "cpu-host", {}),
    ("resnet18", "tpu-v4", {"batch": 2}),
    ("resnet18", "eyeriss", {"dtype": "int8"}),
    ("bert-base", "alveo-u280", {"dtype": "int8"}),
    ("gpt2", "h100-sxm", {"phase": "prefill", "seq": 128}),
    ("llama2-7b", "dgx-a100", {"phase": "decode", "context": 512, "batch": 2}),
]

_CHILD = """
import json, sys
from simulator import simulate
runs = json.loads(sys.argv[1])
print(json.dumps([simulate(w, a, **kw).to_json() for w, a, kw in runs]))
"""


def test_same_run_gives_the_same_json_in_another_process():
    here = [simulate(w, a, **kw).to_json() for w, a, kw in RUNS]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(RUNS)], env=env, cwd=root,
                         capture_output=True, text=True, timeout=120, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(there) == len(here)
    for (w, a, _), mine, theirs in zip(RUNS, here, there, strict=True):
        assert mine == theirs, f"{w} on {a}: the JSON differs between processes"
