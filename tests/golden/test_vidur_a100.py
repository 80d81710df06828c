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
                "rope": Elementwise(fn="mul", numel=t * (q + kv), row=q + kv, dtype="fp16"),
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


def test_rmsnorm_reaches_10_percent():
    """vLLM's one-block-per-row RMSNorm: chains of dependent loads, in waves of 216 rows,
    its DRAM round trips queueing behind the kernel's DRAM traffic (M/M/1: chain plus
    traffic when every round trip is a DRAM one), its second pass's L2 round trips not.
    Reached 10.0% / +6.5% (from 35.8% / -32.1%; 11.0% / +9.5% with the whole chain added
    to the traffic), at the MAPE target, short of the bias target. Left: tokens 2-64 (one
    wave, 64 of the 168 cases) are predicted 4.6 us (7B) and 7.9 us (70B) against 4.0 and
    7.0 measured at the profiles' 1 us resolution (1 token: 5.0 and 8.0), +14% each: the
    kernel's fixed time (startup 1.2 us, first load and last store 0.8 us, spec estimates).
    Overlapping the write-backs of an L2-resident working set with the chain instead
    reached 8.2% / +4.5% but made a row kernel crossing half the L2 more than twice as
    slow for twice the rows (tests/property/test_larger_batch.py)."""
    _check("rmsnorm", 10.0, (0.0, 7.0))


def test_row_activation_and_rotary_kernels():
    """vLLM's silu_and_mul and rotary kernels as it runs them: one block per token over the
    op's ``row`` (d_ff / tp; q + k of a token), a dependent round trip per loop iteration
    (the rotary kernel's position id first). act reached 11.6% / -4.7% and rope 16.4% /
    +15.1% (from -56.6% and -36.0% as a vectorised grid, one round trip). Left: 70B TP1-2
    act (28 and 14 iterations a token) runs 12-13% longer than 0.6 us a round trip says;
    rope at 1-96 tokens 20-40% shorter (0.4 us an iteration measured), and the op counts a
    full-size second operand where the kernel reads one cos/sin row per token."""
    _check("act", 12.5, (-6.0, -3.0))
    _check("rope", 17.0, (12.0, 16.0))


def test_embedding_reaches_its_level():
    """Not targeted by the issue: emb -34% (-32% while the L2 round trip of each gather
    iteration queued behind the DRAM traffic). index_select's per-element index
    arithmetic (division and modulo of the linear index) is issue-bound beyond the two
    dependent loads modelled (1.5 us per iteration measured vs 0.8 us modelled)."""
    _check("emb", 35.0, (-35.0, -33.0))


def test_matmul_reaches_8_percent():
    """cuBLAS GEMMs as the GPU mapper runs them (issue 12 part 3; target 5% / |bias| 5%):
    each tile's K loop keeps its shared-memory stages' loads in flight against the loaded
    DRAM latency (Little's law: a narrow GEMM's few CTAs cannot, so split-K pays), every wave
    fills its pipeline and writes its own output tiles, the kernel starts up once (1.2 us),
    and a stage waits for the later of its math and its exponentially distributed data
    time; tiles are the library's power-of-two tiles (M=96 runs 128-row tiles), and split-K
    partials are summed by a second kernel as cuBLAS does (splitKreduce: its startup and
    fill, after a back-to-back gap). Reached 7.8% / -2.9% (from 18.4% / -17.7%; 8.1% / -4.4%
    with odd-sized balanced tiles and an in-kernel reduction), kernel time, uncalibrated.
    Per projection (MAPE / bias, 8.1% model -> now): QKV 8.7/-6.0 -> 8.2/-4.4, out-proj
    11.0/-8.8 -> 10.3/-7.2, up/gate 5.2/-1.9 -> 5.3/-0.7, down 7.5/-1.0 -> 7.4/+0.6. Per
    token range: 1-16 7.7/-6.9 -> 7.1/-5.4, 24-64 7.8/-3.9 -> 8.1/-1.7, 96-256 12.5/-7.5 ->
    11.5/-3.9, 384-1024 7.9/-2.8 -> 7.9/-2.5, 1536-4096 4.6/-0.4 -> 4.6/-0.5. Per TP: 1
    5.4/-1.0 -> 5.6/+0.3, 2 6.2/-2.3 -> 6.3/-0.7, 4 8.6/-5.2 -> 8.0/-3.7, 8 12.1/-9.1 ->
    11.4/-7.6.
    Left: (a) small weights (TP 4-8, < 50 MB, 1-64 tokens) run ~2.5 us longer than the
    model: the profile fits t = 4.5 us + weight / 1.69 TB/s from 4 MB to 940 MB, while the
    model's GEMM floor is 2 us (startup and fill, as a streaming kernel's; tiny cuBLAS GEMMs
    measure 2-3.6 us elsewhere, so it is not a per-kernel constant). A split-K reduction
    kernel (2.6-3.8 us in public traces) would account for it, but the model's search finds
    the unsplit plan faster for these shapes and cuBLAS's choice is not published;
    (b) at 96-384 tokens cuBLAS's heuristics pick tiles the model's fastest-plan search
    does not (single cases off by 20-30% either way: 70B TP1 down at 96-128 tokens +31%,
    near memory-bound in the profile; out-proj at 256 tokens on every TP and 70B TP8 down
    -21 to -34%, a step in the profile between 192 and 256 tokens)."""
    _check("matmul", 8.0, (-5.0, 0.0))
