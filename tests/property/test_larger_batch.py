"""Law 2: a larger batch never lowers throughput, except by what the memory hierarchy charges.

For every shipped part and random ops (tests/property/_parts.py), the op ``y`` with its batch
doubled (matmul: ``batch`` or ``m``; conv2d: images ``n``; attention: ``batch``; elementwise:
``numel``; norm and softmax: ``rows``) against the op ``x``::

    latency(y) <= 2 * latency(x) * (1 + 1e-9) + allowance(x, y)

``2 * latency(x)`` is running ``y`` as two ``x`` in turn, which any implementation can do, so
no compute-side choice (threads, tiles, waves, split-K, array split) may make ``y`` slower.
What ``x`` gets from being small, and ``y`` cannot, is the allowance, each term the mapper's
own accounting of a modelled memory-system effect:

- *cache and SRAM residency*: for every memory level, the bytes ``y`` moves there beyond
  twice what ``x`` moved (a working set that fitted a faster level at ``x`` and does not at
  ``y``: the GPU L2 or a CPU cache holding a streaming op's operands, an SRAM holding a
  systolic operand that now spills), at the slowest rate the mapper serves that level
  (bandwidth x ``bandwidth_efficiency``; a CPU's DRAM at one thread's ``core_bandwidth``; a
  GPU GEMM's DRAM at the rate its pipelines' bytes in flight sustain, ``details["stream_bw"]``;
  and a GPU GEMM that lost the L2 its operands fitted: its DRAM time beyond twice x's).
  A producer's output that no longer fits the cache is not there for its consumer: on real
  machines too, e.g. an 8 MiB add from L3 runs several times faster per byte than a 64 MiB one.
  The CPU mapper places inputs and output by their working sets and reports where
  (``details["resident"]``, ``["output_resident"]``); where that moved, the moved bytes are
  charged at the slowest rate of their new level (an output to DRAM twice: write-allocate).
- *fresh pages* (CPU): an output above glibc's mmap threshold (32 MiB) is a new mapping on
  every call whose pages fault in (``details["page_fault_s"]``, measured on the development
  VM: +22 to +30 ms for 64 MiB); below it the allocator recycles a buffer. A step in the OS,
  pinned by tests/unit/test_mapping_cpu.py.
- *weight packing* (CPU): a GEMV (M = 1) streams the weight; from M = 2 MKL packs it first
  (``details["pack_s"]``, measured: x @ W^T at K = N = 2048 is a fixed 2.3 ms pack), so the
  step from M = 1 to 2 may cost the pack.

Cases: 15 variants (14 spec files, cpu-host also undetected) x 300 = 4,500.
"""

from __future__ import annotations

import dataclasses

import pytest
from _parts import VARIANT_IDS, VARIANTS, cost, law_settings, ops, slowest_rate, target
from hypothesis import given
from hypothesis import strategies as st

from workloads.ops import Attention, Conv2d, Elementwise, MatMul, Op

TOL = 1e-9


def doubled(op: Op, field: str | None = None) -> Op:
    if isinstance(op, MatMul):
        return dataclasses.replace(op, **{field or "batch": 2 * getattr(op, field or "batch")})
    if isinstance(op, Conv2d):
        return dataclasses.replace(op, n=2 * op.n)
    if isinstance(op, Attention):
        return dataclasses.replace(op, batch=2 * op.batch)
    if isinstance(op, Elementwise):
        return dataclasses.replace(op, numel=2 * op.numel)
    return dataclasses.replace(op, rows=2 * op.rows)


def allowance(dev, y_op, x, y) -> tuple[float, dict[str, float]]:
    """Seconds ``y`` may take beyond two ``x``, and what they are for (module docstring)."""
    parts: dict[str, float] = {}
    for lvl in dev.memory:
        extra = y.bytes_by_level.get(lvl.name, 0.0) - 2.0 * x.bytes_by_level.get(lvl.name, 0.0)
        if extra > 0:
            rate = slowest_rate(dev, lvl.name)
            if lvl is dev.dram and "stream_bw" in y.details:  # a GPU GEMM's pipelines
                rate = min(rate, float(y.details["stream_bw"]))
            parts[f"bytes:{lvl.name}"] = extra / rate
    # a GPU GEMM whose operands fitted the L2 at x and do not at y: the tiles that avoid the
    # re-reads are larger, with fewer pipeline stages in shared memory, so the same bytes
    # stream slower (details "stream_bw"); allowed for as y's DRAM time beyond twice x's
    if x.details.get("l2_hit") and y.details.get("l2_hit") is False and "stream_bw" in y.details:
        parts["l2_residency"] = max(0.0, y.details["dram_bytes"] / y.details["stream_bw"]
                                    - 2 * x.details["dram_bytes"] / x.details["stream_bw"])
    # the CPU places inputs and output by working set (details "resident", "output_resident"),
    # and its GEMMs count last-level-cache bytes for energy, not time: a placement that moved
    # charges the moved bytes at the slowest rate of where they went (DRAM: write-allocated)
    # an epilogue the CPU runs unfused (details "epilogue_s") reads and writes the moved
    # output once more per epilogue function
    epi = 2 * len(getattr(y_op, "epilogue", ()) or ()) if y.details.get("epilogue_s") else 0
    for key, nbytes, wa in (("resident", y_op.bytes_read(), 1.0),
                            ("output_resident", y_op.bytes_written() * (1 + epi), 2.0)):
        if key in y.details and y.details[key] != x.details.get(key):
            to = y.details[key] or dev.dram.name
            parts[f"{key}:{to}"] = nbytes * (1.0 if y.details[key] else wa) / slowest_rate(dev, to)
    parts["page_faults"] = float(y.details.get("page_fault_s", 0.0))
    if x.details.get("path") == "gemv" and y.details.get("path") == "blocked":
        parts["weight_pack"] = float(y.details.get("pack_s", 0.0))
    return sum(parts.values()), parts


# Known mapper gap (issue 16), narrowed twice. The GPU mapper evaluates the balanced tile
# (round_up(ceil(m / tiles), 16)) of a dimension that needs several tiles, so m = 258 no
# longer pads to 2 x 256 rows (a100-sxm-80gb: m=129, n=768, k=1024, batch=1024 fp32, doubling
# m: 2.22x before), and the balanced tile of twice the count half the problem needs, so twice
# the rows always have the tile their half used (mi250x: m=333, n=193, k=2048, batch=11 fp32,
# doubling m: 2.03x before; tests/unit/test_gpu_gemm_shapes.py). Operands that no longer fit
# the L2 together keep a block of panels there (Goto-van de Geijn cache blocking) instead of
# re-reading per wave block (dgx-h100: m=1903, n=1907, k=1024, batch=4 tf32: 2.08x before,
# now 1.88x). The Jetson GPUs' 4 MB L2 and 16 SMs were the last gap: losing the L2 made the
# larger GEMM trade its small feed-bound tile for a big one (orin 64 GB: m=768, n=333,
# k=1000, batch=4 bf16, 2.009x); with one operand's block resident while the other streams
# (GEBP) that case is 1.80x, and the Jetson variants are held to the law like every part
# (derandomized and three random soak runs at HWSIM_LAW_SCALE=3 pass).
_LAW2_VARIANTS = [pytest.param(p, b, id=i) for (p, b), i in zip(VARIANTS, VARIANT_IDS)]


@pytest.mark.parametrize("part,base", _LAW2_VARIANTS)
@law_settings(300)
@given(data=st.data())
def test_twice_the_batch_costs_at_most_twice_plus_the_memory_hierarchy(part, base, data):
    x_op = data.draw(ops(part, base), label="op")
    field = data.draw(st.sampled_from(["batch", "m"]), label="field") \
        if isinstance(x_op, MatMul) else None
    y_op = doubled(x_op, field)
    part_ = target(part, base)
    x, y = cost(x_op, part_), cost(y_op, part_)
    extra, why = allowance(part_.device, y_op, x, y)
    assert y.latency_s <= 2 * x.latency_s * (1 + TOL) + extra, (
        f"{x_op.describe()} on {part} {base}: doubling {field or 'the batch'} took "
        f"{x.latency_s:.6g} s -> {y.latency_s:.6g} s "
        f"({y.latency_s / x.latency_s:.3f}x; allowance {why})")


# Cases the random search found before GPU split-K factors were powers of two: the op used
# split-K x5 to fill its one wave, and with twice the rows no factor between 1 and 5 fitted,
# so it ran unsplit (old ratio of latency(2x) to 2 * latency(x) in the comment).
KNOWN = [
    ("h100-sxm", MatMul(m=1661, n=512, k=3878, weight=True, dtype="fp32"), "batch"),  # 1.137
    ("a100-sxm-80gb", Conv2d(n=27, c=256, h=28, w=28, k=32, r=3, s=3, stride=2, pad=1,
                             dtype="fp32"), None),                                    # 1.087
    ("mi300x", Conv2d(n=2, c=256, h=112, w=112, k=64, r=5, s=5, pad=2, dtype="int8"), None),
]


@pytest.mark.parametrize("part,op,field", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_cases_twice_the_batch(part, op, field):
    part_ = target(part)
    y_op = doubled(op, field)
    x, y = cost(op, part_), cost(y_op, part_)
    extra, why = allowance(part_.device, y_op, x, y)
    assert y.latency_s <= 2 * x.latency_s * (1 + TOL) + extra, why


def test_unfused_epilogue_over_an_output_that_left_l2_is_allowed_for():
    # found by the law above in CI: doubling m of a CPU GEMM with an unfused add moved its
    # 1.1 MiB output from L2 to L3, and the epilogue's read-modify-write pass with it (2.10x)
    x_op = MatMul(m=9, n=1000, k=100, batch=16, dtype="fp32", epilogue=("add",))
    y_op = doubled(x_op, "m")
    part = target("cpu-host", ("params.detect=false",))
    x, y = cost(x_op, part), cost(y_op, part)
    extra, why = allowance(part.device, y_op, x, y)
    assert y.details["output_resident"] != x.details["output_resident"]
    assert 2 * x.latency_s < y.latency_s <= 2 * x.latency_s * (1 + TOL) + extra, why
