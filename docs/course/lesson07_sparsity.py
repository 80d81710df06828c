"""Lesson 7: pruning and structured sparsity, 2:4 vs unstructured (a marimo notebook).

Run it: ``marimo edit docs/course/lesson07_sparsity.py``, ``python
docs/course/lesson07_sparsity.py`` or ``marimo export html ... -o lesson07.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import matplotlib.pyplot as plt

    from simulator import simulate

    return mo, plt, simulate


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 7 — Pruning and structured sparsity

    **Goal.** Find out what zeroing weights buys on a GPU, and why the *pattern* of the zeros
    matters as much as their number.

    Magnitude pruning sets the smallest weights to zero. Two patterns:

    * **Unstructured**: any fraction $s$ of the weights, anywhere. Stored compressed as the
      non-zero values plus a bitmap (1 bit per dense weight). The GPU's tensor cores cannot
      skip scattered zeros, so the math stays dense; only the **bytes** shrink.
    * **2:4 structured** (NVIDIA Ampere whitepaper, "fine-grained structured sparsity"): in
      every group of 4 consecutive weights, 2 are zero. Stored as half the values plus a
      2-bit index per kept value. Ampere and Hopper **sparse tensor cores** skip the zeros:
      the datasheets list 2x the dense rate "with sparsity". Measured end-to-end gains are
      smaller (1.2-1.4x on A100/H100 GEMMs; sources in `simulator/arch/params.py`,
      `sparse_efficiency`).

    In hwsim, `--sparsity 2:4` or `--sparsity 0.7` (Python: `sparsity="2:4"` / `0.7`) prunes
    every linear layer except the output layer (`workloads/transforms/prune.py`; as NVIDIA
    ASP and SparseGPT do) and the mappers charge the compressed bytes and, where the
    hardware can, the skipped math. Accuracy is outside the model.

    Bits stored per dense weight, for a $b$-bit format at density $d = 1 - s$:

    $$\text{unstructured: } d\,b + 1, \qquad \text{2:4: } \tfrac{1}{2}(b + 2).$$
    """)
    return


@app.cell
def _(simulate):
    ARCH = "a100-sxm-80gb"
    SPARSITIES = (None, "2:4", 0.5, 0.7, 0.9)
    decode = {}
    prefill = {}
    for _s in SPARSITIES:
        decode[_s] = simulate("llama2-7b", ARCH, phase="decode", batch=8, context=1024,
                              dtype="bf16", sparsity=_s)
        prefill[_s] = simulate("llama2-7b", ARCH, phase="prefill", batch=1, seq=1024,
                               dtype="bf16", sparsity=_s)
    return ARCH, SPARSITIES, decode, prefill


@app.cell
def _(SPARSITIES, decode, mo, prefill):
    rows = [{"sparsity": str(s or "dense"),
             "weights (GB)": round(decode[s].meta["footprint"]["weights"] / 1e9, 2),
             "decode step (ms)": round(decode[s].latency_s * 1e3, 3),
             "prefill (ms)": round(prefill[s].latency_s * 1e3, 2),
             "layers pruned": (decode[s].meta.get("sparsity") or {}).get("pruned_layers", 0)}
            for s in SPARSITIES]
    mo.vstack([mo.md("Llama-2-7B, bf16, on an A100 (decode: batch 8, context 1,024; "
                     "prefill: 1,024 tokens)."), mo.ui.table(rows)])
    return (rows,)


@app.cell
def _(decode, plt, prefill):
    fig, (_a1, _a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    _fr = (0.0, 0.5, 0.7, 0.9)
    _key = {0.0: None, 0.5: 0.5, 0.7: 0.7, 0.9: 0.9}
    for _ax, _res, _title in ((_a1, decode, "decode step"), (_a2, prefill, "prefill")):
        _ax.plot(_fr, [_res[_key[f]].latency_s * 1e3 for f in _fr], "o-",
                 label="unstructured")
        _ax.plot([0.5], [_res["2:4"].latency_s * 1e3], "r*", ms=14, label="2:4")
        _ax.set_xlabel("fraction of weights pruned")
        _ax.set_ylabel("latency (ms)")
        _ax.set_title(_title)
        _ax.set_ylim(bottom=0)
        _ax.legend(fontsize=8)
    fig.suptitle("Llama-2-7B on an A100: what pruning buys")
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(decode, prefill):
    _w = {s: decode[s].meta["footprint"]["weights"] for s in decode}
    # the storage formula: from the dense and 2:4 footprints, find the prunable bytes P,
    # then predict the unstructured footprints (bf16: b = 16 bits)
    _f24 = (16 + 2) / 2 / 16
    _prunable = (_w[None] - _w["2:4"]) / (1 - _f24)
    for _s in (0.5, 0.7, 0.9):
        _f = ((1 - _s) * 16 + 1) / 16
        assert abs(_w[_s] / (_w[None] - _prunable * (1 - _f)) - 1) < 0.01, _s
    # decode reads the weights: fewer stored bytes, faster, whatever the pattern
    assert decode[0.9].latency_s < decode[0.7].latency_s < decode[0.5].latency_s \
        < decode[None].latency_s
    # prefill is compute-bound: only 2:4 (sparse tensor cores) is clearly faster ...
    assert prefill["2:4"].latency_s < 0.85 * prefill[None].latency_s
    # ... unstructured zeros are multiplied anyway: only the smaller weight reads help
    # (within 15% of dense), and 2:4 beats every unstructured fraction
    for _s in (0.5, 0.7, 0.9):
        assert prefill[_s].latency_s > 0.85 * prefill[None].latency_s
        assert prefill[_s].latency_s > prefill["2:4"].latency_s
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise

    (1) For decode, which unstructured fraction stores the same bytes per weight as 2:4 in
    bf16 (use the formulas above), and does the model then give the same decode time?
    (2) Can any unstructured fraction match 2:4 on prefill on this GPU?
    """)
    return


@app.cell
def _(decode, mo, prefill):
    # d*16 + 1 = (16 + 2)/2  ->  d = 0.5: 50% unstructured stores 9 bits per weight, as 2:4
    density = ((16 + 2) / 2 - 1) / 16
    same_decode = abs(decode[0.5].latency_s / decode["2:4"].latency_s - 1)
    assert abs(density - 0.5) < 1e-12 and same_decode < 0.02
    # even 90% unstructured runs dense math: 2:4 stays faster on prefill
    assert prefill[0.9].latency_s > prefill["2:4"].latency_s
    mo.md(f"""
    **Answer.** (1) $16d + 1 = 9 \\Rightarrow d = {density:.2f}$: pruning **{1 - density:.0%}**
    of the weights unstructured stores 9 bits per weight, exactly as 2:4 does, and the
    decode steps agree ({decode[0.5].latency_s * 1e3:.3f} ms vs
    {decode["2:4"].latency_s * 1e3:.3f} ms): memory-bound decode only sees bytes.
    (2) No: even 90% unstructured takes {prefill[0.9].latency_s * 1e3:.1f} ms of prefill vs
    {prefill["2:4"].latency_s * 1e3:.1f} ms for 2:4, because the tensor cores can only skip
    zeros that come in the 2:4 pattern. Sparsity that hardware cannot exploit saves memory,
    not arithmetic.
    """)
    return density, same_decode


if __name__ == "__main__":
    app.run()
