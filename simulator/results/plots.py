"""Plots: roofline with each op placed on it, and per-kind time breakdown.

matplotlib is imported lazily with the non-interactive Agg backend, so plotting works on
machines without a display.
"""

from __future__ import annotations

from pathlib import Path

from simulator.arch.spec import Device
from simulator.results.result import Result

__all__ = ["roofline_plot"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roofline_plot(result: Result, device: Device, out: str | Path, dtype: str = "bf16",
                  title: str | None = None) -> Path:
    """Roofline of ``device`` (DRAM bandwidth and matrix/vector peaks) with every op of
    ``result`` at (FLOP/DRAM byte, achieved FLOP/s), marker size by time share."""
    plt = _plt()
    from simulator.mapping.common import achievable_bandwidth

    bw = device.dram.bandwidth_Bps
    mpeak, mcls = device.peak(dtype, "matrix")
    vpeak, _ = device.peak(dtype, "vector")
    pts = [(r.flops / r.dram_bytes, r.flops / r.latency_s, r.latency_s, r.kind)
           for r in result.records if r.flops > 0 and r.dram_bytes > 0 and r.latency_s > 0]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    lo = min([p[0] for p in pts] + [0.05]) / 2
    hi = max([p[0] for p in pts] + [device.ridge_point(dtype) * 8]) * 2
    import numpy as np

    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.loglog(x, np.minimum(mpeak, bw * x), "k-", lw=2, label=f"peak {mcls} matrix "
              f"{mpeak / 1e12:.0f} TFLOP/s, {bw / 1e12:.2f} TB/s")
    ax.loglog(x, np.minimum(vpeak, bw * x), "k--", lw=1, label=f"vector {vpeak / 1e12:.1f} TFLOP/s")
    ax.loglog(x, np.minimum(mpeak, achievable_bandwidth(device) * x), ":", color="gray",
              label="achievable bandwidth")
    total = sum(p[2] for p in pts) or 1.0
    kinds = sorted({p[3] for p in pts})
    cmap = plt.get_cmap("tab10")
    for i, k in enumerate(kinds):
        sel = [p for p in pts if p[3] == k]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel],
                   s=[20 + 400 * p[2] / total for p in sel], alpha=0.6, color=cmap(i % 10),
                   label=k, edgecolors="k", linewidths=0.3)
    ax.axvline(device.ridge_point(dtype), color="r", lw=0.8, alpha=0.5)
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(title or f"{result.workload} {result.phase} on {device.name} "
                 f"(ridge {device.ridge_point(dtype):.0f} FLOP/B)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    out = Path(out)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def breakdown_plot(result: Result, out: str | Path, title: str | None = None) -> Path:
    """Time per op kind (summed over op instances, as :meth:`Result.by_kind`), each bar
    labelled with its share of the busy time and the bound that dominates it."""
    plt = _plt()
    kinds = result.by_kind()
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.42 * max(1, len(kinds))))
    names = [k["kind"] for k in kinds][::-1]
    times = [k["latency_s"] * 1e3 for k in kinds][::-1]
    colors = {"compute": "#d62728", "memory": "#1f77b4", "communication": "#2ca02c"}
    bars = ax.barh(names, times, color=[colors.get(k["bound"], "#7f7f7f") for k in kinds][::-1])
    for b, k in zip(bars, kinds[::-1], strict=True):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2,
                f" {k['share']:.0%} ({k['bound']}-bound, {k['count']} ops)",
                va="center", fontsize=8)
    ax.set_xlabel("time summed over op instances (ms)")
    ax.set_xlim(0, max(times + [1e-9]) * 1.6)
    ax.set_title(title or f"{result.workload} on {result.arch}: time by op kind", fontsize=9)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
