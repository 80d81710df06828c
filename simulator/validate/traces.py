"""Profiler data in: PyTorch profiler / Kineto Chrome traces and per-op CSV profiles as datasets.

Every reader returns :class:`~simulator.validate.dataset.Measurement` records (mode ``"op"``,
time in seconds, the hwsim op in ``op``, the profiled op's name in ``group``), so
:func:`~simulator.validate.compare.compare` and :func:`~simulator.validate.calibrate.fit` use
them as they use a measured dataset. Profilers report **kernel (device) time**, so the dataset's
``meta["timing"]`` is ``"kernel"`` and predictions are compared as
:func:`simulator.mapping.gpu.kernel_time` (the op's latency less the launch overhead).

Kineto trace (``torch.profiler.profile(..., record_shapes=True)``, ``export_chrome_trace``)::

    {"traceEvents": [
      {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 100.0, "dur": 30.0,
       "args": {"External id": 7, "Input Dims": [[16, 4096], [4096, 12288]],
                "Input type": ["c10::Half", "c10::Half"]}},
      {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", ...,
       "args": {"correlation": 41, "External id": 7}},
      {"ph": "X", "cat": "kernel", "name": "ampere_fp16_s16816gemm_...", "ts": 140.5,
       "dur": 12.3, "args": {"correlation": 41, "External id": 7, "device": 0}}],
     "deviceProperties": [{"id": 0, "name": "NVIDIA A100-SXM4-80GB", ...}]}

``ts`` and ``dur`` are microseconds (the Chrome trace format's unit). A kernel is matched to the
CPU op that launched it through its ``External id``, else its ``correlation`` with the runtime
launch event and that event's ``External id``, else by the op ranges (the innermost CPU op on
the launching thread whose ``[ts, ts + dur]`` contains the launch); every kernel of one op
instance is summed (a split-K GEMM and its reduction, a
layer norm's two passes), and the op instance becomes an hwsim op from the CPU op's name and
input shapes (:data:`CPU_OPS`). Instances of one shape are one record (median time; the count
in ``extra``). Each kernel is also classed by its name (:func:`kernel_class`: gemm/gemv kernels
to matmul, rms/layer norm, elementwise, softmax, flash/fmha attention, NCCL collectives), and a
kernel whose class contradicts its op (or whose op has no shapes or no hwsim equivalent) is
listed in ``meta["skipped"]`` with the reason, never silently dropped.

Per-op CSV, two forms (detected from the header):

* Vidur's compute profiles (``time_stats.<op>.median`` in ms per ``num_tokens`` and
  ``num_tensor_parallel_workers`` of a Llama layer given by ``n_embd, n_head, n_kv_head,
  n_expanded_embd, vocab_size``) and network profiles (``time_stats.<collective>.median`` in ms
  per ``size`` in bytes and ``num_workers``; see ``experiments/data/vidur-a100/README.md``).
* hwsim's own: a ``kind`` column, the op's fields (``m, n, k`` for a matmul, ``rows, cols``
  for a norm, ...), an optional ``dtype`` and ``name``, and one time column ``time_s``,
  ``time_ms`` or ``time_us``.

Bad input raises :class:`~simulator.errors.HwsimError` naming the file, the event or row, and
the field.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import json
import math
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError
from simulator.validate.dataset import SCHEMA, Dataset, Measurement, load_dataset, shape_key
from workloads.ops import op_from_dict

__all__ = ["KERNEL_CLASSES", "CPU_OPS", "kernel_class", "TraceKernel", "read_kineto",
           "read_profile_csv", "load_measurements", "is_profile"]

#: Kernel name patterns -> class, first match wins (attention before GEMM: FlashAttention and
#: xFormers kernels contain "cutlass"/"gemm"; NCCL before everything).
KERNEL_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (c, re.compile(p, re.IGNORECASE)) for c, p in (
        ("allreduce", r"nccl\w*AllReduce"),
        ("allgather", r"nccl\w*AllGather"),
        ("reducescatter", r"nccl\w*ReduceScatter"),
        ("sendrecv", r"nccl\w*(SendRecv|Send|Recv)"),
        ("attention", r"flash|fmha|attention|attn_fwd|paged_attention"),
        ("norm", r"rms_?norm|layer_?norm|LayerNorm"),
        ("softmax", r"softmax"),
        ("matmul", r"gemm|gemv|xmma|cutlass|cublas|s16816|s1688|splitKreduce|wgmma"),
        ("embedding", r"indexSelect|(?<!rotary_)embedding|index_select"),
        ("elementwise", r"elementwise|vectorized|unrolled|act_and_mul|silu|gelu|rotary|"
                        r"pointwise|CUDAFunctor|add_kernel|mul_kernel"),
    ))

#: Op kind each kernel class implements (a kernel of another kind under an op is a mismatch).
_CLASS_KIND = {"allreduce": "collective", "allgather": "collective",
               "reducescatter": "collective", "sendrecv": "collective",
               "attention": "attention", "norm": "norm", "softmax": "softmax",
               "matmul": "matmul", "embedding": "embedding", "elementwise": "elementwise"}

_DTYPES = {"c10::Half": "fp16", "half": "fp16", "c10::BFloat16": "bf16", "float": "fp32",
           "c10::Float": "fp32", "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8",
           "signed char": "int8", "c10::qint8": "int8"}
_DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp8": 1, "int8": 1}
_NCCL_DTYPES = {"Half": "fp16", "BFloat16": "bf16", "Float": "fp32", "float": "fp32",
                "c10::Half": "fp16", "c10::BFloat16": "bf16"}


def kernel_class(name: str) -> str:
    """The class of a GPU kernel by its name, ``other`` when no pattern matches.

    >>> kernel_class("sm80_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x32_stage4")
    'matmul'
    >>> kernel_class("void vllm::rms_norm_kernel<c10::Half>(c10::Half*, ...)")
    'norm'
    >>> kernel_class("ncclKernel_AllReduce_RING_LL_Sum_half(ncclDevComm*, ...)")
    'allreduce'
    >>> kernel_class("flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4>>")
    'attention'
    """
    for cls, pat in KERNEL_CLASSES:
        if pat.search(name):
            return cls
    return "other"


# -- building hwsim ops from a CPU op's name and shapes --------------------------------------
def _prod(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


def _mm(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    (m, k), (k2, n) = dims[0], dims[1]
    if k != k2:
        raise ValueError(f"inner dimensions differ ({k} vs {k2})")
    return {"kind": "matmul", "m": m, "n": n, "k": k, "weight": True}


def _addmm(dims: list[list[int]], **kw: Any) -> dict[str, Any]:
    return _mm(dims[1:3], **kw)


def _linear(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    x, w = dims[0], dims[1]
    if x[-1] != w[-1]:
        raise ValueError(f"input width {x[-1]} differs from the weight's {w[-1]}")
    return {"kind": "matmul", "m": _prod(x[:-1]), "n": w[0], "k": x[-1], "weight": True,
            "bias": len(dims) > 2 and bool(dims[2])}


def _bmm(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    (b, m, k), (b2, k2, n) = dims[0], dims[1]
    if k != k2 or b != b2:
        raise ValueError(f"batched shapes do not chain ({dims[0]} x {dims[1]})")
    return {"kind": "matmul", "m": m, "n": n, "k": k, "batch": b}


def _ew(fn: str) -> Callable[..., dict[str, Any]]:
    def make(dims: list[list[int]], **_: Any) -> dict[str, Any]:
        return {"kind": "elementwise", "fn": fn, "numel": max(_prod(d) for d in dims if d)}
    return make


def _norm(norm: str, arg: int = 0) -> Callable[..., dict[str, Any]]:
    def make(dims: list[list[int]], **_: Any) -> dict[str, Any]:
        x = dims[arg]
        return {"kind": "norm", "norm": norm, "rows": _prod(x[:-1]), "cols": x[-1]}
    return make


def _rotary(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    """vLLM's rotary embedding (positions, query, key, cos/sin cache) as the pointwise
    multiply over the query and key it rotates (as the Vidur replay counts it)."""
    return {"kind": "elementwise", "fn": "mul", "numel": _prod(dims[1]) + _prod(dims[2])}


def _softmax(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    x = dims[0]
    return {"kind": "softmax", "rows": _prod(x[:-1]), "cols": x[-1]}


def _embedding(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    (vocab, dim), idx = dims[0], dims[1]
    return {"kind": "embedding", "tokens": _prod(idx), "vocab": vocab, "dim": dim}


def _sdpa(dims: list[list[int]], **_: Any) -> dict[str, Any]:
    (b, h, s, d), (_, hkv, skv, _) = dims[0], dims[1]
    if skv == s:
        return {"kind": "attention", "batch": b, "heads": h, "kv_heads": hkv, "head_dim": d,
                "seq": s}
    return {"kind": "attention", "batch": b, "heads": h, "kv_heads": hkv, "head_dim": d,
            "seq": s, "context": skv - s, "phase": "decode" if s == 1 else "prefill"}


def _allreduce(dims: list[list[int]], args: Mapping[str, Any], dtype: str, **_: Any
               ) -> dict[str, Any]:
    n = args.get("In msg nelems", _prod(dims[0]) if dims and dims[0] else None)
    p = args.get("Group size")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= _MAX_DIM:
        raise ValueError(f"no message size ('In msg nelems' or Input Dims, got {n!r})")
    if isinstance(p, bool) or not isinstance(p, int) or not 2 <= p <= 2**20:
        raise ValueError(f"no group size ('Group size', got {p!r}; PyTorch >= 2.2 records it)")
    return {"kind": "collective", "collective": "allreduce",
            "bytes": float(n) * _DTYPE_BYTES.get(dtype, 2), "devices": p}


#: CPU op name -> builder of the hwsim op's fields from ``Input Dims``.
CPU_OPS: dict[str, Callable[..., dict[str, Any]]] = {
    "aten::mm": _mm, "aten::addmm": _addmm, "aten::linear": _linear, "aten::bmm": _bmm,
    "aten::baddbmm": lambda dims, **kw: _bmm(dims[1:3], **kw),
    "aten::add": _ew("add"), "aten::add_": _ew("add"), "aten::mul": _ew("mul"),
    "aten::mul_": _ew("mul"), "aten::silu": _ew("silu"), "aten::silu_": _ew("silu"),
    "aten::gelu": _ew("gelu"), "aten::relu": _ew("relu"), "aten::relu_": _ew("relu"),
    "_C::silu_and_mul": lambda dims, **kw: _ew("swiglu")(dims[:1]),  # (out, input)
    "aten::layer_norm": _norm("layernorm"), "aten::native_layer_norm": _norm("layernorm"),
    "aten::rms_norm": _norm("rmsnorm"), "aten::_fused_rms_norm": _norm("rmsnorm"),
    "_C::rms_norm": _norm("rmsnorm", 1), "_C::fused_add_rms_norm": _norm("rmsnorm"),
    "_C::rotary_embedding": _rotary,
    "aten::softmax": _softmax, "aten::_softmax": _softmax,
    "aten::embedding": _embedding,
    "aten::scaled_dot_product_attention": _sdpa,
    "aten::_scaled_dot_product_flash_attention": _sdpa,
    "aten::_scaled_dot_product_efficient_attention": _sdpa,
    "aten::_flash_attention_forward": lambda dims, **kw: _sdpa(
        [[d[0], d[2], d[1], d[3]] for d in dims[:2]], **kw),  # (b, s, h, d) layout
    "nccl:all_reduce": _allreduce, "c10d::allreduce_": _allreduce,
    "record_param_comms": lambda dims, args, **kw: _allreduce(dims, args, **kw)
    if str(args.get("Collective name", "")).replace("_", "") == "allreduce" else
    _unread(f"collective {args.get('Collective name')!r}"),
}
_COMMS = ("nccl:", "c10d::", "record_param_comms")


def _unread(what: str) -> dict[str, Any]:
    raise ValueError(f"{what} is not read from traces (all-reduce is)")

# -- Kineto traces ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceKernel:
    """One GPU kernel of a trace: name, class, device time (s) and its CPU op's id."""

    name: str
    cls: str
    dur_s: float
    external_id: Any


def _load_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise HwsimError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise HwsimError(f"{path}: not a JSON trace (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise HwsimError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise HwsimError(f"{path}: damaged gzip file ({e})") from None


def _us(ev: Mapping[str, Any], key: str, where: str) -> float:
    """A microsecond field of an event (a non-negative finite number)."""
    v = ev.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise HwsimError(f"{where}: {key}: expected microseconds as a number >= 0, got {v!r}")
    return float(v)


_MAX_DIM = 2**40  # larger than any tensor dimension a GPU holds


def _id(v: Any) -> int | str | None:
    """An event id (``External id``, ``correlation``): an integer or a string, else None."""
    return v if isinstance(v, (int, str)) and not isinstance(v, bool) else None


def _num_or_none(v: Any) -> float | None:
    """A finite number (a time field of a CPU-side event), else None."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _hashable(*vs: Any) -> bool:
    return all(v is None or isinstance(v, (int, str)) for v in vs)


_Ranges = Mapping[tuple[Any, Any], tuple[list[tuple[float, float, Any]], list[float]]]


def _enclosing(ranges: _Ranges, pid: Any, tid: Any, t: float) -> Any:
    """The key of the innermost CPU op on thread (pid, tid) whose [ts, ts + dur] contains
    ``t`` (the latest-starting one), or None. ``ranges``: per thread, the ops sorted by
    start and their starts."""
    got = ranges.get((pid, tid))
    if not got:
        return None
    ops, starts = got
    j = bisect.bisect_right(starts, t)
    for k in range(j - 1, max(-1, j - 1 - 256), -1):  # nesting is shallow
        if ops[k][0] <= t <= ops[k][1]:
            return ops[k][2]
    return None


def _check_units(path: Path, streams: Mapping[Any, list[tuple[float, float]]],
                 durs: Sequence[float]) -> None:
    """HwsimError when the kernels' ``dur`` cannot be microseconds: kernels of one stream run
    one after the other, so most of them overlapping their successor means ``dur`` is in a
    larger unit than ``ts`` (nanoseconds, say); a median kernel over 100 ms is another sign."""
    pairs = overlaps = 0
    for evs in streams.values():
        evs.sort()
        for (t0, d0), (t1, _) in zip(evs, evs[1:]):
            pairs += 1
            overlaps += t1 < t0 + d0 - (1.0 + 0.01 * d0)
    if pairs >= 4 and overlaps > pairs / 2:
        raise HwsimError(f"{path}: dur: {overlaps} of {pairs} kernels overlap the next kernel "
                         "on their stream, which serialises them: is dur in another unit than "
                         "ts? (Chrome traces give both in microseconds)")
    if durs and statistics.median(durs) > 0.1:
        raise HwsimError(f"{path}: dur: the median kernel lasts "
                         f"{statistics.median(durs) * 1e6:.4g} us; expected microseconds "
                         "(is it in nanoseconds?)")


def _dims(args: Mapping[str, Any], where: str) -> list[list[int]] | None:
    d = args.get("Input Dims")
    if d is None:
        return None
    if not isinstance(d, list) or not all(
            isinstance(x, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                        and 0 <= i <= _MAX_DIM for i in x) for x in d):
        raise HwsimError(f"{where}: args.Input Dims: expected a list of shapes (lists of "
                         f"integers in [0, 2**40]), got {str(d)[:60]}")
    return d


def _dtype(args: Mapping[str, Any]) -> str | None:
    types = args.get("Input type")
    if isinstance(types, list):
        for t in types:
            if isinstance(t, str) and t in _DTYPES:
                return _DTYPES[t]
    dt = args.get("dtype")
    return _NCCL_DTYPES.get(dt) if isinstance(dt, str) else None


def read_kineto(path: str | Path) -> tuple[list[Measurement], dict[str, Any]]:
    """Records (one per CPU-op shape) and metadata from a Kineto Chrome trace.

    ``meta`` holds ``device`` (from ``deviceProperties``), ``kernels`` (count and total device
    time per kernel class) and ``skipped`` (kernels not matched to an hwsim op, each with why).

    Raises
    ------
    HwsimError
        Naming the file, the event index and the field: not JSON, no ``traceEvents`` list, a
        kernel without a name or with a ``dur`` that is not microseconds >= 0, shapes that
        are not lists of integers.
    """
    p = Path(path)
    doc = _load_json(p)
    if isinstance(doc, list):  # a bare event list is valid Chrome trace JSON
        doc = {"traceEvents": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise HwsimError(f"{p}: traceEvents: expected a list of trace events (a PyTorch "
                         "profiler / Kineto Chrome trace)")
    cpu_ops: dict[Any, tuple[int, Mapping[str, Any]]] = {}
    runtime_ext: dict[Any, Any] = {}
    runtime_at: dict[Any, tuple[Any, Any, float]] = {}  # correlation -> (pid, tid, ts)
    ranges: dict[tuple[Any, Any], list[tuple[float, float, Any]]] = defaultdict(list)
    kernels: list[tuple[int, Mapping[str, Any]]] = []
    for i, ev in enumerate(doc["traceEvents"]):
        if not isinstance(ev, dict):
            raise HwsimError(f"{p}: traceEvents[{i}]: expected an event object, got "
                             f"{type(ev).__name__}")
        cat = ev.get("cat")
        if not isinstance(cat, str) or ev.get("ph", "X") != "X":
            continue
        args = ev.get("args") if isinstance(ev.get("args"), dict) else {}
        cat = cat.lower()
        if cat == "cpu_op" or (cat == "user_annotation"
                               and _id(args.get("External id")) is not None):
            key = _id(args.get("External id"))
            key = key if key is not None else ("@", i)
            cpu_ops.setdefault(key, (i, ev))
            ts, dur = _num_or_none(ev.get("ts")), _num_or_none(ev.get("dur"))
            if ts is not None and dur is not None and _hashable(ev.get("pid"), ev.get("tid")):
                ranges[(ev.get("pid"), ev.get("tid"))].append((ts, ts + dur, key))
        elif cat in ("cuda_runtime", "cuda_driver") and _id(args.get("correlation")) is not None:
            if _id(args.get("External id")) is not None:
                runtime_ext[args["correlation"]] = args["External id"]
            elif (ts := _num_or_none(ev.get("ts"))) is not None and \
                    _hashable(ev.get("pid"), ev.get("tid")):
                runtime_at[args["correlation"]] = (ev.get("pid"), ev.get("tid"), ts)
        elif cat == "kernel":
            kernels.append((i, ev))
    if not kernels:
        raise HwsimError(f"{p}: no GPU kernel events (cat 'kernel'): profile with "
                         "activities=[ProfilerActivity.CUDA] on a GPU")
    index = {}
    for thread, ops in ranges.items():
        ops.sort(key=lambda x: (x[0], -x[1]))  # equal starts: the outer (longer) op first
        index[thread] = (ops, [o[0] for o in ops])
    found: list[TraceKernel] = []
    streams: dict[tuple[Any, Any], list[tuple[float, float]]] = defaultdict(list)
    for i, ev in kernels:
        where = f"{p}: traceEvents[{i}]"
        name = ev.get("name")
        if not isinstance(name, str) or not name:
            raise HwsimError(f"{where}: name: expected the kernel's name, got {name!r}")
        dur = _us(ev, "dur", where) * 1e-6
        args = ev.get("args") if isinstance(ev.get("args"), dict) else {}
        ext = _id(args.get("External id"))
        corr = _id(args.get("correlation"))
        if ext is None and corr is not None:
            ext = runtime_ext.get(corr)
            if ext is None and corr in runtime_at:  # by the op ranges: the innermost CPU op
                ext = _enclosing(index, *runtime_at[corr])  # around the launch
        found.append(TraceKernel(name, kernel_class(name), dur, ext))
        ts = _num_or_none(ev.get("ts"))
        if ts is not None and _hashable(ev.get("pid"), ev.get("tid")):
            streams[(ev.get("pid"), ev.get("tid"))].append((ts, dur * 1e6))
    _check_units(p, streams, [k.dur_s for k in found])

    by_class: dict[str, list[float]] = defaultdict(list)
    for k in found:
        by_class[k.cls].append(k.dur_s)
    skipped: list[dict[str, Any]] = []
    instances: dict[Any, list[TraceKernel]] = defaultdict(list)
    for k in found:
        if k.external_id is None or k.external_id not in cpu_ops:
            skipped.append({"kernel": k.name[:120], "class": k.cls,
                            "reason": "no CPU op linked (External id / correlation)"})
        else:
            instances[k.external_id].append(k)

    shapes: dict[str, tuple[dict[str, Any], str, list[float], set[str]]] = {}
    for ext, ks in instances.items():
        i, ev = cpu_ops[ext]
        where = f"{p}: traceEvents[{i}] ({ev.get('name')!r})"
        op_name = str(ev.get("name"))
        args = ev.get("args") or {}

        def skip(reason: str, ks: list[TraceKernel] = ks, op_name: str = op_name) -> None:
            skipped.extend({"kernel": k.name[:120], "class": k.cls, "op": op_name,
                            "reason": reason} for k in ks)

        builder = CPU_OPS.get(op_name)
        if builder is None:
            skip(f"CPU op {op_name!r} has no hwsim equivalent")
            continue
        dims = _dims(args, where)
        dtype = _dtype(args)
        if dims is None and not op_name.startswith(_COMMS):
            skip("no Input Dims: profile with record_shapes=True")
            continue
        if dtype is None:
            skip("no input dtype ('Input type' / 'dtype')")
            continue
        try:
            fields = {**builder(dims or [], args=args, dtype=dtype), "dtype": dtype}
            op = op_from_dict(fields)
        except (ValueError, TypeError, IndexError, KeyError) as e:
            skip(f"shapes {str(dims)[:60]} do not make a {op_name}: {e}")
            continue
        classes = {k.cls for k in ks}
        wrong = [c for c in classes if _CLASS_KIND.get(c, op.kind) != op.kind
                 and not (op.kind == "matmul" and c == "elementwise")]  # bias/epilogue kernels
        if wrong:
            skip(f"kernel class {wrong[0]} under a {op.kind} op")
            continue
        key = shape_key(fields)
        d = shapes.setdefault(key, (fields, op_name, [], set()))
        d[2].append(sum(k.dur_s for k in ks))
        d[3].update(k.name[:120] for k in ks)
    records = []
    for n, (key, (fields, op_name, times, names)) in enumerate(sorted(shapes.items())):
        ts = sorted(times)
        records.append(Measurement(
            id=f"trace-{n:04d}", mode="op", kind=fields["kind"], group=op_name, op=fields,
            shape_key=key, time_s=statistics.median(ts), reps=len(ts), time_p10=ts[0],
            time_p90=ts[-1], time_mean=statistics.fmean(ts),
            extra={"source": p.name, "kernels": sorted(names), "instances": len(ts)}))
    props = doc.get("deviceProperties")
    dev0 = props[0] if isinstance(props, list) and props and isinstance(props[0], dict) else {}
    meta = {"device": {"kind": "cuda", "name": str(dev0.get("name", "unknown GPU")),
                       "properties": {k: v for k, v in dev0.items() if k != "name"}},
            "kernels": {c: {"count": len(v), "total_s": sum(v)} for c, v in
                        sorted(by_class.items())},
            "skipped": skipped}
    return records, meta


# -- per-op CSV profiles ---------------------------------------------------------------------
_TIME_COLS = {"time_s": 1.0, "time_ms": 1e-3, "time_us": 1e-6}
_VIDUR_LAYER = ("n_embd", "n_head", "n_kv_head", "n_expanded_embd", "vocab_size", "num_tokens",
                "num_tensor_parallel_workers")
_VIDUR_NET = ("size", "num_workers")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except OSError as e:
        raise HwsimError(f"{path}: cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise HwsimError(f"{path}: not a CSV file ({e})") from None


def _cell(path: Path, line: int, row: Mapping[str, Any], col: str, kind: type = float,
          positive: bool = True) -> Any:
    """One CSV cell as ``kind`` (line numbers count the header as line 1)."""
    raw = row.get(col)
    try:
        if raw is None or str(raw).strip() == "":
            raise ValueError
        v = float(raw) if kind is float else int(float(raw)) if kind is int else raw
        if kind is int and (float(raw) != int(float(raw)) or abs(v) > _MAX_DIM):
            raise ValueError
        if kind is float and not math.isfinite(v):
            raise ValueError
    except (ValueError, OverflowError):
        raise HwsimError(f"{path}:{line}: {col}: expected "
                         f"{'an integer up to 2**40' if kind is int else 'a number'}, got "
                         f"{str(raw)[:40]!r}") from None
    if positive and not v > 0:
        raise HwsimError(f"{path}:{line}: {col}: expected a positive number, got {raw!r}")
    return v


def _check_op(path: Path, line: int, fields: Mapping[str, Any]) -> None:
    """HwsimError naming the line when ``fields`` do not make a valid hwsim op."""
    try:
        op_from_dict(dict(fields))
    except (ValueError, TypeError, KeyError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise HwsimError(f"{path}:{line}: {msg}") from None


def _vidur_layer(path: Path, cols: list[str], rows: list[dict[str, str]], dtype: str,
                 skipped: list[dict[str, Any]]) -> list[Measurement]:
    ops = sorted({c.split(".")[1] for c in cols
                  if c.startswith("time_stats.") and c.endswith(".median")})
    groups: dict[tuple[int, int], list[tuple[int, dict[str, str]]]] = defaultdict(list)
    shape: tuple[int, ...] | None = None
    for line, r in enumerate(rows, 2):
        d, h, kvh, ff, vocab, t, tp = (_cell(path, line, r, c, int) for c in _VIDUR_LAYER)
        if shape is None:
            shape = (d, h, kvh, ff, vocab)
        elif shape != (d, h, kvh, ff, vocab):
            raise HwsimError(f"{path}:{line}: n_embd/n_head/n_kv_head/n_expanded_embd/"
                             "vocab_size: one file holds one model's layer")
        if d % h or h % tp or kvh % tp and tp % kvh or ff % tp:
            raise HwsimError(f"{path}:{line}: num_tensor_parallel_workers: {tp} does not split "
                             f"n_head={h}, n_kv_head={kvh}, n_expanded_embd={ff}")
        groups[(tp, t)].append((line, r))
    assert shape is not None
    d, h, kvh, ff, vocab = shape
    hd = d // h
    out: list[Measurement] = []
    for (tp, t), rs in sorted(groups.items()):
        q, kv = h * hd // tp, max(kvh // tp, 1) * hd
        layer: dict[str, dict[str, Any]] = {
            "emb": {"kind": "embedding", "tokens": t, "vocab": vocab // tp, "dim": d},
            "input_layernorm": {"kind": "norm", "norm": "rmsnorm", "rows": t, "cols": d},
            "post_attention_layernorm": {"kind": "norm", "norm": "rmsnorm", "rows": t,
                                         "cols": d},
            "attn_pre_proj": {"kind": "matmul", "m": t, "n": q + 2 * kv, "k": d,
                              "weight": True},
            "attn_post_proj": {"kind": "matmul", "m": t, "n": d, "k": d // tp, "weight": True},
            "mlp_up_proj": {"kind": "matmul", "m": t, "n": 2 * ff // tp, "k": d,
                            "weight": True},
            "mlp_down_proj": {"kind": "matmul", "m": t, "n": d, "k": ff // tp, "weight": True},
            # vLLM's row kernels: one block per token over ``row``; rotary reads one cos/sin
            # cache row (head_dim) per token, not a full-size second operand
            "mlp_act": {"kind": "elementwise", "fn": "swiglu", "numel": t * ff // tp,
                        "row": ff // tp},
            "attn_rope": {"kind": "elementwise", "fn": "mul", "numel": t * (q + kv),
                          "row": q + kv, "table": hd},
            "add": {"kind": "elementwise", "fn": "add", "numel": t * d},
        }
        for name in ops:
            if name not in layer:
                continue
            col = f"time_stats.{name}.median"
            ts = sorted(_cell(path, line, r, col) * 1e-3 for line, r in rs)
            fields = {**layer[name], "dtype": dtype}
            _check_op(path, rs[0][0], fields)
            out.append(Measurement(
                id=f"{path.stem}-{name}-tp{tp}-t{t}", mode="op", kind=fields["kind"],
                group=name, op=fields, shape_key=f"{path.stem}:{shape_key(fields)}",
                time_s=statistics.median(ts), reps=len(ts), time_p10=ts[0], time_p90=ts[-1],
                extra={"source": path.name, "tp": tp, "tokens": t}))
    return out


def _vidur_net(path: Path, cols: list[str], rows: list[dict[str, str]], dtype: str,
               skipped: list[dict[str, Any]]) -> list[Measurement]:
    times = [c for c in cols if c.startswith("time_stats.") and c.endswith(".median")]
    if len(times) != 1:
        raise HwsimError(f"{path}: time_stats.<collective>.median: expected one such column, "
                         f"found {len(times)}")
    col = times[0]
    name = col.split(".")[1]
    coll = {"all_reduce": "allreduce", "all_gather": "allgather",
            "reduce_scatter": "reducescatter", "send_recv": "sendrecv"}.get(name)
    if coll is None:
        raise HwsimError(f"{path}: {col}: unknown collective {name!r} (all_reduce, all_gather, "
                         "reduce_scatter, send_recv)")
    groups: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for line, r in enumerate(rows, 2):
        size = _cell(path, line, r, "size", int)
        p = _cell(path, line, r, "num_workers", int)
        per_node = _cell(path, line, r, "devices_per_node", int) if "devices_per_node" in r \
            else p
        groups[(p, per_node, size)].append(_cell(path, line, r, col) * 1e-3)
    out = []
    across = defaultdict(int)
    for (p, per_node, size), ts in sorted(groups.items()):
        if p < 2:
            continue
        if per_node < p:
            across[(p, per_node)] += 1
            continue
        fields = {"kind": "collective", "collective": coll, "bytes": float(size),
                  "devices": p, "dtype": dtype}
        _check_op(path, 2, fields)
        ts = sorted(ts)
        out.append(Measurement(
            id=f"{path.stem}-{coll}-p{p}-n{per_node}-{size}", mode="op", kind="collective",
            group=f"{coll} {p} GPUs" + ("" if per_node >= p else f" ({per_node}/node)"),
            op=fields, shape_key=f"{shape_key(fields)},per_node={per_node}",
            time_s=statistics.median(ts), reps=len(ts), time_p10=ts[0], time_p90=ts[-1],
            extra={"source": path.name, "devices_per_node": per_node}))
    skipped += [{"profile": path.name, "rows": n, "op": f"{coll} over {p} GPUs, {k} per node",
                 "reason": "spans several nodes: compare it against a cluster arch (only "
                           "collectives in one node are read)"}
                for (p, k), n in sorted(across.items())]
    return out


def _generic(path: Path, cols: list[str], rows: list[dict[str, str]], dtype: str,
             skipped: list[dict[str, Any]]) -> list[Measurement]:
    tcols = [c for c in cols if c in _TIME_COLS]
    if len(tcols) != 1:
        raise HwsimError(f"{path}: expected one time column (time_s, time_ms or time_us), "
                         f"found {len(tcols)}" + (f": {', '.join(tcols)}" if tcols else ""))
    tcol = tcols[0]
    out = []
    skip = {"kind", "name", tcol}
    for line, r in enumerate(rows, 2):
        kind = (r.get("kind") or "").strip()
        if not kind:
            raise HwsimError(f"{path}:{line}: kind: expected an op kind (matmul, norm, ...)")
        fields: dict[str, Any] = {"kind": kind, "dtype": (r.get("dtype") or dtype).strip()}
        for c in cols:
            v = (r.get(c) or "").strip()
            if c in skip or c == "dtype" or not v:
                continue
            try:
                fields[c] = int(v)
            except ValueError:
                try:
                    fields[c] = float(v)
                except ValueError:
                    fields[c] = {"true": True, "false": False}.get(v.lower(), v)
        _check_op(path, line, fields)
        t = _cell(path, line, r, tcol) * _TIME_COLS[tcol]
        out.append(Measurement(id=f"{path.stem}-{line:05d}", mode="op", kind=kind,
                               group=(r.get("name") or kind).strip(), op=fields,
                               shape_key=shape_key(fields), time_s=t, reps=1,
                               extra={"source": path.name}))
    return out


def read_profile_csv(path: str | Path, dtype: str = "fp16"
                     ) -> tuple[list[Measurement], list[dict[str, Any]]]:
    """Records from a per-op CSV profile (Vidur compute or network, or hwsim's own form; see
    the module docstring), and the rows left out with why (collectives across nodes).
    ``dtype`` is the precision of a file that does not say (Vidur's profiles are fp16).

    Raises
    ------
    HwsimError
        Naming the file, the line and the column: an unknown layout, a missing column, a cell
        that is not a positive number.
    """
    p = Path(path)
    cols, rows = _read_csv(p)
    if not rows:
        raise HwsimError(f"{p}: no data rows")
    skipped: list[dict[str, Any]] = []
    has = set(cols)
    if any(c.startswith("time_stats.") for c in cols):
        need = _VIDUR_LAYER if "num_tokens" in has or "n_embd" in has else _VIDUR_NET
        missing = [c for c in need if c not in has]
        if missing:
            raise HwsimError(f"{p}: {missing[0]}: missing column (a Vidur "
                             f"{'compute' if need is _VIDUR_LAYER else 'network'} profile "
                             f"needs {', '.join(need)})")
        fn = _vidur_layer if need is _VIDUR_LAYER else _vidur_net
        return fn(p, cols, rows, dtype, skipped), skipped
    if "kind" in has:
        return _generic(p, cols, rows, dtype, skipped), skipped
    raise HwsimError(f"{p}: kind: missing column (expected hwsim's per-op form: kind, the op's "
                     "fields and time_s/time_ms/time_us; or a Vidur profile with "
                     "time_stats.<op>.median columns)")


# -- one entry point -------------------------------------------------------------------------
def is_profile(path: str | Path) -> bool:
    """True for a trace (``.json``, ``.json.gz``) or CSV profile, False for a dataset folder."""
    name = Path(path).name.lower()
    return name.endswith((".json", ".json.gz", ".csv"))


def load_measurements(paths: str | Path | Iterable[str | Path], *,
                      dtype: str = "fp16") -> Dataset:
    """A dataset folder as :func:`~simulator.validate.dataset.load_dataset` reads it, or one
    or more traces / CSV profiles merged into one in-memory dataset (``meta["timing"]``
    ``"kernel"``, ``meta["source"]`` the files, ``meta["skipped"]`` the unmatched kernels).

    Raises
    ------
    HwsimError
        A path that does not exist, a dataset folder mixed with profiles, or bad content.
    """
    ps = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(x) for x in paths]
    if not ps:
        raise HwsimError("no measurement given")
    for p in ps:
        if not p.exists():
            raise HwsimError(f"{p}: no such file or dataset folder")
    if len(ps) == 1 and not is_profile(ps[0]):
        return load_dataset(ps[0])
    bad = [p for p in ps if not is_profile(p)]
    if bad:
        raise HwsimError(f"{bad[0]}: expected a profiler trace (.json, .json.gz) or a CSV "
                         "profile; a dataset folder is compared on its own")
    records: list[Measurement] = []
    device: dict[str, Any] = {"kind": "cuda", "name": "unknown GPU (per-op CSV profile)"}
    skipped: list[dict[str, Any]] = []
    kernels: dict[str, Any] = {}
    seen: set[str] = set()
    for p in ps:
        if p.name.lower().endswith(".csv"):
            recs, left = read_profile_csv(p, dtype)
            skipped += left
        else:
            recs, meta = read_kineto(p)
            device = meta["device"]
            skipped += meta["skipped"]
            for c, v in meta["kernels"].items():
                k = kernels.setdefault(c, {"count": 0, "total_s": 0.0})
                k["count"] += v["count"]
                k["total_s"] += v["total_s"]
            recs = [Measurement(**{**r.__dict__, "id": f"{p.stem}-{r.id}"}) for r in recs]
        for r in recs:
            if r.id in seen:
                raise HwsimError(f"{p}: record {r.id!r} appears in two inputs")
            seen.add(r.id)
        records += recs
    if not records:
        reasons: dict[str, int] = defaultdict(int)
        for sk in skipped:
            reasons[str(sk.get("reason"))] += 1
        top = max(reasons, key=lambda k: reasons[k]) if reasons else ""
        why = f" ({reasons[top]} of {len(skipped)} kernels: {top})" if top else ""
        raise HwsimError(f"{ps[0]}: no kernel could be matched to an hwsim op{why}")
    meta = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": device, "software": {}, "settings": {}, "timing": "kernel",
            "source": [str(p) for p in ps], "skipped": skipped, "kernels": kernels,
            "energy": {"measured": False, "reason": "profiler traces and CSV profiles carry "
                                                    "no energy"}}
    return Dataset(ps[0], meta, tuple(records))
