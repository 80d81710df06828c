"""Pipeline-parallel training as a graph transform: stages, micro-batches and a schedule.

:func:`pipeline_train` takes the training graph of each micro-batch (forward, backward,
optimizer), cuts its ``layers`` repeat and the backward repeat into ``pp`` balanced stages,
places stage ``s`` on devices ``s * devices_per_stage ...``, and joins the stages with
point-to-point hand-offs (activations forward, their gradients backward). The embedding and its
backward run on the first stage; the final norm, LM head, loss and their backward on the last.
Each stage updates its own weights once, after its last backward.

The schedule is the order in which a stage runs its forward (F) and backward (B) chunks,
imposed as control dependencies; because every stream runs in program order, the pipeline
bubble then comes out of the discrete-event run:

- ``gpipe``: all forwards, then all backwards (Huang et al. 2019): every micro-batch's
  activations are held at once;
- ``1f1b``: ``pp - s - 1`` warm-up forwards on stage ``s``, then one forward and one backward in
  turn (Narayanan et al. 2021, PipeDream-flush): the same bubble, at most ``pp - s``
  micro-batches' activations in flight.

>>> from workloads.transforms.training import training_step
>>> from workloads.zoo import build
>>> mb = build("gpt2", phase="train", batch=1, seq=128)
>>> g = pipeline_train([mb] * 4, pp=2, schedule="1f1b")
>>> g.devices(), sorted(n for n in g.g.nodes if n.startswith("optimizer"))
((0, 1), ['optimizer.s0', 'optimizer.s1'])
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Collective, Elementwise, get_dtype
from workloads.transforms.pipeline_parallel import stage_layers
from workloads.transforms.walk import ops_with_counts

__all__ = ["pipeline_train", "schedule_order", "SCHEDULES"]

SCHEDULES = ("gpipe", "1f1b")
_SUMMED = ("batch", "samples", "tokens")


def schedule_order(schedule: str, stage: int, stages: int, microbatches: int
                   ) -> list[tuple[str, int]]:
    """The order of ``("F"|"B", micro-batch)`` chunks on ``stage``.

    >>> schedule_order("1f1b", 0, 3, 4)
    [('F', 0), ('F', 1), ('F', 2), ('B', 0), ('F', 3), ('B', 1), ('B', 2), ('B', 3)]
    >>> schedule_order("gpipe", 2, 3, 2)
    [('F', 0), ('F', 1), ('B', 0), ('B', 1)]
    """
    m = microbatches
    if schedule == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    if schedule == "1f1b":
        warm = min(stages - stage - 1, m)
        out = [("F", i) for i in range(warm)]
        for i in range(m):
            if warm + i < m:
                out.append(("F", warm + i))
            out.append(("B", i))
        return out
    raise WorkloadError(f"pipeline schedule must be one of {', '.join(SCHEDULES)}, got "
                        f"{schedule!r}")


def _shift(group: tuple[int, ...] | None, offset: int) -> tuple[int, ...]:
    return tuple(d + offset for d in (group or (0,)))


def _find(g: WorkloadGraph) -> tuple[str, str]:
    fwd = [n for n in g.g.nodes if "layers" in g.tags(n) and "backward" not in g.tags(n)
           and isinstance(g.item(n), Repeat)]
    if len(fwd) != 1:
        raise WorkloadError(f"{g.name}: pipeline parallelism needs one repeated 'layers' block "
                            f"(a transformer), found {len(fwd)}")
    bwd = f"backward.{fwd[0]}"
    if bwd not in g.g or not isinstance(g.item(bwd), Repeat):
        raise WorkloadError(f"{g.name}: pipeline training needs a training step graph "
                            "(forward, backward, optimizer)")
    return fwd[0], bwd


def pipeline_train(microbatches: Sequence[WorkloadGraph], pp: int,
                   devices_per_stage: int | None = None, schedule: str = "1f1b"
                   ) -> WorkloadGraph:
    """One training step of ``microbatches`` (training graphs of one micro-batch each)
    through ``pp`` stages under ``schedule``.

    Raises
    ------
    WorkloadError
        Fewer layers than stages, a graph that is not a transformer training step, an unknown
        schedule.
    """
    if not microbatches:
        raise WorkloadError("pipeline_train: no micro-batches")
    first = microbatches[0]
    if first.phase != "train":
        raise WorkloadError(f"{first.name}: pipeline_train needs training graphs")
    if schedule not in SCHEDULES:
        raise WorkloadError(f"pipeline schedule must be one of {', '.join(SCHEDULES)}, got "
                            f"{schedule!r}")
    fwd, bwd = _find(first)
    layers = first.item(fwd).times
    if layers < pp:
        raise WorkloadError(f"{first.name}: pp={pp} stages but only {layers} layers")
    per = devices_per_stage or len(first.devices())
    m_count = len(microbatches)
    out = WorkloadGraph(first.name, "train", dict(first.meta))
    for k in _SUMMED:
        if k in first.meta:
            out.meta[k] = sum(g.meta.get(k, 0) for g in microbatches)
    out.meta.update({"pp": pp, "microbatches": m_count, "pp_schedule": schedule})
    chunks: dict[tuple[str, int, int], tuple[str, str]] = {}  # (F/B, m, s) -> (first, last)
    stage_params = [0.0] * pp
    for m, g in enumerate(microbatches):
        if _find(g) != (fwd, bwd) or g.item(fwd).times != layers:
            raise WorkloadError("pipeline_train: micro-batches of different models")
        _add_microbatch(out, g, m, pp, per, fwd, bwd, chunks, stage_params if m == 0 else None,
                        schedule, m_count)
    # the schedule: each stage's chunks in order, as control dependencies
    for s in range(pp):
        order = schedule_order(schedule, s, pp, m_count)
        for (k1, m1), (k2, m2) in zip(order, order[1:]):
            out.add_order(chunks[(k1, m1, s)][1], chunks[(k2, m2, s)][0])
    # each stage updates its own weights after its last backward
    opt = next((first.item(n) for n in first.g.nodes if "optimizer" in first.tags(n)), None)
    od = opt.dtype if isinstance(opt, Elementwise) else get_dtype("fp32")
    group0 = first.g.nodes[fwd]["group"]
    for s in range(pp):
        kind, mb = schedule_order(schedule, s, pp, m_count)[-1]
        last = chunks[(kind, mb, s)][1]
        out.add_op(f"optimizer.s{s}", Elementwise(fn="adam", numel=max(1, round(stage_params[s])),
                                                  dtype=od, state_dtype=od),
                   [last], group=_shift(group0, s * per), tags=("optimizer",))
    out.meta["params_per_device"] = max(stage_params)
    return out


def _add_microbatch(out: WorkloadGraph, g: WorkloadGraph, m: int, pp: int, per: int, fwd: str,
                    bwd: str, chunks: dict, stage_params: list[float] | None, schedule: str,
                    m_count: int) -> None:
    pre = nx.ancestors(g.g, fwd)
    post = nx.descendants(g.g, bwd)
    opt = {n for n in g.g.nodes if "optimizer" in g.tags(n)}
    split = stage_layers(g.item(fwd).times, pp)
    boundary = g._out_bytes(fwd)
    dtype = get_dtype(str(g.meta.get("dtype", "bf16")))
    pfx = f"mb{m}."
    shared = ("weights:shared",) if m > 0 else ()
    exit_of: dict[str, str] = {}
    marks: dict[tuple[str, int], list[str]] = {}

    def place(key: tuple[str, int], name: str) -> None:
        marks.setdefault(key, []).append(name)

    def released(s: int) -> tuple[str, ...]:
        # 1F1B keeps at most pp - s micro-batches' activations on stage s
        return ("activations:released",) if schedule == "1f1b" and m >= pp - s else ()

    for name in g.topo():
        if name in opt:
            continue
        data = g.g.nodes[name]
        item, tags = data["item"], data["tags"]
        ins = [exit_of[p] for p in g.g.predecessors(name) if p in exit_of]
        if name in (fwd, bwd):
            forward = name == fwd
            stages = range(pp) if forward else range(pp - 1, -1, -1)
            prev = ins
            for s in stages:
                grp = _shift(data["group"], s * per)
                extra = (*shared, *released(s)) if forward else shared
                x = out.add_repeat(f"{pfx}stage{s}.{name}", item.block, split[s], prev,
                                   group=grp, tags=(*tags, *extra))
                place(("F" if forward else "B", s), x)
                if forward and stage_params is not None:
                    stage_params[s] += sum(op.params() * n for op, n in
                                           ops_with_counts(item.block)) * split[s]
                nxt = s + 1 if forward else s - 1
                if 0 <= nxt < pp:
                    pair = grp + _shift(data["group"], nxt * per)
                    send = Collective(collective="sendrecv", bytes=max(boundary, 1.0), devices=2,
                                      dtype=dtype)
                    x = out.add_op(f"{pfx}pp_{'fwd' if forward else 'bwd'}.s{s}", send, [x],
                                   group=pair, tags=("pp:collective",
                                                     *(() if forward else ("backward",))))
                prev = [x]
            exit_of[name] = prev[0]
            continue
        if name in pre:
            s, kind = 0, "F"
        elif name in post:
            s, kind = 0, "B"
        else:  # final norm, LM head, loss and their backward: the last stage
            s, kind = pp - 1, "B"
        grp = _shift(data["group"], s * per)
        extra = (*shared, *(released(s) if kind == "F" else ()))
        if isinstance(item, Repeat):
            x = out.add_repeat(pfx + name, item.block, item.times, ins, group=grp,
                               tags=(*tags, *extra))
        else:
            x = out.add_op(pfx + name, item, ins, group=grp, tags=(*tags, *extra))
        if stage_params is not None and "backward" not in tags and not isinstance(item, Repeat):
            stage_params[s] += item.params()
        place((kind, s), x)
        exit_of[name] = x
    for (kind, s), names in marks.items():
        # the chunk's first and last node in program order (creation order is topological)
        chunks[(kind, m, s)] = (names[0], names[-1])
