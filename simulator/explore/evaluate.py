"""One design point: the base spec with the point's overrides, each workload simulated, the
metrics combined by the workloads' weights, the constraints checked.

A point that cannot be evaluated (a value the spec refuses, a model that does not fit the
memory, an op the part cannot run) is a result too: ``status`` says which, ``error`` why, and
its metrics are empty (NaN in the table), never zero.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from simulator.errors import CapacityError, HwsimError
from simulator.explore.study import METRICS, Study

__all__ = ["evaluate_point", "STATUSES"]

#: ok: every workload ran and every constraint holds; infeasible: it ran but a constraint
#: fails; does_not_fit: a workload's memory exceeds the devices'; error: anything else
STATUSES = ("ok", "infeasible", "does_not_fit", "error")


def _metrics(r: Any, system: Any) -> dict[str, float]:
    from simulator.cost.dollars import purchase_price, tco_usd

    d = r.to_dict()
    out = {k: float(d[k]) for k in METRICS if isinstance(d.get(k), (int, float))
           and d.get(k) is not None}
    lat, energy = out.get("latency_s"), out.get("energy_j")
    if lat is not None and energy is not None:
        out["edp"] = energy * lat
    thr, power = out.get("throughput"), out.get("avg_power_w")
    if thr is not None and power:
        out["perf_per_w"] = thr / power
    rate = out.get("usd_per_hour")
    if thr is not None and rate:
        out["perf_per_usd"] = thr * 3600.0 / rate
    price = purchase_price(system)
    if price:
        out["unit_cost_usd"] = float(price)
        if power is not None:
            out["tco_usd"] = float(tco_usd(system, power))
    cap, used = d.get("memory_capacity_bytes"), d.get("memory_bytes")
    if isinstance(cap, (int, float)) and isinstance(used, (int, float)):
        out["memory_headroom_bytes"] = float(cap) - float(used)
    return {k: v for k, v in out.items() if math.isfinite(v)}


#: Predictors of the systems evaluated last in this process: op costs depend only on the
#: system, so points that differ in run options (batch, dtype, ...) or workload reuse them.
_PREDICTORS: OrderedDict[Any, Any] = OrderedDict()
_KEEP = 8


def _predictor(system: Any, timing: str | None = None) -> Any:
    from simulator.predict import Predictor

    key = (system, timing)
    p = _PREDICTORS.get(key)
    if p is None:
        p = _PREDICTORS[key] = Predictor(system, timing=timing)
        while len(_PREDICTORS) > _KEEP:
            _PREDICTORS.popitem(last=False)
    else:
        _PREDICTORS.move_to_end(key)
    return p


def evaluate_point(study: Study, point: dict[str, Any]) -> dict[str, Any]:
    """The row of one design point: its metrics (weighted over the workloads), ``status``,
    ``error`` and ``wall_s``; objectives absent from a workload's result are an error."""
    from simulator.arch.loader import load_arch
    from simulator.plan import make_plan

    t0 = time.perf_counter()
    row: dict[str, Any] = {"status": "ok", "error": ""}
    try:
        system = load_arch(study.arch_of(point), study.spec_overrides(point))
        opts = study.run_options(point)
        total = sum(w.weight for w in study.workloads)
        acc: dict[str, float] = {}
        for w in study.workloads:
            kw = {**w.options, **opts}
            predictor = _predictor(system, kw.pop("timing", None))  # which time (a predictor's)
            plan = make_plan(w.workload, predictor.system, **kw)
            r = predictor.run(plan)
            m = _metrics(r, predictor.system)
            for k in METRICS:
                if k in m and (k in acc or w is study.workloads[0]):
                    acc[k] = acc.get(k, 0.0) + m[k] * w.weight / total
                else:
                    acc.pop(k, None)  # not defined for every workload: not defined
        missing = [m for m, _ in study.objectives if m not in acc]
        missing += [c.metric for c in study.constraints if c.metric not in acc]
        if missing:
            why = "e.g. no price in the spec for cost metrics"
            silicon = {"area_mm2", "chip_power_w", "silicon_cost_usd"}
            if silicon & set(missing):
                note = r.meta.get("silicon_note")
                why = note or (f"the area, power and die-cost model covers systolic-array "
                               f"parts; {predictor.system.device.name} is family "
                               f"{predictor.system.device.family!r}")
            raise HwsimError(f"no {', '.join(sorted(set(missing)))} for this point ({why})")
        row.update(acc)
        failed = [c.text for c in study.constraints if not c.holds(acc[c.metric])]
        if failed:
            row["status"] = "infeasible"
            row["error"] = "constraint fails: " + "; ".join(failed)
    except CapacityError as e:
        row.update(status="does_not_fit", error=str(e).splitlines()[0])
    except (HwsimError, ValueError) as e:  # ValueError: a shape out of range, as in the CLI
        row.update(status="error", error=str(e).splitlines()[0] or type(e).__name__)
    row["wall_s"] = time.perf_counter() - t0
    return row
