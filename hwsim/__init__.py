"""``import hwsim``: the public Python API under the tool's name.

The code lives in :mod:`simulator` (and :mod:`workloads`); this package re-exports what users
call: :func:`simulate`, :func:`train`, and :mod:`hwsim.explore` for design-space studies.
"""

from simulator.api import RunOptions, footprint, predict_op, simulate
from simulator.train import train

__all__ = ["simulate", "RunOptions", "predict_op", "footprint", "train", "explore"]


def __getattr__(name: str):
    if name == "explore":  # imported on first use: pandas and the explorer load lazily
        import importlib

        return importlib.import_module("hwsim.explore")
    raise AttributeError(f"module 'hwsim' has no attribute {name!r}")
