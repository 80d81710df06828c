"""Sustained power under a power limit: the limiter regulates the AVERAGE power over its control
window, not each kernel's.

A GPU's power limiter (the PMU's "SW power cap") reads board power from its sensors and steps
the core clock so that power averaged over its sampling window stays at the limit; NVML's power
reading on Ampere and newer parts is itself a 1 s average (NVML API reference,
``nvmlDeviceGetPowerUsage``). LLM-serving kernels last 10 us to a few ms and an iteration
10-60 ms, far shorter than that window, so in a sustained run the governor sees the mix: the
GEMM phases may draw more than the limit at full clock while the memory-bound attention and
norm phases draw less, and the clock falls only when the mix averages above the limit (a
measured RTX 3090 at its 315 W cap sits within 1 W of it through both decode and prefill,
with one clock for each phase: ashalliants/ninfer-3090 PR #72). The per-op cap of
:mod:`simulator.power.dvfs` is the right model for one op run on its own (a GEMM benchmark
loop: every window holds the same kernel); this module is the one for a long mix of kernels.

The law (with the rates of the mappers held, as :mod:`simulator.power.dvfs` holds them at the
TDP): sum the full-clock energy of the run (idle over the span, the busy floor over the busy
time, the work's dynamic energy). Under ``limit x span`` per device it is what the device
draws. Above, the clock falls until the average is the limit: everything above idle is scaled
by one factor ``r``, the floor and the compute-bound dynamic power both following
``s V(s)^2`` (the DVFS law of :mod:`simulator.power.dvfs`), so the reported clock solves
``s V(s)^2 = r`` (at least the family's lowest clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.power.model import PowerModel

__all__ = ["NO_LIMIT_W", "SustainedPower", "sustained_power"]

#: A power limit that never binds: a predictor built with it gives each op's full-clock energy
#: (the energy a sustained run's governor averages; its times are the mappers' own).
NO_LIMIT_W = 1e9


@dataclass(frozen=True)
class SustainedPower:
    """Energy (J) of a sustained run on ``devices`` devices after the limiter, and its clock."""

    idle_j: float
    floor_j: float
    dynamic_j: float
    clock_scale: float
    capped: bool

    @property
    def energy_j(self) -> float:
        return self.idle_j + self.floor_j + self.dynamic_j


def sustained_power(pm: PowerModel, *, idle_j: float, floor_j: float, dynamic_j: float,
                    span_s: float, devices: int = 1) -> SustainedPower:
    """The energy a run draws when its full-clock energy is ``idle_j + floor_j + dynamic_j``
    over ``span_s`` seconds on ``devices`` devices of power model ``pm``: itself when it
    averages at most ``pm.limit_w`` per device, else scaled above idle to the limit.

    >>> from simulator.arch.loader import load_arch
    >>> from simulator.power import power_model
    >>> pm = power_model(load_arch("h100-sxm").device)
    >>> s = sustained_power(pm, idle_j=90.0, floor_j=232.0, dynamic_j=600.0, span_s=1.0)
    >>> round(s.energy_j), s.capped, round(s.clock_scale, 3)
    (700, True, 0.838)
    """
    for name, v in (("idle_j", idle_j), ("floor_j", floor_j), ("dynamic_j", dynamic_j),
                    ("span_s", span_s)):
        if not v >= 0:
            raise ValueError(f"sustained_power: {name} must be >= 0, got {v!r}")
    if devices < 1:
        raise ValueError(f"sustained_power: devices must be >= 1, got {devices!r}")
    above = floor_j + dynamic_j
    room = pm.limit_w * span_s * devices - idle_j
    if idle_j + above <= pm.limit_w * span_s * devices or above <= 0:
        return SustainedPower(idle_j, floor_j, dynamic_j, 1.0, False)
    r = max(0.0, room) / above
    lo, hi = pm.min_clock, 1.0
    if lo * pm.dynamic_scale(lo) >= r:
        s = lo  # at the lowest clock the part stalls to fit (dvfs.py does the same per op)
    else:
        for _ in range(60):  # s V(s)^2 rises with s: bisect for s V(s)^2 = r
            mid = 0.5 * (lo + hi)
            if mid * pm.dynamic_scale(mid) < r:
                lo = mid
            else:
                hi = mid
        s = 0.5 * (lo + hi)
    return SustainedPower(idle_j, floor_j * r, dynamic_j * r, s, True)
