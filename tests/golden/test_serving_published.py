"""The serving simulator (``simulator.serve``) against published TensorRT-LLM figures, and the
laws of serving every engineer knows, checked on hwsim's own runs.

Sources (all NVIDIA, TensorRT-LLM repository, ``github.com/NVIDIA/TensorRT-LLM``):

- [perf-0.5] ``docs/source/performance.md`` on branch ``release/0.5.0`` (Oct 2023),
  https://raw.githubusercontent.com/NVIDIA/TensorRT-LLM/release/0.5.0/docs/source/performance.md
  tables "High Throughput" (H100 FP8, A100 FP16; out tok/s of the whole TP group) and
  "Low Latency" (1st token latency at batch 1).
- [perf-0.6] the same file updated "for v0.6.1" (Dec 2023, commit 77d24b5), table "Peak
  Throughput", column "Throughput (out tok/s/GPU)".
- [h200] ``docs/source/blogs/H200launch.md`` (Nov 2023, TensorRT-LLM v0.5.0), table
  "H200 FP8 Max throughput" (out tok/s/GPU).

How they were measured: ``gptSessionBenchmark``, i.e. *static* batching: one batch of
``batch`` requests with fixed input/output lengths is prefilled and then decoded to the end;
throughput = batch x output length / time of the whole batch. Engines: ``--dtype float16``,
and on H100/H200 ``--enable_fp8 --fp8_kv_cache`` (fp8 weights, activations and KV cache). The
"LLaMA 7B/70B" rows are Llama-2-7B/70B (the files' methodology section says so); "llama_13b"
is Llama-2-13B (the blog's title). A100 and H100 are the SXM 80 GB parts.

The same setup in hwsim: ``serve(offline=True, requests=batch, max_batch=batch, ...)``. All
requests arrive at once, the scheduler prefills them all (in 8192-token iterations) and then
decodes them together, which is the static batch; the KV cache holds every sequence in full
in all the rows used (no preemption), as in the engine.

Tolerance: +-30% on throughput and first-token latency. The published runs differ from what
hwsim models in engine details it does not model: the per-step host and runtime work of
``gptSessionBenchmark`` (sampling, stop checks, launches outside CUDA graphs), the kernels
TensorRT-LLM of that version had (fused QKV and gate/up GEMMs, its context and GQA generation
attention kernels, fp8 GEMM efficiency), the NCCL all-reduce implementation, GPU clocks
under power capping, and run-to-run variation of a single published run. Each of these moves
a row by 5-20%; kernel-level checks (tests/golden/test_published.py) use 10-20%, a whole
serving step stacks several of them. The rows that land inside use between 0 and 19% of it.

Figures far outside are kept as strict xfails with the measured ratio and the reason, not
hidden by a wider tolerance: if a modelling change brings them in (or moves them further
out past the xfail's assert) the test says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from simulator import load_arch
from simulator.predict import Predictor
from simulator.serve import serve

TOL = 0.30


@dataclass(frozen=True)
class Figure:
    source: str
    workload: str
    arch: str
    dtype: str
    kv_dtype: str | None
    tp: int
    batch: int
    prompt: int
    output: int
    published: float     # output tokens/s of the whole TP group, or TTFT in seconds
    what: str = "throughput"  # or "ttft"

    @property
    def id(self) -> str:
        return (f"{self.workload}-{self.arch}-{self.dtype}-tp{self.tp}-b{self.batch}-"
                f"{self.prompt}in-{self.output}out-{self.what}")


def _measure(f: Figure) -> float:
    r = serve(f.workload, f.arch, offline=True, requests=f.batch, max_batch=f.batch,
              prompt_len=f.prompt, output_len=f.output, tp=f.tp, dtype=f.dtype,
              kv_dtype=f.kv_dtype)
    assert r.metrics["preemptions"] == 0, "a static batch keeps every sequence's KV cache"
    if f.what == "ttft":
        return r.metrics["ttft_s"]["p50"]
    return r.metrics["output_tokens_per_s"]


FIGURES = [
    # [perf-0.6] A100 FP16, LLaMA 7B, batch 384, TP 1, 128 in / 128 out: 5,586 out tok/s/GPU.
    # Large batch, short sequences: weight reads amortised, KV cache ~90% full.
    # hwsim 5,591 (ratio 1.00).
    Figure("perf-0.6", "llama2-7b", "a100-sxm-80gb", "fp16", None, 1, 384, 128, 128, 5586),
    # [perf-0.5] A100 FP16, LLaMA 7B, batch 32, TP 1, 2048 in / 128 out: 529 out tok/s.
    # Prefill-heavy (65k prompt tokens per batch). hwsim 546 (1.03).
    Figure("perf-0.5", "llama2-7b", "a100-sxm-80gb", "fp16", None, 1, 32, 2048, 128, 529),
    # [perf-0.6] A100 FP16, LLaMA 70B, batch 1280, TP 4, 128/128: 670 out tok/s/GPU
    # (x4 GPUs = 2,680). Tensor-parallel all-reduces every layer. hwsim 2,878 (1.07).
    Figure("perf-0.6", "llama2-70b", "dgx-a100", "fp16", None, 4, 1280, 128, 128, 4 * 670),
    # [perf-0.5] H100 FP8 (+ fp8 KV cache), LLaMA 7B, batch 64, TP 1, 128 in / 2048 out:
    # 5,367 out tok/s. Decode-heavy, long contexts. hwsim 5,888 (1.10).
    Figure("perf-0.5", "llama2-7b", "h100-sxm", "fp8", "fp8", 1, 64, 128, 2048, 5367),
    # [h200] H200 FP8, Llama-2-13B, batch 64, TP 1, 2048 in / 128 out: 1,349 out tok/s/GPU.
    # hwsim 1,606 (1.19).
    Figure("h200", "llama2-13b", "h200-sxm", "fp8", "fp8", 1, 64, 2048, 128, 1349),
    # [perf-0.5] "Low Latency", A100 FP16, LLaMA 70B, batch 1, TP 4, 2048 input: 1st token
    # latency 377 ms. Compute-bound prefill over 4 GPUs. hwsim 354 ms (0.94).
    Figure("perf-0.5", "llama2-70b", "dgx-a100", "fp16", None, 4, 1, 2048, 2, 0.377, "ttft"),
    # [perf-0.5] "Low Latency", H100 FP8, LLaMA 70B, batch 1, TP 4, 128 input: 26 ms. hwsim
    # 19.1 ms (0.73): about one read of the weights (~5 ms), 160 all-reduces, and M = 128
    # GEMMs that cuBLAS runs well below the bandwidth roofline (split-K, per-wave fill: the
    # A100 kernel profiles of tests/golden/test_vidur_a100.py). Still low: the per-call
    # runtime work (request setup, sampling, the first token's copy) is not modelled. (It
    # was a strict xfail at 14.0 ms = 0.54x before the GEMM model learned small M.)
    Figure("perf-0.5", "llama2-70b", "dgx-h100", "fp8", "fp8", 4, 1, 128, 2, 0.026, "ttft"),
]

XFAILS = [
    pytest.param(
        # [perf-0.5] H100 FP8, LLaMA 70B, batch 64, TP 4, 2048 in / 2048 out: 1,583 out tok/s.
        Figure("perf-0.5", "llama2-70b", "dgx-h100", "fp8", "fp8", 4, 64, 2048, 2048, 1583),
        marks=pytest.mark.xfail(strict=True, reason=(
            "hwsim 2,873 tok/s = 1.82x the published 1,583. Long decodes of a GQA model "
            "(8 KV heads for 64 query heads): hwsim costs decode attention as one read of each "
            "KV cache (flash-decoding), TensorRT-LLM v0.5's generation kernel was far from "
            "that; NVIDIA's own later note (docs/source/blogs/Falcon180B-H200.md) reports up "
            "to 2.4x on Llama-70B from its improved GQA kernels over v0.5. The gap grows with "
            "the decoded length: the table's 128-token-output rows land at 1.2x (128 in) and "
            "1.5x (2048 in), 128 in / 2048 out at 1.7x."))),
]


@pytest.mark.parametrize("fig", FIGURES + XFAILS,
                         ids=[f.id for f in FIGURES] + [p.values[0].id for p in XFAILS])
def test_near_published_tensorrt_llm(fig: Figure):
    got = _measure(fig)
    assert got == pytest.approx(fig.published, rel=TOL), (
        f"{fig.source}: hwsim {got:.4g} vs published {fig.published:.4g} "
        f"(ratio {got / fig.published:.2f})")


# -- laws of serving, on hwsim's own runs ---------------------------------------------------

@pytest.fixture(scope="module")
def a100():
    system = load_arch("a100-sxm-80gb")
    return system, Predictor(system)


def test_throughput_rises_with_batch_then_flattens(a100):
    """Offline Llama-2-7B on one A100, 512 in / 256 out: output tokens/s grows almost linearly
    while decode is bound by reading the weights (small batches), then flattens once the KV
    cache is full (about 150 sequences of 768 tokens fit) and attention's KV reads dominate."""
    system, p = a100
    tput, kv_peak = {}, {}
    for mb in (1, 4, 16, 64, 256, 1024):
        r = serve("llama2-7b", system, offline=True, requests=max(64, min(2 * mb, 1024)),
                  prompt_len=512, output_len=256, max_batch=mb, predictor=p)
        tput[mb] = r.metrics["output_tokens_per_s"]
        kv_peak[mb] = r.metrics["kv_cache"]["peak_utilization"]
    # rising: each 4x of batch gives at least 1.6x while the cache has room
    for lo, hi in ((1, 4), (4, 16), (16, 64)):
        assert tput[hi] > 1.6 * tput[lo], (lo, hi, tput)
    # saturated: the cache is full, and more allowed sequences buy (almost) nothing
    assert kv_peak[256] == pytest.approx(1.0, abs=0.02) and kv_peak[1024] == pytest.approx(1.0,
                                                                                         abs=0.02)
    assert tput[256] / tput[64] < 1.15, tput
    assert tput[1024] / tput[256] == pytest.approx(1.0, abs=0.05), tput


def test_ttft_p99_grows_with_load_near_saturation(a100):
    """Poisson arrivals at a rising fraction of the offline capacity: TTFT p99 and TPOT p99
    grow with load; past the capacity the queue, and TTFT with it, runs away."""
    system, p = a100
    kw = dict(prompt_len=512, output_len=256, predictor=p)
    cap = serve("llama2-7b", system, offline=True, requests=600, **kw).metrics["requests_per_s"]
    ttft, tpot, served = {}, {}, {}
    for f in (0.25, 0.5, 0.8, 0.95, 1.25):
        m = serve("llama2-7b", system, rate=f * cap, requests=600, seed=1, **kw).metrics
        ttft[f], tpot[f], served[f] = (m["ttft_s"]["p99"], m["tpot_s"]["p99"],
                                       m["requests_per_s"])
    loads = sorted(ttft)
    for a, b in zip(loads, loads[1:]):
        assert ttft[b] >= 0.95 * ttft[a], ttft    # non-decreasing, up to sampling noise
        assert tpot[b] >= 0.95 * tpot[a], tpot    # bigger running batches decode slower
    assert ttft[0.95] > 1.5 * ttft[0.25], ttft   # queueing near saturation
    assert ttft[1.25] > 10 * ttft[0.95], ttft    # overload: the queue grows for the whole run
    assert tpot[0.95] > 2 * tpot[0.25], tpot
    assert served[1.25] == pytest.approx(cap, rel=0.10)  # the server tops out at its capacity
