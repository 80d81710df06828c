"""Speed target of ``hwsim plan`` (run with ``pytest -m bench``; not in the default run):
Llama-2-70B at 10 req/s (1,000 requests) over 3 parts x every tp degree x precision x batch
limit x replica count, for one SLO, in under 60 s on 2 cores."""

import time

import pytest

from simulator.serve import ServeOptions
from simulator.serve.planner import plan

pytestmark = pytest.mark.bench


def test_plan_llama2_70b_over_three_parts_under_60s(capsys):
    t0 = time.perf_counter()
    r = plan("llama2-70b", ["h100-sxm", "a100-sxm-80gb", "dgx-h100"],
             ServeOptions(rate=10.0, requests=1000), 0.5, 0.05)
    wall = time.perf_counter() - t0
    s = r.stats
    with capsys.disabled():
        print(f"\nhwsim plan llama2-70b x 3 parts: {wall:.1f} s; {s.configurations} "
              f"configurations, {s.pruned_by_bound} pruned by bound, {s.pruned_cost} by cost, "
              f"{s.searched} searched, {s.simulations} simulations (+{s.reused} reused), "
              f"{s.replicas_skipped} replica counts skipped")
    assert r.feasible and r.fleets[0].ttft_p99_s <= 0.5 and r.fleets[0].tpot_p99_s <= 0.05
    assert s.simulations < s.configurations  # the bounds and the cost order do their job
    assert wall < 60.0
