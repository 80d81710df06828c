"""WorkloadGraph: a networkx DAG of named ops with tensor edges.

A node holds either an :class:`~workloads.ops.Op` or a :class:`Repeat` of a block graph, so a
model with 80 identical layers stores one layer block and a count, not 80 copies. ``flat()``
expands repeats lazily, in topological order, for the engine; totals (FLOPs, bytes,
parameters) are computed from the compact form without expanding.

Placement: a node may carry a device ``group`` (a tuple of device indices). Every device of
the group runs the op on its own shard (SPMD, as under tensor parallelism); a collective runs
over exactly the devices of its group. A node without a group inherits the group of the repeat
that contains it (so one block is shared by pipeline stages or data-parallel replicas placed on
different devices), and at the top level runs on device 0. Transforms in
:mod:`workloads.transforms` set the groups; builders never do.

Examples
--------
>>> from workloads.ops import MatMul, Elementwise
>>> g = WorkloadGraph("toy")
>>> a = g.add_op("fc1", MatMul(m=8, n=16, k=16, weight=True))
>>> b = g.add_op("act", Elementwise(fn="relu", numel=128), inputs=[a])
>>> [n.name for n in g.flat()]
['fc1', 'act']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import networkx as nx

from workloads.ops import Flops, Op

__all__ = ["WorkloadGraph", "Repeat", "FlatNode"]

#: structure -> small id, for :meth:`WorkloadGraph.signature`
_SIGNATURES: dict[tuple, int] = {}


@dataclass(frozen=True)
class Repeat:
    """``block`` executed ``times`` in sequence (each iteration feeds the next)."""

    block: WorkloadGraph
    times: int

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ValueError(f"Repeat: times must be >= 1, got {self.times}")


Group = tuple[int, ...]


class FlatNode(NamedTuple):
    """One op instance in execution order: its full name, op, predecessors and the device
    group that runs it. (A named tuple: a million of them are made per run.)"""

    name: str
    op: Op
    preds: tuple[str, ...]
    devices: Group = (0,)
    tags: tuple[str, ...] = ()
    #: the devices a folded node stands for (see :mod:`workloads.transforms.fold`); a
    #: collective's links are chosen from these. ``None``: the node's own ``devices``.
    span: Group | None = None

    @property
    def device(self) -> int:
        """The first device of the group (the only one for a single-device node)."""
        return self.devices[0]


class WorkloadGraph:
    """A DAG of named ops (or repeated blocks) with tensor edges.

    Parameters
    ----------
    name:
        Model name, e.g. ``"llama2-7b"``.
    phase:
        ``forward``, ``prefill``, ``decode`` or ``train``.
    meta:
        Free-form facts the builder knows (batch, seq, tokens per step, parameter count, ...).
    """

    def __init__(self, name: str, phase: str = "forward", meta: dict[str, Any] | None = None):
        self.name = name
        self.phase = phase
        self.meta: dict[str, Any] = dict(meta or {})
        self.g = nx.DiGraph()

    # -- building ---------------------------------------------------------------------------
    def _add(self, name: str, item: Op | Repeat, inputs: Iterable[str], group: Group | None,
             tags: tuple[str, ...]) -> str:
        if name in self.g:
            raise ValueError(f"{self.name}: duplicate node name {name!r}")
        if group is not None:
            group = tuple(int(d) for d in group)
            if not group or len(set(group)) != len(group) or min(group) < 0:
                raise ValueError(f"{self.name}: node {name!r}: a device group is a non-empty "
                                 f"tuple of distinct device indices, got {group!r}")
        self.g.add_node(name, item=item, group=group, tags=tags)
        self.__dict__["_version"] = self.__dict__.get("_version", 0) + 1
        for src in inputs:
            if src not in self.g:
                raise ValueError(f"{self.name}: node {name!r} input {src!r} does not exist")
            self.g.add_edge(src, name, bytes=self._out_bytes(src))
        return name

    def _copy_node(self, name: str, data: dict[str, Any], edges: Iterable[tuple[str, float]],
                   group: Group | None, span: Group | None = None) -> None:
        """Add a node copied from another graph (``data``: its attributes) with its in-edges
        (``(source, bytes)``), unchecked: for transforms that rebuild large graphs whose nodes
        were validated when first added."""
        self.g.add_node(name, item=data["item"], group=group, tags=data["tags"])
        if span is not None:
            self.g.nodes[name]["span"] = span
        self.g.add_edges_from((src, name, {"bytes": b}) for src, b in edges)
        self.__dict__["_version"] = self.__dict__.get("_version", 0) + 1

    def add_op(self, name: str, op: Op, inputs: Iterable[str] = (), group: Group | None = None,
               tags: Iterable[str] = ()) -> str:
        """Add an op node fed by ``inputs`` (node names); returns ``name`` for chaining.

        ``group``: the devices that run it (default: inherited, see the module docstring)."""
        if not isinstance(op, Op):
            raise TypeError(f"{name}: expected an Op, got {type(op).__name__}")
        return self._add(name, op, inputs, group, tuple(tags))

    def add_repeat(self, name: str, block: WorkloadGraph, times: int,
                   inputs: Iterable[str] = (), group: Group | None = None,
                   tags: Iterable[str] = ()) -> str:
        """Add ``block`` repeated ``times`` (e.g. the decoder layers) as one compact node."""
        if len(block.g) == 0:
            raise ValueError(f"{name}: block must be a non-empty DAG")
        try:  # cached per block: a schedule adds the same block thousands of times
            block._plan()
        except ValueError:
            raise ValueError(f"{name}: block must be a non-empty DAG") from None
        return self._add(name, Repeat(block, times), inputs, group, tuple(tags))

    def add_order(self, before: str, after: str) -> None:
        """A control dependency: ``after`` starts only once ``before`` is done (no tensor flows;
        schedules such as pipeline 1F1B are expressed this way).

        Raises
        ------
        ValueError
            For an unknown node or an edge that would close a cycle.
        """
        for n in (before, after):
            if n not in self.g:
                raise ValueError(f"{self.name}: no node {n!r}")
        if before == after:
            raise ValueError(f"{self.name}: ordering {before!r} before {after!r} closes a cycle")
        # Schedules add thousands of orderings: a path search per edge would be quadratic, so
        # a cycle is reported by the next topological sort (``topo``/``flat``) instead.
        self.g.add_edge(before, after, bytes=0.0)
        self.__dict__["_version"] = self.__dict__.get("_version", 0) + 1

    def group_of(self, name: str) -> Group | None:
        """The device group set on node ``name`` (None: inherited)."""
        return self.g.nodes[name]["group"]

    def item(self, name: str) -> Op | Repeat:
        return self.g.nodes[name]["item"]

    def tags(self, name: str) -> tuple[str, ...]:
        return self.g.nodes[name]["tags"]

    def signature(self) -> int:
        """An id shared by graphs of the same name, phase, nodes (ops, repeated blocks,
        device groups, tags, spans) and edges, so that a cost computed for one block holds
        for an identical block built again (the short runs of one long pipeline)."""
        version = self.__dict__.get("_version", 0)
        cached = self.__dict__.get("_signature")
        if cached is not None and cached[0] == version:
            return cached[1]
        parts = []
        for n, data in self.g.nodes(data=True):
            item = data["item"]
            what = ("repeat", item.block.signature(), item.times) \
                if isinstance(item, Repeat) else item
            parts.append((n, what, data["group"], data["tags"], data.get("span"),
                          tuple(self.g.predecessors(n))))
        sid = _SIGNATURES.setdefault((self.name, self.phase, tuple(parts)), len(_SIGNATURES))
        self.__dict__["_signature"] = (version, sid)
        return sid

    def devices(self) -> Group:
        """Every device index a node (or a node of a nested block) is placed on; (0,) if none."""
        out: set[int] = set()

        def walk(graph: WorkloadGraph) -> None:
            for n in graph.g.nodes:
                data = graph.g.nodes[n]
                if data["group"]:
                    out.update(data["group"])
                if isinstance(data["item"], Repeat):
                    walk(data["item"].block)

        walk(self)
        return tuple(sorted(out)) or (0,)

    def _out_bytes(self, name: str) -> float:
        item = self.g.nodes[name]["item"]
        if isinstance(item, Repeat):
            return item.block._sink_bytes()
        return item.output_bytes()

    def _sink_bytes(self) -> float:
        """Bytes the sinks of this graph output (what a repeat of it hands on), cached until
        the graph changes: schedules add the same block thousands of times."""
        key = (id(self.g), len(self.g), self.__dict__.get("_version", 0))
        got = self.__dict__.get("_sinkb")
        if got is None or got[0] != key:
            got = self.__dict__["_sinkb"] = (key, sum(self._out_bytes(s) for s in self.sinks()))
        return got[1]

    # -- structure --------------------------------------------------------------------------
    def topo(self) -> list[str]:
        """Node names in a deterministic topological order (insertion order breaks ties).

        Cached until the graph changes (a repeated block is walked once per iteration)."""
        return list(self._plan()[1])

    def _plan(self) -> tuple[Any, list[str], list[str], list[tuple[str, Any, tuple, Any]]]:
        """(key, topological order, sinks, per node (name, item, preds, data)), cached until
        the graph changes."""
        key = (id(self.g), self.g.number_of_nodes(), self.__dict__.get("_version", 0))
        cached = self.__dict__.get("_topo")
        if cached is None or cached[0] != key:
            order = {n: i for i, n in enumerate(self.g.nodes)}
            try:
                if all(order[u] < order[v] for u, v in self.g.edges):
                    # every edge runs forward in insertion order (the usual case: inputs must
                    # exist first), so insertion order is the lexicographic topological order
                    names = list(self.g.nodes)
                else:
                    names = list(nx.lexicographical_topological_sort(self.g,
                                                                     key=order.__getitem__))
            except nx.NetworkXUnfeasible:
                cycle = [u for u, _ in nx.find_cycle(self.g)]
                raise ValueError(f"{self.name}: the graph has a cycle (an ordering closes it): "
                                 f"{' -> '.join(cycle[:6])}{' ...' if len(cycle) > 6 else ''}"
                                 ) from None
            sinks = [n for n in names if self.g.out_degree(n) == 0]
            rows = [(n, self.g.nodes[n]["item"], tuple(self.g.predecessors(n)), self.g.nodes[n])
                    for n in names]
            cached = self.__dict__["_topo"] = (key, names, sinks, rows)
        return cached

    def sources(self) -> list[str]:
        return [n for n in self.topo() if self.g.in_degree(n) == 0]

    def sinks(self) -> list[str]:
        return list(self._plan()[2])

    def flat(self, prefix: str = "", entry: tuple[str, ...] = ()) -> Iterator[FlatNode]:
        """Yield every op instance in topological order with fully-qualified names.

        Sources depend on ``entry`` (used when expanding a repeat inside a parent graph). A
        repeat's iterations are chained: iteration ``i``'s sources depend on iteration
        ``i-1``'s sinks. Names of repeated ops are ``<repeat>.<i>.<op>``.
        """
        yield from self._flat(prefix, entry, [], (0,), None)

    def _flat(self, prefix: str, entry: tuple[str, ...], sinks_out: list[str], group: Group,
              span: Group | None) -> Iterator[FlatNode]:
        exits: dict[str, tuple[str, ...]] = {}
        _, _, sinks, rows = self._plan()
        for name, item, pred_names, data in rows:
            if len(pred_names) == 1:
                preds = exits[pred_names[0]]
            else:
                preds = tuple(x for p in pred_names for x in exits[p]) or entry
            if not preds:
                preds = entry
            full = f"{prefix}{name}"
            own = data["group"]
            grp = own or group
            sp = data.get("span") if own else span
            if isinstance(item, Repeat):
                last = preds
                for i in range(item.times):
                    inner: list[str] = []
                    yield from item.block._flat(f"{full}.{i}.", last, inner, grp, sp)
                    last = tuple(inner) or last
                exits[name] = last
            else:
                yield FlatNode(full, item, preds, grp, data["tags"], sp)
                exits[name] = (full,)
        for s in sinks:
            sinks_out.extend(exits[s])

    def count_ops(self) -> int:
        """Number of op instances after expanding repeats (without expanding them)."""
        n = 0
        for name in self.g.nodes:
            item = self.g.nodes[name]["item"]
            n += item.times * item.block.count_ops() if isinstance(item, Repeat) else 1
        return n

    def unique_ops(self) -> set[Op]:
        """The distinct op objects (what a cost cache needs to evaluate)."""
        out: set[Op] = set()
        for name in self.g.nodes:
            item = self.g.nodes[name]["item"]
            out |= item.block.unique_ops() if isinstance(item, Repeat) else {item}
        return out

    # -- totals -----------------------------------------------------------------------------
    def _sum(self, fn) -> Any:
        total = None
        for name in self.g.nodes:
            item = self.g.nodes[name]["item"]
            if isinstance(item, Repeat):
                v = item.block._sum(fn)
                v = v.scaled(item.times) if isinstance(v, Flops) else v * item.times
            else:
                v = fn(item)
            total = v if total is None else total + v
        return total if total is not None else 0.0

    def flops(self) -> Flops:
        return self._sum(lambda op: op.flops()) or Flops()

    def min_bytes(self) -> float:
        return float(self._sum(lambda op: op.min_bytes))

    def params(self) -> float:
        """Trainable parameters over all ops (shared weights, e.g. tied embeddings, once)."""
        return float(self._sum(lambda op: op.params())) - float(self.meta.get("tied_params", 0))

    def weight_bytes(self) -> float:
        return float(self._sum(lambda op: op.weight_bytes())) - float(
            self.meta.get("tied_weight_bytes", 0))

    def __len__(self) -> int:
        return self.count_ops()

    def __repr__(self) -> str:
        return (f"WorkloadGraph({self.name!r}, phase={self.phase!r}, ops={self.count_ops()}, "
                f"nodes={len(self.g)})")
