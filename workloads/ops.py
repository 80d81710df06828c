"""Workload IR: layer-level ops with shapes and dtypes.

Each op knows its FLOPs by unit kind (``matrix`` for MACs that map to tensor cores or systolic
arrays, ``vector`` for SIMD/ALU work, ``special`` for transcendental functions) and the minimum
bytes it must read and write (each operand once). One MAC counts as 2 FLOP.

Ops carry no name: a graph node pairs a name with an op, so 80 identical transformer layers
share the same few op objects and a mapper's cost cache hits on all of them.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from workloads.dtypes import BF16, DType, get_dtype

__all__ = [
    "Flops", "Op", "MatMul", "Conv2d", "Attention", "Elementwise", "Norm", "Softmax",
    "Embedding", "Pool", "Collective", "Memcpy", "OP_TYPES", "ELEMENTWISE_FNS", "EPILOGUE_FNS",
    "COLLECTIVES", "SPECIAL_FUNCTIONS", "MAX_SIZE", "op_from_dict", "Sparsity",
    "parse_sparsity", "SPARSITY_PATTERNS",
]

# Transcendental functions an op evaluates (its ``Flops.special``): the cost of one evaluation
# differs several-fold between them on SIMD units (a tanh is a rational approximation with a
# division, an exp a polynomial and an exponent shift), see ``params.special_cost``.
SPECIAL_FUNCTIONS = ("exp", "tanh", "erf", "rsqrt", "sqrt")


@dataclass(frozen=True)
class Flops:
    """FLOP counts by the kind of unit that executes them."""

    matrix: float = 0.0
    vector: float = 0.0
    special: float = 0.0

    @property
    def total(self) -> float:
        return self.matrix + self.vector + self.special

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.matrix + other.matrix, self.vector + other.vector,
                     self.special + other.special)

    def scaled(self, k: float) -> Flops:
        return Flops(self.matrix * k, self.vector * k, self.special * k)


#: Largest value a size field may take. Beyond 2**53 a float (FLOP and byte counts are floats)
#: no longer holds every integer, and no real tensor dimension or payload comes near it.
MAX_SIZE = 2**53


def _show(v: Any) -> str:
    """``repr(v)``, shortened for integers too long to print."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool) and abs(v) > 10**30:
        return f"about {'-' if v < 0 else ''}2**{int(abs(v)).bit_length() - 1}"
    try:
        text = repr(v)
    except ValueError:  # e.g. a Fraction of huge integers
        return f"a {type(v).__name__} too long to print"
    return text if len(text) <= 80 else text[:77] + "..."


def _sizes(op: Op, *names: str, minimum: int = 1) -> None:
    """Check integer size fields: an ``int`` (numpy integers are converted; bools, floats such
    as ``4.0`` or ``inf`` are not sizes) in ``[minimum, MAX_SIZE]``; ValueError otherwise."""
    what = "a positive number" if minimum == 1 else f">= {minimum}"
    for n in names:
        v = getattr(op, n)
        if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral)):
            whole = isinstance(v, float) and v.is_integer() and abs(v) <= MAX_SIZE
            hint = f" (a float; write {int(v)})" if whole else ""
            raise ValueError(f"{op.kind}: {n} must be a whole number, got {_show(v)}{hint}")
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise ValueError(f"{op.kind}: {n} must be {what} (an integer), got {_show(v)}")
        if v > MAX_SIZE:
            raise ValueError(f"{op.kind}: {n}={_show(v)} is larger than 2**53; not a real size")
        if type(v) is not int:
            object.__setattr__(op, n, int(v))


def _positive(op: Op, *names: str) -> None:
    """Check numeric fields that may be fractional (byte payloads): a finite real number in
    ``(0, MAX_SIZE]``; ValueError otherwise."""
    for n in names:
        v = getattr(op, n)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{op.kind}: {n} must be a positive number, got {_show(v)}")
        if v != v or v in (math.inf, -math.inf) or v <= 0:  # no float(): ints may be huge
            raise ValueError(f"{op.kind}: {n} must be a positive finite number, got {_show(v)}")
        if v > MAX_SIZE:
            raise ValueError(f"{op.kind}: {n}={_show(v)} is larger than 2**53; not a real size")


# Pointwise ops a compiler fuses into a GEMM/conv epilogue (XLA, TensorRT, cuBLASLt):
# fn -> (extra tensor inputs read, vector FLOP per output element, special per element,
#        parameters per output channel). "batchnorm" is inference BN folded to scale + shift.
EPILOGUE_FNS: dict[str, tuple[int, float, float, int]] = {
    "relu": (0, 1.0, 0.0, 0), "gelu": (0, 8.0, 1.0, 0), "silu": (0, 3.0, 1.0, 0),
    "scale": (0, 1.0, 0.0, 0), "dropout": (0, 2.0, 0.0, 0), "add": (1, 1.0, 0.0, 0),
    "mul": (1, 1.0, 0.0, 0), "batchnorm": (0, 2.0, 0.0, 2),
}


def _check_epilogue(op: Op, epilogue: Any) -> None:
    """Normalise ``epilogue`` to a tuple of names (one name given as a string counts as a
    one-element list) and check each is in :data:`EPILOGUE_FNS`."""
    if isinstance(epilogue, str):
        epilogue = (epilogue,)
    elif not isinstance(epilogue, (list, tuple)):
        raise ValueError(f"{op.kind}: epilogue must be a list of names from "
                         f"{', '.join(EPILOGUE_FNS)}, got {_show(epilogue)}")
    epilogue = tuple(epilogue)
    if epilogue is not op.epilogue:
        object.__setattr__(op, "epilogue", epilogue)
    for fn in epilogue:
        if not isinstance(fn, str) or fn not in EPILOGUE_FNS:
            raise ValueError(f"{op.kind}: unknown epilogue {_show(fn)}; known: "
                             f"{', '.join(EPILOGUE_FNS)}")


def _epilogue_flops(epilogue: tuple[str, ...], out_elems: float) -> Flops:
    v = sum(EPILOGUE_FNS[f][1] for f in epilogue) * out_elems
    sp = sum(EPILOGUE_FNS[f][2] for f in epilogue) * out_elems
    return Flops(vector=v, special=sp)


# the special function each pointwise fn evaluates (fns without one are absent)
_SPECIAL_OF_FN = {"gelu": "tanh", "silu": "exp", "swiglu": "exp", "adam": "sqrt"}


def _epilogue_specials(epilogue: tuple[str, ...], out_elems: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in epilogue:
        if EPILOGUE_FNS[f][2]:
            name = _SPECIAL_OF_FN[f]
            out[name] = out.get(name, 0.0) + EPILOGUE_FNS[f][2] * out_elems
    return out


def _epilogue_inputs(epilogue: tuple[str, ...]) -> int:
    return sum(EPILOGUE_FNS[f][0] for f in epilogue)


def _epilogue_params(epilogue: tuple[str, ...], channels: int) -> float:
    return float(sum(EPILOGUE_FNS[f][3] for f in epilogue) * channels)


# -- weight sparsity ---------------------------------------------------------------------------
SPARSITY_PATTERNS = ("n:m", "unstructured")
#: Largest group M of an N:M pattern (hardware uses 4 or 8; SCALE-Sim v3 takes any block size).
MAX_SPARSITY_GROUP = 1024
#: Largest metadata_bits a user may give per stored nonzero (CSR with 64-bit indices is 64).
MAX_METADATA_BITS = 1024


@dataclass(frozen=True)
class Sparsity:
    """The stored form of a pruned weight: which values are kept and what indexes them.

    ``pattern`` is ``"n:m"`` (structured: at most ``n`` nonzeros in every group of ``m``
    consecutive weights along the reduction dimension K, as NVIDIA's sparse tensor cores,
    AMD's SMFMA and SCALE-Sim v3's N:M layers use) or ``"unstructured"`` (any weight may be
    zero). ``density`` is the fraction of weights kept (``n/m`` for N:M, derived).
    ``metadata_bits`` is the index overhead per stored nonzero, default:

    - N:M: ``ceil(log2(m))`` bits, the position of each kept value in its group. 2 bits for
      2:4, as NVIDIA's sparse tensor cores store it (A100 whitepaper: "the compressed matrix
      is half the size plus metadata with 2-bit indices"; cuSPARSELt keeps 2 bits per
      nonzero, ``K/8`` bytes of metadata per row of a 16-bit matrix), and what SCALE-Sim v3
      counts for its blocked-ELLPACK format (``ceil(log2 M)`` bits per stored element).
    - unstructured: a bitmap of one bit per dense element, i.e. ``1/density`` bits per stored
      nonzero (the format of SpInfer's Tensor-Core-Aware Bitmap Encoding, Fan et al.,
      EuroSys 2025, which beats CSR-style 16/32-bit indices at the 30-70% sparsity LLMs are
      pruned to).

    A weight's stored bytes are ``dense bytes x density x (1 + metadata_bits / (8 x element
    bits / 8))``, never more than dense: a layer whose compressed form would be larger (a
    bitmap at very low sparsity) is kept dense (:meth:`stored_fraction`).

    >>> Sparsity.nm(2, 4).stored_fraction(2.0)  # bf16: half the values + 2 bits each
    0.5625
    >>> Sparsity.unstructured(zeros=0.75).stored_fraction(2.0)  # 25% kept + 1 bit per weight
    0.3125
    """

    pattern: str
    n: int | None = None
    m: int | None = None
    density: float | None = None
    metadata_bits: float | None = None

    def __post_init__(self) -> None:
        if self.pattern not in SPARSITY_PATTERNS:
            raise ValueError(f"sparsity: pattern must be one of {', '.join(SPARSITY_PATTERNS)}, "
                             f"got {_show(self.pattern)}")
        mb = self.metadata_bits
        if mb is not None and (isinstance(mb, bool) or not isinstance(mb, numbers.Real)
                               or not 0 <= mb <= MAX_METADATA_BITS):
            raise ValueError(f"sparsity: metadata_bits per stored nonzero must be a number in "
                             f"[0, {MAX_METADATA_BITS}], got {_show(mb)}")
        if self.pattern == "n:m":
            for name in ("n", "m"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                    raise ValueError(f"sparsity: N:M needs whole numbers N and M, got "
                                     f"{name}={_show(v)}")
            n, m = int(self.n), int(self.m)  # type: ignore[arg-type]
            if m < 1:
                raise ValueError(f"sparsity: {n}:{m}: the group M must be at least 1")
            if n < 1:
                raise ValueError(f"sparsity: {n}:{m} keeps no weight (N must be at least 1)")
            if m > MAX_SPARSITY_GROUP:
                raise ValueError(f"sparsity: {n}:{m}: the group M must be at most "
                                 f"{MAX_SPARSITY_GROUP}")
            if n > m:
                raise ValueError(f"sparsity: {n}:{m} keeps more weights than the group holds "
                                 f"(N must not exceed M)")
            density = n / m
            if self.density is not None and not _close(self.density, density):
                raise ValueError(f"sparsity: {n}:{m} has density {density:g}, got "
                                 f"density={_show(self.density)}")
            object.__setattr__(self, "n", n)
            object.__setattr__(self, "m", m)
            object.__setattr__(self, "density", density)
            default_bits = float(math.ceil(math.log2(m)))
        else:
            if self.n is not None or self.m is not None:
                raise ValueError("sparsity: unstructured sparsity has no N:M group; give "
                                 "density only")
            d = self.density
            if isinstance(d, bool) or not isinstance(d, numbers.Real) or not (0 < d <= 1):
                raise ValueError(f"sparsity: unstructured density (fraction of weights kept) "
                                 f"must be in (0, 1], got {_show(d)}")
            object.__setattr__(self, "density", float(d))
            default_bits = 1.0 / float(d)  # a bitmap: one bit per dense element
        object.__setattr__(self, "metadata_bits", default_bits if mb is None else float(mb))

    @classmethod
    def nm(cls, n: int, m: int, metadata_bits: float | None = None) -> Sparsity:
        """N:M structured sparsity (``ceil(log2 m)`` index bits per kept value by default)."""
        return cls("n:m", n=n, m=m, metadata_bits=metadata_bits)

    @classmethod
    def unstructured(cls, density: float | None = None, *, zeros: float | None = None,
                     metadata_bits: float | None = None) -> Sparsity:
        """Unstructured sparsity keeping ``density`` of the weights (or ``1 - zeros``)."""
        if (density is None) == (zeros is None):
            raise ValueError("sparsity: give one of density (fraction kept) or zeros "
                             "(fraction pruned)")
        if zeros is not None:
            if isinstance(zeros, bool) or not isinstance(zeros, numbers.Real) \
                    or not 0 <= zeros < 1:
                raise ValueError(f"sparsity: the fraction of zeros must be in [0, 1), got "
                                 f"{_show(zeros)}")
            kept = 1.0 - float(zeros)
            density = round(kept, 12) or kept  # 1 - 0.7 = 0.30000000000000004
        return cls("unstructured", density=density, metadata_bits=metadata_bits)

    @property
    def zeros(self) -> float:
        """Fraction of the weights that are zero (pruned)."""
        return 1.0 - float(self.density)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """``"2:4"`` or ``"70% unstructured"``."""
        if self.pattern == "n:m":
            return f"{self.n}:{self.m}"
        return f"{100 * self.zeros:.4g}% unstructured"

    def spec(self) -> str | dict[str, Any]:
        """The spelling :func:`parse_sparsity` reads back: ``"2:4"``, ``"0.7"`` (fraction of
        zeros), or a field mapping when the metadata is not the default."""
        default = Sparsity(self.pattern, n=self.n, m=self.m, density=self.density)
        if default.metadata_bits != self.metadata_bits:
            return {"pattern": self.pattern, "n": self.n, "m": self.m, "density": self.density,
                    "metadata_bits": self.metadata_bits}
        return self.label if self.pattern == "n:m" else f"{self.zeros:.12g}"

    def stored_fraction(self, elem_bytes: float) -> float:
        """Stored bytes of the weight over its dense bytes, for elements of ``elem_bytes``:
        ``density x (1 + metadata_bits / (8 x elem_bytes))``, at most 1."""
        d = float(self.density)  # type: ignore[arg-type]
        meta = float(self.metadata_bits)  # type: ignore[arg-type]
        return min(1.0, d * (1.0 + meta / (8.0 * elem_bytes)))

    def stored_bytes(self, dense_bytes: float, elem_bytes: float) -> float:
        """Bytes a weight of ``dense_bytes`` takes in this format (values + metadata)."""
        return dense_bytes * self.stored_fraction(elem_bytes)


def _close(a: Any, b: float) -> bool:
    return isinstance(a, numbers.Real) and not isinstance(a, bool) and abs(float(a) - b) <= 1e-9


_NM = re.compile(r"\s*([0-9]{1,6})\s*:\s*([0-9]{1,6})\s*")
_SPARSITY_HELP = ("expected N:M such as 2:4 (structured), or the fraction of weights pruned "
                  "such as 0.7 (unstructured, 0 <= fraction < 1)")


def parse_sparsity(value: Any, what: str = "sparsity") -> Sparsity | None:
    """A :class:`Sparsity` from ``"2:4"`` (N:M), a fraction of zeros (``0.7`` or ``"0.7"``:
    70% of the weights pruned, unstructured; ``"70%"`` too), a field mapping, or a Sparsity.
    ``None`` and a fraction of 0 mean dense (``None``).

    Raises
    ------
    ValueError
        Naming ``what`` and the value, and what was expected.

    >>> parse_sparsity("2:4").density, parse_sparsity("0.7").density
    (0.5, 0.3)
    """
    if value is None or isinstance(value, Sparsity):
        return value
    shown = _show(value)
    try:
        if isinstance(value, Mapping):
            known = {f.name for f in fields(Sparsity)}
            unknown = sorted(str(k) for k in value if k not in known)
            if unknown:
                raise ValueError(f"unknown field {unknown[0]!r}; fields: {', '.join(sorted(known))}")
            return Sparsity(**value)
        if isinstance(value, str):
            text = value.strip()
            m = _NM.fullmatch(text)
            if m:
                return Sparsity.nm(int(m.group(1)), int(m.group(2)))
            pct = text.endswith("%")
            num = text[:-1].strip() if pct else text
            if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", num) \
                    or len(num) > 40:
                raise ValueError(_SPARSITY_HELP)
            value = float(num) / (100.0 if pct else 1.0)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(_SPARSITY_HELP)
        z = float(value)
        if not math.isfinite(z) or not 0 <= z < 1:
            hint = " (1 would remove every weight)" if z == 1 else ""
            raise ValueError(f"the fraction of weights pruned must be in [0, 1){hint}")
        return None if z == 0 else Sparsity.unstructured(zeros=z)
    except (ValueError, TypeError) as e:
        msg = str(e)
        if msg.startswith("sparsity: "):
            msg = msg[len("sparsity: "):]
        raise ValueError(f"{what} {shown}: {msg}") from None


def _check_sparsity(op: Op, k: int, weight: bool = True) -> None:
    """Coerce ``op.sparsity`` to a :class:`Sparsity` and check it fits the op: a weight
    operand, and for N:M a reduction dimension ``k`` made of whole groups of M."""
    s = op.sparsity  # type: ignore[attr-defined]
    if s is None:
        return
    if not isinstance(s, Sparsity):
        s = parse_sparsity(s, f"{op.kind}: sparsity")
        object.__setattr__(op, "sparsity", s)
        if s is None:
            return
    if not weight:
        raise ValueError(f"{op.kind}: sparsity describes a pruned weight; set weight=true (a "
                         f"GEMM of two activations is not pruned)")
    if s.pattern == "n:m" and k % s.m:  # type: ignore[operator]
        raise ValueError(f"{op.kind}: {s.label} sparsity groups {s.m} weights along the "
                         f"reduction dimension, which must be a multiple of {s.m}; got {k}")


@dataclass(frozen=True, kw_only=True)
class Op:
    """Base op: a ``dtype`` for activations/compute; subclasses add shapes."""

    kind: ClassVar[str] = "op"
    dtype: DType = BF16

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            object.__setattr__(self, "dtype", get_dtype(self.dtype))  # type: ignore[arg-type]
        wd = getattr(self, "weight_dtype", None)
        if wd is not None and not isinstance(wd, DType):
            object.__setattr__(self, "weight_dtype", get_dtype(wd))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with the field name if a shape is impossible."""

    def flops(self) -> Flops:
        raise NotImplementedError

    def bytes_read(self) -> float:
        raise NotImplementedError

    #: the transcendental function behind ``flops().special`` (ops that evaluate one kind)
    special_function: ClassVar[str] = "exp"

    def special_evaluations(self) -> dict[str, float]:
        """Evaluations of each transcendental function (sums to ``flops().special``)."""
        sp = self.flops().special
        return {self.special_function: sp} if sp else {}

    def bytes_written(self) -> float:
        raise NotImplementedError

    @property
    def min_bytes(self) -> float:
        """Compulsory traffic: every operand read once and every result written once."""
        return self.bytes_read() + self.bytes_written()

    def params(self) -> float:
        """Number of trainable parameters this op owns (0 for most ops)."""
        return 0.0

    def weight_bytes(self) -> float:
        """Bytes of parameters this op reads (part of the memory footprint)."""
        return 0.0

    def output_bytes(self) -> float:
        return self.bytes_written()

    @property
    def arithmetic_intensity(self) -> float:
        b = self.min_bytes
        return self.flops().total / b if b else math.inf

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "sparsity":  # absent for a dense op: its dict is unchanged
                if v is not None:
                    d[f.name] = v.spec()
                continue
            if f.name == "seq_lens" and v is None:  # absent for equal-length samples
                continue
            d[f.name] = v.name if isinstance(v, DType) else v
        return d

    def describe(self) -> str:
        parts = [f"{k}={getattr(self, k).label if k == 'sparsity' else v}"
                 for k, v in self.to_dict().items()
                 if k != "kind" and v is not None and v != ()]
        return f"{self.kind}({', '.join(parts)})"


@dataclass(frozen=True, kw_only=True)
class MatMul(Op):
    """(Batched) GEMM: C[b, m, n] = A[b, m, k] @ B[(b,) k, n].

    With ``weight=True`` operand B is a parameter (a linear layer, tokens folded into ``m``,
    ``batch=1``; or ``batch`` experts of a mixture-of-experts layer, each with its own weight)
    and may be stored in ``weight_dtype`` (weights-only int4/int8 quantisation) and pruned
    (``sparsity``, see :class:`Sparsity`: N:M groups run along ``k``). FLOPs stay those of
    the dense layer; the bytes of B (:meth:`b_bytes`) are its stored, compressed size.
    """

    kind: ClassVar[str] = "matmul"
    m: int
    n: int
    k: int
    batch: int = 1
    weight: bool = False
    bias: bool = False
    weight_dtype: DType | None = None
    epilogue: tuple[str, ...] = ()  # fused pointwise ops on the output (see EPILOGUE_FNS)
    sparsity: Sparsity | None = None  # a pruned weight B (None: dense)

    def validate(self) -> None:
        _sizes(self, "m", "n", "k", "batch")
        _check_epilogue(self, self.epilogue)
        _check_sparsity(self, self.k, self.weight)

    @property
    def b_dtype(self) -> DType:
        return self.weight_dtype or self.dtype

    @property
    def weight_stored_fraction(self) -> float:
        """Stored bytes of B over its dense bytes (1.0 unless pruned)."""
        return 1.0 if self.sparsity is None else self.sparsity.stored_fraction(self.b_dtype.bytes)

    def flops(self) -> Flops:
        mm = 2.0 * self.batch * self.m * self.n * self.k
        out = self.batch * self.m * self.n
        return Flops(matrix=mm, vector=out if self.bias else 0.0) + \
            _epilogue_flops(self.epilogue, out)

    def special_evaluations(self) -> dict[str, float]:
        return _epilogue_specials(self.epilogue, self.batch * self.m * self.n)

    def a_bytes(self) -> float:
        return self.batch * self.m * self.k * self.dtype.bytes

    def dense_b_bytes(self) -> float:
        """Bytes of B before pruning (``batch x k x n`` elements)."""
        return self.batch * self.k * self.n * self.b_dtype.bytes

    def b_bytes(self) -> float:
        """Bytes of B as stored: compressed values and metadata when pruned."""
        dense = self.batch * self.k * self.n * self.b_dtype.bytes
        return dense if self.sparsity is None else dense * self.weight_stored_fraction

    def c_bytes(self) -> float:
        return self.batch * self.m * self.n * self.dtype.bytes

    def bytes_read(self) -> float:
        return self.a_bytes() + self.b_bytes() + _epilogue_inputs(self.epilogue) * self.c_bytes()

    def bytes_written(self) -> float:
        return self.c_bytes()

    def params(self) -> float:
        epi = _epilogue_params(self.epilogue, self.batch * self.n)
        if not self.weight:
            return epi
        return self.batch * (self.k * self.n + (self.n if self.bias else 0)) + epi

    def weight_bytes(self) -> float:
        epi = _epilogue_params(self.epilogue, self.batch * self.n) * self.dtype.bytes
        if not self.weight:
            return epi
        return self.b_bytes() + (self.batch * self.n * self.dtype.bytes if self.bias else 0.0) + epi


@dataclass(frozen=True, kw_only=True)
class Conv2d(Op):
    """2-D convolution, NCHW input ``[n, c, h, w]``, ``k`` filters of ``r x s``.

    ``groups`` covers grouped and depthwise (``groups == c``) convolution. The filter may be
    pruned (``sparsity``, see :class:`Sparsity`): N:M groups run along the reduction dimension
    of the implicit GEMM, ``c/groups x r x s``; FLOPs stay those of the dense layer and
    :meth:`weight_bytes` is the filter's stored, compressed size.
    """

    kind: ClassVar[str] = "conv2d"
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    bias: bool = False
    weight_dtype: DType | None = None
    epilogue: tuple[str, ...] = ()  # fused pointwise ops on the output (see EPILOGUE_FNS)
    sparsity: Sparsity | None = None  # a pruned filter (None: dense)

    def validate(self) -> None:
        _sizes(self, "n", "c", "h", "w", "k", "r", "s", "stride", "groups")
        _sizes(self, "pad", minimum=0)
        _check_epilogue(self, self.epilogue)
        if self.c % self.groups or self.k % self.groups:
            raise ValueError(f"conv2d: groups={self.groups} must divide c={self.c} and k={self.k}")
        if self.p <= 0 or self.q <= 0:
            raise ValueError(
                f"conv2d: filter {self.r}x{self.s} larger than padded input {self.h}x{self.w}")
        _check_sparsity(self, (self.c // self.groups) * self.r * self.s)

    @property
    def weight_stored_fraction(self) -> float:
        """Stored bytes of the filter over its dense bytes (1.0 unless pruned)."""
        wdt = self.weight_dtype or self.dtype
        return 1.0 if self.sparsity is None else self.sparsity.stored_fraction(wdt.bytes)

    @property
    def p(self) -> int:
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def q(self) -> int:
        return (self.w + 2 * self.pad - self.s) // self.stride + 1

    def gemm_shape(self) -> tuple[int, int, int, int]:
        """(groups, M, N, K) of the im2col GEMM: M = n*p*q, N = k/g, K = c/g*r*s."""
        g = self.groups
        return g, self.n * self.p * self.q, self.k // g, (self.c // g) * self.r * self.s

    def flops(self) -> Flops:
        g, m, n, k = self.gemm_shape()
        out = self.n * self.k * self.p * self.q
        return Flops(matrix=2.0 * g * m * n * k, vector=out if self.bias else 0.0) + \
            _epilogue_flops(self.epilogue, out)

    def special_evaluations(self) -> dict[str, float]:
        return _epilogue_specials(self.epilogue, self.n * self.k * self.p * self.q)

    def bytes_read(self) -> float:
        act = self.n * self.c * self.h * self.w * self.dtype.bytes
        return act + self.weight_bytes() + _epilogue_inputs(self.epilogue) * self.bytes_written()

    def bytes_written(self) -> float:
        return self.n * self.k * self.p * self.q * self.dtype.bytes

    def params(self) -> float:
        return self.k * (self.c // self.groups) * self.r * self.s + (self.k if self.bias else 0) \
            + _epilogue_params(self.epilogue, self.k)

    def weight_bytes(self) -> float:
        wb = (self.weight_dtype or self.dtype).bytes
        epi = _epilogue_params(self.epilogue, self.k) * self.dtype.bytes
        filt = self.k * (self.c // self.groups) * self.r * self.s
        if self.sparsity is not None:  # the filter compressed; bias and epilogue dense
            return filt * wb * self.weight_stored_fraction + \
                (self.k * wb if self.bias else 0.0) + epi
        return (filt + (self.k if self.bias else 0)) * wb + epi


@dataclass(frozen=True, kw_only=True)
class Attention(Op):
    """Scaled dot-product attention for ``seq`` new query tokens against ``context + seq`` keys.

    ``phase='prefill'``: ``context`` cached tokens (usually 0) plus ``seq`` new tokens, causal by
    default. ``phase='decode'``: ``seq`` (usually 1) new tokens against a KV cache of length
    ``context``. ``kv_heads < heads`` is GQA (MQA when 1). Counts the two attention GEMMs as
    matrix FLOPs and the softmax as vector/special FLOPs; bytes are flash-attention minimal
    (Q, K, V read once, O written once, new K/V appended to the cache).

    ``seq_lens`` (prefill only): the new tokens of each sample when they differ (packed,
    variable-length attention as TensorRT's varlen BERT plugins and FlashAttention's
    ``cu_seqlens`` API run it), ``batch`` of them, the longest equal to ``seq``. Each sample
    attends over its own ``context + l_i`` keys; without it every sample has ``seq`` tokens.
    """

    kind: ClassVar[str] = "attention"
    batch: int
    heads: int
    head_dim: int
    seq: int
    kv_heads: int | None = None
    context: int = 0
    phase: str = "prefill"
    causal: bool = True
    kv_dtype: DType | None = None
    seq_lens: tuple[int, ...] | None = None

    def validate(self) -> None:
        _sizes(self, "batch", "heads", "head_dim", "seq")
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        _sizes(self, "kv_heads")
        _sizes(self, "context", minimum=0)
        if self.heads % self.kv_heads:
            raise ValueError(f"attention: kv_heads={self.kv_heads} must divide heads={self.heads}")
        if self.phase not in ("prefill", "decode"):
            raise ValueError(f"attention: phase must be 'prefill' or 'decode', got {self.phase!r}")
        if self.phase == "decode" and self.context <= 0:
            raise ValueError("attention: decode needs a KV cache, context must be > 0")
        if self.kv_dtype is not None and not isinstance(self.kv_dtype, DType):
            object.__setattr__(self, "kv_dtype", get_dtype(self.kv_dtype))
        if self.seq_lens is not None:
            self._check_seq_lens()

    def _check_seq_lens(self) -> None:
        v = self.seq_lens
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"attention: seq_lens must be a list of lengths, got {_show(v)}")
        for i, n in enumerate(v):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= self.seq:
                raise ValueError(f"attention: seq_lens[{i}] must be a whole number of tokens in "
                                 f"[1, seq={self.seq}], got {_show(n)}")
        if len(v) != self.batch:
            raise ValueError(f"attention: seq_lens has {len(v)} lengths but batch is "
                             f"{self.batch}")
        if max(v) != self.seq:
            raise ValueError(f"attention: the longest of seq_lens ({max(v)}) must equal seq "
                             f"({self.seq})")
        if self.phase != "prefill":
            raise ValueError("attention: seq_lens (variable-length samples) applies to "
                             "prefill, not decode")
        if not isinstance(v, tuple) or any(type(n) is not int for n in v):
            object.__setattr__(self, "seq_lens", tuple(int(n) for n in v))

    @property
    def kv_len(self) -> int:
        """Keys of the longest sample: ``context + seq``."""
        return self.context + self.seq

    @property
    def lengths(self) -> tuple[int, ...]:
        """New tokens of each sample: ``seq_lens``, or ``seq`` for each of ``batch``."""
        return self.seq_lens if self.seq_lens is not None else (self.seq,) * self.batch

    @property
    def tokens(self) -> int:
        """New (query) tokens over the batch: ``sum(seq_lens)`` or ``batch * seq``."""
        return sum(self.seq_lens) if self.seq_lens is not None else self.batch * self.seq

    @property
    def kv_tokens(self) -> int:
        """Keys over the batch after this step: ``tokens + batch * context``."""
        return self.tokens + self.batch * self.context

    def pairs_of(self, n: int) -> float:
        """Query-key pairs of one sample with ``n`` new tokens, per head."""
        if self.causal:
            return n * self.context + n * (n + 1) / 2.0
        return float(n * (self.context + n))

    @property
    def score_pairs(self) -> float:
        """Query-key pairs per (batch, head), the mean over samples with ``seq_lens``;
        causal masks the upper triangle."""
        if self.seq_lens is not None:
            return math.fsum(self.pairs_of(n) for n in self.seq_lens) / self.batch
        return self.pairs_of(self.seq)

    def flops(self) -> Flops:
        pairs = self.batch * self.heads * self.score_pairs
        return Flops(matrix=4.0 * pairs * self.head_dim, vector=4.0 * pairs, special=pairs)

    @property
    def _kvb(self) -> float:
        return (self.kv_dtype or self.dtype).bytes

    def kv_cache_bytes(self) -> float:
        """Bytes of K and V held for this layer after the step (the cache footprint)."""
        return 2.0 * self.kv_tokens * self.kv_heads * self.head_dim * self._kvb

    def bytes_read(self) -> float:
        q = self.tokens * self.heads * self.head_dim * self.dtype.bytes
        kv = 2.0 * self.kv_tokens * self.kv_heads * self.head_dim * self._kvb
        return q + kv

    def bytes_written(self) -> float:
        o = self.tokens * self.heads * self.head_dim * self.dtype.bytes
        new_kv = 2.0 * self.tokens * self.kv_heads * self.head_dim * self._kvb
        return o + new_kv

    def output_bytes(self) -> float:
        return self.tokens * self.heads * self.head_dim * self.dtype.bytes

    def as_gemms(self) -> list[MatMul]:
        """The two batched GEMMs (QK^T and PV) for mappers without a fused kernel.

        Causal masking is reflected by shrinking the key dimension to the average visible
        length, so the GEMM FLOPs equal :meth:`flops` ``.matrix``. With ``seq_lens`` the rows
        are the mean sample's (FLOPs equal up to rounding).
        """
        g = self.heads // self.kv_heads
        b = self.batch * self.kv_heads
        rows = self.seq if self.seq_lens is None else max(1, round(self.tokens / self.batch))
        m = rows * g
        eff_kv = max(1, round(self.score_pairs / rows))
        return [MatMul(m=m, n=eff_kv, k=self.head_dim, batch=b, dtype=self.dtype),
                MatMul(m=m, n=self.head_dim, k=eff_kv, batch=b, dtype=self.dtype)]


ELEMENTWISE_FNS: dict[str, tuple[int, float, float]] = {
    # fn: (inputs, vector FLOP per element, special-function evaluations per element)
    "add": (2, 1.0, 0.0),
    "mul": (2, 1.0, 0.0),
    "relu": (1, 1.0, 0.0),
    "gelu": (1, 8.0, 1.0),   # tanh approximation: ~8 mul/add + one tanh
    "silu": (1, 3.0, 1.0),   # x * sigmoid(x): exp, add, div, mul
    "swiglu": (2, 4.0, 1.0),  # silu(gate) * up, fused
    "scale": (1, 1.0, 0.0),
    "dropout": (1, 2.0, 0.0),
    "adam": (4, 12.0, 1.0),  # param, grad, m, v -> ~12 FLOP and one sqrt per element
}


@dataclass(frozen=True, kw_only=True)
class Elementwise(Op):
    """Pointwise op over ``numel`` elements; ``fn`` from :data:`ELEMENTWISE_FNS`."""

    kind: ClassVar[str] = "elementwise"
    fn: str
    numel: int
    state_dtype: DType | None = None  # optimizer state precision (adam), else dtype
    # elements of one row where the library runs one thread block per row (vLLM's
    # silu_and_mul: a token's d_ff; its rotary kernel: a token's q and k); None: a flat grid
    row: int | None = None
    # elements of the one table row each ``row`` reads in place of a full-size second operand
    # (the rotary kernel's cos/sin cache, indexed by position: rot_dim per token); None: full
    table: int | None = None

    def validate(self) -> None:
        if not isinstance(self.fn, str) or self.fn not in ELEMENTWISE_FNS:
            raise ValueError(f"elementwise: unknown fn {_show(self.fn)}; known: "
                             f"{', '.join(ELEMENTWISE_FNS)}")
        _sizes(self, "numel")
        if self.row is not None:
            _sizes(self, "row")
        if self.table is not None:
            _sizes(self, "table")
            if self.row is None or ELEMENTWISE_FNS[self.fn][0] < 2:
                raise ValueError(f"elementwise: table {_show(self.table)} needs a row and a "
                                 f"two-input fn, got row {_show(self.row)}, fn {self.fn!r}")
            if self.table > self.row:
                raise ValueError(f"elementwise: table {_show(self.table)} is wider than its row "
                                 f"{_show(self.row)}: one table row is read per row")
        if self.state_dtype is not None and not isinstance(self.state_dtype, DType):
            object.__setattr__(self, "state_dtype", get_dtype(self.state_dtype))

    @property
    def _eb(self) -> float:
        return (self.state_dtype or self.dtype).bytes

    def flops(self) -> Flops:
        _, v, s = ELEMENTWISE_FNS[self.fn]
        return Flops(vector=v * self.numel, special=s * self.numel)

    def special_evaluations(self) -> dict[str, float]:
        s = ELEMENTWISE_FNS[self.fn][2] * self.numel
        return {_SPECIAL_OF_FN[self.fn]: s} if s else {}

    def bytes_read(self) -> float:
        n_in = ELEMENTWISE_FNS[self.fn][0]
        if self.table is not None and self.row is not None:  # one table row per row
            return ((n_in - 1) * self.numel + -(-self.numel // self.row) * self.table) * self._eb
        return n_in * self.numel * self._eb

    def bytes_written(self) -> float:
        outs = 3 if self.fn == "adam" else 1  # adam updates param, m and v
        return outs * self.numel * self._eb


@dataclass(frozen=True, kw_only=True)
class Norm(Op):
    """Row normalisation over ``cols``: ``layernorm``, ``rmsnorm`` or ``batchnorm`` (inference,
    per-channel affine with ``cols`` channels)."""

    kind: ClassVar[str] = "norm"
    special_function: ClassVar[str] = "rsqrt"
    norm: str
    rows: int
    cols: int

    def validate(self) -> None:
        if self.norm not in ("layernorm", "rmsnorm", "batchnorm"):
            raise ValueError(f"norm: unknown norm {self.norm!r}; known: layernorm, rmsnorm, batchnorm")
        _sizes(self, "rows", "cols")

    def flops(self) -> Flops:
        n = self.rows * self.cols
        per = {"layernorm": 7.0, "rmsnorm": 4.0, "batchnorm": 2.0}[self.norm]
        return Flops(vector=per * n, special=0.0 if self.norm == "batchnorm" else float(self.rows))

    def bytes_read(self) -> float:
        return self.rows * self.cols * self.dtype.bytes + self.weight_bytes()

    def bytes_written(self) -> float:
        return self.rows * self.cols * self.dtype.bytes

    def params(self) -> float:
        return float(self.cols if self.norm == "rmsnorm" else 2 * self.cols)

    def weight_bytes(self) -> float:
        return self.params() * self.dtype.bytes


@dataclass(frozen=True, kw_only=True)
class Softmax(Op):
    """Row softmax over ``cols`` (max, subtract, exp, sum, divide)."""

    kind: ClassVar[str] = "softmax"
    rows: int
    cols: int

    def validate(self) -> None:
        _sizes(self, "rows", "cols")

    def flops(self) -> Flops:
        n = self.rows * self.cols
        return Flops(vector=4.0 * n, special=float(n))

    def bytes_read(self) -> float:
        return self.rows * self.cols * self.dtype.bytes

    def bytes_written(self) -> float:
        return self.rows * self.cols * self.dtype.bytes


@dataclass(frozen=True, kw_only=True)
class Embedding(Op):
    """Table lookup of ``tokens`` rows of width ``dim`` from a ``vocab x dim`` table."""

    kind: ClassVar[str] = "embedding"
    tokens: int
    vocab: int
    dim: int
    weight_dtype: DType | None = None

    def validate(self) -> None:
        _sizes(self, "tokens", "vocab", "dim")

    def flops(self) -> Flops:
        return Flops()

    def bytes_read(self) -> float:
        return self.tokens * self.dim * (self.weight_dtype or self.dtype).bytes + self.tokens * 4

    def bytes_written(self) -> float:
        return self.tokens * self.dim * self.dtype.bytes

    def params(self) -> float:
        return float(self.vocab * self.dim)

    def weight_bytes(self) -> float:
        return self.params() * (self.weight_dtype or self.dtype).bytes


@dataclass(frozen=True, kw_only=True)
class Pool(Op):
    """Max/average pooling, NCHW; ``r = h, s = w`` with ``stride=1`` is global pooling."""

    kind: ClassVar[str] = "pool"
    mode: str
    n: int
    c: int
    h: int
    w: int
    r: int
    s: int
    stride: int = 1
    pad: int = 0

    def validate(self) -> None:
        if self.mode not in ("max", "avg"):
            raise ValueError(f"pool: mode must be 'max' or 'avg', got {self.mode!r}")
        _sizes(self, "n", "c", "h", "w", "r", "s", "stride")
        _sizes(self, "pad", minimum=0)
        if self.p <= 0 or self.q <= 0:
            raise ValueError(f"pool: window {self.r}x{self.s} larger than input {self.h}x{self.w}")

    @property
    def p(self) -> int:
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def q(self) -> int:
        return (self.w + 2 * self.pad - self.s) // self.stride + 1

    def flops(self) -> Flops:
        return Flops(vector=float(self.n * self.c * self.p * self.q * self.r * self.s))

    def bytes_read(self) -> float:
        return self.n * self.c * self.h * self.w * self.dtype.bytes

    def bytes_written(self) -> float:
        return self.n * self.c * self.p * self.q * self.dtype.bytes


COLLECTIVES = ("allreduce", "allgather", "reducescatter", "alltoall", "sendrecv")


@dataclass(frozen=True, kw_only=True)
class Collective(Op):
    """A collective over ``devices`` ranks on a payload of ``bytes`` per rank."""

    kind: ClassVar[str] = "collective"
    collective: str
    bytes: float
    devices: int

    def validate(self) -> None:
        if self.collective not in COLLECTIVES:
            raise ValueError(
                f"collective: unknown collective {self.collective!r}; known: {', '.join(COLLECTIVES)}")
        _positive(self, "bytes")
        _sizes(self, "devices")

    def flops(self) -> Flops:
        if self.collective in ("allreduce", "reducescatter"):
            return Flops(vector=self.bytes / self.dtype.bytes * (self.devices - 1) / self.devices)
        return Flops()

    def bytes_read(self) -> float:
        return float(self.bytes)

    def bytes_written(self) -> float:
        return float(self.bytes)


@dataclass(frozen=True, kw_only=True)
class Memcpy(Op):
    """A copy of ``bytes`` within device memory (``src == dst``) or across a link."""

    kind: ClassVar[str] = "memcpy"
    bytes: float
    src: str = "device"
    dst: str = "device"

    def validate(self) -> None:
        _positive(self, "bytes")

    def flops(self) -> Flops:
        return Flops()

    def bytes_read(self) -> float:
        return float(self.bytes)

    def bytes_written(self) -> float:
        return float(self.bytes)


OP_TYPES: dict[str, type[Op]] = {
    cls.kind: cls
    for cls in (MatMul, Conv2d, Attention, Elementwise, Norm, Softmax, Embedding, Pool,
                Collective, Memcpy)
}

# Short kinds accepted by the CLI and the JSONL reader, mapped to (op type, fixed fields).
_SHORT_KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    **{fn: ("elementwise", {"fn": fn}) for fn in ELEMENTWISE_FNS},
    "layernorm": ("norm", {"norm": "layernorm"}),
    "rmsnorm": ("norm", {"norm": "rmsnorm"}),
    "batchnorm": ("norm", {"norm": "batchnorm"}),
    **{c: ("collective", {"collective": c}) for c in COLLECTIVES},
    "maxpool": ("pool", {"mode": "max"}),
    "avgpool": ("pool", {"mode": "avg"}),
}


def op_from_dict(d: dict[str, Any]) -> Op:
    """Build an op from ``{"kind": ..., field: value, ...}`` as in ``hwsim ops`` JSONL input.

    Raises ValueError naming the unknown kind or field, or the missing one.
    """
    if "kind" not in d:
        raise ValueError("missing field 'kind'")
    kind = str(d["kind"]).lower()
    values = {k: v for k, v in d.items() if k != "kind" and v is not None}
    if kind in _SHORT_KINDS:
        kind, fixed = _SHORT_KINDS[kind]
        values = {**fixed, **values}
    if kind not in OP_TYPES:
        known = sorted(set(OP_TYPES) | set(_SHORT_KINDS))
        raise ValueError(f"unknown op kind {d['kind']!r}; known: {', '.join(known)}")
    cls = OP_TYPES[kind]
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{kind}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(names))}")
    required = [f.name for f in fields(cls)
                if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
    if required:
        raise ValueError(f"{kind}: missing field {required[0]!r}")
    try:
        return cls(**values)
    except TypeError as e:  # wrong value types
        raise ValueError(f"{kind}: {e}") from None

