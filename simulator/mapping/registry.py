"""The family registry: imports every mapper family so its cost functions register, and
costs ops through them.

``simulator.mapping.base`` defines the protocol and the registration decorator and imports no
family; the families import base; this module imports the families. So the import graph has
no cycle: base <- families <- registry <- predict.
"""

from __future__ import annotations

from simulator.arch.spec import Device
from simulator.errors import UnsupportedOpError
from simulator.mapping import base, cpu, fpga, gpu, gpu_kernels, systolic  # noqa: F401  (they register on import)
from simulator.mapping.base import CostFn, MapOptions, OpCost, registry
from workloads.ops import Op

__all__ = ["registered", "cost_op", "Mapper"]


def registered(family: str | None = None) -> dict[tuple[str, str], CostFn]:
    return {k: v for k, v in registry().items() if family is None or k[0] == family}


def cost_op(op: Op, device: Device, options: MapOptions | None = None) -> OpCost:
    """Cost one op on one device (no cache; see :class:`Mapper`)."""
    fn = base._REGISTRY.get((device.family, op.kind))
    if fn is None:
        raise UnsupportedOpError(op.kind, device.family, device.name)
    return fn(op, device, options or MapOptions())


class Mapper:
    """Per-device cached costing: identical ops (e.g. 80 identical layers) are costed once."""

    def __init__(self, device: Device, options: MapOptions | None = None):
        self.device = device
        self.options = options or MapOptions()
        self._cache: dict[Op, OpCost] = {}

    def cost(self, op: Op) -> OpCost:
        c = self._cache.get(op)
        if c is None:
            c = self._cache[op] = cost_op(op, self.device, self.options)
        return c
