"""Plots of serving results (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulator.serve.api import ServeResult

__all__ = ["latency_plot", "load_sweep_plot"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_plot(result: ServeResult, out: str | Path) -> Path:
    """CDFs of TTFT, TPOT and end-to-end latency of one run."""
    plt = _plt()
    fin = result.sim.finished
    series = {
        "TTFT": [s.first_token_s - s.req.arrival_s for s in fin],
        "TPOT": [(s.finish_s - s.first_token_s) / (s.req.output_tokens - 1)
                 for s in fin if s.req.output_tokens > 1],
        "end-to-end": [s.finish_s - s.req.arrival_s for s in fin],
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (name, xs) in zip(axes, series.items(), strict=True):
        x = np.sort(np.asarray(xs) * 1e3)
        if x.size:
            ax.plot(x, np.arange(1, x.size + 1) / x.size)
            for p in (50, 90, 99):
                v = np.percentile(x, p)
                ax.axvline(v, ls=":", lw=0.8, color="grey")
                ax.text(v, 0.02 + p / 200, f"p{p}", fontsize=7)
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.2)
    axes[0].set_ylabel("fraction of requests")
    m = result.metrics
    fig.suptitle(f"{result.workload} on {m['replicas']} x {m['tp']} {result.arch}: "
                 f"{m['requests_per_s']:.2f} req/s, {m['output_tokens_per_s']:,.0f} tok/s")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def load_sweep_plot(results: Sequence[ServeResult], out: str | Path,
                    slo_ttft_s: float | None = None, slo_tpot_s: float | None = None) -> Path:
    """Latency percentiles (TTFT and TPOT: p50, p90, p99) against the offered load."""
    plt = _plt()
    rates = [r.options.rate or r.metrics["requests_per_s"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, slo, name in ((axes[0], "ttft_s", slo_ttft_s, "TTFT"),
                               (axes[1], "tpot_s", slo_tpot_s, "TPOT")):
        for p, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            ax.plot(rates, [(r.metrics[key][p] or np.nan) * 1e3 for r in results], style,
                    marker="o", ms=3, label=p)
        if slo:
            ax.axhline(slo * 1e3, color="red", lw=0.8, label="SLO")
        ax.set_xlabel("offered load (requests/s)")
        ax.set_ylabel(f"{name} (ms)")
        ax.set_yscale("log")
        ax.grid(alpha=0.2, which="both")
        ax.legend(fontsize=8)
    r0 = results[0]
    fig.suptitle(f"{r0.workload} on {r0.metrics['replicas']} x {r0.metrics['tp']} {r0.arch}")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
