"""Typed architecture model: compute units, memory levels, links, devices and systems.

All values are SI floats (Hz, bytes, B/s, s, W, J/byte, $). Built by
:mod:`simulator.arch.loader` from validated YAML; frozen so a run cannot mutate its hardware.
Per-dtype peak rates are *derived* from unit counts, per-cycle rates and clocks, never typed
in; the YAML's ``published`` section holds datasheet figures the tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.frozen import FrozenMap
from workloads.dtypes import DType, get_dtype

__all__ = ["ComputeUnit", "MemoryLevel", "Link", "Fabric", "Power", "Pricing", "EnergyModel",
           "Device", "System", "UNIT_KINDS", "DEVICE_KINDS", "FAMILIES", "TOPOLOGIES",
           "FABRIC_TOPOLOGIES", "TORUS_DIMS", "DTYPE_FALLBACK", "KIND_EFFICIENCY_KINDS",
           "KIND_EFFICIENCY_MAX"]

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
    controllers powered), before the dynamic energy of the work itself."""

    tdp_w: float
    static_w: float
    active_w: float | None = None


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
