"""Python API: ``simulate(workload, arch, ...) -> Result`` and ``predict_op(op, arch) -> OpCost``.

Thin wrappers over the pipeline (see README "How it is built"):

    make_plan (simulator.plan) -> Plan.build (workload transforms) -> Predictor.predict
    (mapping + discrete-event run + per-device energy) -> Result

For many runs on one system build a :class:`~simulator.predict.Predictor` once and reuse it:
its op-cost cache is what makes sweeps fast.

Examples
--------
>>> from simulator import simulate
>>> r = simulate("gpt2", "h100-sxm", phase="prefill", batch=1, seq=128)
>>> r.latency_s > 0 and r.energy_j > 0
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.arch.loader import load_arch
from simulator.arch.spec import System
from simulator.cost.dollars import CostOptions
from simulator.errors import HwsimError
from simulator.frozen import FrozenMap
from simulator.mapping.base import OpCost
from simulator.plan import auto_dtype, make_plan
from simulator.predict import Predictor
from simulator.results.result import Result
from workloads.graph import WorkloadGraph
from workloads.memory import footprint as _footprint
from workloads.ops import Op

__all__ = ["RunOptions", "simulate", "predict_op", "resolve_system", "footprint", "auto_dtype"]


@dataclass(frozen=True)
class RunOptions:
    """How to build and run a workload (shapes, precision, parallelism, mapping, cost)."""

    phase: str = "auto"
    batch: int = 1
    seq: int | None = None
    context: int | None = None
    dtype: str | None = None  # None: the part's natural precision (see auto_dtype)
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    tp: int | None = None
    pp: int = 1
    dp: int | None = None
    microbatches: int = 1
    ep: int = 1
    recompute: str = "none"
    image_size: int | None = None
    dataflow: str | None = None
    schedule: str | None = None  # systolic/FPGA: "best" (default) or "scalesim"
    cost: CostOptions = field(default_factory=CostOptions)
    check_capacity: bool = True
    fuse: bool = True  # fold pointwise epilogues into GEMMs/convs, as compilers do
    fuse_projections: bool = True  # one QKV GEMM and one gate/up GEMM (vLLM, Megatron-LM)
    calibration: Any = None  # a CalibrationProfile or its YAML path; never applied implicitly
    force_calibration: bool = False  # apply a profile fitted on another part
    # pruned weights: "2:4" (N:M), a fraction pruned such as 0.7 (unstructured), a Sparsity;
    # None = dense (see workloads.transforms.prune)
    sparsity: Any = None
    # variable-length samples run packed: "squad-v1.1", a file of lengths, a list of lengths
    # or a SeqLenDist (see workloads.seqlens); None = every sample padded to `seq`
    seq_lens: Any = None
    # which time to predict: kernel | graph | stream | eager; None = stream (simulator.timing)
    timing: str | None = None


def resolve_system(arch: str | System, overrides: Mapping[str, Any] | Iterable[str] = ()
                   ) -> System:
    return arch if isinstance(arch, System) else load_arch(arch, overrides)


def predict_op(op: Op, arch: str | System, overrides: Mapping[str, Any] | Iterable[str] = (),
               dataflow: str | None = None, *, rotated_sets: int | None = None,
               schedule: str | None = None, timing: str | None = None) -> OpCost:
    """Cost of one op on one device of ``arch`` (collectives over the system's link).

    ``rotated_sets``: cost it as measured in a loop over that many input sets (see
    :class:`~simulator.mapping.base.MapOptions`) instead of inside a graph. ``schedule``:
    systolic/FPGA memory schedule, ``best`` (default) or ``scalesim``. ``timing``: which time
    (:mod:`simulator.timing`; default ``stream``; an op alone has no host pipeline, so
    ``eager`` is its device time with ``details["host_s"]``, the host's dispatch).
    """
    from simulator.mapping.base import MapOptions
    from simulator.mapping.registry import Mapper
    from workloads.ops import Collective, Memcpy

    system = resolve_system(arch, overrides)
    if rotated_sets is None or isinstance(op, Collective) or (
            isinstance(op, Memcpy) and "host" in (op.src, op.dst)):
        return Predictor(system, dataflow=dataflow, schedule=schedule, timing=timing).cost(op)
    from simulator.timing import apply_timing, check_timing

    return apply_timing(op, Mapper(system.device, MapOptions(
        dataflow=dataflow, rotated_sets=rotated_sets, schedule=schedule)).cost(op),
        system.device, check_timing(timing, system.device))


def footprint(graph: WorkloadGraph) -> dict[str, float]:
    """Bytes on the most loaded device: weights, KV cache, activations, gradients,
    optimizer state and their total."""
    return _footprint(graph).to_dict()


def simulate(workload: str | WorkloadGraph, arch: str | System,
             options: RunOptions | None = None, *,
             overrides: Mapping[str, Any] | Iterable[str] = (),
             progress: Callable[[int], None] | None = None, **kw: Any) -> Result:
    """Plan, build, map and run a workload on ``arch``.

    Keyword arguments are :class:`RunOptions` fields (``phase``, ``batch``, ``seq``, ...).

    Raises
    ------
    CapacityError
        If a device's weights + KV cache + activations (+ gradients and optimizer state when
        training) do not fit in its memory.
    UnsupportedOpError, MappingError, SpecError, WorkloadError, HwsimError
        With a one-line message naming what is wrong.
    """
    o = options or RunOptions(**kw)
    predictor = Predictor(resolve_system(arch, overrides), o.calibration,
                          force_calibration=o.force_calibration, dataflow=o.dataflow,
                          schedule=o.schedule, timing=o.timing)
    system = predictor.system
    if isinstance(workload, WorkloadGraph):
        graph, plan = workload, None
        if o.sparsity is not None:
            from workloads.transforms.prune import prune

            try:
                graph = prune(graph, o.sparsity)
            except ValueError as e:
                raise HwsimError(f"--sparsity: {e}") from None
        if o.fuse:
            from workloads.transforms.fuse import fuse_epilogues

            graph = fuse_epilogues(graph)
    else:
        plan = make_plan(workload, system, phase=o.phase, batch=o.batch, seq=o.seq,
                         context=o.context, dtype=o.dtype, weight_dtype=o.weight_dtype,
                         kv_dtype=o.kv_dtype, tp=o.tp, pp=o.pp, dp=o.dp,
                         microbatches=o.microbatches, ep=o.ep, image_size=o.image_size,
                         recompute=o.recompute, fuse=o.fuse, dataflow=o.dataflow,
                         sparsity=o.sparsity, fuse_projections=o.fuse_projections,
                         seq_lens=o.seq_lens)
        graph = plan.build()
    result = predictor.predict(graph, plan, cost=o.cost,
                               check_capacity_first=o.check_capacity, progress=progress)
    return _with_sparsity(result, graph)


def _with_sparsity(result: Result, graph: WorkloadGraph) -> Result:
    """``result`` with ``meta["sparsity"]`` (what :func:`workloads.transforms.prune.prune`
    did) when the graph, or a replica or stage of it, was pruned; unchanged otherwise."""
    info = graph.meta.get("sparsity")
    if info is None:  # parallel transforms rebuild the graph: look in its blocks
        info = next((blk.meta["sparsity"] for blk in _blocks(graph)
                     if "sparsity" in blk.meta), None)
    if info is None:
        return result
    summary = {k: info[k] for k in ("pattern", "spec", "density", "zeros", "metadata_bits",
                                    "format", "pruned_layers", "kept_dense")}
    return replace(result, meta=FrozenMap({**result.meta, "sparsity": summary}))


def _blocks(graph: WorkloadGraph):
    from workloads.graph import Repeat

    for n in graph.g.nodes:
        item = graph.g.nodes[n]["item"]
        if isinstance(item, Repeat):
            yield item.block
            yield from _blocks(item.block)
