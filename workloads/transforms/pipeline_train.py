"""Pipeline-parallel training as a graph transform: stages, micro-batches and a schedule.

:func:`pipeline_train` takes the training graph of each micro-batch (forward, backward,
optimizer), cuts its ``layers`` repeat and the backward repeat into ``pp * virtual_stages``
balanced model chunks, places chunk ``c`` on the device group of stage ``c % pp`` (devices
``s * devices_per_stage ...``), and joins consecutive chunks with point-to-point hand-offs
(activations forward, their gradients backward). The embedding and its backward run with the
first chunk (stage 0); the final norm, LM head, loss and their backward with the last (stage
``pp - 1``). Each stage updates the weights of all its chunks once, after its last backward.

The schedule is the order in which a stage runs its forward (F) and backward (B) chunks,
imposed as control dependencies; because every stream runs in program order, the pipeline
bubble then comes out of the discrete-event run:

- ``gpipe``: all forwards, then all backwards (Huang et al. 2019): every micro-batch's
  activations are held at once;
- ``1f1b``: ``pp - s - 1`` warm-up forwards on stage ``s``, then one forward and one backward in
  turn (Narayanan et al. 2021, PipeDream-flush): the same bubble, at most ``pp - s``
  micro-batches' activations in flight;
- ``interleaved``: each stage holds ``v = virtual_stages`` chunks, so a micro-batch's forward
  wraps around the stages ``v`` times (Narayanan et al., SC'21, sec. 2.2.2; Megatron-LM's
  ``forward_backward_pipelining_with_interleaving``). Stage ``s`` runs
  ``min(2 (pp - s - 1) + (v - 1) pp, v m)`` warm-up chunk forwards, then 1F1B over chunks,
  taking micro-batches in groups of ``pp`` per chunk. The bubble shrinks ``v``-fold, to
  ``(pp - 1) / (v m + pp - 1)`` of the step, for ``v``-fold more hand-offs and more activations
  in flight. ``v = 1`` is 1F1B.

Activation memory follows the schedule (:func:`held_chunks`): on each stage, the chunk
forwards in flight (forward done, backward not yet) at the first moment their number peaks keep
their activations, with the hand-offs that feed them (and, on the last stage, the LM head and
loss, which run in the last chunk's B); every other forward is tagged ``activations:released``
(its memory is reused by the time it runs), so :func:`workloads.memory.footprint_by_device`
counts the schedule's peak: all ``m`` micro-batches for GPipe, ``min(pp - s, m)`` for 1F1B, and
``min(2 (pp - s - 1) + (v - 1) pp + 1, v m)`` chunks of ``L / (pp v)`` layers for interleaved,
which on stage 0 is ``1 + (pp - 1) / (pp v)`` times 1F1B's (Korthikanti et al. 2022).

>>> from workloads.zoo import build
>>> mb = build("gpt2", phase="train", batch=1, seq=128)
>>> g = pipeline_train([mb] * 4, pp=2, schedule="1f1b")
>>> g.devices(), sorted(n for n in g.g.nodes if n.startswith("optimizer"))
((0, 1), ['optimizer.s0', 'optimizer.s1'])
>>> g = pipeline_train([mb] * 4, pp=2, schedule="interleaved", virtual_stages=2)
>>> g.meta["virtual_stages"], [g.group_of(f"mb0.chunk{c}.layers") for c in range(4)]
(2, [(0,), (1,), (0,), (1,)])
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from workloads.errors import WorkloadError
from workloads.graph import Repeat, WorkloadGraph
from workloads.ops import Collective, Elementwise, get_dtype
from workloads.transforms.pipeline_parallel import stage_layers
from workloads.transforms.walk import ops_with_counts

__all__ = ["pipeline_train", "schedule_order", "chunk_order", "held_chunks", "SCHEDULES"]

SCHEDULES = ("gpipe", "1f1b", "interleaved")
_SUMMED = ("batch", "samples", "tokens")


def schedule_order(schedule: str, stage: int, stages: int, microbatches: int
                   ) -> list[tuple[str, int]]:
    """The order of ``("F"|"B", micro-batch)`` chunks on ``stage`` (one chunk per stage: gpipe,
    1f1b; see :func:`chunk_order` for the interleaved schedule).

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
    if schedule == "interleaved":
        raise WorkloadError("schedule_order: the interleaved schedule has several chunks per "
                            "stage; use chunk_order")
    raise WorkloadError(f"pipeline schedule must be one of {', '.join(SCHEDULES)}, got "
                        f"{schedule!r}")


def _check(schedule: str, pp: int, microbatches: int, virtual_stages: int) -> None:
    if schedule not in SCHEDULES:
        raise WorkloadError(f"pipeline schedule must be one of {', '.join(SCHEDULES)}, got "
                            f"{schedule!r}")
    v = virtual_stages
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise WorkloadError(f"virtual_stages must be a positive integer, got {v!r}")
    if v > 1 and schedule != "interleaved":
        raise WorkloadError(f"virtual_stages={v} needs schedule='interleaved', got "
                            f"{schedule!r}")
    if schedule == "interleaved" and microbatches % pp:
        # Megatron-LM: micro-batches go through each chunk in groups of pp
        raise WorkloadError(f"the interleaved schedule takes micro-batches in groups of pp: "
                            f"microbatches={microbatches} is not divisible by pp={pp}")


def chunk_order(schedule: str, stage: int, stages: int, microbatches: int,
                virtual_stages: int = 1) -> list[tuple[str, int, int]]:
    """The order of ``("F"|"B", micro-batch, model chunk)`` on ``stage`` of ``stages``.

    Model chunks are numbered along the layers, ``0 ... stages * virtual_stages - 1``; stage
    ``s`` holds chunks ``s, s + stages, ...``. The interleaved order is Megatron-LM's: virtual
    micro-batch ``k`` is micro-batch ``(k // (p v)) p + k % p`` on local chunk
    ``(k % (p v)) // p`` (reversed for backward), after ``min(2 (p - s - 1) + (v - 1) p, v m)``
    warm-up forwards; with ``virtual_stages=1`` it is 1F1B.

    Raises
    ------
    WorkloadError
        An unknown schedule, ``virtual_stages`` < 1 or > 1 without ``interleaved``, or
        micro-batches not divisible by ``stages`` for ``interleaved``.

    >>> " ".join(f"{k}{i}c{c}" for k, i, c in chunk_order("interleaved", 1, 2, 2, 2))
    'F0c1 F1c1 F0c3 B0c3 F1c3 B1c3 B0c1 B1c1'
    """
    _check(schedule, stages, microbatches, virtual_stages)
    p, v, m = stages, virtual_stages, microbatches
    if v == 1:
        base = "1f1b" if schedule == "interleaved" else schedule
        return [(k, i, stage) for k, i in schedule_order(base, stage, p, m)]
    total = m * v
    warm = min((p - stage - 1) * 2 + (v - 1) * p, total)
    seq = [("F", k) for k in range(warm)]
    for k in range(total - warm):
        seq += [("F", k + warm), ("B", k)]
    seq += [("B", k) for k in range(total - warm, total)]

    def unit(kind: str, k: int) -> tuple[str, int, int]:
        j = k % (p * v) // p
        if kind == "B":
            j = v - 1 - j
        return kind, k // (p * v) * p + k % p, j * p + stage

    return [unit(kind, k) for kind, k in seq]


def held_chunks(order: Sequence[tuple[str, int, int]]) -> set[tuple[int, int]]:
    """The ``(micro-batch, chunk)`` forwards in flight (forward done, backward not) when their
    number first peaks along ``order``: the activations a stage holds at its peak.

    >>> sorted(held_chunks(chunk_order("1f1b", 0, 2, 4)))
    [(0, 0), (1, 0)]
    """
    live: list[tuple[int, int]] = []
    best: list[tuple[int, int]] = []
    for kind, m, c in order:
        if kind == "F":
            live.append((m, c))
            if len(live) > len(best):
                best = list(live)
        elif (m, c) in live:
            live.remove((m, c))
    return set(best)


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
                   devices_per_stage: int | None = None, schedule: str = "1f1b",
                   virtual_stages: int = 1) -> WorkloadGraph:
    """One training step of ``microbatches`` (training graphs of one micro-batch each)
    through ``pp`` stages of ``virtual_stages`` model chunks each, under ``schedule``.

    Raises
    ------
    WorkloadError
        Fewer layers than model chunks, a graph that is not a transformer training step, an
        unknown schedule, ``virtual_stages`` < 1 or > 1 without ``interleaved``, micro-batches
        not divisible by ``pp`` for ``interleaved``.
    """
    if not microbatches:
        raise WorkloadError("pipeline_train: no micro-batches")
    first = microbatches[0]
    if first.phase != "train":
        raise WorkloadError(f"{first.name}: pipeline_train needs training graphs")
    m_count, v = len(microbatches), virtual_stages
    _check(schedule, pp, m_count, v)
    fwd, bwd = _find(first)
    layers = first.item(fwd).times
    if layers < pp * v:
        what = f"pp={pp} stages" if v == 1 else \
            f"pp={pp} x virtual_stages={v} = {pp * v} model chunks"
        raise WorkloadError(f"{first.name}: {what} but only {layers} layers")
    per = devices_per_stage or len(first.devices())
    out = WorkloadGraph(first.name, "train", dict(first.meta))
    for k in _SUMMED:
        if k in first.meta:
            out.meta[k] = sum(g.meta.get(k, 0) for g in microbatches)
    out.meta.update({"pp": pp, "microbatches": m_count, "pp_schedule": schedule,
                     "virtual_stages": v})
    orders = [chunk_order(schedule, s, pp, m_count, v) for s in range(pp)]
    held = set().union(*(held_chunks(o) for o in orders))
    chunks: dict[tuple[str, int, int], tuple[str, str]] = {}  # (F/B, m, c) -> (first, last)
    stage_params = [0.0] * pp
    for m, g in enumerate(microbatches):
        if _find(g) != (fwd, bwd) or g.item(fwd).times != layers:
            raise WorkloadError("pipeline_train: micro-batches of different models")
        _add_microbatch(out, g, m, pp, v, per, fwd, bwd, chunks,
                        stage_params if m == 0 else None, held)
    # the schedule: each stage's chunks in order, as control dependencies
    for order in orders:
        for a, b in zip(order, order[1:]):
            out.add_order(chunks[a][1], chunks[b][0])
    # each stage updates its own weights (all its chunks) after its last backward
    opt = next((first.item(n) for n in first.g.nodes if "optimizer" in first.tags(n)), None)
    od = opt.dtype if isinstance(opt, Elementwise) else get_dtype("fp32")
    group0 = first.g.nodes[fwd]["group"]
    for s, order in enumerate(orders):
        out.add_op(f"optimizer.s{s}", Elementwise(fn="adam", numel=max(1, round(stage_params[s])),
                                                  dtype=od, state_dtype=od),
                   [chunks[order[-1]][1]], group=_shift(group0, s * per), tags=("optimizer",))
    out.meta["params_per_device"] = max(stage_params)
    return out


def _add_microbatch(out: WorkloadGraph, g: WorkloadGraph, m: int, pp: int, v: int, per: int,
                    fwd: str, bwd: str, chunks: dict, stage_params: list[float] | None,
                    held: set[tuple[int, int]]) -> None:
    pre = nx.ancestors(g.g, fwd)
    post = nx.descendants(g.g, bwd)
    opt = {n for n in g.g.nodes if "optimizer" in g.tags(n)}
    n_chunks = pp * v
    split = stage_layers(g.item(fwd).times, n_chunks)
    boundary = g._out_bytes(fwd)
    dtype = get_dtype(str(g.meta.get("dtype", "bf16")))
    pfx = f"mb{m}."
    label = "stage" if v == 1 else "chunk"  # v = 1: chunk c is stage c
    shared = ("weights:shared",) if m > 0 else ()
    exit_of: dict[str, str] = {}
    marks: dict[tuple[str, int], list[str]] = {}

    def place(key: tuple[str, int], name: str) -> None:
        marks.setdefault(key, []).append(name)

    def released(c: int) -> tuple[str, ...]:
        # activations not in flight at the stage's peak (see held_chunks)
        return () if (m, c) in held else ("activations:released",)

    for name in g.topo():
        if name in opt:
            continue
        data = g.g.nodes[name]
        item, tags = data["item"], data["tags"]
        ins = [exit_of[p] for p in g.g.predecessors(name) if p in exit_of]
        if name in (fwd, bwd):
            forward = name == fwd
            order = range(n_chunks) if forward else range(n_chunks - 1, -1, -1)
            prev = ins
            for c in order:
                s = c % pp
                grp = _shift(data["group"], s * per)
                extra = (*shared, *released(c)) if forward else shared
                x = out.add_repeat(f"{pfx}{label}{c}.{name}", item.block, split[c], prev,
                                   group=grp, tags=(*tags, *extra))
                place(("F" if forward else "B", c), x)
                if forward and stage_params is not None:
                    stage_params[s] += sum(op.params() * n for op, n in
                                           ops_with_counts(item.block)) * split[c]
                nxt = c + 1 if forward else c - 1
                if 0 <= nxt < n_chunks and pp > 1:
                    pair = grp + _shift(data["group"], nxt % pp * per)
                    send = Collective(collective="sendrecv", bytes=max(boundary, 1.0), devices=2,
                                      dtype=dtype)
                    # a forward hand-off is the next chunk's input: held while that chunk is
                    kept = released(nxt) if forward else ("backward",)
                    x = out.add_op(f"{pfx}pp_{'fwd' if forward else 'bwd'}.{label[0]}{c}", send,
                                   [x], group=pair, tags=("pp:collective", *kept))
                prev = [x]
            exit_of[name] = prev[0]
            continue
        if name in pre:
            c, kind = 0, "F"
        elif name in post:
            c, kind = 0, "B"
        else:  # final norm, LM head, loss and their backward: the last chunk's backward
            c, kind = n_chunks - 1, "B"
        s = c % pp
        grp = _shift(data["group"], s * per)
        # forward ops (the LM head and loss too, run in the last chunk's B) keep activations
        extra = (*shared, *(released(c) if "backward" not in tags else ()))
        if isinstance(item, Repeat):
            x = out.add_repeat(pfx + name, item.block, item.times, ins, group=grp,
                               tags=(*tags, *extra))
        else:
            x = out.add_op(pfx + name, item, ins, group=grp, tags=(*tags, *extra))
        if stage_params is not None and "backward" not in tags and not isinstance(item, Repeat):
            stage_params[s] += item.params()
        place((kind, c), x)
        exit_of[name] = x
    for (kind, c), names in marks.items():
        # the chunk's first and last node in program order (creation order is topological)
        chunks[(kind, m, c)] = (names[0], names[-1])
