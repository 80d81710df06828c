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
                "rope": Elementwise(fn="mul", numel=t * (q + kv), row=q + kv, table=hd,
                                    dtype="fp16"),
                "act": Elementwise(fn="swiglu", numel=t * ff // tp, row=ff // tp,
                                   dtype="fp16"),
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


def test_rmsnorm_reaches_the_target():
    """vLLM's one-block-per-row RMSNorm (sarathi-serve csrc/layernorm_kernels.cu): chains of
    dependent loads, in waves of 216 rows, its DRAM round trips queueing behind the
    kernel's DRAM traffic (M/M/1); between its passes the block reduction (blockReduceSum:
    10 shuffles, 3 shared-memory steps, 2 barriers, then the broadcast of the result: 16 SRAM
    latencies, 0.4 us); its second pass re-reads what each thread loaded in the first, an L1
    hit (25 ns), not the L2's 200 ns. Reached 7.0% / -2.0% (from 10.0% / +6.5% with the
    second pass at the L2 latency and no reduction; 35.8% / -32.1% before the row kernel).
    Per tokens (MAPE / bias): 1 14.4/-14.4, 2-16 5.1/+3.1, 24-64 5.0/+3.9, 96-512 5.1/-0.7,
    768-4096 10.1/-8.6. Left: the 1-token cases measure 1 us more than 2 tokens (5.0 and 8.0
    vs 4.0 and 7.0 us; the model 4.3 and 7.4 for both); at 1536-4096 tokens the profile's
    waves take 5.2-5.5 us (7B) against 4.6-4.8 modelled; the weight vector's misses in each
    SM's first row are counted at the L1 latency like its later reads."""
    _check("rmsnorm", 10.0, (-5.0, 5.0))


def test_row_activation_and_rotary_kernels():
    """vLLM's silu_and_mul and rotary kernels as it runs them: one block per token over the
    op's ``row`` (d_ff / tp; q + k of a token), a dependent round trip per loop iteration
    (the rotary kernel's position id first). The rotary op reads one cos/sin cache row
    (head_dim) per token, not a full-size second operand (the op's ``table``; the Llama
    graph builds it so), and each of its iterations issues one integer division for the
    head index and offset, by all the SM's warps at once. act reached 11.6% / -4.7% (from
    -56.6% as a vectorised grid), rope 17.1% / +9.7% (from 16.4% / +15.1% with a full-size
    second operand; -36.0% as a grid). Left: 70B TP1-2 act (28 and 14 iterations a token)
    runs 12-13% longer than 0.6 us a round trip says; rope at 1-64 tokens +21 to +27% (0.4-0.5
    us an iteration measured against the model's 0.6 us first-touch latency), at 768-4096
    tokens -8% (7B TP1 at 4096 tokens: 149 us measured, 0.9 TB/s, vs 125 modelled)."""
    _check("act", 12.5, (-6.0, -3.0))
    _check("rope", 17.5, (8.0, 11.0))


def test_embedding_reaches_its_level():
    """Not targeted by the issue. PyTorch's index_select (aten/src/ATen/native/cuda/
    Indexing.cu) as it runs: up to 16 tokens ``indexSelectSmallIndex`` (each thread loops
    over the indices: per token an index load from its L1 line and a table load from DRAM,
    3 to 14 us at 1 to 16 tokens in the profile, 2.2 to 12.2 modelled), then
    ``indexSelectLargeIndex`` (each element an index load from the L2, a table load from
    DRAM and 3 integer divisions of up to 20 instructions each, CUDA Best Practices Guide,
    issued by all the SM's warps at once). Reached 12.0% / -11.6% (from 34.3% / -34.3% with
    one two-load chain for every token count and no index arithmetic). Per tokens (MAPE /
    bias): 1 25.7/-25.7, 2-16 16.6/-16.6, 24-64 17.5/-17.5, 96-512 6.1/-5.0, 768-4096
    8.8/-8.7. Left: a fixed ~0.8 us that the model does not account for (1 token: 3 us
    measured, 2.2 modelled; 24 tokens: 4 us, 2.5), and 768-4096 tokens -9%."""
    _check("emb", 12.5, (-13.0, -10.0))


def test_matmul_reaches_7_5_percent():
    """cuBLAS GEMMs as the GPU mapper runs them (issue 12 part 3; target 5% / |bias| 5%):
    each tile's K loop keeps its shared-memory stages' loads in flight against the loaded
    DRAM latency (Little's law: a narrow GEMM's few CTAs cannot, so split-K pays), the
    kernel starts up (1.2 us) and then waits for its first stage's load (0.8 us) with
    nothing else under way, later waves fill their pipelines and every wave writes its own
    output tiles, and a stage waits for the later of its math and its exponentially
    distributed data time; tiles are the library's power-of-two tiles (M=96 runs 128-row
    tiles), and split-K partials are summed by a second kernel as cuBLAS does
    (splitKreduce: its startup and fill, after a back-to-back gap). Reached 7.3% / -1.9%
    (from 18.4% / -17.7%; 7.8% / -2.9% while the first fill sat on the math side of the
    overlap and mostly vanished under a memory-bound kernel's stream), kernel time,
    uncalibrated. Per projection (MAPE / bias, first fill hidden -> serial): QKV 8.2/-4.4
    -> 7.6/-3.4, out-proj 10.3/-7.2 -> 9.0/-5.4, up/gate 5.3/-0.7 -> 5.3/-0.2, down
    7.4/+0.6 -> 7.1/+1.4. Per token range: 1-16 7.1/-5.4 -> 5.7/-3.1, 24-64 8.1/-1.7 ->
    7.4/-0.1, 96-256 11.5/-3.9 -> 11.3/-3.3, 384-1024 7.9/-2.5 -> 7.8/-2.1, 1536-4096
    4.6/-0.5 -> 4.6/-0.4. Per TP: 1 5.6/+0.3 -> 5.7/+0.7, 2 6.3/-0.7 -> 6.3/+0.0, 4
    8.0/-3.7 -> 7.2/-2.5, 8 11.4/-7.6 -> 9.8/-5.8. The tree now reads 7.3% / -2.3% (no
    GEMM change; QKV 7.8/-3.7, out-proj 9.1/-5.5, up/gate 5.4/-0.9, down 7.1/+1.0; tokens
    1-16 5.7/-3.1, 24-64 7.3/-0.2, 96-256 11.2/-4.0, 384-1024 8.0/-2.7, 1536-4096 4.9/-1.1;
    TP 1 5.9/+0.2, 2 6.4/-0.4, 4 7.3/-2.8, 8 9.8/-6.0).
    Tried and left out: a knee sharpened by the stages' buffering (a finite-buffer tandem
    queue, K = 2..8 buffered stages: 7.2-8.8%, bias -2.6 to -6.5%; the S-stage Erlang
    overlap derived in simulator/mapping/gpu.py, S = stages - 1: 8.3% / -5.9%, its
    max(c, m)-floored exponential variant 9.4% / -7.1%; both fit TP 1 at 48-128 tokens
    within ~4% where the rounded knee is +9-17% slow, but lose the TP 4-8 small weights,
    already too fast, and 192-256 tokens; TP 1-2 at 24-256 tokens 8.4/+1.9 -> 8.8/-6.9,
    TP 4-8 there 10.1/-6.1 -> 14.2/-14.0); a fill-the-SMs split-K rule as cuBLAS's heuristic
    might pick (7.0% / -1.2%, not a minimum over plans: it breaks the twice-the-batch
    law, see the gpu module docstring); the A100's 164 KiB
    shared-memory limit instead of the spec's 192 KiB L1/shared (7.2% / -0.7%, but the
    70B decode GEMVs +8%: fewer stages in flight); cuBLAS's smallest tiles as 32 or 64
    rows instead of the MMA's 16 (7.4% / -1.2%, 9.4% / +2.4%); a flat 1-2.5 us more on
    every GEMM up to 16-256 tokens (the profile's intercept, no mechanism: 6.7% at best);
    a short K loop's DRAM latency chain (whole round trips of the stages in flight, see
    the gpu module docstring), with the S-stage overlap: 7.3% / -3.2% counted once,
    6.9% / -2.5% with its first trip also in the fill, 7.0% / -1.2% at a full round's
    loaded latency per trip (TP 8 9.8/-6.0 -> 10.1/-6.5, 8.9/-5.2, 8.0/-3.8); it adds at
    most one DRAM latency per wave to the Little's-law stream, not the ~2.5 us below.
    The profile's times are whole microseconds (Kineto), +-0.5 us on a 6-7 us kernel.
    Left: (a) small weights (TP 4-8, < 50 MB, 1-64 tokens) still run ~1.5-2 us longer
    than the model (out-proj at TP 8, K = 512: 7 us measured, 5.3 modelled): the profile
    fits t = 4.5 us + weight / 1.69 TB/s from 4 MB to 940 MB, as if every small-M GEMM
    were two kernels (a split-K GEMM and its splitKreduce, 2.6-3.8 us in public traces),
    where the model's search finds the unsplit plan faster and cuBLAS's choice is not
    published; (b) cuBLAS's heuristics pick tiles the model's fastest-plan search does
    not, and the profile is not monotone in the tokens there (7B TP 1 QKV: 121 us at 192
    tokens, 112 at 256; out-proj at 256 tokens on TP 2-8 and 70B TP 8 down -21 to -34%, a
    step between 192 and 256 tokens; 70B TP 1 down at 96-128 tokens +31%): choosing,
    per case, whichever of the four tile shapes lands nearest the measurement would give
    4.5% (optimistic: the nearest of four also absorbs the profile's noise), so much of
    what is left is the choice, not the cost of a plan. The floor of the plan costs
    (experiments/validation/matmul_floor.py, each knob fitted to this table, nothing
    shipped): the S-stage overlap, a flat 0-3 us added to every GEMM and the A100's L2 feed
    at 0.8-1.0 of the spec's efficiency, all 24 combinations, reach at best 6.4% / +0.3%,
    with 96-256 tokens still 10.1% and 384-1024 tokens 7.8%; the oracle of the spec's five
    tile shapes 4.4%; a shared-memory bandwidth cap on small tiles (128 B/clk per SM:
    ldmatrix plus cp.async stores per warp layout; tried separately) 7.5% / 0.0%.
    No cost of a given plan closes the 5% target; the kernel cuBLAS picks at 96-1024
    tokens (not published; 70B TP 1 down-proj takes 536 us at 192 tokens and 535 at 256,
    as 128-row tiles padded to 256 rows would, and up/gate runs 167 TFLOP/s at 128 and at
    192 tokens, where the model's search prefers 64-row tiles: 909 us, 198 TFLOP/s) does."""
    _check("matmul", 7.5, (-3.5, 0.0))
