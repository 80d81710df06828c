"""Timing semantics: which of the ways users time a part a prediction stands for.

Users time accelerators in different ways, and the same op reads differently in each. hwsim
predicts one of four, chosen with ``--timing`` (``Predictor(timing=...)``,
``simulate(..., timing=...)``), and says which in every output (``Result.meta["timing"]``,
the ``timing`` key of ``--json``, ``--explain``):

``kernel``
    The device time of the kernels alone, what a profiler's kernel trace (Kineto, Nsight
    Systems) reports: no launch, no gap between kernels. ``latency = kernel time``
    (:func:`simulator.mapping.gpu.kernel_time` for a GPU op).
``graph``
    A captured graph replayed (a CUDA graph, a TensorRT engine, an XLA program): pre-built
    kernels back to back, each after the small gap a graph node has. ``latency = kernel time
    + min(graph_launch_gap, launch_overhead)`` (a graph never waits longer than a stream
    launch). Refused on a part whose family has no figure for the gap (CPUs), unless its spec
    sets ``params.graph_launch_gap``.
``stream`` (the default: hwsim's numbers before the option existed)
    Ops issued one by one into an in-order stream by a host that keeps ahead of the device:
    each op pays the part's ``launch_overhead`` (GPU: the launch and the inter-kernel gap of
    a Kineto trace of a busy stream, 4 us; CPU: PyTorch's eager dispatch, serial with the op
    on the thread that runs it, 5 us; systolic and FPGA parts: their runtime's per-op cost,
    0 unless the spec sets one). The device never waits for the host.
``eager``
    A framework op called from Python (PyTorch eager): the host spends ``eager_dispatch`` per
    op (Python, the dispatcher, the launch call) and runs ahead of the device in a two-stage
    pipeline, ``device start_i = max(host issue done_i, device end_{i-1}, dependencies)``,
    each op lasting what it lasts under ``stream``. When the host's time per op exceeds the
    op's device time the stream is host-bound: the device idles between kernels, the result
    says so (``meta["timing"]["host_bound"]``, per-op host times) and the trace shows a host
    track above the device's gaps. On a CPU the host thread dispatches and runs each op
    itself, so eager is ``stream`` (dispatch serial with the op). Refused on systolic and
    FPGA parts (they run compiled programs) unless the spec sets ``params.eager_dispatch``.

Every overhead is a spec parameter with a family default and its source
(:mod:`simulator.arch.params`); ``hwsim calibrate`` can fit them.

>>> from simulator.arch.loader import load_arch
>>> d = load_arch("h100-sxm").device
>>> [check_timing(t, d) for t in ("kernel", "graph", None, "eager")]
['kernel', 'graph', 'stream', 'eager']
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from simulator.arch.params import param, param_source_text
from simulator.errors import HwsimError
from simulator.frozen import FrozenMap

if TYPE_CHECKING:
    from simulator.arch.spec import Device
    from simulator.mapping.base import OpCost
    from workloads.ops import Op

__all__ = ["TIMINGS", "DEFAULT_TIMING", "MEANINGS", "check_timing", "launch_part",
           "apply_timing", "host_dispatch_s", "timing_overheads", "timing_meta",
           "host_pipeline"]

#: the timing modes, fastest first for one op (kernel <= graph <= stream <= eager)
TIMINGS = ("kernel", "graph", "stream", "eager")
DEFAULT_TIMING = "stream"

MEANINGS = {
    "kernel": "kernel device time only, as a profiler's kernel trace reports it (no launch, "
              "no gaps)",
    "graph": "a captured graph replayed (CUDA graph, TensorRT engine, XLA program): kernels "
             "back to back with a graph node's gap",
    "stream": "ops issued one by one by a host that keeps ahead: each pays the part's "
              "launch_overhead (hwsim's default)",
    "eager": "framework ops called from Python: host dispatch per op runs ahead of the device "
             "in a pipeline; host-bound when kernels are short",
}


def _time_param(device: Device, name: str) -> float | None:
    """A time parameter of ``device`` (spec or family default), None where the family has
    none; a negative or non-finite value is a one-line error naming the part and field."""
    v = param(device, name, None)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise HwsimError(f"{device.name}: params.{name}: expected a time >= 0 like \"1 us\", "
                         f"got {v!r}")
    return float(v)


def check_timing(timing: str | None, device: Device) -> str:
    """``timing`` checked against ``device``'s family (None: the default, ``stream``).

    Raises
    ------
    HwsimError
        For an unknown mode, or one the part's family does not model (naming both).
    """
    t = DEFAULT_TIMING if timing is None else timing
    if not isinstance(t, str) or t not in TIMINGS:
        raise HwsimError(f"--timing: expected one of {', '.join(TIMINGS)}, got {timing!r}")
    fam = device.family
    if t == "graph" and _time_param(device, "graph_launch_gap") is None:
        raise HwsimError(f"{device.name} ({fam} family): --timing graph is not modelled: hwsim "
                         "has no published per-node cost of a compiled graph runtime on this "
                         "family; set params.graph_launch_gap (--set params.graph_launch_gap="
                         "\"1 us\") or use kernel, stream or eager")
    if t == "eager" and fam != "cpu" and _time_param(device, "eager_dispatch") is None:
        raise HwsimError(f"{device.name} ({fam} family): --timing eager is not modelled: the "
                         "part runs a compiled program, with no framework dispatch per op; set "
                         "params.eager_dispatch (host time per op) or use kernel, graph or "
                         "stream")
    _time_param(device, "launch_overhead")
    return t


def launch_part(op: Op, cost: OpCost, device: Device) -> float:
    """The share of ``cost.latency_s`` that is launch or dispatch (``launch_overhead``), not
    device time: a GPU mapper records it in ``details["launch_s"]``; the other families add
    ``launch_overhead`` to every op's fixed cost except collectives and host copies."""
    from workloads.ops import Collective, Memcpy

    det = cost.details
    if "launch_s" in det or device.family == "gpu":
        return float(det.get("launch_s", 0.0))
    if isinstance(op, Collective) or (isinstance(op, Memcpy) and op.src != op.dst):
        return 0.0
    return min(float(_time_param(device, "launch_overhead") or 0.0), max(cost.overhead_s, 0.0))


def apply_timing(op: Op, cost: OpCost, device: Device, timing: str) -> OpCost:
    """``cost`` as ``timing`` counts it (``timing`` already checked by :func:`check_timing`).

    ``stream`` returns ``cost`` itself. ``kernel`` drops the launch share, ``graph`` replaces
    it by the graph gap (never more than it), ``eager`` keeps the device time and records the
    host's dispatch time in ``details["host_s"]`` (for the engine's host pipeline).
    """
    if timing == "stream":
        return cost
    launch = launch_part(op, cost, device)
    if timing == "eager":
        host = host_dispatch_s(device, "eager")
        return replace(cost, details=FrozenMap({**cost.details, "timing": "eager",
                                                "host_s": host}))
    gap = 0.0 if timing == "kernel" else \
        min(float(_time_param(device, "graph_launch_gap") or 0.0), launch)
    lat = cost.latency_s - launch + gap
    if lat <= 0.0:  # a cost made only of its launch (never in practice): keep a tick
        lat = max(cost.latency_s - launch, 0.0) + gap
    util = cost.utilization * cost.latency_s / lat if lat > 0 else cost.utilization
    det = {**cost.details, "timing": timing, "launch_removed_s": launch, "graph_gap_s": gap}
    if "launch_s" in cost.details:
        det["launch_s"] = gap
    return replace(cost, latency_s=lat, overhead_s=max(0.0, cost.overhead_s - launch + gap),
                   utilization=util, details=FrozenMap(det))


def host_dispatch_s(device: Device, timing: str) -> float:
    """Host time per op that the engine's host pipeline charges: ``eager_dispatch`` under
    ``eager`` on a part driven from a separate host (not a CPU, whose dispatch is inside each
    op's time already); 0 otherwise."""
    if timing != "eager" or device.family == "cpu":
        return 0.0
    return float(_time_param(device, "eager_dispatch") or 0.0)


def timing_overheads(device: Device, timing: str) -> list[dict[str, Any]]:
    """The overheads ``timing`` applies on ``device``: ``{"name", "value_s", "source",
    "applies"}`` each (what ``--explain`` prints and ``meta["timing"]["overheads"]`` holds)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, applies: str) -> None:
        v = _time_param(device, name)
        rows.append({"name": name, "value_s": v, "source": param_source_text(device, name),
                     "applies": applies})

    if timing == "kernel":
        add("launch_overhead", "not counted: device time only")
    elif timing == "graph":
        add("launch_overhead", "replaced by the graph gap where larger")
        add("graph_launch_gap", "per op that launched a kernel, instead of launch_overhead")
    elif timing == "stream":
        add("launch_overhead", "per op (launch and inter-kernel gap)" if device.family == "gpu"
            else "per op (dispatch)")
    else:
        if device.family == "cpu":
            add("launch_overhead", "per op: PyTorch's dispatch, serial with the op on the "
                                   "host thread that runs it")
        else:
            add("launch_overhead", "per op on the device (launch and inter-kernel gap)")
            add("eager_dispatch", "per op on the host, pipelined ahead of the device")
    return rows


def host_pipeline(timing: str, device: Device) -> bool:
    """Whether the engine runs a host that issues each op (``eager`` off a CPU)."""
    return host_dispatch_s(device, timing) > 0.0


def timing_meta(device: Device, timing: str) -> dict[str, Any]:
    """``Result.meta["timing"]`` before the run's host figures are added: the mode, what it
    means on this family, and its overheads."""
    meaning = MEANINGS[timing]
    if timing == "eager" and device.family == "cpu":
        meaning = ("framework ops called from Python on the CPU: the host thread dispatches "
                   "and runs each op, so dispatch is serial with it (same as stream)")
    return {"mode": timing, "meaning": meaning, "family": device.family,
            "overheads": timing_overheads(device, timing)}
