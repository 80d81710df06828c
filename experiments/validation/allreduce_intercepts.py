"""Where the NCCL model's all-reduce bias on the public DGX A100 profiles comes from: a line
``t = a + bytes / B`` fitted to the measured and to the predicted kernel times, per GPU
count and size range, beside the same harness's in-node send/recv. Behind issue 12's
all-reduce target (|bias| <= 5%).

Data: ``experiments/data/vidur-a100`` (Kineto kernel times of ``torch.distributed``
all-reduce and send/recv, fp16, medians; source and license in its README). Predictions:
hwsim's uncalibrated kernel time on ``dgx-a100`` (NCCL's algorithms, protocols and
constants, :mod:`simulator.network.nccl`). ``busbw`` is NCCL's bus bandwidth, ``2 (p - 1) /
p`` bytes per second of the line's slope for all-reduce.

Run: ``python experiments/validation/allreduce_intercepts.py [--out FILE]`` (about 20 s);
writes ``allreduce_intercepts.md`` next to this file by default.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulator.arch.loader import load_arch
from simulator.mapping.gpu import kernel_time
from simulator.predict import Predictor
from workloads.ops import Collective

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "vidur-a100"
KIB, MIB = 2**10, 2**20
RANGES = ((64 * KIB, MIB), (MIB, 4 * MIB), (4 * MIB, 16 * MIB), (16 * MIB, 128 * MIB))


def profile(name: str, col: str, workers: int, per_node: int) -> dict[int, float]:
    """{bytes: median measured s} of one profile at ``workers`` GPUs, ``per_node`` a node."""
    out: dict[int, list[float]] = defaultdict(list)
    with open(DATA / name, newline="") as f:
        for r in csv.DictReader(f):
            if (int(r["num_workers"]), int(r["devices_per_node"])) == (workers, per_node):
                out[int(r["size"])].append(float(r[col]) * 1e-3)
    return {n: statistics.median(v) for n, v in out.items()}


def fit(sizes: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """(intercept s, bytes per s) of the least-squares line through the points."""
    slope, icept = np.polyfit(sizes, times, 1)
    return float(icept), float(1.0 / slope) if slope > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "allreduce_intercepts.md")
    a = ap.parse_args(argv)
    pred = Predictor(load_arch("dgx-a100"))
    lines = ["# All-reduce inside one DGX A100: the line fits behind the bias", "",
             "Produced by `python experiments/validation/allreduce_intercepts.py` (see its "
             "docstring). Intercept `a` in us and bus bandwidth in GB/s of a least-squares "
             "line through the measured and the predicted kernel times.", "",
             "| GPUs | sizes | cases | measured a | measured busbw | model a | model busbw "
             "| bias |", "|---|---|---|---|---|---|---|---|"]
    for p in (2, 4, 8):
        prof = profile("dgx_all_reduce.csv", "time_stats.all_reduce.median", p, p)
        for lo, hi in RANGES:
            ns = np.array(sorted(n for n in prof if lo <= n < hi), dtype=float)
            if len(ns) < 3:
                continue
            meas = np.array([prof[int(n)] for n in ns])
            model = np.array([kernel_time(pred.cost(Collective(
                collective="allreduce", bytes=float(n), devices=p, dtype="fp16"),
                tuple(range(p)))) for n in ns])
            (ma, mb), (pa, pb) = fit(ns, meas), fit(ns, model)
            f = 2 * (p - 1) / p
            bias = 100 * float(np.mean((model - meas) / meas))
            lines.append(f"| {p} | {lo // KIB:,}-{hi // KIB:,} KiB | {len(ns)} | "
                         f"{ma * 1e6:.1f} | {f * mb / 1e9:.0f} | {pa * 1e6:.1f} | "
                         f"{f * pb / 1e9:.0f} | {bias:+.1f}% |")
    lines += ["", "The same harness's send/recv between two GPUs of a node:", "",
              "| sizes | cases | measured a | measured GB/s |", "|---|---|---|---|"]
    sr = profile("dgx_send_recv.csv", "time_stats.send_recv.median", 2, 2)
    for lo, hi in ((KIB, 64 * KIB),) + RANGES:
        ns = np.array(sorted(n for n in sr if lo <= n < hi), dtype=float)
        if len(ns) < 3:
            continue
        ma, mb = fit(ns, np.array([sr[int(n)] for n in ns]))
        lines.append(f"| {lo // KIB:,}-{hi // KIB:,} KiB | {len(ns)} | {ma * 1e6:.1f} | "
                     f"{mb / 1e9:.0f} |")
    lines += ["", "Reading: from 4 MiB up the 2- and 4-GPU all-reduces carry an intercept of "
              "about 42-57 us where the model (NCCL's tuner constants and its kernels' "
              "handoffs) has 18-37, with the bus bandwidths close; at 8 GPUs the two agree. "
              "The send/recv kernels of the same harness fit 11-17 us from 64 KiB to 16 MiB, "
              "and NCCL's published "
              "internals give about 10, so the extra ~25 us at 2 GPUs has no source to model "
              "it from; below 1 MiB the kernel times carry the host (each rank launches from "
              "Python, a kernel waits for the last rank).", ""]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
