"""Plan: one deployment of a workload on a system, validated once, then built into a graph.

A :class:`Plan` is a frozen, picklable description (system, parallel layout, precision, phase,
batch and shapes). :func:`make_plan` validates the options and chooses what was left open (the
tensor-parallel degree, data-parallel replicas); :meth:`Plan.build` makes the graph by running
the workload transforms in a fixed order:

    zoo builder (unsharded) -> tensor_parallel -> prune (weight sparsity, inference)
        -> training_step -> fuse_epilogues -> pipeline_parallel (micro-batches)
        -> data_parallel (replicas)

and :func:`check_capacity` checks every device's footprint (weights, KV cache, activations,
gradients, optimizer state) against its memory before anything is simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from simulator.arch.spec import System
from simulator.errors import CapacityError, HwsimError, WorkloadError
from simulator.units import format_quantity
from workloads.graph import WorkloadGraph
from workloads.memory import Footprint, footprint_by_device
from workloads.ops import Sparsity, parse_sparsity
from workloads.seqlens import SeqLenDist, resolve_seq_lens

__all__ = ["Layout", "Plan", "make_plan", "check_capacity", "auto_dtype", "with_repeats"]


@dataclass(frozen=True)
class Layout:
    """How the devices are used: ``tp`` x ``pp`` x ``ep`` devices per replica, ``dp``
    replicas, and the micro-batches each pipeline replica splits its batch into."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    microbatches: int = 1
    ep: int = 1

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.pp * self.ep

    @property
    def devices(self) -> int:
        return self.devices_per_replica * self.dp

    def describe(self) -> str:
        parts = [f"{k} {v}" for k, v in (("tensor-parallel", self.tp),
                                         ("pipeline-parallel", self.pp),
                                         ("expert-parallel", self.ep),
                                         ("data-parallel", self.dp)) if v > 1]
        if self.microbatches > 1:
            parts.append(f"{self.microbatches} micro-batches")
        return ", ".join(parts) or "one device"


@dataclass(frozen=True)
class Plan:
    """A validated deployment. ``workload`` is a shipped model name or config path."""

    workload: str
    system: System
    layout: Layout
    phase: str
    batch: int
    dtype: str
    seq: int | None = None
    context: int | None = None
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    image_size: int | None = None
    recompute: str = "none"
    fuse: bool = True
    # Q/K/V as one GEMM and gate/up as one GEMM (vLLM, Megatron-LM); False: one per projection
    fuse_projections: bool = True
    dataflow: str | None = None
    micro_batch: int | None = None  # training: gradient accumulation over micro-batches
    zero: int = 0                   # training: ZeRO stage over the data-parallel replicas
    sequence_parallel: bool = False  # Megatron sequence parallelism in the tp regions
    schedule: str = "1f1b"          # pipeline-parallel training: gpipe | 1f1b | interleaved
    virtual_stages: int = 1         # interleaved: model chunks per pipeline device
    bucket_bytes: float | None = 25e6  # data-parallel gradient buckets (PyTorch DDP default)
    attention: str = "flash"        # flash (fused) | materialized (scores through HBM)
    # fold symmetric devices and collapse repeated blocks into macro ops (the fast path of
    # large training runs: workloads/transforms/fold.py, simulator/engine/blocks.py)
    fast: bool = False
    # ranking only (hwsim train --search): collapse every repeated block, also where its
    # collectives share ports with pipeline or data-parallel transfers (an approximation)
    screen: bool = False
    # pruned weights (workloads/transforms/prune.py): N:M or unstructured; None = dense
    sparsity: Sparsity | None = None
    # variable-length samples run packed (workloads/seqlens.py); None = every sample `seq`
    seq_lens: SeqLenDist | None = None

    def replica_batches(self) -> tuple[int, ...]:
        """Samples per data-parallel replica: as even as possible, summing to ``batch``."""
        q, r = divmod(self.batch, self.layout.dp)
        return tuple(q + 1 if i < r else q for i in range(self.layout.dp))

    def build(self) -> WorkloadGraph:
        """The graph of this deployment over all its devices (see the module docstring)."""
        return _build(self)


def _model(plan: Plan, batch: int, tp: int = 1, ep: int = 1) -> WorkloadGraph:
    """The zoo's unsharded model, then tensor or expert parallelism, then the training step
    (so the backward pass and the optimizer see the sharded model)."""
    from workloads.transforms.expert_parallel import ep_gradient_allreduce, expert_parallel
    from workloads.transforms.tensor_parallel import tensor_parallel
    from workloads.transforms.training import training_step
    from workloads.zoo import build_model

    g = build_model(plan.workload, phase=plan.phase, batch=batch, seq=plan.seq,
                    context=plan.context, dtype=plan.dtype, weight_dtype=plan.weight_dtype,
                    kv_dtype=plan.kv_dtype, tp=tp, image_size=plan.image_size,
                    fuse_projections=plan.fuse_projections, seq_lens=plan.seq_lens)
    g = expert_parallel(tensor_parallel(g, tp, plan.sequence_parallel), ep)
    if plan.sparsity is not None:
        from workloads.transforms.prune import prune

        g = prune(g, plan.sparsity)
    if plan.attention == "materialized":
        from workloads.transforms.attention import materialize_attention

        g = materialize_attention(g)
    if plan.phase == "train":
        g = training_step(g, params=g.meta["params_per_device"], recompute=plan.recompute)
        g = ep_gradient_allreduce(g)
    return g


@lru_cache(maxsize=16)
def _shared_model(key: Plan, batch: int, tp: int, fuse: bool) -> WorkloadGraph:
    """:func:`_model` (its epilogues fused if ``fuse``), memoised on what shapes it (``key``:
    the plan without its batch, layout and fast-path flags), so that the short runs of one
    long pipeline or accumulation share one graph, and the costs of its repeated blocks.
    Graphs are not modified once built."""
    from workloads.transforms.fuse import fuse_epilogues

    g = _model(key, batch, tp)
    return fuse_epilogues(g) if fuse else g


def _model_key(plan: Plan) -> Plan:
    return replace(plan, batch=1, layout=Layout(), fast=False, screen=False)


def _replica(plan: Plan, batch: int) -> WorkloadGraph:
    from workloads.transforms.fuse import fuse_epilogues
    from workloads.transforms.pipeline_parallel import pipeline_parallel

    lay = plan.layout
    if lay.ep > 1:
        if batch % lay.ep:
            raise HwsimError(f"--ep {lay.ep}: each expert-parallel device takes an equal share "
                             f"of the batch, but a replica's batch is {batch}")
        g = _model(plan, batch // lay.ep, ep=lay.ep)
        return fuse_epilogues(g) if plan.fuse else g
    if plan.phase == "train" and lay.pp > 1:
        from workloads.transforms.pipeline_train import pipeline_train

        key = _model_key(plan)
        mbs_t = _split(batch, lay.microbatches)
        return pipeline_train([_shared_model(key, b, lay.tp, plan.fuse) for b in mbs_t],
                              lay.pp, lay.tp,
                              plan.schedule,
                              virtual_stages=plan.virtual_stages)
    if plan.phase == "train" and plan.micro_batch and plan.micro_batch < batch:
        from workloads.transforms.training import accumulate

        if batch % plan.micro_batch:
            raise HwsimError(f"--micro-batch {plan.micro_batch} does not divide a replica's "
                             f"batch of {batch}")
        g = accumulate(_shared_model(_model_key(plan), plan.micro_batch, lay.tp, False),
                       batch // plan.micro_batch)
        return fuse_epilogues(g) if plan.fuse else g
    mbs = _split(batch, lay.microbatches) if lay.pp > 1 else (batch,)
    graphs = []
    cache: dict[int, WorkloadGraph] = {}
    for b in mbs:
        if b not in cache:
            g = _model(plan, b, lay.tp)
            cache[b] = fuse_epilogues(g) if plan.fuse else g
        graphs.append(cache[b])
    if lay.pp > 1:
        return pipeline_parallel(graphs, lay.pp, devices_per_stage=lay.tp)
    return graphs[0]


def _split(n: int, parts: int) -> tuple[int, ...]:
    q, r = divmod(n, parts)
    return tuple(q + 1 if i < r else q for i in range(parts))


def _build(plan: Plan) -> WorkloadGraph:
    from workloads.transforms.data_parallel import data_parallel

    lay = plan.layout
    batches = plan.replica_batches()
    replicas = {b: _replica(plan, b) for b in set(batches)}
    # the fast path builds one of identical replicas; the fold below simulates one of each
    one = plan.fast and lay.dp > 1 and lay.ep == 1 and len(replicas) == 1
    graph = data_parallel([replicas[batches[0]]] if one else [replicas[b] for b in batches],
                          lay.devices_per_replica, zero=plan.zero,
                          bucket_bytes=plan.bucket_bytes, stand_for=lay.dp if one else 1)
    graph.meta["layout"] = plan.layout
    if plan.fast:
        from workloads.transforms.fold import fold_symmetric

        folded = None if lay.ep > 1 else fold_symmetric(
            graph, unit=lay.tp, period=lay.devices_per_replica if lay.dp > 1 else None,
            replicas=lay.dp if one else 1)
        if folded is None and one:  # cannot happen for identical replicas: build them all
            from dataclasses import replace

            return _build(replace(plan, fast=False))
        graph = folded if folded is not None else graph
        graph.meta["collapse"] = True
        graph.meta["collapse_all"] = plan.screen
    return graph


def auto_dtype(system: System, requested: str | None) -> str:
    """``requested``, or for ``None``/``"auto"`` the part's natural precision: int8 on FPGAs and
    ASICs (inference designs), else bf16 (or fp16) where the matrix units run it natively,
    else int8 (TPU v1), else fp32."""
    if requested not in (None, "auto"):
        return str(requested)
    order = ("int8", "bf16", "fp16", "fp32") if system.device.kind in ("fpga", "asic") \
        else ("bf16", "fp16", "int8", "fp32")
    for d in order:
        if system.device.native_peak(d, "matrix") > 0:
            return d
    return "fp32"


def _positive(name: str, v: Any, allow_none: bool = True) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise HwsimError(f"--{name} must be a positive integer, got {v!r}")


#: Pipeline stage passes (micro-batches x stages) one run simulates: each is a few events.
MAX_PIPELINE_CHUNKS = 200_000


def make_plan(workload: str, system: System, *, phase: str = "auto", batch: int = 1,
              seq: int | None = None, context: int | None = None, dtype: str | None = None,
              weight_dtype: str | None = None, kv_dtype: str | None = None,
              tp: int | None = None, pp: int = 1, dp: int | None = None,
              microbatches: int = 1, ep: int = 1, image_size: int | None = None,
              recompute: str = "none", fuse: bool = True, dataflow: str | None = None,
              micro_batch: int | None = None, zero: int = 0,
              sequence_parallel: bool = False, schedule: str = "1f1b",
              virtual_stages: int | None = None, bucket_bytes: float | None = 25e6,
              attention: str = "flash", sparsity: str | float | Sparsity | None = None,
              fuse_projections: bool = True, seq_lens: Any = None) -> Plan:
    """Validate the options and fill in the layout.

    With no ``tp`` the largest power-of-two share of one node's devices that the model splits
    evenly over is used (latency first; tensor parallelism across nodes would cross the slow
    network); with no ``dp`` the devices left over serve data-parallel replicas that split the
    batch (at most one replica per sample, and with micro-batches at least one sample per
    micro-batch). CNNs and MLPs are not tensor-parallel: on a system they run one replica per
    device. ``sparsity`` (``"2:4"``, a fraction of weights pruned such as ``0.7``, or a
    :class:`~workloads.ops.Sparsity`) prunes the weights with
    :func:`workloads.transforms.prune.prune` (inference phases only). ``seq_lens`` (a dataset
    name, a file of lengths, a list, see :mod:`workloads.seqlens`) runs variable-length
    samples packed instead of padding each to ``seq``.

    Raises
    ------
    HwsimError
        A degree that is not a positive integer, a layout needing more devices than the
        system has, an option that does not apply to the phase.
    WorkloadError
        An unknown model, or a ``tp`` that does not divide the model.
    """
    for name, v in (("batch", batch), ("pp", pp), ("microbatches", microbatches), ("ep", ep)):
        _positive(name, v, allow_none=False)
    for name, v in (("tp", tp), ("dp", dp)):
        _positive(name, v)
    n = system.count
    if tp is not None and tp * pp > n:
        raise HwsimError(f"--tp {tp} x --pp {pp} needs {tp * pp} devices but {system.name} has "
                         f"{n}")
    if pp > n:
        raise HwsimError(f"--pp must be between 1 and the {n} device(s) of {system.name}, "
                         f"got {pp}")
    if ep > 1 and ((tp or 1) > 1 or pp > 1):
        raise HwsimError("--ep together with --tp or --pp is not modelled; use expert "
                         "parallelism with data parallelism only")
    if ep > 1:
        tp = 1
    if schedule not in ("gpipe", "1f1b", "interleaved"):
        raise HwsimError(f"--schedule must be gpipe, 1f1b or interleaved, got {schedule!r}")
    if virtual_stages is not None:
        _positive("virtual-stages", virtual_stages, allow_none=False)
        if schedule != "interleaved" and virtual_stages > 1:
            raise HwsimError(f"--virtual-stages {virtual_stages} needs --schedule interleaved "
                             f"(got {schedule})")
    if schedule == "interleaved" and (phase != "train" or pp == 1):
        raise HwsimError("--schedule interleaved applies to pipeline-parallel training "
                         "(--pp > 1)")
    v = virtual_stages or (2 if schedule == "interleaved" else 1)
    if micro_batch is not None:
        _positive("micro-batch", micro_batch, allow_none=False)
    pipe_micro = None  # pipeline training: the micro-batches are the pipeline's (Megatron)
    if phase == "train" and pp > 1 and micro_batch is not None:
        if microbatches == 1:
            pipe_micro = micro_batch
        micro_batch = None
    if microbatches > 1 and pp == 1:
        raise HwsimError("--microbatches applies to pipeline parallelism (--pp > 1) only")
    if microbatches > batch:
        raise HwsimError(f"--microbatches {microbatches} exceeds the batch {batch}")
    if attention not in ("flash", "materialized"):
        raise HwsimError(f"--attention must be flash or materialized, got {attention!r}")
    if recompute not in ("none", "selective", "full"):
        raise HwsimError(f"--recompute must be none, selective or full, got {recompute!r}")
    if bucket_bytes is not None and (isinstance(bucket_bytes, bool) or not isinstance(
            bucket_bytes, (int, float)) or not math.isfinite(bucket_bytes) or bucket_bytes < 0):
        raise HwsimError(f"bucket_bytes (--bucket-mb x 1e6) must be a non-negative number, "
                         f"got {bucket_bytes!r}")
    if recompute != "none" and phase != "train":
        raise HwsimError(f"--recompute applies to phase train only, not {phase!r}")
    if micro_batch is not None:
        _positive("micro-batch", micro_batch, allow_none=False)
        if phase != "train":
            raise HwsimError("--micro-batch (gradient accumulation) applies to phase train only")
    if not isinstance(zero, int) or isinstance(zero, bool) or zero not in (0, 1, 2, 3):
        raise HwsimError(f"--zero must be 0, 1, 2 or 3, got {zero!r}")
    if zero == 3 and pp > 1:
        raise HwsimError("--zero 3 with --pp > 1 is not modelled (every micro-batch would "
                         "gather each stage's weights again; DeepSpeed refuses it too): use "
                         "ZeRO 1-2 with pipelines")
    if zero and phase != "train":
        raise HwsimError("--zero applies to phase train only")
    if dataflow not in (None, "os", "ws", "is"):
        raise HwsimError(f"--dataflow must be os, ws or is, got {dataflow!r}")
    try:
        sparsity = parse_sparsity(sparsity, "--sparsity")
    except ValueError as e:
        raise HwsimError(str(e)) from None
    if sparsity is not None and phase == "train":
        raise HwsimError("--sparsity applies to inference (forward, prefill, decode): training "
                         "a pruned model (masked dense weights and gradients) is not modelled")
    seq_lens = resolve_seq_lens(seq_lens)
    dtype = auto_dtype(system, dtype)
    try:
        from workloads.dtypes import get_dtype

        for d in (dtype, weight_dtype, kv_dtype):
            if d is not None:
                get_dtype(d)
    except ValueError as e:
        raise WorkloadError(f"dtype: {e}") from None
    per_node = min(system.devices_per_node or n, n)
    if tp is None:
        per = min(n // (pp * ep), per_node)
        tp = 1 if per <= 1 else next(
            (t for t in _tp_degrees(str(workload), per, image_size) if t & (t - 1) == 0), 1)
    elif tp > 1 and tp not in _tp_degrees(str(workload), tp, image_size):
        from workloads.transforms.tensor_parallel import tensor_parallel
        from workloads.zoo import build_model

        # raises the WorkloadError that says which dimension tp does not divide
        tensor_parallel(build_model(workload, phase="forward", batch=1, seq=1,
                                    image_size=image_size), tp)
    if dp is None:
        dp = max(1, min(n // (tp * pp * ep), batch // (ep * microbatches * (pipe_micro or 1))))
    if pipe_micro is not None:
        per_replica = batch // dp
        if batch % dp or per_replica < pipe_micro or per_replica % pipe_micro:
            raise HwsimError(f"--micro-batch {pipe_micro} does not divide every replica's batch "
                             f"({batch} over {dp} data-parallel replicas: "
                             f"{', '.join(map(str, sorted(set(_split(batch, dp)))))})")
        microbatches = per_replica // pipe_micro
    if pp > 1 and microbatches * pp > MAX_PIPELINE_CHUNKS:
        raise HwsimError(f"--global-batch {batch} over --pp {pp} makes {microbatches:,} "
                         f"micro-batches per replica: {microbatches * pp:,} stage passes is "
                         f"beyond what hwsim simulates ({MAX_PIPELINE_CHUNKS:,}); use a larger "
                         "--micro-batch or more --dp")
    layout = Layout(tp=tp, pp=pp, dp=dp, microbatches=microbatches, ep=ep)
    if layout.devices > n:
        raise HwsimError(f"layout {layout.describe()} needs {layout.devices} devices but "
                         f"{system.name} has {n}")
    if dp * ep > batch:
        raise HwsimError(f"--dp {dp} exceeds the batch {batch}: every replica needs a sample")
    if sequence_parallel and tp == 1:
        raise HwsimError("--sequence-parallel splits the tensor-parallel regions: it needs "
                         "--tp > 1")
    if zero and dp == 1:
        raise HwsimError("--zero shards over data-parallel replicas: it needs --dp > 1")
    if micro_batch is not None and any(b % micro_batch for b in set(
            _split(batch, dp))):
        raise HwsimError(f"--micro-batch {micro_batch} does not divide every replica's batch "
                         f"({batch} over {dp} replicas: {', '.join(map(str, _split(batch, dp)))})")
    if batch // dp < microbatches * ep:
        raise HwsimError(f"--microbatches {microbatches}: a replica's batch of {batch // dp} "
                         f"({batch} over {dp} data-parallel replicas) cannot fill them")
    return Plan(workload=str(workload), system=system, layout=layout, phase=phase, batch=batch,
                dtype=dtype, seq=seq, context=context, weight_dtype=weight_dtype,
                kv_dtype=kv_dtype, image_size=image_size, recompute=recompute, fuse=fuse,
                dataflow=dataflow, micro_batch=micro_batch, zero=zero,
                sequence_parallel=bool(sequence_parallel), schedule=schedule,
                virtual_stages=v, bucket_bytes=bucket_bytes, attention=attention,
                sparsity=sparsity, fuse_projections=bool(fuse_projections), seq_lens=seq_lens)


@lru_cache(maxsize=256)
def _tp_degrees(workload: str, limit: int, image_size: int | None) -> tuple[int, ...]:
    """Tensor-parallel degrees up to ``limit`` that split the model evenly (from a one-token
    probe graph: only the model's dimensions matter)."""
    from workloads.transforms.tensor_parallel import tp_degrees
    from workloads.zoo import build_model

    probe = build_model(workload, phase="forward", batch=1, seq=1, image_size=image_size)
    return tuple(tp_degrees(probe, limit))


def check_capacity(graph: WorkloadGraph, system: System, layout: Layout | None = None
                   ) -> dict[int, Footprint]:
    """Per-device footprints of ``graph``; raises if any device's exceeds its memory.

    Raises
    ------
    CapacityError
        Naming the device, every part of its footprint, the capacity, and what would help
        (never the system already in use).
    """
    fps = footprint_by_device(graph)
    cap = system.device.dram.capacity_bytes
    worst_dev, worst = max(fps.items(), key=lambda kv: kv[1].total)
    if worst.total <= cap:
        return fps
    g = lambda b: format_quantity(b, "B")  # noqa: E731
    parts = ", ".join(f"{k.replace('_', ' ')} {g(v)}" for k, v in worst.to_dict().items()
                      if k != "total" and v > 0)
    lay = layout or graph.meta.get("layout") or Layout(tp=int(graph.meta.get("tp", 1)))
    # devices one replica would need at this footprint, spread evenly
    need = max(2, math.ceil(worst.total * lay.devices_per_replica / cap))
    hints = []
    if need <= system.count:
        hints.append(f"split the model over {need} or more of its {system.count} devices ("
                     + ("--tp" if graph.phase == "train" else "--tp, --pp") + ")")
    else:
        hints.append(f"a system of at least {need} {system.device.name} devices "
                     f"({system.name} has {system.count})")
    if graph.phase == "train":
        hints.append("activation recomputation (--recompute full)" if
                     graph.meta.get("recompute", "none") == "none" else "a smaller batch")
    else:
        hints.append("--weight-dtype int8/int4, or a smaller batch/context")
    raise CapacityError(
        f"{graph.name} ({graph.phase}, {lay.describe()}) needs {g(worst.total)} per device "
        f"(device {worst_dev}: {parts}) but {system.device.name} has {g(cap)} of "
        f"{system.device.dram.name}; try {'; or '.join(hints)}")


def with_layout(plan: Plan, **changes: Any) -> Plan:
    """``plan`` with layout fields changed (e.g. ``tp=4``)."""
    return replace(plan, layout=replace(plan.layout, **changes))


def with_repeats(plan: Plan, repeats: int) -> Plan:
    """``plan`` with ``repeats`` micro-batches per replica (pipeline) or accumulation steps
    (no pipeline) instead of its own, the micro-batch size unchanged."""
    lay = plan.layout
    per = plan.replica_batches()[0]
    if lay.pp > 1:
        mb = per // lay.microbatches
        return replace(plan, batch=lay.dp * mb * repeats,
                       layout=replace(lay, microbatches=repeats))
    return replace(plan, batch=lay.dp * plan.micro_batch * repeats)
