"""Power capping: when an op would draw more than the device's power limit, the core clock
drops until it does not (DVFS), as the power governors of GPUs, TPUs and CPUs do.

The law (stated once, used everywhere): dynamic power P = C V^2 f, with the supply voltage
falling linearly with the clock over the DVFS range, V(s) = v0 + (1 - v0) s for s = f / f_max
(Mei, Wang, Chu, DCN 2017 measure near-linear V-f curves on NVIDIA parts). Hence, at clock s:

* energy per FLOP and per on-chip byte scale by V(s)^2 (E = C V^2 per toggle);
* the busy floor above idle (clock tree, pipelines) scales by s V(s)^2;
* compute time stretches by 1/s; DRAM-bound time does not (the memory clock is separate);
* the DRAM device's own energy per byte does not change.

The op's power is ``idle + floor(s) + (its dynamic energy at s) / (its time)``; the clock that
gives the shortest time at or under the limit is found by bisection (:func:`_solve`). Below
``min_clock`` the clock does not go: there the op stretches (stalls) until its power fits;
only idle plus floor above the limit leaves it over. The mappers' rates hold at the TDP
(measured efficiencies include the throttling real parts do there), so times scale by
``time(limit) / time(TDP)``: a default run keeps its latency and only its energy follows the
lower clock of ops that would exceed the TDP.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from simulator.frozen import FrozenMap
from simulator.power.model import PowerModel

#: an OpCost (simulator.mapping.base); not imported: the mappers import this package
OpCost = Any

__all__ = ["ONCHIP", "NOC", "op_power_w", "apply_power_cap"]

#: The memory_j keys of the on-chip path of DRAM bytes and of last-level-cache bytes carried
#: to the cores (simulator.mapping.base.make_cost); both are core-voltage energy.
ONCHIP = "onchip"
NOC = "noc"
_SCALED = (ONCHIP, NOC)


def _parts(cost: OpCost) -> tuple[float, float]:
    """(energy that scales with V^2, energy that does not) of an op, J."""
    mem = cost.energy.memory_j
    scaled = cost.energy.compute_j + sum(mem.get(k, 0.0) for k in _SCALED)
    fixed = sum(v for k, v in mem.items() if k not in _SCALED)
    return scaled, fixed


def _latency(cost: OpCost, s: float) -> float:
    busy = max(cost.compute_s, cost.memory_s)
    return cost.latency_s + max(cost.compute_s / s, cost.memory_s) - busy


def op_power_w(cost: OpCost, pm: PowerModel, s: float = 1.0) -> float:
    """The device's power (W) while ``cost`` runs alone at relative clock ``s``."""
    lat = _latency(cost, s)
    if lat <= 0:
        return pm.idle_w
    scaled, fixed = _parts(cost)
    return pm.idle_w + pm.floor_above_idle_w * pm.floor_scale(s) + \
        (scaled * pm.dynamic_scale(s) + fixed) / lat


def _energy_time(cost: OpCost, pm: PowerModel, s: float, limit: float) -> float:
    """The shortest time in which the op's energy at clock ``s`` fits under ``limit`` (inf
    when idle and floor alone reach it)."""
    scaled, fixed = _parts(cost)
    room = limit - pm.idle_w - pm.floor_above_idle_w * pm.floor_scale(s)
    e = scaled * pm.dynamic_scale(s) + fixed
    return e / room if room > 0 else float("inf")


def _solve(cost: OpCost, pm: PowerModel, limit: float) -> tuple[float, float]:
    """(relative clock, time) of ``cost`` under ``limit``: at clock ``s`` the op takes
    ``max(L(s), E(s) / (limit - idle - floor(s)))`` (its compute/memory time at that clock,
    or longer when its energy needs more time to stay under the limit: the part stalls, as a
    power-capped GPU does). ``L(s)`` falls and the energy term rises with ``s``: the best
    clock is where they cross (bisection). So more bandwidth or more units never make an op
    slower under the same limit."""
    if op_power_w(cost, pm, 1.0) <= limit * (1 + 1e-9):
        return 1.0, cost.latency_s
    lo, hi = pm.min_clock, 1.0
    if _latency(cost, lo) < _energy_time(cost, pm, lo, limit):
        hi = lo  # power-bound even at the lowest clock: run there, stretched
    else:
        for _ in range(50):  # L(s) - E-time(s) falls with s: find where it crosses zero
            mid = 0.5 * (lo + hi)
            if _latency(cost, mid) >= _energy_time(cost, pm, mid, limit):
                lo = mid
            else:
                hi = mid
    et = _energy_time(cost, pm, lo, limit)
    return lo, max(_latency(cost, lo), et if et != float("inf") else 0.0)


def apply_power_cap(cost: OpCost, pm: PowerModel) -> OpCost:
    """``cost`` at the clock its power allows under ``pm.limit_w`` (itself when under).

    The mappers' rates are what parts achieve at their default power limit (the TDP): the
    compute efficiencies in the specs are measured on real parts, which already throttle on
    the largest GEMMs. So an op's time is scaled by ``time(limit) / time(TDP)`` (:func:`_solve`
    at each): unchanged at the default limit, longer under a lower one, shorter (up to the
    full clock) under a higher one. Its energy is always that of the clock it runs at: per
    FLOP and per on-chip byte x V(s)^2.
    """
    if cost.latency_s <= 0 or cost.compute_s <= 0 or cost.bound == "communication":
        return cost
    s_ref, t_ref = _solve(cost, pm, pm.tdp_w)
    s, t = (s_ref, t_ref) if pm.limit_w == pm.tdp_w else _solve(cost, pm, pm.limit_w)
    if s >= 1.0 and s_ref >= 1.0:
        return cost
    v2 = pm.dynamic_scale(s)
    lat = cost.latency_s * t / t_ref
    scaled, fixed = _parts(cost)
    # where the measured time is kept (ops throttled at the TDP), the part sits at its limit
    # for that time: the dynamic energy is what the limit leaves after idle and floor
    room = max(0.0, pm.limit_w - pm.idle_w - pm.floor_above_idle_w * pm.floor_scale(s)) * lat
    e_dyn = scaled * v2 + fixed
    k = min(1.0, room / e_dyn) if e_dyn > 0 else 1.0
    mem = {key: v * (v2 if key in _SCALED else 1.0) * k
           for key, v in cost.energy.memory_j.items()}
    compute_s = cost.compute_s * s_ref / s
    bound = cost.bound if cost.bound == "latency" else \
        ("compute" if compute_s >= cost.memory_s else "memory")
    watts = pm.idle_w + pm.floor_above_idle_w * pm.floor_scale(s) + e_dyn * k / lat
    stuck = _energy_time(cost, pm, pm.min_clock, pm.limit_w) == float("inf")
    note = (f"power: {op_power_w(cost, pm, 1.0):.0f} W at the full clock, limit "
            f"{pm.limit_w:.0f} W (TDP {pm.tdp_w:.0f} W): clock x{s:.3f} "
            f"({s * pm.clock_hz / 1e9:.3g} GHz; x{s_ref:.3f} at the TDP, where the mapper's "
            f"measured rates apply), {watts:.0f} W, {lat / cost.latency_s:.3f}x the time"
            + (" (idle and floor alone exceed the limit)" if stuck else ""))
    details = FrozenMap({**cost.details, "clock_scale": s, "clock_hz": s * pm.clock_hz,
                         "floor_scale": pm.floor_scale(s), "power_w": watts})
    return replace(cost, latency_s=lat, compute_s=compute_s, bound=bound,
                   utilization=cost.utilization * cost.latency_s / lat,
                   energy=replace(cost.energy, compute_j=cost.energy.compute_j * v2 * k,
                                  memory_j=FrozenMap(mem)),
                   details=details, notes=(*cost.notes, note))
