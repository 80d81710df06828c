"""Output helpers every ``hwsim`` subcommand shares: plain-text tables and NaN-free JSON.

>>> print(table([["a", "1"]], ["name", "value"]))
name  value
----  -----
a     1
>>> dumps({"x": float("nan"), "y": (1, 2)})
'{"x": null, "y": [1, 2]}'
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["table", "json_safe", "dumps"]


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda r: "  ".join(str(x).ljust(w)  # noqa: E731
                               for x, w in zip(r, widths, strict=False)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def json_safe(o: Any) -> Any:
    """Plain JSON data: NaN and +-inf become null, mappings dicts, tuples and sets lists."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if o is None or isinstance(o, (str, int)):
        return o
    if isinstance(o, Mapping) or hasattr(o, "items"):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in o]
    return str(o)


def dumps(obj: Any) -> str:
    """One JSON document that never holds the invalid tokens NaN or Infinity."""
    return json.dumps(json_safe(obj), allow_nan=False)


def add_timing(p: argparse.ArgumentParser) -> None:
    """``--timing``: which time to predict (simulator.timing); shared by every command that
    prints a latency from the Predictor."""
    p.add_argument("--timing", choices=("kernel", "graph", "stream", "eager"), default=None,
                   help="which time to predict: kernel (device time only, as a profiler's "
                        "kernel trace), graph (CUDA graph / TensorRT / XLA replay: kernels back "
                        "to back), stream (default: each op pays the part's launch_overhead, "
                        "the host keeps ahead), eager (PyTorch eager: host dispatch per op "
                        "pipelined ahead of the device, host-bound when kernels are short)")
