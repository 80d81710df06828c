"""A slow reference: a systolic array stepped cycle by cycle, register by register.

Each dataflow moves real numbers through an R x C grid of PE registers, one hop per cycle,
and computes ``A @ B``. The stepper counts the cycles each fold keeps the array busy (from
the first operand entering, or the stationary tile starting to shift in, until the last pulse
of the padded, skewed stream has passed the far corner) and the elements read from and
written to the array's SRAMs. The fast closed form
(:func:`simulator.mapping.systolic_core.array_counts`) must agree exactly, on
hypothesis-generated small shapes, for all three dataflows; and the product must be right,
which is what shows the schedule the counts describe is a real one.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.mapping.systolic_core import array_counts


def _fold_os(a: np.ndarray, b: np.ndarray, rows: int, cols: int):
    """One output-stationary fold: ``a`` is r' x K, ``b`` is K x c' (r' <= R, c' <= C).

    A rows enter the left edge skewed by their row index, B columns the top edge skewed by
    their column index; PE (i, j) accumulates C[i, j]. Padding rows/columns stream zeros.
    Returns (cycles, product tile, ifmap reads, filter reads, ofmap writes).
    """
    rv, k = a.shape
    cv = b.shape[1]
    a_reg = np.full((rows, cols), np.nan)
    b_reg = np.full((rows, cols), np.nan)
    acc = np.zeros((rows, cols))
    reads_a = reads_b = 0
    last = -1
    for cyc in range(k + rows + cols + 2):   # long enough for every pulse to pass
        a_reg[:, 1:] = a_reg[:, :-1].copy()   # shift right
        b_reg[1:, :] = b_reg[:-1, :].copy()   # shift down
        for i in range(rows):                 # inject the skewed left edge
            t = cyc - i
            a_reg[i, 0] = (a[i, t] if i < rv else 0.0) if 0 <= t < k else np.nan
            reads_a += int(0 <= t < k and i < rv)
        for j in range(cols):                 # inject the skewed top edge
            t = cyc - j
            b_reg[0, j] = (b[t, j] if j < cv else 0.0) if 0 <= t < k else np.nan
            reads_b += int(0 <= t < k and j < cv)
        live = ~np.isnan(a_reg) & ~np.isnan(b_reg)
        acc[live] += a_reg[live] * b_reg[live]
        if live.any():
            last = cyc
    cycles = last + 1                         # busy from the first cycle to the last MAC
    return cycles, acc[:rv, :cv], reads_a, reads_b, rv * cv


def _fold_ws(a: np.ndarray, w: np.ndarray, rows: int, cols: int):
    """One weight-stationary fold: the tile ``w`` (k' x c', K on rows) is shifted in from the
    top, one row per cycle (R cycles, padded); then A's columns k stream into row k's left
    edge skewed by k, partial sums flow down and leave the bottom edge.
    Returns (cycles, partial product tile, ifmap reads, filter reads, ofmap writes)."""
    m, kv = a.shape
    cv = w.shape[1]
    stat = np.full((rows, cols), np.nan)
    reads_w = 0
    cyc = 0
    for step in range(rows):                 # preload: the bottom row enters first
        stat[1:, :] = stat[:-1, :].copy()
        r = rows - 1 - step
        stat[0, :] = 0.0
        if r < kv:
            stat[0, :cv] = w[r, :]
            reads_w += cv
        cyc += 1
    a_reg = np.full((rows, cols), np.nan)
    p_reg = np.full((rows, cols), np.nan)
    out = np.zeros((m, cols))
    reads_a = writes = 0
    t0 = cyc
    while True:
        s = cyc - t0
        a_reg[:, 1:] = a_reg[:, :-1].copy()
        for i in range(rows):
            t = s - i
            a_reg[i, 0] = (a[t, i] if i < kv else 0.0) if 0 <= t < m else np.nan
            reads_a += int(0 <= t < m and i < kv)
        # partial sums: PE (i, j) adds its product to what PE (i-1, j) passed down last cycle
        above = np.vstack([np.zeros((1, cols)), p_reg[:-1, :]])
        above = np.where(np.isnan(above), 0.0, above)
        live = ~np.isnan(a_reg)
        p_new = np.where(live, above + np.where(live, a_reg * stat, 0.0), np.nan)
        leaving = p_new[rows - 1, :]          # the bottom row's sums are the outputs
        for j in range(cols):
            if not np.isnan(leaving[j]):
                t = s - (rows - 1) - j         # which A row this output belongs to
                out[t, j] = leaving[j]
                writes += int(j < cv)
        p_reg = p_new
        cyc += 1
        if s >= m + rows + cols - 3:
            break
    return cyc, out[:, :cv], reads_a, reads_w, writes


def _run(dataflow: str, a: np.ndarray, b: np.ndarray, rows: int, cols: int):
    """Fold loop over the GEMM; returns (cycles, C, sram reads {ifmap, filter}, ofmap writes)."""
    m, k = a.shape
    n = b.shape[1]
    c = np.zeros((m, n))
    cycles = ra = rb = wo = 0
    if dataflow == "os":
        for m0 in range(0, m, rows):
            for n0 in range(0, n, cols):
                cy, tile, x, y, z = _fold_os(a[m0:m0 + rows], b[:, n0:n0 + cols], rows, cols)
                c[m0:m0 + rows, n0:n0 + cols] = tile
                cycles, ra, rb, wo = cycles + cy, ra + x, rb + y, wo + z
        return cycles, c, ra, rb, wo
    if dataflow == "ws":      # B pinned (K on rows, N on columns), A streamed
        for n0 in range(0, n, cols):
            for k0 in range(0, k, rows):
                cy, part, x, y, z = _fold_ws(a[:, k0:k0 + rows], b[k0:k0 + rows, n0:n0 + cols],
                                             rows, cols)
                c[:, n0:n0 + cols] += part
                cycles, ra, rb, wo = cycles + cy, ra + x, rb + y, wo + z
        return cycles, c, ra, rb, wo
    # is: the transpose, C^T = B^T A^T, with A^T pinned (K on rows, M on columns)
    cycles, ct, rb, ra, wo = _run("ws", b.T, a.T, rows, cols)
    return cycles, ct.T, ra, rb, wo


SHAPES = st.tuples(st.integers(1, 20), st.integers(1, 20), st.integers(1, 20),
                   st.integers(1, 6), st.integers(1, 6))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(shape=SHAPES, dataflow=st.sampled_from(["os", "ws", "is"]))
def test_closed_form_matches_the_stepper(shape, dataflow):
    m, n, k, rows, cols = shape
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a = rng.integers(-3, 4, (m, k)).astype(float)
    b = rng.integers(-3, 4, (k, n)).astype(float)
    cycles, c, ra, rb, wo = _run(dataflow, a, b, rows, cols)
    np.testing.assert_array_equal(c, a @ b)          # the schedule computes the product
    cf = array_counts(dataflow, m, n, k, rows, cols)
    assert cycles == cf.folds * cf.lines_per_fold    # busy cycles, fold by fold
    assert cf.compute_cycles == cycles - 1           # SCALE-Sim reports one fewer
    assert ra == cf.sram_reads["ifmap"]
    assert rb == cf.sram_reads["filter"]
    assert wo == cf.sram_writes["ofmap"]


def test_the_issues_example_ws_64_cubed_on_32x32_is_631_cycles():
    """SCALE-Sim v3: 631 cycles for ws and is, 503 for os (issue 13)."""
    assert array_counts("ws", 64, 64, 64, 32, 32).compute_cycles == 631
    assert array_counts("is", 64, 64, 64, 32, 32).compute_cycles == 631
    assert array_counts("os", 64, 64, 64, 32, 32).compute_cycles == 503


def test_partial_folds_cost_a_full_fold():
    full = array_counts("os", 32, 32, 16, 32, 32)
    ragged = array_counts("os", 33, 32, 16, 32, 32)
    assert ragged.folds == 2 * full.folds and ragged.lines_per_fold == full.lines_per_fold
    assert math.isclose(ragged.compute_cycles + 1, 2 * (full.compute_cycles + 1))


# -- DRAM traffic and stalls: the closed form against the step-by-step buffer replay ----------
@settings(max_examples=40, deadline=None, derandomize=True)
@given(m=st.integers(1, 48), n=st.integers(1, 48), k=st.integers(1, 48),
       rows=st.integers(2, 8), cols=st.integers(2, 8),
       dataflow=st.sampled_from(["os", "ws", "is"]), bw=st.integers(1, 16),
       sram=st.integers(2, 64))
def test_buffer_closed_form_matches_the_replay_when_nothing_spills(m, n, k, rows, cols,
                                                                   dataflow, bw, sram):
    """SCALE-Sim's read/write buffers stepped demand line by demand line (the replay) and the
    O(1) closed form agree on DRAM words and cycles whenever every operand fits its buffer."""
    from simulator.mapping.scalesim_memory import Layer, _ofmap_spills, closed_form, replay, spills

    words = {"ifmap": sram * 1024, "filter": sram * 1024, "ofmap": sram * 1024}
    lay = Layer(rows=rows, cols=cols, dataflow=dataflow, m=m, n=n, k=k, bandwidth_words=bw,
                sram_words=words)
    if spills(lay) or _ofmap_spills(lay):
        return
    cf, rp = closed_form(lay), replay(lay)
    for q in ("compute_cycles", "total_cycles", "dram_ifmap_reads", "dram_filter_reads"):
        assert cf[q] == rp[q], (q, cf[q], rp[q])
    assert abs(cf["dram_ofmap_writes"] - rp["dram_ofmap_writes"]) <= bw  # a partial last line
    assert cf["compute_cycles"] == array_counts(dataflow, m, n, k, rows, cols).compute_cycles
