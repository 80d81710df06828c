"""Benchmark of the simulator itself (wall-clock; run on a quiet machine, compare side by side).

Times, in one process:
1. ``simulate`` of Llama-2-70B decode (batch 16, context 4096) on dgx-h100 (tensor-parallel 8),
2. ResNet-50 (batch 32) on every shipped part,
3. 10,000 single-op predictions (``predict_op`` on a cold cost cache, the same path as
   ``hwsim ops``), and the same 10,000 through the ``hwsim ops`` command,
and writes ``results.json`` and ``results.md`` here (or to --out).

    python experiments/bench/run.py
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", type=int, default=10_000)
    a = ap.parse_args(argv)

    from simulator import simulate
    from simulator.api import predict_op
    from simulator.arch.loader import list_arch_files, load_arch
    from simulator.errors import HwsimError
    from workloads.ops import op_from_dict

    res: dict = {"python": sys.version.split()[0], "machine": platform.machine(),
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

    out = Path(a.out)
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    md = [
        "| benchmark | median | min | max |", "|---|---|---|---|",
        *[f"| {k} | {v['median_s']:.3f} s | {v['min_s']:.3f} s | {v['max_s']:.3f} s |"
          for k, v in res.items() if isinstance(v, dict) and "median_s" in v],
        f"| hwsim ops CLI, {a.ops} ops (one run, incl. interpreter start) | "
        f"{res['predict_10k_ops_cli_s']:.3f} s | | |",
    ]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
