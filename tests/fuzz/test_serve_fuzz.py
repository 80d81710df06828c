"""Fuzz of ``serve()`` over small random option combinations (load mode, lengths, fleet,
scheduler, cache size, some invalid values): every combination either returns a result whose
metrics are finite and non-negative with every request completed, or raises one of hwsim's
one-line errors; never another exception, never NaN, never a hang."""

from __future__ import annotations

import json
import math
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.arch.loader import load_arch
from simulator.errors import HwsimError
from simulator.predict import Predictor
from simulator.serve import ServeOptions, serve


@cache
def _predictor(arch: str) -> Predictor:
    return Predictor(load_arch(arch))


def _numbers(d, path=""):
    """Every number in a nested dict/list, with its path."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield path, d


def _check(r, o: ServeOptions) -> None:
    d = json.loads(r.to_json())
    for path, x in _numbers(d):
        assert math.isfinite(x) and x >= 0, (path, x)
    n = len(r.sim.finished)
    assert r.completed == n == d["requests"]
    if o.trace is None:
        assert n == o.requests
    assert all(s.generated == s.req.output_tokens for s in r.sim.finished)
    assert len({s.req.rid for s in r.sim.finished}) == n
    for log in r.sim.replicas:
        assert all(u <= log.kv_total for u in log.kv_used)
        assert all(t <= o.max_batched_tokens for t in log.tokens)
    for k in ("ttft_s", "e2e_s"):
        assert d[k]["p50"] is not None and d[k]["max"] >= d[k]["p50"]
    assert d["ttft_s"]["max"] <= d["e2e_s"]["max"]


ARCHS = ["h100-sxm", "l4", "dgx-a100", "tpu-v4"]
MODELS = ["gpt2", "llama2-7b"]


def mostly(good: list, bad: list, weight: int = 4):
    """Mostly valid values (each ``weight`` times as likely as one invalid), so a fair share of
    the combinations runs; the rest must fail cleanly."""
    return st.sampled_from(good * weight + bad)


fuzz = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(arch=st.sampled_from(ARCHS), workload=st.sampled_from(MODELS),
       load=mostly(["rate", "offline", "users", "bursty"], ["none", "two"]),
       rate=mostly([0.5, 5.0, 40.0, 1e4], [0.0, -1.0, math.nan]),
       requests=st.integers(1, 40),
       prompt=mostly([1, 16, 100, 600, 3000], [20000], 2),
       output=st.sampled_from([1, 2, 30, 200, 1500]),
       cv=mostly([0.0, 0.5, 1.5], [200.0]),
       burst=mostly([0.3, 2.0, 8.0], [0.0]),
       tp=mostly([1, 1, 2], [4, 0, -1]), replicas=mostly([1, 2, 3], [0]),
       router=st.sampled_from(["least_outstanding", "round_robin"]),
       max_batch=mostly([1, 3, 16, 256], [0]),
       budget=st.sampled_from([16, 100, 512, 4096, 8192]),
       chunked=st.booleans(), block=st.sampled_from([1, 16, 64]),
       preemption=st.sampled_from(["recompute", "swap"]),
       mem=mostly([0.9, 0.5, 0.25, 0.2], [0.05, 0.0]),
       think=st.sampled_from([0.0, 0.05]), seed=st.integers(0, 3))
def test_serve_runs_or_fails_cleanly(arch, workload, load, rate, requests, prompt, output, cv,
                                     burst, tp, replicas, router, max_batch, budget, chunked,
                                     block, preemption, mem, think, seed):
    loads = {"rate": dict(rate=rate), "offline": dict(offline=True),
             "users": dict(users=max(1, requests // 3)), "bursty": dict(rate=rate,
                                                                        burstiness=burst),
             "none": {}, "two": dict(rate=rate, offline=True)}[load]
    o = ServeOptions(**loads, requests=requests, prompt_len=prompt, output_len=output,
                     length_cv=cv, think_s=think, seed=seed, tp=tp, replicas=replicas,
                     router=router, max_batch=max_batch, max_batched_tokens=budget,
                     chunked_prefill=chunked, block_size=block, preemption=preemption,
                     gpu_memory_utilization=mem)
    p = _predictor(arch)
    try:
        r = serve(workload, p.system, o, predictor=p)
    except HwsimError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return
    _check(r, o)
