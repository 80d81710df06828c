"""Expert parallelism for mixture-of-experts models as a graph transform.

Each of ``ep`` devices holds ``n_experts / ep`` experts and runs the rest of the model on its
own share of the tokens (data-parallel attention, as in DeepSpeed-MoE and Megatron's expert
parallelism). Before the experts an all-to-all sends every token's ``top_k`` copies to the
devices holding its experts (dispatch); after them a second all-to-all brings the results back
(combine). The tokens of all ``ep`` devices are routed together, so more experts are active per
step and each device runs ``ceil(active / ep)`` of them.

Examples
--------
>>> from workloads.zoo import build
>>> g = expert_parallel(build("mixtral-8x7b", phase="decode", batch=4, context=512), ep=4)
>>> g.devices(), g.meta["batch"], g.meta["ep"]
((0, 1, 2, 3), 16, 4)
"""

from __future__ import annotations

import math
from dataclasses import replace

from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Collective, Elementwise, MatMul, Softmax
from workloads.zoo.transformer import moe_active_experts

__all__ = ["expert_parallel", "ep_gradient_allreduce"]

_SUMMED = ("batch", "samples", "tokens")


def _rewrite_block(block: WorkloadGraph, ep: int, dims: dict, memo: dict) -> WorkloadGraph:
    key = id(block)
    if key in memo:
        return memo[key]
    out = WorkloadGraph(block.name, block.phase, dict(block.meta))
    exit_of: dict[str, str] = {}
    tokens = None
    for name in block.topo():
        data = block.g.nodes[name]
        item, tags = data["item"], data["tags"]
        if isinstance(item, Softmax) and item.cols == dims["experts"]:
            tokens = item.rows  # the router's top-k: one row per local token
        ins = [exit_of[p] for p in block.g.predecessors(name)]
        if isinstance(item, Repeat):
            exit_of[name] = out.add_repeat(name, _rewrite_block(item.block, ep, dims, memo),
                                           item.times, ins, group=data["group"], tags=tags)
            continue
        op = item
        if "moe:expert" in tags:
            if tokens is None:
                raise WorkloadError(f"{block.name}: expert op {name!r} before its router")
            tg, k, e = tokens * ep, dims["top_k"], dims["experts"]
            active = moe_active_experts(tg, e, k)
            local = math.ceil(active / ep)
            m = math.ceil(tg * k / active)
            if isinstance(op, MatMul):
                op = replace(op, m=m, batch=local)
                dims["weight_bytes_per_param"] = op.b_dtype.bytes
            elif isinstance(op, Elementwise):
                op = replace(op, numel=local * m * dims["d_ff"])
            if name.endswith(("gate_proj", "up_proj")):  # also the fused gate_up_proj
                ins = [_dispatch(out, ins, tokens, k, dims, ep, item.dtype)]
        if "moe:expert" not in tags and any(
                "moe:expert" in block.g.nodes[p]["tags"] for p in block.g.predecessors(name)):
            a2a = Collective(collective="alltoall", bytes=tokens * dims["top_k"] *
                             dims["d_model"] * item.dtype.bytes, devices=ep, dtype=item.dtype)
            ins = [out.add_op(f"{name}.ep_combine", a2a, ins, tags=("ep:collective",))]
        exit_of[name] = out.add_op(name, op, ins, group=data["group"], tags=tags)
    memo[key] = out
    return out


def _dispatch(out: WorkloadGraph, ins: list[str], tokens: int, k: int, dims: dict, ep: int,
              dtype) -> str:
    name = "experts.ep_dispatch"
    if name not in out.g:
        a2a = Collective(collective="alltoall", bytes=tokens * k * dims["d_model"] * dtype.bytes,
                         devices=ep, dtype=dtype)
        out.add_op(name, a2a, ins, tags=("ep:collective",))
    return name


def expert_parallel(graph: WorkloadGraph, ep: int) -> WorkloadGraph:
    """``graph`` (one device's share of the tokens) with its experts spread over ``ep``
    devices; ``ep == 1`` returns it unchanged.

    Raises
    ------
    WorkloadError
        If the model has no experts, ``ep`` does not divide them, or the graph is already
        tensor-parallel (combining the two is not modelled).
    """
    if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1:
        raise WorkloadError(f"{graph.name}: ep must be a positive integer, got {ep!r}")
    if ep == 1:
        return graph
    dims = dict(graph.meta.get("moe_dims") or {})
    if not dims:
        raise WorkloadError(f"{graph.name}: expert parallelism (ep={ep}) needs a "
                            "mixture-of-experts model")
    if dims["experts"] % ep:
        raise WorkloadError(f"{graph.name}: ep={ep} does not divide the "
                            f"{dims['experts']} experts")
    if graph.meta.get("tp", 1) != 1:
        raise WorkloadError(f"{graph.name}: expert parallelism together with tensor "
                            "parallelism is not modelled; use one of them")
    group = tuple(range(ep))
    out = WorkloadGraph(graph.name, graph.phase, dict(graph.meta))
    memo: dict = {}
    for name in graph.topo():
        data = graph.g.nodes[name]
        item = data["item"]
        ins = list(graph.g.predecessors(name))
        if isinstance(item, Repeat):
            out.add_repeat(name, _rewrite_block(item.block, ep, dims, memo), item.times, ins,
                           group=group, tags=data["tags"])
        else:
            out.add_op(name, item, ins, group=group, tags=data["tags"])
    m = out.meta
    for k in _SUMMED:
        if k in m:
            m[k] = m[k] * ep
    m["ep"] = ep
    # resident experts per device: experts / ep, of which the step uses ceil(active / ep)
    from workloads.memory import idle_params

    m["params_per_device"] = out.params() + idle_params(out)
    m["weight_bytes"] = out.weight_bytes() + idle_params(out, "weight_bytes")
    return out


def ep_gradient_allreduce(train: WorkloadGraph) -> WorkloadGraph:
    """A training step under expert parallelism: the weights every EP device replicates
    (attention, norms, router, embeddings) get their gradients all-reduced over the EP group
    before the optimizer; each expert's gradients stay on the device that holds it. Returns
    ``train`` with the all-reduce added (a new graph)."""
    ep = int(train.meta.get("ep", 1))
    if ep == 1 or train.phase != "train":
        return train
    from workloads.memory import idle_params
    from workloads.ops import get_dtype

    expert = idle_params(train)
    for name in train.g.nodes:
        item = train.item(name)
        if isinstance(item, Repeat) and "layers" in train.tags(name):
            expert += sum(
                train.item(name).block.item(k).params() * item.times
                for k in item.block.g.nodes if "moe:expert" in item.block.tags(k)
                and not isinstance(item.block.item(k), Repeat))
    shared = max(float(train.meta.get("params_per_device", 0.0)) - expert, 1.0)
    dtype = get_dtype(str(train.meta.get("dtype", "bf16")))
    out = WorkloadGraph(train.name, train.phase, dict(train.meta))
    opt = next(n for n in train.g.nodes if "optimizer" in train.tags(n))
    for name in train.topo():
        data = train.g.nodes[name]
        ins = list(train.g.predecessors(name))
        if name == opt:
            ar = Collective(collective="allreduce", bytes=shared * float(
                train.meta.get("grad_bytes_per_param", dtype.bytes)), devices=ep, dtype=dtype)
            ins = [out.add_op("ep_grad_allreduce", ar, ins, group=data["group"],
                              tags=("backward", "ep:collective"))]
        item = data["item"]
        if isinstance(item, Repeat):
            out.add_repeat(name, item.block, item.times, ins, group=data["group"],
                           tags=data["tags"])
        else:
            out.add_op(name, item, ins, group=data["group"], tags=data["tags"])
    return out
