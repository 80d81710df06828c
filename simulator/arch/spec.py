"""Typed architecture model: compute units, memory levels, links, devices and systems.

All values are SI floats (Hz, bytes, B/s, s, W, J/byte, $). Built by
:mod:`simulator.arch.loader` from validated YAML; frozen so a run cannot mutate its hardware.
Per-dtype peak rates are *derived* from unit counts, per-cycle rates and clocks, never typed
in; the YAML's ``published`` section holds datasheet figures the tests compare against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.frozen import FrozenMap
from workloads.dtypes import DType, get_dtype

__all__ = ["ComputeUnit", "MemoryLevel", "Link", "Fabric", "Power", "Pricing", "EnergyModel",
           "Device", "System", "UNIT_KINDS", "DEVICE_KINDS", "FAMILIES", "TOPOLOGIES",
           "FABRIC_TOPOLOGIES", "TORUS_DIMS", "DTYPE_FALLBACK", "KIND_EFFICIENCY_KINDS",
           "KIND_EFFICIENCY_MAX", "FpgaResources", "FpgaDesign", "ResourceUse", "FpgaConfig",
           "FPGA_DEFAULT_PE_ARRAY", "BRAM36_BYTES", "URAM288_BYTES", "BUFFERS",
           "fpga_pe_layout", "fpga_config", "fpga_buffer_use"]

UNIT_KINDS = ("matrix", "vector", "special")
DEVICE_KINDS = ("gpu", "tpu", "fpga", "asic", "cpu")
FAMILIES = ("gpu", "systolic", "fpga", "cpu")
TOPOLOGIES = ("single", "switch", "ring", "torus2d", "torus3d", "pcie")
#: Dimensions of the in-node topologies that may carry a ``shape`` (devices per dimension).
TORUS_DIMS = {"ring": 1, "torus2d": 2, "torus3d": 3}
#: How a scale-out fabric switches its NICs (see :class:`Fabric`).
FABRIC_TOPOLOGIES = ("fat-tree", "rail-optimized")
# Op kinds a spec may give an achievable-fraction factor in ``params.kind_efficiency``: the
# streaming kinds (simulator.mapping.common.STREAMING_KINDS) and attention. GEMM-like kinds
# (matmul, conv2d) use compute_efficiency per dtype instead. A factor divides the op's modelled
# busy time; it may exceed 1 (up to KIND_EFFICIENCY_MAX) because the streaming estimate is not
# a hard bound for every kernel (e.g. an embedding gather whose table rows are cache-resident).
KIND_EFFICIENCY_KINDS = ("elementwise", "norm", "softmax", "pool", "embedding", "memcpy",
                         "attention")
KIND_EFFICIENCY_MAX = 4.0

# When a unit has no native rate for a compute class, it runs at the rate of the next class in
# this chain (e.g. fp8 upcast to fp16 on an A100, int4 unpacked to int8, tf32 as fp32).
DTYPE_FALLBACK: dict[str, tuple[str, ...]] = {
    "int4": ("int8", "fp16", "bf16", "fp32"),
    "int8": ("fp16", "bf16", "fp32"),
    "fp8": ("fp16", "bf16", "fp32"),
    "fp16": ("bf16", "fp32"),
    "bf16": ("fp16", "fp32"),
    "tf32": ("fp32",),
    "fp32": (),
}


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return FrozenMap(dict(d or {}))


@dataclass(frozen=True)
class ComputeUnit:
    """``count`` identical units at ``clock_hz``, each doing ``flops_per_cycle[dtype]`` FLOP per
    cycle (one MAC = 2 FLOP) on FLOP of kind ``unit`` (matrix, vector or special)."""

    name: str
    unit: str
    count: int
    clock_hz: float
    flops_per_cycle: Mapping[str, float]
    shape: tuple[int, int] | None = None  # systolic array rows x cols

    def rate(self, dtype: DType | str) -> float | None:
        """Peak FLOP/s of all units for a compute class (native only; None if unsupported)."""
        key = get_dtype(dtype).compute_class if not isinstance(dtype, str) else dtype
        per = self.flops_per_cycle.get(key)
        return None if per is None else per * self.count * self.clock_hz


@dataclass(frozen=True)
class MemoryLevel:
    """A level of the memory hierarchy (outermost, e.g. HBM, first)."""

    name: str
    capacity_bytes: float
    bandwidth_Bps: float
    latency_s: float = 0.0
    energy_per_byte_j: float = 0.0


@dataclass(frozen=True)
class Link:
    """A point-to-point or switched link: per-direction bandwidth, latency (alpha), energy."""

    name: str
    bandwidth_Bps: float
    latency_s: float = 0.0
    energy_per_byte_j: float = 0.0


@dataclass(frozen=True)
class Fabric(Link):
    """The scale-out network between nodes (InfiniBand, RoCE, DCN): a :class:`Link` whose
    bandwidth, latency and energy are per NIC, plus how the NICs are switched.

    ``nics_per_node`` None means one NIC per device (DGX-style). ``topology``:
    ``fat-tree`` puts all NICs of a node on one leaf switch, ``nodes_per_leaf`` nodes per leaf;
    ``rail-optimized`` puts NIC i of every node on rail switch i (one leaf per rail per
    ``nodes_per_leaf`` nodes), so same-rank devices of different nodes are one hop apart.
    Traffic between leaves (or rails) goes through the spine: ``2 x switch_latency_s`` more
    latency and ``bandwidth / oversubscription`` (1.0 is non-blocking). ``nodes_per_leaf``
    None: every node under one leaf. ``latency_s`` is the one-hop (NIC-leaf-NIC) latency.
    """

    nics_per_node: int | None = None
    topology: str = "fat-tree"
    oversubscription: float = 1.0
    nodes_per_leaf: int | None = None
    switch_latency_s: float = 0.0


@dataclass(frozen=True)
class Power:
    """TDP; static (idle/leakage) power drawn whenever the device is powered; and optionally
    ``active_w``, the floor drawn while the device has work (clocks up, units and memory
    controllers powered), before the dynamic energy of the work itself; ``limit_w``, the power
    limit the clock is lowered to respect (None: the TDP; see :mod:`simulator.power`)."""

    tdp_w: float
    static_w: float
    active_w: float | None = None
    limit_w: float | None = None


@dataclass(frozen=True)
class Pricing:
    """Purchase price and lifetime (for TCO) and/or a cloud price per hour."""

    price_usd: float | None = None
    usd_per_hour: float | None = None
    lifetime_s: float = 4 * 365 * 86400.0


@dataclass(frozen=True)
class EnergyModel:
    """Dynamic energy per FLOP by compute class (J/FLOP) at the device's process node."""

    j_per_flop: Mapping[str, float]
    special_multiplier: float = 4.0  # a transcendental costs ~4 vector FLOP

    def per_flop(self, compute_class: str) -> float:
        if compute_class in self.j_per_flop:
            return self.j_per_flop[compute_class]
        for alt in DTYPE_FALLBACK.get(compute_class, ()):
            if alt in self.j_per_flop:
                return self.j_per_flop[alt]
        return max(self.j_per_flop.values())


# -- FPGA fabric -----------------------------------------------------------------------------
#: One engine's PE array when neither the FPGA design nor the DSP unit gives one
#: (:mod:`simulator.mapping.fpga` explains the choice).
FPGA_DEFAULT_PE_ARRAY = (32, 32)
#: Bytes of one UltraScale+ block RAM (RAMB36E2, 36 Kbit) and one UltraRAM (URAM288, 288 Kbit),
#: parity bits included (UG573). Buffers are counted against them by capacity, not by port
#: width: a buffer needs ceil(bytes / block bytes) blocks.
BRAM36_BYTES = 36 * 1024 / 8      # 4,608 B
URAM288_BYTES = 288 * 1024 / 8    # 36,864 B
#: A design's on-chip buffers (SCALE-Sim's operand names, as in the systolic model).
BUFFERS = ("ifmap", "filter", "ofmap")
_NOUNS = {"dsps": "DSP slices", "luts": "LUTs", "ffs": "FFs", "bram36": "BRAM36 blocks",
          "uram288": "URAM288 blocks"}


@dataclass(frozen=True)
class FpgaResources:
    """The programmable fabric of an FPGA part (``resources:`` in its spec).

    The DSP slices are not repeated here: they are the ``count`` of the part's matrix compute
    unit, whose ``flops_per_cycle`` per dtype is the DSP packing (one MAC = 2 FLOP: ``int8: 4``
    is two MACs per slice, ``fp16: 1`` two slices per MAC). ``shell`` is what the platform's
    static region (PCIe, DMA, board management) takes of each resource (keys ``dsps``,
    ``luts``, ``ffs``, ``bram36``, ``uram288``); a design gets the rest. ``channels``: the
    independent channels of each off-chip memory level (HBM pseudo-channels, DDR channels) by
    level name. ``clock_min_hz``/``clock_max_hz``: the kernel clocks the platform can give a
    design.
    """

    luts: int
    bram36: int
    uram288: int
    clock_min_hz: float
    clock_max_hz: float
    ffs: int | None = None
    channels: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    shell: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    dsp_slice: str = "DSP48E2"

    @property
    def onchip_bytes(self) -> float:
        """Bytes of all BRAM36 and URAM288 blocks outside the shell."""
        return (self.free("bram36", self.bram36) * BRAM36_BYTES
                + self.free("uram288", self.uram288) * URAM288_BYTES)

    def free(self, key: str, total: float) -> float:
        """``total`` of resource ``key`` less what the shell takes."""
        return total - self.shell.get(key, 0)


@dataclass(frozen=True)
class FpgaDesign:
    """What a spec builds on an FPGA's fabric (``design:``): ``engines`` copies of one
    ``pe_array`` (rows x cols MAC processing elements, one MAC per PE per cycle) for each
    compute class in ``dtypes``, at ``clock_hz``, with on-chip ``buffers`` (bytes of the
    ifmap, filter and ofmap buffers) and ``channels`` of the off-chip ``memory`` level.

    One configuration per compute class: an FPGA is reprogrammed for the dtype a model runs
    in, so each class's engines must fit the part on their own. A class missing from
    ``engines`` is *filled*: as many engines as its DSP budget (DSP count x
    ``params.dsp_utilization``), the LUTs and the FFs allow. The loader applies the design to
    the device (the DSP unit runs at the design clock and only the design's dtypes,
    ``params.sram`` holds the buffers, ``memory[0]`` is the design's memory at the bandwidth
    of its channels), so every mapper and the roofline see the same hardware.
    """

    name: str
    pe_array: tuple[int, int]
    clock_hz: float
    dtypes: tuple[str, ...]
    engines: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    buffers: Mapping[str, float] | None = None
    memory: str | None = None
    channels: int | None = None
    description: str = ""


@dataclass(frozen=True)
class ResourceUse:
    """How much of one fabric resource (``key``: dsps, luts, ffs, bram36, uram288) a design
    needs (``used``) of what it may use (``available``: the part's ``total`` less the shell;
    None where the spec does not say); ``why`` says how the need was counted."""

    key: str
    used: float
    available: float | None
    total: float | None
    why: str

    @property
    def noun(self) -> str:
        return _NOUNS.get(self.key, self.key)

    @property
    def utilization(self) -> float | None:
        """``used / available`` (None if unknown; inf if none is available but some used)."""
        if self.available is None:
            return None
        if self.available <= 0:
            return 0.0 if self.used <= 0 else math.inf
        return self.used / self.available

    @property
    def over(self) -> bool:
        return self.available is not None and self.used > self.available

    def budget(self) -> str:
        """``9,024`` or ``11,508 outside the platform shell (12,288 less 780)``."""
        avail = f"{max(self.available or 0, 0):,.0f}"
        if self.total is not None and self.available is not None \
                and self.total != self.available:
            return (f"{avail} outside the platform shell ({self.total:,.0f} less "
                    f"{self.total - self.available:,.0f})")
        return avail

    def shortfall(self) -> str:
        """``needs 10,240 DSP slices for ...; the part has 9,024 (13% over)``."""
        u = self.utilization
        over = "none are free" if u is None or math.isinf(u) else f"{u - 1:.0%} over"
        return (f"needs {self.used:,.0f} {self.noun} for {self.why}; the part has "
                f"{self.budget()} ({over})")

    def summary(self) -> str:
        """``DSP slices 6,656 of 9,024 (74%)``."""
        u = self.utilization
        if u is None:
            return f"{self.noun} {self.used:,.0f} (the spec gives no budget)"
        pct = "n/a" if math.isinf(u) else f"{u:.0%}"
        return f"{self.noun} {self.used:,.0f} of {max(self.available or 0, 0):,.0f} ({pct})"


@dataclass(frozen=True)
class FpgaConfig:
    """One compute class's configuration of an FPGA design: ``engines`` copies of a
    ``rows x cols`` PE array, ``macs_per_pe`` MACs per PE per cycle (below 1 when a filled
    budget is smaller than one engine and time-multiplexes it), ``mac_lanes`` the MACs per
    cycle the budget (or the design) gives, ``pes`` the MAC units built. ``filled``: the
    engines were sized from the budget, which ``limit`` capped; ``uses``: the DSP slices, LUTs
    and FFs it needs."""

    compute_class: str
    rows: int
    cols: int
    engines: int
    macs_per_pe: float
    mac_lanes: int
    pes: int
    macs_per_dsp: float
    filled: bool
    limit: str
    pe_array_source: str
    uses: tuple[ResourceUse, ...]

    @property
    def dsp_per_mac(self) -> float:
        return 1.0 / self.macs_per_dsp

    def use(self, key: str) -> ResourceUse | None:
        return next((u for u in self.uses if u.key == key), None)


def fpga_pe_layout(n_macs: int, shape: tuple[int, int] = FPGA_DEFAULT_PE_ARRAY
                   ) -> tuple[int, float]:
    """``(arrays, macs_per_pe)``: copies of a ``shape`` PE array that ``n_macs`` MAC lanes
    build; a budget below one array time-multiplexes it at ``n_macs / (R*C)``.

    >>> fpga_pe_layout(9024), fpga_pe_layout(256)
    ((8, 1.0), (1, 0.25))
    """
    if n_macs < 1:
        raise ValueError(f"n_macs must be >= 1, got {n_macs}")
    rows, cols = shape
    arrays = n_macs // (rows * cols)
    return (arrays, 1.0) if arrays >= 1 else (1, n_macs / (rows * cols))


def fpga_config(device: Device, unit: ComputeUnit, compute_class: str, *,
                dsp_utilization: float = 1.0, luts_per_pe: float = 0.0,
                ffs_per_pe: float = 0.0) -> FpgaConfig:
    """The configuration of ``device``'s design (or of the implicit one: engines filled from
    the DSP budget) for ``compute_class`` on DSP unit ``unit``, and what it uses.

    A filled configuration has ``floor(min(DSP budget x MACs per DSP, free LUTs / LUTs per
    PE, free FFs / FFs per PE))`` MAC lanes, laid out as copies of the PE array
    (:func:`fpga_pe_layout`); the DSP budget is ``count x dsp_utilization`` (at most the DSPs
    outside the shell). More DSPs never shrink it. An explicit configuration
    (``design.engines``) builds ``engines x rows x cols`` PEs, whatever they need. The knobs
    are the spec's ``params`` (:func:`simulator.arch.loader.fpga_design_config` reads them
    with their family defaults); a zero per-PE figure counts nothing.
    """
    res, des = device.resources, device.design
    lut_pe, ff_pe = float(luts_per_pe), float(ffs_per_pe)
    macs_per_dsp = unit.flops_per_cycle[compute_class] / 2.0
    if des is not None:
        (rows, cols), source = des.pe_array, "design"
    elif unit.shape:
        (rows, cols), source = unit.shape, "unit shape"
    else:
        (rows, cols), source = FPGA_DEFAULT_PE_ARRAY, "default"
    shell = res.shell if res is not None else {}
    dsp_free = unit.count - shell.get("dsps", 0)
    lut_free = res.free("luts", res.luts) if res is not None else None
    ff_free = res.free("ffs", res.ffs) if res is not None and res.ffs is not None else None
    explicit = des.engines.get(compute_class) if des is not None else None
    if explicit is None:
        util = float(dsp_utilization)
        budget = unit.count * util
        limit = f"DSP slices x dsp_utilization {util:g}"
        if budget > dsp_free:
            budget, limit = max(dsp_free, 0), "DSP slices outside the platform shell"
        lanes = math.floor(budget * macs_per_dsp + 1e-9)
        for noun, free, per in (("LUTs", lut_free, lut_pe), ("FFs", ff_free, ff_pe)):
            if free is not None and per > 0:
                cap = math.floor(max(free, 0) / per + 1e-9)
                if cap < lanes:
                    lanes, limit = cap, noun
        if lanes >= 1:
            engines, macs_per_pe = fpga_pe_layout(lanes, (rows, cols))
        else:
            engines, macs_per_pe = 0, 0.0
        pes = engines * rows * cols if macs_per_pe == 1.0 else lanes
        what = (f"{engines} x {rows} x {cols} {compute_class} PEs" if macs_per_pe == 1.0
                else f"{pes:,} {compute_class} MAC lanes")
    else:
        engines, macs_per_pe, limit = explicit, 1.0, "design.engines"
        lanes = pes = explicit * rows * cols
        what = f"{engines} x {rows} x {cols} {compute_class} PEs"
    uses = [ResourceUse("dsps", math.ceil(pes / macs_per_dsp - 1e-9), dsp_free, unit.count,
                        f"{what} at {1 / macs_per_dsp:.3g} DSP per MAC")]
    if res is not None:
        uses.append(ResourceUse("luts", pes * lut_pe, lut_free, res.luts,
                                f"{what} at {lut_pe:g} LUTs per PE (params.luts_per_pe)"))
        if res.ffs is not None:
            uses.append(ResourceUse("ffs", pes * ff_pe, ff_free, res.ffs,
                                    f"{what} at {ff_pe:g} FFs per PE (params.ffs_per_pe)"))
    return FpgaConfig(compute_class, rows, cols, engines, macs_per_pe, lanes, pes,
                      macs_per_dsp, explicit is None, limit, source, tuple(uses))


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.4g} MiB"


def fpga_buffer_use(resources: FpgaResources, buffers: Mapping[str, float]
                    ) -> tuple[ResourceUse, ResourceUse]:
    """(URAM288, BRAM36) blocks the ``buffers`` need, counted by capacity: each buffer takes
    whole UltraRAM blocks while the free ones last (36 KiB each), its remainder whole BRAM36
    blocks (4.5 KiB each). Port widths, FIFOs and the rest of the design's BRAM are not
    counted."""
    uram_free = resources.free("uram288", resources.uram288)
    left = max(uram_free, 0)
    uram = bram = 0
    for name in BUFFERS:
        size = float(buffers.get(name, 0.0))
        u = min(math.ceil(size / URAM288_BYTES - 1e-9), left)
        left -= u
        uram += u
        bram += max(math.ceil((size - u * URAM288_BYTES) / BRAM36_BYTES - 1e-9), 0)
    total = sum(float(buffers.get(n, 0.0)) for n in BUFFERS)
    sizes = ", ".join(f"{n} {_mib(float(buffers.get(n, 0.0)))}" for n in BUFFERS)
    why = f"the {_mib(total)} of buffers ({sizes})"
    return (ResourceUse("uram288", uram, uram_free, resources.uram288, why),
            ResourceUse("bram36", bram, resources.free("bram36", resources.bram36),
                        resources.bram36,
                        why + (f" once all {uram_free:,.0f} URAM288 blocks are used"
                               if uram == uram_free and bram else "")))


@dataclass(frozen=True)
class Device:
    """One accelerator or processor; ``family`` picks its mapper."""

    name: str
    kind: str
    family: str
    description: str
    process_nm: float
    compute: tuple[ComputeUnit, ...]
    memory: tuple[MemoryLevel, ...]
    power: Power
    pricing: Pricing
    energy: EnergyModel
    params: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    published: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    source: str = ""
    link: Link | None = None  # the part's own chip-to-chip link (NVLink, ICI, PCIe)
    host_link: Link | None = None  # to host memory (PCIe, NVLink-C2C): copies cross it
    resources: FpgaResources | None = None  # an FPGA's fabric (LUTs, BRAM, URAM, clocks)
    design: FpgaDesign | None = None  # what an FPGA spec builds on it (None: sized from DSPs)

    # -- derived rates ----------------------------------------------------------------------
    def units(self, unit: str) -> tuple[ComputeUnit, ...]:
        return tuple(c for c in self.compute if c.unit == unit)

    def native_peak(self, dtype: DType | str, unit: str = "matrix") -> float:
        """Sum of native peak FLOP/s of units of this kind for the dtype (0 if none)."""
        key = dtype if isinstance(dtype, str) else dtype.compute_class
        return sum(r for c in self.units(unit) if (r := c.rate(key)) is not None)

    def peak(self, dtype: DType | str, unit: str = "matrix") -> tuple[float, str]:
        """Best peak FLOP/s for ``dtype`` on ``unit`` FLOP and the compute class it runs as.

        Matrix FLOP fall back to vector units when no matrix unit supports the dtype (e.g. fp32
        GEMM on an H100 runs on CUDA cores); dtypes fall back along :data:`DTYPE_FALLBACK`.
        Returns ``(0.0, "")`` if nothing on the device can execute it.
        """
        key = dtype if isinstance(dtype, str) else dtype.compute_class
        kinds = (unit, "vector") if unit == "matrix" else (unit, "vector") if unit == "special" \
            else (unit,)
        for k in kinds:
            for cls in (key, *DTYPE_FALLBACK.get(key, ())):
                r = self.native_peak(cls, k)
                if r > 0:
                    return r, cls
        return 0.0, ""

    @property
    def dram(self) -> MemoryLevel:
        """The outermost memory level (device DRAM/HBM): capacity limits what fits."""
        return self.memory[0]

    def level(self, name: str) -> MemoryLevel | None:
        return next((m for m in self.memory if m.name == name), None)

    def ridge_point(self, dtype: DType | str) -> float:
        """Arithmetic intensity (FLOP/byte) where matrix peak meets DRAM bandwidth."""
        return self.peak(dtype, "matrix")[0] / self.dram.bandwidth_Bps


@dataclass(frozen=True)
class System:
    """``count`` identical devices joined by ``link`` in ``topology``; a single part is a
    System of one with topology ``single``."""

    name: str
    device: Device
    count: int = 1
    topology: str = "single"
    link: Link | None = None
    host_link: Link | None = None
    extra_power_w: float = 0.0  # host, switches, fans at full load
    pricing: Pricing | None = None
    description: str = ""
    source: str = ""
    extra_idle_power_w: float | None = None  # the same overhead when the devices idle
    # Devices per node as the spec describes it (its ``count``): the system's price and its
    # overhead power are per node, so ``--set count=64`` on an 8-device system is 8 nodes.
    devices_per_node: int | None = None
    network: Link | None = None  # scale-out fabric between nodes (a Fabric from the loader)
    # Devices per dimension of a ring/torus node (row-major, last dimension fastest), e.g.
    # (4, 4, 4) for a TPU v4 cube; None: unknown (collectives use bandwidth x dimensions).
    shape: tuple[int, ...] | None = None

    @property
    def nodes(self) -> int:
        """Nodes of ``devices_per_node`` devices that hold ``count`` (a partly filled node is
        a whole chassis: 12 devices of 8-device nodes are 2 nodes)."""
        per = self.devices_per_node or self.count
        return -(-self.count // per)

    @property
    def overhead_power_w(self) -> float:
        """Host/switch/fan power of all nodes at full load."""
        return self.extra_power_w * self.nodes

    @property
    def overhead_idle_power_w(self) -> float:
        """The same overhead with every device idle (the full-load figure if none is given)."""
        idle = self.extra_idle_power_w if self.extra_idle_power_w is not None \
            else self.extra_power_w
        return idle * self.nodes

    @property
    def kind(self) -> str:
        return "system" if self.count > 1 or self.topology != "single" else self.device.kind

    @property
    def memory_capacity_bytes(self) -> float:
        return self.device.dram.capacity_bytes * self.count

    @property
    def tdp_w(self) -> float:
        return self.device.power.tdp_w * self.count + self.overhead_power_w
