"""Benchmark of the simulator itself (wall-clock; run on a quiet machine, compare side by side).

Times, in one process:
1. ``simulate`` of Llama-2-70B decode (batch 16, context 4096) on dgx-h100 (tensor-parallel 8),
2. ResNet-50 (batch 32) on every shipped part,
3. 10,000 single-op predictions (``predict_op`` on a cold cost cache, the same path as
   ``hwsim ops``), and the same 10,000 through the ``hwsim ops`` command,
4. scale: graphs of 250,000, 500,000 and 1,000,000 ops, each in a fresh process (its peak
   resident memory and wall time; bytes per op and time per op side by side),
5. sweeps of 1,000 points on one system, side by side: fresh ``simulate`` calls against one
   :class:`~simulator.predict.Predictor` -- a serving-like mix of decode steps (8 batch sizes
   x 12 context lengths, drawn at random: points recur, as in a serving simulation or a
   capacity search) and 1,000 distinct points (context 1..1000: only the op cache helps),
and writes ``results.json`` and ``results.md`` here (or to --out).

    python experiments/bench/run.py            # everything (a few minutes)
    python experiments/bench/run.py --only scale,sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _time(fn, repeat: int) -> dict:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "n": repeat}


def random_ops(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice(["matmul", "matmul", "matmul", "softmax", "gelu", "layernorm",
                        "attention"])
        dt = rng.choice(["bf16", "fp16", "fp8", "int8", "fp32"])
        if k == "matmul":
            out.append({"kind": k, "m": rng.choice([1, 8, 64, 512, 4096]) * rng.randint(1, 4),
                        "n": 128 * rng.randint(1, 96), "k": 128 * rng.randint(1, 96),
                        "dtype": dt})
        elif k == "attention":
            out.append({"kind": k, "batch": rng.randint(1, 16), "heads": 32, "kv_heads": 8,
                        "head_dim": 128, "seq": 1, "context": 256 * rng.randint(1, 32),
                        "phase": "decode", "dtype": "bf16"})
        elif k == "gelu":
            out.append({"kind": k, "numel": 1024 * rng.randint(1, 4096), "dtype": dt})
        else:
            out.append({"kind": k, "rows": 64 * rng.randint(1, 64),
                        "cols": 256 * rng.randint(1, 32), "dtype": dt})
    return out


_SCALE_CHILD = """
import json, resource, sys, time
from simulator.arch.loader import load_arch
from simulator.predict import Predictor
from workloads.graph import WorkloadGraph
from workloads.ops import Elementwise, MatMul, Norm
n = int(sys.argv[1])
block = WorkloadGraph("block")
prev = []
for i in range(10):  # a transformer-like mix of distinct GEMMs, pointwise ops and norms
    op = (MatMul(m=64, n=256 + i, k=256, weight=True) if i % 3 == 0 else
          Elementwise(fn="add", numel=4096 + i) if i % 3 == 1 else
          Norm(norm="rmsnorm", rows=16, cols=256 + i))
    prev = [block.add_op(f"op{i}", op, prev)]
g = WorkloadGraph("scale", "forward")
g.add_repeat("layers", block, n // 10, tags=("layers",))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
r = Predictor(load_arch("h100-sxm")).predict(g)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ops": len(r.records), "wall_s": dt, "peak_rss_bytes": rss * 1024,
                  "rss_growth_bytes": (rss - rss0) * 1024, "latency_s": r.latency_s}))
"""


def scale(sizes: list[int]) -> dict:
    """Each size in a fresh interpreter, so peak RSS is this run's own."""
    out = {}
    for n in sizes:
        p = subprocess.run([sys.executable, "-c", _SCALE_CHILD, str(n)], check=True,
                           capture_output=True, text=True)
        d = json.loads(p.stdout.strip().splitlines()[-1])
        d["bytes_per_op"] = d["rss_growth_bytes"] / d["ops"]
        d["us_per_op"] = d["wall_s"] / d["ops"] * 1e6
        out[str(n)] = d
        print(f"scale {n}: {d}", file=sys.stderr)
    first, last = out[str(sizes[0])], out[str(sizes[-1])]
    out["time_ratio_largest_to_smallest"] = last["wall_s"] / first["wall_s"]
    out["size_ratio"] = sizes[-1] / sizes[0]
    return out


def sweep(points: int = 1000, seed: int = 0) -> dict:
    """Fresh ``simulate`` per point vs one Predictor (``run``: op cache + plan results)."""
    from simulator import simulate
    from simulator.arch.loader import load_arch
    from simulator.plan import make_plan
    from simulator.predict import Predictor

    rng = random.Random(seed)
    mix = [(rng.choice([1, 2, 4, 8, 16, 32]), 256 * rng.randint(1, 12))
           for _ in range(points)]
    distinct = [(8, 1 + i) for i in range(points)]
    res = {}
    for label, pts in (("serving_mix", mix), ("distinct_contexts", distinct)):
        system = load_arch("h100-sxm")
        simulate("llama2-7b", "h100-sxm", phase="decode", batch=1, context=1)  # warm imports
        t0 = time.perf_counter()
        fresh = [simulate("llama2-7b", "h100-sxm", phase="decode", batch=b, context=c).latency_s
                 for b, c in pts]
        t_fresh = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = Predictor(system)
        cached = [pred.run(make_plan("llama2-7b", system, phase="decode", batch=b,
                                     context=c)).latency_s for b, c in pts]
        t_pred = time.perf_counter() - t0
        assert fresh == cached, "the predictor must give the same numbers"
        res[label] = {"points": len(pts), "distinct": len(set(pts)), "fresh_s": t_fresh,
                      "predictor_s": t_pred, "speedup": t_fresh / t_pred,
                      "cache": pred.cache_info()}
        print(f"sweep {label}: {res[label]}", file=sys.stderr)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", type=int, default=10_000)
    ap.add_argument("--only", default="simulate,ops,scale,sweep",
                    help="comma-separated: simulate, ops, scale, sweep")
    ap.add_argument("--scale-sizes", default="250000,500000,1000000")
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    out = Path(a.out)
    prev = out / "results.json"
    res_all: dict = json.loads(prev.read_text()) if prev.exists() else {}
    if "scale" in only:
        res_all["scale"] = scale([int(x) for x in a.scale_sizes.split(",")])
    if "sweep" in only:
        res_all["sweep"] = sweep()
    if not only & {"simulate", "ops"}:
        _write(out, res_all, a.ops)
        return 0

    from simulator import simulate
    from simulator.api import predict_op
    from simulator.arch.loader import list_arch_files, load_arch
    from simulator.errors import HwsimError
    from workloads.ops import op_from_dict

    res: dict = {**res_all, "python": sys.version.split()[0], "machine": platform.machine(),
                 "cpus": os.cpu_count()}
    r70 = simulate("llama2-70b", "dgx-h100", phase="decode", batch=16, context=4096)
    res["llama2_70b_decode_dgx_h100"] = _time(
        lambda: simulate("llama2-70b", "dgx-h100", phase="decode", batch=16, context=4096),
        a.repeat) | {"ops": len(r70.records), "predicted_latency_s": r70.latency_s}
    print("llama2-70b decode on dgx-h100:", res["llama2_70b_decode_dgx_h100"], file=sys.stderr)

    parts = list(list_arch_files())
    per_part = {}

    def all_parts():
        for p in parts:
            t0 = time.perf_counter()
            try:
                simulate("resnet50", p, batch=32, dtype="int8" if p in (
                    "alveo-u280", "eyeriss", "systolic-32x32", "tpu-v1") else "bf16")
                per_part[p] = time.perf_counter() - t0
            except HwsimError as e:
                per_part[p] = f"refused: {str(e)[:60]}"

    res["resnet50_all_parts"] = _time(all_parts, a.repeat) | {"parts": len(parts),
                                                              "per_part_s": per_part}
    print("resnet50 on all parts:", res["resnet50_all_parts"]["median_s"], file=sys.stderr)

    specs = random_ops(a.ops)
    ops = [op_from_dict(d) for d in specs]
    system = load_arch("h100-sxm")

    def predict_all():
        from simulator.mapping.registry import cost_op
        for op in ops:  # cold: no cache, every op costed from scratch
            cost_op(op, system.device)

    t = _time(predict_all, a.repeat)
    res["predict_10k_ops_api"] = t | {"ops": len(ops), "per_op_us": t["median_s"] / len(ops) * 1e6}
    predict_op(ops[0], system)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for d in specs:
            f.write(json.dumps(d) + "\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "simulator.cli", "ops", "--input", f.name, "--arch",
                    "h100-sxm", "--json"], check=True, stdout=subprocess.DEVNULL)
    res["predict_10k_ops_cli_s"] = time.perf_counter() - t0
    os.unlink(f.name)
    print("10k ops:", res["predict_10k_ops_api"], res["predict_10k_ops_cli_s"], file=sys.stderr)

    _write(out, res, a.ops)
    return 0


def _write(out: Path, res: dict, n_ops: int) -> None:
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = [
        "| benchmark | median | min | max |", "|---|---|---|---|",
        *[f"| {k} | {v['median_s']:.3f} s | {v['min_s']:.3f} s | {v['max_s']:.3f} s |"
          for k, v in res.items() if isinstance(v, dict) and "median_s" in v],
    ]
    if "predict_10k_ops_cli_s" in res:
        md.append(f"| hwsim ops CLI, {n_ops} ops (one run, incl. interpreter start) | "
                  f"{res['predict_10k_ops_cli_s']:.3f} s | | |")
    if "scale" in res:
        md += ["", "| graph ops | wall | us/op | peak RSS | RSS growth per op |",
               "|---|---|---|---|---|"]
        md += [f"| {int(k):,} | {v['wall_s']:.2f} s | {v['us_per_op']:.1f} | "
               f"{v['peak_rss_bytes'] / 2**20:.0f} MiB | {v['bytes_per_op']:.0f} B |"
               for k, v in res["scale"].items() if isinstance(v, dict)]
        md.append(f"\nTime ratio largest/smallest: {res['scale']['time_ratio_largest_to_smallest']:.2f}"
                  f" for a {res['scale']['size_ratio']:.0f}x larger graph (linear = "
                  f"{res['scale']['size_ratio']:.0f}).")
    if "sweep" in res:
        md += ["", "| sweep of 1,000 points (llama2-7b decode, h100-sxm) | distinct | fresh "
               "simulate | one Predictor | speed-up |", "|---|---|---|---|---|"]
        md += [f"| {k} | {v['distinct']} | {v['fresh_s']:.2f} s | {v['predictor_s']:.2f} s | "
               f"{v['speedup']:.1f}x |" for k, v in res["sweep"].items()]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
