"""``hwsim serve``: the command-line face of :func:`simulator.serve.serve` (thin)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from simulator.units import format_quantity as fq

__all__ = ["add_serve_parser", "cmd_serve", "serve_options"]


def add_serve_parser(sub: Any, pos_int, nonneg_int, number, check_out) -> None:
    """Register ``serve`` on the CLI's subparsers (the CLI passes its argument types)."""
    p = sub.add_parser(
        "serve", help="simulate serving an LLM: requests, continuous batching, paged KV cache",
        description="Request-level simulation of LLM serving (vLLM-style continuous batching) "
                    "on replicas of --tp devices. Give one load: --rate, --offline, --trace or "
                    "--users.")
    p.add_argument("--workload", default="llama2-7b", help="decoder model (default llama2-7b)")
    p.add_argument("--arch", default="h100-sxm", help="part or system (default h100-sxm)")
    p.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a spec field")
    p.add_argument("--unfuse-projections", dest="unfuse_projections", action="store_true",
                   help="one GEMM per Q/K/V and gate/up projection (default: QKV and gate/up "
                        "each one GEMM, as vLLM runs them)")
    load = p.add_argument_group("load (one of)")
    load.add_argument("--rate", type=number, help="Poisson arrivals, requests per second")
    load.add_argument("--offline", action="store_true", help="all requests at t=0 (batch job)")
    load.add_argument("--trace", metavar="FILE", help="CSV/JSONL: arrival_s, prompt_tokens, "
                      "output_tokens per request")
    load.add_argument("--users", type=pos_int, help="closed loop: N users, each sending its "
                      "next request when the last one finishes")
    load.add_argument("--rates", metavar="R1,R2,...", type=_rates(number),
                      help="a load sweep: one Poisson run per rate, a table, and with --plot "
                           "the latency percentiles against load")
    p.add_argument("--burstiness", type=number, default=1.0,
                   help="coefficient of variation of inter-arrival times with --rate "
                        "(1 Poisson, >1 bursty gamma)")
    p.add_argument("--requests", type=pos_int, default=None,
                   help="requests to simulate (default 1,000; with --trace: the whole trace)")
    p.add_argument("--prompt-len", dest="prompt_len", type=pos_int, default=512)
    p.add_argument("--output-len", dest="output_len", type=pos_int, default=128)
    p.add_argument("--length-cv", dest="length_cv", type=_nonneg(number), default=0.0,
                   help="log-normal spread of prompt/output lengths (0: fixed)")
    p.add_argument("--think", type=_nonneg(number), default=0.0,
                   help="closed loop: seconds between a reply and the next request")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--tp", type=pos_int, default=1, help="devices per replica")
    p.add_argument("--replicas", type=pos_int, default=1)
    p.add_argument("--router", choices=("least_outstanding", "round_robin"),
                   default="least_outstanding")
    p.add_argument("--dtype", default=None)
    p.add_argument("--weight-dtype", dest="weight_dtype", default=None)
    p.add_argument("--kv-dtype", dest="kv_dtype", default=None)
    p.add_argument("--max-batch", dest="max_batch", type=pos_int, default=256,
                   help="running sequences per replica (vLLM max_num_seqs)")
    p.add_argument("--max-batched-tokens", dest="max_batched_tokens", type=pos_int,
                   default=8192, help="tokens per iteration")
    p.add_argument("--chunked-prefill", dest="chunked_prefill", action="store_true",
                   help="mix prefill chunks into decode iterations (Sarathi)")
    p.add_argument("--block-size", dest="block_size", type=pos_int, default=16,
                   help="KV-cache block, tokens")
    p.add_argument("--preemption", choices=("recompute", "swap"), default="recompute")
    p.add_argument("--gpu-memory-utilization", dest="gpu_memory_utilization", type=number,
                   default=0.9, help="fraction of device memory for weights + KV (vLLM 0.9)")
    p.add_argument("--slo-ttft", dest="slo_ttft", type=number, default=None,
                   help="time-to-first-token SLO, s (for goodput)")
    p.add_argument("--slo-tpot", dest="slo_tpot", type=number, default=None,
                   help="time-per-output-token SLO, s (for goodput)")
    from simulator.power.cli_args import add_power_limit
    add_power_limit(p)
    from simulator.cli_format import add_timing
    add_timing(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--trace-out", dest="trace_out", metavar="FILE",
                   help="write a Perfetto trace of every replica's iterations")
    p.add_argument("--plot", metavar="FILE", help="latency percentiles (TTFT, TPOT, E2E) plot")
    p.set_defaults(fn=lambda a: cmd_serve(a, check_out))


def _rates(number):
    def parse(text: str) -> tuple[float, ...]:
        parts = [t for t in text.split(",") if t.strip()]
        if not parts or len(parts) > 50:
            raise argparse.ArgumentTypeError(f"expected 1 to 50 comma-separated rates, got "
                                             f"{text[:40]!r}")
        return tuple(sorted(number(t.strip()) for t in parts))
    parse.__name__ = "rates"
    return parse


def _nonneg(number):
    def parse(text: str) -> float:
        try:  # zero in any spelling ("0", "0.00", "0e0", "-0"); the rest must be positive
            if float(text) == 0:
                return 0.0
        except ValueError:
            pass
        return number(text)
    parse.__name__ = "number"
    return parse


def serve_options(a: argparse.Namespace):
    from simulator.serve import ServeOptions

    return ServeOptions(
        rate=a.rate, offline=a.offline, trace=a.trace, users=a.users,
        burstiness=a.burstiness, requests=a.requests, prompt_len=a.prompt_len,
        output_len=a.output_len, length_cv=a.length_cv, think_s=a.think, seed=a.seed,
        tp=a.tp, replicas=a.replicas, router=a.router, dtype=a.dtype,
        weight_dtype=a.weight_dtype, kv_dtype=a.kv_dtype, max_batch=a.max_batch,
        max_batched_tokens=a.max_batched_tokens, chunked_prefill=a.chunked_prefill,
        block_size=a.block_size, preemption=a.preemption,
        gpu_memory_utilization=a.gpu_memory_utilization, slo_ttft_s=a.slo_ttft,
        slo_tpot_s=a.slo_tpot,
        fuse_projections=not getattr(a, "unfuse_projections", False))


def serve_system(system, timing: str | None):
    """The system a serve run predicts with: under ``--timing eager`` on a GPU whose spec (or
    ``--set``) names no ``params.eager_recipes``, vLLM's recipes (the engine serve models runs
    its fused custom ops with enforce_eager, not HF's Python modules); otherwise as given."""
    from dataclasses import replace

    from simulator.frozen import FrozenMap

    dev = system.device
    if timing != "eager" or dev.family != "gpu" or "eager_recipes" in dev.params:
        return system
    return replace(system, device=replace(
        dev, params=FrozenMap({**dev.params, "eager_recipes": "vllm"})))


def _predictor(a: argparse.Namespace, system, o):
    """A Predictor for ``--timing`` (None without it: serve() builds its own)."""
    if getattr(a, "timing", None) is None:
        return None
    from simulator.predict import Predictor

    return Predictor(system, power_limit_w=getattr(o, "power_limit_w", None), timing=a.timing)


def _with_timing(doc: str, a: argparse.Namespace, system) -> str:
    """The serve JSON with ``timing``: which time its iteration latencies are."""
    from simulator.timing import recipe_set

    d = json.loads(doc)
    d["timing"] = getattr(a, "timing", None) or "stream"
    if d["timing"] == "eager" and system.device.family == "gpu":
        d["eager_recipes"] = recipe_set(system.device)
    return json.dumps(d, allow_nan=False)


def _timing_label(a: argparse.Namespace, system) -> str:
    """``--timing`` as the text output names it: stream by default; eager on a GPU with its
    recipe set."""
    from simulator.timing import recipe_set

    t = getattr(a, "timing", None) or "stream"
    if t == "eager" and system.device.family == "gpu":
        return f"eager, {recipe_set(system.device)} recipes"
    return t


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:,.1f} ms"


def cmd_serve(a: argparse.Namespace, check_out) -> int:
    from simulator.api import resolve_system
    from simulator.serve import serve

    for path, opt in ((a.trace_out, "--trace-out"), (a.plot, "--plot")):
        if path:
            check_out(path, opt)
    system = serve_system(resolve_system(a.arch, a.set or ()), getattr(a, "timing", None))
    o = serve_options(a)
    tty = sys.stderr.isatty() and not a.json

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % max(1, total // 20) == 0):
            print(f"\r  served {done:,}/{total:,} requests", end="", file=sys.stderr,
                  flush=True)

    if a.rates:
        return _sweep(a, system, o)
    r = serve(a.workload, system, o, progress=progress, predictor=_predictor(a, system, o))
    if tty:
        print(file=sys.stderr)
    if a.trace_out:
        with open(a.trace_out, "w", encoding="utf-8") as f:
            json.dump(r.to_chrome_trace(), f)
    if a.plot:
        from simulator.serve.plots import latency_plot

        latency_plot(r, a.plot)
    if a.json:
        print(_with_timing(r.to_json(), a, system))
        return 0
    m = r.metrics
    load = (f"Poisson {a.rate:g} req/s" if a.rate is not None and a.burstiness == 1 else
            f"bursty {a.rate:g} req/s (CV {a.burstiness:g})" if a.rate is not None else
            "offline batch" if a.offline else f"trace {a.trace}" if a.trace else
            f"{a.users} closed-loop users")
    print(f"{r.workload} served on {m['replicas']} x {m['tp']} {system.device.name} "
          f"({m['dtype']}, {_timing_label(a, system)} timing), {load}, {r.completed:,} requests")
    rows = [
        ("throughput", f"{m['requests_per_s']:,.2f} req/s, {m['output_tokens_per_s']:,.0f} "
                       "output tokens/s"),
        ("TTFT p50 / p90 / p99", " / ".join(_ms(m['ttft_s'][k]) for k in ("p50", "p90", "p99"))),
        ("TPOT p50 / p90 / p99", " / ".join(_ms(m['tpot_s'][k]) for k in ("p50", "p90", "p99"))),
        ("ITL p50 / p99", f"{_ms(m['itl_s']['p50'])} / {_ms(m['itl_s']['p99'])}"),
        ("end-to-end p50 / p99", f"{_ms(m['e2e_s']['p50'])} / {_ms(m['e2e_s']['p99'])}"),
        ("goodput", f"{m['goodput_requests_per_s']:,.2f} req/s "
                    f"({m['slo']['met_fraction']:.0%} within the SLOs)"
         if (a.slo_ttft or a.slo_tpot) else "- (give --slo-ttft / --slo-tpot)"),
        ("KV cache", f"{m['kv_cache']['blocks_per_replica']:,} blocks of "
                     f"{m['kv_cache']['block_size']} per replica; mean "
                     f"{m['kv_cache']['mean_utilization']:.0%}, peak "
                     f"{m['kv_cache']['peak_utilization']:.0%}; {m['preemptions']} preemptions"),
        ("batching", f"{m['iterations']:,} iterations, {m['mean_batch_tokens']:,.1f} tokens "
                     f"each on average; devices busy {m['device_utilization']:.0%}"),
        ("power", f"{m['avg_device_power_w']:,.0f} W per device, {m['avg_power_w']:,.0f} W "
                  "in all (system share included)"),
        ("energy", f"{fq(m['energy_per_output_token_j'], 'J')} per output token"),
        ("cost", "unknown (no price in the spec)" if m['usd_per_hour'] is None else
                 f"${m['usd_per_hour']:,.2f}/h, ${m['usd_per_million_tokens']:,.3g} per 1M "
                 "output tokens"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(w)}  {v}")
    return 0


def _sweep(a: argparse.Namespace, system, o) -> int:
    """One Poisson run per rate on shared caches; a table, a plot, or one JSON list."""
    from dataclasses import replace

    from simulator.errors import HwsimError
    from simulator.predict import Predictor
    from simulator.serve import IterationModel, serve

    if o.offline or o.trace or o.users or o.rate is not None:
        raise HwsimError("--rates is a load sweep of its own: give it without --rate, "
                         "--offline, --trace or --users")
    if a.trace_out:
        raise HwsimError("--trace-out records one run; give it without --rates")
    p = _predictor(a, system, o) or Predictor(system)
    model = IterationModel(p, a.workload, tp=o.tp, dtype=o.dtype, weight_dtype=o.weight_dtype,
                           kv_dtype=o.kv_dtype, max_tokens=o.max_batched_tokens,
                           fuse_projections=o.fuse_projections)
    results = [serve(a.workload, system, replace(o, rate=r), predictor=p, model=model)
               for r in a.rates]
    if a.plot:
        from simulator.serve.plots import load_sweep_plot

        load_sweep_plot(results, a.plot, a.slo_ttft, a.slo_tpot)
    if a.json:
        print("[" + ",".join(_with_timing(r.to_json(), a, system) for r in results) + "]")
        return 0
    print(f"{a.workload} on {o.replicas} x {o.tp} {system.device.name}: load sweep "
          f"({o.requests or 1000:,} requests per point, {_timing_label(a, system)} timing)")
    head = ["offered req/s", "served req/s", "tokens/s", "TTFT p50", "TTFT p99", "TPOT p50",
            "TPOT p99", "busy"]
    rows = [[f"{r.options.rate:g}", f"{r.metrics['requests_per_s']:.2f}",
             f"{r.metrics['output_tokens_per_s']:,.0f}", _ms(r.metrics['ttft_s']['p50']),
             _ms(r.metrics['ttft_s']['p99']), _ms(r.metrics['tpot_s']['p50']),
             _ms(r.metrics['tpot_s']['p99']), f"{r.metrics['device_utilization']:.0%}"]
            for r in results]
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for x in rows:
        print("  ".join(v.rjust(w) for v, w in zip(x, widths, strict=True)))
    return 0
