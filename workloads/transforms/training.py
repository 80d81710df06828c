"""Training step: a forward graph plus its backward pass and an optimizer update.

:func:`training_step` copies the forward graph, then appends backward ops in reverse
topological order (a repeated block gets one repeated backward block), then one Adam update
over the parameters. Backward rules, per op kind (registered with :func:`backward_rule`):

- MatMul / Conv2d: a data-gradient (``dgrad``) and a weight-gradient (``wgrad``) op of the
  same shape class and the same MACs, so backward is ~2x forward matrix FLOPs;
- Attention: the five GEMMs of attention backward as flash-attention computes them --
  recompute ``S = QK^T``, ``dP = dO V^T``, ``dV = P^T dO``, ``dQ = dS K``, ``dK = dS^T Q``,
  about 2.5x the forward matrix FLOPs -- with the softmax backward
  ``dS = P * (dP - rowsum(dO * O))`` as a pointwise op between them. Unlike the fused forward
  op these are separate GEMMs, so their bytes include the score matrices (as in a non-fused
  kernel);
- streaming ops (elementwise, norms, softmax, pooling, collectives): the same op again (same
  bytes; Megatron's backward has one all-reduce per forward all-reduce);
- Embedding: a scatter-add of the output gradient into the table.

Backward ops that re-read a weight (dgrad, norm backward) report the weight's parameters too;
the train graph's ``meta["tied_params"]`` / ``meta["tied_weight_bytes"]`` are raised by those
amounts so ``graph.params()`` and ``graph.weight_bytes()`` still count each weight once.

Activation recomputation (``recompute``):

- ``none``: every forward activation is kept for the backward pass;
- ``full``: only each layer's input is kept; the backward of every layer first re-runs the
  layer's whole forward (activation checkpointing at layer boundaries; Chen et al. 2016);
- ``selective`` (after Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models"): inside each repeated layer block, the cheap non-GEMM forward ops -- the
  attention core (:class:`~workloads.ops.Attention`), softmax, activation functions and other
  elementwise ops, norms -- are re-run in the backward, each just before the first backward op
  that needs its output; the GEMMs are not, nor the layer's last op (its output is the next
  layer's input, kept anyway). The re-run ops' outputs are not stored: a layer keeps its input
  and its GEMMs' outputs, from which the re-run ops rebuild the GEMMs' inputs. The paper
  recomputes only the attention core (QK^T, softmax, dropout, attention over V), whose
  activations grow with the sequence squared; here attention is one fused flash-style op that
  keeps no score matrix and whose backward already recomputes it, so selective recomputation
  is widened to every non-GEMM op: 1-3% more step FLOPs for 60-75% of the activation memory
  of ``none`` (llama2-7b, gpt2; :func:`selective_recomputed` says which ops).

The backward repeat of a ``layers`` block is tagged ``backward:layers`` and its block's
``meta["layer_params"]`` holds one layer's parameters, so data parallelism can reduce the
gradients in buckets of layers as the backward pass produces them.

Out of scope: the data-parallel gradient reduction (:mod:`workloads.transforms.data_parallel`),
dropout, and the loss itself (negligible next to the LM head).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from workloads.dtypes import FP32, DType, get_dtype
from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import (
    Attention,
    Collective,
    Conv2d,
    Elementwise,
    Embedding,
    MatMul,
    Memcpy,
    Norm,
    Op,
    Pool,
    Softmax,
)
from workloads.transforms.walk import total

__all__ = ["training_step", "backward_ops", "backward_rule", "BackwardOp", "accumulate",
           "RECOMPUTE", "selective_recomputed"]


@dataclass(frozen=True)
class BackwardOp:
    """One op of a forward op's backward.

    ``input_grad``: it produces the gradient w.r.t. the forward op's input, so the backward of
    the ops feeding the forward op waits for it. ``stage``: it runs after every op of the same
    rule with a lower stage (e.g. attention's softmax backward after recomputing the scores).
    """

    suffix: str
    op: Op
    input_grad: bool = False
    stage: int = 0


_O = TypeVar("_O", bound=Op)
_Rule = Callable[[_O], list[BackwardOp]]
_RULES: dict[type[Op], Callable[[Any], list[BackwardOp]]] = {}


def backward_rule(op_type: type[_O]) -> Callable[[_Rule[_O]], _Rule[_O]]:
    """Register the backward rule of an op type; registering a type twice is an error."""
    def deco(fn: _Rule[_O]) -> _Rule[_O]:
        if op_type in _RULES:
            raise ValueError(f"backward rule for {op_type.__name__} registered twice")
        _RULES[op_type] = fn
        return fn
    return deco


def backward_ops(op: Op) -> list[BackwardOp]:
    """The backward ops of one forward op.

    Raises
    ------
    WorkloadError
        If the op kind has no backward rule (never silently skipped).
    """
    rule = _RULES.get(type(op))
    if rule is None:
        raise WorkloadError(f"training: no backward rule for op kind {op.kind!r}")
    return rule(op)


@backward_rule(MatMul)
def _matmul_bwd(op: MatMul) -> list[BackwardOp]:
    # C[m,n] = A[m,k] @ B[k,n]:  dA = dC @ B^T  (m x k, inner n),  dB = A^T @ dC  (k x n, inner m)
    dgrad = MatMul(m=op.m, n=op.k, k=op.n, batch=op.batch, weight=op.weight,
                   weight_dtype=op.weight_dtype, dtype=op.dtype)
    wgrad = MatMul(m=op.k, n=op.n, k=op.m, batch=op.batch, dtype=op.dtype)
    return [BackwardOp("dgrad", dgrad, input_grad=True), BackwardOp("wgrad", wgrad)]


@backward_rule(Conv2d)
def _conv_bwd(op: Conv2d) -> list[BackwardOp]:
    # dgrad is a transposed conv; modelled as a stride-1 conv over the output grid with the
    # forward's MACs and filter (for strided convs its output bytes are understated by
    # stride^2). wgrad has the forward's MACs and the same traffic (X + dY + dW = X + W + Y).
    pad = max(op.r, op.s) // 2
    dgrad = Conv2d(n=op.n, c=op.k, h=op.p, w=op.q, k=op.c, r=op.r, s=op.s, stride=1, pad=pad,
                   groups=op.groups, weight_dtype=op.weight_dtype, dtype=op.dtype)
    return [BackwardOp("dgrad", dgrad, input_grad=True),
            BackwardOp("wgrad", replace(op, bias=False))]


@backward_rule(Attention)
def _attention_bwd(op: Attention) -> list[BackwardOp]:
    if op.phase != "prefill" or op.context:
        raise WorkloadError("training: attention backward needs a prefill attention without a "
                            f"KV cache, got phase={op.phase!r} context={op.context}")
    qk, pv = op.as_gemms()  # qk: [b, seq*g, kv] from K=head_dim; pv: [b, seq*g, hd] from K=kv
    kv_side = MatMul(m=qk.n, n=op.head_dim, k=qk.m, batch=qk.batch, dtype=op.dtype)
    pairs = max(1, round(op.batch * op.heads * op.score_pairs))
    softmax_bwd = Elementwise(fn="mul", numel=pairs, dtype=op.dtype)
    return [BackwardOp("recompute_s", qk), BackwardOp("dp", qk),
            BackwardOp("softmax_bwd", softmax_bwd, stage=1),
            BackwardOp("dq", pv, input_grad=True, stage=2),
            BackwardOp("dk", kv_side, input_grad=True, stage=2),
            BackwardOp("dv", kv_side, input_grad=True, stage=2)]


@backward_rule(Embedding)
def _embedding_bwd(op: Embedding) -> list[BackwardOp]:
    add = Elementwise(fn="add", numel=op.tokens * op.dim, dtype=op.dtype)
    return [BackwardOp("scatter_add", add, input_grad=True)]


def _same(op: Op) -> list[BackwardOp]:
    return [BackwardOp("bwd", op, input_grad=True)]


for _t in (Elementwise, Norm, Softmax, Pool, Collective, Memcpy):
    backward_rule(_t)(_same)


def selective_recomputed(op: Op) -> bool:
    """Whether selective recomputation re-runs ``op`` in the backward pass (and so does not
    store its output): the non-GEMM compute ops of a layer."""
    return isinstance(op, (Attention, Softmax, Elementwise, Norm))


def _append_backward(dst: WorkloadGraph, src: WorkloadGraph, prefix: str,
                     entry: Iterable[str], recompute: str = "none",
                     redo: Callable[[Op], bool] | None = None) -> None:
    """Add the backward of ``src`` to ``dst``; ``src`` sinks' backward waits on ``entry``.

    With ``recompute="full"`` the backward of every ``layers`` repeat first re-runs the layer's
    forward (activation checkpointing at layer boundaries); with ``"selective"`` it re-runs the
    ops ``selective_recomputed`` picks, each just before the first backward op needing it.
    ``redo``: inside such a block, which forward ops to re-run (set by the recursion)."""
    entry = list(entry)
    grad_of: dict[str, list[str]] = {}  # forward node -> backward nodes giving its input grad
    redone: dict[str, str] = {}         # forward node -> its recomputed copy in dst

    def recomputed(name: str) -> str:
        if name not in redone:  # inputs first, so the copies run in forward order
            ins = [recomputed(p) for p in src.g.predecessors(name) if needs_redo(p)]
            data = src.g.nodes[name]
            redone[name] = dst.add_op(f"{prefix}recompute.{name}", data["item"], ins,
                                      group=data["group"], tags=(*data["tags"], "recompute"))
        return redone[name]

    sinks = set(src.sinks())  # a layer's output is the next layer's stored input

    def needs_redo(name: str) -> bool:
        item = src.g.nodes[name]["item"]
        return (redo is not None and name not in sinks and not isinstance(item, Repeat)
                and redo(item))

    for name in reversed(src.topo()):
        deps = [x for s in src.g.successors(name) for x in grad_of[s]] or entry
        item = src.g.nodes[name]["item"]
        base = f"{prefix}{name}"
        if isinstance(item, Repeat):
            block = WorkloadGraph(f"{item.block.name}.backward", "train", dict(item.block.meta))
            inner_entry: list[str] = []
            layers = "layers" in src.g.nodes[name]["tags"]
            if recompute == "full" and layers:
                inner_entry = _copy_nodes(block, item.block, "recompute.", ("recompute",))
            inner_redo = selective_recomputed if recompute == "selective" and layers else None
            _append_backward(block, item.block, "", inner_entry, redo=inner_redo)
            tags: tuple[str, ...] = ("backward",)
            if layers:  # one layer's parameters: data parallelism buckets gradients by layer
                block.meta["layer_params"] = total(item.block, lambda op: op.params())
                tags = ("backward", "backward:layers")
            grad_of[name] = [dst.add_repeat(base, block, item.times, deps,
                                            group=src.g.nodes[name]["group"], tags=tags)]
            continue
        # selective: re-run the forward ops whose outputs this op's backward reads (its inputs,
        # and its own output), just before it
        redo_deps = [recomputed(x) for x in (*src.g.predecessors(name), name) if needs_redo(x)]
        stages: dict[int, list[BackwardOp]] = {}
        for bop in backward_ops(item):
            stages.setdefault(bop.stage, []).append(bop)
        carried, prev = [], deps
        for i, stage in enumerate(sorted(stages)):  # each stage waits for the one before
            ins = [*prev, *redo_deps] if i == 0 else prev
            names = [dst.add_op(f"{base}.{b.suffix}", b.op, ins, tags=("backward", b.suffix),
                                group=src.g.nodes[name]["group"]) for b in stages[stage]]
            carried += [n for n, b in zip(names, stages[stage], strict=True) if b.input_grad]
            prev = names
        grad_of[name] = carried or prev


def _copy_nodes(dst: WorkloadGraph, src: WorkloadGraph, prefix: str, tags: tuple[str, ...]
                ) -> list[str]:
    """Copy ``src``'s nodes into ``dst`` under ``prefix``; returns the copies of its sinks."""
    for n in src.topo():
        data = src.g.nodes[n]
        ins = [f"{prefix}{p}" for p in src.g.predecessors(n)]
        item = data["item"]
        if isinstance(item, Repeat):
            dst.add_repeat(f"{prefix}{n}", item.block, item.times, ins, group=data["group"],
                           tags=(*data["tags"], *tags))
        else:
            dst.add_op(f"{prefix}{n}", item, ins, group=data["group"], tags=(*data["tags"], *tags))
    return [f"{prefix}{s}" for s in src.sinks()]


#: activation recomputation policies (see the module docstring)
RECOMPUTE = ("none", "selective", "full")


def training_step(forward: WorkloadGraph, *, params: float | None = None,
                  optimizer_dtype: str | DType = FP32, recompute: str = "none"
                  ) -> WorkloadGraph:
    """Forward graph + backward pass + Adam update as one ``train``-phase graph.

    Parameters
    ----------
    forward:
        The forward graph of one step (every token through the LM head for language models).
    params:
        Parameters this device updates; default ``forward.params()`` (pass it for MoE graphs,
        whose forward holds only the experts active in the step).
    optimizer_dtype:
        Precision of the Adam moments and master weights (mixed-precision training: fp32).
    recompute:
        ``none`` keeps every forward activation for the backward pass; ``full`` keeps only each
        layer's input and re-runs the layer's forward before its backward (about a third
        more compute for much less activation memory; Chen et al. 2016); ``selective``
        re-runs only the non-GEMM ops of each layer (a few percent more compute, well under
        the activation memory of ``none``; see the module docstring).

    Raises
    ------
    WorkloadError
        For an unknown ``recompute`` or an op with no backward rule.
    """
    if recompute not in RECOMPUTE:
        raise WorkloadError(f"{forward.name}: recompute must be one of {', '.join(RECOMPUTE)}, "
                            f"got {recompute!r}")
    train = WorkloadGraph(forward.name, "train", dict(forward.meta))
    train.meta["phase"] = "train"
    train.meta["recompute"] = recompute
    # gradients are kept in the training dtype (mixed precision; ZeRO sec. 3.1)
    train.meta["grad_bytes_per_param"] = float(get_dtype(str(forward.meta.get("dtype", "bf16"))
                                                         ).bytes)
    for name in forward.topo():
        data = forward.g.nodes[name]
        item = data["item"]
        ins = list(forward.g.predecessors(name))
        if isinstance(item, Repeat):
            train.add_repeat(name, item.block, item.times, ins, group=data["group"],
                             tags=data["tags"])
        else:
            train.add_op(name, item, ins, group=data["group"], tags=data["tags"])
    fwd_params, fwd_wbytes = forward.params(), forward.weight_bytes()
    _append_backward(train, forward, "backward.", forward.sinks(), recompute)
    # Backward ops re-reading weights report them again: count each weight once.
    train.meta["tied_params"] = total(train, lambda op: op.params()) - fwd_params
    train.meta["tied_weight_bytes"] = total(train, lambda op: op.weight_bytes()) - fwd_wbytes
    n = round(fwd_params if params is None else params)
    if n > 0:
        # the data-parallel gradient reduction is added by data_parallel, before this update
        od = get_dtype(optimizer_dtype)
        # every device holding a shard updates it (the whole tensor-parallel group)
        train.add_op("optimizer.adam", Elementwise(fn="adam", numel=n, dtype=od, state_dtype=od),
                     train.sinks(), group=forward.devices(), tags=("optimizer",))
    return train


def accumulate(train: WorkloadGraph, steps: int) -> WorkloadGraph:
    """Gradient accumulation: the forward and backward of ``steps`` micro-batches one after
    another (gradients summed in place), then one optimizer update. ``steps == 1`` returns
    ``train`` unchanged.

    Raises
    ------
    WorkloadError
        If ``train`` is not a training step or ``steps`` is not a positive integer.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise WorkloadError(f"{train.name}: accumulation steps must be a positive integer, "
                            f"got {steps!r}")
    if steps == 1:
        return train
    if train.phase != "train":
        raise WorkloadError(f"{train.name}: gradient accumulation needs a training step")
    opt = [n for n in train.g.nodes if "optimizer" in train.g.nodes[n]["tags"]]
    groups = {train.g.nodes[n]["group"] for n in train.g.nodes if n not in opt}
    if len(groups) > 1:
        raise WorkloadError(f"{train.name}: gradient accumulation over a graph placed on "
                            "several device groups (pipeline stages) is not modelled yet")
    group = groups.pop() if groups else None
    micro = WorkloadGraph(f"{train.name}.microbatch", "train", dict(train.meta))
    # the block inherits its placement from the repeat, so data parallelism can move it
    _copy_nodes(micro, _without(train, set(opt), strip_groups=True), "", ())
    out = WorkloadGraph(train.name, "train", dict(train.meta))
    rep = out.add_repeat("microbatches", micro, steps, group=group, tags=("accumulate",))
    for n in opt:
        data = train.g.nodes[n]
        out.add_op(n, data["item"], [rep], group=data["group"], tags=data["tags"])
    for k in ("batch", "samples", "tokens"):
        if k in out.meta:
            out.meta[k] = out.meta[k] * steps
    out.meta["accumulation_steps"] = steps
    return out


def _without(graph: WorkloadGraph, drop: set[str], strip_groups: bool = False
             ) -> WorkloadGraph:
    g = WorkloadGraph(graph.name, graph.phase, dict(graph.meta))
    for n in graph.topo():
        if n in drop:
            continue
        data = graph.g.nodes[n]
        ins = [p for p in graph.g.predecessors(n) if p not in drop]
        grp = None if strip_groups else data["group"]
        if isinstance(data["item"], Repeat):
            g.add_repeat(n, data["item"].block, data["item"].times, ins, group=grp,
                         tags=data["tags"])
        else:
            g.add_op(n, data["item"], ins, group=grp, tags=data["tags"])
    return g
