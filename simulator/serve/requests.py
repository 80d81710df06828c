"""Requests and where they come from: Poisson, gamma (bursty), closed-loop users, an offline
batch, or a trace file (CSV or JSONL with arrival time, prompt tokens and output tokens).

Every generator is a pure function of its arguments and a seed (numpy ``Generator``), so the
same seed gives the same requests, byte for byte.

>>> reqs = poisson(rate=10.0, n=3, prompt=Lengths.fixed(128), output=Lengths.fixed(32), seed=0)
>>> [r.prompt_tokens for r in reqs], all(a.arrival_s < b.arrival_s for a, b in zip(reqs, reqs[1:]))
([128, 128, 128], True)
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.errors import HwsimError

__all__ = ["Request", "Lengths", "poisson", "gamma", "offline", "load_trace", "MAX_TRACE_BYTES",
           "MAX_TOKENS"]

MAX_TRACE_BYTES = 64 * 2**20
MAX_TOKENS = 10_000_000  # per request, prompt or output: far beyond any context window
# coefficients of variation (burstiness, length spread): beyond these the gamma / log-normal
# parameters under- or overflow, and no real workload comes near them
MIN_CV, MAX_CV = 1e-3, 100.0


@dataclass(frozen=True)
class Request:
    """One request: when it arrives (s), its prompt length and how many tokens it generates."""

    rid: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts: fixed, uniform on [lo, hi], or log-normal with a mean
    and a coefficient of variation (clipped to [lo, hi])."""

    kind: str
    mean: float
    lo: int = 1
    hi: int = 1
    cv: float = 0.0

    @staticmethod
    def fixed(n: int) -> Lengths:
        return Lengths("fixed", float(n), n, n)

    @staticmethod
    def uniform(lo: int, hi: int) -> Lengths:
        return Lengths("uniform", (lo + hi) / 2, lo, hi)

    @staticmethod
    def lognormal(mean: float, cv: float, lo: int = 1, hi: int = 32768) -> Lengths:
        return Lengths("lognormal", mean, lo, hi, cv)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(n, int(self.mean), dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.lo, self.hi + 1, size=n)
        sigma2 = math.log(1.0 + self.cv ** 2)
        mu = math.log(self.mean) - sigma2 / 2
        x = rng.lognormal(mu, math.sqrt(sigma2), size=n)
        return np.clip(np.rint(x), self.lo, self.hi).astype(np.int64)


def _check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) \
            or rate <= 0:
        raise HwsimError(f"--rate must be a positive number of requests per second, got {rate!r}")


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise HwsimError(f"--requests must be a positive integer, got {n!r}")


def _build(arrivals: np.ndarray, prompt: Lengths, output: Lengths,
           rng: np.random.Generator) -> list[Request]:
    p = prompt.draw(rng, len(arrivals))
    o = output.draw(rng, len(arrivals))
    return [Request(i, float(a), int(pi), int(oi))
            for i, (a, pi, oi) in enumerate(zip(arrivals, p, o, strict=True))]


def poisson(rate: float, n: int, prompt: Lengths, output: Lengths, seed: int = 0
            ) -> list[Request]:
    """``n`` requests with exponential inter-arrival times at ``rate`` per second."""
    _check_rate(rate)
    _check_n(n)
    rng = np.random.default_rng(seed)
    return _build(np.cumsum(rng.exponential(1.0 / rate, size=n)), prompt, output, rng)


def gamma(rate: float, n: int, prompt: Lengths, output: Lengths, cv: float = 2.0,
          seed: int = 0) -> list[Request]:
    """Bursty arrivals: gamma inter-arrival times with mean ``1/rate`` and coefficient of
    variation ``cv`` (1 is Poisson; above 1, bursts and lulls)."""
    _check_rate(rate)
    _check_n(n)
    if isinstance(cv, bool) or not isinstance(cv, (int, float)) or not math.isfinite(cv) \
            or not MIN_CV <= cv <= MAX_CV:
        raise HwsimError(f"--burstiness (coefficient of variation) must be from {MIN_CV:g} to "
                         f"{MAX_CV:g}, got {cv!r}")
    rng = np.random.default_rng(seed)
    shape = 1.0 / cv ** 2
    gaps = rng.gamma(shape, (1.0 / rate) / shape, size=n)
    return _build(np.cumsum(gaps), prompt, output, rng)


def offline(n: int, prompt: Lengths, output: Lengths, seed: int = 0) -> list[Request]:
    """``n`` requests all present at t = 0 (a batch job)."""
    _check_n(n)
    rng = np.random.default_rng(seed)
    return _build(np.zeros(n), prompt, output, rng)


_FIELDS = {"arrival_s": ("arrival_s", "arrival", "arrival_time", "timestamp", "time"),
           "prompt_tokens": ("prompt_tokens", "prompt_len", "input_tokens", "num_prefill_tokens",
                             "prompt"),
           "output_tokens": ("output_tokens", "output_len", "num_decode_tokens", "completion",
                             "generated_tokens")}


def _field(row: dict, key: str, where: str) -> object:
    for name in _FIELDS[key]:
        if name in row and row[name] not in (None, ""):
            return row[name]
    raise HwsimError(f"{where}: missing {key} (one of: {', '.join(_FIELDS[key])})")


def _number(v: object, key: str, where: str, integer: bool) -> float:
    if isinstance(v, bool):
        raise HwsimError(f"{where}: {key} must be a number, got {v!r}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise HwsimError(f"{where}: {key} must be a number, got {str(v)[:40]!r}") from None
    except OverflowError:  # an integer with hundreds of digits
        raise HwsimError(f"{where}: {key} is out of range, got {str(v)[:20]}...") from None
    if not math.isfinite(x):
        raise HwsimError(f"{where}: {key} must be finite, got {v!r}")
    if integer:
        if x != int(x) or not 1 <= x <= MAX_TOKENS:
            raise HwsimError(f"{where}: {key} must be a whole number from 1 to {MAX_TOKENS:,}, "
                             f"got {v!r}")
        return int(x)
    if x < 0:
        raise HwsimError(f"{where}: {key} must be >= 0 seconds, got {v!r}")
    return float(x)


def load_trace(path: str | Path, limit: int | None = None) -> list[Request]:
    """Read a trace: CSV with a header, or JSONL with one object per line, each giving an
    arrival time in seconds and the prompt and output token counts (common column names are
    accepted, see ``_FIELDS``). Arrivals are sorted; ``limit`` keeps the first requests.

    Raises
    ------
    HwsimError
        Naming the file and line for an unreadable file, a missing or negative field, a
        non-number, or an empty trace.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise HwsimError(f"{p}: cannot read the trace ({e.strerror})") from None
    if size > MAX_TRACE_BYTES:
        raise HwsimError(f"{p}: trace is {size:,} bytes, over the {MAX_TRACE_BYTES:,}-byte limit")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark (Excel) is dropped
    except (OSError, UnicodeDecodeError) as e:
        raise HwsimError(f"{p}: cannot read the trace as UTF-8 text ({e})") from None
    rows: list[tuple[str, dict]] = []
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=lambda c: float("nan"))
            except (ValueError, RecursionError) as e:  # ValueError: > 4,300-digit integers
                raise HwsimError(f"{p}:{i}: not valid JSON ({str(e)[:80]})") from None
            if not isinstance(obj, dict):
                raise HwsimError(f"{p}:{i}: expected a JSON object, got {type(obj).__name__}")
            rows.append((f"{p}:{i}", obj))
    else:
        reader = csv.DictReader(text.splitlines())
        try:
            if not reader.fieldnames:
                raise HwsimError(f"{p}: empty trace (expected a CSV header: arrival_s, "
                                 "prompt_tokens, output_tokens)")
            for i, row in enumerate(reader, 2):
                rows.append((f"{p}:{i}", {k.strip().lower(): v for k, v in row.items() if k}))
        except csv.Error as e:  # e.g. a field over the csv module's 128 KiB limit
            raise HwsimError(f"{p}:{reader.line_num + 1}: not valid CSV ({e})") from None
    if not rows:
        raise HwsimError(f"{p}: the trace has no requests")
    out = []
    for where, row in rows:
        a = _number(_field(row, "arrival_s", where), "arrival_s", where, integer=False)
        pt = _number(_field(row, "prompt_tokens", where), "prompt_tokens", where, integer=True)
        ot = _number(_field(row, "output_tokens", where), "output_tokens", where, integer=True)
        out.append((a, int(pt), int(ot)))
    out.sort(key=lambda r: r[0])
    if limit is not None:
        out = out[:limit]
    return [Request(i, a, pt, ot) for i, (a, pt, ot) in enumerate(out)]


def describe(reqs: Sequence[Request]) -> dict[str, float]:
    """Count, span and mean lengths of a request list."""
    if not reqs:
        return {"requests": 0}
    return {"requests": len(reqs), "span_s": reqs[-1].arrival_s - reqs[0].arrival_s,
            "mean_prompt_tokens": float(np.mean([r.prompt_tokens for r in reqs])),
            "mean_output_tokens": float(np.mean([r.output_tokens for r in reqs]))}
