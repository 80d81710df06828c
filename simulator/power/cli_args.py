"""``--power-limit W`` for ``hwsim run`` and ``hwsim serve``: one spelling of the spec field
``power.limit``, so the flag, ``--set power.limit=...`` and a spec's own field meet in one
place (the loader's validation, :class:`simulator.arch.spec.Power`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["add_power_limit"]


def _watts(text: str) -> float:
    try:
        v = float(str(text).strip().removesuffix("W").strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a power in watts like 500, got "
                                         f"{text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive power in watts, got {text!r}")
    return v


class _PowerLimit(argparse.Action):
    """Store the limit and add ``power.limit=<W> W`` to the ``--set`` overrides."""

    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace,
                 values: Any, option: str | None = None) -> None:
        setattr(ns, self.dest, values)
        overrides: Sequence[str] | None = getattr(ns, "set", None)
        ns.set = [*(overrides or []), f"power.limit={values!r} W"]


def add_power_limit(p: argparse.ArgumentParser) -> None:
    """Add ``--power-limit W`` to a sub-command parser that has ``--set``."""
    p.add_argument("--power-limit", dest="power_limit", type=_watts, action=_PowerLimit,
                   default=None, metavar="W",
                   help="power limit per device, W (default: the spec's power.limit or TDP): "
                        "ops that would draw more run at a lower clock (DVFS)")
