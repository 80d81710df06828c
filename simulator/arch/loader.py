"""Load and validate architecture specs (YAML) into :class:`Device` / :class:`System`.

Every problem in a file is collected and reported at once, one line each, as
``<file>: <field.path>: expected <what>, got <value>``. ``--set dotted.path=value`` overrides
are applied to the raw YAML before validation, so an override gets the same checks (and a
problem it causes says ``(from --set path=value)``). List items can be addressed by index
(``compute.0.count``) or by their ``name`` (``compute.tensor_core.count``).

Three kinds of file: a part (``kind: gpu|tpu|fpga|asic|cpu``), a system (``kind: system``:
``count`` devices of a part per node, an in-node ``link`` in a ``topology`` with an optional
torus ``shape``, and a scale-out ``network`` described as a
:class:`~simulator.arch.spec.Fabric`: per-NIC bandwidth and latency, ``nics_per_node``,
``topology: fat-tree | rail-optimized``, ``oversubscription``, ``nodes_per_leaf``,
``switch_latency``) and a cluster (``kind: cluster``: ``nodes`` copies of a ``node`` spec and
the fabric between them).

Bad input is an error, never a default or a wrong number:

- every quantity is finite, non-negative and inside the sane range of its kind
  (:data:`simulator.units.LIMITS`), and positive where a zero makes no sense (clocks,
  bandwidths, capacities, TDP); counts are integers from 1 to :data:`MAX_COUNT`;
- a field that is present but empty (``bandwidth:`` or ``null``) is an error, not its default;
- spec files are read with :class:`~workloads.importers.hf_config.StrictYAMLLoader`: no
  duplicate keys, no anchors/aliases (no alias bombs), bounded nesting; files over
  :data:`MAX_SPEC_BYTES` are refused before they are parsed.
"""

from __future__ import annotations

import functools
import os
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from simulator.arch.params import default, param
from simulator.arch.spec import (
    BUFFERS,
    DEVICE_KINDS,
    DTYPE_FALLBACK,
    FABRIC_TOPOLOGIES,
    FAMILIES,
    FPGA_DEFAULT_PE_ARRAY,
    KIND_EFFICIENCY_KINDS,
    KIND_EFFICIENCY_MAX,
    TOPOLOGIES,
    TORUS_DIMS,
    UNIT_KINDS,
    ComputeUnit,
    Device,
    EnergyModel,
    Fabric,
    FpgaConfig,
    FpgaDesign,
    FpgaResources,
    Link,
    MemoryLevel,
    Power,
    Pricing,
    System,
    _frozen,
    fpga_buffer_use,
    fpga_config,
)
from simulator.cost.energy_tables import default_j_per_flop
from simulator.errors import SpecError
from simulator.units import KINDS, UnitError, format_quantity, parse_quantity
from workloads.dtypes import get_dtype
from workloads.importers.hf_config import strict_yaml_load
from workloads.ops import SPECIAL_FUNCTIONS

__all__ = ["SPEC_ROOT", "list_arch_files", "find_arch", "load_arch",
           "parse_overrides", "apply_overrides", "PARAM_SCHEMA", "MAX_SPEC_BYTES", "MAX_COUNT",
           "fpga_design_config"]

SPEC_ROOT = Path(__file__).resolve().parents[2] / "arch_specs"
_COMPUTE_CLASSES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")

#: Largest spec file read; checked before parsing (the largest shipped spec is ~10 KiB).
MAX_SPEC_BYTES = 1 << 20
#: Largest integer accepted for a count (units, devices, SMs, threads, array rows/cols).
MAX_COUNT = 10**9
#: Largest FLOP per cycle per unit (a 256x256 systolic array does 131,072).
_MAX_FLOPS_PER_CYCLE = 1e9
#: Largest energy.datapath_overhead / energy.special_multiplier (shipped: 1-50, 4).
_MAX_ENERGY_FACTOR = 1e4
#: Largest LUTs or FFs per FPGA PE (params.luts_per_pe; shipped defaults 12-500).
_MAX_PER_PE = 1e6

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _show(value: Any) -> str:
    """``repr(value)`` shortened for a one-line message; None reads as an empty value."""
    return "an empty value (null)" if value is None else _REPR.repr(value)


def _one_line(problem: str) -> str:
    return problem.replace("\r", "\\r").replace("\n", "\\n")


def _is_count(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and 0 < v <= MAX_COUNT


def _count_expected(v: Any) -> str:
    """What a bad count should have been (says the bound when ``v`` is merely too large)."""
    big = isinstance(v, int) and not isinstance(v, bool) and v > MAX_COUNT
    return f"a positive integer of at most {MAX_COUNT:,}" if big else "a positive integer"


def _is_number(v: Any, hi: float) -> bool:
    """A real number (not a bool) in (0, hi]; NaN and infinities fail."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= hi


def _item_path(prefix: str, item: Any, i: int) -> str:
    """``memory.hbm`` for a list item named hbm, else ``memory.0`` (as --set addresses it)."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{prefix}.{name}" if isinstance(name, str) and name else f"{prefix}.{i}"

# Family-specific tuning parameters: name -> quantity kind ("number", "bytes", ...), "int",
# "bool", "str:<a>|<b>", "dtypemap" (dtype -> number in (0, 1]), "dtypecount" (dtype -> number
# in (0, _MAX_PER_PE], e.g. LUTs per PE), "kindmap" (op kind of
# KIND_EFFICIENCY_KINDS -> factor in (0, KIND_EFFICIENCY_MAX]), "specialmap" (function of
# workloads.ops.SPECIAL_FUNCTIONS -> vector FLOPs per evaluation) or "sram" (mapping name ->
# bytes). kind_efficiency divides the modelled busy time of a streaming op (elementwise, norm,
# softmax, pool, embedding, memcpy) or of attention by the factor for its kind (default 1):
# the achievable fraction of the model's estimate for that kind of kernel. Factors above 1 are
# allowed (the streaming estimate is not a hard bound, e.g. for a gather from cached rows).
_COMMON_PARAMS = {
    "launch_overhead": "time",
    "graph_launch_gap": "time",  # --timing graph (simulator.timing)
    "eager_dispatch": "time",    # --timing eager: host time per ATen call from Python
    "eager_alloc": "time",       # --timing eager: host time per output tensor
    "eager_launch": "time",      # --timing eager: host time per kernel launch
    "bandwidth_efficiency": "fraction",
    "compute_efficiency": "dtypemap",
    "vector_efficiency": "fraction",
    "kind_efficiency": "kindmap",
    "special_cost": "specialmap",
}
PARAM_SCHEMA: dict[str, dict[str, str]] = {
    "gpu": {**_COMMON_PARAMS, "attention_efficiency": "fraction", "sm_count": "int",
            "tile_shapes": "tiles", "l2_level": "str", "sm_l2_bandwidth": "bandwidth",
            "pipeline_latency": "time", "cluster_multicast": "int", "persistent_gemm": "bool",
            "sparse_speedup": "dtypecount", "sparse_efficiency": "fraction",
            "max_threads_per_sm": "int", "max_blocks_per_sm": "int", "kernel_startup": "time",
            "norm_vector": "int", "collectives": "str:alpha-beta|nccl",
            "nvlink_efficiency": "fraction", "nvls": "bool", "nccl_channels": "int",
            "compute_capability": "capability", "eager_recipes": "str:hf|vllm"},
    "systolic": {**_COMMON_PARAMS, "dataflow": "str:os|ws|is", "double_buffered": "bool",
                 "sram": "sram", "cores": "int",
                 "pe_datapath": "str:int4|int8|int16|fp8|bf16|fp16|fp32",
                 "regfile_levels": "str", "sparse_nm": "bool", "on_chip_residency": "bool"},
    "fpga": {**_COMMON_PARAMS, "dsp_utilization": "fraction", "dataflow": "str:os|ws|is",
             "double_buffered": "bool", "sram": "sram", "dsp_fmax": "frequency",
             "luts_per_pe": "dtypecount", "ffs_per_pe": "dtypecount", "sparse_nm": "bool"},
    "cpu": {**_COMMON_PARAMS, "detect": "bool", "simd_bits": "int", "fma_units": "int",
            "threads": "int", "write_allocate": "bool", "page_fault_threshold": "bytes",
            "page_fault_bandwidth": "bandwidth", "core_bandwidth": "bandwidth",
            "gemv_threads": "int", "pack_bandwidth": "bandwidth", "fused_epilogue": "bool",
            "maxpool_cycles": "number",
            "eager_composites": "bool"},
}


class _Checker:
    """Collects problems while reading a raw YAML mapping."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        self.empty: set[str] = set()  # fields reported as present but empty

    def bad(self, path: str, expected: str, got: Any) -> None:
        if path not in self.empty:  # an empty field is reported once, by mapping()
            self.problems.append(f"{path}: expected {expected}, got {_show(got)}")

    def mapping(self, raw: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()
                ) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            self.bad(path or "<top>", "a mapping", raw)
            return {}
        allowed = set(allowed)
        for k in raw:
            full = f"{path + '.' if path else ''}{k}"
            if k not in allowed:
                self.problems.append(
                    f"{full}: unknown field (allowed: {', '.join(sorted(allowed))})")
            elif raw[k] is None:  # `field:` or `field: null` is an error, never the default
                self.problems.append(f"{full}: expected a value, got an empty value (null); "
                                     f"give one or leave the field out")
                self.empty.add(full)
        for k in required:
            if k not in raw:
                self.problems.append(f"{path + '.' if path else ''}{k}: missing required field")
        return dict(raw)

    def qty(self, raw: Mapping[str, Any], key: str, path: str, kind: str,
            default: float | None = None, required: bool = True, positive: bool = True
            ) -> float | None:
        full = f"{path}.{key}" if path else key
        if key not in raw:
            if required and default is None:
                self.problems.append(f"{full}: missing required field")
            return default
        if raw[key] is None:
            self.bad(full, KINDS[kind], None)
            return default
        try:
            v = parse_quantity(raw[key], kind)
        except UnitError as e:
            self.problems.append(f"{full}: {e}")
            return default
        if positive and v <= 0:
            noun = KINDS[kind].split(" like")[0].split(" ", 1)[1]
            self.bad(full, f"a positive {noun}", raw[key])
            return default
        return v

    def integer(self, raw: Mapping[str, Any], key: str, path: str, default: int | None = None
                ) -> int | None:
        full = f"{path}.{key}" if path else key
        if key not in raw:
            return default
        v = raw[key]
        if not _is_count(v):
            self.bad(full, _count_expected(v), v)
            return default
        return v

    def string(self, raw: Mapping[str, Any], key: str, path: str, choices: Iterable[str] = (),
               default: str | None = None, empty_ok: bool = False) -> str | None:
        full = f"{path}.{key}" if path else key
        choices = tuple(choices)
        if key not in raw:
            return default
        v = raw[key]
        if (not isinstance(v, str) or (choices and v not in choices)
                or (not v.strip() and not empty_ok)):
            self.bad(full, f"one of {', '.join(choices)}" if choices
                     else "a string" if empty_ok else "a non-empty string", v)
            return default
        return v


def _dtype_key(name: Any) -> str | None:
    try:
        return get_dtype(str(name)).compute_class
    except ValueError:
        return None


def _compute(c: _Checker, raw: Any, default_clock: float | None = None
             ) -> tuple[ComputeUnit, ...]:
    """The compute units; a unit without a ``clock`` runs at ``default_clock`` (an FPGA
    design's clock) if there is one, else the clock is required."""
    if not isinstance(raw, list) or not raw:
        c.bad("compute", "a non-empty list of compute units", raw)
        return ()
    out = []
    required = ("name", "unit", "count", "flops_per_cycle")
    for i, item in enumerate(raw):
        p = _item_path("compute", item, i)
        d = c.mapping(item, p, ("name", "unit", "count", "clock", "flops_per_cycle", "shape"),
                      required if default_clock is not None else (*required, "clock"))
        if not d:
            continue
        name = c.string(d, "name", p)
        unit = c.string(d, "unit", p, UNIT_KINDS, "matrix")
        count = c.integer(d, "count", p, 1)
        clock = (c.qty(d, "clock", p, "frequency", 1e9) if "clock" in d or default_clock is None
                 else default_clock)
        fpc: dict[str, float] = {}
        rates = d.get("flops_per_cycle", {})
        if not isinstance(rates, Mapping) or not rates:
            c.bad(f"{p}.flops_per_cycle", "a mapping dtype -> FLOP per cycle per unit", rates)
        else:
            for k, v in rates.items():
                key = _dtype_key(k)
                if key is None:
                    c.bad(f"{p}.flops_per_cycle.{k}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
                elif not _is_number(v, _MAX_FLOPS_PER_CYCLE):
                    c.bad(f"{p}.flops_per_cycle.{k}",
                          f"a positive number of at most {_MAX_FLOPS_PER_CYCLE:g}", v)
                else:
                    fpc[key] = float(v)
        shape = d.get("shape")
        if shape is not None:
            if not isinstance(shape, list) or len(shape) != 2 or not all(map(_is_count, shape)):
                c.bad(f"{p}.shape", f"[rows, cols], integers from 1 to {MAX_COUNT:,}", shape)
                shape = None
            else:
                shape = (shape[0], shape[1])
        out.append(ComputeUnit(name or f"unit{i}", unit or "matrix", count or 1,
                               clock or 1e9, _frozen(fpc), shape))
    return tuple(out)


def _memory(c: _Checker, raw: Any) -> tuple[MemoryLevel, ...]:
    if not isinstance(raw, list) or not raw:
        c.bad("memory", "a non-empty list of memory levels (outermost first)", raw)
        return ()
    out = []
    for i, item in enumerate(raw):
        p = _item_path("memory", item, i)
        d = c.mapping(item, p, ("name", "capacity", "bandwidth", "latency", "energy_per_byte"),
                      ("name", "capacity", "bandwidth"))
        if not d:
            continue
        out.append(MemoryLevel(
            c.string(d, "name", p) or f"mem{i}",
            c.qty(d, "capacity", p, "bytes", 1.0),
            c.qty(d, "bandwidth", p, "bandwidth", 1.0),
            c.qty(d, "latency", p, "time", 0.0, required=False, positive=False),
            c.qty(d, "energy_per_byte", p, "energy_per_byte", 0.0, required=False, positive=False),
        ))
    return tuple(out)


def _link(c: _Checker, raw: Any, path: str) -> Link | None:
    if raw is None:
        return None
    d = c.mapping(raw, path, ("name", "bandwidth", "latency", "energy_per_byte"),
                  ("name", "bandwidth"))
    if not d:
        return None
    return Link(c.string(d, "name", path) or path, c.qty(d, "bandwidth", path, "bandwidth", 1.0),
                c.qty(d, "latency", path, "time", 0.0, required=False, positive=False),
                c.qty(d, "energy_per_byte", path, "energy_per_byte", 0.0, required=False,
                      positive=False))


#: Largest fat-tree oversubscription ratio accepted (shipped fabrics: 1.0, non-blocking).
_MAX_OVERSUBSCRIPTION = 1000.0
_FABRIC_FIELDS = ("name", "bandwidth", "latency", "energy_per_byte", "nics_per_node",
                  "topology", "oversubscription", "nodes_per_leaf", "switch_latency")


def _fabric(c: _Checker, raw: Any, path: str, per_node: int | None,
            required: tuple[str, ...] = ("name", "bandwidth"), base: Fabric | None = None
            ) -> Fabric | None:
    """The scale-out network: a link per NIC plus how the NICs are switched (see
    :class:`~simulator.arch.spec.Fabric`). ``base``: the fabric whose values the absent
    fields keep (a cluster refining its node's network)."""
    if raw is None:
        return None
    d = c.mapping(raw, path, _FABRIC_FIELDS, required)
    if not d and not isinstance(raw, Mapping):
        return None
    b = base or Fabric("", 1.0)
    nics = c.integer(d, "nics_per_node", path, b.nics_per_node)
    if nics is not None and per_node and "nics_per_node" in d \
            and per_node % nics and nics % per_node:
        c.bad(f"{path}.nics_per_node", f"a divisor or a multiple of the {per_node} devices per "
              "node", d["nics_per_node"])
        nics = b.nics_per_node
    over = d.get("oversubscription", b.oversubscription)
    if "oversubscription" in d and (not _is_number(over, _MAX_OVERSUBSCRIPTION) or over < 1):
        c.bad(f"{path}.oversubscription", "a ratio from 1 (non-blocking) to "
              f"{_MAX_OVERSUBSCRIPTION:g}", over)
        over = b.oversubscription
    name = c.string(d, "name", path, default=b.name or path) or path
    return Fabric(name,
                  c.qty(d, "bandwidth", path, "bandwidth", b.bandwidth_Bps) or 1.0,
                  c.qty(d, "latency", path, "time", b.latency_s, required=False,
                        positive=False) or 0.0,
                  c.qty(d, "energy_per_byte", path, "energy_per_byte", b.energy_per_byte_j,
                        required=False, positive=False) or 0.0,
                  nics,
                  c.string(d, "topology", path, FABRIC_TOPOLOGIES, b.topology) or b.topology,
                  float(over),
                  c.integer(d, "nodes_per_leaf", path, b.nodes_per_leaf),
                  c.qty(d, "switch_latency", path, "time", b.switch_latency_s, required=False,
                        positive=False) or 0.0)


def _shape(c: _Checker, raw: Any, topology: str | None, devices: int | None
           ) -> tuple[int, ...] | None:
    """``shape: [x, y, z]``: devices per dimension of a ring/torus node; their product is the
    node's device count."""
    if raw is None:
        return None
    dims = TORUS_DIMS.get(topology or "")
    if not isinstance(raw, list) or not raw:
        c.bad("shape", "a list of devices per dimension like [4, 4, 4]", raw)
        return None
    ok = True
    for i, v in enumerate(raw):
        if not _is_count(v):
            c.bad(f"shape.{i}", _count_expected(v), v)
            ok = False
    if not ok:
        return None
    if dims is None:
        c.bad("topology", "ring, torus2d or torus3d (the topologies a shape describes)",
              topology)
        return None
    if len(raw) != dims:
        c.bad("shape", f"{dims} dimension(s) for topology {topology}", raw)
        return None
    prod = 1
    for v in raw:
        prod *= v
    if devices is not None and prod != devices:
        c.bad("shape", f"dimensions whose product is the node's {devices} devices (count), "
              f"not {prod}", raw)
        return None
    return tuple(raw)


def _pricing(c: _Checker, raw: Any, path: str = "cost") -> Pricing:
    if raw is None:
        return Pricing()
    d = c.mapping(raw, path, ("price", "hourly", "lifetime"))
    return Pricing(
        c.qty(d, "price", path, "money", required=False),
        c.qty(d, "hourly", path, "money_rate", required=False),
        c.qty(d, "lifetime", path, "time", 4 * 365 * 86400.0, required=False),
    )


def _param_value(c: _Checker, path: str, kind: str, v: Any) -> Any:
    if kind == "fraction":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            c.bad(path, "a number in (0, 1]", v)
            return None
        return float(v)
    if kind == "capability":  # a CUDA compute capability: major.minor, 3.0 .. 19.x
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 3 <= v < 20:
            c.bad(path, "a CUDA compute capability such as 8.0 (a number from 3 to 19.x)", v)
            return None
        return float(v)
    if kind == "int":
        if not _is_count(v):
            c.bad(path, _count_expected(v), v)
            return None
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            c.bad(path, "true or false", v)
            return None
        return v
    if kind == "str":
        if not isinstance(v, str) or not v:
            c.bad(path, "a name", v)
            return None
        return v
    if kind.startswith("str:"):
        choices = kind[4:].split("|")
        if v not in choices:
            c.bad(path, f"one of {', '.join(choices)}", v)
            return None
        return v
    if kind in ("dtypemap", "dtypecount"):  # dtype -> fraction in (0, 1] | count per PE
        hi = 1.0 if kind == "dtypemap" else _MAX_PER_PE
        expected = f"a number in (0, {hi:g}]"
        if not isinstance(v, Mapping):
            c.bad(path, f"a mapping dtype -> number in (0, {hi:g}]", v)
            return None
        out = {}
        for k, x in v.items():
            key = _dtype_key(k)
            if key is None:
                c.bad(f"{path}.{k}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
            elif not _is_number(x, hi):
                c.bad(f"{path}.{k}", expected, x)
            else:
                out[key] = float(x)
        return _frozen(out)
    if kind == "kindmap":
        hi = f"{KIND_EFFICIENCY_MAX:g}"
        if not isinstance(v, Mapping):
            c.bad(path, f"a mapping op kind -> number in (0, {hi}]", v)
            return None
        out = {}
        for k, x in v.items():
            if k not in KIND_EFFICIENCY_KINDS:
                c.bad(f"{path}.{k}", f"an op kind ({', '.join(KIND_EFFICIENCY_KINDS)})", k)
            elif (isinstance(x, bool) or not isinstance(x, (int, float))
                  or not 0 < x <= KIND_EFFICIENCY_MAX):
                c.bad(f"{path}.{k}", f"a number in (0, {hi}]", x)
            else:
                out[k] = float(x)
        return _frozen(out)
    if kind == "specialmap":
        if not isinstance(v, Mapping):
            c.bad(path, "a mapping function -> vector FLOPs per evaluation", v)
            return None
        out = {}
        for k, x in v.items():
            if k not in SPECIAL_FUNCTIONS:
                c.bad(f"{path}.{k}", f"a function ({', '.join(SPECIAL_FUNCTIONS)})", k)
            elif (isinstance(x, bool) or not isinstance(x, (int, float))
                  or not 0 < x <= 10_000):
                c.bad(f"{path}.{k}", "a number of vector FLOPs in (0, 10000]", x)
            else:
                out[k] = float(x)
        return _frozen(out)
    if kind == "sram":
        d = c.mapping(v, path, ("ifmap", "filter", "ofmap"), ("ifmap", "filter", "ofmap"))
        return _frozen({k: c.qty(d, k, path, "bytes", 1.0) for k in ("ifmap", "filter", "ofmap")})
    if kind == "tiles":
        if (not isinstance(v, list) or not v or len(v) > 1000
                or not all(isinstance(t, list) and len(t) == 2 and all(map(_is_count, t))
                           for t in v)):
            c.bad(path, "a list of [tile_m, tile_n] positive integers", v)
            return None
        return tuple((t[0], t[1]) for t in v)
    try:
        q = parse_quantity(v, kind)
    except UnitError as e:
        c.problems.append(f"{path}: {e}")
        return None
    if q <= 0 and kind != "time":  # a zero bandwidth, size or clock divides by zero later
        c.bad(path, f"a positive {KINDS[kind].split(' like')[0].split(' ', 1)[1]}", v)
        return None
    return q


def _params(c: _Checker, raw: Any, family: str) -> dict[str, Any]:
    if raw is None:
        return {}
    schema = PARAM_SCHEMA.get(family, _COMMON_PARAMS)
    d = c.mapping(raw, "params", schema)
    out = {}
    for k, v in d.items():
        if k in schema:
            val = _param_value(c, f"params.{k}", schema[k], v)
            if val is not None:
                out[k] = val
    return out


def _published(c: _Checker, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    kinds = {"peak": "rate", "memory_bandwidth": "bandwidth", "memory": "bytes", "tdp": "power",
             "clock": "frequency", "link_bandwidth": "bandwidth",
             "network_bandwidth": "bandwidth", "bisection_bandwidth": "bandwidth",
             "allreduce_bandwidth": "bandwidth", "devices": "int", "nodes": "int"}
    d = c.mapping(raw, "published", kinds)
    out: dict[str, Any] = {}
    for k, v in d.items():
        if kinds.get(k) == "int":
            out[k] = c.integer(d, k, "published")
        elif k == "peak":
            if not isinstance(v, Mapping):
                c.bad("published.peak", "a mapping dtype -> rate", v)
                continue
            peaks = {}
            for dt in v:
                key = _dtype_key(dt)
                if key is None:
                    c.bad(f"published.peak.{dt}", "a dtype", dt)
                    continue
                q = c.qty(v, dt, "published.peak", "rate")
                if q:
                    peaks[key] = q
            out["peak"] = _frozen(peaks)
        elif k in kinds:
            out[k] = c.qty(d, k, "published", kinds[k])
    return out


def _energy(c: _Checker, raw: Any, process_nm: float) -> EnergyModel:
    d = c.mapping(raw, "energy", ("pj_per_flop", "datapath_overhead", "special_multiplier")
                  ) if raw is not None else {}
    overhead = d.get("datapath_overhead", 1.0)
    if not _is_number(overhead, _MAX_ENERGY_FACTOR):
        c.bad("energy.datapath_overhead", f"a positive number of at most {_MAX_ENERGY_FACTOR:g}",
              overhead)
        overhead = 1.0
    table = default_j_per_flop(process_nm, float(overhead))
    explicit = d.get("pj_per_flop")
    if explicit is not None:
        if not isinstance(explicit, Mapping):
            c.bad("energy.pj_per_flop", 'a mapping dtype -> energy like "0.5 pJ"', explicit)
        else:
            for k in explicit:
                key = _dtype_key(k)
                if key is None:
                    c.bad(f"energy.pj_per_flop.{k}", "a dtype", k)
                    continue
                q = c.qty(explicit, k, "energy.pj_per_flop", "energy")
                if q:
                    table[key] = q
    sm = d.get("special_multiplier", 4.0)
    if not _is_number(sm, _MAX_ENERGY_FACTOR):
        c.bad("energy.special_multiplier", f"a positive number of at most {_MAX_ENERGY_FACTOR:g}",
              sm)
        sm = 4.0
    return EnergyModel(_frozen(table), float(sm))


# -- FPGA fabric and design ------------------------------------------------------------------
_RESOURCE_FIELDS = ("dsp_slice", "luts", "ffs", "bram36", "uram288", "clock", "channels",
                    "shell")
_SHELL_FIELDS = ("dsps", "luts", "ffs", "bram36", "uram288")
_DESIGN_FIELDS = ("pe_array", "engines", "dtypes", "clock", "buffers", "memory", "channels",
                  "description")


def _count0(c: _Checker, d: Mapping[str, Any], key: str, path: str) -> int | None:
    """A non-negative integer count (a part may have no URAM), or None if absent or bad."""
    if key not in d:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        c.bad(f"{path}.{key}", f"a non-negative integer of at most {MAX_COUNT:,}", v)
        return None
    return v


def _resources(c: _Checker, raw: Any) -> FpgaResources | None:
    """``resources:``: an FPGA's fabric (:class:`~simulator.arch.spec.FpgaResources`)."""
    if raw is None:
        return None
    p = "resources"
    d = c.mapping(raw, p, _RESOURCE_FIELDS, ("luts", "bram36", "uram288", "clock"))
    if not d:
        return None
    luts = c.integer(d, "luts", p)
    ffs = c.integer(d, "ffs", p)
    bram, uram = _count0(c, d, "bram36", p), _count0(c, d, "uram288", p)
    slice_ = c.string(d, "dsp_slice", p, default="DSP48E2") or "DSP48E2"
    lo = hi = None
    if "clock" in d:
        ck = c.mapping(d["clock"], f"{p}.clock", ("min", "max"), ("min", "max"))
        lo = c.qty(ck, "min", f"{p}.clock", "frequency", None, required=False)
        hi = c.qty(ck, "max", f"{p}.clock", "frequency", None, required=False)
        if lo is not None and hi is not None and lo > hi:
            c.bad(f"{p}.clock.min", f"at most resources.clock.max ({ck.get('max')})",
                  ck.get("min"))
            lo = None
    channels: dict[str, int] = {}
    if "channels" in d:
        ch = d["channels"]
        if not isinstance(ch, Mapping) or not ch:
            c.bad(f"{p}.channels", "a mapping memory level name -> number of channels", ch)
        else:
            for k, v in ch.items():
                if not _is_count(v):
                    c.bad(f"{p}.channels.{k}", _count_expected(v), v)
                else:
                    channels[str(k)] = v
    shell: dict[str, int] = {}
    if "shell" in d:
        sd = c.mapping(d["shell"], f"{p}.shell", _SHELL_FIELDS)
        totals = {"luts": luts, "ffs": ffs, "bram36": bram, "uram288": uram}
        for k in _SHELL_FIELDS:
            v = _count0(c, sd, k, f"{p}.shell")
            if v is None:
                continue
            if totals.get(k) is not None and v > totals[k]:  # type: ignore[operator]
                c.bad(f"{p}.shell.{k}", f"at most resources.{k} ({totals[k]:,})", v)
                continue
            if k == "ffs" and ffs is None:
                c.problems.append(f"{p}.shell.ffs: the part gives no resources.ffs to take "
                                  "them from")
                continue
            shell[k] = v
    if None in (luts, bram, uram, lo, hi):
        return None
    return FpgaResources(luts, bram, uram, lo, hi, ffs, _frozen(channels),  # type: ignore[arg-type]
                         _frozen(shell), slice_)


def _design_fields(c: _Checker, raw: Any, path: str, allowed: Iterable[str]) -> dict[str, Any]:
    """The fields of one design mapping, parsed and checked on their own (the cross-checks
    against the part come once the design is chosen)."""
    d = c.mapping(raw, path, allowed)
    out: dict[str, Any] = {}
    if "pe_array" in d:
        v = d["pe_array"]
        if not isinstance(v, list) or len(v) != 2 or not all(map(_is_count, v)):
            c.bad(f"{path}.pe_array", f"[rows, cols], integers from 1 to {MAX_COUNT:,}", v)
        else:
            out["pe_array"] = (v[0], v[1])
    if "engines" in d:
        v = d["engines"]
        if isinstance(v, Mapping) and v:
            eng = {}
            for k, x in v.items():
                key = _dtype_key(k)
                if key is None:
                    c.bad(f"{path}.engines.{k}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
                elif not _is_count(x):
                    c.bad(f"{path}.engines.{k}", _count_expected(x), x)
                else:
                    eng[key] = x
            out["engines"] = eng
        elif _is_count(v):
            out["engines"] = v
        else:
            c.bad(f"{path}.engines", "a number of engines, or a mapping dtype -> engines", v)
    if "dtypes" in d:
        v = d["dtypes"]
        if not isinstance(v, list) or not v:
            c.bad(f"{path}.dtypes", f"a list of dtypes ({', '.join(_COMPUTE_CLASSES)})", v)
        else:
            classes = []
            for i, k in enumerate(v):
                key = _dtype_key(k) if isinstance(k, str) else None
                if key is None:
                    c.bad(f"{path}.dtypes.{i}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
                elif key not in classes:
                    classes.append(key)
            if len(classes) == len(v) or classes:
                out["dtypes"] = tuple(classes)
    if "clock" in d:
        clk = c.qty(d, "clock", path, "frequency", None, required=False)
        if clk is not None:
            out["clock"] = clk
    if "buffers" in d:  # may be partial on top of a base design: completed by _design
        bd = c.mapping(d["buffers"], f"{path}.buffers", BUFFERS)
        sizes = {k: c.qty(bd, k, f"{path}.buffers", "bytes", None, required=False)
                 for k in BUFFERS if k in bd}
        if bd and all(v is not None for v in sizes.values()):
            out["buffers"] = sizes
    if "memory" in d:
        mem = c.string(d, "memory", path)
        if mem is not None:
            out["memory"] = mem
    if "channels" in d:
        ch = c.integer(d, "channels", path)
        if ch is not None:
            out["channels"] = ch
    if "description" in d:
        out["description"] = c.string(d, "description", path, empty_ok=True) or ""
    return out


def _design(c: _Checker, raw: Any, named: Any) -> tuple[dict[str, Any], str, bool] | None:
    """``design:`` (the design the part runs) over ``designs.<base>`` when it names a
    ``base``: its fields (``buffers`` and an ``engines`` mapping merge field by field with the
    base's; ``fields["_from"][key]`` is where each came from, ``design`` or
    ``designs.<base>``), its name, and whether the base resolved. None when the spec has no
    design."""
    bases: dict[str, dict[str, Any]] = {}
    if named is not None:
        if not isinstance(named, Mapping) or not named:
            c.bad("designs", "a mapping design name -> design", named)
        else:
            for k, v in named.items():
                if not isinstance(k, str) or not k.strip():
                    c.bad("designs", "design names that are non-empty strings", k)
                    continue
                bases[k] = _design_fields(c, v, f"designs.{k}", _DESIGN_FIELDS)
    if raw is None:
        return None
    own = _design_fields(c, raw, "design", (*_DESIGN_FIELDS, "base"))
    base = raw.get("base") if isinstance(raw, Mapping) else None
    ok, name, fields = isinstance(raw, Mapping), "design", own
    if base is not None and (not isinstance(base, str) or base not in bases):
        c.bad("design.base", f"the name of a design in designs ({', '.join(bases) or 'none'})",
              base)
        ok = False
    elif base is not None:
        b = bases[base]
        fields = {**b, **own, "_from": {k: f"designs.{base}" for k in b if k not in own}}
        if isinstance(b.get("buffers"), dict) and "buffers" in own:
            fields["buffers"] = {**b["buffers"], **own["buffers"]}
        if isinstance(b.get("engines"), dict) and isinstance(own.get("engines"), dict):
            fields["engines"] = {**b["engines"], **own["engines"]}
        name = base + (" (modified)" if [k for k in own if k != "description"] else "")
    buffers = fields.get("buffers")
    if buffers is not None:
        for k in BUFFERS:
            if k not in buffers:
                c.problems.append(f"{_src(fields, 'buffers')}.{k}: missing required field")
        if len(buffers) < len(BUFFERS):
            fields = {k: v for k, v in fields.items() if k != "buffers"}
    return fields, name, ok


def _src(fields: Mapping[str, Any], key: str) -> str:
    """The field path a design value came from: ``design.clock`` or ``designs.<base>.clock``."""
    return f"{fields.get('_from', {}).get(key, 'design')}.{key}"


def _fpga(c: _Checker, d: Mapping[str, Any], compute: tuple[ComputeUnit, ...],
          memory: tuple[MemoryLevel, ...], params: dict[str, Any],
          resources: FpgaResources | None, fields: dict[str, Any] | None, name: str
          ) -> tuple[tuple[ComputeUnit, ...], tuple[MemoryLevel, ...], FpgaDesign | None]:
    """Apply an FPGA design to the part: the DSP unit (the first matrix unit) runs at the
    design clock and only the design's dtypes, ``params.sram`` holds the buffers, and the
    design's off-chip memory becomes ``memory[0]`` at the bandwidth of the channels it uses.
    Checks what can be checked before the device exists (the fit comes after)."""
    raw_compute = d.get("compute") if isinstance(d.get("compute"), list) else []
    dsp_i = next((i for i, u in enumerate(compute) if u.unit == "matrix"), None)
    unit = compute[dsp_i] if dsp_i is not None else None
    raw_unit = raw_compute[dsp_i] if dsp_i is not None and dsp_i < len(raw_compute) else {}
    upath = f"compute.{unit.name}" if unit is not None else "compute"
    levels = [m.name for m in memory]
    if resources is not None:
        for k in resources.channels:
            if k not in levels:
                c.bad(f"resources.channels.{k}", f"the name of a memory level "
                      f"({', '.join(levels)})", k)
        if unit is not None and resources.shell.get("dsps", 0) > unit.count:
            c.bad("resources.shell.dsps", f"at most the DSP unit's count (compute.{unit.name}"
                  f".count, {unit.count:,})", resources.shell["dsps"])
    if fields is None:
        clock = unit.clock_hz if unit is not None else None
        if resources is not None and clock is not None:
            _check_clock(c, resources, clock, f"{upath}.clock")
        return compute, memory, None
    if unit is None:
        c.problems.append("design: an FPGA design needs a matrix unit describing the DSP "
                          "slices (count, flops_per_cycle per DSP)")
        return compute, memory, None
    clock = fields.get("clock", unit.clock_hz)
    if isinstance(raw_unit, Mapping) and "clock" in raw_unit and "clock" in fields \
            and unit.clock_hz != fields["clock"]:
        c.bad(f"{upath}.clock", f"no clock, or the design clock ({format_quantity(clock, 'Hz')},"
              f" {_src(fields, 'clock')}): the DSP array runs at the design clock",
              raw_unit["clock"])
    pe = fields.get("pe_array") or unit.shape
    if "pe_array" in fields and unit.shape and tuple(unit.shape) != fields["pe_array"]:
        c.bad(f"{upath}.shape", f"no shape, or the design's pe_array {list(fields['pe_array'])}",
              list(unit.shape))
    runs = list(unit.flops_per_cycle)
    dtypes = fields.get("dtypes", tuple(runs))
    for cls in dtypes:
        if cls not in runs:
            c.bad(_src(fields, "dtypes"), f"dtypes the DSP unit {unit.name} runs "
                  f"({', '.join(runs)})", cls)
    unknown = len([x for x in dtypes if x not in runs])
    dtypes = tuple(x for x in dtypes if x in runs)
    engines = fields.get("engines", {})
    if isinstance(engines, int):
        engines = {cls: engines for cls in dtypes}
    for cls in engines:
        if cls not in dtypes:
            c.bad(f"{_src(fields, 'engines')}.{cls}", f"a dtype of the design "
                  f"({', '.join(dtypes)})", cls)
    buffers = fields.get("buffers")
    if buffers is not None:
        if "sram" in params and dict(params["sram"]) != buffers:
            c.bad("params.sram", f"no value, or the design's buffers ({_src(fields, 'buffers')} "
                  "set them)", {k: format_quantity(v, "B") for k, v in params["sram"].items()})
        params["sram"] = _frozen(buffers)
    mem = fields.get("memory", levels[0] if levels else None)
    channels = fields.get("channels")
    if mem is not None and mem not in levels:
        c.bad(_src(fields, "memory"), f"the name of a memory level ({', '.join(levels)})", mem)
    elif mem is not None:
        offchip = sorted(resources.channels) if resources is not None else []
        if offchip and mem not in offchip:
            c.bad(_src(fields, "memory"), "an off-chip memory level with channels in "
                  f"resources.channels ({', '.join(offchip)})", mem)
        i = levels.index(mem)
        level = memory[i]
        total = resources.channels.get(mem) if resources is not None else None
        if channels is not None:
            if total is None:
                c.problems.append(f"{_src(fields, 'channels')}: the part gives no channel count "
                                  f"for memory level {mem} (resources.channels.{mem})")
            elif channels > total:
                c.problems.append(f"{_src(fields, 'channels')}: needs {channels:,} {mem} "
                                  f"channels; the part has {total:,} (resources.channels.{mem}) "
                                  f"({channels / total - 1:.0%} over)")
            elif channels != total:
                level = replace(level, bandwidth_Bps=level.bandwidth_Bps * channels / total)
        memory = (level, *memory[:i], *memory[i + 1:])
        if channels is None and total is not None:
            channels = total
    fpc = _frozen({k: v for k, v in unit.flops_per_cycle.items() if k in dtypes})
    if not fpc:
        if not unknown:
            c.problems.append("design.dtypes: the design runs no dtype the DSP unit has a "
                              "rate for")
        fpc = unit.flops_per_cycle
    compute = tuple(replace(u, flops_per_cycle=fpc) if i == dsp_i else u
                    for i, u in enumerate(compute))
    if resources is not None:
        _check_clock(c, resources, clock, _src(fields, "clock") if "clock" in fields
                     else f"{upath}.clock")
    design = FpgaDesign(name, tuple(pe) if pe else FPGA_DEFAULT_PE_ARRAY, clock, dtypes,
                        _frozen(engines), _frozen(buffers) if buffers is not None else None,
                        mem, channels, fields.get("description", ""))
    return compute, memory, design


def _check_clock(c: _Checker, res: FpgaResources, clock: float, field: str) -> None:
    lo, hi = res.clock_min_hz, res.clock_max_hz
    span = (f"{format_quantity(lo, 'Hz')} (resources.clock.min) to "
            f"{format_quantity(hi, 'Hz')} (resources.clock.max)")
    if clock > hi:
        c.problems.append(f"{field}: needs {format_quantity(clock, 'Hz')}; the fabric's clock "
                          f"range is {span} ({clock / hi - 1:.0%} over)")
    elif clock < lo:
        c.problems.append(f"{field}: {format_quantity(clock, 'Hz')} is below the fabric's clock "
                          f"range, {span}")


def _per_pe(device: Device, name: str, cls: str) -> float:
    """LUTs (or FFs) per PE of compute class ``cls``: the spec's ``params.<name>``, else the
    family default, along the dtype's fallback chain (0: not counted)."""
    table = {**dict(default("fpga", name) or {}), **dict(device.params.get(name) or {})}
    for key in (cls, *DTYPE_FALLBACK.get(cls, ())):
        if key in table:
            return float(table[key])
    return 0.0


def fpga_design_config(device: Device, unit: ComputeUnit, compute_class: str) -> FpgaConfig:
    """:func:`~simulator.arch.spec.fpga_config` with the spec's knobs: ``dsp_utilization``,
    ``luts_per_pe`` and ``ffs_per_pe`` from ``params``, else the fpga family defaults
    (:mod:`simulator.arch.params`)."""
    return fpga_config(device, unit, compute_class,
                       dsp_utilization=float(param(device, "dsp_utilization", 1.0)),
                       luts_per_pe=_per_pe(device, "luts_per_pe", compute_class),
                       ffs_per_pe=_per_pe(device, "ffs_per_pe", compute_class))


class _FitError(SpecError):
    """An FPGA design that does not fit its part (:func:`_fit`)."""


#: The sections whose values an FPGA fit counts: an override of any may cause an overflow.
_FIT_INPUTS = ("design", "designs", "resources", "compute", "params", "memory")


def _fit(device: Device, buffers_field: str) -> list[str]:
    """What an FPGA design overflows: per compute class, the DSP slices, LUTs and FFs of its
    engines; the BRAM its buffers need once the URAM is used. One problem per resource, each
    naming the need, the budget and by how much it is over."""
    unit = next((u for u in device.compute if u.unit == "matrix"), None)
    if unit is None:
        return []
    des = device.design
    who = f"the {des.name} design " if des is not None and des.name != "design" else ""
    problems = []
    for cls in unit.flops_per_cycle:
        cfg = fpga_design_config(device, unit, cls)
        problems += [f"design: {who}{u.shortfall()}" for u in cfg.uses if u.over]
    res = device.resources
    if res is not None:
        sram = device.params.get("sram")
        if sram:
            buffers = {k: float(sram.get(k, 0.0)) for k in BUFFERS}
        else:
            inner = [m for m in device.memory[1:] if m.capacity_bytes < device.dram.capacity_bytes]
            cap = min(m.capacity_bytes for m in inner) if inner else 0.0
            buffers = {k: cap / 3.0 for k in BUFFERS}
        problems += [f"{buffers_field}: {who}{u.shortfall()}"
                     for u in fpga_buffer_use(res, buffers) if u.over]
    return problems


_DEVICE_FIELDS = ("name", "kind", "family", "description", "process_node", "compute", "memory",
                  "link", "host_link", "power", "cost", "energy", "params", "published",
                  "sources", "resources", "design", "designs")
_SYSTEM_FIELDS = ("name", "kind", "description", "device", "count", "topology", "shape",
                  "link", "host_link", "network", "power", "cost", "published", "sources")
_CLUSTER_FIELDS = ("name", "kind", "description", "node", "nodes", "count", "link", "network",
                   "published", "sources")


def _build(raw: Any, source: str, stem: str | None, device_loader,
           base_count: int | None = None) -> System:
    """``base_count``: the system's ``count`` before overrides (devices per node)."""
    c = _Checker(source)
    if raw is None:
        raise SpecError(source, ["<top>: expected a mapping of spec fields, got an empty file"])
    if not isinstance(raw, Mapping):
        raise SpecError(source, [f"<top>: expected a mapping of spec fields, got {type(raw).__name__}"])
    kind = raw.get("kind")
    if kind == "system":
        d = c.mapping(raw, "", _SYSTEM_FIELDS, ("name", "kind", "device", "count", "link"))
        sys_name = c.string(d, "name", "")
        description = c.string(d, "description", "", default="", empty_ok=True)
        dev_name = d.get("device")
        device = None
        if not isinstance(dev_name, str) or not dev_name:
            c.bad("device", "the name of a shipped part", dev_name)
        else:
            try:
                device = device_loader(dev_name)
            except SpecError as e:
                c.problems.append(f"device: {_show(dev_name)} could not be loaded: "
                                  + "; ".join(f"{e.source}: {p}" for p in e.problems))
        count = c.integer(d, "count", "", 1)
        topology = c.string(d, "topology", "", TOPOLOGIES, "switch")
        per_node = base_count or count or 1
        shape = _shape(c, d.get("shape"), topology, per_node)
        link = _link(c, d.get("link"), "link") or (device.link if device else None)
        host_link = _link(c, d.get("host_link"), "host_link")
        network = _fabric(c, d.get("network"), "network", per_node)
        pw = c.mapping(d.get("power", {}), "power", ("extra", "extra_idle", "limit"))
        limit = c.qty(pw, "limit", "power", "power", None, required=False)
        if limit is not None and device is not None:  # the per-device power limit
            if not device.power.static_w < limit <= 4 * device.power.tdp_w:
                c.bad("power.limit", f"above the device's idle power ({device.power.static_w:g} "
                      f"W) and at most 4 x its TDP ({device.power.tdp_w:g} W)", pw.get("limit"))
            else:
                device = replace(device, power=replace(device.power, limit_w=limit))
        extra = c.qty(pw, "extra", "power", "power", 0.0, required=False, positive=False)
        extra_idle = c.qty(pw, "extra_idle", "power", "power", None, required=False,
                           positive=False)
        if extra_idle is not None and extra is not None and extra_idle > extra:
            c.bad("power.extra_idle", f"at most power.extra ({pw.get('extra')})",
                  pw.get("extra_idle"))
        pricing = _pricing(c, d.get("cost"))
        _published(c, d.get("published"))  # checked; tests compare against the raw figures
        if c.problems or device is None or sys_name is None:
            raise SpecError(source, [_one_line(p) for p in c.problems])
        return System(sys_name, device, count or 1, topology or "switch", link,
                      host_link or device.host_link, extra or 0.0, pricing, description or "",
                      source, extra_idle_power_w=extra_idle,
                      devices_per_node=per_node, network=network, shape=shape)
    if kind == "cluster":
        return _cluster(c, raw, source, stem)

    d = c.mapping(raw, "", _DEVICE_FIELDS,
                  ("name", "kind", "family", "process_node", "compute", "memory", "power"))
    name = c.string(d, "name", "") or (stem or "?")
    if stem and name != stem:
        c.bad("name", f"the file name {stem!r}", name)
    dkind = c.string(d, "kind", "", DEVICE_KINDS, "gpu")
    family = c.string(d, "family", "", FAMILIES, "gpu")
    description = c.string(d, "description", "", default="", empty_ok=True)
    node = c.qty(d, "process_node", "", "length", 7e-9) or 7e-9
    fpga = family == "fpga"
    for key in ("resources", "design", "designs"):
        if key in d and not fpga:
            c.problems.append(f"{key}: only an FPGA part (family: fpga) has a fabric and a "
                              f"design to describe")
    resources = _resources(c, d.get("resources")) if fpga else None
    chosen = _design(c, d.get("design"), d.get("designs")) if fpga else None
    fields, design_name, resolved = chosen if chosen is not None else (None, "", True)
    # an unresolved base is reported once; the units do not also miss the clock it gave
    clock = (fields or {}).get("clock") if resolved else (fields or {}).get("clock", 1e9)
    compute = _compute(c, d.get("compute"), clock)
    memory = _memory(c, d.get("memory"))
    pw = c.mapping(d.get("power", {}), "power", ("tdp", "static", "active", "limit"),
                   ("tdp", "static"))
    power = Power(c.qty(pw, "tdp", "power", "power", 1.0) or 1.0,
                  c.qty(pw, "static", "power", "power", 0.0, positive=False) or 0.0,
                  c.qty(pw, "active", "power", "power", None, required=False),
                  c.qty(pw, "limit", "power", "power", None, required=False))
    if power.limit_w is not None and not power.static_w < power.limit_w <= 4 * power.tdp_w:
        c.bad("power.limit", f"above power.static ({pw.get('static')}) and at most 4 x "
              f"power.tdp ({pw.get('tdp')})", pw.get("limit"))
    if power.static_w > power.tdp_w:
        c.bad("power.static", f"at most power.tdp ({pw.get('tdp')})", pw.get("static"))
    if power.active_w is not None and not power.static_w <= power.active_w <= power.tdp_w:
        c.bad("power.active", f"between power.static ({pw.get('static')}) and power.tdp "
              f"({pw.get('tdp')})", pw.get("active"))
    pricing = _pricing(c, d.get("cost"))
    energy = _energy(c, d.get("energy"), node * 1e9)
    params = _params(c, d.get("params"), family or "gpu")
    published = _published(c, d.get("published"))
    link = _link(c, d.get("link"), "link")
    host_link = _link(c, d.get("host_link"), "host_link")
    for what, items in (("compute", compute), ("memory", memory)):
        names = [x.name for x in items]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            c.problems.append(f"{what}.{dup}: the name {dup!r} is given twice (names must be "
                              f"unique: --set and the mappers find items by name)")
    design = None
    buffers_field = (_src(fields, "buffers") if fields and "buffers" in fields else
                     "params.sram" if "sram" in params else "memory (on-chip level split in "
                     "three)")
    if fpga and not c.problems:
        compute, memory, design = _fpga(c, d, compute, memory, params, resources, fields,
                                        design_name)
    l2 = params.get("l2_level")
    if l2 is not None and memory and l2 not in {m.name for m in memory}:
        c.bad("params.l2_level", f"the name of a memory level ({', '.join(m.name for m in memory)})",
              l2)
    if family == "systolic" and compute and not any(u.shape for u in compute if u.unit == "matrix"):
        c.problems.append("compute: a systolic part needs a matrix unit with shape: [rows, cols]")
    if c.problems:
        raise SpecError(source, [_one_line(p) for p in c.problems])
    device = Device(name, dkind or "gpu", family or "gpu", description or "", node * 1e9,
                    compute, memory, power, pricing, energy, _frozen(params),
                    _frozen(published), source, link, host_link, resources, design)
    if fpga and (resources is not None or design is not None):
        overflow = _fit(device, buffers_field)
        if overflow:
            raise _FitError(source, [_one_line(p) for p in overflow])
    return System(name, device, host_link=host_link)


def _cluster(c: _Checker, raw: Mapping[str, Any], source: str, stem: str | None) -> System:
    """``kind: cluster``: ``nodes`` copies of a node spec (a system or a part) joined by a
    scale-out ``network`` (a Fabric; absent fields keep the node's network). ``count``
    (optional, what ``--set count=N`` and ``train_system(nodes=...)`` set) uses only the
    first N devices, at most ``nodes`` x devices per node. An optional ``link`` refines the
    node's in-node link field by field. Price and overhead power stay per node, so they scale
    with the nodes in use."""
    d = c.mapping(raw, "", _CLUSTER_FIELDS, ("name", "kind", "node", "nodes"))
    name = c.string(d, "name", "")
    if stem and name is not None and name != stem:
        c.bad("name", f"the file name {stem!r}", name)
    description = c.string(d, "description", "", default="", empty_ok=True)
    node_name = d.get("node")
    node = None
    if not isinstance(node_name, str) or not node_name:
        c.bad("node", "the name of a shipped system or part (one node)", node_name)
    else:
        try:
            node = _cluster_node(node_name)
        except SpecError as e:
            c.problems.append(f"node: {_show(node_name)} could not be loaded: "
                              + "; ".join(f"{e.source}: {p}" for p in e.problems))
    nodes = c.integer(d, "nodes", "", 1)
    per = (node.devices_per_node or node.count) if node is not None else None
    count = c.integer(d, "count", "", None)
    if count is not None and per is not None and nodes is not None and count > nodes * per:
        c.bad("count", f"at most nodes x devices per node = {nodes} x {per} = {nodes * per}",
              d.get("count"))
    base = (node.network if isinstance(node.network, Fabric) else
            Fabric(node.network.name, node.network.bandwidth_Bps, node.network.latency_s,
                   node.network.energy_per_byte_j) if node.network is not None else None) \
        if node is not None else None
    network = _fabric(c, d.get("network"), "network", per,
                      required=() if base is not None else ("name", "bandwidth"),
                      base=base) if "network" in d else base
    if "network" not in d and node is not None and base is None:
        c.problems.append(f"network: missing required field (the node {node.name} has no "
                          "network)")
    link = (node.link or node.device.link) if node is not None else None
    if d.get("link") is not None:
        ld = c.mapping(d.get("link"), "link", ("name", "bandwidth", "latency",
                                               "energy_per_byte"),
                       () if link is not None else ("name", "bandwidth"))
        b = link or Link("link", 1.0)
        link = Link(c.string(ld, "name", "link", default=b.name) or b.name,
                    c.qty(ld, "bandwidth", "link", "bandwidth", b.bandwidth_Bps) or 1.0,
                    c.qty(ld, "latency", "link", "time", b.latency_s, required=False,
                          positive=False) or 0.0,
                    c.qty(ld, "energy_per_byte", "link", "energy_per_byte",
                          b.energy_per_byte_j, required=False, positive=False) or 0.0)
    _published(c, d.get("published"))
    if c.problems or node is None or name is None or per is None:
        raise SpecError(source, [_one_line(p) for p in c.problems])
    total = count if count is not None else (nodes or 1) * per
    topology = node.topology if node.topology != "single" else "switch"
    return replace(node, name=name, count=total, topology=topology, link=link,
                   description=description or node.description, source=source,
                   devices_per_node=per, network=network)


def _cluster_node(name: str) -> System:
    """The node a cluster spec names: a system or a part, never a cluster (so a cluster that
    names itself cannot recurse)."""
    path = find_arch(name)
    raw = _read_yaml(path)
    if isinstance(raw, Mapping) and raw.get("kind") == "cluster":
        raise SpecError(str(path), ["kind: is a cluster; a cluster's node must be a system or "
                                    "a part"])
    return load_arch(name)


# -- files, names and overrides --------------------------------------------------------------
#: Folders of arch_specs/ that hold data other specs use, not parts (process/: per-node
#: densities and wafer prices for ASIC area and die cost)
DATA_DIRS = ("process",)


def list_arch_files(root: Path | None = None) -> dict[str, Path]:
    """Shipped spec files by part name (file stem), searched recursively (not the data
    folders, :data:`DATA_DIRS`)."""
    root = root or SPEC_ROOT
    return {p.stem: p for p in sorted(root.rglob("*.yaml"))
            if p.relative_to(root).parts[0] not in DATA_DIRS}


def find_arch(name: str) -> Path:
    p = Path(name)
    try:
        exists = p.suffix in (".yaml", ".yml") and p.exists()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        exists = False
    if exists:
        return p
    files = list_arch_files()
    if name not in files:
        raise SpecError("arch", [f"--arch: unknown part {_show(name)}; shipped: {', '.join(files)}"])
    return files[name]


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["power.tdp=500 W", ...]`` -> ``{"power.tdp": "500 W"}``; errors name the bad item."""
    out = {}
    for it in items or ():
        if not isinstance(it, str) or "=" not in it:
            raise SpecError("--set", [f"{_show(it)}: expected dotted.path=value"])
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _coerce(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return strict_yaml_load(text)
    except yaml.YAMLError:  # not YAML (or an alias, a duplicate key): the text itself
        return text


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str) -> dict:
    """Set each dotted path in a deep copy of ``raw``; unknown list items are errors."""
    return _apply_overrides(raw, overrides, source)[0]


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str
                     ) -> tuple[dict, dict[str, str]]:
    """:func:`apply_overrides`, and the field path the checker will report each override
    under (list items by name: ``compute.0.count`` -> ``compute.tensor_core.count``) ->
    ``path=value`` as the user gave it."""
    import copy

    raw = copy.deepcopy(raw)
    problems = []
    fields: dict[str, str] = {}
    for path, value in overrides.items():
        given = f"{path}={_REPR.repr(value)[1:-1] if isinstance(value, str) else _show(value)}"
        keys = path.split(".")
        if not path or not all(keys):
            problems.append(f"--set {_show(path)}: expected a dotted path like "
                            f"memory.hbm.bandwidth")
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"--set {given}: expected a value after '=', got an empty value")
            continue
        node: Any = raw
        ok = True
        canonical = []
        for i, k in enumerate(keys[:-1]):
            if isinstance(node, list):
                idx = next((j for j, it in enumerate(node)
                            if isinstance(it, Mapping) and it.get("name") == k), None)
                if idx is None and k.isascii() and k.isdigit() and len(k) < 10 \
                        and int(k) < len(node):
                    idx = int(k)
                if idx is None:
                    names = [it.get("name") for it in node if isinstance(it, Mapping)]
                    problems.append(f"--set {path}: no item {_show(k)} in "
                                    f"{'.'.join(keys[:i]) or '<top>'} (items: {_show(names)})")
                    ok = False
                    break
                node = node[idx]
                canonical.append(_item_path("", node, idx)[1:])
            elif isinstance(node, dict):
                node = node.setdefault(k, {})
                canonical.append(k)
            else:
                problems.append(f"--set {path}: {'.'.join(keys[:i])} is not a mapping")
                ok = False
                break
        if ok:
            if isinstance(node, dict):
                node[keys[-1]] = _coerce(value)
                fields[".".join([*canonical, keys[-1]])] = given
            else:
                problems.append(f"--set {path}: parent is not a mapping")
    if problems:
        raise SpecError(source, [_one_line(p) for p in problems])
    return raw, fields


def _from_override(problem: str, fields: Mapping[str, str]) -> str:
    """``problem`` plus ``(from --set path=value)`` when an override set its field, a field
    inside it, a field of the section it is about (``design: ...``), or a field its text
    names (``resources.shell.luts: expected at most resources.luts ...``)."""
    field, _, text = problem.partition(": ")
    given = [g for path, g in fields.items()
             if field == path or field.startswith(path + ".") or path.startswith(field + ".")
             or re.search(rf"(?<![\w.]){re.escape(path)}(?![\w.-])", text)]
    return f"{problem} (from --set {', --set '.join(given)})" if given else problem


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``: at most MAX_SPEC_BYTES of UTF-8, read strictly."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(MAX_SPEC_BYTES + 1) if size <= MAX_SPEC_BYTES else b""
        if size > MAX_SPEC_BYTES or len(data) > MAX_SPEC_BYTES:
            raise SpecError(str(path), [f"file is {max(size, len(data)):,} bytes; spec files are "
                                        f"limited to {MAX_SPEC_BYTES:,} bytes (1 MiB)"])
        return strict_yaml_load(data.decode("utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(str(path), [_one_line(f"{where}malformed YAML ({problem})")]) from None
    except UnicodeDecodeError as e:
        raise SpecError(str(path), [f"not UTF-8 text (byte {e.start}: {e.reason})"]) from None
    except OSError as e:
        raise SpecError(str(path), [f"cannot read file ({e.strerror or e})"]) from None


def _system_device(name: str) -> Device:
    """The device a system spec names; a system is refused (no system of systems, and so no
    system that names itself and recurses forever)."""
    path = find_arch(name)
    raw = _read_yaml(path)
    if isinstance(raw, Mapping) and raw.get("kind") in ("system", "cluster"):
        raise SpecError(str(path), [f"kind: is a {raw.get('kind')}; a system's device must be "
                                    "a single part"])
    return load_arch(name).device


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, overrides: tuple[tuple[str, str], ...]) -> System:
    p = Path(path)
    try:
        source = str(p.relative_to(SPEC_ROOT.parent))
    except ValueError:
        source = str(p)
    raw = _read_yaml(p)
    fields: dict[str, str] = {}
    base = raw.get("count") if isinstance(raw, dict) else None
    base_count = base if isinstance(base, int) and not isinstance(base, bool) and base > 0 \
        else None
    if overrides and isinstance(raw, dict):  # else _build reports the top level
        raw, fields = _apply_overrides(raw, dict(overrides), source)
    shipped = SPEC_ROOT in p.resolve().parents
    try:
        system = _build(raw, source, p.stem if shipped else None, _system_device, base_count)
    except SpecError as e:
        if not fields:
            raise
        if isinstance(e, _FitError):  # any override of what the fit counts may be the cause
            given = [g for path, g in fields.items() if path.split(".", 1)[0] in _FIT_INPUTS]
            tag = f" (from --set {', --set '.join(given)})" if given else ""
            raise SpecError(e.source, [pr + tag for pr in e.problems]) from None
        raise SpecError(e.source, [_from_override(pr, fields) for pr in e.problems]) from None
    if system.device.family == "cpu" and system.device.params.get("detect"):
        from simulator.arch.cpu_detect import detect_cpu_host

        system = detect_cpu_host(system)
    return system


def load_arch(name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | Iterable[str] = ()
              ) -> System:
    """Load a shipped part/system by name, or a spec file by path, with optional overrides.

    Raises
    ------
    SpecError
        Listing every problem with the file, field path, expected and found value.
    """
    if isinstance(overrides, Mapping):
        ov = {str(k): str(v) if not isinstance(v, str) else v for k, v in overrides.items()}
    else:
        ov = parse_overrides(overrides)
    path = find_arch(str(name_or_path))
    return _load_cached(str(path), tuple(sorted(ov.items())))


