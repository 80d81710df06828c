"""Calibration profiles: load, validate and apply fitted efficiency factors to a System.

A profile (written by :mod:`simulator.validate.calibrate`) holds per-device parameters in spec
form; applying one is an architecture concern, so it lives here and the prediction pipeline
never imports the validation package. Profiles are never applied implicitly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulator.arch.loader import PARAM_SCHEMA, load_arch
from simulator.arch.spec import KIND_EFFICIENCY_KINDS, KIND_EFFICIENCY_MAX, System
from simulator.errors import HwsimError
from simulator.frozen import FrozenMap
from workloads.dtypes import get_dtype

__all__ = ["SCHEMA", "CALIBRATABLE", "BOUNDS", "CalibrationProfile", "apply_params",
           "flat_params", "band_for", "load_profile"]

SCHEMA = "hwsim.calibration/1"
CALIBRATABLE = ("compute_efficiency", "bandwidth_efficiency", "vector_efficiency",
                "launch_overhead", "attention_efficiency", "kind_efficiency", "kernel_startup",
                "pipeline_latency", "nvlink_efficiency", "graph_launch_gap", "eager_dispatch")
#: Bounds in SI: fractions; a launch overhead up to 1 ms; a kernel's fixed device times
#: (``kernel_startup``, ``pipeline_latency``: microseconds on real GPUs) up to 50 us.
BOUNDS: dict[str, tuple[float, float]] = {"fraction": (0.01, 1.0), "launch_overhead": (0.0, 1e-3),
                                          "kernel_startup": (0.0, 5e-5),
                                          "pipeline_latency": (0.0, 5e-5),
                                          "graph_launch_gap": (0.0, 5e-5),
                                          "eager_dispatch": (0.0, 1e-3),
                                          "kind_efficiency": (0.01, KIND_EFFICIENCY_MAX)}
_TIMES = ("launch_overhead", "kernel_startup", "pipeline_latency", "graph_launch_gap",
          "eager_dispatch")
_FIELDS = ("schema", "arch", "created", "params", "fitted", "band", "device", "software",
           "dataset", "kept", "stats", "holdout_shape_keys")
_REQUIRED = ("schema", "arch", "created", "params", "fitted", "band")




# -- parameters ------------------------------------------------------------------------------
def _bounds_of(name: str) -> tuple[float, float]:
    """SI bounds of a parameter, by spec name or flat name (``kind_efficiency.softmax``)."""
    base = name.split(".", 1)[0]
    return BOUNDS[base if base in BOUNDS else "fraction"]


def _check_value(name: str, v: Any) -> str | None:
    """Why ``v`` is not a valid value of parameter ``name`` (None if it is)."""
    lo, hi = _bounds_of(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return f"expected a number, got {v!r}"
    if name in _TIMES:
        if not lo <= v <= hi:
            return f"expected seconds in [0, {hi:g}], got {v!r}"
    elif name == "kind_efficiency":
        if not 0 < v <= hi:
            return f"expected a factor in (0, {hi:g}], got {v!r}"
    elif not 0 < v <= hi:
        return f"expected a fraction in (0, 1], got {v!r}"
    return None


def _param_problems(params: Mapping[str, Any], family: str | None = None) -> list[str]:
    """Problems of a calibration ``params`` mapping, each ``field: what is wrong``."""
    problems = []
    allowed = CALIBRATABLE if family is None else \
        tuple(k for k in CALIBRATABLE if k in PARAM_SCHEMA.get(family, {}))
    for k, v in params.items():
        if k not in allowed:
            where = f" for family {family!r}" if family else ""
            problems.append(f"params.{k}: unknown parameter{where} (calibratable: "
                            f"{', '.join(allowed)})")
        elif k == "compute_efficiency":
            if not isinstance(v, Mapping):
                problems.append(f"params.{k}: expected a mapping dtype -> fraction, got {v!r}")
                continue
            for dt, x in v.items():
                try:
                    ok = get_dtype(str(dt)).compute_class == dt
                except ValueError:
                    ok = False
                if not ok:
                    problems.append(f"params.{k}.{dt}: expected a compute class (fp32, tf32, "
                                    "bf16, fp16, fp8, int8, int4)")
                elif (why := _check_value(k, x)) is not None:
                    problems.append(f"params.{k}.{dt}: {why}")
        elif k == "kind_efficiency":
            if not isinstance(v, Mapping):
                problems.append(f"params.{k}: expected a mapping op kind -> factor, got {v!r}")
                continue
            for kind, x in v.items():
                if kind not in KIND_EFFICIENCY_KINDS:
                    problems.append(f"params.{k}.{kind}: expected an op kind "
                                    f"({', '.join(KIND_EFFICIENCY_KINDS)})")
                elif (why := _check_value(k, x)) is not None:
                    problems.append(f"params.{k}.{kind}: {why}")
        elif (why := _check_value(k, v)) is not None:
            problems.append(f"params.{k}: {why}")
    return problems


def apply_params(system: System, params: Mapping[str, Any]) -> System:
    """A copy of ``system`` whose device has ``params`` merged into its spec params
    (``compute_efficiency`` merged per dtype, ``kind_efficiency`` per op kind). No YAML is
    re-read.

    Raises
    ------
    HwsimError
        Naming a parameter that is not calibratable for the device's family, or a bad value.
    """
    dev = system.device
    problems = _param_problems(params, dev.family)
    if problems:
        raise HwsimError(f"{dev.name}: " + "; ".join(problems))
    merged = dict(dev.params)
    for k, v in params.items():
        if isinstance(v, Mapping):  # per-key tables: compute_efficiency, kind_efficiency
            merged[k] = FrozenMap({**dict(dev.params.get(k) or {}),
                                          **{d: float(x) for d, x in v.items()}})
        else:
            merged[k] = float(v)
    return replace(system, device=replace(dev, params=FrozenMap(merged)))


def flat_params(params: Mapping[str, Any]) -> dict[str, float]:
    """``{"compute_efficiency": {"fp32": 0.5}, ...}`` -> ``{"compute_efficiency.fp32": 0.5,
    ...}``."""
    out: dict[str, float] = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update({f"{k}.{d}": float(x) for d, x in v.items()})
        else:
            out[k] = float(v)
    return out


def _nested(flat: Mapping[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, v in flat.items():
        if "." in name:
            k, d = name.split(".", 1)
            out.setdefault(k, {})[d] = float(v)
        else:
            out[name] = float(v)
    return out


# -- profile ---------------------------------------------------------------------------------
def _plain(x: Any) -> Any:
    """Mappings/tuples/numpy scalars -> dict/list/float for YAML."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


@dataclass(frozen=True)
class CalibrationProfile:
    """Fitted efficiency factors of one device, with fit statistics and an error band.

    ``params`` is in spec form (``{"compute_efficiency": {"fp32": 0.45},
    "launch_overhead": 1.2e-5}``) and holds only the fitted parameters; ``kept`` maps each
    parameter not fitted to ``{"value": ..., "reason": ...}``. ``band`` holds
    ``overall: {p68, p95, n}``, ``by_class`` and ``by_kind`` (fractions).
    """

    SCHEMA = SCHEMA

    arch: str
    params: Mapping[str, Any]
    fitted: tuple[str, ...]
    band: Mapping[str, Any]
    created: str = ""
    device: Mapping[str, Any] = field(default_factory=dict)
    software: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = ""
    kept: Mapping[str, Any] = field(default_factory=dict)
    stats: Mapping[str, Any] = field(default_factory=dict)
    holdout_shape_keys: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def value(self, name: str) -> float | None:
        """A fitted parameter by flat name (``compute_efficiency.fp32``), else None."""
        return flat_params(self.params).get(name)

    def to_dict(self) -> dict[str, Any]:
        return _plain({"schema": SCHEMA, "arch": self.arch, "created": self.created,
                       "device": self.device, "software": self.software,
                       "dataset": self.dataset, "params": self.params,
                       "fitted": list(self.fitted), "kept": self.kept, "stats": self.stats,
                       "band": self.band, "holdout_shape_keys": list(self.holdout_shape_keys)})

    def save(self, path: str | Path) -> Path:
        """Write the profile as YAML (SI units) and return the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        head = (f"# hwsim calibration profile for {self.arch}: fitted efficiency factors "
                "(SI: launch_overhead, kernel_startup, pipeline_latency in seconds, "
                "efficiencies as fractions).\n"
                "# Applied only when asked for (--calibration); see "
                "simulator/validate/calibrate.py.\n")
        p.write_text(head + yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> CalibrationProfile:
        """Read and validate a profile.

        Raises
        ------
        HwsimError
            Naming the file and every wrong, missing or unknown field.
        """
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise HwsimError(f"{p}: cannot read calibration profile ({e.strerror})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark else ""
            raise HwsimError(f"{p}: {where}malformed YAML "
                             f"({getattr(e, 'problem', None) or e})") from None
        return cls.from_dict(raw, str(p))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<profile>") -> CalibrationProfile:
        """Validate a profile mapping (as read from YAML); errors name ``source`` and fields."""
        if not isinstance(raw, Mapping):
            raise HwsimError(f"{source}: expected a mapping of profile fields, got "
                             f"{type(raw).__name__}")
        problems: list[str] = []
        if raw.get("schema") != SCHEMA:
            problems.append(f"schema: expected {SCHEMA!r}, got {raw.get('schema')!r}")
        problems += [f"{k}: missing required field" for k in _REQUIRED
                     if k not in raw and k != "schema"]
        problems += [f"{k}: unknown field (allowed: {', '.join(_FIELDS)})" for k in raw
                     if k not in _FIELDS]
        if "arch" in raw and not (isinstance(raw["arch"], str) and raw["arch"]):
            problems.append(f"arch: expected a part name, got {raw['arch']!r}")
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            problems.append(f"params: expected a mapping of parameters, got {params!r}")
            params = {}
        else:
            problems += _param_problems(params)
        fitted = raw.get("fitted", [])
        if not isinstance(fitted, list) or not all(isinstance(x, str) for x in fitted):
            problems.append(f"fitted: expected a list of parameter names, got {fitted!r}")
            fitted = []
        else:
            flat = flat_params(params) if not problems else {}
            if not problems:
                problems += [f"fitted: {n!r} has no value in params" for n in fitted
                             if n not in flat]
        band = raw.get("band", {})
        if not isinstance(band, Mapping):
            problems.append(f"band: expected a mapping (overall, by_class, by_kind), got "
                            f"{band!r}")
            band = {}
        else:
            for path, b in [("band.overall", band.get("overall"))] + \
                    [(f"band.{g}.{k}", v) for g in ("by_class", "by_kind")
                     for k, v in (band.get(g) or {}).items()]:
                if b is None:
                    continue
                if not isinstance(b, Mapping):
                    problems.append(f"{path}: expected {{p68, p95, n}}, got {b!r}")
                    continue
                for q in ("p68", "p95"):
                    v = b.get(q)
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                        problems.append(f"{path}.{q}: expected a fraction >= 0, got {v!r}")
        for k in ("device", "software", "kept", "stats"):
            if k in raw and raw[k] is not None and not isinstance(raw[k], Mapping):
                problems.append(f"{k}: expected a mapping, got {raw[k]!r}")
        keys = raw.get("holdout_shape_keys") or []
        if not isinstance(keys, list):
            problems.append(f"holdout_shape_keys: expected a list, got {keys!r}")
            keys = []
        if problems:
            raise HwsimError("\n".join(f"{source}: {p}" for p in problems))
        return cls(arch=str(raw["arch"]), params=_nested(flat_params(params)),
                   fitted=tuple(fitted), band=dict(band), created=str(raw.get("created", "")),
                   device=dict(raw.get("device") or {}),
                   software=dict(raw.get("software") or {}),
                   dataset=str(raw.get("dataset") or ""), kept=dict(raw.get("kept") or {}),
                   stats=dict(raw.get("stats") or {}),
                   holdout_shape_keys=tuple(str(k) for k in keys), source=source)

    def apply(self, system: str | System, force: bool = False) -> System:
        """``system`` with the fitted parameters applied.

        Raises
        ------
        HwsimError
            If the profile was fitted for another device (unless ``force``), or a parameter
            does not exist for the device's family.
        """
        s = system if isinstance(system, System) else load_arch(system)
        if self.arch not in (s.device.name, s.name) and not force:
            where = f" {self.source}" if self.source else ""
            raise HwsimError(f"calibration profile{where} was fitted for {self.arch!r}, not "
                             f"{s.device.name!r}; refit it for this part, or force it "
                             "(force=True / --force-calibration)")
        return apply_params(s, self.params)


def band_for(profile: CalibrationProfile, op_kind_or_class: str, level: str = "p68") -> float:
    """Relative error band (``p68`` or ``p95``) for an op class (``matmul/gemm/compute``) or
    kind (``matmul``), falling back to the kind of a class, then to the overall band."""
    band = profile.band or {}
    by_class, by_kind = band.get("by_class") or {}, band.get("by_kind") or {}
    kind = op_kind_or_class.split("/")[0]
    for b in (by_class.get(op_kind_or_class), by_kind.get(op_kind_or_class), by_kind.get(kind),
              band.get("overall")):
        if b and b.get(level) is not None:
            return float(b[level])
    return math.nan




def load_profile(profile: CalibrationProfile | str | Path) -> CalibrationProfile:
    """A profile object, or the profile read from a YAML path."""
    return profile if isinstance(profile, CalibrationProfile) else CalibrationProfile.load(profile)
