"""Predicted vs measured: per-op errors, summaries per op class, plots and a markdown report.

Every ``"op"`` record of a dataset is costed with :func:`simulator.api.predict_op` (as measured:
over the input sets it rotated, :func:`record_sets`) and every
``"e2e"`` record is run with :func:`simulator.api.simulate`; an op the simulator cannot cost
(unknown kind, no cost formula for the family, a dtype the device cannot run) is listed in
:attr:`Comparison.unsupported` with the reason, never dropped silently.

Definitions (errors are fractions: 0.1 = 10 %)

* ``error = predicted / measured - 1`` (positive: the simulator is pessimistic, too slow).
* MAPE = mean of ``|error|``; median APE = median of ``|error|``; worst = the largest ``|error|``
  with its id; bias = mean of ``error`` and ``log_bias`` = median of ``log(predicted/measured)``
  (robust to outliers; ``exp(log_bias) - 1`` is the typical ratio as a fraction).
* Op class = ``kind[/gemv|gemm]/bound``: the op kind, for matmuls a shape class (``gemv`` when
  ``min(m, n) <= 16``, else ``gemm``) and the bound the simulator predicts (``compute``,
  ``memory``, ``latency``); end-to-end runs are class ``e2e``.

Examples
--------
>>> s = summarize([Row("a", "op", "matmul", "", "matmul/gemm/compute", "", 1.2, 1.0, 0.2,
...                    "compute"), Row("b", "op", "add", "", "elementwise/memory", "", 0.9, 1.0,
...                    -0.1, "memory")])
>>> round(s.mape, 6), round(s.bias, 6), s.worst_id
(0.15, 0.05, 'a')
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.api import RunOptions, predict_op, resolve_system, simulate
from simulator.arch.spec import System
from simulator.errors import HwsimError
from simulator.frozen import FrozenMap
from simulator.mapping.gpu import kernel_time
from simulator.units import format_quantity
from simulator.validate.dataset import Dataset, Measurement, load_dataset, shape_key
from workloads.ops import MatMul, Op, op_from_dict

if TYPE_CHECKING:
    from simulator.arch.calibration import CalibrationProfile

__all__ = ["Row", "Summary", "Unsupported", "Comparison", "compare", "summarize", "op_class",
           "shape_class", "record_op", "record_sets", "plot_scatter", "plot_error_by_class",
           "write_report", "write_csv", "default_report_dir", "metric_rows", "op_power_w",
           "result_device_energy",
           "GEMV_MAX"]

_TIME_PARAMS = ("launch_overhead", "kernel_startup", "pipeline_latency",  # shown in seconds
                "graph_launch_gap", "eager_dispatch")
GEMV_MAX = 16  # min(m, n) at or below this is a GEMV-like (skinny) matmul
_RUN_FIELDS = ("phase", "batch", "seq", "context", "dtype", "weight_dtype", "kv_dtype", "tp",
               "image_size", "fuse")


@dataclass(frozen=True)
class Row:
    """One compared record; times in seconds, ``error = predicted / measured - 1``."""

    id: str
    mode: str  # "op" | "e2e"
    kind: str
    group: str
    op_class: str
    shape_key: str
    predicted_s: float
    measured_s: float
    error: float
    bound: str
    note: str = ""
    predicted_energy_j: float | None = None
    measured_energy_j: float | None = None
    predicted_power_w: float | None = None
    measured_power_w: float | None = None

    @property
    def log_ratio(self) -> float:
        return math.log(self.predicted_s / self.measured_s)

    @property
    def energy_error(self) -> float | None:
        """``predicted / measured - 1`` of the energy per call (None unless both are known)."""
        return _ratio_error(self.predicted_energy_j, self.measured_energy_j)

    @property
    def power_error(self) -> float | None:
        """``predicted / measured - 1`` of the average power (None unless both are known)."""
        return _ratio_error(self.predicted_power_w, self.measured_power_w)


def _ratio_error(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not meas > 0 or not pred > 0:
        return None
    return pred / meas - 1.0


@dataclass(frozen=True)
class Summary:
    """Error statistics of a set of rows (fractions; NaN and ``count == 0`` when empty)."""

    label: str
    count: int
    mape: float
    median_ape: float
    worst_error: float
    worst_id: str
    bias: float  # mean of errors
    log_bias: float  # median of log(predicted / measured)


@dataclass(frozen=True)
class Unsupported:
    """A record the simulator could not predict, and why."""

    id: str
    kind: str
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Predicted vs measured for one dataset on one architecture.

    ``overall`` summarises the op rows, ``e2e`` the end-to-end rows, ``by_class`` every op
    class (and ``e2e``). ``calibration`` is the profile applied, if any.
    """

    arch: str
    device: str
    family: str
    dataset: str
    meta: Mapping[str, Any]
    rows: tuple[Row, ...]
    unsupported: tuple[Unsupported, ...]
    overall: Summary
    e2e: Summary
    by_class: Mapping[str, Summary]
    calibration: CalibrationProfile | None = field(default=None, compare=False)
    spread: float = math.nan  # median (p90 - p10) / median of the measured ops, if recorded
    timing: str = "wall"  # what the measured times are: "wall" (harness loop) or "kernel"
    by_kind: Mapping[str, Summary] = field(default_factory=dict)
    by_group: Mapping[str, Summary] = field(default_factory=dict)
    energy: Mapping[str, Summary] = field(default_factory=dict)  # overall and per op class
    power: Mapping[str, Summary] = field(default_factory=dict)

    def op_rows(self) -> list[Row]:
        return [r for r in self.rows if r.mode == "op"]

    def e2e_rows(self) -> list[Row]:
        return [r for r in self.rows if r.mode == "e2e"]

    def worst(self, n: int = 10) -> list[Row]:
        """The ``n`` op rows with the largest ``|error|``."""
        return sorted(self.op_rows(), key=lambda r: -abs(r.error))[:n]


# -- classes and summaries -------------------------------------------------------------------
def shape_class(op: Op) -> str:
    """``"gemv"`` for a matmul with ``min(m, n) <= 16``, ``"gemm"`` for other matmuls, else
    ``""``."""
    if isinstance(op, MatMul):
        return "gemv" if min(op.m, op.n) <= GEMV_MAX else "gemm"
    return ""


def op_class(op: Op, bound: str) -> str:
    """``kind[/gemv|gemm]/bound``, e.g. ``matmul/gemm/compute`` or ``elementwise/memory``."""
    sc = shape_class(op)
    return "/".join(p for p in (op.kind, sc, bound) if p)


def summarize(rows: Sequence[Row], label: str = "overall") -> Summary:
    """MAPE, median APE, worst error (with its id) and signed biases of ``rows``."""
    if not rows:
        nan = math.nan
        return Summary(label, 0, nan, nan, nan, "", nan, nan)
    errs = [r.error for r in rows]
    abs_errs = [abs(e) for e in errs]
    w = max(range(len(rows)), key=lambda i: abs_errs[i])
    return Summary(label=label, count=len(rows), mape=sum(abs_errs) / len(rows),
                   median_ape=statistics.median(abs_errs), worst_error=errs[w],
                   worst_id=rows[w].id, bias=sum(errs) / len(rows),
                   log_bias=statistics.median(r.log_ratio for r in rows))


def _by_class(rows: Sequence[Row], key: str = "op_class") -> dict[str, Summary]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(getattr(r, key), []).append(r)
    return {c: summarize(groups[c], c) for c in sorted(groups)}


def metric_rows(rows: Iterable[Row], metric: str) -> list[Row]:
    """Rows re-expressed for ``metric`` (``energy``: J per call, ``power``: W) where both the
    prediction and the measurement exist: ``predicted_s``/``measured_s``/``error`` then hold
    that metric, so :func:`summarize` gives its MAPE and bias."""
    out = []
    for r in rows:
        p, m = (r.predicted_energy_j, r.measured_energy_j) if metric == "energy" else \
            (r.predicted_power_w, r.measured_power_w)
        err = _ratio_error(p, m)
        if err is not None:
            assert p is not None and m is not None
            out.append(replace(r, predicted_s=p, measured_s=m, error=err))
    return out


def _metric_summaries(rows: Sequence[Row], metric: str) -> dict[str, Summary]:
    """``{"overall": ..., "e2e": ..., <op class>: ...}`` of ``metric`` (empty without data)."""
    mr = metric_rows(rows, metric)
    if not mr:
        return {}
    ops = [r for r in mr if r.mode == "op"]
    out = {"overall": summarize(ops, "overall")} if ops else {}
    return {**out, **_by_class(mr)}


# -- predicting records ----------------------------------------------------------------------
def _record_shape_key(rec: Measurement) -> str:
    return rec.shape_key or (shape_key(rec.op) if rec.op else "")


def record_sets(rec: Measurement) -> int | None:
    """How many input sets an ``"op"`` record's measurement rotated over (``extra.sets``), or
    None if it does not say.

    The prediction of such a record is costed as measured (``MapOptions.rotated_sets``): the
    harness rotates inputs so their total exceeds the last-level cache, so a small op's
    operands come from DRAM, not warm from a cache as in a graph.
    """
    sets = (rec.extra or {}).get("sets") if rec.mode == "op" else None
    return sets if isinstance(sets, int) and not isinstance(sets, bool) and sets >= 1 else None


def record_op(rec: Measurement) -> Op:
    """The op of an ``"op"`` record (JSON lists become tuples, so the op is hashable).

    Raises ValueError naming an unknown kind or field.
    """
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in (rec.op or {}).items()}
    return op_from_dict(d)


def op_power_w(device: Any, cost: Any) -> float | None:
    """Predicted device power (W) while ``cost`` runs back to back, as a measurement loop runs
    it: :func:`simulator.power.op_power_w` where the power model exists, else the device's
    static power plus the op's dynamic energy over its latency; None without a latency."""
    if not cost.latency_s > 0:
        return None
    try:
        from simulator.power import op_power_w as _power
        from simulator.power import power_model
    except ImportError:
        _power = None
    if _power is not None:
        try:
            return float(_power(cost, power_model(device)))
        except (HwsimError, KeyError, ValueError, AttributeError, TypeError):
            pass  # a family the power model does not price: the static + dynamic estimate
    static = getattr(getattr(device, "power", None), "static_w", None)
    return None if static is None else float(static) + cost.energy_j / cost.latency_s


def _num(x: Any) -> float | None:
    """A per-device power or energy figure as one number (a mapping or list: its mean)."""
    if isinstance(x, Mapping):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        vals = [float(v) for v in x if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return sum(vals) / len(vals) if vals else None
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def result_device_energy(res: Any) -> tuple[float | None, float | None]:
    """(energy J, average power W) of the first accelerator of a Result (what a measurement
    on one device reads): ``device_power_w`` where the Result has it, else its per-device
    record, else the whole run's."""
    per = getattr(res, "per_device", ()) or ()
    energy = per[0].energy_j if per else res.energy_j
    power = _num(getattr(res, "device_power_w", None))
    if power is None:
        power = per[0].avg_power_w if per else res.avg_power_w
    return (float(energy) if energy else None), (float(power) if power else None)


def _predict_record_op(rec: Measurement, system: System, timing: str = "wall"
                       ) -> tuple[Row | None, Unsupported | None]:
    kind = rec.kind or str((rec.op or {}).get("kind", ""))
    try:
        op = record_op(rec)
    except ValueError as e:
        return None, Unsupported(rec.id, kind, f"invalid op: {e}")
    try:
        cost = predict_op(op, system, rotated_sets=record_sets(rec),
                          timing=None if timing == "wall" else timing)
    except HwsimError as e:
        return None, Unsupported(rec.id, op.kind, str(e))
    t = kernel_time(cost) if timing == "kernel" else cost.latency_s
    if timing == "eager":  # a loop of the same eager op: the slower of its host and device
        t = max(t, float(cost.details.get("host_s", 0.0)))
    if not t > 0:
        return None, Unsupported(rec.id, op.kind, f"predicted time {t!r} s")
    power = op_power_w(system.device, cost) if (rec.energy_j or rec.avg_power_w) else None
    row = Row(id=rec.id, mode="op", kind=op.kind, group=rec.group,
              op_class=op_class(op, cost.bound), shape_key=_record_shape_key(rec),
              predicted_s=t, measured_s=rec.time_s,
              error=t / rec.time_s - 1.0, bound=cost.bound,
              predicted_energy_j=power * cost.latency_s if power else None,
              measured_energy_j=rec.energy_j, predicted_power_w=power,
              measured_power_w=rec.avg_power_w)
    return row, None


def _predict_record_e2e(rec: Measurement, system: System, timing: str = "wall"
                        ) -> tuple[Row | None, Unsupported | None]:
    w = dict(rec.workload or {})
    name = w.get("name")
    if not name:
        return None, Unsupported(rec.id, "e2e", "workload: missing field 'name'")
    if "fused" in w and "fuse" not in w:  # measure.py records whether it fused epilogues
        w["fuse"] = w["fused"]
    opts = RunOptions(**{k: w[k] for k in _RUN_FIELDS if w.get(k) is not None},
                      timing=None if timing == "wall" else timing)
    try:
        res = simulate(str(name), system, opts)
    except (HwsimError, ValueError) as e:
        return None, Unsupported(rec.id, "e2e", f"{name}: {e}")
    by_bound: dict[str, float] = {}
    for r in res.records:
        by_bound[r.bound] = by_bound.get(r.bound, 0.0) + r.latency_s
    bound = max(by_bound, key=lambda b: by_bound[b]) if by_bound else ""
    skipped = (rec.extra or {}).get("skipped_ops")
    note = (f"measured without {skipped} op(s) the executor could not run; the prediction "
            "includes them" if skipped else "")
    pe, pp = result_device_energy(res) if (rec.energy_j or rec.avg_power_w) else (None, None)
    row = Row(id=rec.id, mode="e2e", kind=rec.kind or "e2e", group=rec.group or str(name),
              op_class="e2e", shape_key="", predicted_s=res.latency_s, measured_s=rec.time_s,
              error=res.latency_s / rec.time_s - 1.0, bound=bound, note=note,
              predicted_energy_j=pe, measured_energy_j=rec.energy_j, predicted_power_w=pp,
              measured_power_w=rec.avg_power_w)
    return row, None


def compare(dataset: Dataset | str | Path, arch: str | System,
            calibration: CalibrationProfile | None = None, *,
            timing: str | None = None) -> Comparison:
    """Predict every record of ``dataset`` on ``arch`` (with ``calibration`` applied if given)
    and compare with the measured median times; records with measured energy or power are
    compared on those too (:attr:`Comparison.energy`, :attr:`Comparison.power`).

    ``timing`` (default: the dataset's ``meta["timing"]``, else ``wall``) says what the
    measured times are: ``wall`` (a harness loop, launch included: the op's latency is
    compared) or ``kernel`` (device time from a profiler trace:
    :func:`simulator.mapping.gpu.kernel_time`, the latency less the launch overhead); or any
    timing of :mod:`simulator.timing` to predict under (``wall`` is ``stream``; ``eager``
    compares a loop of one op with the slower of its host dispatch and its device time).

    Raises
    ------
    HwsimError
        If the dataset cannot be read, or the calibration profile was fitted for another part.
    """
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    system = resolve_system(arch)
    if calibration is not None:
        system = calibration.apply(system)
    tm = timing or str(ds.meta.get("timing") or "wall")
    if tm not in ("wall", "kernel", "graph", "stream", "eager"):
        raise HwsimError(f"{ds.path}: timing: expected 'wall' or 'kernel' (or a --timing of "
                         f"graph, stream, eager), got {tm!r}")
    rows: list[Row] = []
    unsupported: list[Unsupported] = []
    for rec in ds.records:
        fn = _predict_record_op if rec.mode == "op" else _predict_record_e2e
        row, bad = fn(rec, system, tm)
        if row is not None:
            rows.append(row)
        if bad is not None:
            unsupported.append(bad)
    ops = [r for r in rows if r.mode == "op"]
    e2e = [r for r in rows if r.mode == "e2e"]
    return Comparison(arch=system.name, device=system.device.name, family=system.device.family,
                      dataset=str(ds.path), meta=FrozenMap(dict(ds.meta)),
                      rows=tuple(rows), unsupported=tuple(unsupported),
                      overall=summarize(ops, "overall"), e2e=summarize(e2e, "e2e"),
                      by_class=FrozenMap(_by_class(rows)), calibration=calibration,
                      spread=_spread(ds.ops()), timing=tm,
                      by_kind=FrozenMap(_by_class(ops, "kind")),
                      by_group=FrozenMap(_by_class(ops, "group")),
                      energy=FrozenMap(_metric_summaries(rows, "energy")),
                      power=FrozenMap(_metric_summaries(rows, "power")))


# -- plots -----------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _title(c: Comparison) -> str:
    dev = (c.meta.get("device") or {}).get("name", "?")
    cal = " (calibrated)" if c.calibration is not None else ""
    return f"{c.arch}{cal} vs measured on {dev}"


def plot_scatter(comparison: Comparison, out: str | Path) -> Path:
    """Log-log predicted vs measured time per row, coloured by op class, with the y = x line
    and +-10 % / +-25 % bands. Returns the written file."""
    import numpy as np

    out = Path(out)
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot(1, 1, 1)
    rows = list(comparison.rows)
    if rows:
        lo = min(min(r.predicted_s, r.measured_s) for r in rows) / 1.5
        hi = max(max(r.predicted_s, r.measured_s) for r in rows) * 1.5
    else:
        lo, hi = 1e-6, 1.0
    x = np.logspace(math.log10(lo), math.log10(hi), 50)
    ax.fill_between(x, x * 0.75, x * 1.25, color="0.85", lw=0, label="+-25 %")
    ax.fill_between(x, x * 0.9, x * 1.1, color="0.7", lw=0, label="+-10 %")
    ax.plot(x, x, "k-", lw=1, label="predicted = measured")
    classes = sorted({r.op_class for r in rows})
    for cls, col in zip(classes, _colors(len(classes))):
        sel = [r for r in rows if r.op_class == cls]
        ax.scatter([r.measured_s for r in sel], [r.predicted_s for r in sel], s=22,
                   color=col, edgecolors="k", linewidths=0.3, alpha=0.85,
                   marker="D" if cls == "e2e" else "o", label=f"{cls} ({len(sel)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured time (s)")
    ax.set_ylabel("predicted time (s)")
    o = comparison.overall
    mape = f", MAPE {o.mape:.1%} over {o.count} ops" if o.count else ""
    ax.set_title(_title(comparison) + mape, fontsize=9)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def plot_error_by_class(comparison: Comparison, out: str | Path) -> Path:
    """Bars of MAPE and signed bias (mean error) per op class, in percent. Returns the file."""
    import numpy as np

    out = Path(out)
    summaries = list(comparison.by_class.values())
    fig = _figure(max(6.0, 0.9 * len(summaries) + 2), 4.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(summaries))
    mape = [s.mape * 100 for s in summaries]
    bias = [s.bias * 100 for s in summaries]
    ax.bar(x - 0.2, mape, 0.4, label="MAPE", color="tab:blue")
    ax.bar(x + 0.2, bias, 0.4, label="signed bias (mean error)", color="tab:orange")
    for xi, m, s in zip(x, mape, summaries):
        ax.annotate(f"n={s.count}", (xi - 0.2, m), ha="center", va="bottom", fontsize=7)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([s.label for s in summaries], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("percent (positive bias: predicted slower than measured)")
    ax.set_title(_title(comparison), fontsize=9)
    ax.grid(True, axis="y", lw=0.3, alpha=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


# -- files -----------------------------------------------------------------------------------
def write_csv(comparison: Comparison, out: str | Path) -> Path:
    """One line per row (times in seconds) and one per unsupported record."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = ["id", "mode", "kind", "group", "op_class", "shape_key", "predicted_s",
            "measured_s", "error", "bound", "note", "unsupported", "predicted_energy_j",
            "measured_energy_j", "predicted_power_w", "measured_power_w"]
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in comparison.rows:
            w.writerow([r.id, r.mode, r.kind, r.group, r.op_class, r.shape_key,
                        repr(r.predicted_s), repr(r.measured_s), repr(r.error), r.bound, r.note,
                        "", *("" if v is None else repr(v) for v in (
                            r.predicted_energy_j, r.measured_energy_j, r.predicted_power_w,
                            r.measured_power_w))])
        for u in comparison.unsupported:
            w.writerow([u.id, "", u.kind, "", "", "", "", "", "", "", "", u.reason,
                        "", "", "", ""])
    return out


def _pct(x: float, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:+.1f} %" if signed else f"{x * 100:.1f} %"


def _t(x: float) -> str:
    return format_quantity(x, "s") if x and math.isfinite(x) else "-"


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return lines


def _summary_row(s: Summary) -> list[Any]:
    typical = math.exp(s.log_bias) - 1 if math.isfinite(s.log_bias) else math.nan
    return [s.label, s.count, _pct(s.mape), _pct(s.median_ape), _pct(s.bias, True),
            _pct(typical, True), f"{_pct(s.worst_error, True)} ({s.worst_id})" if s.count else "-"]


_SUMMARY_HEADER = ("class", "n", "MAPE", "median APE", "bias (mean)", "bias (median ratio)",
                   "worst (id)")


def _meta_lines(c: Comparison) -> list[str]:
    m = c.meta
    dev = m.get("device") or {}
    lines = [f"- dataset: `{c.dataset}` (schema {m.get('schema')}, suite "
             f"{m.get('suite', '-')}, created {m.get('created')})",
             f"- measured on: **{dev.get('name', '?')}** ({dev.get('kind', '?')})"]
    props = dev.get("properties") or {}
    if props:
        lines.append("- device properties: " + ", ".join(f"{k}={v}" for k, v in props.items()))
    sw = m.get("software") or {}
    if sw:
        lines.append("- software: " + ", ".join(f"{k} {v}" for k, v in sw.items()
                                                if v is not None))
    st = m.get("settings") or {}
    if st:
        lines.append("- settings: " + ", ".join(f"{k}={v}" for k, v in st.items()))
    lines.append(f"- compared with: **{c.arch}** (device {c.device}, family {c.family}), "
                 + ("calibrated with the profile below" if c.calibration is not None
                    else "uncalibrated (spec parameters)"))
    return lines


def _spread_line(c: Comparison) -> list[str]:
    if not math.isfinite(c.spread):
        return []
    return [f"- measurement spread: median (p90 - p10) / median = {_pct(c.spread)} "
            "(errors well below this are noise)"]


def _spread(records: Iterable[Measurement]) -> float:
    """Median of (p90 - p10) / median over records that recorded both percentiles."""
    s = [(r.time_p90 - r.time_p10) / r.time_s for r in records
         if r.time_p10 is not None and r.time_p90 is not None]
    return statistics.median(s) if s else math.nan


def _calibration_lines(c: Comparison) -> list[str]:
    p = c.calibration
    if p is None:
        return []
    lines = ["", "## Calibration", "",
             f"Profile `{p.source or '(in memory)'}` ({p.SCHEMA}), fitted for **{p.arch}** "
             f"on {(p.device or {}).get('name', '?')} from `{p.dataset}` ({p.created}).", ""]
    rows: list[list[Any]] = []
    stderr = (p.stats or {}).get("stderr", {})
    for name in p.fitted:
        v = p.value(name)
        se = stderr.get(name)
        fmt = (lambda x: _t(x)) if name in _TIME_PARAMS else (lambda x: f"{x:.4g}")
        rows.append([name, fmt(v), "fitted", fmt(se) if se is not None else "-"])
    for name, info in (p.kept or {}).items():
        v = info.get("value")
        shown = "-" if v is None else (_t(v) if name in _TIME_PARAMS else f"{v:.4g}")
        rows.append([name, shown, f"kept: {info.get('reason', '')}", "-"])
    lines += _table(("parameter", "value", "status", "std. error"), rows)
    st = p.stats or {}
    fit_rows = []
    for part in ("train", "holdout"):
        s = st.get(part) or {}
        if s:
            fit_rows.append([part, s.get("count", 0), _pct(s.get("mape_before", math.nan)),
                             _pct(s.get("mape_after", math.nan))])
    if fit_rows:
        lines += ["", "Fit (shapes split into disjoint train and held-out sets, by op class):",
                  ""]
        lines += _table(("set", "n", "MAPE before", "MAPE after"), fit_rows)
    per_cls = st.get("classes") or {}
    if per_cls:
        lines += ["", "Held-out error per op class:", ""]
        lines += _table(("class", "train n", "held-out n", "held-out MAPE before",
                         "held-out MAPE after"),
                        [[k, v.get("train_count", 0), v.get("holdout_count", 0),
                          _pct(v.get("holdout_mape_before", math.nan)),
                          _pct(v.get("holdout_mape_after", math.nan))]
                         for k, v in per_cls.items()])
    band = p.band or {}
    if band.get("overall"):
        b = band["overall"]
        lines += ["", f"Uncertainty band ({band.get('source', 'holdout')} residuals after "
                  f"calibration, |predicted/measured - 1|): 68 % of ops within "
                  f"{_pct(b.get('p68'))}, 95 % within {_pct(b.get('p95'))} (n={b.get('n')}).",
                  ""]
        lines += _table(("class", "n", "p68", "p95"),
                        [[k, v.get("n"), _pct(v.get("p68")), _pct(v.get("p95"))]
                         for k, v in (band.get("by_class") or {}).items()])
    held = set(p.holdout_shape_keys)
    if held and Path(p.dataset).resolve() == Path(c.dataset).resolve():
        hr = [r for r in c.op_rows() if r.shape_key in held]
        s = summarize(hr, "held-out")
        lines += ["", f"On this dataset's held-out shapes: MAPE {_pct(s.mape)} over {s.count} "
                  f"ops (bias {_pct(s.bias, True)})."]
    return lines


def _energy_lines(c: Comparison) -> list[str]:
    """The energy and power error tables, or why there are none."""
    if not c.energy and not c.power:
        from simulator.validate.energy import energy_note

        return [energy_note(c.meta.get("energy")) + " (no energy or power to compare)."]
    lines = ["Predicted energy per call and average power (the device while the op runs "
             "back to back) against the measured ones (NVML board power on a GPU, RAPL package "
             "power on a CPU, idle included).", ""]
    for title, sums in (("energy per call", c.energy), ("average power", c.power)):
        if sums:
            lines += [f"{title}:", ""]
            lines += _table(_SUMMARY_HEADER, [_summary_row(s) for s in sums.values()])
            lines.append("")
    return lines


def default_report_dir(dataset: str | Path, arch: str, calibrated: bool = False,
                       base: str | Path | None = None) -> Path:
    """Where a report goes when no folder is given:
    ``<base, default the working directory>/hwsim-reports/<dataset name>/<arch>[-calibrated]``.

    Never inside the dataset (which may be a shipped, read-only one) or the installed package.

    Examples
    --------
    >>> default_report_dir("data/cpu-host-ops", "cpu-host", base="/tmp").as_posix()
    '/tmp/hwsim-reports/cpu-host-ops/cpu-host'
    >>> default_report_dir("d", "specs/my.yaml", calibrated=True, base="/tmp").name
    'my-calibrated'
    """
    name = Path(dataset).resolve().name or "dataset"
    part = Path(arch).name
    if part.endswith((".yaml", ".yml")):
        part = Path(part).stem
    return (Path(base) if base is not None else Path.cwd()) / "hwsim-reports" / name / \
        (part + ("-calibrated" if calibrated else ""))


def write_report(comparison: Comparison, out_dir: str | Path,
                 title: str = "hwsim validation report") -> Path:
    """Write ``report.md``, ``comparison.csv``, ``scatter.png`` and ``error_by_class.png``
    under ``out_dir`` (created with its parents; see :func:`default_report_dir` for where
    the CLI puts it by default); returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = comparison
    write_csv(c, out / "comparison.csv")
    plot_scatter(c, out / "scatter.png")
    plot_error_by_class(c, out / "error_by_class.png")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"# {title}", "", f"Generated by hwsim on {now}. Errors are "
             "`predicted / measured - 1` (positive: the simulator predicts slower than "
             "measured); times are medians of repeated runs.", "", "## Setup", ""]
    lines += _meta_lines(c) + _spread_line(c)
    lines += ["", "## Overall", ""]
    overall = [_summary_row(c.overall)]
    if c.e2e.count:
        overall.append(_summary_row(c.e2e))
    lines += _table(_SUMMARY_HEADER, overall)
    lines += ["", f"{c.overall.count} ops and {c.e2e.count} end-to-end runs compared, "
              f"{len(c.unsupported)} unsupported.", "", "## By op class", "",
              "Class = op kind, for matmuls `gemv` (min(m, n) <= 16) or `gemm`, and the bound "
              "the simulator predicts.", ""]
    lines += _table(_SUMMARY_HEADER, [_summary_row(s) for s in c.by_class.values()])
    if c.meta.get("source"):
        lines += ["", "## By op kind", ""]
        lines += _table(_SUMMARY_HEADER, [_summary_row(s) for s in c.by_kind.values()])
        lines += ["", "## By profiled op", ""]
        lines += _table(_SUMMARY_HEADER, [_summary_row(s) for s in c.by_group.values()])
    lines += ["", "## Energy and power", ""]
    lines += _energy_lines(c)
    lines += ["", "## Worst 10 ops", ""]
    lines += _table(("id", "class", "group", "predicted", "measured", "error"),
                    [[r.id, r.op_class, r.group or "-", _t(r.predicted_s), _t(r.measured_s),
                      _pct(r.error, True)] for r in c.worst(10)])
    if c.e2e.count:
        lines += ["", "## End-to-end runs", ""]
        lines += _table(("id", "workload", "predicted", "measured", "error", "dominant bound",
                         "note"),
                        [[r.id, r.group, _t(r.predicted_s), _t(r.measured_s),
                          _pct(r.error, True), r.bound or "-", r.note or "-"]
                         for r in c.e2e_rows()])
    lines += ["", "## Unsupported", ""]
    if c.unsupported:
        lines += _table(("id", "kind", "reason"),
                        [[u.id, u.kind, u.reason] for u in c.unsupported])
    else:
        lines.append("None: every record was predicted.")
    lines += ["", "## Plots", "", "![predicted vs measured](scatter.png)", "",
              "![error by op class](error_by_class.png)"]
    lines += _calibration_lines(c)
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
