"""The power model of one device: idle, busy floor, on-chip path per DRAM byte, DVFS law.

>>> from simulator.arch.loader import load_arch
>>> pm = power_model(load_arch("h100-sxm").device)
>>> round(pm.idle_w), round(pm.floor_w), round(pm.limit_w)
(90, 322, 700)
>>> pm.dynamic_scale(1.0), round(pm.dynamic_scale(0.5), 2)
(1.0, 0.64)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from simulator.arch.spec import Device
from simulator.power.coefficients import (
    MEMORY_CONTROLLER_PJ_PER_BIT,
    WIRE_PJ_PER_BIT_MM_28NM,
    family_default,
    memory_type,
    supply_voltage,
)

__all__ = ["PowerModel", "power_model", "onchip_j_per_dram_byte", "noc_j_per_byte",
           "power_family"]


def power_family(device: Device) -> str:
    """The coefficient table a device uses: ``edge`` for edge parts, ``asic`` for systolic
    ASICs that are not TPUs, else its family."""
    if device.kind == "edge" and device.family != "cpu":
        return "edge"
    if device.kind == "asic":
        return "asic"
    return device.family


def onchip_j_per_dram_byte(device: Device) -> float:
    """Energy (J) of the on-chip path of one DRAM byte beyond the DRAM device and its PHY:
    memory controller, the wires from the PHY to the last-level cache (half the family's
    on-chip distance) and the write into that cache. 0 when the outermost level is on-chip
    SRAM (nothing crosses a DRAM PHY).

    H100 (4 nm, HBM3): controller 0.5 pJ/bit x 8 = 4 pJ, wires 7.5 mm x 0.2 pJ/bit/mm x
    (0.72 V / 0.9 V)^2 x 8 = 7.7 pJ, L2 write 1.5 pJ: 13.2 pJ/B, beside the 28 pJ/B of the
    HBM3 device and PHY.
    """
    return _onchip_any(device)[0]


def _hashable(device: Device) -> bool:
    try:
        hash(device)
    except TypeError:  # a Device built by hand with plain dicts: computed uncached
        return False
    return True


def _onchip_any(device: Device) -> tuple[float, float]:
    return _onchip(device) if _hashable(device) else _onchip.__wrapped__(device)


def noc_j_per_byte(device: Device) -> float:
    """Energy (J) of one byte read out of the level after DRAM (the L2 of a GPU, the global
    buffer or CMEM of a systolic part, the L3 of a CPU) and carried to a core: the wires of
    the crossbar/NoC over the family's on-chip distance and the core's load path (the
    innermost level's write and read). Every byte a GPU SM reads from the L2 crosses the
    crossbar: on an H100, 15 mm x 0.2 pJ/bit/mm x (0.72/0.9)^2 x 8 = 15.4 pJ plus 3 x 0.6 pJ
    = 17.2 pJ/B on top of the L2 array read (the spec's 1.5 pJ/B)."""
    return _onchip_any(device)[1]


@lru_cache(maxsize=512)
def _onchip(device: Device) -> tuple[float, float]:
    if len(device.memory) < 2:
        return 0.0, 0.0
    fam = power_family(device)
    v = supply_voltage(device.process_nm) / 0.9
    wire_b = family_default(fam, "noc_mm").value * WIRE_PJ_PER_BIT_MM_28NM * v * v * 8
    inner = device.memory[1:]
    # the crossbar/NoC term needs a shared level with a core-local level inside it
    core = family_default(fam, "core_load_fills").value * inner[-1].energy_per_byte_j * 1e12 \
        if len(inner) > 1 else 0.0
    noc = (wire_b + core) * 1e-12 if len(inner) > 1 else 0.0
    mtype = memory_type(device.memory[0].name)
    if mtype == "sram":
        return 0.0, noc
    ctrl = MEMORY_CONTROLLER_PJ_PER_BIT[mtype] * 8
    fill = family_default(fam, "cache_fills").value * inner[0].energy_per_byte_j * 1e12
    return (ctrl + wire_b / 2 + fill) * 1e-12, noc


@dataclass(frozen=True)
class PowerModel:
    """One device's power coefficients (W, J/B, relative clocks) and where each came from."""

    device: str
    family: str
    idle_w: float
    floor_w: float
    tdp_w: float
    limit_w: float
    clock_hz: float
    onchip_j_per_byte: float
    noc_j_per_byte: float
    v0: float
    min_clock: float
    sources: tuple[tuple[str, str], ...] = ()

    @property
    def floor_above_idle_w(self) -> float:
        return max(0.0, self.floor_w - self.idle_w)

    def voltage(self, s: float) -> float:
        """Supply voltage relative to the boost point at relative clock ``s`` (linear V-f)."""
        return self.v0 + (1.0 - self.v0) * s

    def dynamic_scale(self, s: float) -> float:
        """Energy per operation at clock ``s`` relative to boost: (V(s)/V(1))^2 (E = C V^2)."""
        return self.voltage(s) ** 2

    def floor_scale(self, s: float) -> float:
        """Busy-floor power above idle at clock ``s`` relative to boost: s V(s)^2 (P = C V^2 f)."""
        return s * self.dynamic_scale(s)

    def to_dict(self) -> dict[str, Any]:
        return {"idle_w": self.idle_w, "active_floor_w": self.floor_w, "tdp_w": self.tdp_w,
                "power_limit_w": self.limit_w, "clock_hz": self.clock_hz,
                "onchip_j_per_dram_byte": self.onchip_j_per_byte,
                "noc_j_per_byte": self.noc_j_per_byte,
                "dvfs": {"law": "P_dyn ~ f V(f)^2, V(f)/V(f_max) = v0 + (1 - v0) f/f_max",
                         "v0": self.v0, "min_clock": self.min_clock},
                "sources": dict(self.sources)}


def power_model(device: Device, limit_w: float | None = None) -> PowerModel:
    """The device's power model; ``limit_w`` overrides the spec's ``power.limit`` (default:
    the TDP)."""
    return _model(device, limit_w) if _hashable(device) else _model.__wrapped__(device, limit_w)


@lru_cache(maxsize=512)
def _model(device: Device, limit_w: float | None) -> PowerModel:
    fam = power_family(device)
    p = device.power
    k = family_default(fam, "floor_fraction")
    if p.active_w is not None:
        floor, fsrc = p.active_w, f"spec power.active ({device.source or device.name})"
    else:
        floor = p.static_w + k.value * max(0.0, p.tdp_w - p.static_w)
        fsrc = f"idle + {k.value:g} x (TDP - idle): {k.source}"
    limit = limit_w if limit_w is not None else (getattr(p, "limit_w", None) or p.tdp_w)
    clocks = [c.clock_hz for c in device.compute if c.clock_hz]
    v0, smin = family_default(fam, "dvfs_v0"), family_default(fam, "dvfs_min_clock")
    srcs = (("idle_w", "spec power.static"), ("floor_w", fsrc),
            ("onchip_j_per_byte", "simulator/power/coefficients.py: controller "
             "(MEMORY_CONTROLLER_PJ_PER_BIT), wires to the last-level cache (noc_mm / 2 x "
             "WIRE_PJ_PER_BIT_MM_28NM x V^2), the cache fill"),
            ("noc_j_per_byte", "simulator/power/coefficients.py: crossbar/NoC wires (noc_mm x "
             "WIRE_PJ_PER_BIT_MM_28NM x V^2) and the core's load path (core_load_fills)"),
            ("dvfs_v0", v0.source), ("dvfs_min_clock", smin.source))
    return PowerModel(device.name, fam, p.static_w, floor, p.tdp_w, float(limit),
                      max(clocks) if clocks else 0.0, onchip_j_per_dram_byte(device),
                      noc_j_per_byte(device),
                      v0.value, smin.value, srcs)
