"""Lesson 5: data vs tensor vs pipeline parallelism for a 13B model (a marimo notebook).

Run it: ``marimo edit docs/course/lesson05_parallelism.py``, ``python
docs/course/lesson05_parallelism.py`` or ``marimo export html ... -o lesson05.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import matplotlib.pyplot as plt
    import numpy as np

    from simulator import load_arch
    from simulator.errors import CapacityError
    from simulator.train import train

    return CapacityError, load_arch, mo, np, plt, train


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 5 — Data vs tensor vs pipeline parallelism for a 13B model

    **Goal.** Train Llama-2-13B on one DGX A100 (8 GPUs joined by NVLink and NVSwitch) and
    compare the three ways of splitting the work: time per step, memory per GPU, and the
    communication each needs.

    * **Data parallel (DP)**: every GPU holds the whole model and processes different
      samples; after the backward pass the gradients are **all-reduced**. Each GPU sends and
      receives $2\frac{N-1}{N}$ times the gradient bytes per step, overlapped with the
      backward pass where possible. Mixed-precision Adam keeps ~16 bytes per parameter
      (bf16 weights and gradients, fp32 master weights and two moments): 13B parameters
      need ~208 GB, which no 80 GB GPU holds, so DP needs **ZeRO** (Rajbhandari et al.,
      SC 2020), which shards the optimizer state (stage 1) and more over the replicas.
    * **Tensor parallel (TP)** (Megatron-LM, Shoeybi et al. 2019): every weight matrix is
      split over the GPUs; each layer needs two all-reduces of the activations forward and
      two backward, on the critical path.
    * **Pipeline parallel (PP)** (GPipe; 1F1B in Narayanan et al., SC 2021): the layers are
      split into stages; activations flow stage to stage, point to point. Stages wait at the
      start and end of a step: with $p$ stages and $m$ micro-batches the idle **bubble** is
      $\frac{p-1}{m+p-1}$ of the step.

    hwsim's `train` (CLI `hwsim train`) builds the parallel graph and runs every device,
    link and collective in its discrete-event engine.
    """)
    return


@app.cell
def _(CapacityError, train):
    RUN = dict(global_batch=16, micro_batch=1, seq=1024)
    LAYOUTS = {
        "DP 8 (ZeRO-1)": dict(tp=1, pp=1, dp=8, zero=1),
        "TP 8": dict(tp=8, pp=1, dp=1),
        "PP 8": dict(tp=1, pp=8, dp=1),
        "TP 2 x PP 2 x DP 2": dict(tp=2, pp=2, dp=2, zero=1),
    }
    runs = {name: train("llama2-13b", "dgx-a100", **RUN, **kw).metrics
            for name, kw in LAYOUTS.items()}
    # plain data parallelism, without ZeRO, does not fit: the error says why
    try:
        train("llama2-13b", "dgx-a100", **RUN, tp=1, pp=1, dp=8, zero=0)
        dp_plain_error = None
    except CapacityError as e:
        dp_plain_error = str(e)
    return LAYOUTS, RUN, dp_plain_error, runs


@app.cell
def _(dp_plain_error, mo, runs):
    _rows = [{"layout": n, "step (s)": round(m["step_time_s"], 3), "MFU": round(m["mfu"], 3),
              "memory / GPU (GB)": round(m["memory_per_device_bytes"]["total"] / 1e9, 1),
              "comm (s)": round(m["comm_time_s"], 3),
              "exposed comm (s)": round(m["exposed_comm_s"], 3),
              "bubble": round(m["bubble_fraction"], 3)} for n, m in runs.items()]
    mo.vstack([mo.ui.table(_rows),
               mo.md(f"Plain DP without ZeRO: `{dp_plain_error.split(';')[0]}`")])
    return


@app.cell
def _(np, plt, runs):
    fig, (_a1, _a2) = plt.subplots(1, 2, figsize=(11, 4))
    _names = list(runs)
    _x = np.arange(len(_names))
    _step = np.array([runs[n]["step_time_s"] for n in _names])
    _exposed = np.array([runs[n]["exposed_comm_s"] for n in _names])
    _bubble = np.array([runs[n]["bubble_fraction"] * runs[n]["step_time_s"] for n in _names])
    _a1.bar(_x, _step - _exposed - _bubble, label="compute")
    _a1.bar(_x, _exposed, bottom=_step - _exposed - _bubble, label="exposed communication")
    _a1.bar(_x, _bubble, bottom=_step - _bubble, label="pipeline bubble")
    _a1.set_xticks(_x, _names, fontsize=7)
    _a1.set_ylabel("time per step (s)")
    _a1.set_ylim(0, _step.max() * 1.25)
    _a1.legend(fontsize=7)
    _bottom = np.zeros(len(_names))
    for _part in ("weights", "gradients", "optimizer_state", "activations"):
        _v = np.array([runs[n]["memory_per_device_bytes"][_part] / 1e9 for n in _names])
        _a2.bar(_x, _v, bottom=_bottom, label=_part)
        _bottom += _v
    _a2.axhline(80, color="k", ls=":", label="A100 80 GB")
    _a2.set_xticks(_x, _names, fontsize=7)
    _a2.set_ylabel("memory per GPU (GB)")
    _a2.legend(fontsize=7)
    fig.suptitle("Llama-2-13B, one training step (16 x 1,024 tokens) on 8 A100s")
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(LAYOUTS, RUN, dp_plain_error, runs):
    _dp, _tp, _pp = runs["DP 8 (ZeRO-1)"], runs["TP 8"], runs["PP 8"]
    # the plain-DP layout must not fit (16 B/parameter x 13e9 > 80 GB)
    assert dp_plain_error is not None and "80 GB" in dp_plain_error
    # TP and PP split the weights 8 ways; DP replicates them
    _w = {n: m["memory_per_device_bytes"]["weights"] for n, m in runs.items()}
    assert abs(_w["TP 8"] / _w["DP 8 (ZeRO-1)"] - 1 / 8) < 0.03
    assert abs(_w["PP 8"] / _w["DP 8 (ZeRO-1)"] - 1 / 8) < 0.03
    # the 1F1B bubble is (p - 1) / (m + p - 1) with m = 16 micro-batches, p = 8 stages
    _m = RUN["global_batch"] // RUN["micro_batch"]
    assert abs(_pp["bubble_fraction"] - 7 / (_m + 7)) < 0.08
    assert _dp["bubble_fraction"] == 0 and _tp["bubble_fraction"] == 0
    # point-to-point activations are tiny next to DP's gradients and TP's activations
    assert _pp["comm_time_s"] < 0.1 * min(_dp["comm_time_s"], _tp["comm_time_s"])
    for _m_ in runs.values():
        assert 0 <= _m_["exposed_comm_s"] <= _m_["comm_time_s"] * 1.001
        assert 0 < _m_["mfu"] < 1
    assert set(LAYOUTS) == set(runs)
    return


@app.cell
def _(mo, runs):
    _fastest = min(runs, key=lambda n: runs[n]["step_time_s"])
    _exposed = {n: m["exposed_comm_s"] / m["comm_time_s"] for n, m in runs.items()
                if m["comm_time_s"] > 0}
    mo.md(f"""
    **Reading the results.** The fastest layout here is **{_fastest}**. Data parallelism
    hides {1 - _exposed["DP 8 (ZeRO-1)"]:.0%} of its gradient reduction behind the backward
    pass; tensor parallelism puts two all-reduces per layer on the critical path in both
    directions ({_exposed["TP 8"]:.0%} of its communication is exposed), affordable on
    NVLink inside one node, not across nodes. Pipeline parallelism communicates least but
    idles for its bubble ({runs["PP 8"]["bubble_fraction"]:.0%} of the step). Real recipes
    combine them (the fourth bar), and `hwsim train --search` tries every combination.
    """)
    return


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise

    Estimate DP's communication time by hand: the ring all-reduce (ZeRO-1 does a
    reduce-scatter and an all-gather, the same volume) moves $2\frac{N-1}{N} \times$ the
    bf16 gradient bytes through each GPU. NCCL reaches 80% of the A100's 300 GB/s NVLink
    per direction (the spec's `params.nvlink_efficiency`, NCCL's own `SM80_NVLINK_BW`).
    Compare with the model's `comm_time_s`.
    """)
    return


@app.cell
def _(load_arch, mo, runs):
    _sys = load_arch("dgx-a100")
    _dev = _sys.device
    _params = runs["DP 8 (ZeRO-1)"]["memory_per_device_bytes"]["weights"] / 2  # bf16: 2 B
    _n = 8
    grad_bytes_per_gpu = 2 * (_n - 1) / _n * _params * 2
    bus_bw = _dev.link.bandwidth_Bps * _dev.params["nvlink_efficiency"]
    hand_comm_s = grad_bytes_per_gpu / bus_bw
    model_comm_s = runs["DP 8 (ZeRO-1)"]["comm_time_s"]
    # the model adds per-step latencies and bucketing; the bandwidth term dominates
    assert 0.75 < model_comm_s / hand_comm_s < 1.5
    mo.md(f"""
    **Answer.** $2 \\cdot \\tfrac{{7}}{{8}} \\cdot {_params / 1e9:.1f}\\,\\text{{G}} \\cdot
    2\\,\\text{{B}}$ = {grad_bytes_per_gpu / 1e9:.1f} GB per GPU at {bus_bw / 1e9:.0f} GB/s
    is **{hand_comm_s:.3f} s**; the simulator's collectives (NCCL's ring and tree model,
    per-bucket latencies) give {model_comm_s:.3f} s. Of that, only
    {runs["DP 8 (ZeRO-1)"]["exposed_comm_s"]:.3f} s is exposed: the rest overlaps the
    backward pass, bucket by bucket.
    """)
    return bus_bw, grad_bytes_per_gpu, hand_comm_s, model_comm_s


if __name__ == "__main__":
    app.run()
