"""``hwsim plan``: the command-line face of :func:`simulator.serve.planner.plan` (thin).

Exit status: 0 when at least one fleet meets the SLOs, 1 when none does (the closest
candidates are printed, or the JSON document has ``"feasible": false``), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from simulator.cli_format import table as _table
from simulator.errors import HwsimError
from simulator.units import format_quantity as fq

__all__ = ["add_plan_parser", "cmd_plan"]

DEFAULT_ARCHS = "h100-sxm,a100-sxm-80gb,dgx-h100"


def _any_number(text: str) -> float:
    """argparse type: any number; the planner checks the range and says why."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None


def add_plan_parser(sub: Any, pos_int, nonneg_int, number) -> None:
    """Register ``plan`` on the CLI's subparsers (the CLI passes its argument types)."""
    from simulator.serve.planner import HOSTING_USD_PER_KW_YEAR, PART_MAX_TP

    p = sub.add_parser(
        "plan", help="capacity planning: the cheapest serving fleets that meet TTFT/TPOT SLOs",
        description="Search parts x tensor-parallel degree x precision x batch limit x "
                    "replicas for the cheapest fleets that serve the load within the p99 SLOs "
                    "(analytical bounds prune first; the rest is simulated as `hwsim serve` "
                    "does). Exit status 0: fleets found; 1: none meets the SLOs (the closest "
                    "are shown); 2: bad input.")
    p.add_argument("--workload", default="llama2-7b", help="decoder model (default llama2-7b)")
    p.add_argument("--arch", default=DEFAULT_ARCHS,
                   help=f"comma-separated parts or systems (default {DEFAULT_ARCHS}); a "
                        f"single part is replicated as a building block, up to {PART_MAX_TP} "
                        "per server for tensor parallelism")
    p.add_argument("--ttft-p99", dest="ttft_p99", type=_any_number, required=True,
                   help="time-to-first-token SLO, p99, seconds")
    p.add_argument("--tpot-p99", dest="tpot_p99", type=_any_number, required=True,
                   help="time-per-output-token SLO, p99, seconds")
    load = p.add_argument_group("load (one of)")
    load.add_argument("--rate", type=_any_number, help="Poisson arrivals, requests per second")
    load.add_argument("--trace", metavar="FILE", help="CSV/JSONL: arrival_s, prompt_tokens, "
                      "output_tokens per request")
    p.add_argument("--burstiness", type=_any_number, default=1.0,
                   help="coefficient of variation of inter-arrival times with --rate")
    p.add_argument("--requests", type=pos_int, default=None,
                   help="requests to simulate (default 1,000; with --trace: the whole trace)")
    p.add_argument("--prompt-len", dest="prompt_len", type=pos_int, default=512)
    p.add_argument("--output-len", dest="output_len", type=pos_int, default=128)
    p.add_argument("--length-cv", dest="length_cv", type=_any_number, default=0.0,
                   help="log-normal spread of prompt/output lengths (0: fixed)")
    p.add_argument("--seed", type=nonneg_int, default=0)
    space = p.add_argument_group("search space")
    space.add_argument("--tp", default=None, help="tensor-parallel degrees, e.g. 1,2,4 "
                       "(default: every power of two that fits a system and divides the model)")
    space.add_argument("--dtype", default=None, help="precisions, e.g. bf16,fp8 (default: the "
                       "part's, plus fp8/int8 where native)")
    space.add_argument("--max-batch", dest="max_batch", default="64,128,256",
                       help="batch limits (running sequences per replica), default 64,128,256")
    space.add_argument("--max-batched-tokens", dest="max_batched_tokens", type=pos_int,
                       default=8192, help="tokens per iteration")
    space.add_argument("--max-devices", dest="max_devices", type=pos_int, default=1024,
                       help="largest fleet considered, in devices")
    cost = p.add_argument_group("cost")
    cost.add_argument("--cost", choices=("cloud", "tco"), default="cloud",
                      help="cloud $/hour, or TCO: purchase over --years + energy + hosting")
    cost.add_argument("--years", type=_any_number, default=4.0, help="TCO amortisation")
    cost.add_argument("--pue", type=_any_number, default=1.3, help="TCO power usage "
                      "effectiveness")
    cost.add_argument("--kwh", type=_any_number, default=0.12, help="TCO electricity, $/kWh")
    cost.add_argument("--hosting", type=_any_number, default=HOSTING_USD_PER_KW_YEAR,
                      help="TCO hosting, $ per kW of provisioned TDP per year (default "
                           f"{HOSTING_USD_PER_KW_YEAR:,.0f}, an estimate)")
    p.add_argument("--top", type=pos_int, default=5, help="fleets (and near-misses) to list")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(fn=cmd_plan)


def _list(text: str | None, what: str, cast=str) -> list | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",")]
    if not all(items):
        raise HwsimError(f"--{what} {text!r}: expected a comma-separated list")
    if cast is int:
        try:
            return [int(x) for x in items]
        except ValueError:
            raise HwsimError(f"--{what} {text!r}: expected whole numbers, e.g. 1,2,4") from None
    return items


def _usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def _ms(x: float | None) -> str:
    return "-" if x is None else fq(x, "s")


def cmd_plan(a: argparse.Namespace) -> int:
    from simulator.serve import ServeOptions
    from simulator.serve.planner import plan

    archs = [x.strip() for x in a.arch.split(",")]
    if not all(archs):
        raise HwsimError(f"--arch {a.arch!r}: expected a comma-separated list of parts or "
                         "systems, e.g. h100-sxm,a100-sxm-80gb,dgx-h100")
    load = ServeOptions(rate=a.rate, trace=a.trace, burstiness=a.burstiness,
                        requests=a.requests, prompt_len=a.prompt_len, output_len=a.output_len,
                        length_cv=a.length_cv, seed=a.seed,
                        max_batched_tokens=a.max_batched_tokens)
    tty = sys.stderr.isatty() and not a.json

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\r  searched {done}/{total} configurations", end="", file=sys.stderr,
                  flush=True)

    r = plan(a.workload, archs, load, a.ttft_p99, a.tpot_p99, tps=_list(a.tp, "tp", int),
             dtypes=_list(a.dtype, "dtype"), max_batches=_list(a.max_batch, "max-batch", int),
             cost_mode=a.cost, years=a.years, pue=a.pue, usd_per_kwh=a.kwh,
             hosting_usd_per_kw_year=a.hosting, top=a.top, max_devices=a.max_devices,
             progress=progress)
    if tty:
        print(file=sys.stderr)
    if a.json:
        print(r.to_json())
        return 0 if r.feasible else 1
    ld, slo = r.load, r.slo
    print(f"{r.workload}: {ld['kind']}, {ld['requests']:,} requests (prompt "
          f"{ld['mean_prompt_tokens']:,.0f}, output {ld['mean_output_tokens']:,.0f} tokens on "
          "average)")
    print(f"SLOs: TTFT p99 <= {fq(slo['ttft_p99_s'], 's')}, TPOT p99 <= "
          f"{fq(slo['tpot_p99_s'], 's')}")
    for note in r.cost["notes"]:
        print(f"cost: {note}")
    print()
    if r.feasible:
        print("Cheapest fleets that meet the SLOs")
        rows = [[str(i), f.part, str(f.tp), f.dtype, str(f.max_batch), str(f.replicas),
                 f.hardware, _ms(f.ttft_p99_s), _ms(f.tpot_p99_s), f"${f.usd_per_hour:,.2f}",
                 _usd(f.usd_per_million_tokens), fq(f.energy_per_output_token_j, "J"),
                 fq(f.avg_power_w, "W")] for i, f in enumerate(r.fleets, 1)]
        print(_table(rows, ["#", "part", "tp", "dtype", "max batch", "replicas", "hardware",
                            "TTFT p99", "TPOT p99", "$/hour", "$/1M tok", "energy/tok",
                            "power"]))
        cheapest = r.fleets[0].usd_per_hour
        near = [m for m in r.near_misses
                if m.usd_per_hour is not None and m.usd_per_hour <= cheapest][:a.top]
        title = "Near-misses (as cheap or cheaper, and why they miss)"
    else:
        print(f"No fleet meets the SLOs (TTFT p99 <= {fq(slo['ttft_p99_s'], 's')} and TPOT "
              f"p99 <= {fq(slo['tpot_p99_s'], 's')}). Closest candidates:")
        near = list(r.near_misses[:a.top])
        title = ""
    if near:
        if title:
            print()
            print(title)
        rows = [[m.part, str(m.tp), m.dtype, "any" if m.max_batch is None else str(m.max_batch),
                 "any" if m.replicas is None else str(m.replicas),
                 "-" if m.usd_per_hour is None else f"${m.usd_per_hour:,.2f}", m.reason]
                for m in near]
        print(_table(rows, ["part", "tp", "dtype", "max batch", "replicas", "$/hour", "why"]))
    s = r.stats
    print()
    print(f"Search: {s.configurations} configurations (part x tp x precision x batch limit): "
          f"{s.pruned_memory} pruned by memory, {s.pruned_ttft_bound} by the TTFT bound, "
          f"{s.pruned_tpot_bound} by the TPOT bound"
          + (f", {s.pruned_layout} by the tp layout" if s.pruned_layout else "")
          + (f", {s.pruned_price} unpriced" if s.pruned_price else "")
          + f", {s.pruned_cost} by cost (cannot beat the top {a.top}); {s.searched} searched "
          f"with {s.simulations} simulations ({s.reused} more reused), "
          f"{s.replicas_skipped} replica counts below the throughput bounds skipped")
    sys.stdout.flush()
    print(f"planned in {s.wall_s:.1f} s", file=sys.stderr)
    return 0 if r.feasible else 1
