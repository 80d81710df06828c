"""Real execution: materialise any hwsim op in PyTorch and run it on ``cuda`` or ``cpu``.

:func:`make_runner` turns an :class:`~workloads.ops.Op` into an :class:`OpRunner` that holds
``sets`` independent input sets of random tensors (a fixed ``torch.Generator`` seed, never
zeros) and runs the op once on set ``i`` per call. Rotating the sets across calls makes the
working set larger than the last-level cache, so a weight that a real model streams from DRAM
is not served from cache by the previous repetition (:func:`auto_sets` picks the count).

How each op runs (eager PyTorch, one call = what a framework launches for the op):

- ``matmul``: ``F.linear`` (weight ``[n, k]``, optional bias) for a linear layer, ``bmm`` /
  ``baddbmm`` for batched GEMMs; ``fp8`` through ``torch._scaled_mm`` (CUDA, compute
  capability >= 8.9), ``int8`` through ``torch._int_mm`` (CUDA). Weights-only quantisation
  (``weight_dtype`` int8/int4 with bf16 activations) is approximated without dequantisation:
  the GEMM runs in ``op.dtype`` and the runner says so in :attr:`OpRunner.notes`.
- ``conv2d``: ``F.conv2d`` (NCHW, groups, stride, padding).
- ``attention``: ``F.scaled_dot_product_attention`` with ``q [b, heads, seq, d]`` and
  ``k, v [b, kv_heads, context + seq, d]`` (``enable_gqa`` for GQA/MQA); prefill is causal
  (lower-right aligned when a cached prefix exists), decode attends to the whole cache. The
  append of the new K/V into the cache (a separate small copy in frameworks) is not run.
- ``elementwise``: ``add``, ``mul``, ``relu``, ``gelu`` (tanh approximation), ``silu``,
  ``swiglu`` (``silu(gate) * up``: two kernels in eager mode), ``scale``, ``dropout``
  (training mode) and ``adam`` (``torch._fused_adam_``).
- ``norm``: ``F.layer_norm``, ``F.rms_norm``, ``F.batch_norm`` (inference) over
  ``[rows, cols]``; ``softmax`` over the last dimension; ``embedding``: ``F.embedding``;
  ``pool``: ``F.max_pool2d`` / ``F.avg_pool2d``; ``memcpy``: ``Tensor.copy_`` of bytes
  (host<->device copies use pinned host memory on CUDA).
- Epilogue-fused ``matmul``/``conv2d`` (``op.epilogue``) run the GEMM, then each pointwise op
  (unfused, in place where PyTorch allows); ``batchnorm`` is a per-channel scale and shift.

dtypes: ``fp32``; ``tf32`` (fp32 tensors with TF32 allowed for matmul and cuDNN around the
call on CUDA, plain fp32 on CPU; ``fp32`` disallows TF32 the same way); ``bf16``; ``fp16``
(runs on CPUs too, through conversions where the CPU has no fp16 arithmetic: see ``notes``);
``fp8`` and ``int8`` GEMMs only, on CUDA only; ``int4`` is not executable.

Ops with no single-device PyTorch equivalent (collectives) and unsupported dtype/device
combinations raise :class:`NotExecutableError` (a :class:`~simulator.errors.HwsimError`) with
a one-line reason; measurement skips them and records the reason.

torch is imported lazily: importing this module needs no torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from simulator.arch import host
from simulator.arch.host import cpu_cache_bytes, cpu_flags
from simulator.errors import HwsimError
from workloads.dtypes import DType
from workloads.graph import WorkloadGraph
from workloads.ops import (
    Attention,
    Collective,
    Conv2d,
    Elementwise,
    Embedding,
    MatMul,
    Memcpy,
    Norm,
    Op,
    Pool,
    Softmax,
)

__all__ = [
    "TORCH_HINT", "NotExecutableError", "OpRunner", "GraphRunner", "import_torch",
    "resolve_device", "device_kind", "make_runner", "auto_sets", "set_bytes", "graph_runner",
    "op_label", "cpu_flags", "cpu_cache_bytes",
]

TORCH_HINT = "torch is not installed: pip install torch==2.13.0"

#: Most input sets one runner rotates over (tiny ops would otherwise need thousands).
MAX_SETS = 64
#: The rotated working set aims at this multiple of the last-level cache.
CACHE_MULTIPLE = 2.0
_DEFAULT_LLC = 32 * 2**20  # when /sys or the driver does not say


class NotExecutableError(HwsimError):
    """An op (or its dtype on this device) has no PyTorch execution path; skipped, not timed."""


def import_torch() -> Any:
    """The ``torch`` module, or :class:`HwsimError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise HwsimError(TORCH_HINT) from None
    return torch


def device_kind(device: str) -> str:
    """``"cuda"`` for ``cuda``/``cuda:N``, ``"cpu"`` for ``cpu``; HwsimError otherwise.

    >>> device_kind("cuda:1"), device_kind("cpu")
    ('cuda', 'cpu')
    """
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        return "cuda"
    raise HwsimError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; checks that CUDA exists."""
    torch = import_torch()
    d = str(device).strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device_kind(d) == "cuda" and not torch.cuda.is_available():
        raise HwsimError(f"device {device!r}: torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use device='cpu'")
    return d


# -- host facts (no torch): read by simulator.arch.host, re-exported here -------------------
def _cpu_native(dtype: str) -> bool:
    f = cpu_flags()
    if dtype == "bf16":
        return bool(f & {"avx512_bf16", "amx_bf16", "bf16", "sve_bf16"})
    if dtype == "fp16":
        return bool(f & {"avx512_fp16", "amx_fp16", "fphp", "asimdhp"})
    return True


# -- labels ----------------------------------------------------------------------------------
def _size(n: float) -> str:
    n = int(n)
    if n > 0 and n & (n - 1) == 0 and n >= 1024:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def op_label(op: Op) -> str:
    """A short human label, e.g. ``matmul 512x4096x4096 fp32`` (m x n x k).

    >>> from workloads.ops import MatMul
    >>> op_label(MatMul(m=512, n=4096, k=4096, dtype="fp32"))
    'matmul 512x4096x4096 fp32'
    """
    dt = op.dtype.name
    if isinstance(op, MatMul):
        b = f"{op.batch}x(" if op.batch > 1 else ""
        shape = f"{b}{op.m}x{op.n}x{op.k}{')' if op.batch > 1 else ''}"
        wd = f" w{op.weight_dtype.name}" if op.weight_dtype and op.weight_dtype != op.dtype else ""
        epi = f" +{'+'.join(op.epilogue)}" if op.epilogue else ""
        return f"matmul {shape} {dt}{wd}{epi}"
    if isinstance(op, Conv2d):
        g = f" g{op.groups}" if op.groups > 1 else ""
        epi = f" +{'+'.join(op.epilogue)}" if op.epilogue else ""
        return (f"conv2d n{op.n} {op.c}x{op.h}x{op.w} k{op.k} {op.r}x{op.s}/s{op.stride}{g} "
                f"{dt}{epi}")
    if isinstance(op, Attention):
        return (f"attention {op.phase} b{op.batch} h{op.heads}/{op.kv_heads} d{op.head_dim} "
                f"s{op.seq} ctx{op.context} {dt}")
    if isinstance(op, Elementwise):
        return f"{op.fn} {_size(op.numel)} {dt}"
    if isinstance(op, Norm):
        return f"{op.norm} {op.rows}x{op.cols} {dt}"
    if isinstance(op, Softmax):
        return f"softmax {op.rows}x{op.cols} {dt}"
    if isinstance(op, Embedding):
        return f"embedding {op.tokens} of {op.vocab}x{op.dim} {dt}"
    if isinstance(op, Pool):
        return f"{op.mode}pool n{op.n} {op.c}x{op.h}x{op.w} {op.r}x{op.s}/s{op.stride} {dt}"
    if isinstance(op, Memcpy):
        return f"memcpy {_size(op.bytes)} B {op.src}->{op.dst}"
    if isinstance(op, Collective):
        return f"{op.collective} {_size(op.bytes)} B x{op.devices}"
    return op.describe()


# -- plans: tensor specs per set plus the function that runs the op on one set ---------------
@dataclass(frozen=True)
class _T:
    """One input tensor of a set: shape, torch dtype, how to fill it and where it lives."""

    shape: tuple[int, ...]
    dtype: Any
    init: str = "normal"  # normal | positive | index:<high> | int8 | bytes | like
    host: bool = False  # pinned host memory on a CUDA device (host<->device copies)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _itemsize(torch_dtype: Any) -> int:
    return int(getattr(torch_dtype, "itemsize", 0) or 4)


@dataclass(frozen=True)
class _Plan:
    specs: tuple[_T, ...]
    fn: Callable[[Sequence[Any]], Any]
    notes: tuple[str, ...] = ()
    tf32: bool | None = None  # CUDA TF32 setting around the call; None = leave as is


_FLOAT = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_FP8 = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}


def _not_executable(op: Op, why: str) -> NotExecutableError:
    return NotExecutableError(f"{op_label(op)}: {why}")


def _float_dtype(torch: Any, op: Op, kind: str, notes: list[str]) -> Any:
    """The torch dtype for a floating-point (non-GEMM-special) op, or NotExecutableError."""
    name = op.dtype.name
    if name in _FLOAT:
        if kind == "cpu" and name in ("bf16", "fp16") and not _cpu_native(name):
            notes.append(f"{name} on a CPU without native {name} arithmetic (converted)")
        if kind == "cpu" and name == "tf32":
            notes.append("tf32 runs as fp32 on CPU")
        return getattr(torch, _FLOAT[name])
    if name in _FP8:
        raise _not_executable(op, f"{name} is supported for matmul on CUDA only")
    if name == "int8":
        raise _not_executable(op, "int8 is supported for matmul on CUDA only")
    raise _not_executable(op, f"dtype {name} is not supported by the executor")


def _tf32(op: Op, kind: str) -> bool | None:
    if kind != "cuda" or op.dtype.name not in ("fp32", "tf32"):
        return None
    return op.dtype.name == "tf32"


def _quant_note(op: Op, wd: DType | None, what: str = "weights") -> list[str]:
    if wd is None or wd == op.dtype:
        return []
    return [f"{what} in {wd.name} approximated without dequantisation: run in {op.dtype.name}"]


def _epilogue_specs(fns: Sequence[str], out_shape: tuple[int, ...], channel_shape: tuple[int, ...],
                    dtype: Any) -> list[_T]:
    specs: list[_T] = []
    for fn in fns:
        if fn in ("add", "mul"):
            specs.append(_T(out_shape, dtype))
        elif fn == "batchnorm":  # folded inference BN: scale and shift per channel
            specs += [_T(channel_shape, dtype, "positive"), _T(channel_shape, dtype)]
    return specs


def _apply_epilogue(torch: Any, fns: Sequence[str], out: Any, extra: Sequence[Any]) -> Any:
    F = torch.nn.functional
    j = 0
    for fn in fns:
        if fn == "relu":
            out = torch.relu_(out)
        elif fn == "gelu":
            out = F.gelu(out, approximate="tanh")
        elif fn == "silu":
            out = F.silu(out, inplace=True)
        elif fn == "scale":
            out = out.mul_(0.5)
        elif fn == "dropout":
            out = F.dropout(out, p=0.1, training=True, inplace=True)
        elif fn == "add":
            out = out.add_(extra[j])
            j += 1
        elif fn == "mul":
            out = out.mul_(extra[j])
            j += 1
        elif fn == "batchnorm":
            out = torch.addcmul(extra[j + 1], out, extra[j])
            j += 2
        else:  # pragma: no cover - EPILOGUE_FNS and this list move together
            raise HwsimError(f"epilogue {fn!r} has no executor")
    return out


def _plan_matmul(torch: Any, op: MatMul, kind: str) -> _Plan:
    F = torch.nn.functional
    name = op.dtype.name
    notes = _quant_note(op, op.weight_dtype)
    b, m, n, k = op.batch, op.m, op.n, op.k
    if name in _FP8 or name == "int8":
        return _plan_matmul_lowp(torch, op, kind, notes)
    dt = _float_dtype(torch, op, kind, notes)
    if op.weight and b == 1:  # a linear layer as frameworks run it: x @ W^T + bias
        specs = [_T((m, k), dt), _T((n, k), dt)] + ([_T((n,), dt)] if op.bias else [])
        nb = len(specs)
        epi = _epilogue_specs(op.epilogue, (m, n), (n,), dt)

        def fn(t: Sequence[Any]) -> Any:
            out = F.linear(t[0], t[1], t[2] if op.bias else None)
            return _apply_epilogue(torch, op.epilogue, out, t[nb:]).unsqueeze(0)
    else:
        specs = [_T((b, m, k), dt), _T((b, k, n), dt)] + ([_T((b, 1, n), dt)] if op.bias else [])
        nb = len(specs)
        epi = _epilogue_specs(op.epilogue, (b, m, n), (b, 1, n), dt)

        def fn(t: Sequence[Any]) -> Any:
            out = torch.baddbmm(t[2], t[0], t[1]) if op.bias else torch.bmm(t[0], t[1])
            return _apply_epilogue(torch, op.epilogue, out, t[nb:])
    return _Plan(tuple(specs + epi), fn, tuple(notes), _tf32(op, kind))


def _plan_matmul_lowp(torch: Any, op: MatMul, kind: str, notes: list[str]) -> _Plan:
    """fp8 (``torch._scaled_mm``) and int8 (``torch._int_mm``) GEMMs, CUDA only, batch 1."""
    name = op.dtype.name
    if kind != "cuda":
        raise _not_executable(op, f"{name} GEMM is not supported on this device (CUDA only)")
    if op.batch > 1:
        raise _not_executable(op, f"batched {name} GEMM is not supported (batch={op.batch})")
    m, n, k = op.m, op.n, op.k
    if name == "int8":
        if op.epilogue or op.bias:
            raise _not_executable(op, "int8 GEMM with bias or epilogue is not supported")
        if m <= 16 or k % 8 or n % 8:
            raise _not_executable(op, "torch._int_mm needs m > 16 and k, n multiples of 8 "
                                      "(not supported on this device for this shape)")
        i8 = torch.int8
        notes.append("int8 x int8 -> int32 via torch._int_mm")

        def fn_int(t: Sequence[Any]) -> Any:
            return torch._int_mm(t[0], t[1].t()).unsqueeze(0)
        return _Plan((_T((m, k), i8, "int8"), _T((n, k), i8, "int8")), fn_int, tuple(notes))
    f8 = getattr(torch, _FP8[name], None)
    if f8 is None or not hasattr(torch, "_scaled_mm"):
        raise _not_executable(op, f"{name} is not supported by this torch build")
    cap = torch.cuda.get_device_capability()
    if cap < (8, 9):
        raise _not_executable(op, f"{name} GEMM is not supported on this device "
                                  f"(compute capability {cap[0]}.{cap[1]} < 8.9)")
    out_dt = torch.bfloat16
    epi = _epilogue_specs(op.epilogue, (m, n), (n,), out_dt)
    specs = [_T((m, k), f8), _T((n, k), f8), _T((), torch.float32, "positive"),
             _T((), torch.float32, "positive")] + ([_T((n,), out_dt)] if op.bias else [])
    nb = len(specs)
    notes.append(f"{name} x {name} -> bf16 via torch._scaled_mm (tensor-wise scales)")

    def fn(t: Sequence[Any]) -> Any:
        out = torch._scaled_mm(t[0], t[1].t(), t[2], t[3], bias=t[4] if op.bias else None,
                               out_dtype=out_dt)
        return _apply_epilogue(torch, op.epilogue, out, t[nb:]).unsqueeze(0)
    return _Plan(tuple(specs + epi), fn, tuple(notes))


def _plan_conv2d(torch: Any, op: Conv2d, kind: str) -> _Plan:
    F = torch.nn.functional
    notes = _quant_note(op, op.weight_dtype)
    dt = _float_dtype(torch, op, kind, notes)
    specs = [_T((op.n, op.c, op.h, op.w), dt), _T((op.k, op.c // op.groups, op.r, op.s), dt)]
    if op.bias:
        specs.append(_T((op.k,), dt))
    nb = len(specs)
    epi = _epilogue_specs(op.epilogue, (op.n, op.k, op.p, op.q), (1, op.k, 1, 1), dt)

    def fn(t: Sequence[Any]) -> Any:
        out = F.conv2d(t[0], t[1], t[2] if op.bias else None, op.stride, op.pad, 1, op.groups)
        return _apply_epilogue(torch, op.epilogue, out, t[nb:])
    return _Plan(tuple(specs + epi), fn, tuple(notes), _tf32(op, kind))


def _plan_attention(torch: Any, op: Attention, kind: str) -> _Plan:
    F = torch.nn.functional
    notes = _quant_note(op, op.kv_dtype, "KV cache")
    dt = _float_dtype(torch, op, kind, notes)
    b, h, kvh, d, s, L = op.batch, op.heads, op.kv_heads, op.head_dim, op.seq, op.kv_len
    gqa = kvh != h
    specs = (_T((b, h, s, d), dt), _T((b, kvh, L, d), dt), _T((b, kvh, L, d), dt))
    mask: Any = None
    is_causal = False
    if op.causal and s > 1:
        if L == s:
            is_causal = True
        else:  # queries are the last s of L positions: the causal mask is lower-right aligned
            try:
                from torch.nn.attention.bias import causal_lower_right
                mask = causal_lower_right(s, L)
            except ImportError:  # pragma: no cover - torch < 2.2
                mask = torch.ones(s, L, dtype=torch.bool).tril(diagonal=L - s)
                mask = mask.to(kind)
    notes.append("KV-cache append not executed" if op.phase == "decode" or op.context else
                 "K/V written by the QKV projection, not by this op")

    def fn(t: Sequence[Any]) -> Any:
        kw = {"enable_gqa": True} if gqa else {}
        return F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=mask,
                                              is_causal=is_causal, **kw)
    return _Plan(specs, fn, tuple(notes), _tf32(op, kind))


def _plan_elementwise(torch: Any, op: Elementwise, kind: str) -> _Plan:
    F = torch.nn.functional
    notes: list[str] = []
    n = op.numel
    if op.fn == "adam":
        edt = op.state_dtype or op.dtype
        if edt != op.dtype:
            notes.append(f"params kept in the state dtype {edt.name} (fused Adam needs one dtype)")
        dt = _float_dtype(torch, replace(op, dtype=edt, state_dtype=None), kind, notes)
        specs = (_T((n,), dt), _T((n,), dt), _T((n,), dt), _T((n,), dt, "positive"),
                 _T((), torch.float32, "positive"))
        notes.append("torch._fused_adam_ (one kernel)")

        def adam(t: Sequence[Any]) -> Any:
            torch._fused_adam_([t[0]], [t[1]], [t[2]], [t[3]], [], [t[4]], lr=1e-6, beta1=0.9,
                               beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
                               maximize=False)
            return t[0]
        return _Plan(specs, adam, tuple(notes))
    dt = _float_dtype(torch, op, kind, notes)
    one = (_T((n,), dt),)
    two = (_T((n,), dt), _T((n,), dt))
    fns: dict[str, tuple[tuple[_T, ...], Callable[[Sequence[Any]], Any]]] = {
        "add": (two, lambda t: torch.add(t[0], t[1])),
        "mul": (two, lambda t: torch.mul(t[0], t[1])),
        "relu": (one, lambda t: torch.relu(t[0])),
        "gelu": (one, lambda t: F.gelu(t[0], approximate="tanh")),
        "silu": (one, lambda t: F.silu(t[0])),
        "swiglu": (two, lambda t: torch.mul(F.silu(t[0]), t[1])),
        "scale": (one, lambda t: torch.mul(t[0], 0.5)),
        "dropout": (one, lambda t: F.dropout(t[0], p=0.1, training=True)),
    }
    if op.fn == "mul" and op.table and op.row and n % op.row == 0 and op.row % op.table == 0:
        # a rotary-style multiply: each row of ``row`` elements by one ``table``-wide row of a
        # per-row table (a cos/sin cache row), broadcast over the row's heads
        rows = n // op.row
        fns["mul"] = ((_T((rows, op.row // op.table, op.table), dt), _T((rows, 1, op.table), dt)),
                      lambda t: torch.mul(t[0], t[1]))
        notes.append(f"second operand: one {op.table}-wide table row per {op.row}-wide row")
    if op.fn not in fns:
        raise _not_executable(op, f"elementwise {op.fn!r} has no executor")
    if op.fn == "swiglu":
        notes.append("silu(gate) * up: two kernels in eager mode")
    specs, f = fns[op.fn]
    return _Plan(specs, f, tuple(notes))


def _plan_norm(torch: Any, op: Norm, kind: str) -> _Plan:
    F = torch.nn.functional
    notes: list[str] = []
    dt = _float_dtype(torch, op, kind, notes)
    x, c = _T((op.rows, op.cols), dt), op.cols
    if op.norm == "layernorm":
        specs: tuple[_T, ...] = (x, _T((c,), dt), _T((c,), dt))

        def fn(t: Sequence[Any]) -> Any:
            return F.layer_norm(t[0], (c,), t[1], t[2], 1e-5)
    elif op.norm == "rmsnorm":
        specs = (x, _T((c,), dt))
        if hasattr(F, "rms_norm"):
            def fn(t: Sequence[Any]) -> Any:
                return F.rms_norm(t[0], (c,), t[1], 1e-6)
        else:  # pragma: no cover - torch < 2.4
            notes.append("rmsnorm written out (several kernels)")

            def fn(t: Sequence[Any]) -> Any:
                r = torch.rsqrt(t[0].pow(2).mean(-1, keepdim=True) + 1e-6)
                return t[0] * r * t[1]
    else:  # batchnorm, inference: per-channel running statistics and affine
        specs = (x, _T((c,), dt), _T((c,), dt, "positive"), _T((c,), dt), _T((c,), dt))

        def fn(t: Sequence[Any]) -> Any:
            return F.batch_norm(t[0], t[1], t[2], t[3], t[4], False, 0.0, 1e-5)
    return _Plan(specs, fn, tuple(notes))


def _plan_softmax(torch: Any, op: Softmax, kind: str) -> _Plan:
    notes: list[str] = []
    dt = _float_dtype(torch, op, kind, notes)
    return _Plan((_T((op.rows, op.cols), dt),), lambda t: torch.softmax(t[0], -1), tuple(notes))


def _plan_embedding(torch: Any, op: Embedding, kind: str) -> _Plan:
    F = torch.nn.functional
    notes = _quant_note(op, op.weight_dtype)
    dt = _float_dtype(torch, op, kind, notes)
    specs = (_T((op.tokens,), torch.int64, f"index:{op.vocab}"), _T((op.vocab, op.dim), dt))
    return _Plan(specs, lambda t: F.embedding(t[0], t[1]), tuple(notes))


def _plan_pool(torch: Any, op: Pool, kind: str) -> _Plan:
    F = torch.nn.functional
    notes: list[str] = []
    dt = _float_dtype(torch, op, kind, notes)
    if 2 * op.pad > min(op.r, op.s):
        raise _not_executable(op, f"PyTorch pooling needs pad <= window/2, got pad={op.pad}")
    win = (op.r, op.s)
    pool = F.max_pool2d if op.mode == "max" else F.avg_pool2d
    return _Plan((_T((op.n, op.c, op.h, op.w), dt),),
                 lambda t: pool(t[0], win, op.stride, op.pad), tuple(notes))


def _plan_memcpy(torch: Any, op: Memcpy, kind: str) -> _Plan:
    nbytes = int(op.bytes)
    ends = {op.src, op.dst}
    notes: list[str] = []
    if not ends <= {"device", "host"}:
        raise _not_executable(op, f"copy {op.src} -> {op.dst} needs more than one device")
    if kind == "cpu" and "host" in ends:
        notes.append("host and device are the same memory on CPU")
    u8 = torch.uint8
    cuda = kind == "cuda"
    specs = (_T((nbytes,), u8, "bytes", host=cuda and op.src == "host"),
             _T((nbytes,), u8, "bytes", host=cuda and op.dst == "host"))

    def fn(t: Sequence[Any]) -> Any:
        return t[1].copy_(t[0], non_blocking=True)
    return _Plan(specs, fn, tuple(notes))


def _plan(torch: Any, op: Op, kind: str) -> _Plan:
    if isinstance(op, Collective):
        raise NotExecutableError(f"{op_label(op)}: cannot execute collective on one device")
    planners: dict[type, Callable[[Any, Any, str], _Plan]] = {
        MatMul: _plan_matmul, Conv2d: _plan_conv2d, Attention: _plan_attention,
        Elementwise: _plan_elementwise, Norm: _plan_norm, Softmax: _plan_softmax,
        Embedding: _plan_embedding, Pool: _plan_pool, Memcpy: _plan_memcpy,
    }
    for cls, planner in planners.items():
        if isinstance(op, cls):
            if op.dtype.name == "int4":
                raise _not_executable(op, "int4 is not executable (no int4 kernels in PyTorch)")
            return planner(torch, op, kind)
    raise _not_executable(op, f"op kind {op.kind!r} has no executor")


def _plan_only(op: Op, device: str) -> _Plan:
    return _plan(import_torch(), op, device_kind(device))


def set_bytes(op: Op, device: str = "cpu") -> int:
    """Bytes of one input set of ``op`` (what rotation multiplies); raises like make_runner."""
    return sum(s.nbytes for s in _plan_only(op, device).specs)


# -- sizing the rotation ---------------------------------------------------------------------
def _cache_bytes(torch: Any, device: str) -> int:
    if device_kind(device) == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        return int(getattr(props, "L2_cache_size", 0) or 0) or 50 * 2**20
    caches = cpu_cache_bytes()
    last = max((k for k in caches if k[1:2].isdigit()), key=lambda k: int(k[1]), default=None)
    return caches[last] if last else _DEFAULT_LLC


def _memory_budget(torch: Any, device: str) -> int:
    """Default bytes one runner may hold: a quarter of free memory, at most 4 GiB (CPU) or
    16 GiB (CUDA)."""
    if device_kind(device) == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(min(free / 4, 16 * 2**30))
    avail = host.available_memory_bytes() or 8 * 2**30
    return int(min(avail / 4, 4 * 2**30))


def auto_sets(op: Op, device: str, *, memory_budget: int | None = None,
              cache_bytes: int | None = None) -> int:
    """How many input sets make the rotated working set at least ``CACHE_MULTIPLE`` times the
    last-level cache (GPU L2, CPU LLC from ``/sys``): between 1 and :data:`MAX_SETS`, and no
    more than ``memory_budget`` bytes in all (default: a quarter of free memory, capped)."""
    torch = import_torch()
    per = max(1, sum(s.nbytes for s in _plan(torch, op, device_kind(device)).specs))
    cache = cache_bytes if cache_bytes is not None else _cache_bytes(torch, device)
    budget = memory_budget if memory_budget is not None else _memory_budget(torch, device)
    want = math.ceil(CACHE_MULTIPLE * cache / per)
    return max(1, min(MAX_SETS, want, budget // per))


# -- runners ---------------------------------------------------------------------------------
@dataclass(eq=False)
class OpRunner:
    """``op`` materialised on ``device`` with ``sets`` input sets; ``runner(i)`` runs it once
    on set ``i % sets`` and returns the output tensor (asynchronously on CUDA)."""

    op: Op
    device: str
    sets: int
    set_bytes: int
    notes: tuple[str, ...]
    _inputs: list[tuple[Any, ...]] = field(repr=False)
    _fn: Callable[[Sequence[Any]], Any] = field(repr=False)
    _tf32: bool | None = field(default=None, repr=False)

    def __call__(self, i: int = 0) -> Any:
        t = self._inputs[i % self.sets]
        if self._tf32 is None:
            return self._fn(t)
        with _tf32_flags(self._tf32):
            return self._fn(t)

    @property
    def working_set_bytes(self) -> int:
        return self.sets * self.set_bytes

    def inputs(self, i: int = 0) -> tuple[Any, ...]:
        """The tensors of input set ``i`` (for inspection and tests)."""
        return self._inputs[i % self.sets]


@contextlib.contextmanager
def _tf32_flags(allow: bool) -> Iterator[None]:
    """Allow or forbid TF32 for cuBLAS and cuDNN around a call; restores the caller's flags."""
    import torch

    mm, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    old = (mm.allow_tf32, cudnn.allow_tf32)
    mm.allow_tf32, cudnn.allow_tf32 = allow, allow
    try:
        yield
    finally:
        mm.allow_tf32, cudnn.allow_tf32 = old


def _fill(torch: Any, spec: _T, device: str, gen: Any) -> Any:
    """A tensor per ``spec`` filled from ``gen`` (a generator of ``device``); host tensors are
    filled on the device, then copied to pinned host memory."""
    dev = device
    kw: dict[str, Any] = {"device": dev, "generator": gen}
    if spec.init.startswith("index:"):
        return torch.randint(0, int(spec.init[6:]), spec.shape, dtype=spec.dtype, **kw)
    if spec.init in ("int8", "bytes"):
        lo, hi = (-64, 64) if spec.init == "int8" else (1, 256)
        t = torch.randint(lo, hi, spec.shape, dtype=spec.dtype, **kw)
    else:
        direct = spec.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
        t = torch.empty(spec.shape, dtype=spec.dtype if direct else torch.float32, device=dev)
        if spec.init == "positive":
            t.uniform_(0.5, 1.5, generator=gen)
        else:
            t.normal_(0.0, 1.0, generator=gen)
        if not direct:
            t = t.to(spec.dtype)
    if spec.host:
        t = t.cpu().pin_memory()
    return t


def make_runner(op: Op, device: str, *, sets: int | None = 1, seed: int = 0,
                memory_budget: int | None = None, check: bool = True) -> OpRunner:
    """Materialise ``op`` on ``device`` (``cpu``, ``cuda`` or ``cuda:N``).

    Parameters
    ----------
    sets:
        Independent input sets to rotate over; ``None`` picks them with :func:`auto_sets`.
    seed:
        Seed of the ``torch.Generator`` that fills the inputs (normal(0, 1); positive values
        where a variance or scale must be; random indices and bytes).
    check:
        Run the op once on set 0 so that PyTorch's own refusals (a dtype or shape a kernel
        does not support on this device) surface here as :class:`NotExecutableError`.

    Raises
    ------
    NotExecutableError
        Collectives, ``int4``, ``fp8``/``int8`` outside GEMMs on CUDA, shapes a kernel
        rejects; the message names the op and the reason.
    HwsimError
        torch missing, or CUDA asked for where there is none.
    """
    kind = device_kind(device)
    if isinstance(op, Collective):  # before torch: the reason holds on every machine
        raise NotExecutableError(f"{op_label(op)}: cannot execute collective on one device")
    torch = import_torch()
    if kind == "cuda" and not torch.cuda.is_available():
        raise HwsimError(f"device {device!r}: torch.cuda.is_available() is False")
    plan = _plan(torch, op, kind)
    per = sum(s.nbytes for s in plan.specs)
    if sets is None:
        sets = auto_sets(op, device, memory_budget=memory_budget)
    if isinstance(sets, bool) or not isinstance(sets, int) or sets < 1:
        raise ValueError(f"sets must be a positive integer or None, got {sets!r}")
    gen = torch.Generator(device=device if kind == "cuda" else "cpu")
    gen.manual_seed(seed)
    try:  # normal tensors (not inference tensors): callers may run them in or out of
        # torch.inference_mode(); the harness runs them inside it
        inputs = [tuple(_fill(torch, s, device, gen) for s in plan.specs) for _ in range(sets)]
    except torch.OutOfMemoryError as e:
        raise _not_executable(op, f"out of memory allocating {sets} x {per} B of inputs "
                                  f"({str(e).splitlines()[0]})") from None
    runner = OpRunner(op, device, sets, per, plan.notes, inputs, plan.fn, plan.tf32)
    if check:
        try:
            with torch.inference_mode():
                runner(0)
            if kind == "cuda":
                torch.cuda.synchronize(torch.device(device))
        except torch.OutOfMemoryError as e:
            raise _not_executable(op, f"out of memory running the op "
                                      f"({str(e).splitlines()[0]})") from None
        except (RuntimeError, TypeError, NotImplementedError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise _not_executable(op, f"not supported on this device by PyTorch: {first}"
                                  ) from None
    return runner


# -- whole graphs ----------------------------------------------------------------------------
@dataclass(eq=False)
class GraphRunner:
    """Every op instance of a graph in execution order; ``runner(i)`` runs them all once.

    Identical ops (80 equal decoder layers) share one :class:`OpRunner`; instance ``j`` of
    an op uses input set ``(i * instances + j) % sets`` so consecutive layers touch
    different memory, as different layers' weights do. Ops are independent: each reads its
    own random inputs, not its predecessor's output (the timing is the same).
    """

    graph_name: str
    device: str
    runners: dict[Op, OpRunner]
    order: list[tuple[str, OpRunner, int, int]]  # (node name, runner, instance j, instances)
    skipped: list[tuple[str, str]]  # (node name, reason)

    def __call__(self, i: int = 0) -> None:
        for _, r, j, n in self.order:
            r(i * n + j)

    @property
    def ops(self) -> int:
        return len(self.order)

    @property
    def working_set_bytes(self) -> int:
        return sum(r.working_set_bytes for r in self.runners.values())


def graph_runner(graph: WorkloadGraph, device: str, *, sets: int | None = 1, seed: int = 0,
                 skip_unsupported: bool = False, memory_budget: int | None = None
                 ) -> GraphRunner:
    """Materialise every op of ``graph.flat()`` on ``device`` (one runner per distinct op).

    With ``skip_unsupported`` ops that raise :class:`NotExecutableError` are left out and
    listed in ``skipped``; otherwise the first one is raised.
    """
    runners: dict[Op, OpRunner] = {}
    failed: dict[Op, str] = {}
    counts: dict[Op, int] = {}
    order: list[tuple[str, OpRunner, int, int]] = []
    skipped: list[tuple[str, str]] = []
    nodes = list(graph.flat())
    for node in nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    seen: dict[Op, int] = {}
    for node in nodes:
        op = node.op
        if op in failed:
            skipped.append((node.name, failed[op]))
            continue
        if op not in runners:
            try:
                runners[op] = make_runner(op, device, sets=sets, seed=seed + len(runners),
                                          memory_budget=memory_budget)
            except NotExecutableError as e:
                if not skip_unsupported:
                    raise
                failed[op] = str(e)
                skipped.append((node.name, str(e)))
                continue
        j = seen.get(op, 0)
        seen[op] = j + 1
        order.append((node.name, runners[op], j, counts[op]))
    return GraphRunner(graph.name, device, runners, order, skipped)
