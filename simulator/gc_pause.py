"""Python's cyclic garbage collector paused around work that allocates many objects that
all live until it ends (a training step's graphs, a timing loop), where the collector's
passes cost time and free nothing."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the collector inside the block (or a function it decorates); restore it after.
    Nested uses leave it paused until the outermost ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
