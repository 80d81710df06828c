"""Lesson 3: a systolic array's folds, fill and drain under os / ws / is (a marimo notebook).

Run it: ``marimo edit docs/course/lesson03_systolic.py``, ``python
docs/course/lesson03_systolic.py`` or ``marimo export html ... -o lesson03.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import math

    import marimo as mo
    import matplotlib.pyplot as plt
    import numpy as np

    from simulator import load_arch, predict_op
    from simulator.mapping.systolic_core import array_counts
    from workloads.ops import MatMul

    return MatMul, array_counts, load_arch, math, mo, np, plt, predict_op


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 3 — A systolic array: folds, fill and drain

    **Goal.** Draw, cycle by cycle, how an $R \times C$ systolic array (the matrix unit of a
    TPU and of many ASICs) computes $C = A B$ with $A$ of $M \times K$ and $B$ of
    $K \times N$, under its three classic dataflows, and count the cycles that are not
    useful work.

    Each processing element (PE) does one multiply-accumulate per cycle and passes its
    operands to its neighbours. One operand is **held still** in the PEs:

    | dataflow | held in the PEs | mapped onto rows x cols | streamed ($T$ steps) |
    |---|---|---|---|
    | output stationary (`os`) | the partial sums $C$ | $M \times N$ | $K$ |
    | weight stationary (`ws`) | the weights $B$ | $K \times N$ | $M$ |
    | input stationary (`is`) | the inputs $A$ | $K \times M$ | $N$ |

    A matrix larger than the array is cut into **folds**: $\lceil S_r/R \rceil \cdot
    \lceil S_c/C \rceil$ tiles, each run in turn. Operands enter skewed (row $i$ one cycle
    after row $i-1$), so PE $(i, j)$ starts $i + j$ cycles late: a fold needs $T + R + C - 2$
    cycles (**fill** and **drain** are the $R + C - 2$), plus $R$ cycles to shift the
    stationary tile in for `ws` and `is`. These are SCALE-Sim's semantics, which hwsim
    reproduces exactly (`simulator/mapping/systolic_core.py`, `array_counts`).
    """)
    return


@app.cell
def _(math, np):
    def schedule(dataflow, m, n, k, rows, cols):
        """Per-cycle schedule of one GEMM: a list of folds (start, preload, length) and the
        number of PEs doing a real (non-padding) MAC in each cycle."""
        s_r, s_c, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[dataflow]
        pre = 0 if dataflow == "os" else rows  # shift the stationary tile in, row by row
        length = pre + t + rows + cols - 2
        folds = []
        busy = np.zeros(math.ceil(s_r / rows) * math.ceil(s_c / cols) * length, dtype=int)
        for _fr in range(math.ceil(s_r / rows)):
            for _fc in range(math.ceil(s_c / cols)):
                start = len(folds) * length
                used_r = min(rows, s_r - _fr * rows)  # the edge fold is padded with zeros
                used_c = min(cols, s_c - _fc * cols)
                for _i in range(used_r):
                    for _j in range(used_c):  # PE (i, j) works T cycles, i + j late
                        busy[start + pre + _i + _j: start + pre + _i + _j + t] += 1
                folds.append((start, pre, length))
        return folds, busy

    return (schedule,)


@app.cell
def _(array_counts, load_arch, mo, schedule):
    M, N, K, R, C = 6, 5, 7, 4, 4
    DATAFLOWS = ("os", "ws", "is")
    # the shipped teaching ASIC, shrunk to a 4 x 4 array with a spec override
    small = load_arch("systolic-32x32", [f"compute.pe_array.shape=[{R}, {C}]"])
    sched = {df: schedule(df, M, N, K, R, C) for df in DATAFLOWS}
    counts = {df: array_counts(df, M, N, K, R, C) for df in DATAFLOWS}
    _rows = [{"dataflow": df, "folds": len(sched[df][0]), "cycles per fold": sched[df][0][0][2],
              "cycles (SCALE-Sim: total - 1)": len(sched[df][1]) - 1,
              "array_counts": counts[df].compute_cycles,
              "MAC utilisation": round(M * N * K / (len(sched[df][1]) * R * C), 3)}
             for df in DATAFLOWS]
    mo.vstack([mo.md(f"GEMM $[{M} \\times {K}] \\cdot [{K} \\times {N}]$ on a "
                     f"${R} \\times {C}$ array:"), mo.ui.table(_rows)])
    return C, DATAFLOWS, K, M, N, R, counts, sched, small


@app.cell
def _(C, DATAFLOWS, K, M, MatMul, N, R, counts, predict_op, sched, small):
    for _df in DATAFLOWS:
        _folds, _busy = sched[_df]
        # our hand schedule has exactly the model's folds and cycles ...
        assert len(_folds) == counts[_df].folds
        assert len(_busy) - 1 == counts[_df].compute_cycles
        # ... and does exactly M*N*K real multiply-accumulates, never more than R*C at once
        assert _busy.sum() == M * N * K and _busy.max() <= R * C
        # the full predictor in SCALE-Sim mode reports the same cycles
        _cost = predict_op(MatMul(m=M, n=N, k=K, dtype="int8"), small, dataflow=_df,
                           schedule="scalesim")
        assert _cost.details["compute_cycles"] == counts[_df].compute_cycles
    return


@app.cell
def _(C, DATAFLOWS, R, np, plt, sched):
    fig, axes = plt.subplots(len(DATAFLOWS), 1, figsize=(10, 6.5), sharex=True)
    _span = max(len(sched[df][1]) for df in DATAFLOWS)
    for _ax, _df in zip(axes, DATAFLOWS, strict=True):
        _folds, _busy = sched[_df]
        for _f, (_start, _pre, _length) in enumerate(_folds):
            if _pre:
                _ax.axvspan(_start, _start + _pre, color="0.85", lw=0)
            _ax.axvline(_start, color="k", lw=0.6, ls=":")
            _ax.text(_start + 0.5, R * C * 0.93, f"fold {_f + 1}", fontsize=7, va="top")
        _ax.step(np.arange(len(_busy)), _busy, where="post", color="tab:blue")
        _ax.fill_between(np.arange(len(_busy)), _busy, step="post", alpha=0.3)
        _ax.set_ylim(0, R * C)
        _ax.set_ylabel(f"{_df}\nbusy PEs")
        _ax.set_xlim(0, _span)
    axes[0].set_title("PEs doing a real MAC per cycle (grey: stationary tile shifting in; "
                      "ramps: fill and drain)", fontsize=9)
    axes[-1].set_xlabel("cycle")
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(mo):
    mo.md(r"""
    **Reading the plot.** Each fold ramps up as the skewed wavefront reaches more PEs
    (fill), plateaus while every PE works, and ramps down (drain). On a small GEMM the ramps
    are most of the time: utilisation is far below 100% even though no PE ever waits for
    memory. `ws` and `is` also pay $R$ cycles per fold to shift the stationary tile in
    (grey; double-buffered hardware hides it, which is hwsim's default `--schedule best`,
    while `--schedule scalesim` reproduces SCALE-Sim v3 exactly).

    ## Exercise

    A decode-like GEMM has $M = 1$ (one token): $[1 \times 16] \cdot [16 \times 16]$ on the
    same $4 \times 4$ array. Which dataflow takes the fewest cycles, and why? Work it out
    from the fold formula before looking at the answer.
    """)
    return


@app.cell
def _(C, DATAFLOWS, R, array_counts, mo, schedule):
    _m, _n, _k = 1, 16, 16
    hand = {}
    for _df in DATAFLOWS:
        _folds, _busy = schedule(_df, _m, _n, _k, R, C)
        hand[_df] = len(_busy) - 1
        assert hand[_df] == array_counts(_df, _m, _n, _k, R, C).compute_cycles
    best = min(hand, key=hand.get)
    # one token fills one row of an os tile but streams the long K: os wastes the least;
    # ws maps K x N (16 folds) and streams only M = 1 row per fold, all fill and drain
    assert best == "os" and hand["ws"] == max(hand.values())
    mo.md(f"""
    **Answer.** Cycles: {", ".join(f"`{d}` {c}" for d, c in hand.items())}. **`{best}`**
    wins: with $M = 1$ it needs only $\\lceil 16/4 \\rceil = 4$ folds, each streaming the
    long $K = 16$. Weight-stationary maps the $16 \\times 16$ weights onto the array (16
    folds) and then streams a single row through each: every fold is almost pure fill, drain
    and preload. That is why decode on a weight-stationary TPU keeps the weights in place
    across a *batch* of tokens: the batch is its streamed dimension.
    """)
    return best, hand


if __name__ == "__main__":
    app.run()
