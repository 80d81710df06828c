"""Collapse repeated blocks into two macro ops each: the fast path for large training runs.

A pipeline stage runs its chunk of identical layers for every micro-batch, and every chunk of
every micro-batch on every stage costs the same: the event run of thousands of op instances
per chunk is the bulk of a large training step. When a repeated block is self-contained (no op
inside names its own devices, so its collectives stay within the block's group and nothing
outside waits on an op inside), its run on its group does not depend on the rest of the graph
except through its start. :func:`collapse_repeats` therefore runs each distinct block once on
its own (memoised by the caller) and replaces the repeat node by

- a ``compute`` macro op lasting the time the block keeps the compute stream busy, carrying
  the block's FLOPs, bytes and dynamic energy of its compute ops, then
- a ``comm`` macro op (on the communication port) lasting the rest of the block's makespan:
  the communication the block exposes (e.g. tensor-parallel all-reduces between its GEMMs),
  carrying the energy of its collectives.

The chain lasts exactly the block's makespan; what is lost is the per-op detail of the trace,
which shows one slice per macro op. A block whose devices' communication ports also carry
data-parallel or pipeline transfers (replicas or stages inside one node) is not collapsed:
there the block's tensor-parallel collectives queue with those transfers between its GEMMs,
which a macro op cannot express (accumulated micro-batches before the last are collapsed
anyway: the reductions wait for the last one). ``hwsim train --exact`` runs without
collapsing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from simulator.frozen import FrozenMap
from simulator.mapping.base import EnergyParts, OpCost
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Flops, Op

__all__ = ["BlockOp", "collapse_repeats", "block_costs"]


@dataclass(frozen=True, kw_only=True)
class BlockOp(Op):
    """``times`` iterations of ``block`` on one device, as one op (``part`` compute or comm).

    Equal when the block is the same object: the cost of a block is computed once."""

    kind: ClassVar[str] = "block"
    block: WorkloadGraph
    times: int
    group: tuple[int, ...] = (0,)
    part: str = "compute"
    span: tuple[int, ...] | None = None

    @property
    def stream(self) -> str:
        return self.part

    def flops(self) -> Flops:
        return self.block.flops().scaled(self.times) if self.part == "compute" else Flops()

    def bytes_read(self) -> float:
        return 0.0

    def bytes_written(self) -> float:
        return 0.0

    def output_bytes(self) -> float:
        return 0.0

    def describe(self) -> str:
        return f"block({self.block.name} x{self.times}, {self.part})"


def _self_contained(block: WorkloadGraph) -> bool:
    for n in block.g.nodes:
        data = block.g.nodes[n]
        if data["group"] is not None:
            return False
        item = data["item"]
        if isinstance(item, Repeat) and not _self_contained(item.block):
            return False
    return True


def block_costs(block: WorkloadGraph, times: int, group: tuple[int, ...],
                span: tuple[int, ...] | None, run: Callable[[WorkloadGraph], Any]
                ) -> tuple[OpCost, OpCost]:
    """The compute and exposed-communication macro costs of ``times`` x ``block`` on
    ``group``; ``run`` is the engine (graph -> Timeline) with the caller's op costs.

    Iterations of a repeat run one after another (each waits for the previous one's sinks),
    so the times grow linearly with the count: one and two iterations are run and the rest
    extrapolated (thousands of accumulation steps cost two small runs)."""
    d = group[0]

    def one(n: int):
        sub = WorkloadGraph(block.name, "block")
        sub.add_repeat("b", block, n, group=group)
        if span is not None:
            sub.g.nodes["b"]["span"] = span
        tl = run(sub)
        return tl, (tl.makespan_s, tl.busy_s(d, "compute"), tl.busy_s(d, "comm"))

    tl, t1 = one(1)
    if times == 1:
        makespan, compute_busy, comm_busy = t1
    else:
        _, t2 = one(2)
        makespan, compute_busy, comm_busy = (a + (times - 1) * (b - a)
                                             for a, b in zip(t1, t2, strict=True))
    from simulator.power.run_clock import STRETCH_KEY, stretchable

    sums = {"compute": [Flops(), 0.0, 0.0, 0.0, {}, 0.0, {}, 0, 0.0, 0.0, 0.0, []],
            "comm": [Flops(), 0.0, 0.0, 0.0, {}, 0.0, {}, 0, 0.0, 0.0, 0.0, []]}
    for i in range(len(tl)):
        if int(tl.device[i]) != d:
            continue
        c = tl.costs[int(tl.node[i])]
        part = "comm" if int(tl.stream[i]) == 2 else "compute"
        s = sums[part]
        s[0] = s[0] + c.flops
        s[1] += c.compute_s
        s[2] += c.memory_s
        s[3] += c.overhead_s
        for k, v in c.bytes_by_level.items():
            s[4][k] = s[4].get(k, 0.0) + v
        s[5] += c.energy.compute_j
        for k, v in c.energy.memory_j.items():
            s[6][k] = s[6].get(k, 0.0) + v
        s[7] += 1
        # power-capped ops (simulator.power): busy time at a lowered floor, clock deficit
        s[8] += (1.0 - float(c.details.get("floor_scale", 1.0))) * c.latency_s
        s[9] += (1.0 - float(c.details.get("clock_scale", 1.0))) * c.latency_s
        # --timing eager: the host's dispatch of the block's ops (for the run's host figures;
        # the block's own run already waited for it)
        s[10] += float(c.details.get("host_s", 0.0)) if tl.host_end is not None else 0.0
        if part == "compute":  # kernels whose time follows the clock (simulator.power.run_clock)
            s[11].append(stretchable(c))

    def make(part: str, latency: float) -> OpCost:
        f, cs, ms, os_, by, ej, mj, n, slowed, deficit, host, cm = sums[part]
        k = float(times)  # the sums are of one iteration
        cm = np.concatenate(cm) * k if cm else np.zeros((0, 2))
        f, cs, ms, os_, ej, n = f.scaled(k), cs * k, ms * k, os_ * k, ej * k, n * times
        by = {key: v * k for key, v in by.items()}
        mj = {key: v * k for key, v in mj.items()}
        return OpCost(
            latency_s=latency, compute_s=cs, memory_s=ms, overhead_s=os_,
            bound="communication" if part == "comm" else "compute",
            flops=f, bytes_by_level=FrozenMap(by), utilization=0.0,
            energy=EnergyParts(ej, FrozenMap(mj)), compute_class="block",
            details=FrozenMap({"ops": n, "block_makespan_s": makespan,
                               "compute_busy_s": compute_busy, "comm_busy_s": comm_busy,
                               **({"floor_slowed_s": slowed * k,
                                   "clock_deficit_s": deficit * k} if slowed or deficit
                                  else {}),
                               **({"block_host_s": host * k} if host else {}),
                               **({STRETCH_KEY: tuple(map(tuple, cm.tolist()))}
                                  if cm.size else {})}),
            notes=(f"{times} x block {block.name!r} ({n} op instances on device {d}) run on "
                   f"its own: makespan {makespan * 1e3:.3f} ms, compute busy "
                   f"{compute_busy * 1e3:.3f} ms, communication busy {comm_busy * 1e3:.3f} ms; "
                   f"this macro op is its {part} part",))

    return make("compute", compute_busy), make("comm", max(0.0, makespan - compute_busy))


def collapse_repeats(graph: WorkloadGraph,
                     shared: Callable[[tuple[int, ...]], bool] | None = None) -> WorkloadGraph:
    """``graph`` with each self-contained top-level repeat replaced by its macro ops (see the
    module docstring); other nodes are kept as they are. ``shared(devices)``: whether other
    transfers may use the communication ports of those devices while the block runs; such a
    repeat is kept op by op, so its collectives queue with them as in the exact run."""
    out = WorkloadGraph(graph.name, graph.phase, graph.meta)
    exit_of: dict[str, str] = {}
    for name in graph.topo():
        data = graph.g.nodes[name]
        item = data["item"]
        preds = [exit_of[p] for p in graph.g.predecessors(name)]
        grp, tags = data["group"], data["tags"]
        if isinstance(item, Repeat) and _self_contained(item.block) and (
                "accumulate" in tags or shared is None
                or not shared(data.get("span") or grp or (0,))):
            span = data.get("span")
            out.add_op(name, BlockOp(block=item.block, times=item.times, group=grp or (0,),
                                         span=span), preds,
                       group=grp, tags=tags)
            if span is not None:
                out.g.nodes[name]["span"] = span
            tail = f"{name}#comm"
            out.add_op(tail, BlockOp(block=item.block, times=item.times, group=grp or (0,),
                                     part="comm", span=span), [name], group=grp, tags=tags)
            if span is not None:
                out.g.nodes[tail]["span"] = span
            exit_of[name] = tail
            continue
        out._copy_node(name, data, ((exit_of[p], b) for p, _, b in
                                    graph.g.in_edges(name, data="bytes")),
                       grp, data.get("span"))
        exit_of[name] = name
    return out
