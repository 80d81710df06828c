"""Speed targets of ``hwsim train`` (run with ``pytest -m bench``; not in the default run).

The issue's targets: a GPT-3 175B training step on 1,024 devices in under 1 s, and
``--search`` over every layout of 1,024 devices in under 30 s, on 2 cores. Measured on the
2-core VM: the step in 2.2 s (fold + collapse: from 75 s without them), the search of 128
devices (154 layouts) in 86 s and of 1,024 devices (192 layouts, 97 fit) in 718 s, before a
ZeRO-2 layout reused its ZeRO-1 twin's time. Both targets are not met yet; these
benchmarks print the numbers and assert the bounds the fast path does hold, so a regression
shows.
"""

import time

import pytest

from simulator.train import search, train

pytestmark = pytest.mark.bench

GPT3_1024 = dict(workload="gpt3-175b", arch="dgx-a100", nodes=128, tp=8, pp=16, dp=8,
                 global_batch=1536, micro_batch=1, seq=2048, dtype="fp16", recompute="full")


def test_gpt3_175b_step_on_1024_devices(capsys):
    t0 = time.perf_counter()
    r = train(**GPT3_1024)
    wall = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nhwsim train gpt3-175b on 1,024 A100 (tp8 pp16 dp8, 192 micro-batches): "
              f"{wall:.2f} s wall; step {r.metrics['step_time_s']:.2f} s, "
              f"MFU {r.metrics['mfu']:.1%}, bubble {r.metrics['bubble_fraction']:.1%}")
    assert 0.3 < r.metrics["mfu"] < 0.7
    assert wall < 10.0  # target 1 s, not met: see the module docstring


def test_search_over_128_devices(capsys):
    t0 = time.perf_counter()
    res = search("gpt3-175b", "dgx-a100", nodes=16, global_batch=256, micro_batch=1, seq=2048,
                 dtype="fp16", recompute="full")
    wall = time.perf_counter() - t0
    best = res.fits[0].metrics
    with capsys.disabled():
        print(f"\nhwsim train --search gpt3-175b on 128 A100: {wall:.1f} s wall, "
              f"{res.evaluated} layouts, {len(res.refused)} refused; fastest tp {best['tp']} "
              f"pp {best['pp']} dp {best['dp']} ZeRO {best['zero']}: "
              f"{best['step_time_s']:.2f} s")
    assert res.fits and wall < 300.0  # target 30 s for 1,024 devices, not met
