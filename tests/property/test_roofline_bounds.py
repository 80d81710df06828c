"""Law 3: nothing beats its compute or its memory bound.

For every shipped part and random ops of every kind (matmul, conv2d, attention, elementwise,
norm, softmax, pool, embedding, memcpy) in every dtype the part maps:

- compute: ``latency >= FLOPs / P`` where ``P`` is every compute unit of the part at once
  (matrix, vector and special-function units, each at its best native rate for the op's
  dtype or any class that dtype falls back to, ``DTYPE_FALLBACK``). Every FLOP (matrix,
  vector, special) has to run on some unit, and no unit is faster than its peak.
- memory: ``latency >= dram_bytes / DRAM peak bandwidth``: the bytes the mapper says cross
  DRAM cannot cross faster than the datasheet bandwidth (no efficiency factor).
- and the bytes that cross DRAM are at least the unavoidable ones: at most the whole on-chip
  capacity ``C`` (every memory level but DRAM, summed) can hold the op's inputs when it
  starts and its outputs when it ends, so ``dram_bytes >= max(0, read - C) + max(0,
  written - C)``. Not ``min_bytes``: in a graph an op's inputs may still sit in a cache or
  SRAM from their producer (the GPU L2, a CPU cache, an FPGA's BRAM), and then they do not
  cross DRAM; only what cannot fit on chip must.

Tolerance: relative 1e-9 (float rounding). Cases: 15 variants x 200 = 3,000.
"""

from __future__ import annotations

import pytest
from _parts import EXTRA_KINDS, LAW_KINDS, VARIANT_IDS, VARIANTS, cost, law_settings, ops, target
from hypothesis import given
from hypothesis import strategies as st

from simulator.arch.spec import DTYPE_FALLBACK, Device
from workloads.ops import MatMul

TOL = 1e-9


def all_units_peak(dev: Device, compute_class: str) -> float:
    """FLOP/s of every unit at once, each at its best rate for the class or a fallback."""
    chain = (compute_class, *DTYPE_FALLBACK.get(compute_class, ()))
    return sum(max((u.rate(c) or 0.0) for c in chain) for u in dev.compute)


@pytest.mark.parametrize("part,base", VARIANTS, ids=VARIANT_IDS)
@law_settings(200)
@given(data=st.data())
def test_latency_is_at_least_the_compute_and_memory_bounds(part, base, data):
    op = data.draw(ops(part, base, LAW_KINDS + EXTRA_KINDS), label="op")
    sys_ = target(part, base)
    dev = sys_.device
    c = cost(op, sys_)
    peak = all_units_peak(dev, op.dtype.compute_class)
    flops = op.flops().total
    assert flops == 0 or peak > 0, f"{op.describe()} mapped on {part} with no unit for it"
    assert flops == 0 or c.latency_s >= flops / peak * (1 - TOL), (
        f"{op.describe()} on {part} {base}: {c.latency_s:.6g} s beats the compute bound "
        f"{flops / peak:.6g} s ({flops:.4g} FLOP at {peak:.4g} FLOP/s)")
    dram_s = c.dram_bytes / dev.dram.bandwidth_Bps
    assert c.latency_s >= dram_s * (1 - TOL), (
        f"{op.describe()} on {part} {base}: {c.latency_s:.6g} s beats moving its "
        f"{c.dram_bytes:.4g} DRAM bytes at peak bandwidth ({dram_s:.6g} s)")
    on_chip = sum(m.capacity_bytes for m in dev.memory[1:])
    unavoidable = max(0.0, op.bytes_read() - on_chip) + max(0.0, op.bytes_written() - on_chip)
    assert c.dram_bytes >= unavoidable * (1 - TOL), (
        f"{op.describe()} on {part} {base}: {c.dram_bytes:.4g} DRAM bytes, but "
        f"{unavoidable:.4g} cannot fit the {on_chip:.4g} B on chip")


def test_a_fused_residual_is_read_from_dram():
    """Found by the memory bound: the GPU and systolic mappers did not count the C-sized input
    of a fused ``add`` epilogue (a residual), so this GEMM moved 175 MB over DRAM while 183 MB
    could not fit on chip."""
    for part, dtype in (("h100-sxm", "fp32"), ("tpu-v4", "bf16"), ("alveo-u280", "int8")):
        op = MatMul(m=333, n=8192, k=1, batch=16, epilogue=("add",), dtype=dtype)
        plain = MatMul(m=333, n=8192, k=1, batch=16, dtype=dtype)
        with_add, without = cost(op, target(part)), cost(plain, target(part))
        assert with_add.dram_bytes >= without.dram_bytes + op.c_bytes() * (1 - TOL)
        assert with_add.latency_s >= without.latency_s
