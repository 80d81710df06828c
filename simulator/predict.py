"""Predictor: map a graph's ops onto a system (memoised) and run the discrete-event engine.

Build one :class:`Predictor` per (system, calibration) and call :meth:`Predictor.predict` as
often as needed: op costs are cached by op signature (ops are frozen dataclasses), so a sweep
or a capacity search that revisits the same shapes maps each one once.

Energy is summed per device from its own timeline (:mod:`simulator.power`): each device pays
the dynamic energy of the ops it ran (per FLOP, per byte at every level, the on-chip path of
its DRAM bytes, its links), its idle power over the whole run, and its busy floor (clocks up,
pipelines issuing) while it has work; the system's own overhead (host CPUs, NICs, switches,
fans, from the system spec) scales between its idle and full-load figures with the devices'
mean power. Nothing is multiplied by a device count. Power limit: a run stands for one
iteration of a long loop, and the GPU's limiter regulates the power averaged over a window far
longer than a kernel, so a run holds ONE clock (:mod:`simulator.power.run_clock`): the engine
runs the ops at the mappers' times with their full-clock energies, the clock at which every
device's average fits under the limit is solved, and the energies (under a limit other than the
TDP, where the mappers' rates apply, also the compute times: the engine runs again) follow it.
One op on its own (:meth:`Predictor.cost`, ``hwsim op``: a benchmark loop of one kernel) keeps
the per-op cap of :func:`simulator.power.apply_power_cap`.

The predictor predicts one timing (:mod:`simulator.timing`: ``kernel``, ``graph``, ``stream``
(the default) or ``eager``): each op cost is counted that way before the power cap, and under
``eager`` the engine runs a host pipeline that issues every op; ``Result.meta["timing"]`` says
which timing applies, its overheads, and whether the host bound the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.arch.calibration import CalibrationProfile, band_for, load_profile
from simulator.arch.spec import Device, Link, System
from simulator.cost.dollars import CostOptions, run_cost
from simulator.engine.blocks import BlockOp, block_costs, collapse_repeats
from simulator.engine.runner import Timeline, run_graph
from simulator.errors import MappingError, SpecError
from simulator.frozen import FrozenMap
from simulator.mapping.base import EnergyParts, MapOptions, OpCost, make_cost
from simulator.mapping.common import collective_cost
from simulator.mapping.registry import Mapper
from simulator.mapping.residency import onchip_residency, op_homes
from simulator.plan import Layout, Plan, check_capacity
from simulator.power import apply_power_cap, power_model
from simulator.power.run_clock import (
    RunClock,
    at_clock,
    device_parts,
    solve_run_clock,
    stretchable,
)
from simulator.results.result import DeviceEnergy, EnergyBreakdown, RecordTable, Result
from simulator.timing import apply_timing, check_timing, host_pipeline, timing_meta
from workloads.dtypes import get_dtype
from workloads.graph import WorkloadGraph
from workloads.memory import footprint_by_device
from workloads.ops import Collective, Memcpy, Op

__all__ = ["Predictor", "host_copy_cost", "dtype_warnings"]


def dtype_warnings(device: Device, dtypes: Iterable[str | None]) -> list[str]:
    """One warning per precision the device's matrix units do not run natively (fp8 on an
    A100 runs at the fp16 rate): never a silent fallback."""
    out, seen = [], set()
    for d in dtypes:
        if d is None or d in seen:
            continue
        seen.add(d)
        cls = get_dtype(d).compute_class
        rate, runs_as = device.peak(cls, "matrix")
        if rate > 0 and runs_as != cls:
            out.append(f"{d} is not native on {device.name}'s matrix units: it runs at the "
                       f"{runs_as} rate ({rate / 1e12:.4g} TFLOP/s), with no speed-up over "
                       f"{runs_as}")
    return out


def host_copy_cost(op: Memcpy, system: System) -> OpCost:
    """A copy between host memory and a device crosses the system's ``host_link`` (PCIe,
    NVLink-C2C): alpha + bytes / bandwidth, and the link's energy per byte.

    Raises
    ------
    MappingError
        If the spec has no ``host_link``.
    """
    link = system.host_link
    if link is None:
        raise MappingError(f"{system.name}: a {op.src} -> {op.dst} copy crosses the host link, "
                           "but the spec has no host_link (add host_link: {name, bandwidth, "
                           "latency} to the system spec)")
    t = link.latency_s + op.bytes / link.bandwidth_Bps
    dev = system.device
    c = make_cost(dev, op, compute_s=0.0, memory_s=op.bytes / link.bandwidth_Bps,
                  overhead_s=link.latency_s, bytes_by_level={}, compute_class="",
                  peak_flops=0.0, latency_s=t,
                  details={"link": link.name},
                  notes=(f"{op.bytes:.3g} B over {link.name} ({link.bandwidth_Bps / 1e9:.0f} GB/s "
                         f"per direction, {link.latency_s * 1e6:.1f} us)",))
    return replace(c, bound="communication",
                   bytes_by_level=FrozenMap({link.name: float(op.bytes)}),
                   energy=EnergyParts(0.0, FrozenMap({link.name: op.bytes *
                                                      link.energy_per_byte_j})))


@dataclass(frozen=True)
class _Native:
    """Whether a dtype runs natively on the device's matrix units, and as what otherwise."""

    dtype: str
    runs_as: str


def _distinct_costs(tl: Timeline) -> tuple[list[OpCost], np.ndarray]:
    """The timeline's distinct cost objects (identical ops share one) and, per row, the index
    of its cost among them: per-op arrays are built once per distinct cost, not per row."""
    uniq: dict[int, int] = {}
    distinct: list[OpCost] = []
    which = np.empty(len(tl.costs), dtype=np.int64)
    for i, c in enumerate(tl.costs):
        j = uniq.get(id(c))
        if j is None:
            j = uniq[id(c)] = len(distinct)
            distinct.append(c)
        which[i] = j
    return distinct, which


class Predictor:
    """Memoised op costs for one system (optionally calibrated); ``predict`` runs graphs.

    Examples
    --------
    >>> from simulator.arch.loader import load_arch
    >>> from simulator.plan import make_plan
    >>> p = Predictor(load_arch("h100-sxm"))
    >>> plan = make_plan("gpt2", p.system, batch=4, seq=128)
    >>> r = p.predict(plan.build(), plan)
    >>> r.latency_s > 0, p.cache_info()["hits"] > 0
    (True, True)
    """

    def __init__(self, system: System, calibration: CalibrationProfile | str | None = None, *,
                 force_calibration: bool = False, dataflow: str | None = None,
                 schedule: str | None = None, power_limit_w: float | None = None,
                 timing: str | None = None):
        if power_limit_w is not None and not (math.isfinite(power_limit_w) and
                                              system.device.power.static_w < power_limit_w):
            raise SpecError(system.name, [f"--power-limit: expected a power above the idle "
                                          f"power ({system.device.power.static_w:g} W), got "
                                          f"{power_limit_w!r}"])
        self.profile = load_profile(calibration) if calibration is not None else None
        self.spec_system = system  # as loaded; plans may be made on it
        if self.profile is not None:
            system = self.profile.apply(system, force=force_calibration)
        self.system = system
        #: which time the predictions are (simulator.timing); checked against the family
        self.timing = check_timing(timing, system.device)
        self.power = power_model(system.device, power_limit_w)
        self.options = MapOptions(dataflow=dataflow, schedule=schedule)
        self._mappers = {dataflow: Mapper(system.device, self.options)}
        self._cache: dict[Op | tuple[Op, str], OpCost] = {}
        self._full: dict[tuple, OpCost] = {}  # full_cost: before the per-op power cap
        self._block_sigs: dict[tuple, tuple[OpCost, OpCost]] = {}
        self._hits = 0
        self._runs: dict[tuple[Plan, CostOptions], Result] = {}
        self._links: dict[tuple[tuple[int, ...], bool], tuple[int | str, ...]] = {}
        self._run_hits = 0

    # -- op costs ---------------------------------------------------------------------------
    def link_for(self, group: tuple[int, ...] | None) -> tuple[Link | None, str]:
        """The main link a collective over ``group`` crosses, and its topology: the system's
        scale-out ``network`` (a :class:`~simulator.arch.spec.Fabric`) when the devices sit
        on more than one node, else its in-node ``link``. :meth:`cost` prices the group by
        its whole placement (:func:`simulator.network.route_for`).

        Raises
        ------
        MappingError
            If the group spans nodes and the spec has no ``network``.
        """
        from simulator.network import route_for

        s = self.system
        if group and route_for(s, tuple(group)).nodes > 1:
            return s.network, "switch"
        return s.link, s.topology

    def _mapper(self, dataflow: str | None,
                 offchip: tuple[float, float, float] | None = None) -> Mapper:
        key = dataflow if offchip is None else (dataflow, offchip)
        m = self._mappers.get(key)
        if m is None:
            m = self._mappers[key] = Mapper(
                self.system.device, replace(self.options, dataflow=dataflow, offchip=offchip))
        return m

    def cost(self, op: Op, group: tuple[int, ...] | None = None, *,
             dataflow: str | None = None,
             offchip: tuple[float, float, float] | None = None) -> OpCost:
        """The cost of one op run on its own on one device of the system (memoised), under the
        per-op power cap (:func:`simulator.power.apply_power_cap`); for a collective,
        over the devices of ``group`` (default: the first ``op.devices`` devices), priced by
        where they sit (:func:`simulator.network.route_for`: in one node, one per node on
        their rails, or several per node over several nodes) with the physical links it
        occupies in ``details["links"]`` (:func:`simulator.network.links_used`);
        ``dataflow`` overrides the predictor's for systolic and FPGA parts."""
        df = dataflow if dataflow is not None else self.options.dataflow
        if isinstance(op, Collective):
            return self._collective_cost(op, group)
        key = (op, df) if df is not None else op
        if offchip is not None:  # a graph-level residency decision (mapping/residency.py)
            key = (op, df, offchip)
        c = self._cache.get(key)
        if c is not None:
            self._hits += 1
            return c
        full = self.full_cost(op, dataflow=df, offchip=offchip)
        c = full if full.bound == "communication" else apply_power_cap(full, self.power)
        self._cache[key] = c
        return c

    def full_cost(self, op: Op, group: tuple[int, ...] | None = None, *,
                  dataflow: str | None = None,
                  offchip: tuple[float, float, float] | None = None) -> OpCost:
        """:meth:`cost` before the per-op power cap (memoised): the mapper's time (the time at
        the TDP, where its measured rates apply) and the energy at the full clock. A run
        (:meth:`predict`) starts from these and applies the limit to the run's average
        (:mod:`simulator.power.run_clock`); :meth:`cost` caps the op on its own."""
        df = dataflow if dataflow is not None else self.options.dataflow
        if isinstance(op, Collective):
            return self._collective_cost(op, group)
        key = ("full", op, df, offchip)
        c = self._full.get(key)
        if c is not None:
            self._hits += 1
            return c
        dev = self.system.device
        if isinstance(op, Memcpy) and "host" in (op.src, op.dst) and op.src != op.dst:
            c = apply_timing(op, host_copy_cost(op, self.system), dev, self.timing)
        else:
            m = self._mapper(df, offchip)
            c = apply_timing(op, m.cost(op), dev, self.timing, cost_of=m.cost)
        self._full[key] = c
        return c

    def _collective_cost(self, op: Collective, group: tuple[int, ...] | None) -> OpCost:
        """:meth:`cost` of a collective: one cost per (op, route), its links per group."""
        from simulator.network import links_used, route_for

        s = self.system
        grp = tuple(group) if group else \
            tuple(range(op.devices)) if 1 < op.devices <= s.count else None
        key = ("collective", op, grp)
        c = self._cache.get(key)
        if c is not None:
            self._hits += 1
            return c
        if grp is None:  # a hypothetical group beyond the system: over its in-node link
            link, topology = self.link_for(None)
            c = collective_cost(op, s.device, self.options, link=link, topology=topology)
        else:
            route = route_for(s, grp)
            core_key = ("route", op, route)
            core = self._cache.get(core_key)
            if core is None:
                core = self._cache[core_key] = collective_cost(op, s.device, self.options,
                                                               route=route)
            c = replace(core, details=FrozenMap({**core.details,
                                                 "links": links_used(s, grp)}))
        c = apply_timing(op, c, s.device, self.timing)
        self._cache[key] = c
        return c

    def cache_info(self) -> dict[str, int]:
        """Op-cost cache entries and hits, and whole-plan results reused by :meth:`run`."""
        return {"entries": len(self._cache) + len(self._full), "hits": self._hits,
                "runs": len(self._runs),
                "run_hits": self._run_hits}

    def run(self, plan: Plan, *, cost: CostOptions | None = None,
            max_runs: int = 4096) -> Result:
        """Build ``plan`` and predict it; a plan seen before (same system, layout, shapes and
        cost options) returns its earlier Result, which is immutable. A serving simulation or
        a capacity search revisits the same batch compositions many times."""
        key = (plan, cost or CostOptions())
        r = self._runs.get(key)
        if r is not None:
            self._run_hits += 1
            return r
        if plan.system != self.system and plan.system != self.spec_system:
            raise MappingError(f"this plan is for {plan.system.name} as specified differently "
                               f"(another spec or other --set overrides) than the predictor's "
                               f"{self.system.name}; make the plan with predictor.system")
        r = self.predict(plan.build(), plan, cost=cost)
        if len(self._runs) >= max_runs:
            self._runs.pop(next(iter(self._runs)))
        self._runs[key] = r
        return r

    # -- runs -------------------------------------------------------------------------------
    def predict(self, graph: WorkloadGraph, plan: Plan | None = None, *,
                cost: CostOptions | None = None, check_capacity_first: bool = True,
                progress: Callable[[int], None] | None = None) -> Result:
        """Run ``graph`` (built by ``plan``, or any graph) and return its Result.

        Raises
        ------
        CapacityError
            If a device's footprint exceeds its memory (unless ``check_capacity_first`` is
            False).
        UnsupportedOpError, MappingError
            For an op the device family cannot run.
        """
        system = self.system
        layout = plan.layout if plan else graph.meta.get("layout") or \
            Layout(tp=int(graph.meta.get("tp", 1)))
        used = graph.devices()
        if max(used) >= system.count:
            raise MappingError(f"{graph.name} is placed on {len(used)} devices (up to index "
                               f"{max(used)}) but {system.name} has {system.count}")
        fps = check_capacity(graph, system, layout) if check_capacity_first \
            else footprint_by_device(graph)
        df = plan.dataflow if plan is not None and plan.dataflow is not None else None

        residency = onchip_residency(graph, system.device)
        homes = op_homes(graph, residency)

        def cost_of(op: Op, group: tuple[int, ...] | None = None) -> OpCost:
            if isinstance(op, BlockOp):
                return self._block_cost(op, df)
            return self.full_cost(op, group, dataflow=df, offchip=homes(op))

        # the fast path: macro ops for self-contained repeated blocks (engine/blocks.py); under
        # a host pipeline each block runs with its own host, in step with its device at the
        # block's start (its first op waits for one dispatch)
        host_s = self._host_s()
        engine_graph = collapse_repeats(
            graph, None if graph.meta.get("collapse_all") else self._shared_ports(graph)) \
            if graph.meta.get("collapse") else graph
        timeline = run_graph(engine_graph, cost_of, progress, links_of=self.links_of,
                             host_s=host_s)
        if graph.meta.get("fold"):  # one device ran for each set of symmetric ones
            timeline.fold(graph.meta["fold_rep"], graph.meta["fold"])
        timeline, clock = self._run_clock(engine_graph, timeline, cost_of, host_s)
        latency = timeline.makespan_s
        devices, energy = self._energy(timeline, latency)
        warnings = list(self._warnings(graph, plan))
        pm = self.power
        if clock.capped:
            warnings.append(
                f"the run would average {clock.full_clock_power_w:.0f} W at full clock, above "
                f"the {pm.limit_w:.0f} W power limit: the limiter holds the clock at "
                f"x{clock.clock_scale:.3f} ({clock.clock_scale * pm.clock_hz / 1e9:.3g} GHz) for "
                f"the whole run, compute time x{clock.sigma:.3f} of the mappers' (their rates "
                f"hold at the TDP, clock x{clock.reference_scale:.3f})"
                + (" and the lowest clock still leaves it above the limit" if clock.stalled
                   else ""))
        busy_tot = sum(d.busy_s for d in devices)
        eff = sum(d.clock_scale * d.busy_s for d in devices) / busy_tot if busy_tot else 1.0
        power_meta = {**pm.to_dict(), "effective_clock_scale": eff,
                      "effective_clock_hz": eff * pm.clock_hz,
                      "peak_power_w": max((d.peak_power_w for d in devices), default=0.0),
                      "run_clock": clock.to_dict()}
        money = run_cost(system, latency, energy.total_j, cost or CostOptions())
        if money.mode == "unpriced":
            warnings.append(f"{system.name} has no price in its spec (cost.price or "
                            "cost.hourly): cost is unknown; set one with --set cost.price=...")
        m = graph.meta
        dtype = plan.dtype if plan else str(m.get("dtype", "bf16"))
        batch = plan.batch if plan else int(m.get("batch", 1))
        samples = float(m.get("samples", batch))
        tokens = float(m.get("tokens", 0.0)) if m.get("family") in ("decoder", "encoder") else 0.0
        peak_per_device, _ = system.device.peak(dtype, "matrix")
        worst = max(fps.values(), key=lambda f: f.total)
        fp = worst.to_dict()
        band = band_for(self.profile, "e2e") if self.profile is not None else None
        meta = {"footprint": fp, "footprint_by_device": {d: f.to_dict() for d, f in fps.items()},
                "tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep,
                "microbatches": layout.microbatches, "layout": layout.describe(),
                "fused_ops": m.get("fused_ops", 0),
                "calibration": (self.profile.source or self.profile.arch) if self.profile
                else None,
                "latency_band_rel": band, "graph_ops": graph.count_ops(),
                "unique_ops": len(graph.unique_ops()), "dtype": dtype,
                "weight_dtype": plan.weight_dtype if plan else m.get("weight_dtype"),
                "seq": m.get("seq"), "context": m.get("context"), "family": m.get("family"),
                **({"seq_lens": m["seq_lens"]} if m.get("seq_lens") else {}),
                "params": m.get("params"), "recompute": m.get("recompute"),
                "devices_used": len(used), "op_cache": self.cache_info(),
                **({"residency": residency.to_dict()} if residency is not None else {}),
                "power": power_meta, "timing": self._timing_meta(timeline),
                **self.silicon()}
        return Result(
            workload=graph.name, arch=system.name, phase=graph.phase, batch=batch,
            devices=system.count, latency_s=latency, energy=energy, cost=money,
            samples=samples, tokens=tokens, memory_bytes=fp["total"],
            memory_capacity_bytes=system.device.dram.capacity_bytes,
            peak_flops=peak_per_device * system.count, records=RecordTable(timeline),
            warnings=tuple(warnings), meta=FrozenMap(meta), per_device=tuple(devices))

    def _host_s(self) -> Callable[[Op, OpCost], float] | None:
        """The engine's host time per op under a timing with a host pipeline, else None."""
        if not host_pipeline(self.timing, self.system.device):
            return None
        return lambda op, c: float(c.details.get("host_s", 0.0))

    def _timing_meta(self, tl: Timeline) -> dict[str, Any]:
        """``meta["timing"]``: the mode, its overheads, and with a host pipeline the host's
        figures on the device whose host is busiest: ``host_s`` (its dispatch time),
        ``device_busy_s``, ``host_wait_s`` (device idle waiting for it),
        ``host_wait_fraction`` (of the latency), ``host_bound_ops`` (op instances whose
        dispatch outlasts their device time) and ``host_bound`` (the host is the slower stage
        of the pipeline: its dispatch time is at least the device's busy time)."""
        out = timing_meta(self.system.device, self.timing)
        if tl.host_end is None:
            out["host_bound"] = False
            return out
        host = np.array([float(c.details.get("host_s", 0.0))
                         + float(c.details.get("block_host_s", 0.0)) for c in tl.costs])
        lat = np.array([c.latency_s for c in tl.costs])
        best: dict[str, Any] | None = None
        for d in tl.devices():
            rows = tl.device == d
            h = float(host[tl.node[rows]].sum())
            if best is None or h > best["host_s"]:
                best = {"device": d, "host_s": h, "device_busy_s": tl.busy_s(d),
                        "host_wait_s": tl.host_wait_s(d)}
        if best is None:
            out["host_bound"] = False
            return out
        span = tl.makespan_s
        out.update(best)
        out["host_wait_fraction"] = best["host_wait_s"] / span if span > 0 else 0.0
        out["host_bound_ops"] = int(np.sum(host[tl.node] > lat[tl.node]))
        out["host_bound"] = bool(best["host_s"] >= best["device_busy_s"])
        return out

    def silicon(self) -> dict[str, Any]:
        """``{"silicon": report dict}`` for a part the ASIC area model covers (systolic
        family), ``{"silicon_note": why not}`` where its node is not in the process data, and
        nothing for GPUs, CPUs and FPGAs. Computed once per predictor."""
        cached = getattr(self, "_silicon", None)
        if cached is None:
            from simulator.cost.silicon import silicon_report, supports_silicon

            dev = self.spec_system.device
            cached = {}
            if supports_silicon(dev):
                try:
                    cached = {"silicon": silicon_report(dev).to_dict()}
                except SpecError as exc:
                    cached = {"silicon_note": f"area, power and unit cost not modelled: {exc}"}
            self._silicon = cached
        return cached

    def links_of(self, group: tuple[int, ...], op: Op | None = None) -> tuple[int | str, ...]:
        """The resources collective ``op`` over ``group`` holds in the event run: the
        communication port (an ``int``, the device) of each rank that exchanges data with
        another rank of its own node (the in-node NVLink/NVSwitch or ICI path), and the NICs
        it crosses when it spans nodes (:func:`simulator.network.links_used`). A
        data-parallel all-reduce with one rank per node thus shares the NICs of its rail with
        pipeline hand-offs, not the device's in-node port with tensor-parallel all-reduces. A
        ``sendrecv`` over ``2k`` devices is ``k`` pairs (device ``i`` sends to ``i + k``), each
        judged on its own."""
        pairs = isinstance(op, Collective) and op.collective == "sendrecv" and \
            len(group) % 2 == 0 and len(group) > 2
        key = (group, pairs)
        got = self._links.get(key)
        if got is None:
            if pairs:
                k = len(group) // 2
                keys: list[int | str] = []
                for a, b in zip(group[:k], group[k:], strict=True):
                    keys += self._links_of((a, b))
                got = tuple(dict.fromkeys(keys))
            else:
                got = self._links_of(group)
            self._links[key] = got
        return got

    def _links_of(self, group: tuple[int, ...]) -> tuple[int | str, ...]:
        from simulator.network import links_used

        s = self.system
        per = s.devices_per_node or s.count
        nodes: dict[int, int] = {}
        for d in group:
            nodes[d // per] = nodes.get(d // per, 0) + 1
        keys: list[int | str] = [d for d in group if nodes[d // per] > 1]
        if len(nodes) > 1:
            keys += [n for n in links_used(s, group) if ".nic" in n]
        return tuple(keys) or tuple(group)

    def _shared_ports(self, graph: WorkloadGraph) -> Callable[[tuple[int, ...]], bool]:
        """Whether a device set's in-node communication ports also carry the graph's
        data-parallel or pipeline collectives (see :func:`collapse_repeats`)."""
        busy: set[int] = set()
        for n in graph.g.nodes:
            data = graph.g.nodes[n]
            item = data["item"]
            if isinstance(item, Collective) and any(
                    t in ("dp:collective", "pp:collective") for t in data["tags"]):
                where = data.get("span") or data["group"] or (0,)
                busy.update(k for k in self.links_of(tuple(where), item)
                            if isinstance(k, int))
        return lambda devices: any(d in busy for d in devices)

    def _block_cost(self, op: BlockOp, dataflow: str | None) -> OpCost:
        """A macro op's cost: its block run once on its own (memoised with both parts, for
        this op and any op of an identical block: see WorkloadGraph.signature)."""
        c = self._cache.get((op, dataflow))
        if c is not None:
            self._hits += 1
            return c
        sig = (op.block.signature(), op.times, op.group, op.span, dataflow)
        both = self._block_sigs.get(sig)
        if both is not None:
            self._hits += 1
            self._cache[(replace(op, part="compute"), dataflow)] = both[0]
            self._cache[(replace(op, part="comm"), dataflow)] = both[1]
            return both[0] if op.part == "compute" else both[1]

        def cost_of(o: Op, group: tuple[int, ...] | None = None) -> OpCost:
            return self.full_cost(o, group, dataflow=dataflow)

        comp, comm = block_costs(op.block, op.times, op.group, op.span,
                                 lambda g: run_graph(g, cost_of, links_of=self.links_of,
                                                     host_s=self._host_s()))
        self._block_sigs[sig] = (comp, comm)
        self._cache[(replace(op, part="compute"), dataflow)] = comp
        self._cache[(replace(op, part="comm"), dataflow)] = comm
        return comp if op.part == "compute" else comm

    def _run_clock(self, graph: WorkloadGraph, tl: Timeline,
                   cost_of: Callable[..., OpCost],
                   host_s: Callable[[Op, OpCost], float] | None) -> tuple[Timeline, RunClock]:
        """The run at the clock the power limiter holds it at (:mod:`simulator.power.run_clock`):
        ``tl`` ran the ops at the mappers' times with full-clock energies; the clock is solved
        per working device from its rows, and the ops' energies (and, under a limit other than
        the TDP, their compute times: the engine runs again) follow it."""
        pm = self.power
        devs = [int(d) for d in np.unique(tl.device)]
        if not devs:
            return tl, solve_run_clock(pm, 0.0, np.zeros(0), np.zeros(0), np.zeros(0), [])
        distinct, which = _distinct_costs(tl)
        scaled, fixed = device_parts(distinct)
        # the kernels' compute/DRAM times matter only where the times may change
        cm_of = [stretchable(c) for c in distinct] if pm.limit_w != pm.tdp_w else None
        busy, sj, fj, cms = [], [], [], []
        for d in devs:
            rows = tl.device == d
            sel = which[tl.node[rows]]
            busy.append(tl.busy_s(d))
            sj.append(float(scaled[sel].sum()))
            fj.append(float(fixed[sel].sum()))
            comp = sel[tl.stream[rows] == 0]
            cms.append(np.concatenate([cm_of[j] for j in comp])
                       if cm_of is not None and comp.size else np.zeros((0, 2)))
        clock = solve_run_clock(pm, tl.makespan_s, np.array(busy), np.array(sj), np.array(fj),
                                cms)
        if clock.clock_scale >= 1.0 and clock.sigma == 1.0:
            return tl, clock
        s, sigma = clock.clock_scale, clock.sigma
        memo: dict[int, OpCost] = {}

        def clocked(c: OpCost) -> OpCost:
            got = memo.get(id(c))
            if got is None:
                got = memo[id(c)] = at_clock(c, pm, s, sigma)
            return got

        if sigma == 1.0:  # the times hold: the same run, its energies at the lower clock
            tl.costs[:] = [clocked(c) for c in tl.costs]
            return tl, clock
        again = run_graph(graph, lambda op, group=None: clocked(
            cost_of(op, group) if group is not None else cost_of(op)),
            links_of=self.links_of, host_s=host_s)
        if tl.rep_of:
            again.fold(tl.rep_of, tl.weight)
        return again, clock

    def _energy(self, tl: Timeline, latency: float) -> tuple[list[DeviceEnergy], EnergyBreakdown]:
        """Per device from its own rows: dynamic energy of its ops, idle power over the run,
        the busy floor over its busy time (lowered at the run's clock, :meth:`_run_clock`), its
        peak power and time-weighted clock; then the system overhead."""
        system, pm = self.system, self.power
        distinct, which = _distinct_costs(tl)
        compute = np.array([c.energy.compute_j for c in distinct])[which]
        fscale = np.array([float(c.details.get("floor_scale", 1.0)) for c in distinct])[which]
        cscale = np.array([float(c.details.get("clock_scale", 1.0)) for c in distinct])[which]
        # a macro op (engine/blocks.py) carries its capped ops' lowered-floor and clock-deficit
        # time in seconds rather than as scales
        fslow = np.array([float(c.details.get("floor_slowed_s", 0.0)) for c in distinct])[which]
        cdef = np.array([float(c.details.get("clock_deficit_s", 0.0)) for c in distinct])[which]
        names = sorted({k for c in distinct for k in c.energy.memory_j})
        levels = {k: np.array([c.energy.memory_j.get(k, 0.0) for c in distinct])[which]
                  for k in names}
        idle_w, above_w = pm.idle_w, pm.floor_above_idle_w
        out: list[DeviceEnergy] = []
        mem_tot: dict[str, float] = {}
        comp_tot = idle_tot = floor_tot = 0.0
        load: list[float] = []
        ran: dict[int, DeviceEnergy] = {}  # a folded run: one device ran for several
        used = set(int(x) for x in np.unique(tl.device)) | set(tl.rep_of)
        for d in range(system.count):
            r = tl.rep_of.get(d, d) if d in used else -1  # -1: every idle device alike
            e = ran.get(r)
            if e is None:
                rows = tl.device == r if r >= 0 else np.zeros(len(tl), dtype=bool)
                sel = tl.node[rows]
                busy = tl.busy_s(r) if sel.size else 0.0
                c = float(compute[sel].sum())
                mem = {k: float(a[sel].sum()) for k, a in levels.items()}
                dur = (tl.end - tl.start)[rows]
                slowed = float(((1.0 - fscale[sel]) * dur).sum() + fslow[sel].sum())
                idle_j = idle_w * latency
                floor_j = above_w * max(0.0, busy - slowed)
                comp_rows = tl.stream[rows] == 0
                cdur = float(dur[comp_rows].sum())
                clock = float((cscale[sel][comp_rows] * dur[comp_rows]).sum()
                              - cdef[sel][comp_rows].sum()) / cdur if cdur > 0 else 1.0
                if sel.size:
                    _, watts = tl.power_series(r, idle_w, above_w)
                    peak = float(watts.max())
                else:
                    peak = idle_w
                st = idle_j + floor_j
                total = c + sum(mem.values()) + st
                e = ran[r] = DeviceEnergy(device=r, busy_s=busy, compute_j=c,
                                          memory_j=FrozenMap(mem), static_j=st, energy_j=total,
                                          avg_power_w=total / latency if latency else 0.0,
                                          idle_j=idle_j, floor_j=floor_j, peak_power_w=peak,
                                          clock_scale=clock)
            if e.device != d:
                e = replace(e, device=d)
            out.append(e)
            comp_tot += e.compute_j
            idle_tot += e.idle_j
            floor_tot += e.floor_j
            for k, v in e.memory_j.items():
                mem_tot[k] = mem_tot.get(k, 0.0) + v
            load.append(e.avg_power_w)
        # System overhead (host CPUs, NICs, switches, fans, PSU losses; the system spec's
        # power.extra / extra_idle): its idle figure, plus the rest in proportion to how far
        # the devices' mean power sits between idle and TDP (fans and conversion losses
        # follow the heat the devices make).
        idle_x = system.overhead_idle_power_w
        span = max(pm.tdp_w - idle_w, 1e-9)
        activity = min(1.0, max(0.0, (float(np.mean(load)) - idle_w) / span)) if load else 0.0
        extra_j = (idle_x + (system.overhead_power_w - idle_x) * activity) * latency
        links = {lk.name for lk in (system.link, system.host_link, system.network,
                                    system.device.link, system.device.host_link) if lk}
        energy = EnergyBreakdown(comp_tot, FrozenMap(mem_tot), idle_tot + floor_tot + extra_j,
                                 system_j=extra_j, idle_j=idle_tot, floor_j=floor_tot,
                                 links=tuple(sorted(k for k in mem_tot if k in links)))
        return out, energy

    def _warnings(self, graph: WorkloadGraph, plan: Plan | None) -> list[str]:
        dts = (plan.dtype, plan.weight_dtype) if plan else (graph.meta.get("dtype"),)
        return dtype_warnings(self.system.device, dts)

    def __getstate__(self) -> dict[str, Any]:  # the cache travels with the predictor
        return self.__dict__.copy()
