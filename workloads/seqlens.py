"""Sequence-length distributions: variable-length (packed) batches for encoders and prefill.

Real inputs are not all as long as the model's maximum: SQuAD v1.1 questions with their
contexts are 172 tokens on average at BERT's 384-token limit. Serving stacks that remove the
padding (TensorRT's variable-length BERT plugins, FasterTransformer's "remove padding",
FlashAttention's ``varlen`` API with ``cu_seqlens``) run the token-wise layers (projections,
MLP, norms, embeddings) on the ``sum(l_i)`` real tokens of a batch and attention per sample on
``l_i x l_i`` scores. A :class:`SeqLenDist` says how long the samples are; the zoo builds a
batch of ``n`` samples from it as ``n`` lengths at evenly spaced quantiles
(:meth:`SeqLenDist.sample`), so a batch is a deterministic, representative draw whose token
count and attention work match the distribution's.

A distribution comes from (:func:`resolve_seq_lens`):

- a shipped dataset name, ``squad-v1.1`` (``workloads/data/squad-v1.1.txt``, its source in the
  file's header);
- a text file: one length per line, or ``length count`` pairs (a histogram), ``#`` comments;
- inline lengths ``"128,256,384"``, or a sequence of integers from Python.

>>> d = resolve_seq_lens("squad-v1.1")
>>> round(d.mean, 2), d.percentile(0.5), d.percentile(0.9), d.max_len
(172.04, 159, 260, 384)
>>> resolve_seq_lens("100,300").sample(4)
(100, 100, 300, 300)
"""

from __future__ import annotations

import bisect
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from workloads.errors import WorkloadError

__all__ = ["SeqLenDist", "DATASETS", "resolve_seq_lens", "parse_lengths_text", "check_max"]

#: Shipped distributions: name -> file under ``workloads/data/``.
DATASETS: dict[str, str] = {"squad-v1.1": "squad-v1.1.txt"}

#: Largest length or count a distribution may hold (the IR's size limit, 2**53: beyond it a
#: float no longer holds every integer). Model limits (max positions) are checked by the zoo.
MAX_LENGTH = 2**53

_INLINE = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*,?\s*$")
_SEP = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class SeqLenDist:
    """A histogram of sequence lengths: ``lengths`` ascending and distinct, ``counts`` > 0.

    Frozen and hashable, so plans and graph caches can key on it. ``name`` says where it came
    from (a dataset name, a file path or ``inline``) for messages and results.
    """

    name: str
    lengths: tuple[int, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.lengths or len(self.lengths) != len(self.counts):
            raise WorkloadError(f"seq_lens {self.name}: needs at least one length, and one "
                                f"count per length")
        if any(b <= a for a, b in zip(self.lengths, self.lengths[1:])):
            raise WorkloadError(f"seq_lens {self.name}: lengths must be ascending and distinct")
        if self.lengths[0] < 1 or self.lengths[-1] > MAX_LENGTH or min(self.counts) < 1:
            raise WorkloadError(f"seq_lens {self.name}: lengths in [1, 2**53] and counts >= 1")

    @classmethod
    def from_lengths(cls, name: str, lengths: Iterable[int]) -> SeqLenDist:
        """The empirical distribution of per-sample ``lengths`` (each sample counts once)."""
        hist: dict[int, int] = {}
        for n in lengths:
            hist[n] = hist.get(n, 0) + 1
        keys = sorted(hist)
        return cls(name, tuple(keys), tuple(hist[k] for k in keys))

    @property
    def total(self) -> int:
        """Number of samples the histogram holds."""
        return sum(self.counts)

    @property
    def max_len(self) -> int:
        return self.lengths[-1]

    @property
    def mean(self) -> float:
        """Mean tokens per sample."""
        return sum(n * c for n, c in zip(self.lengths, self.counts)) / self.total

    @property
    def mean_square(self) -> float:
        """Mean of ``l^2``: what non-causal attention's work per sample scales with."""
        return sum(n * n * c for n, c in zip(self.lengths, self.counts)) / self.total

    def padding_fraction(self, padded_to: int | None = None) -> float:
        """Fraction of a batch padded to ``padded_to`` (default the longest length) that is
        padding: ``1 - mean / padded_to``."""
        return 1.0 - self.mean / float(padded_to or self.max_len)

    def percentile(self, q: float) -> int:
        """The ``q``-quantile (``0 < q <= 1``): the shortest length with at least a fraction
        ``q`` of the samples at or below it (the inverse of the histogram's CDF)."""
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0 < q <= 1:
            raise WorkloadError(f"seq_lens {self.name}: a quantile must be in (0, 1], "
                                f"got {q!r}")
        cum = self._cumulative()
        i = bisect.bisect_left(cum, q * cum[-1] - 1e-9 * cum[-1])
        return self.lengths[min(i, len(self.lengths) - 1)]

    def sample(self, n: int) -> tuple[int, ...]:
        """``n`` lengths at the quantiles ``(i + 1/2) / n``, ascending: a stratified draw, the
        same for the same ``n`` (a run is a pure function of its inputs). With ``n`` equal to
        the number of samples of an empirical distribution it returns them all."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise WorkloadError(f"seq_lens {self.name}: the batch must be a positive integer, "
                                f"got {n!r}")
        return _sample(self, int(n))

    def _cumulative(self) -> list[int]:
        out, c = [], 0
        for k in self.counts:
            c += k
            out.append(c)
        return out

    def describe(self) -> str:
        """One line: name, samples, mean, p50/p90 and max."""
        return (f"{self.name}: {self.total:,} samples, mean {self.mean:.1f} tokens, "
                f"p50 {self.percentile(0.5)}, p90 {self.percentile(0.9)}, max {self.max_len}")


@lru_cache(maxsize=256)
def _sample(d: SeqLenDist, n: int) -> tuple[int, ...]:
    cum, total = d._cumulative(), d.total
    # smallest index with cum * 2n >= (2i + 1) * total: exact integer arithmetic
    scaled = [c * 2 * n for c in cum]
    return tuple(d.lengths[bisect.bisect_left(scaled, (2 * i + 1) * total)] for i in range(n))


def parse_lengths_text(text: str, source: str) -> SeqLenDist:
    """A distribution from text: per line one length, or ``length count``; ``#`` comments.

    Raises
    ------
    WorkloadError
        Naming ``source``, the line and the value (not a whole number, a length below 1, a
        count below 1, more than two fields, no lengths at all).
    """
    hist: dict[int, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in _SEP.split(line) if f]
        if not fields or len(fields) > 2:
            raise WorkloadError(f"{source}: line {lineno}: expected a length or 'length count', "
                                f"got {line!r}")
        length = _whole(fields[0], f"{source}: line {lineno}: length")
        count = _whole(fields[1], f"{source}: line {lineno}: count") if len(fields) == 2 else 1
        if length < 1:
            raise WorkloadError(f"{source}: line {lineno}: length must be at least 1 token, "
                                f"got {length}")
        if count < 1:
            raise WorkloadError(f"{source}: line {lineno}: count must be at least 1, got {count}")
        hist[length] = hist.get(length, 0) + count
        if hist[length] > MAX_LENGTH:
            raise WorkloadError(f"{source}: line {lineno}: count {hist[length]} is larger "
                                f"than 2**53")
    if not hist:
        raise WorkloadError(f"{source}: no sequence lengths (expected one length, or "
                            f"'length count', per line)")
    keys = sorted(hist)
    return SeqLenDist(source, tuple(keys), tuple(hist[k] for k in keys))


def _whole(text: str, what: str) -> int:
    if not re.fullmatch(r"[+-]?\d{1,20}", text):
        raise WorkloadError(f"{what} must be a whole number, got {text!r}")
    v = int(text)
    if v > MAX_LENGTH:
        raise WorkloadError(f"{what} {v} is larger than 2**53; not a real size")
    return v


@lru_cache(maxsize=len(DATASETS))
def _dataset(name: str) -> SeqLenDist:
    text = resources.files("workloads").joinpath("data", DATASETS[name]).read_text("utf-8")
    d = parse_lengths_text(text, f"workloads/data/{DATASETS[name]}")
    return SeqLenDist(name, d.lengths, d.counts)


def _from_sequence(values: Sequence[Any]) -> SeqLenDist:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise WorkloadError(f"seq_lens[{i}] must be a whole number of tokens, got {v!r}")
        if not 1 <= v <= MAX_LENGTH:
            raise WorkloadError(f"seq_lens[{i}] must be at least 1 token (and at most 2**53), "
                                f"got {v}")
        out.append(int(v))
    if not out:
        raise WorkloadError("seq_lens: no lengths given")
    return SeqLenDist.from_lengths("inline", out)


def resolve_seq_lens(value: Any) -> SeqLenDist | None:
    """A :class:`SeqLenDist` from a dataset name, a file path, inline ``"128,256"``, a sequence
    of integers or a SeqLenDist; ``None`` stays ``None`` (every sample padded to ``seq``).

    Raises
    ------
    WorkloadError
        An unknown name or missing file (listing the datasets), an unreadable or malformed
        file (naming the file, line and value), a length below 1.
    """
    if value is None or isinstance(value, SeqLenDist):
        return value
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        key = value.strip()
        if key.lower() in DATASETS:
            return _dataset(key.lower())
        if _INLINE.match(key):
            return _from_sequence([int(x) for x in _SEP.split(key) if x])
        path = Path(key).expanduser()
        if key and path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise WorkloadError(f"{key}: cannot read the sequence lengths: "
                                    f"{getattr(e, 'strerror', None) or e}") from None
            return parse_lengths_text(text, key)
        raise WorkloadError(f"seq_lens: {value!r} is neither a dataset ({', '.join(DATASETS)}), "
                            f"a file of lengths, nor lengths such as 128,256,384")
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__")
                                            and hasattr(value, "__iter__")
                                            and not isinstance(value, (bytes, dict))):
        return _from_sequence(list(value))
    raise WorkloadError(f"seq_lens must be a dataset name, a file, or a list of lengths, "
                        f"got {value!r}")


def check_max(dist: SeqLenDist, limit: int, model: str) -> None:
    """Raise if a length of ``dist`` is above ``limit`` (the model's max positions)."""
    if dist.max_len > limit:
        raise WorkloadError(f"{model}: seq_lens {dist.name}: length {dist.max_len} is above the "
                            f"model's {limit} positions (max_position_embeddings)")
