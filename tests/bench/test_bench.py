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


def _bench_module():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "bench"))
    import run

    return run


def test_a_million_op_graph_fits_in_2_gb_and_scales_linearly():
    # each size in a fresh interpreter (experiments/bench/run.py: scale); a 4x larger graph
    # may take at most 5x as long (linear, with room for noise on a shared machine)
    res = _bench_module().scale([250_000, 1_000_000])
    big = res["1000000"]
    assert big["ops"] == 1_000_000
    assert big["peak_rss_bytes"] < 2 * 2**30
    assert res["time_ratio_largest_to_smallest"] < 5.0


def test_a_sweep_on_one_predictor_is_5x_faster_than_fresh_simulate_calls():
    # 1,000 decode steps drawn from a serving-like mix of batch sizes and contexts, side by
    # side in one process (experiments/bench/run.py: sweep); same numbers both ways
    res = _bench_module().sweep(points=1000)
    assert res["serving_mix"]["speedup"] >= 5.0
