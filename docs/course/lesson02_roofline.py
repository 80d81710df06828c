"""Lesson 2: the roofline of GPT-2 prefill vs decode (a marimo notebook).

Run it: ``marimo edit docs/course/lesson02_roofline.py``, ``python
docs/course/lesson02_roofline.py`` or ``marimo export html ... -o lesson02.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import matplotlib.pyplot as plt
    import numpy as np

    from simulator import load_arch, predict_op, simulate
    from workloads.ops import MatMul

    return MatMul, load_arch, mo, np, plt, predict_op, simulate


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 2 — The roofline of GPT-2: prefill vs decode

    **Goal.** See why generating text one token at a time (decode) cannot use a GPU's
    tensor cores while processing the prompt (prefill) can, using the *roofline model*
    (Williams, Waterman and Patterson, "Roofline", CACM 2009).

    An op doing $F$ FLOP while moving $B$ bytes to and from DRAM has **arithmetic intensity**
    $I = F/B$. On a part with peak $P$ FLOP/s and bandwidth $W$ B/s it cannot run faster than

    $$\text{attainable FLOP/s} = \min(P,\ W \cdot I).$$

    The two roofs meet at the **ridge point** $I^* = P/W$ (lesson 1). Ops left of it are
    memory-bound, right of it compute-bound.

    For a GEMM $[m \times k] \cdot [k \times n]$ in bf16 (2 bytes), $F = 2mkn$ and the minimum
    traffic is $2(mk + kn + mn)$ bytes. In **prefill** $m$ is the number of prompt tokens
    (hundreds), so $I$ is in the hundreds. In **decode** $m = 1$ token per sequence: the whole
    weight matrix $k \times n$ is read to do $2kn$ FLOP, so $I \approx 1$ FLOP/byte.
    """)
    return


@app.cell
def _(load_arch, simulate):
    ARCH = "a100-sxm-80gb"
    system = load_arch(ARCH)
    device = system.device
    ridge = device.ridge_point("bf16")
    prefill = simulate("gpt2", system, phase="prefill", batch=1, seq=1024, dtype="bf16")
    decode = simulate("gpt2", system, phase="decode", batch=1, context=1024, dtype="bf16")
    return ARCH, decode, device, prefill, ridge, system


@app.cell
def _(decode, mo, prefill, ridge):
    def op_rows(result):
        """One row per distinct op shape: FLOP, DRAM bytes, intensity, the model's bound."""
        seen = {}
        for r in result.records:
            if r.describe in seen:
                seen[r.describe]["count"] += 1
                continue
            seen[r.describe] = {
                "phase": result.phase, "kind": r.kind, "op": r.describe, "count": 1,
                "FLOP": r.flops, "DRAM bytes": r.dram_bytes,
                "intensity (FLOP/B)": round(r.flops / r.dram_bytes, 2) if r.dram_bytes else 0,
                "below ridge": r.dram_bytes > 0 and r.flops / r.dram_bytes < ridge,
                "bound": r.bound, "latency (us)": round(r.latency_s * 1e6, 2)}
        return list(seen.values())

    rows = op_rows(prefill) + op_rows(decode)
    mo.vstack([mo.md(f"Ridge point of the A100 in bf16: **{ridge:.0f} FLOP/byte**. Prefill "
                     f"of 1,024 tokens takes {prefill.latency_s * 1e3:.2f} ms, one decode "
                     f"step {decode.latency_s * 1e3:.2f} ms."), mo.ui.table(rows)])
    return op_rows, rows


@app.cell
def _(decode, device, np, plt, prefill, ridge):
    fig, ax = plt.subplots(figsize=(8, 5))
    _peak = device.native_peak("bf16")
    _bw = device.dram.bandwidth_Bps
    _x = np.logspace(-1, 4, 200)
    ax.loglog(_x, np.minimum(_peak, _bw * _x), "k-", lw=2, label="roofline (bf16, HBM)")
    ax.axvline(ridge, color="r", lw=0.8, label=f"ridge {ridge:.0f} FLOP/B")
    for _res, _marker in ((prefill, "o"), (decode, "s")):
        _pts = [(r.flops / r.dram_bytes, r.flops / r.latency_s, r.kind) for r in _res.records
                if r.flops > 0 and r.dram_bytes > 0 and r.latency_s > 0]
        for _kind in sorted({p[2] for p in _pts}):
            ax.scatter([p[0] for p in _pts if p[2] == _kind],
                       [p[1] for p in _pts if p[2] == _kind], marker=_marker, alpha=0.6,
                       label=f"{_res.phase}: {_kind}")
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("achieved FLOP/s (model)")
    ax.set_title("GPT-2 on an A100: prefill (circles) vs decode (squares)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(decode, prefill, ridge):
    _dec_mm = [r for r in decode.records if r.kind == "matmul"]
    _pre_mm = [r for r in prefill.records if r.kind == "matmul" and r.flops > 0]
    # every decode GEMM reads a whole weight matrix for one token: intensity ~1 FLOP/B,
    # two orders of magnitude below the ridge
    assert all(r.flops / r.dram_bytes < ridge / 50 for r in _dec_mm)
    assert not any(r.bound == "compute" for r in _dec_mm)
    # the model never moves fewer bytes than the compulsory weight read (2 B per weight)
    for _r in _dec_mm:
        assert _r.dram_bytes >= _r.flops / 2 * 2 * 0.99, _r.describe
    # prefill's block GEMMs (1,024 tokens) sit right of the ridge
    assert max(r.flops / r.dram_bytes for r in _pre_mm) > ridge
    # decode moves fewer FLOPs per byte overall: its achieved FLOP/s is far lower
    assert decode.flops / decode.latency_s < prefill.flops / prefill.latency_s / 20
    return


@app.cell
def _(decode, mo):
    _busy = sum(r.latency_s for r in decode.records)
    _share = {b: sum(r.latency_s for r in decode.records if r.bound == b) / _busy
              for b in ("compute", "memory", "latency")}
    mo.md(rf"""
    **Reading the plot.** The prefill GEMMs sit near the compute roof; the decode GEMMs sit
    at $I \approx 1$, where even a perfect kernel reaches only $W \times 1$ FLOP/s, well under
    1% of peak. GPT-2 small is so small (weights ~250 MB) that many decode kernels sit even
    *below* the memory roof: hwsim labels them `latency`-bound, because the fixed cost of
    launching a kernel (a few microseconds, see the spec header) is longer than moving its
    bytes. Of the decode step's op time, {_share["latency"]:.0%} is latency-bound,
    {_share["memory"]:.0%} memory-bound and {_share["compute"]:.0%} compute-bound.
    """)
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise

    Batching $b$ sequences in decode makes the MLP's up-projection GEMM
    $[b \times 768] \cdot [768 \times 3072]$. (1) By hand: at which batch does its intensity
    reach the ridge point? (Use the minimum traffic formula above.) (2) Check with
    `predict_op`: the smallest batch at which the model's compute time exceeds its memory
    time.
    """)
    return


@app.cell
def _(MatMul, mo, predict_op, ridge, system):
    _n, _k = 3072, 768
    # I(b) = 2bkn / (2(bk + kn + bn)) = ridge  ->  b = ridge*k*n / (k*n - ridge*(k + n))
    hand_batch = ridge * _k * _n / (_k * _n - ridge * (_k + _n))
    model_batch = None
    for _b in range(8, 1025, 8):
        _c = predict_op(MatMul(m=_b, n=_n, k=_k, dtype="bf16", weight=True), system)
        if _c.compute_s >= _c.memory_s:
            model_batch = _b
            break
    # the model's crossing differs from the ideal roofline by its efficiencies (tensor cores
    # at ~80% of peak, HBM at ~88%) and by tile quantisation: within 2x of the hand answer
    assert model_batch is not None and 0.5 < model_batch / hand_batch < 2
    mo.md(f"""
    **Answer.** By hand the ridge is reached at $b \\approx$ **{hand_batch:.0f}** sequences
    (not {ridge:.0f}, because the activations add traffic too). The model's compute time
    overtakes its memory time at $b$ = **{model_batch}**: the tensor cores run at ~80% of
    peak and HBM at ~88% (the spec's `compute_efficiency` and `bandwidth_efficiency`), and
    GEMM tiles of 128 rows make the compute time step, not grow smoothly. Below that batch,
    adding sequences to a decode step is almost free: that is why LLM servers batch.
    """)
    return hand_batch, model_batch


if __name__ == "__main__":
    app.run()
