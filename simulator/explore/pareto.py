"""Pareto fronts and hypervolume for multi-objective design-space exploration.

Every function takes an ``(n, k)`` array of objective values plus one sense per objective
(``"min"`` or ``"max"``). Internally everything is turned into a minimisation problem by
negating the ``"max"`` columns, so the geometry code only has to deal with one direction.
Rows holding NaN or +-inf are failed design points: they are never on the front and never
add hypervolume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["default_reference", "hypervolume", "pareto_mask"]

_SENSES = ("min", "max")
# Rows compared at once in the k >= 3 front filter; bounds memory at _BLOCK * front * k bools.
_BLOCK = 256


def _check_senses(senses: Sequence[str], k: int) -> np.ndarray:
    """Validate ``senses`` against ``k`` objectives; return +1 (min) / -1 (max) per column."""
    if isinstance(senses, str):
        raise ValueError(f"senses must be a sequence of 'min'/'max', one per objective, "
                         f"not the single string {senses!r}")
    senses = list(senses)
    if len(senses) != k:
        raise ValueError(f"got {len(senses)} senses {senses!r} for {k} objective column(s)")
    for j, s in enumerate(senses):
        if s not in _SENSES:
            raise ValueError(f"senses[{j}] is {s!r}; each sense must be 'min' or 'max'")
    return np.array([1.0 if s == "min" else -1.0 for s in senses])


def _as_min_problem(values: np.ndarray, senses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(values as float (n, k) with max columns negated, sign per column)``."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"values must be a 2-D (n, k) array, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"values must have at least one objective column, got shape {arr.shape}")
    sign = _check_senses(senses, arr.shape[1])
    return arr * sign, sign


def _front_2d(v: np.ndarray) -> np.ndarray:
    """Non-dominated mask of finite minimisation points in 2-D by sort and sweep."""
    n = len(v)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort((v[:, 1], v[:, 0]))  # by x, then y
    x, y = v[order, 0], v[order, 1]
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])  # groups of equal x
    group_min = np.minimum.reduceat(y, starts)
    # best y over groups with strictly smaller x
    prev_best = np.r_[np.inf, np.minimum.accumulate(group_min)[:-1]]
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    keep = (y == group_min[group]) & (group_min[group] < prev_best[group])
    mask[order] = keep
    return mask


def _weakly_dominated(cands: np.ndarray, others: np.ndarray) -> np.ndarray:
    """(len(cands), len(others)) bools: others[j] <= cands[i] in every objective."""
    le = others[None, :, 0] <= cands[:, None, 0]
    for j in range(1, cands.shape[1]):
        le &= others[None, :, j] <= cands[:, None, j]
    return le


def _front_nd(v: np.ndarray) -> np.ndarray:
    """Non-dominated mask of finite minimisation points for any k, block by block.

    Duplicates are merged first, so "weakly better everywhere" means "dominates". Points are
    then visited in lexicographic order, in which a dominator always comes strictly before
    the point it dominates. By transitivity a dominated point is dominated by some
    non-dominated one, so each block only has to be checked against the front found in the
    earlier blocks and against itself.
    """
    n = len(v)
    if n == 0:
        return np.zeros(0, dtype=bool)
    uniq, inverse = np.unique(v, axis=0, return_inverse=True)  # rows come back lex-sorted
    keep_u = np.zeros(len(uniq), dtype=bool)
    front = uniq[:0]
    for lo in range(0, len(uniq), _BLOCK):
        block = uniq[lo:lo + _BLOCK]
        keep = ~_weakly_dominated(block, front).any(axis=1)
        inner = _weakly_dominated(block[keep], block)
        inner[np.arange(inner.shape[0]), np.flatnonzero(keep)] = False  # not by itself
        keep[keep] = ~inner.any(axis=1)
        keep_u[lo:lo + _BLOCK] = keep
        front = np.concatenate([front, block[keep]])
    return keep_u[inverse.reshape(-1)]


def _front_min(v: np.ndarray) -> np.ndarray:
    """Non-dominated mask of a minimisation array whose rows are all finite."""
    if v.shape[1] == 1:
        return v[:, 0] == v[:, 0].min() if len(v) else np.zeros(0, dtype=bool)
    if v.shape[1] == 2:
        return _front_2d(v)
    return _front_nd(v)


def pareto_mask(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n, k).

    Row ``a`` dominates row ``b`` when it is at least as good in every objective and strictly
    better in one. Rows with NaN/inf (failed points) are never on the front; duplicated
    non-dominated rows are all kept. k = 2 uses an O(n log n) sort and sweep; k >= 3 compares
    blocks of rows against the front found so far.
    """
    v, _ = _as_min_problem(values, senses)
    finite = np.isfinite(v).all(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    mask[finite] = _front_min(v[finite])
    return mask


def _hv_2d(v: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by 2-D minimisation points that all lie strictly inside ``ref``."""
    v = v[_front_2d(v)]
    v = v[np.argsort(v[:, 0], kind="stable")]
    # on a deduplicated 2-D front x rises while y falls; duplicates add zero-width strips
    widths = np.diff(np.r_[v[:, 0], ref[0]])
    return float(np.sum(widths * (ref[1] - v[:, 1])))


def _hv_min(v: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimisation points strictly inside ``ref`` (HSO slicing).

    Slices along the last objective: between consecutive point levels the cross-section is
    the (k-1)-dimensional hypervolume of the points already passed.
    """
    if len(v) == 0:
        return 0.0
    k = v.shape[1]
    if k == 1:
        return float(ref[0] - v[:, 0].min())
    if k == 2:
        return _hv_2d(v, ref)
    v = np.unique(v[_front_min(v)], axis=0)
    v = v[np.argsort(v[:, -1], kind="stable")]
    depths = np.diff(np.r_[v[:, -1], ref[-1]])
    total = 0.0
    for i in range(len(v)):
        if depths[i] > 0:
            total += depths[i] * _hv_min(v[: i + 1, :-1], ref[:-1])
    return float(total)


def hypervolume(values: np.ndarray, senses: Sequence[str], reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by the finite rows of ``values`` and bounded by ``reference``.

    ``reference`` is in the objectives' own units: above the points for "min" objectives,
    below them for "max" ones. Points that do not strictly beat the reference in every
    objective contribute nothing. Larger is better; the usual single number for comparing
    two fronts found against the same reference.
    """
    v, sign = _as_min_problem(values, senses)
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (v.shape[1],):
        raise ValueError(f"reference has shape {ref.shape}, expected ({v.shape[1]},) "
                         f"to match values of shape {v.shape}")
    if not np.isfinite(ref).all():
        raise ValueError(f"reference must be finite, got {ref.tolist()}")
    ref = ref * sign
    inside = np.isfinite(v).all(axis=1) & (v < ref).all(axis=1)
    return _hv_min(v[inside], ref)


def default_reference(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """A reference point just beyond the worst finite values, for :func:`hypervolume`.

    Each objective's nadir (worst finite value) is pushed away from the points by 10% of that
    objective's finite range, or by 1.0 when the range is 0, so that the extreme front points
    still contribute a non-zero volume.
    """
    v, sign = _as_min_problem(values, senses)
    finite = np.isfinite(v).all(axis=1)
    if not finite.any():
        raise ValueError(f"cannot build a default reference: none of the {len(v)} rows has "
                         "finite values in every objective")
    v = v[finite]
    worst, best = v.max(axis=0), v.min(axis=0)
    span = worst - best
    pad = np.where(span > 0, 0.1 * span, 1.0)
    return (worst + pad) * sign
