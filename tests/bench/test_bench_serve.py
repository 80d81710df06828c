"""Speed of the serving simulator (run with ``pytest -m bench``; not in the default run because
wall-clock asserts are noisy on shared machines). Targets on 2 cores: 10,000 requests under
10 s, 100,000 under 100 s, each from a cold start (a fresh predictor, so the iteration model's
grid of predictions is part of the time)."""

from __future__ import annotations

import time

import pytest

from simulator.serve import ServeOptions, serve

pytestmark = pytest.mark.bench

# Llama-2-7B on one H100, Poisson at ~2/3 of its capacity for these lengths (about 30 req/s
# offline), log-normal lengths: a busy but stable server, thousands of iterations per 1,000
# requests, with mixed prefill/decode batches.
LOAD = dict(rate=20.0, prompt_len=512, output_len=128, length_cv=0.5, seed=1)


def _timed(n: int, **kw) -> float:
    t0 = time.perf_counter()
    r = serve("llama2-7b", "h100-sxm", ServeOptions(requests=n, **{**LOAD, **kw}))
    dt = time.perf_counter() - t0
    assert r.completed == n
    print(f"\n{n:,} requests {kw or ''}: {dt:.2f} s, {r.metrics['iterations']:,} iterations, "
          f"{r.metrics['iteration_predictions']} graph predictions")
    return dt


def test_10k_requests_under_10s():
    assert _timed(10_000) < 10.0


def test_10k_requests_chunked_prefill_under_10s():
    assert _timed(10_000, chunked_prefill=True, max_batched_tokens=512) < 10.0


def test_100k_requests_under_100s():
    assert _timed(100_000) < 100.0
