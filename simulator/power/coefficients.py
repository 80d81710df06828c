"""Power-model coefficients per device family, each with its source.

A spec gives ``power: {tdp, static, active?, limit?}``; everything else the power model needs is
derived here from fields every spec has (TDP, idle power, process node, the names and energies
of its memory levels), so a part added without new fields still gets a full model. One table
per family, as :mod:`simulator.arch.params` does for the mappers.

The model of one device (SI units):

* ``idle_w``: drawn whenever the device is powered (the spec's ``power.static``).
* ``floor_w``: the total drawn while any kernel runs, before the energy of the work itself:
  clocks and voltage at the boost point, SM/PE pipelines issuing, clock tree, uncore and
  memory controllers awake. The spec's ``power.active``, else ``idle + k x (TDP - idle)``
  with ``k`` from :data:`FAMILY_POWER`.
* dynamic energy per FLOP (the spec's ``energy`` block, :mod:`simulator.cost.energy_tables`)
  and per byte at every memory level and link (the spec's ``energy_per_byte``).
* ``onchip_j_per_byte``: the on-chip path every DRAM byte takes beyond the DRAM device and its
  PHY (memory controller, wires to the last-level cache, the cache fill), and
  ``noc_j_per_byte``: every byte read out of the last-level cache to a core (the crossbar or
  network-on-chip wires, the core's load path into registers); derived in
  :mod:`simulator.power.model`.
* DVFS: dynamic power ~ C V^2 f with V falling linearly with f over the DVFS range
  (V(s) = v0 + (1 - v0) s, s = f / f_max); see :mod:`simulator.power.dvfs`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PowerDefault", "FAMILY_POWER", "MEMORY_CONTROLLER_PJ_PER_BIT", "WIRE_PJ_PER_BIT_MM_28NM",
           "supply_voltage", "memory_type", "family_default"]


@dataclass(frozen=True)
class PowerDefault:
    """A coefficient a family uses when the spec is silent, and why."""

    value: float
    source: str


#: Energy of moving one bit one millimetre on chip at 28 nm: 0.2 pJ/bit/mm (Keckler, Dally et
#: al., "GPUs and the future of parallel computing", IEEE Micro 2011, table of a 28 nm GPU's
#: energy budget, also reproduced in BMC Bioinformatics 19:2389 table 7: 0.2 pJ per bit per
#: mm; an fp64 operand over 10 mm 64 pJ, a 256-bit 8 KB SRAM access 50 pJ, a DRAM cache-line
#: read 16 nJ). Wire
#: capacitance per mm barely scales with the node, so only V^2 is scaled (see supply_voltage).
WIRE_PJ_PER_BIT_MM_28NM = 0.2

#: Memory controller, queues and PHY digital logic on the logic die, per bit moved (estimates;
#: the DRAM device and its I/O are in the spec's energy_per_byte of the DRAM level). HBM's
#: wide, slow interface needs less per bit than GDDR's or DDR's fast narrow one (O'Connor et
#: al., "Fine-grained DRAM", MICRO 2017: HBM2 3.9 pJ/bit device+I/O vs GDDR5 14 pJ/bit).
MEMORY_CONTROLLER_PJ_PER_BIT: dict[str, float] = {
    "hbm": 0.5, "gddr": 1.0, "lpddr": 0.8, "ddr": 1.0, "dram": 1.0, "sram": 0.0,
}

# (node nm, nominal core supply V): ITRS/IRDS logic roadmap figures (0.9 V at 28 nm, ~0.75 V
# at 5-7 nm FinFET); used only to scale wire energy (C V^2).
_VDD = [(3, 0.70), (5, 0.72), (7, 0.75), (10, 0.78), (16, 0.80), (28, 0.90), (45, 1.0),
        (65, 1.1), (180, 1.8)]

_K_FLOOR = "floor_fraction"
_NOC = "noc_mm"
_FILL = "cache_fills"
_CORE = "core_load_fills"
_V0 = "dvfs_v0"
_SMIN = "dvfs_min_clock"

_GPU: dict[str, PowerDefault] = {
    _K_FLOOR: PowerDefault(
        0.38, "share of (TDP - idle) drawn while any kernel runs, before the work's own energy. "
        "H100 SXM: nvidia-smi reads 140-145 W at P0 with 0% utilisation and the model loaded "
        "(gpu-burn issue #114), H200 115 W (cuda-samples #311): clocks and uncore up is "
        "~0.05-0.09 of the range; with all SMs issuing (warp schedulers, register files, "
        "LSUs) the floor reaches ~0.38: 90 + 0.38 x 610 = 322 W on an H100 (estimate, bounded "
        "by a cuBLAS 8192^3 GEMM staying near its 700 W cap)"),
    _NOC: PowerDefault(
        15.0, "mm an HBM byte crosses on chip from the memory controller through the L2 slices "
        "and crossbar to an SM: about half the side of an ~800 mm^2 die (estimate)"),
    _FILL: PowerDefault(1.0, "the DRAM byte is written into the L2 (its read-out is the L2 "
                        "traffic the mapper counts)"),
    _CORE: PowerDefault(3.0, "L1/shared-memory write, register-file write and read in the SM "
                        "(3 accesses at the innermost level's energy)"),
    _V0: PowerDefault(0.6, "V(f)/V(f_max) extrapolated to f=0: GPU V-f curves run ~0.7 V at "
                      "the lowest to ~1.05 V at boost (Mei, Wang, Chu, 'A survey and "
                      "measurement study of GPU DVFS on energy conservation', DCN 2017)"),
    _SMIN: PowerDefault(0.4, "lowest clock the power governor drops to under load, relative to "
                        "boost (H800: 1980 -> 1575 MHz when compute and NCCL overlap, "
                        "DeepGEMM issue #120; GB300 at a 500 W cap ~0.3-0.4 of its GEMM rate, "
                        "triton PR #2023); 0.4 is an estimate of the floor"),
}

_SYSTOLIC: dict[str, PowerDefault] = {
    _K_FLOOR: PowerDefault(
        0.25, "systolic parts clock-gate idle arrays and have no thread machinery: a smaller "
        "busy floor than a GPU (estimate; TPU v4 draws 90 W idle-ish static and 170-192 W "
        "under load, Jouppi et al. ISCA 2023)"),
    _NOC: PowerDefault(5.0, "mm from the memory controller to the on-chip SRAM (estimate)"),
    _FILL: PowerDefault(1.0, "one write into the on-chip buffer (DMA fill)"),
    _CORE: PowerDefault(1.0, "one read out into the array's edge registers"),
    _V0: PowerDefault(0.6, "as the GPU family (estimate)"),
    _SMIN: PowerDefault(0.5, "estimate"),
}

_FPGA: dict[str, PowerDefault] = {
    _K_FLOOR: PowerDefault(
        0.30, "clocked fabric, DDR/HBM controllers and PCIe up while a design runs (estimate: "
        "Alveo U250 idles at ~35 W of a 225 W card and reaches 100-140 W under typical "
        "kernels, Xilinx XRT/board reports)"),
    _NOC: PowerDefault(10.0, "mm of programmable routing from the memory controller to the "
                       "PEs (estimate; FPGA routing costs more per mm than hard wires)"),
    _FILL: PowerDefault(1.0, "one BRAM/URAM write"),
    _CORE: PowerDefault(1.0, "one BRAM/URAM read into the PEs"),
    _V0: PowerDefault(0.8, "FPGAs run at a fixed voltage: the clock scales, V barely does"),
    _SMIN: PowerDefault(0.5, "estimate"),
}

_CPU: dict[str, PowerDefault] = {
    _K_FLOOR: PowerDefault(
        0.45, "RAPL package power with cores in C0 at turbo and the uncore (mesh, LLC, memory "
        "controllers) awake is roughly half the way from idle to TDP before SIMD work "
        "(estimate from RAPL readings of busy-loop vs AVX-512 loads)"),
    _NOC: PowerDefault(10.0, "mm over the mesh/ring from the memory controller to a core"),
    _FILL: PowerDefault(1.0, "the L3 fill (the inner fills are the mapper's cache traffic)"),
    _CORE: PowerDefault(2.0, "L1 read and register write"),
    _V0: PowerDefault(0.6, "estimate, as GPUs"),
    _SMIN: PowerDefault(0.4, "estimate"),
}

_NO_FLOOR = PowerDefault(
    0.0, "no separate busy floor: the per-op energies of these small ASIC and edge parts are "
    "set in their specs from the chips' published power under load (Eyeriss 278 mW on AlexNet, "
    "Coral 2 W at 4 TOPS, Hailo-8 2.5 W), which already includes the clock network (a third of "
    "Eyeriss's power, JSSC 2017) and the uncore; a floor would count it twice")

_EDGE: dict[str, PowerDefault] = {
    **_SYSTOLIC,
    _K_FLOOR: _NO_FLOOR,
    _NOC: PowerDefault(3.0, "mm on a small SoC die (estimate)"),
}

_ASIC: dict[str, PowerDefault] = {**_SYSTOLIC, _K_FLOOR: _NO_FLOOR,
                                  _NOC: PowerDefault(3.0, "mm on a small ASIC die (estimate)")}

#: Coefficients by family; parts of kind ``edge`` (non-CPU) use ``edge``, systolic parts of
#: kind ``asic`` use ``asic`` (see :func:`simulator.power.model.power_family`).
FAMILY_POWER: dict[str, dict[str, PowerDefault]] = {
    "gpu": _GPU, "systolic": _SYSTOLIC, "fpga": _FPGA, "cpu": _CPU, "edge": _EDGE,
    "asic": _ASIC,
}


def family_default(family: str, key: str) -> PowerDefault:
    """The family's coefficient ``key`` (the GPU table for a family with none)."""
    return FAMILY_POWER.get(family, _GPU).get(key) or _GPU[key]


def supply_voltage(process_nm: float) -> float:
    """Nominal core supply (V) at a node, interpolated in the node table above."""
    pts = sorted(_VDD)
    if process_nm <= pts[0][0]:
        return pts[0][1]
    if process_nm >= pts[-1][0]:
        return pts[-1][1]
    for (n0, v0), (n1, v1) in zip(pts, pts[1:], strict=False):
        if n0 <= process_nm <= n1:
            return v0 + (v1 - v0) * (process_nm - n0) / (n1 - n0)
    return 0.9  # pragma: no cover


def memory_type(level_name: str) -> str:
    """``hbm``, ``gddr``, ``lpddr``, ``ddr`` or ``dram`` from a memory level's name; ``sram``
    for an on-chip outermost level (Hailo-8 keeps everything on chip)."""
    n = level_name.lower()
    for t in ("hbm", "gddr", "lpddr", "ddr"):
        if t in n:
            return t
    if "dram" in n or "mem" == n:
        return "dram"
    return "sram"
