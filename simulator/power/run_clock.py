"""The clock of a whole run under the power limit: the limiter of
:mod:`simulator.power.governor` with the time it costs.

A run (``hwsim run``: an LLM decode step, a prefill, a training step) stands for one
iteration of a long loop of the same mix of kernels, so the GPU's limiter, which regulates the
power averaged over a window far longer than a kernel (governor.py), holds ONE clock ``s`` for
the whole run, not one per kernel. The law, per device, with the ops' mapper times and their
full-clock energies from the engine's run:

* energy at clock ``s``: ``idle x T(s) + floor_above x s V(s)^2 x busy(s) + S x V(s)^2 + X``,
  with ``S`` the core-voltage energy (per FLOP, the on-chip path of DRAM bytes, the L2 -> core
  crossbar) and ``X`` the rest (DRAM devices, caches, links), as :mod:`simulator.power.dvfs`
  splits one op;
* time at clock ``s``: every op's compute time stretches by ``sigma = s_ref / s``, its DRAM
  time does not, so an op takes ``latency + max(c sigma, m) - max(c, m)`` (an HBM-bound
  decode keeps its latency, a GEMM-bound prefill stretches);
* ``s_ref`` is the clock the same run holds at the TDP, where the mappers' rates apply (their
  efficiencies are measured on real parts, at their default limit): a run at the default
  limit keeps the mappers' latency and only its energy follows the lower clock; a lower limit
  stretches the compute-bound time by ``s_ref / s``, a higher one shortens it (up to the full
  clock).

The clock is the highest ``s`` in ``[min_clock, 1]`` at which every device's average power
(its energy over the run's time) is at most the limit: the average falls as ``s`` falls (less
``V^2``, a lower floor, a longer run), so bisection finds it. A device whose run still averages
above the limit at the lowest clock stays there (reported as ``stalled``: a real part then
throttles by clock gating, which this model does not time).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.frozen import FrozenMap
from simulator.power.dvfs import _SCALED, _parts
from simulator.power.model import PowerModel

#: an OpCost (simulator.mapping.base); not imported: the mappers import this package
OpCost = Any

__all__ = ["RunClock", "STRETCH_KEY", "stretchable", "stretch_s", "at_clock", "solve_run_clock",
           "device_parts"]

#: details key of a macro op (simulator.engine.blocks) holding the (compute_s, memory_s) pairs
#: of the ops it stands for, so the run's stretch is summed op by op (a sum of maxima, not the
#: maximum of the sums)
STRETCH_KEY = "stretch_cm"


def stretchable(cost: OpCost) -> np.ndarray:
    """(n, 2) array of the (compute_s, memory_s) of the kernels in ``cost`` whose compute time
    follows the core clock: the op itself, or for a macro op the ops it stands for; empty for
    a collective, a host copy or an op with no compute."""
    pairs = cost.details.get(STRETCH_KEY)
    if pairs is not None:
        return np.asarray(pairs, dtype=float).reshape(-1, 2)
    if cost.latency_s <= 0 or cost.compute_s <= 0 or cost.bound == "communication" or \
            cost.compute_class == "block":
        return np.zeros((0, 2))
    return np.array([[cost.compute_s, cost.memory_s]])


def stretch_s(cm: np.ndarray, sigma: float) -> float:
    """Extra time (s, negative when shorter) of kernels ``cm`` when compute time scales by
    ``sigma``: sum of ``max(c sigma, m) - max(c, m)``."""
    if cm.size == 0:
        return 0.0
    c, m = cm[:, 0], cm[:, 1]
    return float(np.sum(np.maximum(c * sigma, m) - np.maximum(c, m)))


def at_clock(cost: OpCost, pm: PowerModel, s: float, sigma: float) -> OpCost:
    """``cost`` at run clock ``s`` with its compute time scaled by ``sigma`` (relative to the
    mapper's): core-voltage energy x V(s)^2, the floor's scale and the clock in ``details``."""
    v2 = pm.dynamic_scale(s)
    extra = stretch_s(stretchable(cost), sigma) if sigma != 1.0 else 0.0
    mem = FrozenMap({k: v * (v2 if k in _SCALED else 1.0)
                     for k, v in cost.energy.memory_j.items()})
    details = {**cost.details, "clock_scale": s, "clock_hz": s * pm.clock_hz,
               "floor_scale": pm.floor_scale(s)}
    for k in ("floor_slowed_s", "clock_deficit_s"):  # a macro op of per-op-capped ops
        details.pop(k, None)
    out = replace(cost, energy=replace(cost.energy, compute_j=cost.energy.compute_j * v2,
                                       memory_j=mem),
                  details=FrozenMap(details))
    if extra == 0.0:
        return out
    lat = max(0.0, cost.latency_s + extra)
    cs = cost.compute_s * sigma
    bound = cost.bound if cost.bound in ("latency", "communication") or \
        cost.compute_class == "block" else ("compute" if cs >= cost.memory_s else "memory")
    return replace(out, latency_s=lat, compute_s=cs, bound=bound,
                   utilization=cost.utilization * cost.latency_s / lat if lat > 0 else 0.0)


@dataclass(frozen=True)
class RunClock:
    """The run's clock under the limit: ``clock_scale`` (of the boost clock), ``sigma`` (compute
    time relative to the mappers'), ``reference_scale`` (the clock at the TDP), the full-clock
    average power of the busiest device (W) and whether the limit binds or the lowest clock
    still leaves a device above it."""

    clock_scale: float
    sigma: float
    reference_scale: float
    full_clock_power_w: float
    limit_w: float
    capped: bool
    stalled: bool

    def to_dict(self) -> dict[str, Any]:
        return {"clock_scale": self.clock_scale, "compute_time_scale": self.sigma,
                "clock_scale_at_tdp": self.reference_scale,
                "full_clock_power_w": self.full_clock_power_w, "limit_w": self.limit_w,
                "capped": self.capped, "stalled": self.stalled}


def _clock_under(pm: PowerModel, limit: float, span: float, busy: np.ndarray,
                 scaled: np.ndarray, fixed: np.ndarray, cms: list[np.ndarray],
                 s_ref: float | None) -> tuple[float, float, bool]:
    """The highest clock in ``[min_clock, 1]`` at which every device averages at most
    ``limit``; with ``s_ref`` None the times are held (the reference solve at the TDP), else
    compute time scales by ``s_ref / s``. Returns (clock, compute-time scale, stalled): at the
    lowest clock a run still above the limit stalls (its compute time stretches further, as
    a part throttled below its lowest DVFS point does, and as :mod:`simulator.power.dvfs`
    stalls one op), until it fits or only its DRAM-bound time is left."""
    def over(s: float, sigma: float) -> bool:
        extra = np.array([stretch_s(cm, sigma) for cm in cms]) if sigma != 1.0 \
            else np.zeros(len(cms))
        t = span + (float(extra.max()) if extra.size else 0.0)  # shorter too, above the TDP
        e = pm.idle_w * t + pm.floor_above_idle_w * pm.floor_scale(s) * (busy + extra) + \
            scaled * pm.dynamic_scale(s) + fixed
        # a hair under the limit, so the reported average never reads above it by rounding
        return bool(np.any(e > limit * t * (1 - 1e-9)))

    def sig(s: float) -> float:
        return 1.0 if s_ref is None else s_ref / s

    if not over(1.0, sig(1.0)):
        return 1.0, sig(1.0), False
    lo, hi = pm.min_clock, 1.0
    if over(lo, sig(lo)):
        if s_ref is None:
            return lo, 1.0, True
        if pm.idle_w + pm.floor_above_idle_w * pm.floor_scale(lo) >= limit:
            # the stretched time is busy time, so its power tends to idle + the lowest clock's
            # floor: at or above the limit no stall fits, and stretching would never end
            return lo, sig(lo), True
        a, b = sig(lo), sig(lo)
        while over(lo, b) and b < 1e6:  # stall: stretch the compute time until it fits
            a, b = b, 2.0 * b
        if over(lo, b):
            return lo, b, True
        for _ in range(50):
            mid = 0.5 * (a + b)
            if over(lo, mid):
                a = mid
            else:
                b = mid
        return lo, b, True
    for _ in range(50):  # the average power rises with s: bisect for where it meets the limit
        mid = 0.5 * (lo + hi)
        if over(mid, sig(mid)):
            hi = mid
        else:
            lo = mid
    return lo, sig(lo), False


def solve_run_clock(pm: PowerModel, span_s: float, busy_s: np.ndarray, scaled_j: np.ndarray,
                    fixed_j: np.ndarray, cms: list[np.ndarray]) -> RunClock:
    """The run's clock under ``pm.limit_w`` from each working device's busy time, full-clock
    core-voltage energy (``scaled_j``), other dynamic energy (``fixed_j``) and stretchable
    kernels ``cms`` (:func:`stretchable`, one array per device) over a run of ``span_s``.

    >>> from simulator.arch.loader import load_arch
    >>> from simulator.power import power_model
    >>> pm = power_model(load_arch("h100-sxm").device, 400.0)  # idle 90 W, floor 322 W
    >>> rc = solve_run_clock(pm, 1.0, np.array([1.0]), np.array([200.0]), np.array([100.0]),
    ...                      [np.array([[0.5, 0.2]])])  # 622 W at full clock, under the TDP
    >>> rc.capped, rc.reference_scale, round(rc.clock_scale, 3), round(rc.sigma, 3)
    (True, 1.0, 0.656, 1.525)

    (The 0.5 s of compute become 0.76 s: the run lasts 1.26 s and draws 505 J, 400 W.)
    """
    if span_s <= 0 or busy_s.size == 0:
        return RunClock(1.0, 1.0, 1.0, pm.idle_w, pm.limit_w, False, False)
    full_w = float(np.max(pm.idle_w + (pm.floor_above_idle_w * busy_s + scaled_j + fixed_j)
                          / span_s))
    args = (span_s, busy_s, scaled_j, fixed_j, cms)
    s_ref, _, _ = _clock_under(pm, pm.tdp_w, *args, s_ref=None)
    if pm.limit_w == pm.tdp_w:
        return RunClock(s_ref, 1.0, s_ref, full_w, pm.limit_w, s_ref < 1.0, False)
    s, sigma, stalled = _clock_under(pm, pm.limit_w, *args, s_ref=s_ref)
    return RunClock(s, sigma, s_ref, full_w, pm.limit_w, s < 1.0, stalled)


def device_parts(costs: list[OpCost]) -> tuple[np.ndarray, np.ndarray]:
    """(core-voltage, other) full-clock dynamic energy (J) of each cost."""
    parts = [_parts(c) for c in costs]
    return np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
