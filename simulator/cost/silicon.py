"""ASIC area, power and unit cost from a systolic part's spec and its process node.

A first-order model of the die (every figure in ``arch_specs/process/nodes.yaml`` with its
source; estimates are marked there):

- **PE array**: ``rows x cols x count`` PEs of each matrix unit. A PE is a MAC of its
  datapath dtype (``params.pe_datapath``, else the widest dtype the unit lists) plus its
  pipeline registers: two operands and the accumulator, and a second copy of the stationary
  operand for ``ws``/``is`` (double buffered in the PE). Arithmetic areas are Horowitz's 45 nm
  figures scaled by logic density (45 nm -> node); registers are 5.67 gate equivalents per
  bit. Cell area is divided by the placement utilisation and multiplied by the wiring
  overhead (clock tree, control, operand buses).
- **Vector units**: ``count x flops_per_cycle / 2`` MAC lanes of their widest dtype, built
  like PEs without the stationary register.
- **On-chip memory**: each level inside DRAM. SRAM macros: bits x bit cell / macro
  efficiency, or the node's published macro density. Levels named in
  ``params.regfile_levels`` (per-PE scratchpads) are flip-flop register files. Operand
  buffers (``params.sram``, what the mapper tiles into) larger in total than the levels add
  the difference as SRAM, so a what-if on ``params.sram`` moves the area too.
- **Control**: a share of the core (TPU v1's floor plan).
- **I/O PHYs**: DRAM interface area per GB/s (DDR-class or HBM, by the level's name), SerDes
  per GB/s per direction for ``link`` and ``host_link``.

Power: leakage = die area x the node's leakage density; dynamic at peak = the array's peak
FLOP/s x the spec's energy per FLOP + the on-chip levels' bandwidth x their energy per byte;
peak power = leakage + dynamic at peak, compared with the spec's TDP.

Cost: dies per wafer (300 mm, edge loss, scribe lane; Chiplet Actuary's formula), negative
binomial yield ``(1 + D0 A / alpha)^-alpha``, die cost = wafer price / (dies x yield);
package: CoWoS-class with HBM, else a conventional package and test; memory: HBM or
commodity DRAM $/GB x the DRAM capacity. ``unit_cost_usd`` is their sum, the manufacturing
cost of one part (no margin, NRE or board).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.arch.spec import ComputeUnit, Device, MemoryLevel
from simulator.cost.process import AreaModel, ProcessNode, area_model, node_for
from simulator.errors import SpecError

__all__ = ["AreaItem", "SiliconReport", "silicon_report", "supports_silicon", "mac_area_45nm",
           "pe_datapath", "dies_per_wafer", "die_yield", "DTYPE_BITS"]

DTYPE_BITS = {"int4": 4, "int8": 8, "int16": 16, "fp8": 8, "bf16": 16, "fp16": 16,
              "fp32": 32, "tf32": 32}
# widest first: a PE that runs several dtypes is sized for the most expensive one
_WIDTH_ORDER = ("fp32", "tf32", "fp16", "bf16", "fp8", "int16", "int8", "int4")
_ACC_BITS = {"int4": 16, "int8": 32, "int16": 32, "fp8": 16, "fp16": 32, "bf16": 32,
             "fp32": 32, "tf32": 32}


@dataclass(frozen=True)
class AreaItem:
    """One component of the die: its area and how it was derived."""

    name: str
    area_mm2: float
    detail: str


@dataclass(frozen=True)
class SiliconReport:
    """Area, power and unit cost of one part."""

    part: str
    node: str
    items: tuple[AreaItem, ...]
    die_mm2: float
    leakage_w: float
    dynamic_peak_w: float
    tdp_w: float
    dies_per_wafer: int
    yield_fraction: float
    die_usd: float
    package_usd: float
    memory_usd: float
    notes: tuple[str, ...] = ()
    breakdown: Mapping[str, float] = field(default_factory=dict)

    @property
    def area_mm2(self) -> float:
        return self.die_mm2

    @property
    def power_w(self) -> float:
        """Peak power: leakage plus the dynamic power of the arrays and SRAMs at peak."""
        return self.leakage_w + self.dynamic_peak_w

    @property
    def unit_cost_usd(self) -> float:
        return self.die_usd + self.package_usd + self.memory_usd

    def area_of(self, name: str) -> float:
        return sum(i.area_mm2 for i in self.items if i.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "part": self.part, "node": self.node, "area_mm2": self.area_mm2,
            "area_breakdown_mm2": {i.name: i.area_mm2 for i in self.items},
            "leakage_w": self.leakage_w, "dynamic_peak_w": self.dynamic_peak_w,
            "power_w": self.power_w, "tdp_w": self.tdp_w,
            "dies_per_wafer": self.dies_per_wafer, "yield": self.yield_fraction,
            "die_usd": self.die_usd, "package_usd": self.package_usd,
            "memory_usd": self.memory_usd, "unit_cost_usd": self.unit_cost_usd,
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [f"silicon ({self.node}): die {self.area_mm2:.3g} mm^2 = "
               + " + ".join(f"{i.name} {i.area_mm2:.3g}" for i in self.items)]
        out += [f"  {i.name}: {i.detail}" for i in self.items]
        out.append(f"power: peak {self.power_w:.3g} W = leakage {self.leakage_w:.3g} W + dynamic "
                   f"at peak {self.dynamic_peak_w:.3g} W (spec TDP {self.tdp_w:.3g} W)")
        out.append(f"unit cost ${self.unit_cost_usd:,.2f} = die ${self.die_usd:,.2f} "
                   f"({self.dies_per_wafer} dies/wafer, yield {self.yield_fraction:.1%}) + package "
                   f"and test ${self.package_usd:,.2f} + memory ${self.memory_usd:,.2f}")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _src(device: Device) -> str:
    return device.source or device.name


def supports_silicon(device: Device) -> bool:
    """The model covers systolic-array parts (ASICs, TPUs); GPUs, CPUs and FPGAs are bought,
    not drawn, so their price comes from the spec."""
    return device.family == "systolic"


def mac_area_45nm(dtype: str, m: AreaModel) -> float:
    """Area (um^2, 45 nm) of one multiply-accumulate of ``dtype`` (nodes.yaml's decisions)."""
    a = m.arithmetic_45nm_um2
    mult = {
        "int4": a["int8_mult"] / 4.0,
        "int8": a["int8_mult"],
        "int16": math.sqrt(a["int8_mult"] * a["int32_mult"]),
        "fp8": a["int8_mult"],
        "fp16": a["fp16_mult"], "bf16": a["fp16_mult"],
        "fp32": a["fp32_mult"], "tf32": a["fp32_mult"],
    }[dtype]
    add = {16: a["int16_add"], 32: a["int32_add"]}[_ACC_BITS[dtype]]
    if dtype == "fp8":
        add = a["fp16_add"]
    elif dtype in ("fp16", "bf16", "fp32", "tf32"):
        add = a["fp32_add"]
    return mult + add


def pe_datapath(device: Device, unit: ComputeUnit) -> str:
    """The dtype a unit's PEs are sized for: ``params.pe_datapath``, else its widest dtype."""
    forced = device.params.get("pe_datapath")
    if forced and unit.unit == "matrix":
        return str(forced)
    for d in _WIDTH_ORDER:
        if unit.flops_per_cycle.get(d):
            return d
    raise SpecError(_src(device), [f"compute.{unit.name}.flops_per_cycle: no dtype the area "
                    f"model knows ({', '.join(_WIDTH_ORDER)})"])


def _logic_mm2(gate_equivalents: float, node: ProcessNode, m: AreaModel) -> float:
    """Placed-and-routed area of a number of NAND2 gate equivalents at the node."""
    cell = gate_equivalents / (node.logic_kgates_per_mm2 * 1e3)
    return cell / m.placement_utilization * m.wiring_overhead


def _pe_gates(dtype: str, stationary: bool, m: AreaModel) -> tuple[float, float, float]:
    """(arithmetic GE, register GE, register bits) of one PE."""
    arith = mac_area_45nm(dtype, m) * m.reference_kgates_per_mm2 * 1e-3  # um^2 -> GE
    w = DTYPE_BITS[dtype]
    bits = 2 * w + _ACC_BITS[dtype] + (w if stationary else 0)
    return arith, bits * m.ff_gate_equivalents, float(bits)


def _kib(b: float) -> str:
    return f"{b / 1024:,.4g} KiB"


def _level_kind(level: MemoryLevel) -> str:
    return "hbm" if "hbm" in level.name.lower() else "ddr"


def dies_per_wafer(die_mm2: float, m: AreaModel) -> int:
    """Gross dies on a wafer (Chiplet Actuary chip.py: edge loss and scribe lane)."""
    a_s = (math.sqrt(die_mm2) + m.scribe_lane_mm) ** 2
    r = m.wafer_diameter_mm / 2 - m.edge_loss_mm
    n = math.pi * r * r / a_s - math.pi * (m.wafer_diameter_mm - 2 * m.edge_loss_mm) / math.sqrt(
        2 * a_s)
    return max(0, int(n))


def die_yield(die_mm2: float, d0_per_cm2: float, alpha: float) -> float:
    """Negative binomial yield ``(1 + D0 A / alpha)^-alpha`` (A in cm^2)."""
    return (1 + d0_per_cm2 * die_mm2 / 100.0 / alpha) ** -alpha


def silicon_report(device: Device) -> SiliconReport:
    """Area, power and unit cost of a systolic part (module docstring).

    Raises
    ------
    SpecError
        For a part outside the model (not ``family: systolic``), a node nodes.yaml lacks, a
        regfile level that is not in the spec, or a die too large for a wafer.
    """
    if not supports_silicon(device):
        raise SpecError(
            _src(device), [f"the area and die-cost model covers systolic-array parts (family "
            f"systolic: ASICs and TPUs); this part is family {device.family!r}: its price comes "
            f"from the spec's cost section"])
    m = area_model()
    node = node_for(device.process_nm, _src(device))
    notes = list(node.notes)
    items: list[AreaItem] = []
    dataflow = str(device.params.get("dataflow", "ws"))
    stationary = dataflow in ("ws", "is")

    for u in device.compute:
        if u.unit not in ("matrix", "vector"):
            continue
        dt = pe_datapath(device, u)
        if u.unit == "matrix":
            rows, cols = u.shape or (1, int(max(u.flops_per_cycle.values()) // 2) or 1)
            n = u.count * rows * cols
            arith, regs, bits = _pe_gates(dt, stationary, m)
            what = f"{n:,} PEs ({u.count} x {rows} x {cols}), {dt} MAC"
        else:
            n = max(1, int(round(u.count * max(u.flops_per_cycle.values()) / 2)))
            arith, regs, bits = _pe_gates(dt, False, m)
            what = f"{n:,} lanes, {dt} MAC"
        area = n * _logic_mm2(arith + regs, node, m)
        items.append(AreaItem(
            u.name, area,
            f"{what}: {arith:,.0f} GE arithmetic + {bits:.0f} register bits ({regs:,.0f} GE) "
            f"= {area / n * 1e6:,.0f} um^2 each at {node.logic_kgates_per_mm2:,.0f} kGE/mm^2, "
            f"/{m.placement_utilization:g} placement x{m.wiring_overhead:g} wiring"))

    regfile = {s.strip() for s in str(device.params.get("regfile_levels", "")).split(",")
               if s.strip()}
    inner = [lv for lv in device.memory[1:] if lv.capacity_bytes < device.dram.capacity_bytes]
    unknown = regfile - {lv.name for lv in inner}
    if unknown:
        raise SpecError(_src(device), [f"params.regfile_levels: {', '.join(sorted(unknown))} is "
                        f"not an on-chip memory level (they are "
                        f"{', '.join(lv.name for lv in inner) or 'none'})"])
    sram_dyn = 0.0
    for lv in inner:
        bits = lv.capacity_bytes * 8
        if lv.name in regfile:
            area = _logic_mm2(bits * m.ff_gate_equivalents, node, m)
            detail = f"{bits:,.0f} bits of flip-flop register file"
        elif node.sram_macro_mbit_per_mm2:
            area = bits / 1e6 / node.sram_macro_mbit_per_mm2
            detail = (f"{bits / 2**20:,.2f} Mibit SRAM at the published "
                      f"{node.sram_macro_mbit_per_mm2:.1f} Mbit/mm^2 macro density")
        else:
            area = bits * node.sram_bitcell_um2 / m.sram_macro_efficiency * 1e-6
            detail = (f"{bits / 2**20:,.2f} Mibit SRAM: {node.sram_bitcell_um2:g} um^2 bit cell "
                      f"/ {m.sram_macro_efficiency:g} macro efficiency")
        items.append(AreaItem(lv.name, area, detail))
        sram_dyn += lv.bandwidth_Bps * lv.energy_per_byte_j

    buffers = device.params.get("sram") or {}
    extra = sum(float(v) for v in buffers.values()) - sum(lv.capacity_bytes for lv in inner)
    if extra > 0:  # operand buffers the mapper tiles into, beyond the listed levels
        bits = extra * 8
        area = (bits / 1e6 / node.sram_macro_mbit_per_mm2 if node.sram_macro_mbit_per_mm2
                else bits * node.sram_bitcell_um2 / m.sram_macro_efficiency * 1e-6)
        items.append(AreaItem("operand_buffers", area,
                              f"params.sram ({', '.join(f'{k} {_kib(v)}' for k, v in buffers.items())})"
                              f" exceeds the on-chip levels by {_kib(extra)}: that much more SRAM"))

    core = sum(i.area_mm2 for i in items)
    control = core * m.control_share / (1 - m.control_share)
    items.append(AreaItem("control", control, f"{m.control_share:.0%} of the core (TPU v1 floor "
                                              f"plan)"))
    dram = device.dram
    kind = _level_kind(dram)
    gbps = dram.bandwidth_Bps / 1e9
    items.append(AreaItem(f"{kind}_phy", gbps * m.phy_mm2_per_gbps[kind],
                          f"{gbps:,.3g} GB/s x {m.phy_mm2_per_gbps[kind]:g} mm^2 per GB/s"))
    for ln in (device.link, device.host_link):
        if ln is None:
            continue
        g = ln.bandwidth_Bps / 1e9
        items.append(AreaItem(f"{ln.name}_phy", g * m.phy_mm2_per_gbps["serdes"],
                              f"{g:,.3g} GB/s per direction x {m.phy_mm2_per_gbps['serdes']:g} "
                              f"mm^2 per GB/s"))
    die = sum(i.area_mm2 for i in items)
    if not math.isfinite(die) or die <= 0:
        raise SpecError(_src(device), [f"the area model gives a die of {die!r} mm^2"])

    leak = die * node.leakage_w_per_mm2
    dyn = sram_dyn
    for u in device.compute:
        if u.unit in ("matrix", "vector") and u.flops_per_cycle:
            cls, per = max(u.flops_per_cycle.items(), key=lambda kv: kv[1])
            dyn += u.count * u.clock_hz * per * device.energy.per_flop(cls)

    dpw = dies_per_wafer(die, m)
    if dpw < 1:
        raise SpecError(_src(device), [f"a {die:,.0f} mm^2 die does not fit a "
                        f"{m.wafer_diameter_mm:g} mm wafer"])
    y = die_yield(die, node.defect_density_per_cm2, m.yield_alpha)
    die_usd = node.wafer_usd / (dpw * y)
    gb = dram.capacity_bytes / 1e9
    if kind == "hbm":
        package, mem = m.cowos_usd + m.package_test_usd, gb * m.hbm_usd_per_gb
        notes.append(f"HBM: {gb:,.3g} GB x ${m.hbm_usd_per_gb:g}/GB; CoWoS-class package "
                     f"${m.cowos_usd:,.0f} + test ${m.package_test_usd:,.0f}")
    else:
        package, mem = m.package_test_usd, gb * m.dram_usd_per_gb
        notes.append(f"DRAM ({dram.name}): {gb:,.3g} GB x ${m.dram_usd_per_gb:g}/GB; "
                     f"package and test ${m.package_test_usd:,.0f}")
    return SiliconReport(
        part=device.name, node=node.name, items=tuple(items), die_mm2=die, leakage_w=leak,
        dynamic_peak_w=dyn, tdp_w=device.power.tdp_w, dies_per_wafer=dpw, yield_fraction=y,
        die_usd=die_usd, package_usd=package, memory_usd=mem, notes=tuple(notes),
        breakdown={i.name: i.area_mm2 for i in items})
