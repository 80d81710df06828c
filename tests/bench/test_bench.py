"""Speed targets of the simulator itself (run with ``pytest -m bench``; not in the default
run because wall-clock asserts are noisy on shared machines)."""

import time

import pytest

from simulator import simulate
from simulator.arch.loader import list_arch_files, load_arch
from simulator.mapping.registry import cost_op
from workloads.ops import op_from_dict

pytestmark = pytest.mark.bench


def _best_of(fn, n=3):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_llama2_70b_decode_on_dgx_h100_under_2s():
    t = _best_of(lambda: simulate("llama2-70b", "dgx-h100", phase="decode", batch=16,
                                  context=4096))
    assert t < 2.0


def test_resnet50_on_every_part_under_10s():
    def run():
        for p in list_arch_files():
            simulate("resnet50", p, batch=32)
    assert _best_of(run, 1) < 10.0


def test_10k_op_predictions_under_15s():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "bench"))
    from run import random_ops

    ops = [op_from_dict(d) for d in random_ops(10_000)]
    dev = load_arch("h100-sxm").device
    assert _best_of(lambda: [cost_op(op, dev) for op in ops], 1) < 15.0
