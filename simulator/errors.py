"""Errors a user can act on. Each one prints as a single readable line (or a list for specs)."""

from __future__ import annotations

from workloads.errors import HwsimError, WorkloadError

__all__ = [
    "HwsimError",
    "SpecError",
    "WorkloadError",
    "UnsupportedOpError",
    "MappingError",
    "CapacityError",
]


class SpecError(HwsimError):
    """An architecture spec (or other YAML input) is invalid.

    ``problems`` holds every problem found in the file, each naming its field path, what was
    expected and what was found, so a user fixes them all in one pass.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {p}" for p in self.problems]
        super().__init__("\n".join(lines) if lines else f"{source}: invalid")


class UnsupportedOpError(HwsimError):
    """An op kind has no cost formula for a device family; never costed as zero."""

    def __init__(self, kind: str, family: str, device: str = ""):
        self.kind, self.family, self.device = kind, family, device
        where = f" ({device})" if device else ""
        super().__init__(f"op kind {kind!r} has no cost model for family {family!r}{where}")


class MappingError(HwsimError):
    """An op cannot be mapped onto a device (e.g. a dtype the device has no unit for)."""


class CapacityError(HwsimError):
    """A workload does not fit in the memory of the device or system it was asked to run on."""
