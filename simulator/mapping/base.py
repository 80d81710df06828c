"""The mapping protocol: Op x Device -> OpCost, with a registry of per-family cost functions.

A family module (``gpu.py``, ``systolic.py``, ``fpga.py``, ``cpu.py``) registers one function
per op kind with ``@register_cost(kind, family)``; registering twice is an error, and an op
kind with no function for a family raises :class:`UnsupportedOpError` (never a zero cost).
:func:`make_cost` turns the times and traffic a mapper computed into an :class:`OpCost` with
the bound, utilisation and dynamic energy filled in the same way for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.arch.spec import Device
from simulator.frozen import FrozenMap
from simulator.power import NOC, ONCHIP, noc_j_per_byte, onchip_j_per_dram_byte
from workloads.ops import Flops, Op

__all__ = ["OpCost", "EnergyParts", "MapOptions", "CostFn", "register_cost", "registry",
           "make_cost"]


@dataclass(frozen=True)
class EnergyParts:
    """Dynamic energy of one op in joules: compute plus bytes moved per memory level/link."""

    compute_j: float = 0.0
    memory_j: Mapping[str, float] = field(default_factory=lambda: FrozenMap({}))

    @property
    def total_j(self) -> float:
        return self.compute_j + sum(self.memory_j.values())


@dataclass(frozen=True)
class OpCost:
    """What one op costs on one device.

    ``latency_s`` is the op's duration; ``compute_s`` and ``memory_s`` are the times its compute
    and its DRAM traffic would take alone; ``overhead_s`` is fixed cost (kernel launch,
    dispatch, link latency). ``bound`` is ``compute``, ``memory``, ``latency`` or
    ``communication``. ``details`` holds family facts (tiles and waves, folds and cycles) and
    ``notes`` the plain-words reasoning printed by ``--explain``.
    """

    latency_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    bound: str
    flops: Flops
    bytes_by_level: Mapping[str, float]
    utilization: float
    energy: EnergyParts
    compute_class: str = ""
    details: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    notes: tuple[str, ...] = ()

    @property
    def energy_j(self) -> float:
        return self.energy.total_j

    @property
    def dram_bytes(self) -> float:
        return next(iter(self.bytes_by_level.values()), 0.0)


@dataclass(frozen=True)
class MapOptions:
    """Options that change how an op is mapped (not what it is).

    ``rotated_sets`` describes a measurement loop rather than a graph: the op is run over this
    many distinct input sets in turn (the harness of :mod:`simulator.validate` rotates them to
    defeat caching), so between two uses of the same bytes it touches ``rotated_sets`` times
    its own; a family that serves a small working set warm from a cache (CPU, GPU) checks that
    footprint against the cache instead. ``None`` (the default): the op runs inside a graph,
    its inputs just written by their producer.
    """

    dataflow: str | None = None  # systolic/FPGA: os | ws | is; None = the spec's default
    #: systolic/FPGA memory schedule: "best" (hwsim's SRAM tiling search, the default) or
    #: "scalesim" (SCALE-Sim's fixed schedule and per-operand interfaces, for comparison)
    schedule: str | None = None
    rotated_sets: int | None = None
    #: systolic/FPGA: the fraction of each GEMM operand (input activations, weights, output
    #: activations) that crosses the off-chip level, from the graph-level residency decision
    #: of :mod:`simulator.mapping.residency`; None: all of it (every op on its own)
    offchip: tuple[float, float, float] | None = None


CostFn = Callable[[Op, Device, MapOptions], OpCost]
_REGISTRY: dict[tuple[str, str], CostFn] = {}


def registry() -> dict[tuple[str, str], CostFn]:
    """The cost functions registered so far, by ``(family, op kind)``; families register on
    import (see :mod:`simulator.mapping.registry`, which imports them all)."""
    return dict(_REGISTRY)


def register_cost(kind: str, family: str) -> Callable[[CostFn], CostFn]:
    """Register ``fn(op, device, options) -> OpCost`` for an op kind on a device family."""

    def deco(fn: CostFn) -> CostFn:
        key = (family, kind)
        if key in _REGISTRY:
            raise ValueError(f"cost for {kind!r} on family {family!r} is already registered "
                             f"by {_REGISTRY[key].__module__}.{_REGISTRY[key].__name__}")
        _REGISTRY[key] = fn
        return fn

    return deco


def make_cost(device: Device, op: Op, *, compute_s: float, memory_s: float,
              bytes_by_level: Mapping[str, float], compute_class: str, peak_flops: float,
              overhead_s: float = 0.0, latency_s: float | None = None,
              details: Mapping[str, Any] | None = None, notes: tuple[str, ...] = (),
              flops: Flops | None = None) -> OpCost:
    """Assemble an OpCost with bound, utilisation and dynamic energy filled in.

    ``latency_s`` defaults to ``max(compute_s, memory_s) + overhead_s`` (compute and memory
    overlap, as with double buffering or many warps in flight). ``peak_flops`` is the peak the
    utilisation is measured against.
    """
    fl = flops if flops is not None else op.flops()
    if latency_s is None:
        latency_s = max(compute_s, memory_s) + overhead_s
    busy = max(compute_s, memory_s)
    if overhead_s > busy:
        bound = "latency"
    elif compute_s >= memory_s:
        bound = "compute"
    else:
        bound = "memory"
    util = fl.total / (latency_s * peak_flops) if latency_s > 0 and peak_flops > 0 else 0.0
    e = device.energy
    cls = compute_class or "fp32"
    compute_j = (fl.matrix + fl.vector) * e.per_flop(cls) + \
        fl.special * e.per_flop(cls) * e.special_multiplier
    mem_j = {}
    for lvl_name, nbytes in bytes_by_level.items():
        lvl = device.level(lvl_name)
        epb = lvl.energy_per_byte_j if lvl else (device.link.energy_per_byte_j
                                                  if device.link and device.link.name == lvl_name
                                                  else 0.0)
        mem_j[lvl_name] = nbytes * epb
    # on-chip data movement (simulator.power): every DRAM byte's path to the last-level cache
    # (controller, wires, fill), and every byte carried from that cache to a core (crossbar
    # or NoC wires, the core's load path)
    for key, lvl, per_byte in ((ONCHIP, 0, onchip_j_per_dram_byte),
                               (NOC, 1, noc_j_per_byte)):
        name = device.memory[lvl].name if len(device.memory) > lvl else None
        if name is not None and bytes_by_level.get(name):
            e_move = bytes_by_level[name] * per_byte(device)
            if e_move > 0:
                mem_j[key] = e_move
    return OpCost(latency_s=latency_s, compute_s=compute_s, memory_s=memory_s,
                  overhead_s=overhead_s, bound=bound, flops=fl,
                  bytes_by_level=FrozenMap(dict(bytes_by_level)), utilization=min(util, 1.0),
                  energy=EnergyParts(compute_j, FrozenMap(mem_j)), compute_class=cls,
                  details=FrozenMap(dict(details or {})), notes=tuple(notes))
