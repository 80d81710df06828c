"""Pipeline parallelism as a graph transform: layer stages on successive device groups.

:func:`pipeline_parallel` cuts the ``layers`` repeat of each micro-batch graph into ``pp``
balanced stages (``L // pp`` layers each, the first ``L % pp`` stages one more), places stage
``s`` on devices ``s * devices_per_stage ...`` (the graph's own tensor-parallel group shifted),
puts what comes before the layers (embeddings) on the first stage and what comes after (final
norm, LM head) on the last, and joins consecutive stages with a point-to-point send of the
boundary activations. With several micro-batches every stage works through them in order on
its own devices, so the pipeline's fill and drain (the "bubble") emerge from the discrete-event
run rather than from a formula (the GPipe forward schedule).

Forward-only graphs (``forward``, ``prefill``, ``decode``). Training schedules (GPipe and 1F1B
backward ordering, interleaved stages) belong to the scale-out training transform; asking for
one here is a clear error, not a wrong number.

Examples
--------
>>> from workloads.zoo import build
>>> g = pipeline_parallel([build("gpt2", seq=128)], pp=4)
>>> g.devices(), sorted(n for n in g.g.nodes if "send" in n)
((0, 1, 2, 3), ['pp_send.s0', 'pp_send.s1', 'pp_send.s2'])
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Collective, get_dtype

__all__ = ["pipeline_parallel", "stage_layers"]

_SUMMED = ("batch", "samples", "tokens")


def stage_layers(layers: int, pp: int) -> list[int]:
    """Layers per stage: balanced, the first ``layers % pp`` stages one more.

    >>> stage_layers(32, 3)
    [11, 11, 10]
    """
    base, extra = divmod(layers, pp)
    return [base + (1 if s < extra else 0) for s in range(pp)]


def _layers_node(g: WorkloadGraph) -> str:
    nodes = [n for n in g.g.nodes if "layers" in g.tags(n) and isinstance(g.item(n), Repeat)]
    if len(nodes) != 1:
        raise WorkloadError(f"{g.name}: pipeline parallelism needs one repeated 'layers' block "
                            f"(a transformer), found {len(nodes)}")
    return nodes[0]


def _shift(group: tuple[int, ...] | None, offset: int) -> tuple[int, ...]:
    return tuple(d + offset for d in (group or (0,)))


def pipeline_parallel(microbatches: Sequence[WorkloadGraph], pp: int,
                      devices_per_stage: int | None = None) -> WorkloadGraph:
    """``microbatches`` (graphs of one micro-batch each) run through ``pp`` stages.

    ``devices_per_stage`` defaults to the devices one micro-batch graph uses (its
    tensor-parallel group). A single graph with ``pp == 1`` is returned as is.

    Raises
    ------
    WorkloadError
        For a training graph, fewer layers than stages, a graph without a ``layers`` repeat,
        or micro-batches of different models.
    """
    if not microbatches:
        raise WorkloadError("pipeline_parallel: no micro-batches")
    first = microbatches[0]
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise WorkloadError(f"{first.name}: pp must be a positive integer, got {pp!r}")
    if pp == 1 and len(microbatches) == 1:
        return first
    if first.phase == "train":
        raise WorkloadError(f"{first.name}: pipeline parallelism of a training step (GPipe / "
                            "1F1B schedules) is not modelled yet; use tp and dp for training")
    per = devices_per_stage or len(first.devices())
    out = WorkloadGraph(first.name, first.phase, dict(first.meta))
    for k in _SUMMED:
        if k in first.meta:
            out.meta[k] = sum(g.meta.get(k, 0) for g in microbatches)
    out.meta["pp"] = pp
    out.meta["microbatches"] = len(microbatches)
    for m, g in enumerate(microbatches):
        if g.name != first.name or g.phase != first.phase:
            raise WorkloadError("pipeline_parallel: micro-batches of different graphs")
        _add_stages(out, g, pp, per, f"mb{m}." if len(microbatches) > 1 else "",
                    ("weights:shared",) if m > 0 else ())
    return out


def _add_stages(out: WorkloadGraph, g: WorkloadGraph, pp: int, per: int, pre: str,
                extra: tuple[str, ...]) -> None:
    """Add one micro-batch's stages; ``extra`` tags every node (later micro-batches reuse the
    first one's weights: ``weights:shared``)."""
    layers = _layers_node(g)
    rep: Repeat = g.item(layers)
    if rep.times < pp:
        raise WorkloadError(f"{g.name}: pp={pp} stages but only {rep.times} layers")
    before = nx.ancestors(g.g, layers)
    boundary = g._out_bytes(layers)
    dtype = get_dtype(str(g.meta.get("dtype", "bf16")))
    exit_of: dict[str, str] = {}
    for name in g.topo():
        data = g.g.nodes[name]
        ins = [exit_of[p] for p in g.g.predecessors(name)]
        if name == layers:
            prev = ins
            for s, n_layers in enumerate(stage_layers(rep.times, pp)):
                grp = _shift(data["group"], s * per)
                x = out.add_repeat(f"{pre}stage{s}.{name}", rep.block, n_layers, prev, group=grp,
                                   tags=(*data["tags"], *extra))
                if s < pp - 1:
                    pair = grp + _shift(data["group"], (s + 1) * per)
                    send = Collective(collective="sendrecv", bytes=max(boundary, 1.0),
                                      devices=2, dtype=dtype)
                    x = out.add_op(f"{pre}pp_send.s{s}", send, [x], group=pair,
                                   tags=("pp:collective",))
                prev = [x]
            exit_of[name] = prev[0]
            continue
        stage = 0 if name in before else pp - 1
        grp = _shift(data["group"], stage * per)
        item = data["item"]
        if isinstance(item, Repeat):
            exit_of[name] = out.add_repeat(pre + name, item.block, item.times, ins, group=grp,
                                           tags=(*data["tags"], *extra))
        else:
            exit_of[name] = out.add_op(pre + name, item, ins, group=grp,
                                       tags=(*data["tags"], *extra))
