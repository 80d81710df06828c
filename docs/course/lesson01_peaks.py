"""Lesson 1: peak FLOP/s and memory bandwidth from first principles (a marimo notebook).

Run it: ``marimo edit docs/course/lesson01_peaks.py`` (interactive), ``python
docs/course/lesson01_peaks.py`` (as a script; the asserts are the checks) or ``marimo export
html docs/course/lesson01_peaks.py -o lesson01.html``.
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

    return load_arch, mo, np, plt


@app.cell
def _(mo):
    mo.md(r"""
    # Lesson 1 — Peak FLOP/s and bandwidth from first principles

    **Goal.** Derive the two numbers every datasheet leads with — the peak arithmetic rate
    and the memory bandwidth — from the hardware's structure, for five shipped parts, and
    compare them with the vendors' published figures.

    **Compute.** A chip's peak rate is

    $$\text{peak FLOP/s} = \text{units} \times \frac{\text{FLOP}}{\text{cycle}\cdot\text{unit}}
    \times \text{clock (cycles/s)}.$$

    A multiply-accumulate (MAC) counts as 2 FLOP. An A100 tensor core does 256 bf16 MACs per
    cycle (512 FLOP); a TPU v4 MXU is a 128 x 128 systolic array, 16,384 MACs per cycle; an
    FPGA DSP48E2 slice packs two int8 MACs (4 ops) per cycle.

    **Memory.** A DRAM interface moves

    $$\text{bandwidth (B/s)} = \frac{\text{bus width (bits)}}{8} \times
    \text{data rate per pin (transfers/s)}.$$

    hwsim never types a peak into a spec: each spec lists units, FLOP per cycle and clock, and
    the peak is derived (`Device.native_peak`). The datasheet value sits under `published:`
    and the spec's header explains any gap. Below, we redo that arithmetic by hand.
    """)
    return


@app.cell
def _(load_arch):
    # each part at the precision its datasheet leads with
    PARTS = {
        "a100-sxm-80gb": "bf16",
        "h100-sxm": "bf16",
        "tpu-v4": "bf16",
        "alveo-u250": "int8",
        "jetson-orin-nano-8gb": "int8",
    }
    devices = {name: load_arch(name).device for name in PARTS}
    return PARTS, devices


@app.cell
def _(PARTS, devices, mo):
    rows = []
    derived_peak = {}
    for _name, _dt in PARTS.items():
        _d = devices[_name]
        _total = 0.0
        _terms = []
        for _u in _d.units("matrix"):
            _fpc = _u.flops_per_cycle.get(_dt)
            if _fpc is None:
                continue
            _total += _u.count * _fpc * _u.clock_hz
            _terms.append(f"{_u.count:,} x {_fpc:g} x {_u.clock_hz / 1e9:.3g} GHz")
        derived_peak[_name] = _total
        _pub = _d.published["peak"][_dt]
        rows.append({
            "part": _name, "dtype": _dt, "units x FLOP/cycle x clock": " + ".join(_terms),
            "derived (T/s)": round(_total / 1e12, 1), "published (T/s)": round(_pub / 1e12, 1),
            "derived / published": round(_total / _pub, 3),
        })
    mo.vstack([mo.md("### Peak arithmetic rate, derived by hand"), mo.ui.table(rows)])
    return derived_peak, rows


@app.cell
def _(PARTS, derived_peak, devices):
    # the hand derivation is exactly the model's own formula ...
    for _name, _dt in PARTS.items():
        assert abs(derived_peak[_name] / devices[_name].native_peak(_dt) - 1) < 1e-9, _name
    # ... and lands on the datasheet for the GPUs and the TPU (each spec header's
    # "Derived vs published" section gives the same check; 2% covers rounded datasheet digits)
    for _name in ("a100-sxm-80gb", "h100-sxm", "tpu-v4", "jetson-orin-nano-8gb"):
        _pub = devices[_name].published["peak"][PARTS[_name]]
        assert abs(derived_peak[_name] / _pub - 1) < 0.02, _name
    # an FPGA design can use at most the whole die: its peak stays under the datasheet's
    assert derived_peak["alveo-u250"] < devices["alveo-u250"].published["peak"]["int8"]
    return


@app.cell
def _(devices, mo):
    _design = devices["alveo-u250"].design
    mo.md(rf"""
    The four fixed-function parts land within rounding of their datasheets. The **FPGA does
    not**, and that is the lesson of FPGAs: the datasheet's "33.3 INT8 TOPs" (AMD Alveo U250
    product table, quoted in `arch_specs/fpga/alveo-u250.yaml`) counts every DSP slice at its
    top clock, while a real design uses a share of the DSPs at the clock its routing closes
    at. The shipped `{_design.name}` design is "{_design.description}", so its peak is what
    the design is, not what the die could be.

    ### Memory bandwidth from the bus

    Bus widths and data rates are published facts; they are typed here with their sources.
    Where a vendor gives the width but not the pin rate, we compute the implied rate and check
    it against the maximum of that memory standard.
    """)
    return


@app.cell
def _(devices, mo):
    # width (bits), data rate per pin (GT/s) or None when not published, and sources
    BUS = {
        "a100-sxm-80gb": (5 * 1024, None, 3.2, "HBM2e",
                          "A100 whitepaper (2020): five active HBM stacks (ten 512-bit memory "
                          "controllers); JEDEC JESD235C: HBM2E pins up to 3.2 Gb/s"),
        "h100-sxm": (5 * 1024, None, 6.4, "HBM3",
                     "H100 whitepaper (2022): five active HBM3 stacks on the 80 GB SXM5 part, "
                     "1,024 bits each; JEDEC JESD238: HBM3 pins up to 6.4 Gb/s"),
        "alveo-u250": (4 * 64, 2.4, 2.4, "DDR4-2400",
                       "AMD DS962 / UG1120: four DDR4-2400 DIMM channels, 64 bits each"),
        "jetson-orin-nano-8gb": (128, None, 6.4, "LPDDR5",
                                 "Jetson Orin Nano data sheet: 128-bit LPDDR5; LPDDR5 runs up "
                                 "to 6400 MT/s (JEDEC JESD209-5)"),
    }
    bw_rows = []
    implied_rate = {}
    for _name, (_bits, _rate, _max_rate, _kind, _src) in BUS.items():
        _spec_bw = devices[_name].dram.bandwidth_Bps
        if _rate is None:  # width published, rate implied by the published bandwidth
            _rate = _spec_bw * 8 / _bits / 1e9
        implied_rate[_name] = (_rate, _max_rate)
        _bw = _bits / 8 * _rate * 1e9
        bw_rows.append({"part": _name, "memory": _kind, "bus (bits)": _bits,
                        "GT/s per pin": round(_rate, 3), "bits/8 x rate (GB/s)": round(_bw / 1e9),
                        "spec (GB/s)": round(_spec_bw / 1e9), "source": _src})
    mo.vstack([mo.md("TPU v4: Google publishes 1,200 GB/s of HBM2 (Cloud TPU v4 docs) but not "
                     "the bus, so it is left out of this table."), mo.ui.table(bw_rows)])
    return BUS, bw_rows, implied_rate


@app.cell
def _(BUS, devices, implied_rate):
    for _name, (_rate, _max_rate) in implied_rate.items():
        # an implied pin rate above the standard's maximum would mean a wrong bus width
        assert 0 < _rate <= _max_rate * 1.001, (_name, _rate)
    # where both width and rate are published the product is the datasheet (U250: 77 GB/s)
    _bits, _rate = BUS["alveo-u250"][0], BUS["alveo-u250"][1]
    assert abs(_bits / 8 * _rate * 1e9 / devices["alveo-u250"].published["memory_bandwidth"]
               - 1) < 0.01
    return


@app.cell
def _(PARTS, derived_peak, devices, np, plt):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    _names = list(PARTS)
    _x = np.arange(len(_names))
    ax1.bar(_x - 0.2, [derived_peak[n] / 1e12 for n in _names], 0.4, label="derived")
    ax1.bar(_x + 0.2, [devices[n].published["peak"][PARTS[n]] / 1e12 for n in _names], 0.4,
            label="published")
    ax1.set_yscale("log")
    ax1.set_xticks(_x, [f"{n}\n{PARTS[n]}" for n in _names], fontsize=7)
    ax1.set_ylabel("peak (TFLOP/s or TOP/s)")
    ax1.legend()
    ax1.set_title("peak arithmetic rate")
    ax2.bar(_x, [devices[n].dram.bandwidth_Bps / 1e9 for n in _names], color="tab:green")
    ax2.set_yscale("log")
    ax2.set_xticks(_x, _names, fontsize=7)
    ax2.set_ylabel("DRAM bandwidth (GB/s)")
    ax2.set_title("memory bandwidth")
    fig.tight_layout()
    fig  # noqa: B018 (marimo displays a cell's last expression)
    return (fig,)


@app.cell
def _(mo):
    mo.md(r"""
    ## Exercise

    The **ridge point** is the arithmetic intensity (FLOP per byte of DRAM traffic) at which a
    part's compute and memory take equally long: peak / bandwidth. A kernel below it is
    memory-bound. (1) Compute the A100's and H100's bf16 ridge points from your derived peak
    and the bus arithmetic above. (2) Which grew faster from A100 to H100, compute or
    bandwidth, and what does that mean for a memory-bound kernel?
    """)
    return


@app.cell
def _(BUS, derived_peak, devices, implied_rate, mo):
    def _bus_bw(name):
        return BUS[name][0] / 8 * implied_rate[name][0] * 1e9

    ridge_a100 = derived_peak["a100-sxm-80gb"] / _bus_bw("a100-sxm-80gb")
    ridge_h100 = derived_peak["h100-sxm"] / _bus_bw("h100-sxm")
    compute_growth = derived_peak["h100-sxm"] / derived_peak["a100-sxm-80gb"]
    bw_growth = _bus_bw("h100-sxm") / _bus_bw("a100-sxm-80gb")
    # the hand answer agrees with the model's Device.ridge_point
    assert abs(ridge_a100 / devices["a100-sxm-80gb"].ridge_point("bf16") - 1) < 0.01
    assert abs(ridge_h100 / devices["h100-sxm"].ridge_point("bf16") - 1) < 0.01
    # compute outgrew bandwidth, so the ridge moved right: more kernels are memory-bound
    assert compute_growth > bw_growth and ridge_h100 > ridge_a100
    mo.md(f"""
    **Answer.** A100: {ridge_a100:.0f} FLOP/B; H100: {ridge_h100:.0f} FLOP/B. From A100 to
    H100 the bf16 peak grew {compute_growth:.2f}x but HBM bandwidth only {bw_growth:.2f}x,
    so the ridge moved right: a memory-bound kernel (such as LLM decode, lesson 2) speeds up
    only by the bandwidth ratio, {bw_growth:.2f}x, not by the headline {compute_growth:.2f}x.
    """)
    return bw_growth, compute_growth, ridge_a100, ridge_h100


if __name__ == "__main__":
    app.run()
