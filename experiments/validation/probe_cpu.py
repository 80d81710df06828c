"""Micro-probes of the host CPU behind the structural parameters of ``cpu-host``.

The validation suite measures whole ops; these probes isolate one mechanism each, so the
parameters of the CPU mapper that are not efficiencies (write-allocate, page-fault cost of
fresh allocations, per-core bandwidth, GEMV threading, the skinny-GEMM path, the cost of each
transcendental function) come from a measurement of that mechanism and not from a fit to the
suite. Run on an idle machine::

    python experiments/validation/probe_cpu.py --out experiments/validation/data/cpu-host-probe.json

Each probe prints one line; the JSON keeps every number and the derived parameters, which
``arch_specs/cpu/cpu-host.yaml`` cites.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 2**20


def _time(fn: Callable[[], Any], min_s: float = 0.3, min_reps: int = 5) -> float:
    """Median seconds of ``fn`` after two warm-up calls."""
    fn()
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_s or len(times) < min_reps:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e9)
    return statistics.median(times)


def _rotating(tensors: list[Any], fn: Callable[[Any], Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def call() -> Any:
        state["i"] = (state["i"] + 1) % len(tensors)
        return fn(tensors[state["i"]])
    return call


def probe(threads: int) -> dict[str, Any]:
    import torch

    from simulator.arch.loader import load_arch
    from workloads.ops import ELEMENTWISE_FNS

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    dev = load_arch("cpu-host").device
    out: dict[str, Any] = {"threads": threads, "torch": torch.__version__,
                           "machine": platform.processor() or platform.machine()}

    # 1. DRAM bandwidth: a read-only reduction over rotated 128 MiB buffers, 1 and all threads
    bufs = [torch.rand(32 * MiB) for _ in range(3)]               # 128 MiB each
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        t = _time(_rotating(bufs, torch.sum))
        out[f"read_GBps_{n}t"] = bufs[0].nbytes / t / 1e9
        print(f"DRAM read, {n} thread(s): {out[f'read_GBps_{n}t']:.1f} GB/s", flush=True)
    torch.set_num_threads(threads)
    dst = [torch.empty_like(b) for b in bufs]
    pairs = list(zip(bufs, dst))
    t = _time(_rotating(pairs, lambda p: p[1].copy_(p[0])))
    out["copy_s_128MiB"] = t
    out["copy_GBps_counted_2x"] = 2 * bufs[0].nbytes / t / 1e9
    out["copy_GBps_counted_3x"] = 3 * bufs[0].nbytes / t / 1e9
    print(f"copy into existing buffers: {out['copy_GBps_counted_2x']:.1f} GB/s counting read + "
          f"write, {out['copy_GBps_counted_3x']:.1f} GB/s with the write-allocate read",
          flush=True)

    # 2. page faults: add with a fresh 64 MiB output vs into a preallocated one
    a = [torch.rand(16 * MiB) for _ in range(2)]
    b = [torch.rand(16 * MiB) for _ in range(2)]
    pre = torch.empty(16 * MiB)
    fresh = _time(_rotating(list(zip(a, b)), lambda p: torch.add(p[0], p[1])))
    into = _time(_rotating(list(zip(a, b)), lambda p: torch.add(p[0], p[1], out=pre)))
    out["add_64MiB_fresh_s"], out["add_64MiB_into_s"] = fresh, into
    out["page_fault_GBps_total"] = 64 * MiB / max(fresh - into, 1e-9) / 1e9
    print(f"fresh 64 MiB output: +{(fresh - into) * 1e3:.1f} ms -> page faults at "
          f"{out['page_fault_GBps_total']:.2f} GB/s ({threads} threads)", flush=True)
    small = [torch.rand(2 * MiB) for _ in range(2)]                # 8 MiB: below 32 MiB
    f_small = _time(_rotating(small, lambda x: torch.add(x, x)))
    i_small = _time(_rotating(small, lambda x: torch.add(x, x, out=small[0])))
    out["add_8MiB_fresh_over_into"] = f_small / i_small
    print(f"fresh 8 MiB output (below the mmap threshold): {f_small / i_small:.2f}x the "
          "preallocated time", flush=True)

    # 3. transcendental cost on cache-resident data (64K elements, 256 KiB), per element
    vpeak, _ = dev.peak(torch_dtype_name(), "vector")
    veff = float(dev.params.get("vector_efficiency", 0.6))
    x = torch.rand(1 << 16) * 4 - 2
    fns: dict[str, Callable[[Any], Any]] = {
        "relu": torch.relu, "exp": torch.exp, "tanh": torch.tanh, "erf": torch.erf,
        "rsqrt": lambda t: torch.rsqrt(t.abs() + 1), "sqrt": lambda t: torch.sqrt(t.abs()),
        "gelu": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
        "silu": torch.nn.functional.silu,
    }
    per_elem = {k: _time(lambda f=f: f(x), min_s=0.2) / x.numel() for k, f in fns.items()}
    out["ns_per_element"] = {k: v * 1e9 for k, v in per_elem.items()}
    base = per_elem["relu"]
    special = {}
    for k in ("exp", "tanh", "erf", "rsqrt", "sqrt"):
        special[k] = max(1.0, (per_elem[k] - base) * vpeak * veff)
    # gelu (tanh form) and silu as the ops count them: vector FLOPs + one special
    for k, fn_special in (("gelu", "tanh"), ("silu", "exp")):
        vec = ELEMENTWISE_FNS[k][1]
        special[f"{fn_special}_from_{k}"] = max(1.0, (per_elem[k] - base) * vpeak * veff - vec)
    out["special_cost_vector_flops"] = special
    print("ns/element: " + ", ".join(f"{k} {v * 1e9:.2f}" for k, v in per_elem.items()),
          flush=True)
    print("special cost (vector FLOPs at the spec's vector rate): "
          + ", ".join(f"{k} {v:.0f}" for k, v in special.items()), flush=True)

    # 3b. max pooling, NCHW (ResNet's 3x3/2 stem pool): cycles per window element
    unit = max(dev.units("vector") or dev.compute, key=lambda u: u.count)
    pool_in = [torch.rand(1, 64, 112, 112) for _ in range(16)]          # 3.2 MB each
    t = _time(_rotating(pool_in, lambda x: torch.nn.functional.max_pool2d(x, 3, 2, 1)))
    window = 64 * 56 * 56 * 9
    out["maxpool_s"] = t
    out["maxpool_cycles_per_window_element"] = t * unit.clock_hz * threads / window
    print(f"max_pool2d 64x112x112 3x3/2: {t * 1e3:.2f} ms = "
          f"{out['maxpool_cycles_per_window_element']:.1f} cycles per window element "
          f"({threads} threads at {unit.clock_hz / 1e9:.2f} GHz)", flush=True)

    # 4. GEMM over the activation rows M (x @ W^T, K = N = 2048, 3 rotated 16 MiB weights)
    k = n = 2048
    ws = [torch.randn(n, k) for _ in range(3)]
    peak, _ = dev.peak(torch_dtype_name(), "matrix")
    sweep = {}
    for m in (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 512):
        xm = torch.randn(m, k)
        t = _time(_rotating(ws, lambda w, xm=xm: torch.nn.functional.linear(xm, w)))
        sweep[m] = {"s": t, "gflops": 2 * m * n * k / t / 1e9, "weight_GBps": k * n * 4 / t / 1e9,
                    "fraction_of_peak": 2 * m * n * k / t / peak}
        print(f"linear M={m:4d}: {t * 1e3:7.3f} ms {sweep[m]['gflops']:6.1f} GFLOP/s "
              f"({sweep[m]['fraction_of_peak']:.0%} of peak), weights {sweep[m]['weight_GBps']:.1f} GB/s",
              flush=True)
    out["gemm_m_sweep"] = sweep
    # batched GEMVs (one weight each): as many threads as GEMVs
    bw = [torch.randn(8, k, n) for _ in range(2)]
    xv = torch.randn(8, 1, k)
    t = _time(_rotating(bw, lambda w: torch.bmm(xv, w)))
    out["batched_gemv_GBps"] = bw[0].nbytes / t / 1e9
    print(f"8 batched GEMVs: {out['batched_gemv_GBps']:.1f} GB/s", flush=True)
    return out


def torch_dtype_name() -> str:
    return "fp32"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = ap.parse_args()
    from simulator.arch.host import affinity_count
    threads = args.threads or affinity_count()
    res = probe(threads)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
