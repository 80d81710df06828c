"""Which axes matter: Morris elementary-effects screening of a study (``search: {method: morris,
samples: N, seed: S}``, ``N`` trajectories).

The design is SALib's Morris sample over the study's axes, each a variable on ``[0, 1]``; a
coordinate becomes an axis value by index into a list of values, or by linear or geometric
interpolation between a range's ends. Every row of every trajectory is a point (duplicates
included: the runner evaluates each distinct point once). The analysis recomputes the same
design from the study, looks each point's metric up by its point id, and reports SALib's
``mu_star`` (mean absolute elementary effect, in the metric's units per unit of the normalised
axis coordinate, so roughly "the metric's change across the axis's range") and ``sigma`` (how
much that effect depends on the other axes: non-linearity or interaction).

SALib is imported only when these functions run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulator.errors import HwsimError
from simulator.explore.study import Axis, Study, point_id

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["morris_design", "morris_points", "morris_indices", "ranking", "num_levels",
           "axis_value", "MAX_LEVELS"]

#: Grid levels of the Morris design when every discrete axis has at least this many values.
MAX_LEVELS = 4


def num_levels(study: Study) -> int:
    """The design's grid levels: :data:`MAX_LEVELS` (4), or fewer when a list-valued axis has
    fewer values (2 or 3 values: 2 levels, its two ends), never below 2.

    Always even: SALib's Morris sample with an odd number of levels is biased (3 levels only
    ever reaches 0 and 0.75), so a 3-valued axis gets 2 levels rather than 3. Range axes
    (``continuous``) do not limit the levels. One-valued axes are ignored (they never vary).
    """
    counts = [len(a.values) for a in study.axes if a.continuous is None and len(a.values) >= 2]
    levels = min([MAX_LEVELS, *counts])
    return max(2, levels - levels % 2)


def _problem(study: Study) -> dict[str, Any]:
    names = [a.name for a in study.axes]
    return {"num_vars": len(names), "names": names, "bounds": [[0.0, 1.0]] * len(names)}


def _check(study: Study) -> None:
    if not study.axes:
        raise HwsimError(f"{study.name}: a Morris study needs at least one axis")
    n = study.samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HwsimError(f"{study.name}: a Morris study needs samples: N, the number of "
                         f"trajectories (a positive integer), got {n!r}")


def axis_value(axis: Axis, x: float) -> Any:
    """The value of ``axis`` at the normalised coordinate ``x`` in ``[0, 1]``.

    A range axis (``continuous`` set, as random search samples it, steps or not): linear or
    geometric interpolation between its ends, an int if the range is of integers, else rounded
    to 6 significant digits as random search does (clamped to the ends). A list of values: the
    value at index ``round(x * (len(values) - 1))``."""
    x = min(1.0, max(0.0, float(x)))
    if axis.continuous is not None:
        lo, hi, log, integer = axis.continuous
        if x <= 0.0:
            v = lo
        elif x >= 1.0:
            v = hi
        elif log:
            v = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
        else:
            v = lo + x * (hi - lo)
        if integer:
            return int(min(hi, max(lo, round(v))))
        return float(min(hi, max(lo, float(f"{v:.6g}"))))
    if not axis.values:
        raise HwsimError(f"axes.{axis.name}: has neither values nor a range")
    return axis.values[int(round(x * (len(axis.values) - 1)))]


def morris_design(study: Study) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The Morris design of ``study``: SALib's ``X`` (``(k + 1) * N`` rows for ``k`` axes and
    ``N = study.samples`` trajectories, coordinates in ``[0, 1]``, seeded by ``study.seed``) and
    the design points (axis name -> value), row for row."""
    from SALib.sample import morris

    _check(study)
    x = morris.sample(_problem(study), study.samples, num_levels=num_levels(study),
                      seed=study.seed)
    points = [{a.name: axis_value(a, c) for a, c in zip(study.axes, row, strict=True)}
              for row in x]
    return x, points


def morris_points(study: Study) -> list[dict[str, Any]]:
    """The design points of ``study``'s Morris design, in order, duplicates included."""
    return morris_design(study)[1]


def morris_indices(study: Study, df: pd.DataFrame
                   ) -> dict[str, dict[str, tuple[float, float]]]:
    """Per objective metric, per axis: ``(mu_star, sigma)`` of SALib's Morris analysis.

    ``df`` is the study's table (``point_id``, ``status`` and one column per metric); every
    point of the design must have a value for the metric (status ``ok``, a finite number),
    else :class:`HwsimError` says how many do not."""
    import numpy as np
    from SALib.analyze import morris

    x, points = morris_design(study)
    ids = [point_id(p) for p in points]
    if "point_id" not in df.columns:
        raise HwsimError(f"{study.name}: the table has no point_id column")
    rows = df.assign(point_id=df["point_id"].astype(str))
    rows = rows.drop_duplicates("point_id", keep="last").set_index("point_id")
    ok = rows["status"] == "ok" if "status" in rows.columns else None
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for metric, _sense in study.objectives:
        if metric not in rows.columns:
            raise HwsimError(f"{study.name}: the table has no column {metric!r}")
        col = rows[metric].where(ok) if ok is not None else rows[metric]
        y = np.asarray(col.reindex(ids), dtype=float)
        bad = ~np.isfinite(y)
        if bad.any():
            missing = [i for i, b in zip(ids, bad, strict=True) if b]
            distinct = len(set(missing))
            absent = len({i for i in missing if i not in rows.index})
            raise HwsimError(
                f"{study.name}: {metric}: {int(bad.sum())} of the Morris design's {len(ids)} "
                f"points ({distinct} distinct: {distinct - absent} failed, e.g. infeasible or "
                f"does not fit; {absent} not evaluated) have no value, and Morris needs every "
                "point of every trajectory: narrow the axes to a range where every point is "
                "feasible (or finish the study with --resume)")
        si = morris.analyze(_problem(study), x, y, num_levels=num_levels(study),
                            seed=study.seed)
        out[metric] = {a.name: (float(si["mu_star"][j]), float(si["sigma"][j]))
                       for j, a in enumerate(study.axes)}
    return out


def ranking(indices: Mapping[str, tuple[float, float]]) -> list[tuple[str, float]]:
    """Axes by importance for one metric (one value of :func:`morris_indices`):
    ``(axis, mu_star / max mu_star)``, largest first (ties keep the axes' order); all 0.0 if
    no axis has an effect."""
    top = max((float(ms) for ms, _ in indices.values()), default=0.0)
    rel = [(name, float(ms) / top if top > 0 else 0.0) for name, (ms, _) in indices.items()]
    return sorted(rel, key=lambda t: -t[1])
