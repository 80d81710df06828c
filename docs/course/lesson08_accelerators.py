"""Lesson 8: GPU vs TPU vs FPGA vs ASIC vs CPU for BERT inference, cloud and edge (marimo).

Run it: ``marimo edit docs/course/lesson08_accelerators.py``, ``python
docs/course/lesson08_accelerators.py`` or ``marimo export html ... -o lesson08.html``.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import re
    from pathlib import Path

    import marimo as mo
    import matplotlib.pyplot as plt
    import numpy as np

    import arch_specs
    from simulator import load_arch, simulate
    from simulator.cost.dollars import CostOptions
    from simulator.edge_cloud import edge_vs_cloud, get_network

    return (CostOptions, Path, arch_specs, edge_vs_cloud, get_network, load_arch, mo, np,
            plt, re, simulate)


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 8 — GPU vs TPU vs FPGA vs ASIC vs CPU for BERT inference

    **Goal.** Answer the classic question — *is the FPGA cheaper per inference?* — with
    numbers whose sources you can check: BERT-base (sequence 128) at batch 1 and 64 on one
    part of each family, in the cloud and at the edge, by latency, inferences per joule
    (perf/W) and inferences per dollar (perf/\$).

    Each part runs the precision it is built for: bf16 on the GPU and TPU, int8 on the FPGA,
    the ASIC and the edge GPU, fp32 on the CPU. Two ways to pay:

    * **cloud**: the part's \$/hour times the time it is busy (`CostOptions(mode="cloud")`);
    * **owned (TCO)**: the purchase price spread over the part's lifetime (5 years in the
      specs, busy all the time) plus electricity at \$0.10/kWh and a PUE of 1.3
      (`CostOptions(mode="tco")`, `simulator/cost/dollars.py`).

    Every price below is read from the part's spec file, with the header line that says
    where it comes from. Most are *indicative market figures* — estimates, and prices move.
    Change them with a spec override (`cost.price=$...`) and rerun.
    """)
    return


@app.cell
def _(Path, arch_specs, load_arch, re):
    PARTS = {  # name: (family, where, dtype)
        "a100-sxm-80gb": ("GPU", "cloud", "bf16"),
        "tpu-v4": ("TPU", "cloud", "bf16"),
        "alveo-u250": ("FPGA", "cloud", "int8"),
        "cpu-host": ("CPU", "cloud", "fp32"),
        "jetson-orin-nano-8gb": ("edge GPU", "edge", "int8"),
        "eyeriss": ("ASIC", "edge", "int8"),
    }
    systems = {n: load_arch(n) for n in PARTS}

    def price_source(name):
        """The spec header's sentence about the part's price (its cited source)."""
        _path = Path(arch_specs.__file__).parent.parent / systems[name].device.source
        _lines = _path.read_text().splitlines()
        for _i, _line in enumerate(_lines):
            if re.search(r"(Price|Hourly) \$", _line):
                _text = [_line.lstrip("# -")]
                for _more in _lines[_i + 1:]:
                    if not re.match(r"#\s{5,}\S", _more):
                        break
                    _text.append(_more.lstrip("# "))
                return " ".join(_text)
        return "no price in the spec"

    price_sources = {n: price_source(n) for n in PARTS}
    return PARTS, price_source, price_sources, systems


@app.cell
def _(CostOptions, PARTS, simulate, systems):
    BATCHES = (1, 64)
    results = {}
    for _name, (_fam, _where, _dt) in PARTS.items():
        for _b in BATCHES:
            results[_name, _b] = simulate("bert-base", systems[_name], batch=_b, seq=128,
                                          dtype=_dt, cost=CostOptions(mode="auto"))
    return BATCHES, results


@app.cell
def _(BATCHES, PARTS, mo, price_sources, results, systems):
    def _row(name, b):
        r = results[name, b]
        pr = systems[name].device.pricing
        return {"part": name, "family": PARTS[name][0], "where": PARTS[name][1],
                "dtype": PARTS[name][2], "batch": b,
                "latency (ms)": round(r.latency_s * 1e3, 3),
                "inferences/s": round(r.samples / r.latency_s, 1),
                "avg power (W)": round(r.avg_power_w, 1),
                "inferences/J": round(r.samples / r.energy_j, 2),
                "$ / M inferences": round(r.usd_per_sample * 1e6, 4),
                "cost mode": r.cost.mode,
                "price": (f"${pr.price_usd:,.0f}" if pr.price_usd else "")
                + (f" ${pr.usd_per_hour * 3600:.2f}/h" if pr.usd_per_hour else "")}

    table = [_row(n, b) for n in PARTS for b in BATCHES]
    _src = "\n".join(f"* `{n}`: " + price_sources[n].replace("$", r"\$") for n in PARTS)
    mo.vstack([mo.ui.table(table), mo.md("**Price sources** (spec headers):\n\n" + _src)])
    return (table,)


@app.cell
def _(BATCHES, PARTS, np, plt, results):
    fig, _axes = plt.subplots(1, 3, figsize=(13, 4))
    _names = list(PARTS)
    _x = np.arange(len(_names))
    for _i, _b in enumerate(BATCHES):
        _off = (_i - 0.5) * 0.4
        _r = [results[n, _b] for n in _names]
        _axes[0].bar(_x + _off, [r.latency_s * 1e3 / r.samples for r in _r], 0.4,
                     label=f"batch {_b}")
        _axes[1].bar(_x + _off, [r.samples / r.energy_j for r in _r], 0.4, label=f"batch {_b}")
        _axes[2].bar(_x + _off, [1 / r.usd_per_sample for r in _r], 0.4, label=f"batch {_b}")
    for _ax, _lab in zip(_axes, ("ms per inference", "inferences per joule (perf/W)",
                                 r"inferences per \$ (perf/\$)"), strict=True):
        _ax.set_yscale("log")
        _ax.set_ylabel(_lab)
        _ax.set_xticks(_x, [f"{n}\n({PARTS[n][0]})" for n in _names], fontsize=6,
                       rotation=30, ha="right")
        _ax.legend(fontsize=7)
    fig.suptitle("BERT-base, sequence 128: one part of each family")
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(PARTS, results, systems):
    for _name in PARTS:
        _r1, _r64 = results[_name, 1], results[_name, 64]
        # batching never lowers throughput: the weights are read once per batch
        assert _r64.samples / _r64.latency_s >= 0.99 * _r1.samples / _r1.latency_s, _name
        # no part draws more than its power envelope on average (10% for rounding); the
        # detected host CPU is left out: its 65 W is a placeholder for any machine
        if _name != "cpu-host":
            for _r in (_r1, _r64):
                assert _r.avg_power_w <= 1.1 * systems[_name].device.power.tdp_w, _name
    # on the datacenter parts batch 64 spreads the static power over 64 inferences
    for _name in ("a100-sxm-80gb", "tpu-v4"):
        assert results[_name, 64].energy_per_sample_j < results[_name, 1].energy_per_sample_j
    return


@app.cell
def _(PARTS, mo, results, systems):
    _fpga_mhz = systems["alveo-u250"].device.design.clock_hz / 1e6
    _gflop = results["a100-sxm-80gb", 1].flops / 1e9

    def _best(b, key):
        return max(PARTS, key=lambda n: key(results[n, b]))

    _per_j = {b: _best(b, lambda r: r.samples / r.energy_j) for b in (1, 64)}
    _per_usd = {b: _best(b, lambda r: 1 / r.usd_per_sample) for b in (1, 64)}
    _fastest = {b: _best(b, lambda r: r.samples / r.latency_s) for b in (1, 64)}
    _slow = (results["alveo-u250", 64].latency_s / results["alveo-u250", 64].samples
             / (results["a100-sxm-80gb", 64].latency_s / results["a100-sxm-80gb", 64].samples))
    mo.md(rf"""
    **Reading the results.** BERT-base is {_gflop:.0f} GFLOP per inference. At batch 1 the
    A100 reaches {results["a100-sxm-80gb", 1].peak_fraction:.0%} of its peak: kernel
    launches, pipeline fill and small GEMMs dominate (lesson 2). At batch 64 it reaches
    {results["a100-sxm-80gb", 64].peak_fraction:.0%}, and its static power is shared by 64
    inferences. Highest throughput: `{_fastest[1]}` at batch 1, `{_fastest[64]}` at batch 64.
    Most inferences per joule: `{_per_j[1]}` at batch 1, `{_per_j[64]}` at batch 64. Most
    inferences per dollar: `{_per_usd[1]}` and `{_per_usd[64]}` (mind the cost modes: rented
    by the hour, or owned). The FPGA's DSP array is a design running at {_fpga_mhz:.0f} MHz on DDR4
    (lesson 1): at batch 64 it takes {_slow:.0f}x the A100's time per inference.

    ### Edge or cloud?

    At the edge the question includes the network: `edge_vs_cloud` adds the upload of the
    input and the download of the answer (bandwidth, round trip, and the phone's radio
    energy; `simulator/edge_cloud.py` cites Huang et al., MobiSys 2012, for the LTE and
    Wi-Fi power model).
    """)
    return


@app.cell
def _(edge_vs_cloud, get_network, mo):
    options = edge_vs_cloud("bert-base", "jetson-orin-nano-8gb", "a100-sxm-80gb",
                            [get_network("wifi"), get_network("lte")], cloud_batch=64, seq=128)
    _rows = [{"option": o.name, "latency (ms)": round(o.latency_s * 1e3, 2),
              "network (ms)": round(o.network_s * 1e3, 2),
              "device energy (mJ)": round(o.device_energy_j * 1e3, 2),
              "$ / M requests": round(o.usd_per_million, 4)} for o in options]
    # the cloud answer cannot arrive before its bytes cross the network
    for _o in options:
        assert _o.error is None
        if _o.where == "cloud":
            assert _o.latency_s >= _o.network_s > 0
    mo.ui.table(_rows)
    return (options,)


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise: is the FPGA cheaper per inference?

    Compare the Alveo U250 and the A100 both **owned** (TCO), at batch 64. (1) Which is
    cheaper per inference? (2) At what purchase price would the U250 match the A100 per
    inference? Hint: with $t$ the time per inference, $L$ the lifetime and $e$ the
    electricity per inference, the cost per inference is $P\,t/L + e$; solve for $P$.
    Then check your price with an override: `load_arch("alveo-u250", ["cost.price=$..."])`.
    """)
    return


@app.cell
def _(CostOptions, load_arch, mo, simulate, systems):
    _tco = CostOptions(mode="tco")
    gpu = simulate("bert-base", systems["a100-sxm-80gb"], batch=64, seq=128, dtype="bf16",
                   cost=_tco)
    fpga = simulate("bert-base", systems["alveo-u250"], batch=64, seq=128, dtype="int8",
                    cost=_tco)
    _dev = systems["alveo-u250"].device
    _t = fpga.latency_s / fpga.samples
    _elec = fpga.cost.electricity_usd / fpga.samples
    # the cost formula by hand reproduces the model's TCO cost
    _hand = _dev.pricing.price_usd * _t / _dev.pricing.lifetime_s + _elec
    assert abs(_hand / fpga.usd_per_sample - 1) < 1e-6
    fpga_cheaper = fpga.usd_per_sample < gpu.usd_per_sample
    break_even = (gpu.usd_per_sample - _elec) * _dev.pricing.lifetime_s / _t
    if break_even > 0:  # re-simulate at that price: the two must cost the same
        _check = simulate("bert-base", load_arch("alveo-u250", [f"cost.price=${break_even:.2f}"]),
                          batch=64, seq=128, dtype="int8", cost=_tco)
        assert abs(_check.usd_per_sample / gpu.usd_per_sample - 1) < 0.01
        _verdict = (f"It would match the A100 at a price of **\\${break_even:,.0f}** "
                    f"({break_even / _dev.pricing.price_usd:.0%} of its "
                    f"\\${_dev.pricing.price_usd:,.0f}).")
    else:
        _verdict = ("No price makes it match: its electricity per inference alone exceeds "
                    "the A100's whole cost per inference.")
    mo.md(f"""
    **Answer.** Owned and busy all the time, the A100 costs
    \\${gpu.usd_per_sample * 1e6:.3f} per million inferences and the U250
    \\${fpga.usd_per_sample * 1e6:.3f}: the FPGA is **{"cheaper" if fpga_cheaper else "not cheaper"}**
    per inference. It takes {_t * 1e3:.2f} ms of the card per inference against
    {gpu.latency_s / gpu.samples * 1e3:.3f} ms on the GPU, so each inference carries a larger
    share of its price. {_verdict} Where FPGAs do win is a fixed, small power envelope, low
    batch-1 latency with a design built for one model, and precisions (int4, custom
    formats) that a GPU lacks — rerun with `--set design.base=int8-wide` to see a
    different design.
    """)
    return break_even, fpga, fpga_cheaper, gpu


if __name__ == "__main__":
    app.run()
