"""Load and validate architecture specs (YAML) into :class:`Device` / :class:`System`.

Every problem in a file is collected and reported at once, each as
``<file>: <field.path>: expected <what>, got <value>``. ``--set dotted.path=value`` overrides
are applied to the raw YAML before validation, so an override gets the same checks. List
items can be addressed by index (``compute.0.count``) or by their ``name``
(``compute.tensor_core.count``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from simulator.arch.spec import (
    DEVICE_KINDS,
    FAMILIES,
    KIND_EFFICIENCY_KINDS,
    KIND_EFFICIENCY_MAX,
    TOPOLOGIES,
    UNIT_KINDS,
    ComputeUnit,
    Device,
    EnergyModel,
    Link,
    MemoryLevel,
    Power,
    Pricing,
    System,
    _frozen,
)
from simulator.cost.energy_tables import default_j_per_flop
from simulator.errors import SpecError
from simulator.units import KINDS, UnitError, parse_quantity
from workloads.dtypes import get_dtype
from workloads.ops import SPECIAL_FUNCTIONS

__all__ = ["SPEC_ROOT", "list_arch_files", "find_arch", "load_arch", "load_arch_file",
           "parse_overrides", "apply_overrides", "PARAM_SCHEMA"]

SPEC_ROOT = Path(__file__).resolve().parents[2] / "arch_specs"
_COMPUTE_CLASSES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")

# Family-specific tuning parameters: name -> quantity kind ("number", "bytes", ...), "int",
# "bool", "str:<a>|<b>", "dtypemap" (dtype -> number in (0, 1]), "kindmap" (op kind of
# KIND_EFFICIENCY_KINDS -> factor in (0, KIND_EFFICIENCY_MAX]), "specialmap" (function of
# workloads.ops.SPECIAL_FUNCTIONS -> vector FLOPs per evaluation) or "sram" (mapping name ->
# bytes). kind_efficiency divides the modelled busy time of a streaming op (elementwise, norm,
# softmax, pool, embedding, memcpy) or of attention by the factor for its kind (default 1):
# the achievable fraction of the model's estimate for that kind of kernel. Factors above 1 are
# allowed (the streaming estimate is not a hard bound, e.g. for a gather from cached rows).
_COMMON_PARAMS = {
    "launch_overhead": "time",
    "bandwidth_efficiency": "fraction",
    "compute_efficiency": "dtypemap",
    "vector_efficiency": "fraction",
    "kind_efficiency": "kindmap",
    "special_cost": "specialmap",
}
PARAM_SCHEMA: dict[str, dict[str, str]] = {
    "gpu": {**_COMMON_PARAMS, "attention_efficiency": "fraction", "sm_count": "int",
            "tile_shapes": "tiles", "l2_level": "str", "sm_l2_bandwidth": "bandwidth",
            "pipeline_latency": "time", "cluster_multicast": "int"},
    "systolic": {**_COMMON_PARAMS, "dataflow": "str:os|ws|is", "double_buffered": "bool",
                 "sram": "sram", "cores": "int"},
    "fpga": {**_COMMON_PARAMS, "dsp_utilization": "fraction", "dataflow": "str:os|ws|is",
             "double_buffered": "bool", "sram": "sram", "dsp_fmax": "frequency"},
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

    def bad(self, path: str, expected: str, got: Any) -> None:
        self.problems.append(f"{path}: expected {expected}, got {got!r}")

    def mapping(self, raw: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()
                ) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            self.bad(path or "<top>", "a mapping", raw)
            return {}
        allowed = set(allowed)
        for k in raw:
            if k not in allowed:
                self.problems.append(
                    f"{path + '.' if path else ''}{k}: unknown field (allowed: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in raw:
                self.problems.append(f"{path + '.' if path else ''}{k}: missing required field")
        return dict(raw)

    def qty(self, raw: Mapping[str, Any], key: str, path: str, kind: str,
            default: float | None = None, required: bool = True, positive: bool = True
            ) -> float | None:
        full = f"{path}.{key}" if path else key
        if key not in raw or raw[key] is None:
            if required and default is None:
                if key not in raw:  # missing is reported by mapping(); avoid duplicates
                    self.problems.append(f"{full}: missing required field")
                return None
            return default
        try:
            v = parse_quantity(raw[key], kind)
        except UnitError:
            self.bad(full, KINDS[kind], raw[key])
            return default
        if positive and v <= 0:
            self.bad(full, f"a positive {KINDS[kind].split(' like')[0].replace('a ', '')}", raw[key])
        return v

    def integer(self, raw: Mapping[str, Any], key: str, path: str, default: int | None = None
                ) -> int | None:
        full = f"{path}.{key}" if path else key
        v = raw.get(key, default)
        if v is None:
            if default is None and key in raw:
                self.bad(full, "a positive integer", v)
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            self.bad(full, "a positive integer", v)
            return default
        return v

    def string(self, raw: Mapping[str, Any], key: str, path: str, choices: Iterable[str] = (),
               default: str | None = None) -> str | None:
        full = f"{path}.{key}" if path else key
        v = raw.get(key, default)
        choices = tuple(choices)
        if v is None:
            return default
        if not isinstance(v, str) or (choices and v not in choices):
            self.bad(full, f"one of {', '.join(choices)}" if choices else "a string", v)
            return default
        return v


def _dtype_key(name: Any) -> str | None:
    try:
        return get_dtype(str(name)).compute_class
    except ValueError:
        return None


def _compute(c: _Checker, raw: Any) -> tuple[ComputeUnit, ...]:
    if not isinstance(raw, list) or not raw:
        c.bad("compute", "a non-empty list of compute units", raw)
        return ()
    out = []
    for i, item in enumerate(raw):
        p = f"compute[{i}]"
        d = c.mapping(item, p, ("name", "unit", "count", "clock", "flops_per_cycle", "shape"),
                      ("name", "unit", "count", "clock", "flops_per_cycle"))
        if not d:
            continue
        p = f"compute.{d.get('name', i)}"
        unit = c.string(d, "unit", p, UNIT_KINDS, "matrix")
        count = c.integer(d, "count", p, 1)
        clock = c.qty(d, "clock", p, "frequency", 1e9)
        fpc: dict[str, float] = {}
        rates = d.get("flops_per_cycle", {})
        if not isinstance(rates, Mapping) or not rates:
            c.bad(f"{p}.flops_per_cycle", "a mapping dtype -> FLOP per cycle per unit", rates)
        else:
            for k, v in rates.items():
                key = _dtype_key(k)
                if key is None:
                    c.bad(f"{p}.flops_per_cycle.{k}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
                elif isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    c.bad(f"{p}.flops_per_cycle.{k}", "a positive number", v)
                else:
                    fpc[key] = float(v)
        shape = d.get("shape")
        if shape is not None:
            if (not isinstance(shape, list) or len(shape) != 2
                    or not all(isinstance(x, int) and x > 0 for x in shape)):
                c.bad(f"{p}.shape", "[rows, cols] positive integers", shape)
                shape = None
            else:
                shape = (shape[0], shape[1])
        out.append(ComputeUnit(str(d.get("name", f"unit{i}")), unit or "matrix", count or 1,
                               clock or 1e9, _frozen(fpc), shape))
    return tuple(out)


def _memory(c: _Checker, raw: Any) -> tuple[MemoryLevel, ...]:
    if not isinstance(raw, list) or not raw:
        c.bad("memory", "a non-empty list of memory levels (outermost first)", raw)
        return ()
    out = []
    for i, item in enumerate(raw):
        d = c.mapping(item, f"memory[{i}]",
                      ("name", "capacity", "bandwidth", "latency", "energy_per_byte"),
                      ("name", "capacity", "bandwidth"))
        if not d:
            continue
        p = f"memory.{d.get('name', i)}"
        out.append(MemoryLevel(
            str(d.get("name", f"mem{i}")),
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
    return Link(str(d.get("name", path)), c.qty(d, "bandwidth", path, "bandwidth", 1.0),
                c.qty(d, "latency", path, "time", 0.0, required=False, positive=False),
                c.qty(d, "energy_per_byte", path, "energy_per_byte", 0.0, required=False,
                      positive=False))


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
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            c.bad(path, "a positive integer", v)
            return None
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            c.bad(path, "true or false", v)
            return None
        return v
    if kind == "str":
        return str(v)
    if kind.startswith("str:"):
        choices = kind[4:].split("|")
        if v not in choices:
            c.bad(path, f"one of {', '.join(choices)}", v)
            return None
        return v
    if kind == "dtypemap":
        if not isinstance(v, Mapping):
            c.bad(path, "a mapping dtype -> number in (0, 1]", v)
            return None
        out = {}
        for k, x in v.items():
            key = _dtype_key(k)
            if key is None:
                c.bad(f"{path}.{k}", f"a dtype ({', '.join(_COMPUTE_CLASSES)})", k)
            elif isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1:
                c.bad(f"{path}.{k}", "a number in (0, 1]", x)
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
        if (not isinstance(v, list) or not v
                or not all(isinstance(t, list) and len(t) == 2 and all(isinstance(x, int) and x > 0
                                                                     for x in t) for t in v)):
            c.bad(path, "a list of [tile_m, tile_n] positive integers", v)
            return None
        return tuple((t[0], t[1]) for t in v)
    try:
        return parse_quantity(v, kind)
    except UnitError:
        c.bad(path, KINDS[kind], v)
        return None


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
             "clock": "frequency", "link_bandwidth": "bandwidth"}
    d = c.mapping(raw, "published", kinds)
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "peak":
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
    d = c.mapping(raw or {}, "energy", ("pj_per_flop", "datapath_overhead", "special_multiplier"))
    overhead = d.get("datapath_overhead", 1.0)
    if isinstance(overhead, bool) or not isinstance(overhead, (int, float)) or overhead <= 0:
        c.bad("energy.datapath_overhead", "a positive number", overhead)
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
    return EnergyModel(_frozen(table), float(sm) if isinstance(sm, (int, float)) else 4.0)


_DEVICE_FIELDS = ("name", "kind", "family", "description", "process_node", "compute", "memory",
                  "link", "power", "cost", "energy", "params", "published", "sources")
_SYSTEM_FIELDS = ("name", "kind", "description", "device", "count", "topology", "link",
                  "host_link", "power", "cost", "published", "sources")


def _build(raw: Any, source: str, stem: str | None, device_loader) -> System:
    c = _Checker(source)
    if not isinstance(raw, Mapping):
        raise SpecError(source, [f"<top>: expected a mapping of spec fields, got {type(raw).__name__}"])
    kind = raw.get("kind")
    if kind == "system":
        d = c.mapping(raw, "", _SYSTEM_FIELDS, ("name", "kind", "device", "count", "link"))
        dev_name = d.get("device")
        device = None
        if not isinstance(dev_name, str):
            c.bad("device", "the name of a shipped part", dev_name)
        else:
            try:
                device = device_loader(dev_name)
            except SpecError as e:
                c.problems.append(f"device: {dev_name!r} could not be loaded: {e}")
        count = c.integer(d, "count", "", 1)
        topology = c.string(d, "topology", "", TOPOLOGIES, "switch")
        link = _link(c, d.get("link"), "link") or (device.link if device else None)
        host_link = _link(c, d.get("host_link"), "host_link")
        pw = c.mapping(d.get("power", {}), "power", ("extra",))
        extra = c.qty(pw, "extra", "power", "power", 0.0, required=False, positive=False)
        pricing = _pricing(c, d.get("cost"))
        if c.problems or device is None:
            raise SpecError(source, c.problems)
        return System(str(d["name"]), device, count or 1, topology or "switch", link, host_link,
                      extra or 0.0, pricing, str(d.get("description", "")), source)

    d = c.mapping(raw, "", _DEVICE_FIELDS,
                  ("name", "kind", "family", "process_node", "compute", "memory", "power"))
    name = c.string(d, "name", "") or (stem or "?")
    if stem and name != stem:
        c.bad("name", f"the file name {stem!r}", name)
    dkind = c.string(d, "kind", "", DEVICE_KINDS, "gpu")
    family = c.string(d, "family", "", FAMILIES, "gpu")
    node = c.qty(d, "process_node", "", "length", 7e-9) or 7e-9
    compute = _compute(c, d.get("compute"))
    memory = _memory(c, d.get("memory"))
    pw = c.mapping(d.get("power", {}), "power", ("tdp", "static"), ("tdp", "static"))
    power = Power(c.qty(pw, "tdp", "power", "power", 1.0) or 1.0,
                  c.qty(pw, "static", "power", "power", 0.0, positive=False) or 0.0)
    if power.static_w > power.tdp_w:
        c.bad("power.static", f"at most power.tdp ({pw.get('tdp')})", pw.get("static"))
    pricing = _pricing(c, d.get("cost"))
    energy = _energy(c, d.get("energy"), node * 1e9)
    params = _params(c, d.get("params"), family or "gpu")
    published = _published(c, d.get("published"))
    link = _link(c, d.get("link"), "link")
    if family == "systolic" and compute and not any(u.shape for u in compute if u.unit == "matrix"):
        c.problems.append("compute: a systolic part needs a matrix unit with shape: [rows, cols]")
    if c.problems:
        raise SpecError(source, c.problems)
    return System(name, Device(name, dkind or "gpu", family or "gpu", str(d.get("description", "")),
                               node * 1e9, compute, memory, power, pricing, energy,
                               _frozen(params), _frozen(published), source, link))


# -- files, names and overrides --------------------------------------------------------------
def list_arch_files(root: Path | None = None) -> dict[str, Path]:
    """Shipped spec files by part name (file stem), searched recursively."""
    root = root or SPEC_ROOT
    return {p.stem: p for p in sorted(root.rglob("*.yaml"))}


def find_arch(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    files = list_arch_files()
    if name not in files:
        raise SpecError("arch", [f"--arch: unknown part {name!r}; shipped: {', '.join(files)}"])
    return files[name]


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["power.tdp=500 W", ...]`` -> ``{"power.tdp": "500 W"}``; errors name the bad item."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise SpecError("--set", [f"{it!r}: expected dotted.path=value"])
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _coerce(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str) -> dict:
    """Set each dotted path in a deep copy of ``raw``; unknown list items are errors."""
    import copy

    raw = copy.deepcopy(raw)
    problems = []
    for path, value in overrides.items():
        keys = path.split(".")
        node: Any = raw
        ok = True
        for i, k in enumerate(keys[:-1]):
            if isinstance(node, list):
                idx = next((j for j, it in enumerate(node)
                            if isinstance(it, Mapping) and it.get("name") == k), None)
                if idx is None and k.isdigit() and int(k) < len(node):
                    idx = int(k)
                if idx is None:
                    names = [it.get("name") for it in node if isinstance(it, Mapping)]
                    problems.append(f"--set {path}: no item {k!r} in "
                                    f"{'.'.join(keys[:i]) or '<top>'} (items: {names})")
                    ok = False
                    break
                node = node[idx]
            elif isinstance(node, dict):
                node = node.setdefault(k, {})
            else:
                problems.append(f"--set {path}: {'.'.join(keys[:i])} is not a mapping")
                ok = False
                break
        if ok:
            if isinstance(node, dict):
                node[keys[-1]] = _coerce(value)
            else:
                problems.append(f"--set {path}: parent is not a mapping")
    if problems:
        raise SpecError(source, problems)
    return raw


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(str(path), [f"{where}malformed YAML ({problem})"]) from None
    except OSError as e:
        raise SpecError(str(path), [f"cannot read file ({e.strerror})"]) from None


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, overrides: tuple[tuple[str, str], ...]) -> System:
    p = Path(path)
    raw = _read_yaml(p)
    if overrides:
        raw = apply_overrides(raw if isinstance(raw, dict) else {}, dict(overrides), p.name)
    try:
        source = str(p.relative_to(SPEC_ROOT.parent))
    except ValueError:
        source = str(p)
    shipped = SPEC_ROOT in p.resolve().parents
    system = _build(raw, source, p.stem if shipped else None, lambda n: load_arch(n).device)
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


def load_arch_file(path: str | os.PathLike) -> System:
    """Load one spec file, requiring its ``name`` to match the file name."""
    return _load_cached(str(Path(path)), ())
