"""The immutable Result of a simulation: totals, per-op records, exports.

SI units throughout (s, J, W, B, FLOP, $). ``to_dict()`` is the machine-readable contract
printed by ``hwsim run --json``; ``to_dataframe()`` needs pandas (imported lazily);
``to_chrome_trace()`` returns the Trace Event Format dict that Perfetto and chrome://tracing
open. ``meta["timing"]`` (and the ``timing`` key of ``to_dict()``) says which timing the
latency is (:mod:`simulator.timing`); under ``eager`` the records carry their host issue times
and the trace a host track per device.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.cost.dollars import CostBreakdown
from simulator.frozen import FrozenMap

if TYPE_CHECKING:
    from simulator.engine.runner import Timeline

__all__ = ["OpRecord", "EnergyBreakdown", "DeviceEnergy", "RecordTable", "Result",
           "finite_json"]


@dataclass(frozen=True)
class OpRecord:
    """One executed op instance."""

    name: str
    kind: str
    device: int
    stream: str
    start_s: float
    end_s: float
    latency_s: float
    energy_j: float
    bound: str
    flops: float
    dram_bytes: float
    compute_s: float
    memory_s: float
    utilization: float
    compute_class: str
    describe: str
    details: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    notes: tuple[str, ...] = ()
    #: ``--timing eager``: when the device's host finished issuing this op (None otherwise)
    host_end_s: float | None = None

    @property
    def host_s(self) -> float:
        """Host time spent issuing this op (``--timing eager``; 0 otherwise)."""
        return float(self.details.get("host_s", 0.0)) if self.host_end_s is not None else 0.0

    @property
    def clock_scale(self) -> float:
        """The op's clock relative to the part's boost clock (below 1 where the power cap
        lowered it)."""
        return float(self.details.get("clock_scale", 1.0))


class RecordTable(Sequence[OpRecord]):
    """The per-op records of a run, stored column-wise (a Timeline) and materialised as
    :class:`OpRecord` objects only when indexed or iterated: a million-op run stays small."""

    def __init__(self, timeline: Timeline):
        self._tl = timeline

    def __len__(self) -> int:
        return len(self._tl)

    def _row(self, i: int) -> OpRecord:
        tl = self._tl
        n = int(tl.node[i])
        c, op = tl.costs[n], tl.ops[n]
        return OpRecord(
            name=tl.names[n], kind=op.kind, device=int(tl.device[i]),
            stream=("compute", "copy", "comm")[int(tl.stream[i])], start_s=float(tl.start[i]),
            end_s=float(tl.end[i]), latency_s=c.latency_s, energy_j=c.energy_j, bound=c.bound,
            flops=c.flops.total, dram_bytes=c.dram_bytes, compute_s=c.compute_s,
            memory_s=c.memory_s, utilization=c.utilization, compute_class=c.compute_class,
            describe=op.describe(), details=c.details, notes=c.notes,
            host_end_s=float(tl.host_end[i]) if tl.host_end is not None else None)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._row(i)

    def __iter__(self) -> Iterator[OpRecord]:
        for i in range(len(self)):
            yield self._row(i)

    def sum_over(self, field: str, *, device: int | None = None, kind: str | None = None,
                 name: str | None = None) -> float:
        """Sum of a cost field (``latency_s``, ``energy_j``) over the rows on ``device`` (all
        if None) whose op is of ``kind`` or whose name is ``name`` (vectorised)."""
        import numpy as np

        tl = self._tl
        if device is not None:
            device = tl.rep_of.get(device, device)
        sel = np.ones(len(self), dtype=bool) if device is None else tl.device == device
        if kind is not None or name is not None:
            ok = np.array([(kind is None or tl.ops[n].kind == kind) and
                           (name is None or tl.names[n] == name) for n in range(len(tl.names))])
            sel &= ok[tl.node]
        per_node = np.array([getattr(c, field) for c in tl.costs])
        if device is None:  # a folded run's rows stand for several devices each
            return float((per_node[tl.node[sel]] * tl.row_weights()[sel]).sum())
        return float(per_node[tl.node[sel]].sum())

    def busy_s(self, device: int, stream: str | None = None) -> float:
        """Time ``device`` had work on ``stream`` (any stream if None)."""
        return self._tl.busy_s(device, stream)

    def total_flops(self) -> float:
        """FLOPs of every op on every device (vectorised)."""
        import numpy as np

        per_node = np.array([c.flops.total for c in self._tl.costs])
        if not len(self):
            return 0.0
        return float((per_node[self._tl.node] * self._tl.row_weights()).sum())


@dataclass(frozen=True)
class DeviceEnergy:
    """One device's share of a run: its busy time and the energy it used (J, W).

    ``static_j`` is ``idle_j`` (idle power over the whole run) plus ``floor_j`` (the busy
    floor over its busy time); ``peak_power_w`` the highest power of its power timeline;
    ``clock_scale`` its time-weighted clock over its compute-stream ops, relative to boost.
    """

    device: int
    busy_s: float
    compute_j: float
    memory_j: Mapping[str, float]
    static_j: float
    energy_j: float
    avg_power_w: float
    idle_j: float = 0.0
    floor_j: float = 0.0
    peak_power_w: float = 0.0
    clock_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "busy_s": self.busy_s, "energy_j": self.energy_j,
                "compute_j": self.compute_j, "memory_j": dict(self.memory_j),
                "static_j": self.static_j, "avg_power_w": self.avg_power_w,
                "idle_j": self.idle_j, "active_floor_j": self.floor_j,
                "peak_power_w": self.peak_power_w, "clock_scale": self.clock_scale}


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of the run for the whole system (every device, plus the system overhead in
    ``static_j``, of which ``system_j`` is the host/switch/fan part): J."""

    compute_j: float
    memory_j: Mapping[str, float]
    static_j: float
    system_j: float = 0.0
    idle_j: float = 0.0     # devices' idle power over the run (part of static_j)
    floor_j: float = 0.0    # devices' busy floor over their busy time (part of static_j)
    links: tuple[str, ...] = ()  # the memory_j keys that are links (communication)

    @property
    def dynamic_j(self) -> float:
        return self.compute_j + sum(self.memory_j.values())

    @property
    def devices_j(self) -> float:
        """Energy of the accelerators alone (the system overhead left out)."""
        return self.total_j - self.system_j

    def parts(self) -> dict[str, float]:
        """The split ``--breakdown`` prints, J: idle, active floor, compute, each memory level
        (``onchip``: the on-chip path of DRAM bytes), communication (links), system overhead.
        Sums to ``total_j``."""
        other = self.static_j - self.idle_j - self.floor_j - self.system_j
        out = {"idle_j": self.idle_j + max(0.0, other), "active_floor_j": self.floor_j,
               "compute_j": self.compute_j}
        for k, v in self.memory_j.items():
            if k not in self.links:
                out[f"memory.{k}_j"] = v
        out["communication_j"] = sum(self.memory_j.get(k, 0.0) for k in self.links)
        out["system_j"] = self.system_j
        return out

    @property
    def total_j(self) -> float:
        return self.dynamic_j + self.static_j

    def to_dict(self) -> dict[str, Any]:
        return {"compute_j": self.compute_j, "memory_j": dict(self.memory_j),
                "static_j": self.static_j, "system_j": self.system_j, "total_j": self.total_j,
                "idle_j": self.idle_j, "active_floor_j": self.floor_j}


@dataclass(frozen=True)
class Result:
    """Outcome of ``simulate``: immutable; build new ones, never mutate."""

    workload: str
    arch: str
    phase: str
    batch: int
    devices: int
    latency_s: float
    energy: EnergyBreakdown
    cost: CostBreakdown
    samples: float
    tokens: float
    memory_bytes: float
    memory_capacity_bytes: float
    peak_flops: float
    records: Sequence[OpRecord]
    warnings: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=lambda: FrozenMap({}))
    per_device: tuple[DeviceEnergy, ...] = ()

    # -- totals -----------------------------------------------------------------------------
    @property
    def energy_j(self) -> float:
        return self.energy.total_j

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def throughput(self) -> tuple[float, str]:
        """Tokens/s for language-model phases, samples/s otherwise."""
        if self.phase in ("prefill", "decode") or (self.tokens and self.tokens != self.samples):
            return self.tokens / self.latency_s, "tokens/s"
        return self.samples / self.latency_s, "samples/s"

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.latency_s if self.tokens else None

    @property
    def flops(self) -> float:
        """FLOPs executed on all devices."""
        if isinstance(self.records, RecordTable):
            return self.records.total_flops()
        return sum(r.flops for r in self.records)

    @property
    def peak_fraction(self) -> float:
        """Achieved FLOP/s over the whole system's peak matrix rate (0 when unknown)."""
        if self.latency_s <= 0 or self.peak_flops <= 0:
            return 0.0
        return self.flops / self.latency_s / self.peak_flops

    @property
    def energy_per_sample_j(self) -> float:
        return self.energy_j / self.samples if self.samples else float("nan")

    @property
    def energy_per_token_j(self) -> float | None:
        """Whole-system energy per token (None for a workload without tokens)."""
        return self.energy_j / self.tokens if self.tokens else None

    @property
    def devices_energy_j(self) -> float:
        """Energy of the accelerators alone: what NVML/RAPL counters on them would read."""
        return self.energy.devices_j

    @property
    def device_power_w(self) -> float:
        """Average power per accelerator (mean over them): comparable with nvidia-smi."""
        if self.per_device:
            return sum(d.avg_power_w for d in self.per_device) / len(self.per_device)
        return self.devices_energy_j / self.latency_s / max(self.devices, 1) \
            if self.latency_s > 0 else 0.0

    @property
    def peak_power_w(self) -> float:
        """Highest power any one accelerator draws during the run (its power timeline)."""
        return max((d.peak_power_w for d in self.per_device), default=self.device_power_w)

    @property
    def usd_per_million_tokens(self) -> float | None:
        return self.cost.usd / self.tokens * 1e6 if self.tokens else None

    @property
    def usd_per_sample(self) -> float:
        return self.cost.usd / self.samples if self.samples else float("nan")

    @property
    def timing(self) -> str:
        """Which timing the latency is: ``kernel``, ``graph``, ``stream`` or ``eager``
        (:mod:`simulator.timing`; ``stream`` for a Result made without it)."""
        t = self.meta.get("timing")
        return str(t["mode"]) if isinstance(t, Mapping) and "mode" in t else "stream"

    @property
    def host_bound(self) -> bool:
        """Whether the host's dispatch was the slower stage (``--timing eager`` only)."""
        t = self.meta.get("timing")
        return bool(t.get("host_bound")) if isinstance(t, Mapping) else False

    # -- summaries --------------------------------------------------------------------------
    def by_kind(self) -> list[dict[str, Any]]:
        """Per op kind: time, share of time, energy, and the bound that dominates its time."""
        agg: dict[str, dict[str, Any]] = {}
        for r in self.records:
            a = agg.setdefault(r.kind, {"kind": r.kind, "count": 0, "latency_s": 0.0,
                                        "energy_j": 0.0, "flops": 0.0, "bounds": {}})
            a["count"] += 1
            a["latency_s"] += r.latency_s
            a["energy_j"] += r.energy_j
            a["flops"] += r.flops
            a["bounds"][r.bound] = a["bounds"].get(r.bound, 0.0) + r.latency_s
        busy = sum(a["latency_s"] for a in agg.values()) or 1.0
        out = []
        for a in sorted(agg.values(), key=lambda a: -a["latency_s"]):
            bound = max(a["bounds"].items(), key=lambda kv: kv[1])[0]
            out.append({"kind": a["kind"], "count": a["count"], "latency_s": a["latency_s"],
                        "share": a["latency_s"] / busy, "energy_j": a["energy_j"],
                        "flops": a["flops"], "bound": bound})
        return out

    def top_op_groups(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` op shapes taking the most total time (80 identical layers are one row).

        Each row: ``op`` (shape), ``kind``, ``count``, ``latency_s`` (total), ``each_s``,
        ``share`` of busy time, ``bound`` and ``example`` (one instance's name).
        """
        groups: dict[str, dict[str, Any]] = {}
        for r in self.records:
            g = groups.setdefault(r.describe, {"op": r.describe, "kind": r.kind, "count": 0,
                                               "latency_s": 0.0, "each_s": r.latency_s,
                                               "bound": r.bound, "example": r.name,
                                               "utilization": r.utilization})
            g["count"] += 1
            g["latency_s"] += r.latency_s
        busy = sum(r.latency_s for r in self.records) or 1.0
        rows = sorted(groups.values(), key=lambda g: -g["latency_s"])[:n]
        for g in rows:
            g["share"] = g["latency_s"] / busy
        return rows

    # -- exports ----------------------------------------------------------------------------
    def to_dict(self, ops: bool = True) -> dict[str, Any]:
        tp, unit = self.throughput
        d: dict[str, Any] = {
            "workload": self.workload, "arch": self.arch, "phase": self.phase,
            "batch": self.batch, "devices": self.devices,
            "latency_s": self.latency_s, "energy_j": self.energy_j,
            "energy": self.energy.to_dict(), "avg_power_w": self.avg_power_w,
            "cost_usd": self.cost.usd, "cost_mode": self.cost.mode,
            "usd_per_hour": self.cost.usd_per_hour,
            "throughput": tp, "throughput_unit": unit,
            "tokens_per_s": self.tokens_per_s,
            "usd_per_million_tokens": self.usd_per_million_tokens,
            "energy_per_sample_j": self.energy_per_sample_j,
            "memory_bytes": self.memory_bytes,
            "memory_capacity_bytes": self.memory_capacity_bytes,
            "flops": self.flops, "warnings": list(self.warnings),
            "calibration": self.meta.get("calibration"),
            "latency_band_rel": self.meta.get("latency_band_rel"),
            "by_kind": self.by_kind(),
            "peak_fraction": self.peak_fraction,
            "layout": {k: self.meta.get(k) for k in ("tp", "pp", "dp", "ep", "microbatches")},
            "footprint": dict(self.meta.get("footprint") or {}),
            "per_device": [d.to_dict() for d in self.per_device],
            "device_power_w": self.device_power_w, "devices_energy_j": self.devices_energy_j,
            "system_power_w": self.avg_power_w, "energy_per_token_j": self.energy_per_token_j,
            "peak_power_w": self.peak_power_w, "energy_breakdown": self.energy.parts(),
            "timing": self.timing,
        }
        pw = self.meta.get("power")
        if pw:
            d["power_limit_w"] = pw["power_limit_w"]
            d["clock_hz"] = pw["clock_hz"]
            d["effective_clock_hz"] = pw["effective_clock_hz"]
            d["power_model"] = dict(pw)
        sil = self.meta.get("silicon")
        if sil:  # systolic parts: the ASIC model's area, peak power and unit cost, per chip
            d["area_mm2"] = sil["area_mm2"]
            d["chip_power_w"] = sil["power_w"]
            d["silicon_cost_usd"] = sil["unit_cost_usd"]
            d["silicon"] = dict(sil)
        elif self.meta.get("silicon_note"):
            d["silicon_note"] = self.meta["silicon_note"]
        if ops:
            d["ops"] = [{"name": r.name, "kind": r.kind, "latency_s": r.latency_s,
                         "energy_j": r.energy_j, "bound": r.bound, "start_s": r.start_s,
                         "flops": r.flops, "bytes": r.dram_bytes, "device": r.device,
                         "stream": r.stream, "utilization": r.utilization,
                         "clock_scale": r.clock_scale,
                         **({"host_s": r.host_s, "host_end_s": r.host_end_s}
                            if r.host_end_s is not None else {})}
                        for r in self.records]
        return d

    def to_json(self, **kw: Any) -> str:
        """The JSON contract; NaN and infinities become null (never invalid JSON tokens)."""
        return json.dumps(finite_json(self.to_dict(**kw)), default=_json_default, allow_nan=False)

    def to_dataframe(self):
        """Per-op records as a pandas DataFrame (one row per op instance)."""
        import pandas as pd

        rows = [{"name": r.name, "kind": r.kind, "device": r.device, "stream": r.stream,
                 "start_s": r.start_s, "end_s": r.end_s, "latency_s": r.latency_s,
                 "energy_j": r.energy_j, "bound": r.bound, "flops": r.flops,
                 "dram_bytes": r.dram_bytes, "compute_s": r.compute_s, "memory_s": r.memory_s,
                 "utilization": r.utilization, "compute_class": r.compute_class,
                 "op": r.describe} for r in self.records]
        return pd.DataFrame(rows)

    def to_chrome_trace(self) -> dict[str, Any]:
        """Trace Event Format: one complete event ("X") per op, one track per device stream."""
        streams = sorted({(r.device, r.stream) for r in self.records})
        tid = {s: i for i, s in enumerate(streams)}
        events: list[dict[str, Any]] = []
        for (dev, st), t in tid.items():
            events.append({"name": "thread_name", "ph": "M", "pid": dev, "tid": t,
                           "args": {"name": st}})
        for dev in sorted({d for d, _ in streams}):
            events.append({"name": "process_name", "ph": "M", "pid": dev, "tid": 0,
                           "args": {"name": f"{self.arch} device {dev}"}})
        for r in self.records:
            events.append({
                "name": r.name, "cat": r.kind, "ph": "X", "pid": r.device,
                "tid": tid[(r.device, r.stream)], "ts": r.start_s * 1e6,
                "dur": max(r.latency_s * 1e6, 1e-3),
                "args": {"bound": r.bound, "flops": r.flops, "dram_bytes": r.dram_bytes,
                         "energy_j": r.energy_j, "utilization": round(r.utilization, 4),
                         "op": r.describe},
            })
        events.extend(_link_tracks(self.records, max((d for d, _ in streams), default=0) + 1))
        events.extend(self._power_tracks(sorted({d for d, _ in streams})))
        events.extend(_host_tracks(self.records, len(tid)))
        tm = self.meta.get("timing")
        return {"traceEvents": events, "displayTimeUnit": "ns",
                "otherData": {"workload": self.workload, "arch": self.arch,
                              "phase": self.phase, "latency_s": self.latency_s,
                              "timing": self.timing,
                              **({"host_bound": bool(tm.get("host_bound"))}
                                 if isinstance(tm, Mapping) else {})}}


    def _power_tracks(self, devices: list[int]) -> list[dict[str, Any]]:
        """One power counter track ("ph": "C") per device, from its own busy/idle timeline
        (:meth:`simulator.engine.timeline.Timeline.power_series`)."""
        pw = self.meta.get("power")
        if not pw or not isinstance(self.records, RecordTable):
            return []
        tl = self.records._tl
        above = max(0.0, pw["active_floor_w"] - pw["idle_w"])
        out: list[dict[str, Any]] = []
        for dev in devices:
            t, w = tl.power_series(dev, pw["idle_w"], above)
            out.extend({"name": "power", "ph": "C", "pid": dev, "tid": 0, "ts": float(a) * 1e6,
                        "args": {"W": round(float(b), 3)}} for a, b in zip(t, w, strict=True))
        return out


def _link_tracks(records: Sequence[OpRecord], pid: int) -> list[dict[str, Any]]:
    """One track per physical link (NVLink port, NIC) that a collective occupied, as the
    process ``links``: a slice per collective on every link it crossed (from its cost's
    ``details["links"]``)."""
    tid: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    seen: set[tuple[str, str, float]] = set()
    for r in records:
        links = r.details.get("links") if r.stream == "comm" else None
        if not links:
            continue
        for link in links:
            key = (link, r.name, r.start_s)
            if key in seen:
                continue
            seen.add(key)
            if link not in tid:
                tid[link] = len(tid)
                events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid[link],
                               "args": {"name": link}})
            events.append({"name": r.name, "cat": "link", "ph": "X", "pid": pid,
                           "tid": tid[link], "ts": r.start_s * 1e6,
                           "dur": max((r.end_s - r.start_s) * 1e6, 1e-3),
                           "args": {"op": r.describe}})
    if tid:
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": "links"}})
    return events


def _host_tracks(records: Sequence[OpRecord], tid: int) -> list[dict[str, Any]]:
    """``--timing eager``: one ``host`` thread per device, a slice per op its host issued
    (``[host_end_s - host_s, host_end_s]``; a collective's slice on each device of its
    group). The device's tracks then show the gaps where it waited for the host."""
    events: list[dict[str, Any]] = []
    named: set[int] = set()
    for r in records:
        if r.host_end_s is None:
            continue
        if r.device not in named:
            named.add(r.device)
            events.append({"name": "thread_name", "ph": "M", "pid": r.device, "tid": tid,
                           "args": {"name": "host (eager dispatch)"}})
        hs = r.host_s
        events.append({"name": r.name, "cat": "host", "ph": "X", "pid": r.device, "tid": tid,
                       "ts": (r.host_end_s - hs) * 1e6, "dur": max(hs * 1e6, 1e-3),
                       "args": {"op": r.describe, "host_s": hs,
                                "device_wait_s": max(0.0, r.start_s - r.host_end_s)}})
    return events


def finite_json(o: Any) -> Any:
    """``o`` with NaN and infinities (e.g. the cost of an unpriced part) as None, so JSON
    output holds null, never an invalid token; mappings become dicts, tuples lists."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_json(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)
