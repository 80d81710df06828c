"""Fold symmetric devices: simulate one device of each set that does identical work.

Under tensor parallelism every device of a group runs the same op on its own shard, and
data-parallel replicas with equal batches run the same program: simulating each of them is
wasted work, and on a thousand devices it is most of the run. :func:`fold_symmetric` maps each
device to a representative -- the first device of its tensor-parallel ``unit`` within the first
``period`` devices (one data-parallel replica) -- and merges nodes that become identical: the
same op, on the same representatives, after the same (merged) predecessors, with the same tags,
coming from disjoint devices (the per-rank data-parallel reductions of each tensor-parallel
rank, the replicas' copies of every op). A kept node remembers the devices of its first
instance as its ``span`` (a collective's links are chosen from them: every instance crosses
the same kind of links) and the fold records, per representative,
how many devices it stands for (``meta["fold"]``), so totals (FLOPs, energy) scale back exactly.

The fold is checked, never assumed: every kept node must stand for whole units of the devices
it was placed on, in every replica or in one replica of a graph built for one replica
(``replicas`` virtual copies). If any node breaks the symmetry (an uneven batch split, an op on
one device of a group), :func:`fold_symmetric` returns ``None`` and the caller runs the graph
unfolded.

>>> from workloads.transforms.training import training_step
>>> from workloads.transforms.tensor_parallel import tensor_parallel
>>> from workloads.zoo import build_model
>>> g = tensor_parallel(build_model("gpt2", phase="prefill", batch=1, seq=64, tp=2), 2)
>>> f = fold_symmetric(g, unit=2)
>>> f.devices(), f.meta["fold"]
((0,), {0: 2})
"""

from __future__ import annotations

from workloads.graph import WorkloadGraph

__all__ = ["fold_symmetric"]


def fold_symmetric(graph: WorkloadGraph, unit: int, period: int | None = None,
                   replicas: int = 1) -> WorkloadGraph | None:
    """``graph`` with each ``unit`` of devices (and each replica of ``period`` devices) run by
    one representative, or ``None`` when the graph is not symmetric.

    ``replicas`` > 1: the graph holds one replica of ``period`` devices standing for that many
    (its data-parallel collectives already span them all).
    """
    if unit < 1 or (period is not None and (period < unit or period % unit)):
        raise ValueError(f"fold_symmetric: unit {unit} must divide period {period}")
    per = period

    def rep(d: int) -> int:
        r = d % per if per else d
        return r - r % unit

    out = WorkloadGraph(graph.name, graph.phase, dict(graph.meta))
    kept: dict[str, str] = {}                       # original name -> kept name
    index: dict[tuple, str] = {}                    # merge key -> kept name
    covered: dict[str, set[int]] = {}               # kept name -> devices it stands for
    folded: dict[str, tuple[int, ...]] = {}
    for name in graph.topo():
        data = graph.g.nodes[name]
        orig = data["group"] or (0,)
        fgroup = tuple(sorted({rep(d) for d in orig}))
        edges = {kept[p]: b for p, _, b in graph.g.in_edges(name, data="bytes")}
        preds = tuple(edges)
        item = data["item"]
        key = (item, fgroup, frozenset(preds), data["tags"])
        hit = index.get(key)
        if hit is not None and covered[hit].isdisjoint(orig):
            kept[name] = hit
            covered[hit].update(orig)
            continue
        out._copy_node(name, data, edges.items(), fgroup)
        kept[name] = name
        index[key] = name
        covered[name] = set(orig)
        folded[name] = fgroup
    # every kept node must stand for whole units, in one replica or in all of them
    used = sorted({d for c in covered.values() for d in c})
    n_rep = max(1, -(-(max(used) + 1) // per)) if per else 1
    for name, devs in covered.items():
        base = {d % per if per else d for d in devs}
        whole = {r + i for r in folded[name] for i in range(unit)}
        if base != whole:
            return None
        spans = {d // per for d in devs} if per else {0}
        # built replicas must all be merged; a graph of one replica standing for
        # ``replicas`` holds nodes of replica 0 and collectives over every replica
        if len(spans) != n_rep and not (replicas > 1 and spans == {0}):
            return None
        if len(devs) != len(whole) * len(spans):
            return None
        first = graph.g.nodes[name]["group"] or (0,)
        out.g.nodes[name]["span"] = first if first != folded[name] else None
    weight = unit * (n_rep if n_rep > 1 else replicas)
    out.meta["fold"] = {r: weight for r in sorted({rep(d) for d in used})}
    total = per * max(n_rep, replicas) if per else max(used) + 1
    out.meta["fold_rep"] = {d: rep(d) for d in range(total)}
    out.meta["fold_unit"] = unit
    return out
