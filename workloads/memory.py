"""Memory footprint of a workload graph, per device.

What one device must hold to run its share of the graph (bytes):

- ``weights``: the parameters of the forward ops placed on it (a tied LM head counts once when
  the embedding it shares is on the same device), plus experts of a mixture-of-experts layer
  that this step does not route to (still resident);
- ``kv_cache``: the attention KV cache of prefill and decode steps;
- ``activations``: the largest set of tensors live during one op, plus, in a training step,
  the forward activations kept for the backward pass (with full recomputation, only each
  layer's input and one layer's activations: Chen et al. 2016; with selective recomputation,
  all but the outputs of the ops it re-runs, plus one layer's worth of those: Korthikanti et
  al. 2022, see :mod:`workloads.transforms.training`);
- ``gradients`` and ``optimizer_state`` (training): mixed-precision Adam keeps a gradient in the
  training dtype and fp32 master weights plus two fp32 moments, 2 + 12 bytes per parameter with
  bf16 weights, 16 in all (Rajbhandari et al., "ZeRO", SC 2020, sec. 3.1). Under data
  parallelism ``meta["zero"]`` shards them over the ``meta["dp"]`` replicas: stage 1 the
  optimizer state, stage 2 the gradients too, stage 3 the weights as well (each device then
  holds its shard plus the layers gathered in flight: :func:`zero3_weights`).

Placement comes from the graph's device groups (see :mod:`workloads.graph`): every device of a
node's group holds that node's share.

>>> from workloads.zoo import build
>>> fp = footprint_by_device(build("llama2-7b", phase="train", seq=256))[0]
>>> round((fp.weights + fp.gradients + fp.optimizer_state) / fp.params)
16
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads.graph import Group, Repeat, WorkloadGraph
from workloads.ops import Attention, Collective, MatMul, Op

__all__ = ["Footprint", "footprint_by_device", "footprint", "live_bytes",
           "OPTIMIZER_BYTES_PER_PARAM", "moe_idle", "idle_params", "zero3_weights"]

#: fp32 master weights + Adam's first and second moments (ZeRO, sec. 3.1).
OPTIMIZER_BYTES_PER_PARAM = 12.0


@dataclass(frozen=True)
class Footprint:
    """Bytes one device holds, by part (SI bytes)."""

    weights: float = 0.0
    kv_cache: float = 0.0
    activations: float = 0.0
    gradients: float = 0.0
    optimizer_state: float = 0.0
    params: float = 0.0
    parts: tuple[str, ...] = field(default=("weights", "kv_cache", "activations", "gradients",
                                            "optimizer_state"))

    @property
    def total(self) -> float:
        return (self.weights + self.kv_cache + self.activations + self.gradients
                + self.optimizer_state)

    def to_dict(self) -> dict[str, float]:
        d = {p: float(getattr(self, p)) for p in self.parts}
        d["total"] = self.total
        return d


def live_bytes(op: Op) -> float:
    """Activation bytes live while ``op`` runs: its activation inputs and its output."""
    if isinstance(op, Attention):  # Q, the new K/V and O (the cache is counted separately)
        kv_dt = op.kv_dtype or op.dtype
        new_kv = 2.0 * op.tokens * op.kv_heads * op.head_dim * kv_dt.bytes
        return 2.0 * op.output_bytes() + new_kv
    return op.min_bytes - op.weight_bytes()


def moe_idle(block: WorkloadGraph, resident: int) -> tuple[float, float]:
    """(parameters, weight bytes) of the experts a layer ``block`` holds but does not run this
    step: ``resident`` experts per device less the ones its expert GEMMs run (their batch),
    each as large as one expert of those GEMMs (so tensor-parallel shards and weight precision
    follow from the ops themselves)."""
    per_p = per_b = 0.0
    active = None
    for n in block.g.nodes:
        item = block.g.nodes[n]["item"]
        if "moe:expert" in block.g.nodes[n]["tags"] and isinstance(item, MatMul) and item.weight:
            per_p += item.params() / item.batch
            per_b += item.weight_bytes() / item.batch
            active = item.batch
    if active is None:
        return 0.0, 0.0
    idle = max(0, resident - active)
    return idle * per_p, idle * per_b


def _resident_experts(meta: dict) -> int:
    dims = meta.get("moe_dims") or {}
    return int(dims.get("experts", 0)) // max(1, int(meta.get("ep", 1)))


def idle_params(graph: WorkloadGraph, what: str = "params") -> float:
    """Parameters (or weight bytes) resident but not used this step: the experts of every
    ``layers`` repeat that the step's tokens do not route to."""
    resident = _resident_experts(graph.meta)
    if not resident:
        return 0.0
    out = 0.0
    for n in graph.g.nodes:
        item = graph.g.nodes[n]["item"]
        if "layers" in graph.g.nodes[n]["tags"] and isinstance(item, Repeat):
            p, b = moe_idle(item.block, resident)
            out += (p if what == "params" else b) * item.times
    return out


class _Acc:
    def __init__(self) -> None:
        self.weights = 0.0
        self.params = 0.0
        self.kv = 0.0
        self.live = 0.0
        self.stored = 0.0
        self.transient = 0.0      # recomputed activations of the layer in its backward
        self.layer_weights = 0.0  # weight bytes inside ``layers`` repeats
        self.layer_unit = 0.0     # the largest one layer's weight bytes


def _walk(graph: WorkloadGraph, group: Group, times: int, acc: dict[int, _Acc],
          train: bool, inference_kv: bool, placed: dict[str, Group], meta: dict,
          shared: bool = False, redone: frozenset[str] = frozenset()) -> None:
    """Accumulate ``graph``'s footprint into ``acc``; ``redone``: nodes of ``graph`` whose
    outputs are recomputed in the backward (selective recomputation), so not stored."""
    recompute = meta.get("recompute", "none")
    for name in graph.topo():
        data = graph.g.nodes[name]
        item, tags = data["item"], data["tags"]
        grp = data["group"] or group
        if "backward" in tags or "optimizer" in tags or "dp:collective" in tags:
            continue  # (data-parallel buffers are the ZeRO rules' concern)
        # a later micro-batch runs on the weights the first one holds
        shared_here = shared or "weights:shared" in tags
        # a pipeline schedule that has freed this micro-batch's activations (1F1B)
        keep = train and "activations:released" not in tags
        if isinstance(item, Repeat) and "accumulate" in tags:
            # micro-batches run one after another on the same weights: count one of them
            _walk(item.block, grp, times, acc, train, inference_kv, placed, meta, shared_here)
            continue
        if isinstance(item, Repeat):
            layers = "layers" in tags
            full = keep and recompute == "full" and layers
            inner_redo = _selective(item.block) if layers and recompute == "selective" \
                else frozenset()
            _walk(item.block, grp, times * item.times, acc, keep and not full, inference_kv,
                  placed, meta, shared_here, inner_redo)
            if full or (keep and inner_redo):
                block = item.block
                # full: keep each layer's input, recompute one layer's activations at a time;
                # selective: the recomputed ops' outputs of one layer at a time
                per_layer_in = sum(block._out_bytes(s) for s in block.sinks()) if full else 0.0
                redo = [n for n in block.g.nodes if full or n in inner_redo]
                one_layer = sum(_out_total(block, n) for n in redo)
                for d in grp:
                    acc[d].stored += times * item.times * per_layer_in
                    acc[d].transient = max(acc[d].transient, one_layer)
            if layers and not shared_here:
                unit = item.block.weight_bytes()
                for d in grp:
                    acc[d].layer_weights += times * item.times * unit
                    acc[d].layer_unit = max(acc[d].layer_unit, unit)
            if layers and not shared_here and _resident_experts(meta):
                p, b = moe_idle(item.block, _resident_experts(meta))
                for d in grp:
                    acc[d].params += times * item.times * p
                    acc[d].weights += times * item.times * b
                    acc[d].layer_weights += times * item.times * b
            continue
        placed[name] = grp
        tied_to = next((t[len("tied:"):] for t in tags if t.startswith("tied:")), None)
        if tied_to is not None:  # the shared node sits under the same prefix (dp<r>., mb<m>.)
            tied_to = name[: name.rfind(".") + 1] + tied_to
        for d in grp:
            a = acc.setdefault(d, _Acc())
            if not shared_here and (tied_to is None or d not in placed.get(tied_to, ())):
                a.weights += times * item.weight_bytes()
                a.params += times * item.params()
            if inference_kv and isinstance(item, Attention):
                a.kv += times * item.kv_cache_bytes()
            a.live = max(a.live, live_bytes(item))
            if keep and name not in redone and not _not_kept(graph, name, item):
                a.stored += times * item.output_bytes()


_REGATHERED = ("allgather", "allreduce", "reducescatter", "sendrecv")


def _not_kept(graph: WorkloadGraph, name: str, item: object) -> bool:
    """Outputs the backward pass does not keep (Korthikanti et al. 2022, sec. 4.2): a
    gathered or reduced tensor (sequence parallelism stores the sharded input and gathers it
    again in the backward; a reduced sum feeds a residual add whose own output is kept; a
    pipeline hand-off is the next stage's input, counted there), and the partial sums of a
    row-parallel GEMM that only feed such a reduction. All-to-all outputs (the tokens an
    expert's GEMMs read) are kept."""
    if isinstance(item, Collective):
        return item.collective in _REGATHERED
    succ = list(graph.g.successors(name))
    return bool(succ) and all(
        isinstance(graph.item(n), Collective) and graph.item(n).collective in _REGATHERED
        and "backward" not in graph.tags(n) for n in succ)


def _selective(block: WorkloadGraph) -> frozenset[str]:
    """The nodes of a layer block that selective recomputation re-runs (see
    :mod:`workloads.transforms.training`): non-GEMM ops other than the layer's output."""
    from workloads.transforms.training import selective_recomputed

    sinks = set(block.sinks())
    return frozenset(n for n in block.g.nodes if n not in sinks
                     and not isinstance(block.item(n), Repeat)
                     and selective_recomputed(block.item(n)))


def _out_total(block: WorkloadGraph, name: str) -> float:
    """Output bytes of one node, a nested repeat's every op counted."""
    item = block.item(name)
    if isinstance(item, Repeat):
        return sum(op.output_bytes() * n for op, n in _ops(item.block)) * item.times
    return item.output_bytes()


def _ops(graph: WorkloadGraph):
    from workloads.transforms.walk import ops_with_counts

    return ops_with_counts(graph)


def footprint_by_device(graph: WorkloadGraph) -> dict[int, Footprint]:
    """Per-device footprint of ``graph`` (every device any node is placed on)."""
    m = graph.meta
    train = graph.phase == "train"
    inference_kv = graph.phase in ("prefill", "decode")
    acc: dict[int, _Acc] = {d: _Acc() for d in graph.devices()}
    _walk(graph, (0,), 1, acc, train, inference_kv, {}, m)
    grad_bytes = float(m.get("grad_bytes_per_param", 2.0))
    zero, dp = int(m.get("zero", 0)), max(1, int(m.get("dp", 1)))
    opt_share = 1.0 / dp if zero >= 1 else 1.0    # ZeRO-1: optimizer state sharded
    grad_share = 1.0 / dp if zero >= 2 else 1.0   # ZeRO-2: gradients too
    out = {}
    for d, a in sorted(acc.items()):
        weights = a.weights
        if train and zero >= 3 and dp > 1:
            weights = zero3_weights(a.weights, a.layer_weights, a.layer_unit, dp)
        out[d] = Footprint(
            weights=weights, kv_cache=a.kv, activations=a.live + a.stored + a.transient,
            gradients=a.params * grad_bytes * grad_share if train else 0.0,
            optimizer_state=a.params * OPTIMIZER_BYTES_PER_PARAM * opt_share if train else 0.0,
            params=a.params)
    return out


def zero3_weights(weights: float, layer_weights: float, layer_unit: float, dp: int) -> float:
    """Weight bytes one device holds under ZeRO-3: its ``1/dp`` shard of ``weights``, plus the
    gathered parameters in flight. Data parallelism gathers one layer at a time and prefetches
    the next, and gathers the rest (embeddings, final norm, LM head: ``weights -
    layer_weights``) as one unit before the forward and before the backward; freeing each unit
    after use, at most two consecutive units are whole at once, the largest pair being the
    non-layer unit and the largest layer (``layer_unit``) (Rajbhandari et al. 2020, sec. 5.2;
    never more than the unsharded weights).

    >>> zero3_weights(100.0, 80.0, 10.0, 4)  # 25 sharded + 20 non-layer + 10 one layer
    55.0
    """
    buffer = max(0.0, weights - layer_weights) + layer_unit
    return min(weights, weights / dp + buffer)


def footprint(graph: WorkloadGraph) -> Footprint:
    """The footprint of the most loaded device."""
    return max(footprint_by_device(graph).values(), key=lambda f: f.total)
