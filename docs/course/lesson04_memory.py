"""Lesson 4: the memory hierarchy: what doubling HBM bandwidth or SRAM changes (marimo).

Run it: ``marimo edit docs/course/lesson04_memory.py``, ``python
docs/course/lesson04_memory.py`` or ``marimo export html ... -o lesson04.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import matplotlib.pyplot as plt

    from simulator import load_arch, predict_op, simulate
    from workloads.ops import MatMul

    return MatMul, load_arch, mo, plt, predict_op, simulate


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 4 — Memory hierarchy: what doubling HBM bandwidth or SRAM buys

    **Goal.** Ask two architect's what-ifs with spec overrides — *double the HBM bandwidth*,
    *double the on-chip SRAM* — and predict the answer by hand before the simulator gives it.

    Every spec field can be overridden for a what-if, with the same validation as the file:
    on the command line `hwsim run ... --set "memory.hbm.bandwidth=6.7 TB/s"`, in Python
    `load_arch("h100-sxm", ["memory.hbm.bandwidth=6.7 TB/s"])`.

    **Bandwidth.** An op's time is roughly $\max(t_\text{compute}, t_\text{memory})$ plus
    fixed costs. Doubling bandwidth halves $t_\text{memory}$, so only the memory-bound share
    $f$ of the run speeds up (Amdahl's law):

    $$\text{speedup} = \frac{1}{(1 - f) + f/2}.$$

    **SRAM.** On-chip buffers hold the tiles that are reused. When a GEMM's operands do not
    fit, the array re-reads them from DRAM once per fold that needs them; when they fit, each
    crosses DRAM once (the *compulsory* traffic). More SRAM helps until that point, and not
    at all after it.
    """)
    return


@app.cell
def _(load_arch, simulate):
    BASE_BW = load_arch("h100-sxm").device.dram.bandwidth_Bps
    MULTS = (0.5, 1.0, 2.0, 4.0)
    decode = {}
    prefill = {}
    for _mult in MULTS:
        _sys = load_arch("h100-sxm", [f"memory.hbm.bandwidth={BASE_BW * _mult / 1e12} TB/s"])
        decode[_mult] = simulate("llama2-7b", _sys, phase="decode", batch=8, context=2048)
        prefill[_mult] = simulate("llama2-7b", _sys, phase="prefill", batch=1, seq=2048)
    return BASE_BW, MULTS, decode, prefill


@app.cell
def _(MULTS, decode, plt, prefill):
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(MULTS, [decode[1.0].latency_s / decode[m].latency_s for m in MULTS], "o-",
            label="decode, batch 8, context 2048")
    ax.plot(MULTS, [prefill[1.0].latency_s / prefill[m].latency_s for m in MULTS], "s-",
            label="prefill, 2048 tokens")
    ax.plot(MULTS, MULTS, "k:", lw=0.8, label="speedup = bandwidth ratio")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("HBM bandwidth / H100's 3.35 TB/s")
    ax.set_ylabel("speedup vs the shipped part")
    ax.set_title("Llama-2-7B on an H100 with more or less HBM bandwidth")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(MULTS, decode, prefill):
    # memory-bound decode: more bandwidth is never slower
    for _a, _b in zip(MULTS, MULTS[1:]):
        assert decode[_b].latency_s <= decode[_a].latency_s * 1.001
    decode_speedup = decode[1.0].latency_s / decode[2.0].latency_s
    # decode streams the weights and the KV cache: it gains most of the 2x, never more
    assert 1.4 < decode_speedup <= 2.0 + 1e-6
    # compute-bound prefill: within 20% either way of the shipped part at any bandwidth
    # above it (under a power cap extra traffic costs watts, so it may even lose a little)
    prefill_change = {_m: prefill[1.0].latency_s / prefill[_m].latency_s for _m in MULTS
                      if _m >= 1.0}
    assert all(0.9 < _v < 1.2 for _v in prefill_change.values())
    return decode_speedup, prefill_change


@app.cell
def _(decode_speedup, mo, prefill_change):
    mo.md(f"""
    **Reading the plot.** Twice the bandwidth makes the decode step
    {decode_speedup:.2f}x faster, while prefill changes by
    {min(prefill_change.values()):.3f}x to {max(prefill_change.values()):.3f}x from 1x to 4x
    the bandwidth: its GEMMs were compute-bound already. Prefill can even lose a little:
    with memory to spare, the GEMM's tiling may trade more DRAM traffic for less on-chip
    work, and more traffic draws more power against the part's 700 W limit (`hwsim op
    matmul ... --explain` says when an op runs into it). A faster memory is only worth
    buying for the phase that waits on it.
    """)
    return


@app.cell
def _(mo):
    mo.md(r"""
    ### Doubling SRAM on a systolic ASIC

    The teaching ASIC `systolic-32x32` (SCALE-Sim's example configuration: a 32 x 32 int8
    array at 1 GHz with 10 GB/s of DRAM) has three 64 KiB buffers, for inputs, weights and
    outputs. We sweep them from 16 KiB to 512 KiB for one GEMM
    $[256 \times 1024] \cdot [1024 \times 256]$ and read the DRAM traffic the mapper plans.
    """)
    return


@app.cell
def _(MatMul, load_arch, predict_op):
    SRAM_KIB = (16, 32, 64, 128, 256, 512)
    GEMM = MatMul(m=256, n=256, k=1024, dtype="int8", weight=True)
    compulsory = (GEMM.m * GEMM.k + GEMM.k * GEMM.n + GEMM.m * GEMM.n) * 1  # int8: 1 B
    sram_costs = {}
    for _kib in SRAM_KIB:
        _sys = load_arch("systolic-32x32", [f"params.sram.{b}={_kib} KiB"
                                            for b in ("ifmap", "filter", "ofmap")])
        sram_costs[_kib] = predict_op(GEMM, _sys)
    return GEMM, SRAM_KIB, compulsory, sram_costs


@app.cell
def _(SRAM_KIB, compulsory, plt, sram_costs):
    fig2, (_a1, _a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    _a1.plot(SRAM_KIB, [sram_costs[s].dram_bytes / 1e3 for s in SRAM_KIB], "o-")
    _a1.axhline(compulsory / 1e3, color="k", ls=":", label="compulsory (each operand once)")
    _a1.set_xscale("log", base=2)
    _a1.set_xlabel("each SRAM buffer (KiB)")
    _a1.set_ylabel("DRAM traffic (kB)")
    _a1.legend(fontsize=8)
    _a2.plot(SRAM_KIB, [sram_costs[s].latency_s * 1e6 for s in SRAM_KIB], "o-",
             color="tab:red")
    _a2.set_xscale("log", base=2)
    _a2.set_xlabel("each SRAM buffer (KiB)")
    _a2.set_ylabel("GEMM latency (us)")
    fig2.suptitle("systolic-32x32: more SRAM helps until the working set fits")
    fig2.tight_layout()
    fig2  # noqa: B018 (marimo displays a cell's last expression)
    return (fig2,)


@app.cell
def _(SRAM_KIB, compulsory, sram_costs):
    _bytes = [sram_costs[s].dram_bytes for s in SRAM_KIB]
    # traffic never grows with more SRAM and never drops below the compulsory bytes
    assert all(b2 <= b1 * 1.0001 for b1, b2 in zip(_bytes, _bytes[1:]))
    assert min(_bytes) >= compulsory * 0.999
    # with the largest buffers every operand crosses DRAM exactly once
    assert abs(_bytes[-1] / compulsory - 1) < 0.01
    # and the smallest buffers re-fetch: strictly more traffic
    assert _bytes[0] > compulsory * 1.2
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise

    Before looking at the model's 2x-bandwidth decode speedup, predict it with Amdahl's law:
    take the shipped H100's decode run, add up the time of the ops the model marks
    `memory`-bound (`record.bound`), call that share $f$, and compute
    $1/((1-f) + f/2)$. How close is the model, and why is it a little lower?
    """)
    return


@app.cell
def _(decode, decode_speedup, mo):
    _recs = decode[1.0].records
    f_memory = (sum(r.latency_s for r in _recs if r.bound == "memory")
                / sum(r.latency_s for r in _recs))
    amdahl = 1 / ((1 - f_memory) + f_memory / 2)
    # the hand estimate is an upper bound up to rounding (fixed costs inside memory-bound
    # ops do not halve) and lands within 15% of the simulated speedup
    assert decode_speedup <= amdahl * 1.02
    assert abs(decode_speedup / amdahl - 1) < 0.15
    mo.md(f"""
    **Answer.** {f_memory:.0%} of the decode step's op time is memory-bound, so Amdahl
    predicts {amdahl:.2f}x; the simulator gives {decode_speedup:.2f}x. It is lower because
    a memory-bound op is not *all* transfer: each kernel also pays a fixed launch and
    pipeline-fill time that no bandwidth removes, and as $t_\\text{{memory}}$ halves some ops
    meet their compute time and change bound. Doubling HBM bandwidth is worth nearly 2x for
    serving LLM tokens, and next to nothing for prefill.
    """)
    return amdahl, f_memory


if __name__ == "__main__":
    app.run()
