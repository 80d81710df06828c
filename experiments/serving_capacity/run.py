"""Serving capacity: the fewest GPUs (and which layout) that serve Llama-2-70B at a given
request rate within TTFT/TPOT p99 SLOs, and the $ and joules per output token, H100 vs A100.

For each layout in config.yaml (part, precision, tensor-parallel degree, scheduler):

1. offline capacity of one replica: every request queued at once (``serve(offline=True)``);
2. a load sweep of one replica: Poisson arrivals at fractions of that capacity, latency
   percentiles plotted with ``load_sweep_plot``;
3. the replica's SLO capacity: the highest rate whose TTFT p99 and TPOT p99 meet the SLOs,
   refined by bisection between the last passing and the first failing point;
4. the fleet: ``ceil(rate / SLO capacity)`` replicas behind a least-outstanding router,
   simulated at the target rate and adjusted (one fewer if that passes, more until it does).

Writes ``results.md``, ``sweeps.csv``, ``capacity.png`` and ``sweep_<layout>.png`` for the
cheapest layout of each part (every layout with --all-plots) next to this file (or to --out).

    python experiments/serving_capacity/run.py               # ~2.5 minutes on 2 cores
    python experiments/serving_capacity/run.py --rate 10     # another target
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulator import load_arch
from simulator.arch.spec import System
from simulator.errors import HwsimError
from simulator.predict import Predictor
from simulator.serve import IterationModel, ServeOptions, ServeResult, serve
from simulator.serve.plots import load_sweep_plot
from workloads.dtypes import get_dtype

HERE = Path(__file__).resolve().parent
GPUS_PER_NODE = 8


@dataclass
class Layout:
    """One way to run a replica, and what the study found for it."""

    name: str
    system: str
    tp: int
    dtype: str
    kv_dtype: str | None
    sched: dict[str, Any]
    offline: ServeResult | None = None
    sweep: list[ServeResult] = field(default_factory=list)
    slo_rate: float = 0.0          # requests/s one replica serves within the SLOs
    binding: str = ""              # which SLO fails first above slo_rate
    fleet: ServeResult | None = None
    fleet_tries: list[tuple[int, bool]] = field(default_factory=list)
    error: str | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")


def _system(name: str, gpus: int, usd_per_gpu_hour: float) -> System:
    nodes = max(1, math.ceil(gpus / GPUS_PER_NODE))
    return load_arch(name, {"count": nodes * GPUS_PER_NODE,
                            "cost.hourly": f"${usd_per_gpu_hour * GPUS_PER_NODE:g}/h"})


def steady(r: ServeResult, warmup: float = 0.2) -> dict[str, float]:
    """Served rates in the steady part of a run: from ``warmup`` of the arrival span to the
    last arrival, leaving out the start-up (an empty server) and the drain after the last
    arrival (a finite run's tail at low load), which dilute whole-run averages. A request's
    output tokens are credited evenly between its first token and its end."""
    fin = r.sim.finished
    t1 = max(s.req.arrival_s for s in fin)
    t0 = warmup * t1
    tokens, done = 0.0, 0
    for s in fin:
        a, b, n = s.first_token_s, s.finish_s, s.req.output_tokens
        if b > a:
            tokens += n * max(0.0, min(b, t1) - max(a, t0)) / (b - a)
        elif t0 <= a <= t1:
            tokens += n
        done += t0 <= b <= t1
    tok_s = tokens / (t1 - t0)
    return {"requests_per_s": done / (t1 - t0), "output_tokens_per_s": tok_s,
            "usd_per_million_tokens": r.metrics["usd_per_hour"] / 3600 / tok_s * 1e6,
            "drain_share": (r.sim.end_s - t1) / (r.sim.end_s - r.sim.start_s)}


def _meets(r: ServeResult, slo: dict[str, float]) -> bool:
    m = r.metrics
    return m["ttft_s"]["p99"] <= slo["ttft_p99_s"] and m["tpot_s"]["p99"] <= slo["tpot_p99_s"]


def _why(r: ServeResult, slo: dict[str, float]) -> str:
    m = r.metrics
    out = [name for name, key, lim in (("TTFT", "ttft_s", slo["ttft_p99_s"]),
                                       ("TPOT", "tpot_s", slo["tpot_p99_s"]))
           if m[key]["p99"] > lim]
    return "+".join(out)


class Study:
    def __init__(self, cfg: dict[str, Any], rate: float, log=print):
        self.cfg = cfg
        self.rate = rate
        self.slo = cfg["slo"]
        self.log = log

    def options(self, lay: Layout, **kw: Any) -> ServeOptions:
        c = self.cfg
        sched = {**c["scheduler"], **lay.sched}
        return ServeOptions(prompt_len=c["prompt_len"], output_len=c["output_len"],
                            length_cv=c["length_cv"], seed=c["seed"], tp=lay.tp,
                            dtype=lay.dtype, kv_dtype=lay.kv_dtype,
                            slo_ttft_s=self.slo["ttft_p99_s"], slo_tpot_s=self.slo["tpot_p99_s"],
                            **sched, **kw)

    def run_layout(self, lay: Layout) -> None:
        c = self.cfg
        price = c["usd_per_gpu_hour"][lay.system]["market"]
        system = _system(lay.system, lay.tp, price)
        p = Predictor(system)
        o = self.options(lay, offline=True, requests=c["offline_requests"])
        model = IterationModel(p, c["workload"], tp=lay.tp, dtype=lay.dtype,
                               kv_dtype=lay.kv_dtype, max_tokens=o.max_batched_tokens)
        if get_dtype(str(model.dtype)) != get_dtype(lay.dtype):  # never compare the wrong thing
            raise RuntimeError(f"hwsim ran {model.dtype}, not the {lay.dtype} asked for")

        def run(system: System, **kw: Any) -> ServeResult:
            return serve(c["workload"], system, self.options(lay, **kw), predictor=p,
                         model=model)

        lay.offline = serve(c["workload"], system, o, predictor=p, model=model)
        cap = lay.offline.metrics["requests_per_s"]
        # 2. load sweep of one replica
        for f in c["sweep_fractions"]:
            lay.sweep.append(run(system, rate=f * cap, requests=c["sweep_requests"]))
        # the offline run's start-up and drain make it an underestimate: extend the sweep
        # until a point fails the SLOs (or the replica visibly saturates)
        f = c["sweep_fractions"][-1]
        while _meets(lay.sweep[-1], self.slo) and f < 4:
            f *= 1.15
            lay.sweep.append(run(system, rate=f * cap, requests=c["sweep_requests"]))
        # 3. SLO capacity: the last point of the passing prefix, then bisection
        ok = [_meets(r, self.slo) for r in lay.sweep]
        n_ok = next((i for i, v in enumerate(ok) if not v), len(ok))
        lo = lay.sweep[n_ok - 1].options.rate if n_ok else 0.0
        hi_r = lay.sweep[n_ok] if n_ok < len(ok) else None
        if hi_r is not None:
            lay.binding = _why(hi_r, self.slo)
            hi = hi_r.options.rate
            for _ in range(c["bisect_steps"]):
                mid = (lo + hi) / 2
                r = run(system, rate=mid, requests=c["sweep_requests"])
                if _meets(r, self.slo):
                    lo = mid
                else:
                    hi, lay.binding = mid, _why(r, self.slo)
        lay.slo_rate = lo
        if lo <= 0:
            return
        # 4. the fleet at the target rate
        k = max(1, math.ceil(self.rate / lo))
        tried: dict[int, ServeResult] = {}

        def fleet(k: int) -> ServeResult:
            if k not in tried:
                s = _system(lay.system, k * lay.tp, price)
                tried[k] = run(s, rate=self.rate, replicas=k, requests=c["fleet_requests"])
                lay.fleet_tries.append((k, _meets(tried[k], self.slo)))
            return tried[k]

        if _meets(fleet(k), self.slo):
            while k > 1 and _meets(fleet(k - 1), self.slo):
                k -= 1
        else:
            while not _meets(fleet(k), self.slo) and k < 4 * math.ceil(self.rate / lo) + 4:
                k += 1
        lay.fleet = fleet(k) if _meets(fleet(k), self.slo) else None

    def run(self) -> list[Layout]:
        lays = []
        for spec in self.cfg["layouts"]:
            lay = Layout(spec["name"], spec["system"], spec["tp"], spec["dtype"],
                         spec.get("kv_dtype"), spec.get("scheduler", {}))
            t0 = time.perf_counter()
            try:
                self.run_layout(lay)
            except (HwsimError, RuntimeError) as e:  # a layout that cannot run is a finding
                lay.error = str(e)
            lays.append(lay)
            f = lay.fleet.metrics if lay.fleet else None
            self.log(f"{lay.name:>24}: SLO capacity {lay.slo_rate:6.2f} req/s per replica"
                     + (f", {f['replicas']} replicas = {f['devices']} GPUs at {self.rate:g} "
                        f"req/s, ${steady(lay.fleet)['usd_per_million_tokens']:.2f}/1M tokens"
                        if f else "")
                     + (f" [{lay.error}]" if lay.error else "")
                     + f"  ({time.perf_counter() - t0:.0f} s)")
        return lays


# -- outputs --------------------------------------------------------------------------------

def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.0f}"


def _price_key(x: Layout) -> tuple[float, float]:
    """Cheapest fleet first; on a tie in $/h, the one using less energy per token."""
    m = x.fleet.metrics
    return round(m["usd_per_hour"], 6), m["energy_per_output_token_j"]


def cheapest(lays: list[Layout]) -> Layout | None:
    ok = [x for x in lays if x.fleet is not None]
    return min(ok, key=_price_key) if ok else None


def _fleet_cells(x: Layout, cfg: dict[str, Any]) -> str:
    m, st = x.fleet.metrics, steady(x.fleet)
    rates = cfg["usd_per_gpu_hour"][x.system]
    return (f" {m['replicas']} | {m['devices']} | {_ms(m['ttft_s']['p99'])} | "
            f"{_ms(m['tpot_s']['p99'])} | {m['usd_per_hour']:.0f} | "
            f"{st['usd_per_million_tokens']:.2f} | "
            f"{st['usd_per_million_tokens'] * rates['aws_list'] / rates['market']:.2f} | "
            f"{m['energy_per_output_token_j']:.2f} | {st['drain_share']:.0%} |")


def write_results(lays: list[Layout], cfg: dict[str, Any], rate: float, out: Path) -> None:
    slo = cfg["slo"]
    best = cheapest(lays)
    L = [f"# Serving {cfg['workload']} at {rate:g} requests/s: GPUs, layout, $ and J per token",
         "",
         "Written by `experiments/serving_capacity/run.py` (do not edit by hand). Traffic: "
         f"Poisson arrivals, prompts of {cfg['prompt_len']} and outputs of {cfg['output_len']} "
         f"tokens on average (log-normal, CV {cfg['length_cv']}). SLOs: TTFT p99 <= "
         f"{slo['ttft_p99_s'] * 1e3:.0f} ms and TPOT p99 <= {slo['tpot_p99_s'] * 1e3:.0f} ms. "
         f"Scheduler unless the layout says otherwise: {cfg['scheduler']}. $ at the market "
         "rates of config.yaml (per GPU-hour: "
         + ", ".join(f"{k} ${v['market']:.2f}" for k, v in cfg["usd_per_gpu_hour"].items())
         + "); the AWS column uses the DGX specs' on-demand list instead. $/1M tokens are "
         "steady-state (the fleet's $/h over the output tokens/s served between 20% of the "
         "arrival span and the last arrival); J/token is hwsim's whole-run figure, which also "
         "counts the drain after the last arrival (its share of the run in the last column: "
         "a few % too high).", ""]
    if best:
        m, st = best.fleet.metrics, steady(best.fleet)
        L += [f"**Cheapest layout meeting the SLOs: {best.name}, {m['replicas']} replicas x TP"
              f"{best.tp} = {m['devices']} GPUs, ${m['usd_per_hour']:.0f}/h, "
              f"${st['usd_per_million_tokens']:.2f} per million output tokens, "
              f"{m['energy_per_output_token_j']:.2f} J per output token** "
              f"(TTFT p99 {_ms(m['ttft_s']['p99'])} ms, TPOT p99 {_ms(m['tpot_s']['p99'])} ms).",
              ""]
    L += ["## Layouts", "",
          "| layout | GPUs/replica | offline (req/s) | SLO capacity (req/s per replica) | "
          "per GPU | fails first | replicas | GPUs | TTFT p99 (ms) | TPOT p99 (ms) | $/h | "
          "$/1M out tokens | $/1M (AWS list) | J/out token | drain |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in lays:
        if x.error:
            L.append(f"| {x.name} | {x.tp} | does not run: {x.error[:120]} |" + " |" * 12)
            continue
        cap = x.offline.metrics["requests_per_s"]
        row = (f"| {x.name} | {x.tp} | {cap:.2f} | {x.slo_rate:.2f} | {x.slo_rate / x.tp:.2f} "
               f"| {x.binding or '-'} |")
        if x.fleet is None:
            why = "never meets the SLOs" if x.slo_rate <= 0 else "no fleet found"
            row += f" {why} |" + " |" * 8
        else:
            row += _fleet_cells(x, cfg)
        L.append(row)
    L += ["", "Replica counts simulated at the target rate (replicas: met the SLOs?): "
          + "; ".join(f"{x.name}: " + ", ".join(f"{k}: {'yes' if v else 'no'}"
                                                 for k, v in x.fleet_tries)
                      for x in lays if x.fleet_tries) + ".", ""]
    L += ["## Load sweeps of one replica", "",
          "Served rates are steady-state (see above). Past saturation the served rate stays "
          "below the offered one and TTFT grows with the length of the run.", "",
          "| layout | offered (req/s) | served (req/s) | out tok/s | TTFT p50 / p99 (ms) | "
          "TPOT p50 / p99 (ms) | KV use (mean) | $/1M out tokens | SLOs |",
          "|---|---|---|---|---|---|---|---|---|"]
    for x in lays:
        for r in x.sweep:
            m, st = r.metrics, steady(r)
            L.append(f"| {x.name} | {r.options.rate:.2f} | {st['requests_per_s']:.2f} | "
                     f"{st['output_tokens_per_s']:.0f} | {_ms(m['ttft_s']['p50'])} / "
                     f"{_ms(m['ttft_s']['p99'])} | {_ms(m['tpot_s']['p50'])} / "
                     f"{_ms(m['tpot_s']['p99'])} | {m['kv_cache']['mean_utilization']:.0%} | "
                     f"{st['usd_per_million_tokens']:.2f} | "
                     f"{'met' if _meets(r, slo) else _why(r, slo) + ' over'} |")
    (out / "results.md").write_text("\n".join(L) + "\n")


def write_csv(lays: list[Layout], out: Path) -> None:
    keys = ["layout", "tp", "offered_rps", "served_rps_steady", "output_tokens_per_s_steady",
            "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "kv_mean_utilization",
            "usd_per_hour", "usd_per_million_tokens_steady",
            "energy_per_output_token_j_whole_run"]
    with open(out / "sweeps.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for x in lays:
            for r in x.sweep:
                m, st = r.metrics, steady(r)
                w.writerow([x.name, x.tp, f"{r.options.rate:.4g}",
                            f"{st['requests_per_s']:.4g}", f"{st['output_tokens_per_s']:.5g}",
                            f"{m['ttft_s']['p50']:.4g}", f"{m['ttft_s']['p99']:.4g}",
                            f"{m['tpot_s']['p50']:.4g}", f"{m['tpot_s']['p99']:.4g}",
                            f"{m['kv_cache']['mean_utilization']:.3f}",
                            f"{m['usd_per_hour']:.4g}", f"{st['usd_per_million_tokens']:.4g}",
                            f"{m['energy_per_output_token_j']:.4g}"])


def plot_summary(lays: list[Layout], cfg: dict[str, Any], rate: float, out: Path) -> Path:
    """p99 TTFT and TPOT of one replica against the load per GPU, and the fleet each layout
    needs at the target rate with its $ per million output tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slo = cfg["slo"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6),
                             gridspec_kw={"width_ratios": [1, 1, 1.15]})
    colors = {}
    for ax, key, lim, label in ((axes[0], "ttft_s", slo["ttft_p99_s"], "TTFT p99 (ms)"),
                                (axes[1], "tpot_s", slo["tpot_p99_s"], "TPOT p99 (ms)")):
        for x in lays:
            if not x.sweep:
                continue
            line, = ax.plot([r.options.rate / x.tp for r in x.sweep],
                            [r.metrics[key]["p99"] * 1e3 for r in x.sweep],
                            "--" if "A100" in x.name else "-", marker="o", ms=3, label=x.name,
                            color=colors.get(x.name))
            colors[x.name] = line.get_color()
            if x.slo_rate > 0:
                ax.axvline(x.slo_rate / x.tp, color=line.get_color(), lw=0.6, ls=":")
        ax.axhline(lim * 1e3, color="red", lw=1.0, label="SLO")
        ax.set_yscale("log")
        ax.set_xlabel("offered load per GPU (requests/s/GPU), one replica")
        ax.set_ylabel(label)
        ax.grid(alpha=0.25, which="both")
    axes[0].legend(fontsize=7)
    ok = [x for x in lays if x.fleet is not None]
    ax = axes[2]
    usd = [steady(x.fleet)["usd_per_million_tokens"] for x in ok]
    ax.barh(range(len(ok)), usd, color=[colors[x.name] for x in ok])
    for i, (x, u) in enumerate(zip(ok, usd)):
        m = x.fleet.metrics
        ax.text(u, i, f" ${u:.2f}: {m['replicas']} x TP{x.tp} = {m['devices']} GPUs, "
                      f"{m['energy_per_output_token_j']:.2f} J/token", va="center", fontsize=7)
    ax.set_yticks(range(len(ok)))
    ax.set_yticklabels([x.name for x in ok], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(usd) * 2.1 if usd else 1)
    ax.set_xlabel(f"$ per million output tokens at {rate:g} requests/s (fleet within SLOs)")
    ax.grid(alpha=0.25, axis="x")
    fig.suptitle(f"{cfg['workload']}: p99 latency vs load (dotted: SLO capacity of one "
                 f"replica) and the cheapest fleet per layout; prompts {cfg['prompt_len']}, "
                 f"outputs {cfg['output_len']} tokens on average", fontsize=10)
    fig.tight_layout()
    path = out / "capacity.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def best_per_part(lays: list[Layout]) -> list[Layout]:
    """The cheapest layout with a fleet for each kind of system (H100, A100)."""
    return [b for b in (cheapest([x for x in lays if x.system == sys_])
                        for sys_ in dict.fromkeys(x.system for x in lays)) if b is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE / "config.yaml"))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--rate", type=float, help="target requests/s (default: the config's)")
    ap.add_argument("--all-plots", action="store_true",
                    help="a load-sweep plot for every layout (default: the cheapest per part)")
    a = ap.parse_args(argv)
    cfg = yaml.safe_load(Path(a.config).read_text())
    rate = a.rate if a.rate is not None else float(cfg["rate"])
    if not (math.isfinite(rate) and rate > 0):
        ap.error(f"--rate must be a positive number, got {rate!r}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    lays = Study(cfg, rate, log=lambda s: print(s, file=sys.stderr)).run()
    for x in (lays if a.all_plots else best_per_part(lays)):
        if x.sweep:
            load_sweep_plot(x.sweep, out / f"sweep_{x.slug}.png",
                            slo_ttft_s=cfg["slo"]["ttft_p99_s"],
                            slo_tpot_s=cfg["slo"]["tpot_p99_s"])
    write_results(lays, cfg, rate, out)
    write_csv(lays, out)
    plot_summary(lays, cfg, rate, out)
    best = cheapest(lays)
    print(f"wrote {out}/results.md, sweeps.csv, capacity.png, sweep_*.png in "
          f"{time.perf_counter() - t0:.0f} s; cheapest: "
          + (f"{best.name} x {best.fleet.metrics['replicas']}" if best else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
