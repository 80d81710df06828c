"""Calibration: fit a few physically meaningful efficiency factors of a device to measurements.

Parameters (names as in the spec's ``params``; SI units)

* ``compute_efficiency.<dtype>``: achievable fraction of the matrix peak for GEMM-like ops, one
  per compute class present in the data (the class the family looks up: the class a GPU or an
  array runs the dtype as, the op's own class on a CPU).
* ``bandwidth_efficiency``: achievable fraction of DRAM (and cache) bandwidth.
* ``vector_efficiency``: achievable fraction of the vector/special-function peak.
* ``launch_overhead``: fixed per-op cost in seconds.
* ``attention_efficiency`` (gpu family): fraction of the matrix peak in fused attention.
* ``kind_efficiency.<kind>``: achievable fraction of the model's estimate for one kind of
  kernel, one per streaming kind (elementwise, norm, softmax, pool, embedding, memcpy) and
  attention present in the data; it divides the op's busy time (see
  :mod:`simulator.mapping.common`). Not offered for attention on a family with
  ``attention_efficiency`` (the two are degenerate for compute-bound attention).

Only parameters the data can identify are fitted: a parameter is fitted when halving it (for an
overhead: doubling it, by at least 5 us) changes the predicted time of at least
:data:`MIN_OPS` training ops by 5 % or more; the others are kept at their spec values, with the
reason. A fraction that fails this at its spec value but moves that many ops at a tenth of it
(an op whose bound it would flip: ``vector_efficiency`` when every streaming op is predicted
memory-bound but some run compute-bound) is then fitted from that tenth, after the others,
and kept only if it lowers the training loss by 5 % and halving and doubling it at the
solution both pass the same test. Bounds: fractions in [0.01, 1], kind factors in [0.01, 4]
(a kind of kernel may beat the streaming estimate), overhead in [0, 1 ms].

Op records are predicted as they were measured: over the input sets the harness rotated
(``extra.sets``, see :func:`~simulator.validate.compare.record_sets`), so a small op's operands
come from DRAM when all the sets exceed the caches, not warm as in a graph.

The ``"op"`` records are split into train and held-out sets by :func:`shape_key` (every shape
wholly on one side), stratified by op class; the fit minimises the soft-L1 loss of
``log(predicted / measured)`` over the train set with :func:`scipy.optimize.least_squares`.
The held-out residuals after calibration give the uncertainty band (68th / 95th percentiles of
``|predicted / measured - 1|``), overall, per op class and per op kind.

A :class:`CalibrationProfile` is a versioned YAML file (schema ``hwsim.calibration/1``); it is
only applied when asked for (``compare(..., calibration=profile)`` or ``profile.apply(system)``)
and refuses a device other than the one it was fitted for unless forced.

Examples
--------
>>> from simulator.arch.loader import PARAM_SCHEMA, load_arch
>>> s = apply_params(load_arch("h100-sxm"), {"compute_efficiency": {"fp32": 0.5}})
>>> s.device.params["compute_efficiency"]["fp32"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from simulator.arch.calibration import (
    BOUNDS,
    CALIBRATABLE,
    SCHEMA,
    CalibrationProfile,
    _bounds_of,
    _nested,
    _plain,
    apply_params,
    band_for,
    flat_params,
)
from simulator.arch.loader import PARAM_SCHEMA, load_arch
from simulator.arch.params import default
from simulator.arch.spec import KIND_EFFICIENCY_KINDS, Device, System
from simulator.errors import HwsimError
from simulator.mapping.base import MapOptions
from simulator.mapping.gpu import kernel_time
from simulator.mapping.registry import cost_op
from simulator.predict import Predictor
from simulator.timing import apply_timing
from simulator.validate.compare import Comparison, Row, compare, record_op, record_sets
from simulator.validate.dataset import Dataset, Measurement, load_dataset
from workloads.ops import Collective, Op

__all__ = ["SCHEMA", "CALIBRATABLE", "BOUNDS", "MIN_OPS", "PRIOR_WEIGHT", "CalibrationProfile",
           "CalibrationResult", "apply_params", "fit", "split_by_shape", "band_for",
           "flat_params"]

MIN_OPS = 2            # training ops a parameter must move to be fitted
PRIOR_WEIGHT = 1.0     # weight of a parameter's log distance from its spec value (see fit)
_SENSITIVITY = 0.05    # ... each by at least this much in log time
_PROBE = 0.1           # a fraction halving does not identify is also tried at this multiple
_PROBE_GAIN = 0.05     # ... and fitted from there if that lowers the training loss this much
_MIN_OVERHEAD_STEP = 5e-6
_MIN_TIME_STEP = 5e-7  # ... for a kernel's fixed device times (kernel_startup, pipeline_latency)
_US = 1e-6             # times are optimised in microseconds (well-scaled)
#: Parameters in seconds (optimised in microseconds; perturbed by raising, not halving).
TIME_PARAMS = ("launch_overhead", "kernel_startup", "pipeline_latency", "graph_launch_gap",
               "eager_dispatch")


def _family_default(device: Device, name: str, op_cls: str = "") -> float:
    """The value a mapper uses for ``name`` when the spec does not set it (best effort)."""
    fam = device.family
    if name == "kind_efficiency":
        return 1.0
    if name in ("kernel_startup", "pipeline_latency"):
        return _gpu_fixed_time(device, name)
    if name == "compute_efficiency":
        table = device.params.get("compute_efficiency") or {}
        base = default(fam, "compute_efficiency")
        if fam == "cpu":
            cls = device.peak(op_cls, "matrix")[1]
            return float(table.get(cls, base)) * (default(fam, "emulation_penalty")
                                                  if cls != op_cls else 1.0)
        return float(base) if base is not None else 1.0
    return float(default(fam, name))


def _gpu_fixed_time(device: Device, name: str) -> float:
    """The GPU mapper's value of ``kernel_startup`` / ``pipeline_latency`` when the spec does
    not set it (derived from the memory latencies there)."""
    from simulator.mapping import gpu

    fn = getattr(gpu, "_startup" if name == "kernel_startup" else "_fill", None)
    if fn is not None:
        return float(fn(device))
    lat = device.dram.latency_s  # the mapper's documented defaults, should it move them
    return 2 * lat if name == "kernel_startup" else lat


def _current(device: Device, name: str) -> float:
    """The effective value of flat parameter ``name`` on ``device``."""
    if name.startswith("compute_efficiency."):
        d = name.split(".", 1)[1]
        table = device.params.get("compute_efficiency") or {}
        return float(table[d]) if d in table else _family_default(device, "compute_efficiency", d)
    if name.startswith("kind_efficiency."):
        table = device.params.get("kind_efficiency") or {}
        return float(table.get(name.split(".", 1)[1], 1.0))
    if name in device.params:
        return float(device.params[name])
    return _family_default(device, name)


def _efficiency_key(device: Device, op: Op) -> str | None:
    """The compute_efficiency key the family looks up for ``op``'s dtype (None if none)."""
    if op.flops().matrix <= 0:
        return None
    if device.family == "cpu":
        return op.dtype.compute_class
    cls = device.peak(op.dtype, "matrix")[1]
    return cls or op.dtype.compute_class


def _candidates(device: Device, ops: Sequence[Op], kernel: bool | str = False) -> list[str]:
    """Parameters offered to the fit for ``ops`` on ``device`` (``kernel``: the times are
    kernel (device) times from a profiler, which isolate a kernel's fixed device time; or a
    timing of :mod:`simulator.timing`: ``graph`` fits ``graph_launch_gap`` in place of
    ``launch_overhead``, ``eager`` also ``eager_dispatch``)."""
    keys = sorted({k for op in ops if (k := _efficiency_key(device, op)) is not None})
    names = [f"compute_efficiency.{k}" for k in keys]
    names += ["bandwidth_efficiency", "vector_efficiency",
              "graph_launch_gap" if kernel == "graph" else "launch_overhead"]
    if kernel == "eager" and device.family != "cpu":
        names.append("eager_dispatch")
    if device.family == "gpu":
        names.append("attention_efficiency")
        if kernel is True:  # in wall time it adds to launch_overhead: no telling them apart
            # (pipeline_latency, the other fixed device time, is not offered: it shifts the
            # same kernels by the same amount, so the two are degenerate; it stays derived
            # from the spec's memory latencies)
            names.append("kernel_startup")
        if any(op.kind == "collective" for op in ops) and \
                device.params.get("collectives") == "nccl":
            names.append("nvlink_efficiency")
    schema = PARAM_SCHEMA.get(device.family, {})
    present = {op.kind for op in ops}
    names += [f"kind_efficiency.{k}" for k in KIND_EFFICIENCY_KINDS if k in present
              and not (k == "attention" and "attention_efficiency" in schema)]
    return [n for n in names if n.split(".")[0] in schema]


# -- split -----------------------------------------------------------------------------------
def split_by_shape(rows: Sequence[Row], holdout: float = 0.3, seed: int = 0
                   ) -> tuple[set[str], set[str]]:
    """(train, held-out) shape keys: every shape wholly on one side, stratified by op class
    (each class with at least two shapes gets at least one held-out and one train shape).

    A shape is assigned to the class of its first row (by id).
    """
    if not 0 <= holdout < 1:
        raise HwsimError(f"holdout: expected a fraction in [0, 1), got {holdout!r}")
    shape_cls: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r.id):
        shape_cls.setdefault(r.shape_key or r.id, r.op_class)
    by_cls: dict[str, list[str]] = {}
    for k, c in sorted(shape_cls.items()):
        by_cls.setdefault(c, []).append(k)
    rng = np.random.default_rng(seed)
    train: set[str] = set()
    held: set[str] = set()
    for c in sorted(by_cls):
        keys = by_cls[c]
        n = len(keys)
        n_hold = 0 if n < 2 or holdout == 0 else min(n - 1, max(1, round(holdout * n)))
        picked = set(rng.choice(n, size=n_hold, replace=False).tolist()) if n_hold else set()
        for i, k in enumerate(keys):
            (held if i in picked else train).add(k)
    return train, held


# -- fit -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationResult:
    """A fitted profile with the comparisons before and after calibration on both sets."""

    profile: CalibrationProfile
    train_before: Comparison
    train_after: Comparison
    holdout_before: Comparison
    holdout_after: Comparison
    train_shape_keys: frozenset[str]
    holdout_shape_keys: frozenset[str]
    unsupported: tuple[Any, ...]
    optimizer: Mapping[str, Any]

    def summary(self) -> str:
        """A few lines for a terminal: parameters, MAPE before/after, the band."""
        p = self.profile
        lines = [f"calibration of {p.arch} on {len(self.train_before.op_rows())} train / "
                 f"{len(self.holdout_before.op_rows())} held-out ops"]
        for name in p.fitted:
            v = p.value(name) or 0.0
            shown = f"{v * 1e6:.3g} us" if name in TIME_PARAMS else f"{v:.3f}"
            lines.append(f"  fitted {name} = {shown}")
        for name, info in p.kept.items():
            lines.append(f"  kept   {name}: {info.get('reason', '')}")
        for label, b, a in (("train", self.train_before, self.train_after),
                            ("held-out", self.holdout_before, self.holdout_after)):
            if b.overall.count:
                lines.append(f"  {label} MAPE {b.overall.mape:.1%} -> {a.overall.mape:.1%}")
        kinds = (p.stats or {}).get("kinds") or {}
        if len(kinds) > 1:
            def pc(x: float | None, signed: bool = False) -> str:
                return "-" if x is None else (f"{x:+.1%}" if signed else f"{x:.1%}")
            for k, v in kinds.items():
                if v.get("holdout_count"):
                    lines.append(f"  held-out {k} ({v['holdout_count']}): MAPE "
                                 f"{pc(v['holdout_mape_before'])} -> "
                                 f"{pc(v['holdout_mape_after'])}, bias "
                                 f"{pc(v['holdout_bias_before'], True)} -> "
                                 f"{pc(v['holdout_bias_after'], True)}")
        o = (p.band or {}).get("overall") or {}
        if o:
            lines.append(f"  band: 68 % within {o.get('p68', math.nan):.1%}, 95 % within "
                         f"{o.get('p95', math.nan):.1%}")
        hb, ha = self.holdout_before.overall, self.holdout_after.overall
        if hb.count and ha.mape > hb.mape:
            lines.append(
                f"  warning: the fit does not generalise: held-out MAPE rose from "
                f"{hb.mape:.1%} to {ha.mape:.1%}. The errors come from the model's structure "
                "(which ops it gets wrong and in which direction), not from a few efficiency "
                "factors; look at the per-class table of `hwsim compare-measured` before "
                "using this profile. Its error band above says how far to trust it.")
        return "\n".join(lines)


# An op to predict with the options it was measured under (its rotated input sets) and
# whether its measurement is kernel (device) time.
_Job = tuple[Op, MapOptions, bool]


def _predict(system: System, jobs: Sequence[_Job]) -> np.ndarray:
    """Predicted times of ``jobs`` on ``system``: a collective over the system's devices
    (:class:`~simulator.predict.Predictor`), any other op on its device; kernel time where
    the job says so (:func:`simulator.mapping.gpu.kernel_time`)."""
    pred = None
    out = []
    for op, opts, kernel in jobs:
        if isinstance(op, Collective):
            pred = pred or Predictor(system)
            c = pred.cost(op)
        else:
            c = cost_op(op, system.device, opts)
        if isinstance(kernel, str):  # a timing of simulator.timing
            c = apply_timing(op, c, system.device, kernel)
            out.append(max(c.latency_s, float(c.details.get("host_s", 0.0)))
                       if kernel == "eager" else c.latency_s)
        else:
            out.append(kernel_time(c) if kernel else c.latency_s)
    return np.array(out)


def _with_flat(system: System, flat: Mapping[str, float]) -> System:
    return apply_params(system, _nested(flat))


def _to_internal(name: str, v: float) -> float:
    return v / _US if name in TIME_PARAMS else v


def _to_si(name: str, x: float) -> float:
    return x * _US if name in TIME_PARAMS else x


def _min_step(name: str) -> float:
    return _MIN_OVERHEAD_STEP if name in ("launch_overhead", "eager_dispatch") else \
        _MIN_TIME_STEP


def _clip(name: str, v: float) -> float:
    lo, hi = _bounds_of(name)
    return min(max(v, lo), hi)


def _bounds(name: str) -> tuple[float, float]:
    lo, hi = _bounds_of(name)
    return _to_internal(name, lo), _to_internal(name, hi)


def _step(name: str, v: float) -> tuple[float, str]:
    """The perturbation of the identifiability test: (new value, how it is described)."""
    if name in TIME_PARAMS:
        return min(max(2 * v, v + _min_step(name)), _bounds_of(name)[1]), "raising it"
    return max(v / 2, _bounds_of(name)[0]), "halving it"


def _moved(system: System, point: Mapping[str, float], name: str, new: float,
           ops: Sequence[_Job], base: np.ndarray) -> int:
    """Train ops whose log time moves by >= _SENSITIVITY when ``name`` is set to ``new``."""
    pert = np.log(_predict(_with_flat(system, {**point, name: new}), ops))
    return int(np.sum(np.abs(pert - base) >= _SENSITIVITY))


def _not_identifiable(v: float, how: str, moved: int, where: str = "") -> dict[str, Any]:
    return {"value": float(v),
            "reason": f"not identifiable: {how}{where} moves {moved} train op"
                      f"{'' if moved == 1 else 's'} by >= {_SENSITIVITY:.0%} (need {MIN_OPS})"}


def _loss(system: System, values: Mapping[str, float], ops: Sequence[_Job],
          measured: np.ndarray, f_scale: float) -> float:
    """The soft-L1 training loss of :func:`fit` at ``values`` (as least_squares' ``cost``)."""
    r = np.log(_predict(_with_flat(system, values), ops) / measured)
    return float(np.sum(f_scale ** 2 * (np.sqrt(1.0 + (r / f_scale) ** 2) - 1.0)))


def _one_sided(system: System, values: Mapping[str, float], name: str, ops: Sequence[_Job],
               base: np.ndarray) -> dict[str, Any] | None:
    """Why ``name`` is not identifiable at ``values`` (halving or doubling it moves fewer than
    MIN_OPS ops), or None if it is."""
    v = values[name]
    for new, how in (_step(name, v), (min(2 * v, _bounds_of(name)[1]), "doubling it")):
        if new != v and (moved := _moved(system, values, name, new, ops, base)) < MIN_OPS:
            return _not_identifiable(v, how, moved, f" at its fitted value {v:.3g}")
    return None


def _screen(system: System, names: Sequence[str], start: Mapping[str, float],
            ops: Sequence[_Job]
            ) -> tuple[list[str], dict[str, float], dict[str, dict[str, Any]]]:
    """Split candidate parameters into (fitted, probed, kept-with-reason) by their effect on
    ``ops``.

    ``probed`` maps each fraction that halving does not identify but that moves enough ops at
    :data:`_PROBE` times its value (e.g. ``vector_efficiency`` when every streaming op is
    predicted memory-bound at the spec's value but some run compute-bound in the data) to
    that value. :func:`fit` tries each after the others are fitted, starting it there (where
    it has a gradient), and keeps it only if that lowers the training loss by
    :data:`_PROBE_GAIN` (it explains what the others cannot: not, say, GPU attention through
    the softmax's vector time instead of attention_efficiency) and, at the solution, halving
    and doubling it both move enough ops (:func:`_one_sided`).
    """
    base = np.log(_predict(_with_flat(system, start), ops))
    fitted: list[str] = []
    probed: dict[str, float] = {}
    kept: dict[str, dict[str, Any]] = {}
    for n in names:
        v = start[n]
        new, how = _step(n, v)
        moved = _moved(system, start, n, new, ops, base)
        if moved >= MIN_OPS:
            fitted.append(n)
            continue
        deep = max(v * _PROBE, _bounds_of(n)[0])
        if n not in TIME_PARAMS and deep < new and \
                _moved(system, start, n, deep, ops, base) >= MIN_OPS:
            probed[n] = deep
        else:
            kept[n] = _not_identifiable(v, how, moved)
    return fitted, probed, kept


def _quantiles(errors: Sequence[float]) -> dict[str, Any]:
    a = np.abs(np.asarray(errors, dtype=float))
    return {"p68": float(np.percentile(a, 68)), "p95": float(np.percentile(a, 95)),
            "n": int(a.size)}


def _band(rows: Sequence[Row], source: str) -> dict[str, Any]:
    if not rows:
        return {"source": source}
    groups: dict[str, dict[str, list[float]]] = {"by_class": {}, "by_kind": {}}
    for r in rows:
        groups["by_class"].setdefault(r.op_class, []).append(r.error)
        groups["by_kind"].setdefault(r.kind, []).append(r.error)
    return {"source": source, "overall": _quantiles([r.error for r in rows]),
            **{g: {k: _quantiles(v) for k, v in sorted(d.items())} for g, d in groups.items()}}


def _mape(rows: Iterable[Row]) -> float | None:
    """Mean absolute relative error; None (YAML null, which round-trips) with no rows."""
    e = [abs(r.error) for r in rows]
    return float(np.mean(e)) if e else None


def _bias(rows: Iterable[Row]) -> float | None:
    """Mean signed relative error (+ = predicted too slow); None with no rows."""
    e = [r.error for r in rows]
    return float(np.mean(e)) if e else None


def _split_stats(key: str, cmps: Sequence[Comparison]) -> dict[str, dict[str, Any]]:
    """Per value of Row attribute ``key`` (``kind``, ``group``): counts, held-out MAPE and
    bias before and after, from (train before, held-out before, held-out after)."""
    tr_b, ho_b, ho_a = cmps
    out: dict[str, dict[str, Any]] = {}
    for g in sorted({getattr(r, key) for c in cmps for r in c.rows}):
        def sel(cmp: Comparison, g: str = g) -> list[Row]:
            return [r for r in cmp.rows if getattr(r, key) == g]
        out[g] = {"train_count": len(sel(tr_b)), "holdout_count": len(sel(ho_b)),
                  "holdout_mape_before": _mape(sel(ho_b)), "holdout_mape_after": _mape(sel(ho_a)),
                  "holdout_bias_before": _bias(sel(ho_b)), "holdout_bias_after": _bias(sel(ho_a))}
    return out


def _subset(ds: Dataset, records: Iterable[Measurement]) -> Dataset:
    return Dataset(ds.path, ds.meta, tuple(records))


def _stderr(res: Any, names: Sequence[str]) -> dict[str, float]:
    """Approximate standard errors (SI) from the Gauss-Newton covariance at the solution."""
    m, n = res.jac.shape
    if m <= n:
        return {}
    s2 = float(np.sum(res.fun ** 2)) / (m - n)
    try:
        cov = np.linalg.pinv(res.jac.T @ res.jac) * s2
    except np.linalg.LinAlgError:
        return {}
    return {name: _to_si(name, math.sqrt(max(float(cov[i, i]), 0.0)))
            for i, name in enumerate(names)}


def _prior_residual(name: str, v: float, v0: float) -> float:
    """How far a parameter moved from its spec value, in log units (overheads, which may be
    0, relative to max(spec, 5 us))."""
    if name in TIME_PARAMS:
        return (v - v0) / max(v0, _min_step(name))
    return math.log(max(v, 1e-12) / max(v0, 1e-12))


def fit(dataset: Dataset | str | Path, arch: str | System, holdout: float = 0.3,
        seed: int = 0, *, f_scale: float = 0.1, prior: float | None = None,
        timing: str | None = None) -> CalibrationResult:
    """Fit the identifiable efficiency factors of ``arch``'s device to ``dataset``'s op records.

    ``holdout`` is the fraction of shapes per op class kept out of the fit; ``f_scale`` is the
    soft-L1 scale in log-ratio units (0.1: residuals beyond ~10 % count linearly, so a few bad
    measurements do not drag the fit). ``prior`` (default :data:`PRIOR_WEIGHT`) weighs one
    extra residual per parameter, its log distance from the spec value: parameters that
    trade off against each other (bandwidth efficiency against a streaming kind's factor) stay
    near the spec instead of drifting together, which over-fits a small training set.
    ``timing`` (default: the dataset's ``meta["timing"]``): predict under a timing of
    :mod:`simulator.timing` (``graph`` fits ``graph_launch_gap``, ``eager`` ``eager_dispatch``:
    a loop of one eager op runs at the slower of its host and device).

    Raises
    ------
    HwsimError
        If the dataset has no op the simulator can predict, or ``holdout`` is not in [0, 1).
    """
    from scipy.optimize import least_squares

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    system = arch if isinstance(arch, System) else load_arch(arch)
    tm = timing or str(ds.meta.get("timing") or "wall")
    base = compare(_subset(ds, ds.ops()), system, timing=tm)
    if not base.rows:
        raise HwsimError(f"{ds.path}: no op record the simulator can predict on "
                         f"{system.device.name} ({len(base.unsupported)} unsupported)")
    train_keys, hold_keys = split_by_shape(base.rows, holdout, seed)
    supported = {r.id: r for r in base.rows}
    recs = [r for r in ds.ops() if r.id in supported]
    train = [r for r in recs if (supported[r.id].shape_key or r.id) in train_keys]
    held = [r for r in recs if (supported[r.id].shape_key or r.id) in hold_keys]
    kernel: bool | str = tm == "kernel" if tm in ("wall", "kernel") else tm
    ops = [(record_op(r), MapOptions(rotated_sets=record_sets(r)), kernel) for r in train]
    measured = np.array([r.time_s for r in train])
    dev = system.device

    weight = PRIOR_WEIGHT if prior is None else float(prior)
    names = _candidates(dev, [op for op, _, _ in ops], kernel)
    start = {n: _clip(n, _current(dev, n)) for n in names}
    fitted, probed, kept = _screen(system, names, start, ops)

    def solve(free: Sequence[str], x0_si: Mapping[str, float]) -> tuple[dict[str, float], Any]:
        """Fit ``free`` from ``x0_si`` with the others at their start values."""
        fixed = {n: v for n, v in start.items() if n not in free}

        def residuals(x: np.ndarray) -> np.ndarray:
            flat = {**fixed, **{n: _to_si(n, float(v)) for n, v in zip(free, x)}}
            data = np.log(_predict(_with_flat(system, flat), ops) / measured)
            if not weight:
                return data
            pri = [weight * _prior_residual(n, flat[n], start[n]) for n in free]
            return np.concatenate([data, pri])

        lo, hi = zip(*(_bounds(n) for n in free))
        x0 = np.clip([_to_internal(n, x0_si[n]) for n in free], lo, hi)
        res = least_squares(residuals, x0, bounds=(lo, hi), loss="soft_l1", f_scale=f_scale,
                            x_scale="jac", diff_step=1e-3, method="trf")
        return {**fixed, **{n: _to_si(n, float(v)) for n, v in zip(free, res.x)}}, res

    optimizer: dict[str, Any] = {"method": "trf", "loss": "soft_l1", "f_scale": f_scale,
                                 "prior": weight}
    values = dict(start)
    stderr: dict[str, float] = {}
    at_bound: list[str] = []
    res = None
    if fitted:
        values, res = solve(fitted, start)
    for n in probed:  # second stage: a probed parameter must earn its place
        loss = _loss(system, values, ops, measured, f_scale)
        trial, trial_res = solve([*fitted, n], {**values, n: probed[n]})
        gain = 1.0 - _loss(system, trial, ops, measured, f_scale) / loss if loss > 0 else 0.0
        if gain < _PROBE_GAIN:
            why = {"value": float(start[n]),
                   "reason": f"not identifiable: fitting it from {probed[n]:.3g} (where it "
                             f"moves train ops) lowers the training loss by only "
                             f"{max(gain, 0.0):.1%} (need {_PROBE_GAIN:.0%})"}
        else:
            base_fit = np.log(_predict(_with_flat(system, trial), ops))
            why = _one_sided(system, trial, n, ops, base_fit)
        if why is None:
            fitted, values, res = [*fitted, n], trial, trial_res
        else:
            kept[n] = {**why, "value": float(start[n])}
    if res is not None:
        lo, hi = zip(*(_bounds(n) for n in fitted))
        stderr = _stderr(res, fitted)
        at_bound = [n for n, v, a, b in zip(fitted, res.x, lo, hi)
                    if math.isclose(v, a, abs_tol=1e-6) or math.isclose(v, b, abs_tol=1e-6)]
        optimizer.update({"nfev": int(res.nfev), "status": int(res.status),
                          "message": str(res.message), "cost": float(res.cost)})
    params = _nested({n: values[n] for n in fitted})
    calibrated = apply_params(system, params)

    tr_b, tr_a = (compare(_subset(ds, train), s, timing=tm) for s in (system, calibrated))
    ho_b, ho_a = (compare(_subset(ds, held), s, timing=tm) for s in (system, calibrated))
    cls_of = {r.id: r.op_class for r in base.rows}
    classes: dict[str, dict[str, Any]] = {}
    for c in sorted(set(cls_of.values())):
        def sel(cmp: Comparison, c: str = c) -> list[Row]:
            return [r for r in cmp.rows if cls_of.get(r.id) == c]
        classes[c] = {"train_count": len(sel(tr_b)), "holdout_count": len(sel(ho_b)),
                      "train_mape_before": _mape(sel(tr_b)), "train_mape_after": _mape(sel(tr_a)),
                      "holdout_mape_before": _mape(sel(ho_b)),
                      "holdout_mape_after": _mape(sel(ho_a))}
    stats = {
        "train": {"count": tr_b.overall.count, "mape_before": _mape(tr_b.rows),
                  "mape_after": _mape(tr_a.rows)},
        "holdout": {"count": ho_b.overall.count, "mape_before": _mape(ho_b.rows),
                    "mape_after": _mape(ho_a.rows)},
        "classes": classes, "kinds": _split_stats("kind", (tr_b, ho_b, ho_a)),
        "groups": _split_stats("group", (tr_b, ho_b, ho_a)),
        "timing": tm,
        "stderr": stderr, "at_bound": at_bound,
        "split": {"holdout": holdout, "seed": seed, "train_shapes": len(train_keys),
                  "holdout_shapes": len(hold_keys)},
        "unsupported": len(base.unsupported), "optimizer": optimizer,
    }
    band = _band(ho_a.rows, "holdout") if ho_a.rows else _band(tr_a.rows, "train")
    meta_dev = ds.meta.get("device") or {}
    profile = CalibrationProfile(
        arch=dev.name, params=params, fitted=tuple(fitted), band=band,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        device={k: meta_dev[k] for k in ("name", "kind") if k in meta_dev},
        software=dict(ds.meta.get("software") or {}), dataset=str(ds.path), kept=kept,
        stats=_plain(stats), holdout_shape_keys=tuple(sorted(hold_keys)))
    return CalibrationResult(profile=profile, train_before=tr_b, train_after=tr_a,
                             holdout_before=ho_b, holdout_after=ho_a,
                             train_shape_keys=frozenset(train_keys),
                             holdout_shape_keys=frozenset(hold_keys),
                             unsupported=base.unsupported, optimizer=optimizer)
