"""Errors of the workload package (no dependency on ``simulator``).

:class:`HwsimError` lives here, in the lowest layer, so that every package of hwsim raises one
base class that the CLI prints as a one-line message; ``simulator.errors`` re-exports it.
"""

from __future__ import annotations

__all__ = ["HwsimError", "WorkloadError"]


class HwsimError(Exception):
    """Base class: the CLI prints these as ``error: <message>`` and exits 2, never a traceback."""


class WorkloadError(HwsimError):
    """A workload (model name, config file, phase, shape or transform option) is invalid."""
