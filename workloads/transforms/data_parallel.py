"""Data parallelism as a graph transform: replicas on disjoint device groups.

:func:`data_parallel` places replica ``r`` of a (possibly tensor- or pipeline-parallel) graph on
devices ``r * devices_per_replica ...`` and merges the replicas into one graph. Replicas may
differ (an uneven batch split gives some replicas one more sample). For a training step the
replicas' gradients are all-reduced over the data-parallel group before the optimizer update:
one all-reduce per device of a replica (each over the ``dp`` devices holding the same shard),
as in PyTorch DDP / Megatron without bucketing (bucketed overlap with the backward pass is a
refinement of the scale-out training work).

Examples
--------
>>> from workloads.zoo import build
>>> g = data_parallel([build("mlp", batch=4), build("mlp", batch=4)])
>>> g.devices(), g.meta["batch"], g.meta["dp"]
((0, 1), 8, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Collective, get_dtype

__all__ = ["data_parallel"]

_SUMMED = ("batch", "samples", "tokens")


def _shift(group: tuple[int, ...] | None, offset: int) -> tuple[int, ...]:
    return tuple(d + offset for d in (group or (0,)))


def data_parallel(replicas: Sequence[WorkloadGraph], devices_per_replica: int = 1,
                  zero: int = 0) -> WorkloadGraph:
    """One graph running ``replicas`` side by side (a single replica is returned as is).

    ``zero`` (training): 0 all-reduces the gradients; 1 and 2 (ZeRO, Rajbhandari et al. 2020)
    reduce-scatter them, let each replica update only its ``1/dp`` shard of the optimizer
    state (stage 2: of the gradients too), and all-gather the updated weights: the same
    traffic as an all-reduce, ``1/dp`` of the optimizer memory.

    Node names get a ``dp<r>.`` prefix. Meta: ``dp``, and ``batch``/``samples``/``tokens``
    summed over replicas; everything else from the first replica.

    Raises
    ------
    WorkloadError
        If the replicas are of different models or phases, a replica uses more devices than
        ``devices_per_replica``, or a training replica has no optimizer node.
    """
    if not replicas:
        raise WorkloadError("data_parallel: no replicas")
    if zero not in (0, 1, 2):
        raise WorkloadError(f"zero must be 0, 1 or 2 (stage 3's per-layer weight gathers are "
                            f"not modelled yet), got {zero!r}")
    if len(replicas) == 1:
        return replicas[0]
    first = replicas[0]
    for g in replicas:
        if (g.name, g.phase) != (first.name, first.phase):
            raise WorkloadError(f"data_parallel: replicas differ ({g.name}/{g.phase} vs "
                                f"{first.name}/{first.phase})")
        if max(g.devices()) >= devices_per_replica:
            raise WorkloadError(f"data_parallel: {g.name} uses devices {g.devices()}, more "
                                f"than devices_per_replica={devices_per_replica}")
    dp = len(replicas)
    out = WorkloadGraph(first.name, first.phase, dict(first.meta))
    for k in _SUMMED:
        if k in first.meta:
            out.meta[k] = sum(g.meta.get(k, 0) for g in replicas)
    out.meta["dp"] = dp
    out.meta["zero"] = zero if first.phase == "train" else 0
    train = first.phase == "train"
    optimizer_inputs: list[dict[str, list[str]]] = []
    for r, g in enumerate(replicas):
        off = r * devices_per_replica
        pre = f"dp{r}."
        opt_ins: dict[str, list[str]] = {}
        for name in g.topo():
            data = g.g.nodes[name]
            ins = [pre + p for p in g.g.predecessors(name)]
            if train and "optimizer" in data["tags"]:
                opt_ins[name] = ins
                continue
            grp = _shift(data["group"], off)
            item = data["item"]
            if isinstance(item, Repeat):
                out.add_repeat(pre + name, item.block, item.times, ins, group=grp,
                               tags=data["tags"])
            else:
                out.add_op(pre + name, item, ins, group=grp, tags=data["tags"])
        optimizer_inputs.append(opt_ins)
    if train:
        _gradient_allreduce(out, replicas, optimizer_inputs, devices_per_replica, zero)
    return out


def _gradient_allreduce(out: WorkloadGraph, replicas: Sequence[WorkloadGraph],
                        optimizer_inputs: list[dict[str, list[str]]], per: int, zero: int = 0
                        ) -> None:
    """Before each optimizer node (one per pipeline stage, or one), reduce its gradients over
    the replicas: one collective per device of its group, over the devices holding the same
    shard in every replica."""
    dp = len(replicas)
    first = replicas[0]
    opts = [n for n in first.topo() if "optimizer" in first.g.nodes[n]["tags"]]
    if not opts:
        raise WorkloadError(f"data_parallel: training graph {first.name} has no optimizer node")
    grad_per_param = float(first.meta.get("grad_bytes_per_param", 2.0))
    wdt = get_dtype(str(first.meta.get("weight_dtype") or first.meta.get("dtype", "bf16")))
    dtype = get_dtype(str(first.meta.get("dtype", "bf16")))
    kind = "reducescatter" if zero else "allreduce"
    suffix = (lambda n: "") if len(opts) == 1 else (lambda n: f".{n}")  # noqa: E731
    for opt_name in opts:
        opt_group = first.g.nodes[opt_name]["group"] or (0,)
        params = float(first.g.nodes[opt_name]["item"].numel) if len(opts) > 1 else \
            float(first.meta.get("params_per_device", 0.0))
        grad_bytes = params * grad_per_param
        every_input = [x for ins in optimizer_inputs for x in ins[opt_name]]
        reduces = []
        for d in opt_group:
            grp = tuple(d + r * per for r in range(dp))
            c = Collective(collective=kind, bytes=max(grad_bytes, 1.0), devices=dp,
                           dtype=dtype)
            reduces.append(out.add_op(f"dp_grad_{kind}{suffix(opt_name)}.d{d}", c, every_input,
                                      group=grp, tags=("backward", "dp:collective")))
        updates = []
        for r, g in enumerate(replicas):
            item = g.g.nodes[opt_name]["item"]
            if zero:  # each replica updates its 1/dp shard of the parameters
                item = replace(item, numel=max(1, -(-item.numel // dp)))
            updates.append(out.add_op(f"dp{r}.{opt_name}", item, reduces,
                                      group=_shift(opt_group, r * per),
                                      tags=g.g.nodes[opt_name]["tags"]))
        if zero:  # the updated weights, gathered back to every replica
            for d in opt_group:
                grp = tuple(d + r * per for r in range(dp))
                c = Collective(collective="allgather", bytes=max(params * wdt.bytes, 1.0),
                               devices=dp, dtype=dtype)
                out.add_op(f"dp_weight_allgather{suffix(opt_name)}.d{d}", c, updates,
                           group=grp, tags=("optimizer", "dp:collective"))
