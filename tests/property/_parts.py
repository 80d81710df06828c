"""Shared ground for the property laws: every shipped part, cached devices, op strategies.

A *variant* is a shipped spec file (``simulator.arch.loader.list_arch_files()``) with base
overrides: every part as shipped, and ``cpu-host`` a second time with detection off (its
YAML defaults, the same on every machine; with detection on, the host's own cores and caches
replace the spec's, so a ``compute.simd.count`` override would be overwritten). A system
(``dgx-h100``) costs an op on its device part, so its variant resolves to that part; what a
system adds of its own, the link, is exercised by collectives.

Parts are loaded once per (part, overrides) and kept for the session, and ops are costed
with :func:`simulator.predict_op` on the loaded :class:`~simulator.arch.spec.System`, so a law
pays only the mapping per example.
"""

from __future__ import annotations

import functools
import math
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from simulator import predict_op
from simulator.arch.loader import list_arch_files, load_arch
from simulator.arch.params import param
from simulator.arch.spec import Device, System
from simulator.errors import MappingError, UnsupportedOpError
from simulator.mapping.base import OpCost
from workloads.ops import (
    ELEMENTWISE_FNS,
    Attention,
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

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")
GEMM_KINDS = ("matmul", "conv2d", "attention")
STREAM_KINDS = ("elementwise", "norm", "softmax")
LAW_KINDS = GEMM_KINDS + STREAM_KINDS            # the kinds every law covers
EXTRA_KINDS = ("pool", "embedding", "memcpy")    # also covered by the bounds and sanity laws

NO_DETECT = ("params.detect=false",)


def law_settings(n: int) -> settings:
    """``n`` examples (times ``HWSIM_LAW_SCALE``, default 1, for a longer soak run), no
    deadline (a cold spec load takes milliseconds)."""
    scale = float(os.environ.get("HWSIM_LAW_SCALE", "1"))
    return settings(max_examples=max(1, round(n * scale)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@functools.cache
def system(part: str, overrides: tuple[str, ...] = ()) -> System:
    return load_arch(part, list(overrides))


def _device_part(part: str) -> str:
    """The spec file whose compute and memory a part's ops run on (a system's device)."""
    s = system(part)
    return s.device.name if s.kind == "system" else part


def _variants() -> list[tuple[str, tuple[str, ...]]]:
    out = [(p, ()) for p in list_arch_files()]
    out.append(("cpu-host", NO_DETECT))
    return out


VARIANTS = _variants()
VARIANT_IDS = [p + ("-nodetect" if ov else "") for p, ov in VARIANTS]
# distinct devices (a system resolves to the part it is built from)
DEVICE_VARIANTS = sorted({(_device_part(p), ov) for p, ov in VARIANTS})
DEVICE_IDS = [p + ("-nodetect" if ov else "") for p, ov in DEVICE_VARIANTS]
SYSTEMS = [p for p, _ in VARIANTS if system(p).kind == "system"]


def target(part: str, base: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> System:
    """The single-device part ``part`` runs ops on, with ``base + extra`` overrides applied to
    that part's spec file (a system's overrides go to its device part)."""
    return system(_device_part(part), tuple(base) + tuple(extra))


def device(part: str, base: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> Device:
    return target(part, base, extra).device


def detected(dev: Device) -> bool:
    return bool(dev.params.get("detect"))


# -- which op kinds and dtypes a device runs --------------------------------------------------
def _probe(kind: str, dtype: str) -> Op:
    return {
        "matmul": lambda: MatMul(m=64, n=64, k=64, dtype=dtype),
        "conv2d": lambda: Conv2d(n=1, c=16, h=14, w=14, k=16, r=3, s=3, pad=1, dtype=dtype),
        "attention": lambda: Attention(batch=1, heads=4, head_dim=64, seq=64, dtype=dtype),
        "elementwise": lambda: Elementwise(fn="gelu", numel=4096, dtype=dtype),
        "norm": lambda: Norm(norm="layernorm", rows=16, cols=256, dtype=dtype),
        "softmax": lambda: Softmax(rows=16, cols=256, dtype=dtype),
        "pool": lambda: Pool(mode="max", n=1, c=8, h=14, w=14, r=3, s=3, stride=2, dtype=dtype),
        "embedding": lambda: Embedding(tokens=16, vocab=1000, dim=64, dtype=dtype),
        "memcpy": lambda: Memcpy(bytes=4096.0, dtype=dtype),
    }[kind]()


@functools.cache
def supported(part: str, base: tuple[str, ...], kinds: tuple[str, ...] = LAW_KINDS
              ) -> tuple[tuple[str, str], ...]:
    """(kind, dtype) pairs the device maps (a dtype with no unit that runs it, natively or by
    fallback, raises MappingError and is left out)."""
    sys_ = target(part, base)
    out = []
    for kind in kinds:
        for dt in DTYPES:
            try:
                predict_op(_probe(kind, dt), sys_)
            except (MappingError, UnsupportedOpError):
                continue
            out.append((kind, dt))
    return tuple(out)


# -- op strategies ----------------------------------------------------------------------------
_dims = st.one_of(st.sampled_from([1, 2, 3, 7, 16, 32, 64, 100, 128, 256, 333, 512, 768, 1000,
                                   1024, 2048, 3072, 4096, 8192]),
                  st.integers(1, 4096))
_small = st.one_of(st.sampled_from([1, 2, 4, 8, 16]), st.integers(1, 32))


@st.composite
def _matmul(draw, dt: str) -> MatMul:
    weight = draw(st.booleans())
    epilogue = draw(st.sampled_from([(), (), ("relu",), ("gelu",), ("add",)]))
    return MatMul(m=draw(_dims), n=draw(_dims), k=draw(_dims),
                  batch=1 if weight and draw(st.booleans()) else draw(_small),
                  weight=weight, bias=draw(st.booleans()), epilogue=epilogue, dtype=dt)


@st.composite
def _conv2d(draw, dt: str) -> Conv2d:
    c = draw(st.sampled_from([1, 3, 8, 16, 32, 64, 128, 256, 512]))
    depthwise = c > 1 and draw(st.integers(0, 3)) == 0
    k = c * draw(st.sampled_from([1, 2])) if depthwise else \
        draw(st.sampled_from([8, 16, 32, 64, 96, 128, 256, 512]))
    r = draw(st.sampled_from([1, 3, 5, 7]))
    h = draw(st.sampled_from([7, 8, 14, 28, 32, 56, 112, 224]))
    pad = draw(st.sampled_from([0, r // 2]))
    if h + 2 * pad < r:
        pad = r // 2
    return Conv2d(n=draw(_small), c=c, h=h, w=h, k=k, r=r, s=r,
                  stride=draw(st.sampled_from([1, 2])), pad=pad, groups=c if depthwise else 1,
                  bias=draw(st.booleans()), dtype=dt)


@st.composite
def _attention(draw, dt: str) -> Attention:
    kv = draw(st.sampled_from([1, 2, 4, 8]))
    heads = kv * draw(st.sampled_from([1, 2, 4, 8]))
    if draw(st.booleans()):
        phase, seq = "prefill", draw(st.one_of(st.sampled_from([1, 128, 512, 2048]),
                                               st.integers(1, 2048)))
        context = draw(st.sampled_from([0, 0, 128, 1024]))
    else:
        phase, seq = "decode", draw(st.sampled_from([1, 1, 2, 4]))
        context = draw(st.one_of(st.sampled_from([128, 1024, 4096]), st.integers(1, 8192)))
    return Attention(batch=draw(_small), heads=heads, kv_heads=kv,
                     head_dim=draw(st.sampled_from([64, 128])), seq=seq, context=context,
                     phase=phase, causal=draw(st.booleans()), dtype=dt)


_numel = st.integers(0, 27).flatmap(lambda e: st.integers(1 << e, (2 << e) - 1))


def _op(kind: str, dt: str) -> st.SearchStrategy[Op]:
    if kind == "matmul":
        return _matmul(dt)
    if kind == "conv2d":
        return _conv2d(dt)
    if kind == "attention":
        return _attention(dt)
    if kind == "elementwise":
        return st.builds(Elementwise, fn=st.sampled_from(sorted(ELEMENTWISE_FNS)),
                         numel=_numel, dtype=st.just(dt))
    if kind == "norm":
        return st.builds(Norm, norm=st.sampled_from(["layernorm", "rmsnorm", "batchnorm"]),
                         rows=_dims, cols=_dims, dtype=st.just(dt))
    if kind == "softmax":
        return st.builds(Softmax, rows=_dims, cols=_dims, dtype=st.just(dt))
    if kind == "pool":
        return st.builds(lambda n, c, h, mode, r: Pool(mode=mode, n=n, c=c, h=h, w=h, r=r, s=r,
                                                      stride=r, dtype=dt),
                         _small, st.sampled_from([3, 64, 256]),
                         st.sampled_from([8, 14, 56, 112]), st.sampled_from(["max", "avg"]),
                         st.sampled_from([2, 3]))
    if kind == "embedding":
        return st.builds(Embedding, tokens=_dims, vocab=st.sampled_from([1000, 32000, 50257]),
                         dim=st.sampled_from([64, 768, 4096]), dtype=st.just(dt))
    if kind == "memcpy":
        return st.builds(Memcpy, bytes=_numel.map(float), dtype=st.just(dt))
    raise ValueError(kind)


def ops(part: str, base: tuple[str, ...], kinds: tuple[str, ...] = LAW_KINDS
        ) -> st.SearchStrategy[Op]:
    """Ops of ``kinds`` in the dtypes the part maps, with random shapes."""
    pairs = supported(part, base, kinds)
    return st.sampled_from(pairs).flatmap(lambda kd: _op(*kd))


# -- quantities the laws are stated in ----------------------------------------------------------
def cost(op: Op, part: System) -> OpCost:
    return predict_op(op, part)


def slowest_rate(dev: Device, level_name: str) -> float:
    """The lowest rate (B/s) a mapper serves a memory level's bytes at: its bandwidth times
    ``bandwidth_efficiency``; a CPU's DRAM capped at one thread's ``core_bandwidth``."""
    lvl = dev.level(level_name)
    if lvl is None:
        return math.inf
    bw = lvl.bandwidth_Bps * float(param(dev, "bandwidth_efficiency"))
    core = dev.params.get("core_bandwidth") if dev.family == "cpu" else None
    if core and lvl is dev.dram:
        bw = min(bw, float(core))
    return bw
