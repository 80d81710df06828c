"""FrozenMap: an immutable, hashable-when-possible, picklable mapping.

Specs, op costs and results are frozen dataclasses; their mapping fields used to be
``types.MappingProxyType``, which cannot be pickled, so a System or a Result could not cross a
process boundary (process pools, Dask). FrozenMap is a read-only mapping over a private dict
that pickles as a plain dict.

>>> import pickle
>>> m = FrozenMap({"a": 1})
>>> pickle.loads(pickle.dumps(m)) == m, m["a"]
(True, 1)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FrozenMap", "freeze"]


class FrozenMap(Mapping):
    """A read-only mapping; equal to any mapping with the same items."""

    __slots__ = ("_d",)

    def __init__(self, data: Mapping[Any, Any] | None = None, **kw: Any):
        object.__setattr__(self, "_d", dict(data or {}, **kw))

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only")

    def __hash__(self) -> int:
        return hash(frozenset(self._d.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._d,))


def freeze(d: Mapping[Any, Any] | None) -> FrozenMap:
    """``d`` as a FrozenMap (the same object if it already is one)."""
    return d if isinstance(d, FrozenMap) else FrozenMap(d)
