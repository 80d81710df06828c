"""``hwsim train``: the command-line face of :func:`simulator.train.train` (thin)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from simulator.units import format_quantity as fq

__all__ = ["add_train_parser"]


def add_train_parser(sub: Any, pos_int, nonneg_int, check_out) -> None:
    p = sub.add_parser(
        "train", help="one training step of a parallel layout: step time, MFU, memory, comm",
        description="A training step (forward, backward, optimizer) over --tp x --pp x --dp "
                    "(or --ep) devices: GPipe or 1F1B pipeline schedules, gradient "
                    "accumulation, ZeRO 1-3, sequence parallelism and recomputation.")
    p.add_argument("--workload", default="llama2-7b")
    p.add_argument("--arch", default="dgx-a100", help="part or node system (default dgx-a100)")
    p.add_argument("--nodes", type=pos_int, default=None,
                   help="nodes of the system spec's devices (default: one)")
    p.add_argument("--tp", type=pos_int, default=None)
    p.add_argument("--pp", type=pos_int, default=1)
    p.add_argument("--dp", type=pos_int, default=None)
    p.add_argument("--ep", type=pos_int, default=1)
    p.add_argument("--zero", type=nonneg_int, default=0, choices=(0, 1, 2, 3),
                   help="ZeRO stage over the data-parallel replicas (3: weights sharded too)")
    p.add_argument("--bucket-mb", dest="bucket_mb", type=float, default=25.0,
                   help="data-parallel gradient bucket size in MB, reduced while the backward "
                        "pass goes on (PyTorch DDP's default 25; 0: one reduction at the end)")
    p.add_argument("--global-batch", dest="global_batch", type=pos_int, default=64)
    p.add_argument("--micro-batch", dest="micro_batch", type=pos_int, default=None,
                   help="samples per forward/backward; the rest is gradient accumulation "
                        "(default: 1 with --pp > 1, else a replica's whole batch)")
    p.add_argument("--seq", type=pos_int, default=2048)
    p.add_argument("--dtype", default=None)
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none")
    p.add_argument("--sequence-parallel", dest="sequence_parallel", action="store_true",
                   help="reduce-scatter/all-gather around the tp regions, norms on 1/tp of "
                        "the tokens (Korthikanti et al. 2022)")
    p.add_argument("--schedule", choices=("gpipe", "1f1b", "interleaved"), default=None,
                   help="pipeline schedule with --pp > 1 (default 1f1b; interleaved: Megatron's "
                        "virtual stages, see --virtual-stages)")
    p.add_argument("--virtual-stages", dest="virtual_stages", type=pos_int, default=None,
                   help="model chunks per pipeline device with --schedule interleaved "
                        "(default 2); implies interleaved")
    p.add_argument("--search", action="store_true",
                   help="try every tp x pp x dp x ZeRO x sequence-parallel layout of the "
                        "devices and print the fastest that fit")
    p.add_argument("--top", type=pos_int, default=5, help="layouts to show with --search")
    p.add_argument("--jobs", type=pos_int, default=None,
                   help="worker processes for --search (default: one per core)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--trace", metavar="FILE", help="Perfetto timeline, one track per device "
                   "stream (compute, copy, comm) and one per link (NVLink port, NIC)")
    p.add_argument("--attention", choices=("flash", "materialized"), default="flash",
                   help="flash: one fused kernel (default); materialized: separate GEMM, "
                        "softmax and dropout kernels with the s x s scores in HBM, as "
                        "Megatron-LM ran in 2021")
    p.add_argument("--unfuse-projections", dest="unfuse_projections", action="store_true",
                   help="one GEMM per Q/K/V and gate/up projection (default: QKV and gate/up "
                        "each one GEMM, as Megatron-LM runs them)")
    p.add_argument("--exact", action="store_true",
                   help="simulate every device, op and micro-batch (default: fold identical "
                        "devices, collapse repeated layers (simulator/engine/blocks.py) and "
                        "run a long pipeline as three short ones, extrapolating the steady "
                        "state they show; --trace keeps every micro-batch)")
    from simulator.cli_format import add_timing
    add_timing(p)
    p.set_defaults(fn=lambda a: cmd_train(a, check_out))


def cmd_train(a: argparse.Namespace, check_out) -> int:
    from simulator.train import train

    if a.search:
        if a.timing is not None:
            from simulator.errors import HwsimError

            raise HwsimError("--timing applies to one layout; --search ranks layouts under the "
                             "default stream timing: give --timing without --search")
        return _search(a)
    if a.jobs is not None:
        from simulator.errors import HwsimError

        raise HwsimError("--jobs sets the worker processes of --search; give it with --search")
    if a.trace:
        check_out(a.trace, "--trace")
    predictor = None
    if a.timing is not None:
        from simulator.predict import Predictor
        from simulator.train import train_system

        predictor = Predictor(train_system(a.arch, a.nodes), timing=a.timing)
    r = train(a.workload, a.arch, global_batch=a.global_batch, seq=a.seq,
              predictor=predictor,
              micro_batch=a.micro_batch, nodes=a.nodes, tp=a.tp, pp=a.pp, dp=a.dp, ep=a.ep,
              zero=a.zero, dtype=a.dtype, recompute=a.recompute, schedule=a.schedule,
              virtual_stages=a.virtual_stages, sequence_parallel=a.sequence_parallel,
              exact=a.exact, bucket_mb=a.bucket_mb, attention=a.attention,
              extrapolate=not a.trace, fuse_projections=not a.unfuse_projections)  # a timeline shows every micro-batch
    if a.trace:
        with open(a.trace, "w", encoding="utf-8") as f:
            json.dump(r.result.to_chrome_trace(), f)
    if a.json:
        d = json.loads(r.to_json())
        d["timing"] = r.result.timing
        print(json.dumps(d, allow_nan=False))
        return 0
    m = r.metrics
    mem = m["memory_per_device_bytes"]
    print(f"{m['workload']} training step on {m['devices']} x {r.plan.system.device.name} "
          f"({m['nodes']} node{'s' if m['nodes'] > 1 else ''}): tp {m['tp']}, "
          + (f"pp {m['pp']} ({m['schedule']}, {m['pipeline_microbatches']} micro-batches), "
             if m["pp"] > 1 else "") + f"dp {m['dp']}"
          + (f", ep {m['ep']}" if m["ep"] > 1 else "") + (f", ZeRO-{m['zero']}" if m["zero"]
                                                            else "")
          + (", sequence-parallel" if m["sequence_parallel"] else "")
          + f"; global batch {m['global_batch']} x seq {m['seq']}, micro-batch "
            f"{m['micro_batch']}"
          + (f" ({m['accumulation_steps']} accumulation steps)" if m["pp"] == 1 else "")
          + f", {m['dtype']}, recompute {m['recompute']}, {r.result.timing} timing")
    rows = [
        ("step time", f"{m['step_time_s'] * 1e3:,.1f} ms"),
        ("throughput", f"{m['tokens_per_s']:,.0f} tokens/s ({m['samples_per_s']:,.2f} samples/s)"),
        ("MFU / HFU", f"{m['mfu']:.1%} / {m['hfu']:.1%}"
                      + (f"; pipeline bubble {m['bubble_fraction']:.0%}" if m["pp"] > 1 else "")),
        ("communication", f"{m['comm_time_s'] * 1e3:,.1f} ms on device 0, "
                          f"{m['exposed_comm_s'] * 1e3:,.1f} ms exposed (not hidden by compute)"),
        ("memory / device", f"{fq(mem['total'], 'B')} of {fq(m['memory_capacity_bytes'], 'B')} "
                            "(" + ", ".join(f"{k.replace('_', ' ')} {fq(v, 'B')}"
                                            for k, v in mem.items() if k != "total" and v) + ")"),
        ("energy", f"{fq(m['energy_j'], 'J')} ({m['avg_power_w']:,.0f} W)"),
        ("cost", "unknown (no price)" if m["cost_usd"] is None or m["cost_usd"] != m["cost_usd"]
         else f"${m['cost_usd']:.4g} per step"),
    ]
    rep = m.get("simulated_repeats")
    if rep:
        what = "micro-batches" if m["pp"] > 1 else "accumulation steps"
        total = m["pipeline_microbatches"] if m["pp"] > 1 else m["accumulation_steps"]
        rows.append(("simulated", f"{', '.join(map(str, rep))} of {total} {what}, the steady "
                                  "state extrapolated (--exact: all of them)"))
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")
    for warn in m["warnings"]:
        print(f"warning: {warn}")
    return 0


def _search(a: argparse.Namespace) -> int:
    from simulator.errors import HwsimError
    from simulator.layout_search import search

    if a.tp or a.dp or a.zero or a.sequence_parallel or a.pp != 1 or a.ep != 1 or a.trace:
        raise HwsimError("--search chooses --tp, --pp, --dp, --zero and --sequence-parallel "
                         "itself; give it without them (and without --ep, --trace)")
    import os
    import sys
    import time

    t0 = time.perf_counter()

    def progress(i: int, n: int) -> None:
        if i % 10 == 0:
            print(f"  search: {i}/{n} bounds and runs ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)

    jobs = a.jobs if a.jobs is not None else (os.cpu_count() or 1)
    res = search(a.workload, a.arch, global_batch=a.global_batch, seq=a.seq,
                 micro_batch=a.micro_batch, nodes=a.nodes, dtype=a.dtype,
                 recompute=a.recompute, top=a.top, schedule=a.schedule, progress=progress,
                 jobs=jobs)
    if a.json:
        print(json.dumps({"fits": [json.loads(r.to_json()) for r in res.fits],
                          "refused": [{"layout": lay, "why": why} for lay, why in res.refused],
                          "pruned": [{"layout": lay, "lower_bound_s": b}
                                     for lay, b in res.pruned],
                          "evaluated": res.evaluated}))
        return 0
    print(f"{a.workload}: {res.evaluated} layouts evaluated, {len(res.refused)} refused, "
          f"{len(res.pruned)} pruned (a lower bound slower than the {a.top} fastest), "
          f"{len(res.screened)} simulated; fastest that fit:")
    head = ["tp", "pp", "dp", "ZeRO", "seq-par", "step time", "tokens/s", "MFU",
            "memory/device"]
    rows = [[str(m["tp"]), str(m["pp"]), str(m["dp"]), str(m["zero"]),
             "yes" if m["sequence_parallel"] else
             "no", f"{m['step_time_s'] * 1e3:,.1f} ms", f"{m['tokens_per_s']:,.0f}",
             f"{m['mfu']:.1%}", fq(m["memory_per_device_bytes"]["total"], "B")]
            for m in (r.metrics for r in res.fits)]
    if not rows:
        print("  none fits; refused:")
        for lay, why in res.refused[:10]:
            print(f"  tp {lay['tp']} pp {lay['pp']} dp {lay['dp']} ZeRO {lay['zero']}: {why}")
        return 1
    w = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(k) for h, k in zip(head, w, strict=True)))
    for x in rows:
        print("  ".join(v.rjust(k) for v, k in zip(x, w, strict=True)))
    return 0
