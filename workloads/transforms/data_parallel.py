"""Data parallelism as a graph transform: replicas on disjoint device groups.

:func:`data_parallel` places replica ``r`` of a (possibly tensor- or pipeline-parallel) graph on
devices ``r * devices_per_replica ...`` and merges the replicas into one graph. Replicas may
differ (an uneven batch split gives some replicas one more sample). For a training step the
replicas' gradients are reduced over the data-parallel group before the optimizer update, one
collective per device of a replica (each over the ``dp`` devices holding the same shard):

- in buckets overlapped with the backward pass (PyTorch DDP, Li et al. VLDB 2020; Megatron):
  the repeated backward block of the layers is cut into chunks of ``k`` layers, ``k`` the most
  whose gradients fit in ``bucket_bytes`` (at least one), and each chunk's gradients are
  reduced as soon as that chunk has run in every replica, while the next chunks compute. Under
  gradient accumulation or a pipeline, only the last micro-batch's backward of each stage
  triggers reductions (the gradients are complete only then). The parameters outside the
  layers (embeddings, final norm, LM head) form a last bucket after the whole backward pass;
- with ``bucket_bytes`` None or 0, in one collective after the whole backward pass.

ZeRO (Rajbhandari et al., SC 2020) shards the training state over the replicas: stages 1 and 2
reduce-scatter the gradients, update each replica's ``1/dp`` shard and all-gather the updated
weights (the traffic of an all-reduce); stage 3 also shards the weights: every layer's weights
are all-gathered before its forward and again before its backward (each gather prefetched
while the previous unit computes: see :func:`data_parallel`), the gradients are
reduce-scattered by bucket, and no weights are gathered after the update -- 1.5x the traffic of
an all-reduce (sec. 7.2.1: 3 Psi against 2 Psi). Under gradient accumulation every micro-batch
gathers the weights and reduce-scatters its gradients (the gradients stay sharded, as in
DeepSpeed). Weights are gathered per layer, not per parameter tensor (FSDP's per-block
wrapping); ZeRO-3 with pipeline parallelism is refused.

Examples
--------
>>> from workloads.zoo import build
>>> g = data_parallel([build("mlp", batch=4), build("mlp", batch=4)])
>>> g.devices(), g.meta["batch"], g.meta["dp"]
((0, 1), 8, 2)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from workloads.errors import WorkloadError
from workloads.graph import Group, Repeat, WorkloadGraph
from workloads.ops import Collective, Elementwise, Op, get_dtype

__all__ = ["data_parallel", "DEFAULT_BUCKET_BYTES"]

_SUMMED = ("batch", "samples", "tokens")
#: PyTorch DDP's default bucket size (``bucket_cap_mb=25``).
DEFAULT_BUCKET_BYTES = 25e6


@dataclass(frozen=True)
class _Coll:
    """One collective over the data-parallel group per device ``d`` of ``devices`` (devices of
    one replica): ``{name}.d{d}`` waits for the nodes ``after`` and feeds the nodes ``before``,
    in every replica."""

    name: str
    kind: str
    bytes: float
    devices: tuple[int, ...]
    after: tuple[str, ...]
    before: tuple[str, ...] = ()
    tags: tuple[str, ...] = ("backward", "dp:collective")


def _shift(group: tuple[int, ...] | None, offset: int) -> tuple[int, ...]:
    return tuple(d + offset for d in (group or (0,)))


def data_parallel(replicas: Sequence[WorkloadGraph], devices_per_replica: int = 1,
                  zero: int = 0, bucket_bytes: float | None = DEFAULT_BUCKET_BYTES,
                  stand_for: int = 1) -> WorkloadGraph:
    """One graph running ``replicas`` side by side (a single replica is returned as is).

    ``zero`` (training): 0 all-reduces the gradients; 1 and 2 reduce-scatter them, update each
    replica's ``1/dp`` shard and all-gather the updated weights (same traffic as an all-reduce,
    ``1/dp`` of the optimizer state; stage 2: of the gradients too); 3 also shards the weights:
    each layer's weights are all-gathered before its forward and before its backward, the
    all-gather of a unit waiting only for the unit before the previous one to finish (so it
    overlaps the previous unit's compute: one unit prefetched), the parameters outside the
    layers gathered as one unit before the forward and before the backward.

    ``bucket_bytes`` (training): gradient bytes per reduction bucket, the reductions overlapping
    the backward pass (see the module docstring); None or 0: one reduction after it.

    ``stand_for`` > 1 with one replica: that replica stands for ``stand_for`` identical ones;
    only its nodes are built, while its collectives span every replica's devices (for
    :func:`workloads.transforms.fold.fold_symmetric`, which then simulates one of each).

    Node names get a ``dp<r>.`` prefix. Meta: ``dp``, ``zero``, ``bucket_bytes``, and
    ``batch``/``samples``/``tokens`` summed over replicas; everything else from the first
    replica.

    Raises
    ------
    WorkloadError
        If the replicas are of different models or phases, a replica uses more devices than
        ``devices_per_replica``, a training replica has no optimizer node, ``zero`` is not
        0-3, ``bucket_bytes`` is negative, or ZeRO-3 is asked of a pipeline.
    """
    if not replicas:
        raise WorkloadError("data_parallel: no replicas")
    if isinstance(zero, bool) or zero not in (0, 1, 2, 3):
        raise WorkloadError(f"zero must be 0, 1, 2 or 3, got {zero!r}")
    if bucket_bytes is not None and not (bucket_bytes >= 0 and math.isfinite(bucket_bytes)):
        raise WorkloadError(f"bucket_bytes must be a non-negative number of bytes or None, got "
                            f"{bucket_bytes!r}")
    if stand_for > 1 and len(replicas) != 1:
        raise WorkloadError(f"data_parallel: stand_for={stand_for} needs exactly one replica, "
                            f"got {len(replicas)}")
    if len(replicas) == 1 and stand_for <= 1:
        return replicas[0]
    first = replicas[0]
    for g in replicas:
        if (g.name, g.phase) != (first.name, first.phase):
            raise WorkloadError(f"data_parallel: replicas differ ({g.name}/{g.phase} vs "
                                f"{first.name}/{first.phase})")
        if max(g.devices()) >= devices_per_replica:
            raise WorkloadError(f"data_parallel: {g.name} uses devices {g.devices()}, more "
                                f"than devices_per_replica={devices_per_replica}")
    dp = len(replicas) * max(1, stand_for)
    train = first.phase == "train"
    out = WorkloadGraph(first.name, first.phase, dict(first.meta))
    for k in _SUMMED:
        if k in first.meta:
            out.meta[k] = sum(g.meta.get(k, 0) for g in replicas) * max(1, stand_for)
    out.meta["dp"] = dp
    out.meta["zero"] = zero if train else 0
    if not train:
        _merge(out, [(g, []) for g in replicas], devices_per_replica, dp)
        return out
    out.meta["bucket_bytes"] = float(bucket_bytes or 0.0)
    prepared: dict[int, tuple[WorkloadGraph, list[_Coll]]] = {}
    for g in replicas:
        if id(g) not in prepared:
            prepared[id(g)] = _prepare(g, dp, zero, float(bucket_bytes or 0.0))
    colls = [c.name for c in prepared[id(first)][1]]
    for g in replicas:
        if [c.name for c in prepared[id(g)][1]] != colls:
            raise WorkloadError(f"data_parallel: replicas of {first.name} hold different "
                                "parameters (their gradient buckets differ)")
    _merge(out, [prepared[id(g)] for g in replicas], devices_per_replica, dp)
    return out


# -- one replica: the collectives it takes part in, the graph cut where they attach ----------
def _prepare(g: WorkloadGraph, dp: int, zero: int, bucket: float
             ) -> tuple[WorkloadGraph, list[_Coll]]:
    """The replica ``g`` rewritten for its data-parallel collectives (accumulated micro-batches
    unrolled where a reduction attaches inside them, layer repeats cut into chunks, the update
    on a ``1/dp`` shard under ZeRO) and those collectives, in program order."""
    opts = [n for n in g.topo() if "optimizer" in g.tags(n)]
    if not opts:
        raise WorkloadError(f"data_parallel: training graph {g.name} has no optimizer node")
    if zero == 3 and int(g.meta.get("pp", 1)) > 1:
        raise WorkloadError(f"{g.name}: ZeRO-3 with pipeline parallelism is not modelled (each "
                            "micro-batch would gather every stage's weights again; DeepSpeed "
                            "does not combine them either)")
    acc = next((n for n in g.topo() if "accumulate" in g.tags(n)
                and isinstance(g.item(n), Repeat)), None)
    scopes: list[tuple[str, list[str]]]  # (name prefix, nodes) of each micro-batch
    if acc is not None and (zero == 3 or bucket > 0):
        keep = g.item(acc).times if zero == 3 else 1
        g, scopes = _unroll(g, acc, keep)
    else:
        scopes = [("", [n for n in g.topo() if n not in opts])]
    grad_per_param = float(g.meta.get("grad_bytes_per_param", 2.0))
    wbytes = get_dtype(str(g.meta.get("weight_dtype") or g.meta.get("dtype", "bf16"))).bytes
    kind = "reducescatter" if zero else "allreduce"
    split: dict[str, list[int]] = {}
    colls: list[_Coll] = []
    feeds_opt: dict[str, set[str]] = {}
    for o in opts:
        sfx = "" if len(opts) == 1 else f".{o}"
        devs = g.group_of(o) or (0,)
        params = float(g.item(o).numel) if len(opts) > 1 else \
            float(g.meta.get("params_per_device", 0.0))
        grads = params * grad_per_param
        mine: list[_Coll] = []
        if zero == 3:
            units: list[_Unit] = []
            for pre, scope in scopes:
                pre = pre if len(scopes) > 1 else ""
                more, reduces = _zero3(g, scope, params, grad_per_param, bucket, split, sfx,
                                       pre, devs)
                units += more
                mine += reduces
            mine = _gathers(units, wbytes, sfx, devs) + mine
        else:
            mine = _buckets(g, o, opts, params, grad_per_param, bucket, split, kind, sfx, devs)
        if not mine:  # no bucketing: one reduction after the whole backward pass
            mine = [_Coll(f"dp_grad_{kind}{sfx}", kind, grads, devs,
                          tuple(g.g.predecessors(o)))]
        colls += mine
        feeds_opt[o] = {c.name for c in mine if c.kind != "allgather"}
        if zero in (1, 2):  # the updated weights, gathered back to every replica
            colls.append(_Coll(f"dp_weight_allgather{sfx}", "allgather", params * wbytes, devs,
                               (o,), tags=("optimizer", "dp:collective")))
    g, head, tail = _cut(g, split, {o: _shard(g.item(o), dp) for o in opts} if zero else {})
    # names of cut repeats: wait for the last chunk, feed the first; the update waits for
    # every reduction of its gradients
    colls = [replace(c, after=tuple(tail.get(n, n) for n in c.after),
                     before=tuple(head.get(n, n) for n in c.before)
                     + tuple(o for o in opts if c.name in feeds_opt[o])) for c in colls]
    return g, colls


def _shard(item: Op | Repeat, dp: int) -> Op | Repeat:
    """The optimizer update of one replica's ``1/dp`` shard of the parameters."""
    return replace(item, numel=max(1, -(-item.numel // dp))) if isinstance(item, Elementwise) \
        else item


def _layer_bytes(g: WorkloadGraph, bwd: str, per_param: float) -> float | None:
    params = g.item(bwd).block.meta.get("layer_params")
    return None if params is None else float(params) * per_param


def _per_bucket(layer_bytes: float, bucket: float) -> int:
    """Layers per bucket: as many as fit in ``bucket`` bytes, at least one (DDP's cap)."""
    return max(1, int(bucket // layer_bytes)) if layer_bytes > 0 else 1 << 30


def _buckets(g: WorkloadGraph, o: str, opts: list[str], params: float, per_param: float,
             bucket: float, split: dict[str, list[int]], kind: str, sfx: str,
             devs: tuple[int, ...]) -> list[_Coll]:
    """ZeRO 0-2: reductions of ``o``'s gradients by bucket of layers, after the chunks of the
    last layer backward feeding ``o``; the rest after ``o``'s inputs. Empty: no bucketing."""
    if bucket <= 0:
        return []
    grp = g.group_of(o) or (0,)
    # the layer backward repeats feeding ``o``: all of them with one optimizer, else those on
    # its stage's devices (a pipeline stage updates what it computed)
    every = _layer_backwards(g)
    cands = every if len(opts) == 1 else [n for n in every if (g.group_of(n) or (0,)) == grp]
    if not cands:
        return []
    bwd = cands[-1]  # the last micro-batch's: the gradients are complete only after it
    layer = _layer_bytes(g, bwd, per_param)
    times = g.item(bwd).times
    total = params * per_param
    if layer is None or layer * times > total * (1 + 1e-12):
        return []
    k = _per_bucket(layer, bucket)
    sizes = [min(k, times - i) for i in range(0, times, k)]
    split[bwd] = sizes
    out = [_Coll(f"dp_grad_{kind}{sfx}.b{j}", kind, n * layer, devs, (f"{bwd}.c{j}",))
           for j, n in enumerate(sizes)]
    rest = total - layer * times
    if rest > 1e-9 * total:
        out.append(_Coll(f"dp_grad_{kind}{sfx}.b{len(sizes)}", kind, rest, devs,
                         tuple(g.g.predecessors(o))))
    return out


def _layer_backwards(g: WorkloadGraph) -> list[str]:
    """The repeated layer-backward nodes of ``g`` in program order (cached per graph
    version: a pipeline asks once per stage)."""
    key = g._plan()[0]
    got = g.__dict__.get("_layer_bwd")
    if got is None or got[0] != key:
        names = [n for n in g._plan()[1] if "backward:layers" in g.tags(n)
                 and isinstance(g.item(n), Repeat)]
        got = g.__dict__["_layer_bwd"] = (key, names)
    return got[1]


class _Unit(NamedTuple):
    """Weights ZeRO-3 gathers at once: the nodes that need them, the nodes whose end frees
    them."""

    name: str
    params: float
    before: tuple[str, ...]
    done: tuple[str, ...]
    backward: bool


def _gathers(units: list[_Unit], wbytes: float, sfx: str, devs: tuple[int, ...]
             ) -> list[_Coll]:
    """The all-gather of each unit's weights, in execution order; unit ``i``'s waits for unit
    ``i - 2`` to finish, so it overlaps unit ``i - 1``'s compute (one unit prefetched)."""
    out = []
    for i, u in enumerate(units):
        tags = ("backward", "dp:collective") if u.backward else ("dp:collective",)
        out.append(_Coll(f"dp_param_allgather{sfx}.{u.name}", "allgather", u.params * wbytes,
                         devs, units[i - 2].done if i >= 2 else (), u.before, tags))
    return out


def _zero3(g: WorkloadGraph, scope: list[str], params: float, per_param: float,
           bucket: float, split: dict[str, list[int]], sfx: str, pre: str,
           devs: tuple[int, ...]) -> tuple[list[_Unit], list[_Coll]]:
    """ZeRO-3 over one micro-batch (``scope``, its nodes named ``<pre><node>``): the units of
    weights it gathers (each layer, and the rest as one unit, for the forward and again for
    the backward) and its gradient reduce-scatters by bucket."""
    inside = set(scope)
    bwd = next((n for n in scope if "backward:layers" in g.tags(n)
                and isinstance(g.item(n), Repeat)), None)
    fwd = _forward_of(g, bwd) if bwd is not None else None
    layer_p = g.item(bwd).block.meta.get("layer_params") if bwd is not None else None
    if fwd is None or layer_p is None or g.item(fwd).times != g.item(bwd).times:
        bwd = fwd = None
    layers = g.item(fwd).times if fwd is not None else 0
    layer_p = float(layer_p or 0.0)
    rest_p = params - layers * layer_p
    if rest_p < -1e-9 * params:
        raise WorkloadError(f"{g.name}: layers hold more parameters than the device updates")
    sources = tuple(n for n in scope if not any(p in inside for p in g.g.predecessors(n)))
    entry = tuple(n for n in scope if "backward" in g.tags(n) and not any(
        p in inside and "backward" in g.tags(p) for p in g.g.predecessors(n)))
    units: list[_Unit] = []  # in execution order
    rest_unit = rest_p > 1e-9 * params
    if rest_unit:
        fwd_in = tuple(g.g.predecessors(fwd)) if fwd else ()
        units.append(_Unit(f"{pre}non_layer.fwd", rest_p, sources, fwd_in, False))
    if fwd is not None and bwd is not None:
        split[fwd] = split[bwd] = [1] * layers
        units += [_Unit(f"{fwd}.c{i}", layer_p, (f"{fwd}.c{i}",), (f"{fwd}.c{i}",), False)
                  for i in range(layers)]
    if rest_unit:
        units.append(_Unit(f"{pre}non_layer.bwd", rest_p, entry,
                           tuple(g.g.predecessors(bwd)) if bwd else (), True))
    if fwd is not None and bwd is not None:
        units += [_Unit(f"{bwd}.c{i}", layer_p, (f"{bwd}.c{i}",), (f"{bwd}.c{i}",), True)
                  for i in range(layers)]
    # gradients: reduce-scatter by bucket of layers as the backward produces them
    reduces = []
    sinks = tuple(n for n in scope if not any(s in inside for s in g.g.successors(n)))
    if bwd is not None and bucket > 0:
        k = _per_bucket(layer_p * per_param, bucket)
        starts = range(0, layers, k)
        for j, a in enumerate(starts):
            n = min(k, layers - a)
            reduces.append(_Coll(f"dp_grad_reducescatter{sfx}.{pre}b{j}", "reducescatter",
                                 n * layer_p * per_param, devs, (f"{bwd}.c{a + n - 1}",)))
        if rest_unit:
            reduces.append(_Coll(f"dp_grad_reducescatter{sfx}.{pre}b{len(starts)}",
                                 "reducescatter",
                                 rest_p * per_param, devs, sinks))
    else:
        name = f"dp_grad_reducescatter{sfx}" + (f".{pre[:-1]}" if pre else "")
        reduces.append(_Coll(name, "reducescatter", params * per_param, devs, sinks))
    return units, reduces


def _forward_of(g: WorkloadGraph, bwd: str) -> str | None:
    """The forward ``layers`` repeat whose backward is ``bwd`` (``<p>backward.<x>`` of
    ``<p><x>``)."""
    head, sep, tail = bwd.rpartition("backward.")
    name = head + tail if sep else None
    ok = name in g.g and "layers" in g.tags(name) and isinstance(g.item(name), Repeat)
    return name if ok else None


# -- graph surgery ----------------------------------------------------------------------------
def _unroll(g: WorkloadGraph, acc: str, keep: int
            ) -> tuple[WorkloadGraph, list[tuple[str, list[str]]]]:
    """``g`` with the last ``keep`` iterations of the accumulation repeat ``acc`` written out
    as top-level nodes named as the repeat's op instances are (``<acc>.<i>.<node>``), and the
    name prefix and nodes of each written-out iteration. Only the first micro-batch counts
    toward memory (the rest are tagged ``weights:shared``, ``activations:released``)."""
    out = WorkloadGraph(g.name, g.phase, dict(g.meta))
    exit_of: dict[str, list[str]] = {}
    scopes: list[tuple[str, list[str]]] = []
    for name in g.topo():
        data = g.g.nodes[name]
        ins = [x for p in g.g.predecessors(name) for x in exit_of[p]]
        item = data["item"]
        if name != acc:
            exit_of[name] = [_copy(out, name, item, ins, data["group"], data["tags"])]
            continue
        first = item.times - keep
        prev = ins
        if first > 0:
            prev = [out.add_repeat(name, item.block, first, ins, group=data["group"],
                                   tags=data["tags"])]
        block = item.block
        for i in range(first, item.times):
            extra = () if i == 0 else ("weights:shared", "activations:released")
            local: dict[str, str] = {}
            for b in block.topo():
                bd = block.g.nodes[b]
                bins = [local[p] for p in block.g.predecessors(b)] or prev
                local[b] = _copy(out, f"{name}.{i}.{b}", bd["item"], bins,
                                 bd["group"] or data["group"], (*bd["tags"], *extra))
            scopes.append((f"{name}.{i}.", list(local.values())))
            prev = [local[s] for s in block.sinks()]
        exit_of[name] = prev
    return out, scopes


def _cut(g: WorkloadGraph, split: dict[str, list[int]], items: dict[str, Op | Repeat]
         ) -> tuple[WorkloadGraph, dict[str, str], dict[str, str]]:
    """``g`` with each repeat of ``split`` cut into consecutive repeats ``<name>.c<j>`` of the
    given sizes and the ops of ``items`` replaced; and, per old name, the new first and last
    node."""
    out = WorkloadGraph(g.name, g.phase, dict(g.meta))
    exit_of: dict[str, str] = {}
    entry_of: dict[str, str] = {}
    for name in g.topo():
        data = g.g.nodes[name]
        ins = [exit_of[p] for p in g.g.predecessors(name)]
        item = items.get(name, data["item"])
        if name in split:
            entry_of[name] = f"{name}.c0"
            for j, n in enumerate(split[name]):
                ins = [out.add_repeat(f"{name}.c{j}", item.block, n, ins, group=data["group"],
                                      tags=data["tags"])]
            exit_of[name] = ins[0]
        else:
            exit_of[name] = entry_of[name] = _copy(out, name, item, ins, data["group"],
                                                   data["tags"])
    return out, entry_of, exit_of


def _copy(out: WorkloadGraph, name: str, item: Op | Repeat, ins: Sequence[str],
          group: Group | None, tags: tuple[str, ...]) -> str:
    if isinstance(item, Repeat):
        return out.add_repeat(name, item.block, item.times, ins, group=group, tags=tags)
    return out.add_op(name, item, ins, group=group, tags=tags)


# -- all replicas into one graph ----------------------------------------------------------------
def _merge(out: WorkloadGraph, prepared: Sequence[tuple[WorkloadGraph, list[_Coll]]],
           per: int, ranks: int) -> None:
    """Add each replica's nodes (``dp<r>.`` prefix, devices shifted) and the collectives over
    ``ranks`` replicas (more than those built when one stands for several) to ``out``, each as
    soon as its inputs exist: a replica's nodes keep their program order, a collective comes
    right after the last node it waits for (ties in creation order)."""
    dp = len(prepared)
    colls = prepared[0][1]
    dtype = get_dtype(str(out.meta.get("dtype", "bf16")))
    feeds: dict[str, list[_Coll]] = {}
    waiting: dict[str, list[int]] = {}  # node -> the collectives waiting for it
    for i, c in enumerate(colls):
        for n in c.before:
            feeds.setdefault(n, []).append(c)
        for n in c.after:
            waiting.setdefault(n, []).append(i)
    left = [len(c.after) * dp for c in colls]
    ready = [i for i, n in enumerate(left) if n == 0]
    heapq.heapify(ready)
    orders = [g.topo() for g, _ in prepared]
    pos = [0] * dp
    issued: set[str] = set()
    while ready or any(p < len(o) for p, o in zip(pos, orders, strict=True)):
        moved = bool(ready)
        while ready:
            c = colls[heapq.heappop(ready)]
            op = Collective(collective=c.kind, bytes=max(c.bytes, 1.0), devices=ranks,
                            dtype=dtype)
            ins = [f"dp{r}.{a}" for r in range(dp) for a in c.after]
            for dev in c.devices:
                out.add_op(f"{c.name}.d{dev}", op, ins,
                           group=tuple(dev + r * per for r in range(ranks)), tags=c.tags)
            issued.add(c.name)
        for r, (g, _) in enumerate(prepared):
            order = orders[r]
            while pos[r] < len(order):
                name = order[pos[r]]
                if any(c.name not in issued for c in feeds.get(name, ())):
                    break
                data = g.g.nodes[name]
                ins = [f"dp{r}.{p}" for p in g.g.predecessors(name)]
                ins += [f"{c.name}.d{dev}" for c in feeds.get(name, ()) for dev in c.devices]
                _copy(out, f"dp{r}.{name}", data["item"], ins, _shift(data["group"], r * per),
                      data["tags"])
                for i in waiting.get(name, ()):
                    left[i] -= 1
                    if left[i] == 0:
                        heapq.heappush(ready, i)
                pos[r] += 1
                moved = True
        if not moved:  # a collective waiting on a node that waits on it: a bug here
            stuck = [c.name for c, n in zip(colls, left, strict=True) if n][:3]
            raise WorkloadError(f"data_parallel: {out.name}: collectives {stuck} cannot be "
                                "placed")
