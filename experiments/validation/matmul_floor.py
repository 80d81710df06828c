"""How low can the GEMM model's error on the public A100 profiles go by changing only the cost
of a plan? A sensitivity study behind issue 12's matmul target (5% MAPE, |bias| <= 5%).

The cases are those of ``tests/golden/test_vidur_a100.py`` (Llama-2 7B and 70B projections,
21 token counts x tensor parallel 1/2/4/8: 672 Kineto kernel times of an A100 80GB, fp16;
data and license in ``experiments/data/vidur-a100``). The shipped model is run unchanged and
then with knobs the shipped model does not have, each applied in this process only
(monkeypatched, never written to the model):

- ``erlang``: the S-stage overlap of a K loop, a stage's data the sum of the S loads ahead of
  it (Erlang-S), hidden by the math of the S stages in flight; ``c + m [Q(S+1, Sc/m) - (c/m)
  Q(S, Sc/m)]`` (Q the regularised upper incomplete gamma), the shipped ``c + m exp(-c/m)``
  at S = 1, ``max(c, m)`` as S grows; here S = 4 for every GEMM (the A100's 5-6 stages less
  the one being consumed);
- ``fixed``: a flat time added to every GEMM kernel (the profile's 1-16-token intercept is
  ~4.5 us against the model's 2.0 us, with no mechanism found for the difference);
- ``l2``: the L2 -> SM operand feed at a fraction of the spec's achievable L2 bandwidth;
- ``oracle``: per case, whichever of the spec's tile shapes (each forced alone) lands nearest
  the measurement: what a perfect guess of cuBLAS's kernel choice would give, optimistic
  (the nearest of several also absorbs the profile's 1 us rounding).

Each knob is fitted to this very table, so none is a model; the point is the floor: if no
combination reaches the target, the missing piece is not the cost of a plan. Run:
``python experiments/validation/matmul_floor.py [--out FILE]`` (about a minute), which writes
``matmul_floor.md`` next to this file by default.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from scipy.special import gammaincc

import simulator.mapping.gpu as gpu
from simulator.arch.loader import load_arch
from simulator.frozen import FrozenMap
from simulator.mapping.base import MapOptions
from simulator.mapping.gpu import kernel_time
from simulator.mapping.registry import cost_op
from workloads.ops import MatMul

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "vidur-a100"
TOKENS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
          3072, 4096)
PROJECTIONS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
Case = tuple[str, int, int, str, MatMul, float]  # model, tp, tokens, projection, op, measured s


def cases() -> list[Case]:
    """The 672 projection GEMMs of the Vidur profiles with their median kernel time."""
    out: list[Case] = []
    for model in ("7b", "70b"):
        with open(DATA / f"llama2-{model}_mlp.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        by: dict[tuple[int, int], list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            by[(int(r["num_tensor_parallel_workers"]), int(r["num_tokens"]))].append(r)
        r0 = rows[0]
        d, h, kvh = int(r0["n_embd"]), int(r0["n_head"]), int(r0["n_kv_head"])
        ff, hd = int(r0["n_expanded_embd"]), d // h
        for (tp, t), rs in sorted(by.items()):
            if t not in TOKENS:
                continue
            q, kv = h * hd // tp, kvh * hd // tp
            shapes = {"attn_pre_proj": (q + 2 * kv, d), "attn_post_proj": (d, d // tp),
                      "mlp_up_proj": (2 * ff // tp, d), "mlp_down_proj": (d, ff // tp)}
            for name in PROJECTIONS:
                n, k = shapes[name]
                meas = statistics.median(float(r[f"time_stats.{name}.median"]) for r in rs)
                out.append((model, tp, t, name, MatMul(m=t, n=n, k=k, weight=True,
                                                       dtype="fp16"), meas * 1e-3))
    return out


def _erlang(s: int) -> Callable[[float, float], float]:
    def overlap(math_s: float, data_s: float) -> float:
        if data_s <= 0:
            return math_s
        r = math_s / data_s
        return math_s + data_s * (gammaincc(s + 1, s * r) - r * gammaincc(s, s * r))
    return overlap


@contextlib.contextmanager
def knobs(erlang: int = 1, fixed_s: float = 0.0, l2: float = 1.0) -> Iterator[None]:
    """The shipped model with the study's knobs, restored on exit."""
    saved = (gpu._overlap, gpu.GemmPlan.busy_s, gpu._gpu)
    busy = gpu.GemmPlan.busy_s
    make = gpu._gpu
    try:
        if erlang > 1:
            gpu._overlap = _erlang(erlang)  # type: ignore[assignment]
        if fixed_s:
            gpu.GemmPlan.busy_s = property(  # type: ignore[method-assign,assignment]
                lambda self: busy.fget(self) + fixed_s)
        if l2 != 1.0:
            gpu._gpu = lambda *a, **k: (  # type: ignore[assignment]
                lambda hw: replace(hw, feed_bw=hw.feed_bw * l2))(make(*a, **k))
        yield
    finally:
        gpu._overlap, gpu.GemmPlan.busy_s, gpu._gpu = saved  # type: ignore[method-assign]


def stats(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """(MAPE %, bias %) of (measured, predicted) pairs; bias > 0: predicted too slow."""
    e = [(p - m) / m for m, p in pairs]
    return 100 * sum(map(abs, e)) / len(e), 100 * sum(e) / len(e)


def predict(cs: list[Case], device, tiles=None) -> list[float]:
    dev = device if tiles is None else replace(
        device, params=FrozenMap({**device.params, "tile_shapes": (tuple(tiles),)}))
    return [kernel_time(cost_op(op, dev, MapOptions())) for *_, op, _ in cs]


def _by_range(cs: list[Case], pred: list[float]) -> str:
    out = []
    for lo, hi in ((1, 16), (24, 64), (96, 256), (384, 1024), (1536, 4096)):
        sel = [(c[5], p) for c, p in zip(cs, pred) if lo <= c[2] <= hi]
        out.append(f"{stats(sel)[0]:.1f}")
    return " / ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "matmul_floor.md")
    a = ap.parse_args(argv)
    cs = cases()
    device = load_arch("a100-sxm-80gb").device
    rows = []
    grid = itertools.product((1, 4), (0.0, 1e-6, 2e-6, 3e-6), (1.0, 0.9, 0.8))
    for erl, fixed, l2 in grid:
        with knobs(erl, fixed, l2):
            pred = predict(cs, device)
        mape, bias = stats([(c[5], p) for c, p in zip(cs, pred)])
        rows.append((mape, bias, erl, fixed, l2, _by_range(cs, pred)))
    rows.sort()
    base = next(r for r in rows if r[2:5] == (1, 0.0, 1.0))
    per_tile = [predict(cs, device, t) for t in device.params["tile_shapes"]]
    oracle = [min((p[i] for p in per_tile), key=lambda x, m=c[5]: abs(x - m))
              for i, c in enumerate(cs)]
    o_mape, o_bias = stats([(c[5], p) for c, p in zip(cs, oracle)])
    mono = []
    series: dict[tuple[str, int, str], dict[int, float]] = defaultdict(dict)
    for c in cs:
        series[(c[0], c[1], c[3])][c[2]] = c[5]
    for key, s in series.items():
        ts = sorted(s)
        mono += [(key, x, y, s[x], s[y]) for x, y in zip(ts, ts[1:])
                 if x >= 64 and s[y] < 0.97 * s[x]]
    lines = [
        "# The GEMM model's floor on the Vidur A100 profiles", "",
        "Produced by `python experiments/validation/matmul_floor.py` (its docstring says what "
        "each knob is). 672 projection GEMMs, kernel time, uncalibrated; MAPE / bias in %, "
        "per token range 1-16 / 24-64 / 96-256 / 384-1024 / 1536-4096 MAPE. Target: 5% / "
        "+-5%.", "",
        f"Shipped model: **{base[0]:.1f}% / {base[1]:+.1f}%** ({base[5]}).", "",
        "Every knob combination, best first:", "",
        "| MAPE | bias | overlap | fixed per GEMM | L2 feed | MAPE by tokens |",
        "|---|---|---|---|---|---|"]
    for mape, bias, erl, fixed, l2, rng in rows:
        lines.append(f"| {mape:.1f}% | {bias:+.1f}% | "
                     f"{'Erlang S=4' if erl > 1 else 'shipped (S=1)'} | {fixed * 1e6:g} us | "
                     f"x{l2:g} | {rng} |")
    lines += [
        "", f"Oracle of the spec's {len(per_tile)} tile shapes (per case the nearest): "
        f"**{o_mape:.1f}% / "
        f"{o_bias:+.1f}%** ({_by_range(cs, oracle)}).", "",
        f"Cases where more tokens ran more than 3% faster (from 64 tokens up): {len(mono)}; no "
        "model that keeps the law 'more work is never faster' can follow them:", ""]
    lines += [f"- {m} TP {tp} {p}: {a_ * 1e6:.0f} us at {x} tokens, {b_ * 1e6:.0f} us at {y}"
              for (m, tp, p), x, y, a_, b_ in sorted(mono, key=lambda r: r[4] / r[3])]
    lines += ["", "No cost of a given plan reaches the target; the kernel cuBLAS picks at "
              "96-1024 tokens (not published) is what is left.", ""]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
