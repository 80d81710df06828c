"""Where a graph's operands live between ops on a part whose compiler keeps them on chip.

Some edge accelerators have no DRAM of their own: the Coral Edge TPU reaches its host's memory
over USB or PCIe, and its compiler caches the model's parameters in the ~8 MB on-chip SRAM
(Coral, "Edge TPU Compiler": "parameter data caching"; parameters that do not fit are streamed
from the host at every inference) while the activations flow from layer to layer on chip. A
per-op mapper cannot see that: it would read every layer's weights and activations over USB.
This module makes the graph-level decision once per prediction, for a device whose spec sets
``params.on_chip_residency: true``:

- activations stay on chip when the largest op's activation working set (inputs plus output,
  weights excluded) fits the on-chip level;
- the parameters are cached in what is left of it; if the model is larger, the excess is read
  from the outer level at every inference. The compiler caches whole layers in order; the
  model here spreads the streamed share over every layer (``offchip[1]``), which keeps the
  total bytes exact and the time right wherever those layers are memory-bound.

The result, :class:`Residency`, is the fraction of each GEMM operand (input activations,
weights, output activations) that crosses the off-chip level; the systolic mapper scales its
DRAM traffic by it (``MapOptions.offchip``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulator.arch.spec import Device
from simulator.mapping.common import param
from workloads.graph import WorkloadGraph
from workloads.ops import Op
from workloads.transforms.walk import ops_with_counts

__all__ = ["Residency", "onchip_residency", "op_homes"]


@dataclass(frozen=True)
class Residency:
    """Off-chip fractions ``(input activations, weights, output activations)`` and why."""

    offchip: tuple[float, float, float]
    level: str
    capacity_bytes: float
    weight_bytes: float
    activation_peak_bytes: float
    note: str

    def to_dict(self) -> dict[str, object]:
        return {"offchip": list(self.offchip), "level": self.level,
                "capacity_bytes": self.capacity_bytes, "weight_bytes": self.weight_bytes,
                "activation_peak_bytes": self.activation_peak_bytes, "note": self.note}


def _onchip(device: Device) -> tuple[str, float] | None:
    """The innermost memory level smaller than the outermost one (the on-chip SRAM)."""
    levels = [lv for lv in device.memory if lv.capacity_bytes < device.dram.capacity_bytes]
    if not levels:
        return None
    lv = min(levels, key=lambda x: x.capacity_bytes)
    return lv.name, float(lv.capacity_bytes)


def onchip_residency(graph: WorkloadGraph, device: Device) -> Residency | None:
    """The graph's operand homes on ``device``, or None when the spec does not ask for it
    (``params.on_chip_residency``) or the part has no on-chip level."""
    if not param(device, "on_chip_residency", False):
        return None
    found = _onchip(device)
    if found is None:
        return None
    level, cap = found
    weights = 0.0
    act_peak = 0.0
    for op, n in ops_with_counts(graph):
        w = float(op.weight_bytes())
        weights += w * n
        act_peak = max(act_peak, float(op.bytes_read()) - w + float(op.bytes_written()))
    mib = 2.0 ** 20
    if act_peak <= cap:
        f_act = 0.0
        room = cap - act_peak
        act_note = (f"activations stay in the {cap / mib:.3g} MiB {level} (largest op's "
                    f"inputs and output {act_peak / mib:.3g} MiB)")
    else:
        f_act = 1.0
        room = cap
        act_note = (f"activations cross the off-chip level (largest op's inputs and output "
                    f"{act_peak / mib:.3g} MiB exceed the {cap / mib:.3g} MiB {level})")
    f_w = max(0.0, weights - room) / weights if weights > 0 else 0.0
    if f_w == 0.0:
        w_note = (f"all {weights / mib:.3g} MiB of parameters cached on chip across "
                  "inferences")
    else:
        w_note = (f"{min(room, weights) / mib:.3g} of the {weights / mib:.3g} MiB of "
                  f"parameters cached on chip; the other {f_w:.0%} is read from "
                  f"{device.dram.name} at every inference")
    return Residency((f_act, f_w, f_act), level, cap, weights, act_peak,
                     f"on-chip residency: {act_note}; {w_note}")


def op_homes(graph: WorkloadGraph, residency: Residency | None
             ) -> Callable[[Op], tuple[float, float, float] | None]:
    """Per op, the off-chip fractions to map it with: the residency's, except that the
    graph's first ops read their input from the off-chip level (the host hands the input
    over) and its last ops write their output there. ``None`` everywhere without a
    residency."""
    if residency is None:
        return lambda op: None
    g = graph.g
    first = {g.nodes[n]["item"] for n in g.nodes if g.in_degree(n) == 0}
    last = {g.nodes[n]["item"] for n in g.nodes if g.out_degree(n) == 0}
    f_in, f_w, f_out = residency.offchip

    def home(op: Op) -> tuple[float, float, float]:
        return (1.0 if op in first else f_in, f_w, 1.0 if op in last else f_out)
    return home
