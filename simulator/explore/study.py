"""A design-space study as a file: what varies, over which workloads, what is best, what must hold.

```yaml
name: h100-decode-whatif
base: h100-sxm                    # a shipped part or system, or a spec path (relative to here)
                                  # (or an axis `arch: [a100-sxm-80gb, tpu-v5e]` over parts)
workloads:                        # each run with these options; objectives are weighted means
  - {workload: llama2-7b, phase: decode, batch: 8, context: 1024, weight: 1}
axes:                             # spec fields by dotted path (as --set), or run options
  memory.hbm.bandwidth: [2 TB/s, 3.35 TB/s, 4.8 TB/s]          # a list of values
  compute.tensor_core.count: {range: [66, 198], steps: 3}       # linear: 66, 132, 198 (a grid's
                                                                # steps; random, nsga2, tpe and
                                                                # morris sample the range)
  memory.hbm.capacity: {log_range: [40 GB, 160 GB], steps: 3}   # geometric: 40, 80, 160 GB
  batch: [1, 8, 64]                                             # a run option of every workload
  # conditional: only on the parts of one kind (or named parts) of an `arch` axis
  # params.dsp_utilization: {values: [0.5, 0.75, 0.9], when: {kind: fpga}}
objectives: {tokens_per_s: max, energy_per_sample_j: min}
constraints: ["avg_power_w <= 700"]
search: {method: grid}            # or {method: random, samples: 200, seed: 0}
```

Every problem is reported at once, each naming the file, the field and the value
(:class:`StudyError`, a :class:`~simulator.errors.SpecError`). A spec axis is checked by loading
the base spec with each of its values, so a path the spec does not have fails here, not at the
first point.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError, SpecError

__all__ = ["Study", "Axis", "Workload", "Constraint", "StudyError", "load_study", "METRICS",
           "RUN_OPTIONS", "MAX_GRID_POINTS", "ADAPTIVE", "ARCH", "point_id"]

#: Per-point metrics an objective or a constraint may name: ``Result.to_dict()``'s numbers and
#: the derived ones below; ``+`` better when larger, ``-`` when smaller.
METRICS: dict[str, str] = {
    "latency_s": "-", "energy_j": "-", "avg_power_w": "-", "cost_usd": "-",
    "usd_per_hour": "-", "throughput": "+", "tokens_per_s": "+",
    "usd_per_million_tokens": "-", "energy_per_sample_j": "-", "memory_bytes": "-",
    "peak_fraction": "+",
    # derived (simulator.explore.evaluate)
    "edp": "-",                     # energy x latency, J s
    "perf_per_w": "+",              # throughput per watt of average power
    "perf_per_usd": "+",            # throughput per dollar of hourly price, samples or tokens/$
    "memory_headroom_bytes": "+",   # capacity minus the most loaded device's footprint
    "unit_cost_usd": "-",           # the part's (system's) purchase price, from its spec
    "tco_usd": "-",                 # purchase + electricity over the spec's lifetime
    # systolic parts only (simulator.cost.silicon, per chip)
    "area_mm2": "-",                # die area from PEs, SRAM, PHYs at the process node
    "chip_power_w": "-",            # leakage + dynamic power at the array's peak
    "silicon_cost_usd": "-",        # die (wafer, yield) + package + DRAM/HBM, no margin
}
#: Run options a workload entry or an axis without a dot may set (RunOptions fields).
RUN_OPTIONS: dict[str, type] = {
    "phase": str, "batch": int, "seq": int, "context": int, "dtype": str,
    "weight_dtype": str, "kv_dtype": str, "tp": int, "pp": int, "dp": int,
    "microbatches": int, "ep": int, "recompute": str, "image_size": int, "dataflow": str,
    "timing": str,  # kernel | graph | stream | eager (simulator.timing); not a plan field
}
#: The axis over parts or systems (``arch: [a100-sxm-80gb, tpu-v5e, alveo-u280]``)
ARCH = "arch"
#: A grid larger than this is refused (use random search or fewer steps).
MAX_GRID_POINTS = 1_000_000
_SEARCH_METHODS = ("grid", "random", "nsga2", "tpe", "morris")
#: searches that choose each next point from the results so far (optuna, ask/tell)
ADAPTIVE = ("nsga2", "tpe")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(.+?)\s*$")


class StudyError(SpecError):
    """A study file is invalid: every problem, each with its field and value."""


@dataclass(frozen=True)
class Axis:
    """One varied parameter: a spec field (dotted path) or a run option, and its values.

    ``values`` are what the spec loader or the run option receives (text with units for
    spec fields, as written, or SI numbers for generated ranges); ``continuous`` (random
    search only): ``(low, high, log, integer)`` to sample from instead of ``values``."""

    name: str
    values: tuple[Any, ...]
    spec: bool
    continuous: tuple[float, float, bool, bool] | None = None
    #: a conditional axis: ``("kind", ("fpga",))`` or ``("arch", ("alveo-u280",))``: it
    #: applies to points whose part matches, and is None (not set) on the others
    when: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Workload:
    workload: str
    options: Mapping[str, Any]
    weight: float = 1.0


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float
    text: str

    def holds(self, value: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return {"<=": value <= self.bound, "<": value < self.bound,
                ">=": value >= self.bound, ">": value > self.bound}[self.op]


@dataclass(frozen=True)
class Study:
    """A validated study (see the module docstring)."""

    name: str
    path: Path
    base: str
    workloads: tuple[Workload, ...]
    axes: tuple[Axis, ...]
    objectives: tuple[tuple[str, str], ...]  # (metric, "min" | "max")
    constraints: tuple[Constraint, ...]
    method: str = "grid"
    samples: int | None = None
    seed: int = 0
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def points(self) -> list[dict[str, Any]]:
        """Every design point the search evaluates, in a fixed order (the same on every run
        and after a resume): the grid's product, or ``samples`` draws seeded by ``seed``."""
        if self.method == "grid":
            names = [a.name for a in self.axes]
            return self._conditioned([dict(zip(names, combo, strict=True))
                                      for combo in itertools.product(*(a.values
                                                                       for a in self.axes))])
        if self.method in ("morris", *ADAPTIVE):
            raise HwsimError(f"a {self.method} study's points come from "
                             "simulator.explore.design.design_points")
        rng = random.Random(self.seed)
        out, seen = [], set()
        tries = 0
        while len(out) < (self.samples or 0) and tries < 20 * (self.samples or 0):
            tries += 1
            p = self._conditioned([{a.name: _draw(a, rng) for a in self.axes}])[0]
            key = point_id(p)
            if key not in seen:  # a small discrete space: no point twice
                seen.add(key)
                out.append(p)
        return out

    def _conditioned(self, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Conditional axes set to None where their part does not match; points that then
        coincide are kept once, in order."""
        cond = [a for a in self.axes if a.when is not None]
        if not cond:
            return points
        out: dict[str, dict[str, Any]] = {}
        for p in points:
            for a in cond:
                if not self.applies(a, p):
                    p[a.name] = None
            out.setdefault(point_id(p), p)
        return list(out.values())

    def applies(self, axis: Axis, point: Mapping[str, Any]) -> bool:
        """Whether ``axis`` is set on ``point`` (always, unless it is conditional)."""
        if axis.when is None:
            return True
        key, wanted = axis.when
        arch = self.arch_of(point)
        return arch in wanted if key == ARCH else _kind_of(arch) in wanted

    def grid_size(self) -> int:
        if any(a.when is not None for a in self.axes):
            return len(self.points())
        return math.prod(len(a.values) for a in self.axes)



    def spec_overrides(self, point: Mapping[str, Any]) -> dict[str, Any]:
        return {a.name: point[a.name] for a in self.axes
                if a.spec and point.get(a.name) is not None}

    def run_options(self, point: Mapping[str, Any]) -> dict[str, Any]:
        return {a.name: point[a.name] for a in self.axes
                if not a.spec and a.name != ARCH and point.get(a.name) is not None}

    def arch_of(self, point: Mapping[str, Any]) -> str:
        """The part or system of a point: its ``arch`` axis value, else the base."""
        return str(point.get(ARCH, self.base))

    def fingerprint(self) -> str:
        """A hash of what decides the points and their values (not the file's layout)."""
        blob = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _kind_of(arch: str) -> str:
    """gpu, tpu, fpga, asic or cpu: the kind of a part (a system's: its device's)."""
    from simulator.arch.loader import load_arch

    return str(load_arch(arch).device.kind)


def point_id(point: Mapping[str, Any]) -> str:
    """A stable id of a design point: the same values, the same id, in any process."""
    blob = json.dumps({k: point[k] for k in sorted(point)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _draw(a: Axis, rng: random.Random) -> Any:
    if a.continuous is None:
        return a.values[rng.randrange(len(a.values))]
    lo, hi, log, integer = a.continuous
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
    return int(round(x)) if integer else float(f"{x:.6g}")


# -- loading ------------------------------------------------------------------------------------
def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a study file; raises :class:`StudyError` listing every problem."""
    from workloads.importers.hf_config import strict_yaml_load

    p = Path(path)
    src = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(src, ["no such study file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(src, [f"cannot be read ({e.__class__.__name__})"]) from None
    try:
        raw = strict_yaml_load(text)
    except Exception as e:  # noqa: BLE001 - any YAML problem becomes one clear line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudyError(src, [f"not valid YAML: {first}"]) from None
    if not isinstance(raw, dict):
        raise StudyError(src, [f"expected a mapping of study fields, got {_show(raw)}"])
    return _validate(raw, p)


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


_FIELDS = {"name", "description", "base", "workloads", "axes", "objectives", "constraints",
           "search"}


def _validate(raw: dict[str, Any], path: Path) -> Study:
    problems: list[str] = []
    for k in sorted(set(raw) - _FIELDS, key=str):
        problems.append(f"{k}: unknown field (expected one of {', '.join(sorted(_FIELDS))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name: expected a non-empty text, got {_show(name)}")
        name = path.stem
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        problems.append(f"description: expected text, got {_show(desc)}")
        desc = ""
    base = raw.get("base")
    arch_axis = (raw.get("axes") or {}).get(ARCH) if isinstance(raw.get("axes"), dict) else None
    if base is None and isinstance(arch_axis, list) and arch_axis and \
            isinstance(arch_axis[0], str):
        base = arch_axis[0]  # an arch axis and no base: spec axes are checked on its first
    base_ok = False
    if not isinstance(base, str) or not base.strip():
        problems.append(f"base: expected a part or system name or a spec path, got "
                        f"{_show(base)}")
    else:
        base = _resolve_base(base, path)
        try:
            from simulator.arch.loader import load_arch

            load_arch(base)
            base_ok = True
        except HwsimError as e:
            problems.append(f"base: {_show(raw.get('base'))}: {str(e).splitlines()[0]}")
    workloads = _workloads(raw.get("workloads"), problems)
    archs = [a for a in arch_axis if isinstance(a, str)] if isinstance(arch_axis, list) \
        else None
    axes = _axes(raw.get("axes"), problems, base if base_ok else None, archs)
    objectives = _objectives(raw.get("objectives"), problems)
    constraints = _constraints(raw.get("constraints", []), problems)
    method, samples, seed = _search(raw.get("search", {"method": "grid"}), problems)
    if method != "grid" and method != "random" and any(a.when for a in axes):
        problems.append(f"search.method: {method}: conditional axes (when:) work with grid "
                        "and random searches")
    if method == "grid":
        for a in axes:
            if a.continuous is not None and not a.values:
                problems.append(f"axes.{a.name}: a range without steps can only be sampled: "
                                "give steps, or search: {method: random, samples: N}")
        size = math.prod(len(a.values) for a in axes) if axes else 0
        if size > MAX_GRID_POINTS:
            problems.append(f"axes: the grid has {size:,} points, more than "
                            f"{MAX_GRID_POINTS:,}: use fewer steps or search: "
                            "{method: random, samples: N}")
    if problems:
        raise StudyError(str(path), problems)
    return Study(name=name, path=path, base=base, workloads=tuple(workloads),
                 axes=tuple(axes), objectives=tuple(objectives),
                 constraints=tuple(constraints), method=method, samples=samples, seed=seed,
                 description=desc, raw=raw)


def _resolve_base(base: str, study_path: Path) -> str:
    """A path relative to the study file if one exists there, else the name as given."""
    if base.endswith((".yaml", ".yml")) and not Path(base).is_absolute():
        here = study_path.parent / base
        if here.exists():
            return str(here)
    return base


def _workloads(raw: Any, problems: list[str]) -> list[Workload]:
    if raw is None:
        problems.append("workloads: missing (a list of {workload: name, ...options})")
        return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        problems.append(f"workloads: expected a non-empty list, got {_show(raw)}")
        return []
    from workloads.zoo import list_models

    known = {m.name for m in list_models()}
    out = []
    for i, w in enumerate(raw):
        where = f"workloads[{i}]"
        if isinstance(w, str):
            w = {"workload": w}
        if not isinstance(w, dict):
            problems.append(f"{where}: expected a mapping with a workload name, got {_show(w)}")
            continue
        name = w.get("workload")
        if not isinstance(name, str) or (name not in known and not Path(name).exists()):
            problems.append(f"{where}.workload: unknown workload {_show(name)} (known: "
                            f"{', '.join(sorted(known)[:8])}, ...; or a config.json path)")
            continue
        weight = w.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight <= 0:
            problems.append(f"{where}.weight: expected a positive number, got {_show(weight)}")
            weight = 1.0
        opts = {}
        for k, v in w.items():
            if k in ("workload", "weight"):
                continue
            if k not in RUN_OPTIONS:
                problems.append(f"{where}.{k}: unknown run option (expected one of "
                                f"{', '.join(sorted(RUN_OPTIONS))})")
                continue
            bad = _bad_option(k, v)
            if bad:
                problems.append(f"{where}.{k}: {bad}")
                continue
            opts[k] = v
        out.append(Workload(name, opts, float(weight)))
    return out


def _bad_option(k: str, v: Any) -> str | None:
    t = RUN_OPTIONS[k]
    if t is int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return f"expected a positive integer, got {_show(v)}"
    elif not isinstance(v, str) or not v:
        return f"expected a name, got {_show(v)}"
    return None


def _safe_kind(arch: str) -> str | None:
    try:
        return _kind_of(arch)
    except HwsimError:
        return None


def _axes(raw: Any, problems: list[str], base: str | None,
          archs: list[str] | None = None) -> list[Axis]:
    if not isinstance(raw, dict) or not raw:
        problems.append(f"axes: expected a mapping of field path -> values, got {_show(raw)}")
        return []
    out = []
    for name, spec in raw.items():
        where = f"axes.{name}"
        if not isinstance(name, str) or not name:
            problems.append(f"axes: {_show(name)}: expected a dotted field path")
            continue
        is_spec = "." in name
        if name == ARCH:
            axis = _arch_axis(spec, where, problems)
            if axis is not None:
                out.append(axis)
            continue
        if not is_spec and name not in RUN_OPTIONS:
            problems.append(f"{where}: neither a spec field path (with a dot, as --set takes "
                            f"it) nor a run option ({', '.join(sorted(RUN_OPTIONS))})")
            continue
        when = None
        if isinstance(spec, dict) and ("when" in spec or "values" in spec):
            when = _when(spec.get("when"), where, problems) if "when" in spec else None
            if "when" in spec and when is None:
                continue
            spec = {k: v for k, v in spec.items() if k != "when"}
            if "values" in spec:
                if set(spec) != {"values"}:
                    problems.append(f"{where}: values and {', '.join(sorted(set(spec) - {'values'}))}"
                                    " together: give a list of values or a range")
                    continue
                spec = spec["values"]
        axis = _axis_values(name, spec, where, problems, is_spec)
        if axis is None:
            continue
        if when is not None:
            axis = replace(axis, when=when)
        if not is_spec:
            bad = [v for v in axis.values if _bad_option(name, v)]
            if bad:
                problems.append(f"{where}: {_bad_option(name, bad[0])}")
                continue
        elif base is not None:
            on = base
            if axis.when is not None:  # checked on a part it applies to
                key, wanted = axis.when
                cands = [a for a in (archs or [base])
                         if (a in wanted if key == ARCH else _safe_kind(a) in wanted)]
                if not cands:
                    problems.append(f"{where}.when: no part of the study matches "
                                    f"{key} {', '.join(wanted)}")
                    continue
                on = cands[0]
            if not _check_spec_axis(on, axis, where, problems):
                continue
        out.append(axis)
    return out


_KINDS = ("gpu", "tpu", "fpga", "asic", "cpu")


def _when(raw: Any, where: str, problems: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """``{kind: fpga}`` or ``{arch: [alveo-u280]}`` -> ("kind", ("fpga",))."""
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("kind", ARCH):
        problems.append(f"{where}.when: expected {{kind: gpu|tpu|fpga|asic|cpu}} or "
                        f"{{arch: [part, ...]}}, got {_show(raw)}")
        return None
    key, val = next(iter(raw.items()))
    vals = [val] if isinstance(val, str) else val
    if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
        problems.append(f"{where}.when.{key}: expected a name or a list of names, got "
                        f"{_show(val)}")
        return None
    if key == "kind":
        bad = [v for v in vals if v not in _KINDS]
        if bad:
            problems.append(f"{where}.when.kind: {_show(bad[0])} is not a kind of part "
                            f"({', '.join(_KINDS)})")
            return None
    return key, tuple(vals)


def _arch_axis(spec: Any, where: str, problems: list[str]) -> Axis | None:
    """The parts or systems to compare: each must load."""
    from simulator.arch.loader import load_arch

    if not isinstance(spec, list) or not spec or not all(isinstance(v, str) for v in spec):
        problems.append(f"{where}: expected a list of part or system names, got {_show(spec)}")
        return None
    if len(set(spec)) != len(spec):
        problems.append(f"{where}: a part is listed twice: {_show(spec)}")
        return None
    bad = []
    for v in spec:
        try:
            load_arch(v)
        except HwsimError as e:
            bad.append(f"{where}: {_show(v)}: {str(e).splitlines()[0]}")
    problems.extend(bad)
    return None if bad else Axis(ARCH, tuple(spec), False)


def _axis_values(name: str, spec: Any, where: str, problems: list[str], is_spec: bool
                 ) -> Axis | None:
    if isinstance(spec, list):
        if not spec:
            problems.append(f"{where}: an empty list of values")
            return None
        if len({json.dumps(v, sort_keys=True, default=str) for v in spec}) != len(spec):
            problems.append(f"{where}: a value is listed twice: {_show(spec)}")
            return None
        return Axis(name, tuple(spec), is_spec)
    if not isinstance(spec, dict) or len({"range", "log_range"} & set(spec)) != 1:
        problems.append(f"{where}: expected a list of values, {{range: [lo, hi], steps: n}} "
                        f"or {{log_range: [lo, hi], steps: n}}, got {_show(spec)}")
        return None
    extra = set(spec) - {"range", "log_range", "steps"}
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} "
                        "(expected range or log_range, and steps)")
        return None
    log = "log_range" in spec
    key = "log_range" if log else "range"
    ends = spec[key]
    if not isinstance(ends, list) or len(ends) != 2:
        problems.append(f"{where}.{key}: expected [low, high], got {_show(ends)}")
        return None
    parsed = _ends(ends)
    if parsed is None:
        problems.append(f"{where}.{key}: {_show(ends)}: expected two numbers, or two "
                        "quantities of one kind (e.g. [2 TB/s, 5 TB/s])")
        return None
    lo, hi, integer = parsed
    if not (lo < hi):
        problems.append(f"{where}.{key}: an empty range {_show(ends)} (low must be below "
                        "high)")
        return None
    if log and lo <= 0:
        problems.append(f"{where}.log_range: {_show(ends)}: a log range needs positive ends")
        return None
    steps = spec.get("steps")
    if steps is None:
        return Axis(name, (), is_spec, (lo, hi, log, integer))
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2 or steps > 10_000:
        problems.append(f"{where}.steps: expected an integer from 2 to 10000, got "
                        f"{_show(steps)}")
        return None
    if log:
        vals = [lo * (hi / lo) ** (i / (steps - 1)) for i in range(steps)]
    else:
        vals = [lo + (hi - lo) * i / (steps - 1) for i in range(steps)]
    if integer:
        vals = sorted({int(round(v)) for v in vals})
        if len(vals) < steps:
            problems.append(f"{where}.steps: {steps} steps of {_show(ends)} repeat integer "
                            f"values; at most {len(vals)} distinct ones")
            return None
    else:
        vals = [float(f"{v:.6g}") for v in vals]
    return Axis(name, tuple(vals), is_spec, (lo, hi, log, integer))


def _ends(ends: list[Any]) -> tuple[float, float, bool] | None:
    """Two numbers (integer if both are ints), or two quantities with units in SI."""
    if all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in ends):
        if not all(math.isfinite(float(e)) for e in ends):
            return None
        return float(ends[0]), float(ends[1]), all(isinstance(e, int) for e in ends)
    if not all(isinstance(e, str) for e in ends):
        return None
    from simulator.units import KINDS, parse_quantity

    for kind in KINDS:
        if kind == "number":
            continue
        try:
            lo, hi = (parse_quantity(e, kind) for e in ends)
        except (HwsimError, ValueError):
            continue
        return lo, hi, False
    return None


def _check_spec_axis(base: str, axis: Axis, where: str, problems: list[str]) -> bool:
    """Load the base spec with the axis's extreme values: a path the spec does not have, or a
    value its validation refuses, is reported here with the loader's own words."""
    from simulator.arch.loader import load_arch

    if axis.values:
        probe = list(axis.values)
    else:
        lo, hi, _, integer = axis.continuous  # type: ignore[misc]
        probe = [int(lo), int(hi)] if integer else [lo, hi]
    for v in {0: probe[0], 1: probe[-1]}.values():
        try:
            load_arch(base, {axis.name: v})
        except HwsimError as e:
            msg = str(e).splitlines()
            detail = next((m.split(": ", 1)[-1] for m in msg if axis.name.split(".")[-1] in m),
                          msg[0].split(": ", 1)[-1])
            problems.append(f"{where}: value {_show(v)} on {Path(base).stem}: {detail}")
            return False
    return True


def _objectives(raw: Any, problems: list[str]) -> list[tuple[str, str]]:
    if isinstance(raw, list):  # [latency_s, ...] takes each metric's natural direction
        raw = {m: None for m in raw} if all(isinstance(m, str) for m in raw) else raw
    if not isinstance(raw, dict) or not raw:
        problems.append(f"objectives: expected a mapping of metric -> min | max, got "
                        f"{_show(raw)}")
        return []
    out = []
    for m, sense in raw.items():
        where = f"objectives.{m}"
        if m not in METRICS:
            problems.append(f"{where}: unknown metric (known: {', '.join(sorted(METRICS))})")
            continue
        if sense is None:
            sense = "max" if METRICS[m] == "+" else "min"
        if sense not in ("min", "max"):
            problems.append(f"{where}: expected min or max, got {_show(sense)}")
            continue
        out.append((m, sense))
    return out


def _constraints(raw: Any, problems: list[str]) -> list[Constraint]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"constraints: expected a list like [\"avg_power_w <= 700\"], got "
                        f"{_show(raw)}")
        return []
    out = []
    for i, c in enumerate(raw):
        where = f"constraints[{i}]"
        m = _CONSTRAINT.match(c) if isinstance(c, str) else None
        if m is None:
            problems.append(f"{where}: {_show(c)}: expected 'metric <= value' (or <, >=, >)")
            continue
        metric, op, text = m.groups()
        if metric not in METRICS:
            problems.append(f"{where}: {_show(c)}: unknown metric {metric!r} (known: "
                            f"{', '.join(sorted(METRICS))})")
            continue
        bound = _bound(text)
        if bound is None:
            problems.append(f"{where}: {_show(c)}: {text!r} is not a number or a quantity")
            continue
        out.append(Constraint(metric, op, bound, c.strip()))
    return out


def _bound(text: str) -> float | None:
    try:
        v = float(text)
        return v if math.isfinite(v) else None
    except ValueError:
        pass
    from simulator.units import KINDS, parse_quantity

    for kind in KINDS:
        try:
            return parse_quantity(text, kind)
        except (HwsimError, ValueError):
            continue
    return None


def _search(raw: Any, problems: list[str]) -> tuple[str, int | None, int]:
    if not isinstance(raw, dict):
        problems.append(f"search: expected {{method: grid}} or {{method: random | nsga2 | tpe "
                        f"| morris, samples: N}}, got {_show(raw)}")
        return "grid", None, 0
    extra = set(raw) - {"method", "samples", "seed"}
    if extra:
        problems.append(f"search: unknown key(s) {', '.join(sorted(map(str, extra)))} "
                        "(expected method, samples, seed)")
    method = raw.get("method", "grid")
    if method not in _SEARCH_METHODS:
        problems.append(f"search.method: expected one of {', '.join(_SEARCH_METHODS)}, got "
                        f"{_show(method)}")
        method = "grid"
    samples = raw.get("samples")
    if method in ("random", "morris", *ADAPTIVE):
        if isinstance(samples, bool) or not isinstance(samples, int) or not \
                1 <= samples <= MAX_GRID_POINTS:
            problems.append(f"search.samples: expected an integer from 1 to "
                            f"{MAX_GRID_POINTS:,}, got {_show(samples)}")
            samples = 1
        if method == "morris" and isinstance(samples, int) and samples < 2:
            problems.append(f"search.samples: Morris needs at least 2 trajectories (their "
                            f"spread is sigma), got {samples}")
    elif samples is not None:
        problems.append("search.samples: a grid takes every point; samples are for random, "
                        "nsga2, tpe (trials) and morris (trajectories)")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.append(f"search.seed: expected an integer, got {_show(seed)}")
        seed = 0
    return str(method), samples, seed
