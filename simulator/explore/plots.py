"""Static plots of explored design spaces: Pareto scatters, parallel coordinates, sensitivities.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting never touches
global backend state and works headless or from worker threads. matplotlib is imported lazily
so that the explorer itself does not depend on it. The output format follows the path suffix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.explore.pareto import pareto_mask

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["parallel_coordinates", "pareto_scatter", "sensitivity_bars"]

_ALL = "0.7"  # grey for every point / line
_FRONT = "tab:red"  # the (pairwise) front
_FRONT_K = "tab:blue"  # the full k-objective front in pairwise panels


def _figure(width: float, height: float) -> Any:
    """A new Figure attached to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} {missing!r} not in the DataFrame columns {list(df.columns)!r}")


def _axis_label(name: str, sense: str) -> str:
    return f"{name} ({'lower' if sense == 'min' else 'higher'} is better)"


def _draw_pair(ax: Any, x: np.ndarray, y: np.ndarray, senses: Sequence[str],
               front_k: np.ndarray | None, labels: np.ndarray | None,
               front_name: str = "Pareto front") -> None:
    """Scatter all points, highlight the 2-D front of (x, y) and, if given, the k-D front."""
    ax.scatter(x, y, s=12, c=_ALL, label="all points", zorder=1)
    if front_k is not None:
        ax.scatter(x[front_k], y[front_k], s=40, facecolors="none", edgecolors=_FRONT_K,
                   linewidths=1.2, label="front (all objectives)", zorder=3)
    front = pareto_mask(np.column_stack([x, y]), senses)
    fx, fy = x[front], y[front]
    order = np.lexsort((fy if senses[1] == "min" else -fy, fx))
    fx, fy = fx[order], fy[order]
    # the step traces the edge of the dominated region: it leaves each point along x first
    # when x is minimised, and along y first when x is maximised
    where = "post" if senses[0] == "min" else "pre"
    ax.step(fx, fy, where=where, color=_FRONT, linewidth=1.2, zorder=2)
    ax.scatter(fx, fy, s=18, c=_FRONT, label=front_name, zorder=4)
    if labels is not None:
        for xi, yi, text in zip(fx, fy, labels[front][order]):
            ax.annotate(str(text), (xi, yi), xytext=(3, 3), textcoords="offset points",
                        fontsize=7)


def pareto_scatter(df: pd.DataFrame, objectives: Sequence[str], senses: Sequence[str],
                   path: str | Path, *, label: str | None = None,
                   title: str | None = None) -> Path:
    """Scatter the design points over the objectives with the Pareto front highlighted.

    Two objectives give one panel with the front joined by a step line along the first
    objective; three or more give one panel per objective pair, each with that pair's own
    front, and the full k-objective front circled. Rows with NaN/inf in any objective are
    left out. ``label`` names a column whose values annotate the front points.
    """
    objectives = list(objectives)
    senses = list(senses)
    if len(objectives) < 2:
        raise ValueError(f"pareto_scatter needs at least 2 objectives, got {objectives!r}")
    if len(senses) != len(objectives):
        raise ValueError(f"got {len(senses)} senses {senses!r} for objectives {objectives!r}")
    _check_columns(df, objectives, "objective column(s)")
    if label is not None:
        _check_columns(df, [label], "label column")
    values = df[objectives].to_numpy(dtype=float)
    ok = np.isfinite(values).all(axis=1)
    values = values[ok]
    labels = df[label].to_numpy()[ok] if label is not None else None
    k = len(objectives)

    if k == 2:
        fig = _figure(6.4, 4.8)
        ax = fig.add_subplot()
        _draw_pair(ax, values[:, 0], values[:, 1], senses, None, labels)
        ax.set_xlabel(_axis_label(objectives[0], senses[0]))
        ax.set_ylabel(_axis_label(objectives[1], senses[1]))
        ax.legend(fontsize=8)
        axes = [ax]
    else:
        front_k = pareto_mask(values, senses)
        pairs = list(combinations(range(k), 2))
        ncols = math.ceil(math.sqrt(len(pairs)))
        nrows = math.ceil(len(pairs) / ncols)
        fig = _figure(4.0 * ncols, 3.4 * nrows)
        axes = []
        for idx, (i, j) in enumerate(pairs):
            ax = fig.add_subplot(nrows, ncols, idx + 1)
            _draw_pair(ax, values[:, i], values[:, j], [senses[i], senses[j]], front_k, labels,
                       "front of this pair")
            ax.set_xlabel(_axis_label(objectives[i], senses[i]), fontsize=8)
            ax.set_ylabel(_axis_label(objectives[j], senses[j]), fontsize=8)
            axes.append(ax)
        axes[0].legend(fontsize=7)
    if len(values) == 0:
        for ax in axes:
            ax.text(0.5, 0.5, "no finite points", ha="center", va="center",
                    transform=ax.transAxes)
    dropped = int((~ok).sum())
    suptitle = title or "Pareto front"
    if dropped:
        suptitle += f" ({dropped} failed point{'s' if dropped != 1 else ''} not shown)"
    fig.suptitle(suptitle)
    return _save(fig, path)


def parallel_coordinates(df: pd.DataFrame, columns: Sequence[str], path: str | Path, *,
                         color_by: str | None = None,
                         highlight: pd.Series | None = None) -> Path:
    """One line per row across ``columns``, each column rescaled to [0, 1].

    Constant columns sit at 0.5; the real min and max of every column are written at the
    ends of its axis. ``color_by`` colours lines by a column (a colour bar for numbers,
    a legend for categories). ``highlight`` is a bool mask (aligned on the index) whose rows
    are drawn on top in colour while the rest fade to grey.
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from pandas.api.types import is_numeric_dtype

    columns = list(columns)
    if not columns:
        raise ValueError("parallel_coordinates needs at least one column")
    _check_columns(df, columns, "column(s)")
    if color_by is not None:
        _check_columns(df, [color_by], "color_by column")
    data = df[columns].to_numpy(dtype=float)
    data[~np.isfinite(data)] = np.nan
    n, m = data.shape

    lo = np.full(m, np.nan)
    hi = np.full(m, np.nan)
    norm_data = np.full_like(data, np.nan)
    for j in range(m):
        col = data[:, j]
        fin = col[np.isfinite(col)]
        if len(fin) == 0:
            continue
        lo[j], hi[j] = fin.min(), fin.max()
        norm_data[:, j] = 0.5 if hi[j] == lo[j] else (col - lo[j]) / (hi[j] - lo[j])
        norm_data[np.isnan(col), j] = np.nan

    if highlight is None:
        hl = np.zeros(n, dtype=bool)
    elif hasattr(highlight, "reindex"):
        hl = highlight.reindex(df.index).fillna(False).to_numpy(dtype=bool)
    else:
        hl = np.asarray(highlight, dtype=bool)
        if hl.shape != (n,):
            raise ValueError(f"highlight has shape {hl.shape}, expected ({n},) for {n} rows")

    colors = np.tile(np.array([0.35, 0.35, 0.35, 1.0]), (n, 1))
    fig = _figure(max(6.4, 1.3 * m + 1.5), 4.8)
    ax = fig.add_subplot()
    legend_handles = []
    if color_by is not None:
        cvals = df[color_by]
        if is_numeric_dtype(cvals.dtype):
            cnum = cvals.to_numpy(dtype=float)
            fin = np.isfinite(cnum)
            cmin = cnum[fin].min() if fin.any() else 0.0
            cmax = cnum[fin].max() if fin.any() else 1.0
            cnorm = Normalize(vmin=cmin, vmax=cmax if cmax > cmin else cmin + 1.0)
            cmap = colormaps["viridis"]
            colors[fin] = cmap(cnorm(cnum[fin]))
            from matplotlib.cm import ScalarMappable

            fig.colorbar(ScalarMappable(norm=cnorm, cmap=cmap), ax=ax, label=color_by)
        else:
            from matplotlib.lines import Line2D

            cats = list(dict.fromkeys(cvals.astype(str)))
            cmap = colormaps["tab10"]
            lookup = {c: cmap(i % 10) for i, c in enumerate(cats)}
            colors = np.array([lookup[c] for c in cvals.astype(str)]).reshape(n, 4)
            legend_handles = [Line2D([], [], color=lookup[c], label=c) for c in cats[:10]]
    elif hl.any():
        colors[:] = (0.85, 0.1, 0.1, 1.0)

    xs = np.arange(m, dtype=float)
    segments = [np.column_stack([xs, row]) for row in norm_data]
    base = colors.copy()
    if hl.any():
        base[:] = (0.7, 0.7, 0.7, 1.0)
    base[:, 3] = 0.25 if hl.any() else min(1.0, max(0.05, 30.0 / max(n, 1)))
    rest = ~hl
    ax.add_collection(LineCollection([s for s, r in zip(segments, rest) if r],
                                     colors=base[rest], linewidths=0.8, zorder=1))
    if hl.any():
        ax.add_collection(LineCollection([s for s, h in zip(segments, hl) if h],
                                         colors=colors[hl], linewidths=1.8, zorder=3))
    if legend_handles:
        ax.legend(handles=legend_handles, title=color_by, fontsize=7, loc="upper right")

    for j in range(m):
        ax.axvline(j, color="black", linewidth=0.8, zorder=2)
        ax.text(j, -0.04, "-" if np.isnan(lo[j]) else f"{lo[j]:.4g}", ha="center", va="top",
                fontsize=7)
        ax.text(j, 1.04, "-" if np.isnan(hi[j]) else f"{hi[j]:.4g}", ha="center",
                va="bottom", fontsize=7)
    ax.set_xlim(-0.3, m - 1 + 0.3)
    ax.set_ylim(-0.12, 1.12)
    ax.set_xticks(xs, columns, rotation=20, ha="right")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    return _save(fig, path)


def sensitivity_bars(scores: Mapping[str, float], path: str | Path, *,
                     title: str | None = None) -> Path:
    """Horizontal bars of per-parameter sensitivity scores, largest at the top.

    NaN scores (e.g. a parameter that never varied) are listed at the bottom with no bar.
    """
    items = [(str(name), float(score)) for name, score in scores.items()]
    items.sort(key=lambda kv: (not math.isnan(kv[1]), kv[1] if not math.isnan(kv[1]) else 0.0))
    names = [name for name, _ in items]
    vals = np.array([0.0 if math.isnan(v) else v for _, v in items])
    fig = _figure(6.4, max(2.0, 0.3 * len(items) + 1.2))
    ax = fig.add_subplot()
    if items:
        ax.barh(np.arange(len(items)), vals, color="tab:blue")
        ax.set_yticks(np.arange(len(items)), names, fontsize=8)
        ax.axvline(0.0, color="black", linewidth=0.8)
    else:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("sensitivity score")
    ax.set_title(title or "Sensitivity")
    return _save(fig, path)
