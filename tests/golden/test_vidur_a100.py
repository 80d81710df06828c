"""Replay of public A100 kernel and NCCL timings (the Vidur profiles) against hwsim's kernel
model, per class: cases, MAPE and bias, uncalibrated.

The data (``experiments/data/vidur-a100`` in this repository, or ``$HWSIM_VIDUR_A100``;
source, MIT license and columns in its README) are Kineto kernel times of Llama-2 7B and 70B
layers on an A100 80GB SXM, fp16, and NCCL all-reduce kernel times on DGX A100 nodes, all
medians in milliseconds. Kineto reports device time, so the prediction compared is
:func:`simulator.mapping.gpu.kernel_time` (the op's latency less its launch overhead), not
eager wall-clock.

Cases. Compute: the 21 token counts 1, 2, 4, ..., 4096 and the 1.5x points between (24, 48,
..., 3072) x tensor parallel 1/2/4/8 x the two models: 168 per op class (the two RMSNorms of
a layer are one case, their mean). Matmul is the four projections (672 cases). All-reduce in
one node: 2, 4 and 8 GPUs, every size the profile has from 4 MiB up (the device-bound range,
2,307 cases); below that the kernel times carry the host (see the last test). The profile's
``size`` column is bytes: Vidur's collectives_wrapper records ``"size": self._size * 2  #
bytes`` for its fp16 buffers (the README's "number of fp16 elements" is off by that 2;
read as elements, the largest 8-GPU all-reduce would need 355 GB/s of NVLink bus bandwidth,
above the 300 GB/s line rate).

Each class asserts the issue's target (MAPE <= 10%, |bias| <= 5%) where the model reaches it
and otherwise the level it reaches, with what is left.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path

from simulator.arch.loader import load_arch
from simulator.mapping.base import MapOptions
from simulator.mapping.gpu import kernel_time
from simulator.mapping.registry import cost_op
from simulator.predict import Predictor
from workloads.ops import Collective, Elementwise, Embedding, MatMul, Norm

DATA = Path(os.environ.get("HWSIM_VIDUR_A100", Path(__file__).resolve().parents[2]
                           / "experiments/data/vidur-a100"))

TOKENS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
          3072, 4096)
MATMULS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
MIB = 2**20


def _median(rows: list[dict[str, str]], col: str) -> float:
    return statistics.median(float(r[col]) for r in rows) * 1e-3  # ms -> s


@cache
def _layer_cases() -> dict[str, list[tuple[float, float]]]:
    """{class: [(measured s, predicted kernel s)]} for the Llama-2 layer profiles."""
    dev = load_arch("a100-sxm-80gb").device
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for model in ("7b", "70b"):
        with open(DATA / f"llama2-{model}_mlp.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        by: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            by[(int(r["num_tensor_parallel_workers"]), int(r["num_tokens"]))].append(r)
        r0 = rows[0]
        d, h, kvh = int(r0["n_embd"]), int(r0["n_head"]), int(r0["n_kv_head"])
        ff, vocab, hd = int(r0["n_expanded_embd"]), int(r0["vocab_size"]), d // h
        for (tp, t), rs in sorted(by.items()):
            if t not in TOKENS:
                continue
            q, kv = h * hd // tp, kvh * hd // tp
            ops = {
                "rmsnorm": Norm(norm="rmsnorm", rows=t, cols=d, dtype="fp16"),
                "add": Elementwise(fn="add", numel=t * d, dtype="fp16"),
                "rope": Elementwise(fn="mul", numel=t * (q + kv), dtype="fp16"),
                "act": Elementwise(fn="swiglu", numel=t * ff // tp, dtype="fp16"),
                "emb": Embedding(tokens=t, vocab=vocab // tp, dim=d, dtype="fp16"),
                "attn_pre_proj": MatMul(m=t, n=q + 2 * kv, k=d, weight=True, dtype="fp16"),
                "attn_post_proj": MatMul(m=t, n=d, k=d // tp, weight=True, dtype="fp16"),
                "mlp_up_proj": MatMul(m=t, n=2 * ff // tp, k=d, weight=True, dtype="fp16"),
                "mlp_down_proj": MatMul(m=t, n=d, k=ff // tp, weight=True, dtype="fp16"),
            }
            col = "time_stats.{}.median".format
            meas = {"rmsnorm": (_median(rs, col("input_layernorm"))
                                + _median(rs, col("post_attention_layernorm"))) / 2,
                    "add": _median(rs, col("add")), "rope": _median(rs, col("attn_rope")),
                    "act": _median(rs, col("mlp_act")), "emb": _median(rs, col("emb")),
                    **{m: _median(rs, col(m)) for m in MATMULS}}
            for name, op in ops.items():
                cls = "matmul" if name in MATMULS else name
                out[cls].append((meas[name], kernel_time(cost_op(op, dev, MapOptions()))))
    return dict(out)


@cache
def _allreduce_cases(lo: float = 0.0, hi: float = math.inf
                     ) -> dict[int, list[tuple[float, float]]]:
    """{GPUs: [(measured s, predicted s)]} for all-reduces inside one DGX A100 node."""
    with open(DATA / "dgx_all_reduce.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["num_workers"] == r["devices_per_node"]]
    by: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by[(int(r["num_workers"]), int(r["size"]))].append(r)
    pred = Predictor(load_arch("dgx-a100"))
    out: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for (p, nbytes), rs in sorted(by.items()):
        if not lo <= nbytes < hi:
            continue
        op = Collective(collective="allreduce", bytes=float(nbytes), devices=p, dtype="fp16")
        c = pred.cost(op, tuple(range(p)))
        out[p].append((_median(rs, "time_stats.all_reduce.median"), kernel_time(c)))
    return dict(out)


def _stats(cases: list[tuple[float, float]]) -> tuple[int, float, float]:
    """(cases, MAPE %, bias %) with bias the mean signed relative error (+ = too slow)."""
    errs = [(p - m) / m for m, p in cases]
    return len(errs), 100 * sum(map(abs, errs)) / len(errs), 100 * sum(errs) / len(errs)


def _table() -> str:
    lines = ["class | cases | MAPE | bias"]
    for cls, cases in sorted(_layer_cases().items()):
        n, mape, bias = _stats(cases)
        lines.append(f"{cls} | {n} | {mape:.1f}% | {bias:+.1f}%")
    ar = [c for cs in _allreduce_cases(4 * MIB).values() for c in cs]
    n, mape, bias = _stats(ar)
    lines.append(f"all-reduce 2/4/8 GPUs >= 4 MiB | {n} | {mape:.1f}% | {bias:+.1f}%")
    return "\n".join(lines)


def _check(cls: str, max_mape: float, bias_range: tuple[float, float]) -> None:
    n, mape, bias = _stats(_layer_cases()[cls])
    assert n == 672 if cls == "matmul" else n == 168
    assert mape <= max_mape and bias_range[0] <= bias <= bias_range[1], \
        f"{cls}: MAPE {mape:.1f}%, bias {bias:+.1f}%\n{_table()}"


def test_residual_add_reaches_the_target():
    """PyTorch's vectorised add: 2 us for small tensors (kernel startup and one round trip,
    not the 4 us launch the old model added), the skip input and the write-backs from DRAM,
    the just-written input from the L2; above half the L2, the last half-L2 of the
    producer's output is still there (LRU) and streams from it. Reached 7.9% / +3.2% (from
    62.8% / +60.8% with the launch counted, the old model; 10.5% / +7.5% with an
    all-or-nothing half-L2 residency rule, which costed the 25 MB working sets of 7B x 1024
    and 70B x 512 tokens, measured at ~2.1 TB/s, all at DRAM bandwidth)."""
    _check("add", 10.0, (-5.0, 5.0))


def test_rmsnorm_reaches_11_percent():
    """vLLM's one-block-per-row RMSNorm: chains of dependent loads, in waves of 216 rows.
    Reached 11.0% / +9.5% (from 35.8% / -32.1%; 12.4% / +11.8% before the last half-L2 of a
    larger producer output was counted as resident), short of 10% / 5%. Left: tokens 1-192
    (one wave) are predicted 4.6-5.5 us (7B) and 7.8-9.6 us (70B) against 4.0-5.0 and 7.0-9.0
    measured, at the profiles' 1 us resolution: the chain per load (0.6 us DRAM + 0.2 us L2
    latency, the spec's estimates) runs ~0.1 us long."""
    _check("rmsnorm", 11.5, (0.0, 10.0))


def test_other_streaming_classes_reach_their_levels():
    """Not targeted by the issue; their levels, and what is left:

    - act (SiLU-and-mul) -57%: vLLM runs one block per token over the 2 x ffn/tp row, a chain
      of width/1024 dependent loads (28 of them at 70B, 1 token: 22 us); an Elementwise op
      carries only its element count, so it is costed as a vectorised grid (one round trip).
      (-52% before the partial L2 residency of large producer outputs, which speeds its
      traffic further from a kernel the model does not yet run as vLLM does.)
    - rope -36%: the same, vLLM's rotary kernel is one block per token.
    - emb -32%: index_select's per-element 64-bit index arithmetic is issue-bound beyond
      the two dependent loads modelled (1.5 us per iteration measured vs 0.8 us modelled).
    """
    _check("act", 57.0, (-57.0, -48.0))
    _check("rope", 37.0, (-37.0, -29.0))
    _check("emb", 35.0, (-35.0, -28.0))


def test_matmul_reaches_8_percent():
    """cuBLAS GEMMs as the GPU mapper runs them (issue 12 part 3; target 5% / |bias| 5%):
    each tile's K loop keeps its shared-memory stages' loads in flight against the loaded
    DRAM latency (Little's law: a narrow GEMM's few CTAs cannot, so split-K pays), every wave
    fills its pipeline and writes its output tiles together, the kernel starts up once
    (1.2 us), and a stage waits for the later of its math and its exponentially distributed
    data time. Reached 8.1% / -4.1% (from 18.4% / -17.7%), kernel time, uncalibrated. Per
    projection (MAPE / bias, before -> after): QKV 19.2/-18.2 -> 8.5/-5.2, out-proj
    24.5/-24.5 -> 10.9/-8.6, up/gate 13.7/-13.4 -> 5.3/-1.6, down 16.3/-14.6 -> 7.5/-0.9.
    Per token range: 1-16 22.5/-22.5 -> 7.7/-6.9, 24-64 24.7/-24.7 -> 7.8/-3.9, 96-256
    25.9/-25.2 -> 12.0/-7.0, 384-1024 10.5/-8.0 -> 8.1/-2.2, 1536-4096 7.6/-6.8 -> 4.8/+0.3.
    Left: (a) small weights (TP 4-8, < 20 MB) run 2-5 us longer than the model's fixed
    costs; (b) at 96-384 tokens cuBLAS's heuristics pick tiles and split-K factors the
    model's fastest-plan search does not (single cases off by 20-30% either way, e.g. 70B
    TP1 down at 128 tokens +40%, 7B TP2 up at 128 tokens -35%)."""
    _check("matmul", 8.5, (-5.0, 0.0))


def test_nccl_allreduce_in_one_node():
    """NCCL's own model (simulator.network.collectives: tuning.cc latencies, protocols,
    NVLink at 20 of 25 GB/s per link) from 4 MiB up: 33.5% / -33.5% (from 52.8% / -52.8%
    with the alpha-beta ring at the 300 GB/s line rate and 2 us per step). NCCL's large-size
    bus bandwidth is right (232.5 GB/s measured at 4 GB on 8 A100s, nccl-tests issue #175,
    vs the model's 240), but these 4-64 MiB kernels run at ~175 GB/s of bus bandwidth with
    ~25 us more fixed time than NCCL's tuner charges (a least-squares line through them:
    43-69 us + bytes / 169-185 GB/s) -- the size ramp NCCL's model leaves out. Left: a model
    of that ramp from published NCCL internals (channels, chunking), beyond the tuner's."""
    cases = _allreduce_cases(4 * MIB)
    assert sorted(cases) == [2, 4, 8]
    n, mape, bias = _stats([c for cs in cases.values() for c in cs])
    assert n == 2307
    assert mape <= 36.0 and -36.0 <= bias <= -30.0, f"MAPE {mape:.1f}%, bias {bias:+.1f}%"
    for p, cs in cases.items():  # each GPU count within the same band
        _, m, b = _stats(cs)
        assert m <= 42.0 and b < -25.0, (p, m, b)


def test_small_allreduces_carry_the_host():
    """Below 1 MiB the profiled NCCL kernel times jump between ~10 and ~60 us from one size
    to the next (2 GPUs: 10 us at 4 KiB, 46 us at 20 KiB, 32 us at 496 KiB): each rank's
    eager ``torch.distributed.all_reduce`` launches its kernel from Python, and a kernel
    waits for the last rank's launch. That is eager timing (part 1 of issue 12), not the
    device time predicted here: the model stays below most of them (all at 2 GPUs, 78% at
    4, 85% at 8; medians 55/42/40 us measured against 17/23/30 us)."""
    for p, cs in _allreduce_cases(0.0, 1 * MIB).items():
        below = sum(pred < meas for meas, pred in cs) / len(cs)
        assert below >= 0.75, (p, below)
        assert statistics.median(m for m, _ in cs) > 1.3 * statistics.median(q for _, q in cs)
