"""The ``hwsim ui`` page (Panel): widgets in, numbers and plots out.

Only layout and wiring live here; every number comes from :mod:`simulator.ui.model`. One
:class:`~simulator.predict.Predictor` per (part, overrides, TP) is kept in Panel's cache
(``pn.cache``), so moving a slider back to a value seen before costs no op re-mapping and a
new value re-maps only the distinct op shapes (tens of milliseconds for a 7B decode step).

Elements the browser test reads carry ``hwsim-*`` classes and ``data-value`` attributes in SI
units (seconds, J, tokens/s), so a test compares numbers, not formatted text.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from simulator.errors import HwsimError
from simulator.ui import INSTALL_HINT, model
from simulator.units import format_quantity as fq

try:
    import panel as pn
    from bokeh.models import ColumnDataSource
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
except ImportError:  # without the UI extra the module still imports (doctest collection);
    pn = None        # building a page says how to install it

__all__ = ["create_app", "DEFAULT_COMPARE"]

#: parts the compare tab opens with: two GPUs, a TPU and an inference GPU
DEFAULT_COMPARE = ("h100-sxm", "a100-sxm-80gb", "mi300x", "l4")
_BOUND_COLOURS = {"compute": "#d62728", "memory": "#1f77b4", "communication": "#2ca02c",
                  "latency": "#ff7f0e"}
_GHZ, _GBPS, _GB, _MIB = 1e9, 1e9, 1e9, 2**20

#: one predictor per (part, overrides, TP), shared by every session of the server
_predictor = pn.cache(model.make_predictor, max_items=32) if pn is not None else None


def _metric_html(v: model.View, elapsed_s: float) -> str:
    """Headline cards; ``data-value`` holds the SI number behind each label."""
    h = v.headline()
    raw = {"latency": v.latency_s, "throughput": v.throughput, "energy": v.energy_per_sample_j,
           "power": v.avg_power_w, "cost": v.usd_per_million_tokens or v.usd_per_sample or 0.0,
           "memory": v.memory_bytes}
    cards = "".join(
        f'<div class="hwsim-metric" data-key="{k}" data-value="{raw[k]!r}" style="display:'
        f'inline-block;min-width:150px;margin:4px 10px 4px 0;padding:6px 10px;border:1px solid '
        f'#ddd;border-radius:6px"><div style="font-size:12px;color:#666">{k}</div><div '
        f'style="font-size:20px;font-weight:600">{html.escape(h[k])}</div></div>'
        for k in h)
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in v.warnings)
    over = ", ".join(f"{html.escape(k)}={html.escape(x)}" for k, x in v.overrides.items())
    return (f'<div class="hwsim-title" style="font-size:15px;font-weight:600">'
            f"{html.escape(v.title)}</div>{cards}"
            f'<div style="font-size:12px;color:#666">{v.peak_fraction:.1%} of peak matrix '
            f"rate; computed in {elapsed_s * 1e3:.0f} ms"
            + (f"; --set {over}" if over else "; the part as shipped") + "</div>"
            + (f'<ul style="font-size:12px;color:#a60">{notes}</ul>' if notes else ""))


def _error_html(message: str) -> str:
    return ('<div class="hwsim-error" style="color:#842029;background:#f8d7da;border:1px solid '
            '#f5c2c7;border-radius:6px;padding:8px 12px;font-family:monospace;white-space:'
            f'pre-wrap"><b>hwsim error:</b> {html.escape(message)}</div>')


class RooflinePlot:
    """Log-log roofline of the part with each op instance placed on it.

    Built once per session; a new scenario only replaces the data of its sources, so the
    browser redraws the plot instead of rebuilding it (a slider move stays well under a
    second).
    """

    def __init__(self) -> None:
        self.roofs = ColumnDataSource({"x": [], "matrix": [], "vector": [], "achievable": []})
        self.points = ColumnDataSource({"x": [], "y": [], "size": [], "kind": [],
                                        "colour": []})
        p = figure(height=360, sizing_mode="stretch_width", x_axis_type="log",
                   y_axis_type="log", x_axis_label="FLOP per DRAM byte",
                   y_axis_label="achieved FLOP/s", tools="pan,wheel_zoom,box_zoom,reset,hover",
                   tooltips=[("op kind", "@kind"), ("FLOP/B", "@x{0.00}"),
                             ("FLOP/s", "@y{0.00a}")])
        p.line("x", "matrix", source=self.roofs, line_width=2, color="black",
               legend_label="matrix peak / DRAM roof")
        p.line("x", "vector", source=self.roofs, line_dash="dashed", color="black",
               legend_label="vector peak")
        p.line("x", "achievable", source=self.roofs, line_dash="dotted", color="gray",
               legend_label="achievable bandwidth")
        p.scatter("x", "y", size="size", color="colour", source=self.points, alpha=0.6,
                  line_color="black", legend_field="kind")
        p.legend.location = "bottom_right"
        p.legend.label_text_font_size = "9px"
        self.figure = p

    def show(self, v: model.View) -> None:
        rf = v.roofline
        xs = rf["intensity"] or [1.0]
        ridge = rf["ridge"] if math.isfinite(rf["ridge"]) else 1.0
        lo, hi = min(min(xs), 0.05) / 2, max(max(xs), ridge * 8) * 2
        x = np.logspace(np.log10(lo), np.log10(hi), 120)
        bw = rf["bandwidth_Bps"]
        self.roofs.data = {
            "x": x, "matrix": np.minimum(rf["matrix_peak"], bw * x),
            "vector": (np.minimum(rf["vector_peak"], bw * x) if rf["vector_peak"] > 0
                       else np.full_like(x, np.nan)),
            "achievable": np.minimum(rf["matrix_peak"], rf["achievable_Bps"] * x)}
        total = sum(rf["latency_s"]) or 1.0
        colour = {k: Category10_10[i % 10] for i, k in enumerate(sorted(set(rf["kind"])))}
        self.points.data = {
            "x": rf["intensity"], "y": rf["flops_s"],
            "size": [5 + 25 * math.sqrt(t / total) for t in rf["latency_s"]],
            "kind": rf["kind"], "colour": [colour[k] for k in rf["kind"]]}
        self.figure.title.text = (
            f"roofline: {rf['matrix_class']} matrix {rf['matrix_peak'] / 1e12:.4g} TFLOP/s, "
            f"vector {rf['vector_peak'] / 1e12:.3g} TFLOP/s, DRAM {fq(bw, 'B/s')}, "
            f"ridge {rf['ridge']:.0f} FLOP/B")


class BreakdownPlot:
    """Time per op kind, coloured by the bound that dominates it (data replaced per run)."""

    def __init__(self) -> None:
        from bokeh.models import FactorRange

        self.source = ColumnDataSource({"kind": [], "ms": [], "share": [], "bound": [],
                                        "colour": []})
        p = figure(y_range=FactorRange(), height=200, sizing_mode="stretch_width",
                   title="time by op kind (red: compute-bound, blue: memory-bound, green: "
                         "communication, orange: launch/latency)",
                   x_axis_label="ms, summed over op instances", tools="hover",
                   tooltips=[("kind", "@kind"), ("ms", "@ms{0.000}"),
                             ("share", "@share{0.0%}"), ("bound", "@bound")])
        p.hbar(y="kind", right="ms", height=0.7, color="colour", source=self.source)
        self.figure = p

    def show(self, v: model.View) -> None:
        kinds = list(v.by_kind)[::-1]
        names = [k["kind"] for k in kinds]
        self.figure.y_range.factors = names
        self.figure.height = 80 + 26 * len(names)
        self.source.data = {"kind": names, "ms": [k["latency_s"] * 1e3 for k in kinds],
                            "share": [k["share"] for k in kinds],
                            "bound": [k["bound"] for k in kinds],
                            "colour": [_BOUND_COLOURS.get(k["bound"], "#7f7f7f")
                                       for k in kinds]}


def _top_ops_frame(v: model.View):
    import pandas as pd

    return pd.DataFrame([{"op": g["example"] if g["count"] == 1
                          else f"{g['example']} (x{g['count']})",
                          "kind": g["kind"], "time": fq(g["latency_s"], "s"),
                          "share": f"{g['share']:.1%}", "each": fq(g["each_s"], "s"),
                          "bound": g["bound"], "util": f"{g['utilization']:.0%}"}
                         for g in v.top_ops])


def _compare_html(outcomes: dict[str, model.Outcome]) -> str:
    """A table of the parts side by side; a part that cannot run says why in its row."""
    head = ("<tr><th>part</th><th>latency</th><th>throughput</th><th>energy / sample</th>"
            "<th>power</th><th>cost</th><th>memory</th></tr>")
    rows = []
    for arch, o in outcomes.items():
        if o.view is None:
            rows.append(f'<tr class="hwsim-compare-row" data-arch="{html.escape(arch)}">'
                        f"<td><b>{html.escape(arch)}</b></td><td colspan=6 "
                        f'class="hwsim-error" style="color:#842029">does not run: '
                        f"{html.escape(o.error or '')}</td></tr>")
            continue
        h = o.view.headline()
        rows.append(f'<tr class="hwsim-compare-row" data-arch="{html.escape(arch)}" '
                    f'data-value="{o.view.latency_s!r}"><td><b>{html.escape(arch)}</b></td>'
                    + "".join(f"<td>{html.escape(h[k])}</td>" for k in
                              ("latency", "throughput", "energy", "power", "cost", "memory"))
                    + "</tr>")
    return ('<table class="hwsim-compare" style="border-collapse:collapse;font-size:14px" '
            'border="1" cellpadding="6">' + head + "".join(rows) + "</table>")


def compare_figure(outcomes: dict[str, model.Outcome]) -> Any:
    """Latency and energy per sample of the parts that run, as two bar charts."""
    from bokeh.layouts import row

    ok = {a: o.view for a, o in outcomes.items() if o.view is not None}
    names = list(ok) or ["(none)"]
    src = ColumnDataSource({"arch": list(ok), "ms": [v.latency_s * 1e3 for v in ok.values()],
                            "mj": [v.energy_per_sample_j * 1e3 for v in ok.values()],
                            "colour": [Category10_10[i % 10] for i in range(len(ok))]})
    figs = []
    for col, title in (("ms", "latency (ms)"), ("mj", "energy per sample (mJ)")):
        p = figure(x_range=names, height=280, width=420, title=title, tools="hover",
                   tooltips=[("part", "@arch"), (col, f"@{col}{{0.000}}")])
        p.vbar(x="arch", top=col, width=0.6, color="colour", source=src)
        figs.append(p)
    return row(*figs)


class WhatIf:
    """One browser session's widgets, panes and callbacks."""

    def __init__(self, scenario: model.Scenario | None = None) -> None:
        if pn is None:
            raise HwsimError(INSTALL_HINT)
        s = scenario or model.Scenario()
        self._resetting = False
        self.workload = pn.widgets.Select(label="workload", options=list(model.workloads()),
                                          value=s.workload, css_classes=["hwsim-workload"])
        self.arch = pn.widgets.Select(label="part", options=list(model.parts()), value=s.arch,
                                      css_classes=["hwsim-arch"])
        self.phase = pn.widgets.Select(label="phase", options=list(model.PHASES), value=s.phase)
        self.phase.options = list(model.phases_for(s.workload))
        self.dtype = pn.widgets.Select(label="dtype", options=list(model.DTYPES), value=s.dtype)
        self.batch = pn.widgets.IntSlider(label="batch", start=1, end=256, value=s.batch,
                                          css_classes=["hwsim-batch"])
        self.seq = pn.widgets.IntSlider(label="sequence (prefill/forward)", start=16, end=8192,
                                        step=16, value=s.seq or 512)
        self.context = pn.widgets.IntSlider(label="context (KV cache, decode)", start=0,
                                            end=32768, step=256, value=s.context or 2048)
        self.tp = pn.widgets.IntSlider(label="TP degree (devices)", start=1, end=8, value=s.tp,
                                       css_classes=["hwsim-tp"])
        self.units = pn.widgets.IntSlider(label="matrix units", start=1, end=2, value=1,
                                          css_classes=["hwsim-units"])
        self.clock = pn.widgets.FloatSlider(label="matrix clock (GHz)", start=0.1, end=1.0,
                                            value=0.5, css_classes=["hwsim-clock"])
        self.bw = pn.widgets.FloatSlider(label="DRAM bandwidth (GB/s)", start=0.0, end=1.0,
                                         value=0.5, css_classes=["hwsim-bw"])
        self.cap = pn.widgets.FloatSlider(label="DRAM capacity (GB)", start=0.5, end=1.0,
                                          value=0.5, css_classes=["hwsim-cap"])
        self.sram = pn.widgets.FloatSlider(label="on-chip SRAM (MiB)", start=0.0, end=1.0,
                                           value=0.5, css_classes=["hwsim-sram"])
        self.extra = pn.widgets.TextAreaInput(
            label="more --set overrides (one PATH=VALUE a line)", height=70,
            placeholder="power.tdp=500 W", css_classes=["hwsim-extra"])
        self.reset = pn.widgets.Button(label="reset spec to the shipped part")
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["hwsim-status"])
        self.metrics = pn.pane.HTML("", sizing_mode="stretch_width",
                                    css_classes=["hwsim-metrics"])
        self.roofline_plot, self.breakdown_plot = RooflinePlot(), BreakdownPlot()
        self.roofline = pn.pane.Bokeh(self.roofline_plot.figure, sizing_mode="stretch_width")
        self.breakdown = pn.pane.Bokeh(self.breakdown_plot.figure,
                                       sizing_mode="stretch_width")
        self.top = pn.pane.DataFrame(None, index=False, sizing_mode="stretch_width")
        self.compare_parts = pn.widgets.MultiChoice(
            label="parts to compare (2 to 4)", options=list(model.parts()), max_items=4,
            value=[a for a in DEFAULT_COMPARE if a in model.parts()],
            css_classes=["hwsim-compare-parts"])
        self.compare_table = pn.pane.HTML("", sizing_mode="stretch_width",
                                          css_classes=["hwsim-compare-out"])
        self.compare_plot = pn.pane.Bokeh(None, sizing_mode="stretch_width")
        self.tabs = pn.Tabs(
            ("what-if", pn.Column(self.status, self.metrics, self.roofline, self.breakdown,
                                  pn.pane.Markdown("**slowest op shapes**"), self.top,
                                  sizing_mode="stretch_width")),
            ("compare", pn.Column(
                pn.pane.Markdown("Each part as shipped, with the workload settings on the left "
                                 "(the spec sliders belong to the what-if tab)."),
                self.compare_parts, self.compare_table, self.compare_plot,
                sizing_mode="stretch_width")),
            dynamic=False, sizing_mode="stretch_width")
        self._knobs_for(self.arch.value, s)
        inputs = [self.workload, self.phase, self.dtype, self.batch, self.seq, self.context,
                  self.tp, self.units, self.clock, self.bw, self.cap, self.sram, self.extra]
        for w in inputs:
            w.param.watch(self._changed, "value")
        self.arch.param.watch(self._arch_changed, "value")
        self.reset.on_click(lambda _e: self._arch_changed(None))
        self.compare_parts.param.watch(lambda _e: self.update_compare(), "value")
        self.tabs.param.watch(lambda _e: self.update_compare(), "active")
        self.update()

    # -- layout ------------------------------------------------------------------------------
    def layout(self) -> Any:
        side = pn.Column(
            pn.pane.Markdown("### workload"), self.workload, self.phase, self.dtype, self.batch,
            self.seq, self.context, pn.pane.Markdown("### part"), self.arch, self.tp,
            self.units, self.clock, self.bw, self.cap, self.sram, self.extra, self.reset,
            width=330)
        head = pn.pane.Markdown(
            "## hwsim what-if\nPick a workload and a part, move a spec slider: the numbers, the "
            "roofline and the op breakdown follow. Spec changes are `hwsim run --set` "
            "overrides, checked the same way.", sizing_mode="stretch_width")
        return pn.Column(head, pn.Row(side, self.tabs, sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")

    # -- state -------------------------------------------------------------------------------
    def _knobs_for(self, arch: str, s: model.Scenario | None = None) -> None:
        """Set the spec sliders' ranges and values from ``arch``'s spec (or ``s``)."""
        k = model.spec_knobs(arch)
        self._resetting = True
        try:
            self.units.param.update(start=1, end=max(2, 4 * k.units),
                                    value=(s.units if s and s.units else k.units))
            g = k.clock_hz / _GHZ
            self.clock.param.update(start=round(g / 10, 3), end=round(3 * g, 3),
                                    step=round(g / 20, 4),
                                    value=(s.clock_hz if s and s.clock_hz else k.clock_hz) / _GHZ)
            b = k.dram_bandwidth_Bps / _GBPS
            self.bw.param.update(start=0.0, end=4 * b, step=b / 20,
                                 value=(s.dram_bandwidth_Bps if s and s.dram_bandwidth_Bps
                                        is not None else k.dram_bandwidth_Bps) / _GBPS)
            c = k.dram_capacity_bytes / _GB
            self.cap.param.update(start=c / 16, end=4 * c, step=c / 16,
                                  value=(s.dram_capacity_bytes if s and s.dram_capacity_bytes
                                         else k.dram_capacity_bytes) / _GB)
            if k.sram_bytes:
                m = k.sram_bytes / _MIB
                self.sram.param.update(start=0.0, end=4 * m, step=m / 16, disabled=False,
                                       label=f"on-chip SRAM: {k.sram_name} (MiB)",
                                       value=(s.sram_bytes if s and s.sram_bytes
                                              else k.sram_bytes) / _MIB)
            else:
                self.sram.param.update(disabled=True, label="on-chip SRAM (none in spec)")
            self.units.label = f"matrix units: {k.unit_name}"
            self.bw.label = f"{k.dram_name} bandwidth (GB/s)"
            self.cap.label = f"{k.dram_name} capacity (GB)"
        finally:
            self._resetting = False

    def scenario(self) -> model.Scenario:
        """The scenario the widgets describe (knobs left at the spec value stay None)."""
        k = model.spec_knobs(self.arch.value)

        def knob(value: float, spec: float | None, step: float) -> float | None:
            # a slider at its spec position (to within half a step of float rounding) is
            # the spec itself: no override, exactly the shipped part
            return None if spec is not None and abs(value - spec) <= step / 2 else value

        return model.Scenario(
            workload=self.workload.value, arch=self.arch.value, phase=self.phase.value,
            batch=self.batch.value, seq=self.seq.value, context=self.context.value,
            dtype=self.dtype.value, tp=self.tp.value,
            units=None if self.units.value == k.units else self.units.value,
            clock_hz=knob(self.clock.value * _GHZ, k.clock_hz, self.clock.step * _GHZ),
            dram_bandwidth_Bps=knob(self.bw.value * _GBPS, k.dram_bandwidth_Bps,
                                    self.bw.step * _GBPS),
            dram_capacity_bytes=knob(self.cap.value * _GB, k.dram_capacity_bytes,
                                     self.cap.step * _GB),
            sram_bytes=(knob(self.sram.value * _MIB, k.sram_bytes, self.sram.step * _MIB)
                        if k.sram_bytes else None),
            extra=tuple(x.strip() for x in (self.extra.value or "").splitlines() if x.strip()))

    # -- callbacks ---------------------------------------------------------------------------
    def _changed(self, event: Any) -> None:
        if self._resetting:
            return
        if event.obj is self.workload:
            self._sync_phases()
        self.update()
        self.update_compare()

    def _sync_phases(self) -> None:
        """Offer the phases the workload has (a CNN has no decode), keeping the choice if it
        can."""
        phases = list(model.phases_for(self.workload.value))
        self._resetting = True
        try:
            self.phase.param.update(options=phases, value=self.phase.value
                                    if self.phase.value in phases else "auto")
        finally:
            self._resetting = False

    def _arch_changed(self, _event: Any) -> None:
        """A new part (or the reset button): its own spec values, no extra overrides (their
        paths name the old part's items)."""
        self._knobs_for(self.arch.value)
        self._resetting = True
        try:
            self.extra.value = ""
        finally:
            self._resetting = False
        self.update()

    def _outcome(self, s: model.Scenario) -> model.Outcome:
        try:
            return model.run(s, _predictor)
        except Exception as e:  # a bug, not a user error: one line on the page, never a trace
            return model.Outcome(error=f"internal error ({type(e).__name__}: {e}); please "
                                       "report it with the scenario")

    def update(self) -> None:
        """Recompute the what-if tab from the widgets."""
        t0 = time.perf_counter()
        try:
            s = self.scenario()
        except Exception as e:  # noqa: BLE001 - a spec that does not load shows its message
            o = model.Outcome(error=str(e))
        else:
            o = self._outcome(s)
        if o.view is None:
            self.status.object = _error_html(o.error or "unknown error")
            for pane in (self.metrics, self.roofline, self.breakdown, self.top):
                pane.visible = False
            return
        v = o.view
        self.status.object = ""
        self.roofline_plot.show(v)
        self.breakdown_plot.show(v)
        self.top.object = _top_ops_frame(v)
        self.metrics.object = _metric_html(v, time.perf_counter() - t0)
        for pane in (self.metrics, self.roofline, self.breakdown, self.top):
            pane.visible = True

    def update_compare(self) -> None:
        """Recompute the compare tab (only while it is shown: it runs up to four parts)."""
        if self.tabs.active != 1:
            return
        archs = list(self.compare_parts.value)
        if not 2 <= len(archs) <= 4:
            self.compare_table.object = _error_html(
                f"pick 2 to 4 parts to compare (got {len(archs)})")
            self.compare_plot.visible = False
            return
        try:
            base = replace(self.scenario(), arch=archs[0])
            outcomes = model.compare(base, archs, _predictor)
        except Exception as e:  # noqa: BLE001 - one line, never a trace
            self.compare_table.object = _error_html(str(e))
            self.compare_plot.visible = False
            return
        self.compare_table.object = _compare_html(outcomes)
        self.compare_plot.object = compare_figure(outcomes)
        self.compare_plot.visible = True


def create_app() -> Any:
    """A fresh page (one per browser session)."""
    return WhatIf().layout()
