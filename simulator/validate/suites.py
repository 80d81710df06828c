"""Op suites to measure: lists of ``(id, group, op)``.

``get_suite(name, device)``:

- ``smoke``: ~18 tiny fp32 ops covering every executable op kind; seconds on a CPU (CI).
- ``cpu``: the CPU default (~150 ops, fp32, plus bf16 GEMMs and attention when the CPU has
  native bf16): decode GEMMs (M 1..128) and prefill GEMMs (M 256..2048) with N, K in
  1024..4096, batched GEMMs, the distinct ResNet-50 convolutions at batch 1, attention
  prefill (seq 128..1024) and decode (context 256..2048), softmax/layernorm/rmsnorm/gelu/add
  over 2^16..2^24 elements, silu/mul/swiglu, batchnorm, memcpy, embedding and pooling. About
  one minute on two cores with the default settings.
- ``gpu``: the full GPU suite: GEMM sweeps over decode (M 1..128) and prefill (M 256..8192)
  shapes in bf16/fp16/fp32/tf32/fp8 (and a few int8), batched GEMMs, ResNet-50 convolutions
  at batch 1 and 32 in fp16/fp32, attention prefill and decode over context lengths,
  norms/softmax/elementwise over 2^16..2^26 elements, copies. Ops a GPU cannot run (fp8 before
  compute capability 8.9) are skipped at measurement and recorded.
- ``ops``: ``gpu`` on a CUDA device, ``cpu`` on a CPU.

Each group holds several shapes and no shape repeats across a group's dtypes' families except
by dtype, so a held-out split by ``shape_key`` holds out whole shapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from simulator.arch.host import cpu_flags
from simulator.errors import HwsimError
from simulator.validate.executor import device_kind
from workloads.ops import (
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

__all__ = ["SUITES", "get_suite"]

SUITES = ("smoke", "cpu", "gpu", "ops")

Entry = tuple[str, str, Op]


class _Suite:
    """Collects ops with ids ``<group>-<nnn>`` numbered per group, dropping duplicates."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._n: dict[str, int] = {}
        self._seen: set[Op] = set()

    def add(self, group: str, op: Op) -> None:
        if op in self._seen:
            return
        self._seen.add(op)
        n = self._n.get(group, 0)
        self._n[group] = n + 1
        self.entries.append((f"{group}-{n:03d}", group, op))

    def extend(self, group: str, ops: Iterable[Op]) -> None:
        for op in ops:
            self.add(group, op)


def _smoke() -> list[Entry]:
    f = "fp32"
    s = _Suite()
    s.add("gemm", MatMul(m=16, n=64, k=64, weight=True, bias=True, dtype=f))
    s.add("gemm-batched", MatMul(m=16, n=32, k=64, batch=4, dtype=f))
    s.add("gemm-fused", MatMul(m=8, n=64, k=32, weight=True, bias=True,
                               epilogue=("gelu", "add"), dtype=f))
    s.add("conv2d", Conv2d(n=1, c=8, h=16, w=16, k=16, r=3, s=3, pad=1,
                           epilogue=("batchnorm", "relu"), dtype=f))
    s.add("conv2d-depthwise", Conv2d(n=1, c=16, h=16, w=16, k=16, r=3, s=3, stride=2, pad=1,
                                     groups=16, dtype=f))
    s.add("attention-prefill", Attention(batch=1, heads=4, head_dim=16, seq=32, dtype=f))
    s.add("attention-decode", Attention(batch=2, heads=8, kv_heads=2, head_dim=16, seq=1,
                                        context=64, phase="decode", dtype=f))
    for fn in ("add", "gelu", "swiglu"):
        s.add(fn, Elementwise(fn=fn, numel=4096, dtype=f))
    for norm, rows, cols in (("layernorm", 32, 128), ("rmsnorm", 32, 128), ("batchnorm", 64, 32)):
        s.add(norm, Norm(norm=norm, rows=rows, cols=cols, dtype=f))
    s.add("softmax", Softmax(rows=32, cols=256, dtype=f))
    s.add("embedding", Embedding(tokens=16, vocab=1000, dim=64, dtype=f))
    s.add("pool", Pool(mode="max", n=1, c=8, h=16, w=16, r=3, s=3, stride=2, pad=1, dtype=f))
    s.add("pool", Pool(mode="avg", n=1, c=32, h=7, w=7, r=7, s=7, dtype=f))
    s.add("memcpy", Memcpy(bytes=65536, dtype=f))
    return s.entries


def _resnet50_convs(batch: int, dtype: str) -> list[Conv2d]:
    """The distinct convolutions of ResNet-50 at 224x224 (epilogues removed), in order."""
    from workloads.zoo import build

    out: list[Conv2d] = []
    for node in build("resnet50", batch=batch, dtype=dtype).flat():
        if isinstance(node.op, Conv2d):
            op = replace(node.op, epilogue=())
            if op not in out:
                out.append(op)
    return out


def _resnet50_fused(batch: int, dtype: str, count: int) -> list[Conv2d]:
    """A few convolutions with the epilogues (BN, residual add, ReLU) fusion gives them."""
    from workloads.transforms.fuse import fuse_epilogues
    from workloads.zoo import build

    out: dict[tuple[str, ...], Conv2d] = {}  # the first conv of each epilogue chain
    for node in fuse_epilogues(build("resnet50", batch=batch, dtype=dtype)).flat():
        op = node.op
        if isinstance(op, Conv2d) and op.epilogue and op.epilogue not in out:
            out[op.epilogue] = op
    return list(out.values())[:count]


def _pow2_rows(size: int, cols: int) -> tuple[int, int]:
    return size // cols, cols


def _cpu_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16", "sve_bf16"})


def _cpu() -> list[Entry]:
    s = _Suite()
    dtypes = ["fp32"] + (["bf16"] if _cpu_bf16() else [])
    for dt in dtypes:
        for m in (1, 8, 32, 128):
            for n, k in ((1024, 1024), (4096, 1024), (1024, 4096), (4096, 4096)):
                s.add("gemm-decode", MatMul(m=m, n=n, k=k, weight=True, dtype=dt))
        for m, n, k in ((256, 1024, 1024), (256, 4096, 4096), (256, 2048, 4096),
                        (512, 1024, 4096), (512, 4096, 1024), (512, 3072, 1024),
                        (1024, 1024, 1024), (1024, 2048, 2048), (1024, 4096, 1024),
                        (2048, 1024, 1024), (2048, 1024, 2048), (2048, 2048, 1024)):
            s.add("gemm-prefill", MatMul(m=m, n=n, k=k, weight=True, dtype=dt))
    for m in (2, 4, 16, 48, 64, 96, 192):  # skinny GEMMs: the weight-packing law over M
        for n, k in ((2048, 2048), (4096, 1024)):
            s.add("gemm-skinny", MatMul(m=m, n=n, k=k, weight=True, dtype="fp32"))
    for b, m, n, k in ((12, 128, 128, 64), (32, 256, 64, 256), (8, 1, 4096, 1024),
                       (16, 512, 512, 64)):
        s.add("gemm-batched", MatMul(batch=b, m=m, n=n, k=k, dtype="fp32"))
    s.extend("conv2d", _resnet50_convs(1, "fp32"))
    s.extend("conv2d-fused", _resnet50_fused(1, "fp32", 3))
    s.add("conv2d-depthwise", Conv2d(n=1, c=144, h=56, w=56, k=144, r=3, s=3, pad=1,
                                     groups=144, dtype="fp32"))
    s.add("conv2d-depthwise", Conv2d(n=1, c=384, h=28, w=28, k=384, r=3, s=3, stride=2, pad=1,
                                     groups=384, dtype="fp32"))
    for dt in dtypes:
        for seq in (128, 256, 512, 1024):
            s.add("attention-prefill", Attention(batch=1, heads=12, head_dim=64, seq=seq,
                                                 dtype=dt))
            s.add("attention-prefill", Attention(batch=1, heads=32, kv_heads=8, head_dim=128,
                                                 seq=seq, dtype=dt))
        for ctx in (256, 512, 1024, 2048):
            s.add("attention-decode", Attention(batch=1, heads=32, head_dim=128, seq=1,
                                                context=ctx, phase="decode", dtype=dt))
            s.add("attention-decode", Attention(batch=4, heads=32, kv_heads=8, head_dim=128,
                                                seq=1, context=ctx, phase="decode", dtype=dt))
    sizes = (2**16, 2**18, 2**20, 2**22, 2**24)
    cols = (1024, 4096, 2048, 4096, 8192)
    for size, c in zip(sizes, cols):
        rows, c = _pow2_rows(size, c)
        s.add("softmax", Softmax(rows=rows, cols=c, dtype="fp32"))
        s.add("layernorm", Norm(norm="layernorm", rows=rows, cols=c, dtype="fp32"))
        s.add("rmsnorm", Norm(norm="rmsnorm", rows=rows, cols=c, dtype="fp32"))
        s.add("gelu", Elementwise(fn="gelu", numel=size, dtype="fp32"))
        s.add("add", Elementwise(fn="add", numel=size, dtype="fp32"))
    for size in (2**17, 2**20, 2**23):
        for fn in ("silu", "mul", "swiglu"):
            s.add(fn, Elementwise(fn=fn, numel=size, dtype="fp32"))
    for size, c in ((2**19, 1024), (2**21, 2048), (2**23, 4096)):  # sizes between the above
        rows, c = _pow2_rows(size, c)
        s.add("layernorm", Norm(norm="layernorm", rows=rows, cols=c, dtype="fp32"))
        s.add("rmsnorm", Norm(norm="rmsnorm", rows=rows, cols=c, dtype="fp32"))
        for fn in ("relu", "gelu", "scale"):
            s.add(fn, Elementwise(fn=fn, numel=size, dtype="fp32"))
    for rows, c in ((3136, 64), (784, 512), (49, 2048)):  # ResNet-50 BN (unfused) shapes
        s.add("batchnorm", Norm(norm="batchnorm", rows=rows, cols=c, dtype="fp32"))
    for b in (2**20, 2**22, 2**24, 2**26):
        s.add("memcpy", Memcpy(bytes=b, dtype="fp32"))
    for tokens in (64, 1024):
        s.add("embedding", Embedding(tokens=tokens, vocab=50257, dim=768, dtype="fp32"))
    s.add("pool", Pool(mode="max", n=1, c=64, h=112, w=112, r=3, s=3, stride=2, pad=1,
                       dtype="fp32"))
    s.add("pool", Pool(mode="avg", n=1, c=2048, h=7, w=7, r=7, s=7, dtype="fp32"))
    return s.entries


_GPU_NK = ((4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (8192, 8192),
           (1024, 1024))


def _gpu() -> list[Entry]:
    s = _Suite()
    decode_m = (1, 2, 4, 8, 16, 32, 64, 128)
    prefill_m = (256, 512, 1024, 2048, 4096, 8192)
    for dt, ms, nks in (
        ("bf16", decode_m, _GPU_NK), ("fp16", (1, 8, 32, 128), _GPU_NK[:4]),
        ("fp32", (1, 16, 128), _GPU_NK[:3]), ("tf32", (1, 16, 128), _GPU_NK[:3]),
        ("fp8", (16, 32, 64, 128), _GPU_NK[:4]),
    ):
        for m in ms:
            for n, k in nks:
                s.add("gemm-decode", MatMul(m=m, n=n, k=k, weight=True, dtype=dt))
    for dt, ms, nks in (
        ("bf16", prefill_m, _GPU_NK), ("fp16", (512, 2048, 8192), _GPU_NK[:4]),
        ("fp32", (256, 1024, 4096), _GPU_NK[:3]), ("tf32", (256, 1024, 4096), _GPU_NK[:3]),
        ("fp8", (512, 2048, 8192), _GPU_NK[:4]),
    ):
        for m in ms:
            for n, k in nks:
                s.add("gemm-prefill", MatMul(m=m, n=n, k=k, weight=True, dtype=dt))
    for m, n, k in ((32, 4096, 4096), (256, 4096, 4096), (2048, 11008, 4096)):
        s.add("gemm-int8", MatMul(m=m, n=n, k=k, weight=True, dtype="int8"))
    for b, m, n, k in ((8, 512, 14336, 4096), (8, 64, 14336, 4096), (64, 128, 128, 1024),
                       (256, 512, 512, 64), (96, 2048, 2048, 128)):
        s.add("gemm-batched", MatMul(batch=b, m=m, n=n, k=k, dtype="bf16"))
    for dt in ("fp16", "fp32"):
        for b in (1, 32):
            s.extend("conv2d", _resnet50_convs(b, dt))
        s.extend("conv2d-fused", _resnet50_fused(32, dt, 3))
    s.add("conv2d-depthwise", Conv2d(n=32, c=144, h=56, w=56, k=144, r=3, s=3, pad=1,
                                     groups=144, dtype="fp16"))
    s.add("conv2d-depthwise", Conv2d(n=32, c=384, h=28, w=28, k=384, r=3, s=3, stride=2,
                                     pad=1, groups=384, dtype="fp16"))
    configs = ((1, 32, 32, 128), (1, 32, 8, 128), (8, 12, 12, 64), (4, 64, 8, 128))
    for dt, seqs in (("bf16", (512, 1024, 2048, 4096, 8192)), ("fp16", (1024, 4096))):
        for b, h, kv, d in configs:
            for seq in seqs:
                s.add("attention-prefill", Attention(batch=b, heads=h, kv_heads=kv,
                                                     head_dim=d, seq=seq, dtype=dt))
    for b, h, kv, d in configs:
        for ctx in (512, 2048, 8192, 32768):
            for batch in ((b, 16 * b) if ctx <= 8192 else (b,)):
                s.add("attention-decode", Attention(batch=batch, heads=h, kv_heads=kv,
                                                    head_dim=d, seq=1, context=ctx,
                                                    phase="decode", dtype="bf16"))
    sizes = tuple(2**e for e in range(16, 27, 2))
    cols = (1024, 4096, 2048, 4096, 8192, 16384)
    for dt in ("bf16", "fp32"):
        for size, c in zip(sizes, cols):
            rows, c = _pow2_rows(size, c)
            s.add("softmax", Softmax(rows=rows, cols=c, dtype=dt))
            s.add("layernorm", Norm(norm="layernorm", rows=rows, cols=c, dtype=dt))
            s.add("rmsnorm", Norm(norm="rmsnorm", rows=rows, cols=c, dtype=dt))
            for fn in ("gelu", "silu", "add", "mul", "swiglu"):
                if dt == "bf16" or fn in ("gelu", "add"):
                    s.add(fn, Elementwise(fn=fn, numel=size, dtype=dt))
    for b in (2**20, 2**24, 2**28, 2**30):
        s.add("memcpy", Memcpy(bytes=b))
    for b in (2**20, 2**26):
        s.add("memcpy-h2d", Memcpy(bytes=b, src="host"))
        s.add("memcpy-d2h", Memcpy(bytes=b, dst="host"))
    for tokens in (1, 512, 8192):
        s.add("embedding", Embedding(tokens=tokens, vocab=128256, dim=4096, dtype="bf16"))
    s.add("pool", Pool(mode="max", n=32, c=64, h=112, w=112, r=3, s=3, stride=2, pad=1,
                       dtype="fp16"))
    s.add("pool", Pool(mode="avg", n=32, c=2048, h=7, w=7, r=7, s=7, dtype="fp16"))
    return s.entries


def get_suite(name: str, device: str = "cpu") -> list[Entry]:
    """The ``(id, group, op)`` list of suite ``name`` for ``device`` (``ops`` resolves to
    ``gpu`` on CUDA and ``cpu`` on a CPU).

    Raises
    ------
    HwsimError
        For an unknown suite name (the message lists the known ones).

    Examples
    --------
    >>> ops = get_suite("smoke", "cpu")
    >>> len(ops) >= 15, ops[0][:2]
    (True, ('gemm-000', 'gemm'))
    """
    key = str(name).strip().lower()
    if key == "ops":
        key = "gpu" if device_kind(device) == "cuda" else "cpu"
    builders = {"smoke": _smoke, "cpu": _cpu, "gpu": _gpu}
    if key not in builders:
        raise HwsimError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return builders[key]()
