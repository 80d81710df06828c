"""FPGA mapper: systolic PE arrays built on an FPGA's fabric. Family ``fpga``.

The spec's matrix unit stands for the DSP slices: ``count`` DSPs, each doing
``flops_per_cycle[dtype]`` FLOP per cycle (one MAC = 2 FLOP). A DSP48E2 does one 27x18 MAC per
cycle, and two int8 MACs can share its multiplier (AMD/Xilinx WP486, "Deep Learning with INT8
Optimization on Xilinx Devices"; four int4, WP521), so a spec gives ``int8: 4`` and
``fp16: 2`` (or less where a floating-point MAC needs several DSPs): the DSPs per MAC of a
dtype are ``2 / flops_per_cycle``.

What runs on them is a *design* (:class:`~simulator.arch.spec.FpgaDesign`, ``design:`` in the
spec, fit-checked by the loader against the part's ``resources:``): ``engines`` copies of one
``R x C`` PE array per compute class. A class whose engines the design leaves out, and every
class of a spec without a design, is *filled* from the budget
(:func:`~simulator.arch.loader.fpga_design_config`)::

    n_macs = floor(min(dsp_count * dsp_utilization * flops_per_cycle[dtype] / 2,
                       free LUTs / params.luts_per_pe[dtype], free FFs / params.ffs_per_pe))

MAC lanes, laid out as ``n_macs // (R*C)`` copies of the ``R x C`` array (a multi-engine
design; the few lanes left over are not used). ``R x C`` is ``design.pe_array``, else the
unit's ``shape``, else :data:`DEFAULT_PE_ARRAY` (32 x 32). A budget smaller than one engine
time-multiplexes it at ``n_macs / (R*C)`` MACs per PE per cycle.

Why a fixed engine, rather than one near-square array as big as the budget or the largest
square up to 64 x 64 that fits: with a fixed engine, more DSPs (or int8 instead of fp16) only
add copies, and the shared model also tries half, a quarter, ... of the copies, so a budget
with twice the copies has every mapping of the smaller one and doubling the DSP count never
slows an op down (a filled budget only grows with the DSPs: the LUT and FF caps do not depend
on them). An array that grows with the budget has a longer fill and drain
(``R + C - 2`` cycles per fold), which makes small GEMMs slower on a bigger part. 32 x 32
keeps the fill and drain short (62 cycles) and wastes few lanes on real parts (Alveo U280,
9,024 DSPs: at one MAC per DSP 8 engines, 8,192 PEs; 18,048 packed int8 lanes -> 17 engines,
17,408 PEs); 64 x 64 engines would leave up to 4,095 lanes idle and double the fill and
drain. Give the design a ``pe_array`` (or the DSP unit a ``shape``) to choose another engine.

The design clock is the DSP unit's clock (the loader sets it from ``design.clock``), capped at
``params.dsp_fmax``. The engines run the same fold/cycle/SRAM model as the systolic family
(:mod:`simulator.mapping.systolic_core`, one core: the BRAM/URAM is shared by all engines),
with the first memory level (the design's off-chip memory, at the bandwidth of the channels
it uses) as DRAM and the design's buffers (``params.sram``, else the on-chip level split in
three) as the SRAMs. Each GEMM-like op's notes and ``details["fpga_resources"]`` report what
its configuration uses of every resource (DSP slices, LUTs, FFs, URAM/BRAM blocks, memory
channels, clock range) and an estimate of its power at full rate.

Spec parameters read (``params:``): ``dsp_utilization`` (default 1.0: every DSP),
``dsp_fmax``, ``luts_per_pe``/``ffs_per_pe`` (per dtype, defaults in
:mod:`simulator.arch.params`), ``dataflow`` (default ws), ``double_buffered`` (default true),
``sram``, ``bandwidth_efficiency``, ``compute_efficiency`` (per dtype, default 1.0),
``launch_overhead``, ``kind_efficiency`` (streaming kinds and attention, default 1.0).
"""

from __future__ import annotations

from typing import Any

from simulator.arch.loader import fpga_design_config
from simulator.arch.spec import (
    FPGA_DEFAULT_PE_ARRAY,
    Device,
    FpgaConfig,
    ResourceUse,
    fpga_buffer_use,
    fpga_pe_layout,
)
from simulator.errors import MappingError
from simulator.mapping import systolic_core as core
from simulator.mapping.base import MapOptions
from simulator.mapping.common import param
from simulator.units import format_quantity
from workloads.ops import Op

__all__ = ["DEFAULT_PE_ARRAY", "array_setup", "pe_layout", "resource_report"]

FAMILY = "fpga"
DEFAULT_PE_ARRAY = FPGA_DEFAULT_PE_ARRAY  # engine size when nothing gives one (docstring)
_PACKED = {2: "two", 3: "three", 4: "four", 8: "eight"}


def pe_layout(n_macs: int, shape: tuple[int, int] = DEFAULT_PE_ARRAY
              ) -> tuple[int, float]:
    """``(arrays, macs_per_pe)``: copies of a ``shape`` PE array that ``n_macs`` lanes build.

    A budget of at least one array gives ``n_macs // (R*C)`` copies at one MAC per PE per
    cycle; a smaller one time-multiplexes a single array at ``n_macs / (R*C)``.

    Examples
    --------
    >>> pe_layout(9024)
    (8, 1.0)
    >>> pe_layout(256)
    (1, 0.25)
    """
    return fpga_pe_layout(n_macs, shape)


def resource_report(device: Device, cfg: FpgaConfig, sram: dict[str, float],
                    clock_hz: float) -> tuple[str, dict[str, Any]]:
    """A one-line note and a details mapping of what the op's design configuration uses of
    each fabric resource: DSP slices, LUTs, FFs, BRAM36/URAM288 blocks for the buffers,
    memory channels, the clock within the fabric's range, and the power estimate (static plus
    the dynamic energy of every PE busy at this clock; an estimate, not a fit check)."""
    res, des = device.resources, device.design
    uses: list[ResourceUse] = list(cfg.uses)
    if res is not None:
        uses += fpga_buffer_use(res, sram)
    details: dict[str, Any] = {
        u.key: {"used": u.used, "available": u.available, "utilization": u.utilization}
        for u in uses}
    parts = [u.summary() for u in uses]
    if res is not None:
        mem = des.memory if des is not None and des.memory else device.dram.name
        total = res.channels.get(mem)
        if total is not None:
            used = des.channels if des is not None and des.channels else total
            details["channels"] = {"memory": mem, "used": used, "available": total,
                                   "utilization": used / total}
            parts.append(f"{mem} channels {used} of {total}")
        details["clock"] = {"hz": clock_hz, "min_hz": res.clock_min_hz,
                            "max_hz": res.clock_max_hz}
        parts.append(f"clock {format_quantity(clock_hz, 'Hz')} in "
                     f"{format_quantity(res.clock_min_hz, 'Hz')}-"
                     f"{format_quantity(res.clock_max_hz, 'Hz')}")
    flops = 2.0 * cfg.pes * max(cfg.macs_per_pe, 0.0) * clock_hz
    dynamic = device.energy.per_flop(cfg.compute_class) * flops
    watts = device.power.static_w + dynamic
    details["power"] = {"static_w": device.power.static_w, "dynamic_w": dynamic,
                        "total_w": watts, "tdp_w": device.power.tdp_w,
                        "utilization": watts / device.power.tdp_w}
    parts.append(f"power ~{watts:.0f} W of {device.power.tdp_w:.0f} W at full rate (static "
                 f"{device.power.static_w:.0f} W + {cfg.compute_class} PEs {dynamic:.0f} W, "
                 f"estimate)")
    name = f" ({des.name})" if des is not None else ""
    return f"FPGA resources{name}: " + "; ".join(parts), details


def array_setup(op: Op, device: Device, options: MapOptions) -> core.ArraySetup:
    """Size the PE array for ``op.dtype`` from the design (or the DSP budget).

    Raises
    ------
    MappingError
        If the spec has no matrix (DSP) unit, none runs the dtype, the budget gives no PE,
        or the design does not fit the part (the loader refuses such specs; a device built
        by hand gets the same check here).
    """
    dsps = device.units("matrix")
    if not dsps:
        raise MappingError(f"{device.name}: an FPGA spec needs a matrix unit describing its "
                           "DSP slices (count, clock, flops_per_cycle per DSP)")
    err: MappingError | None = None
    for unit in dsps:
        try:
            cls = core.array_compute_class(device, unit, op.dtype)
            break
        except MappingError as e:
            err = err or e
    else:
        assert err is not None
        if device.design is not None:
            raise MappingError(f"{err} (the {device.design.name} design builds "
                               f"{', '.join(device.design.dtypes)} engines; add the dtype to "
                               "design.dtypes)")
        raise err
    cfg = fpga_design_config(device, unit, cls)
    util = float(param(device, "dsp_utilization", 1.0))
    if cfg.engines < 1:
        raise MappingError(f"{device.name}: {unit.count} DSPs x {util:g} utilisation x "
                           f"{cfg.macs_per_dsp:g} MAC/DSP in {cls} leaves no PE"
                           + ("" if cfg.limit.startswith("DSP") else
                              f" (the {cfg.limit} allow none)"))
    over = [u for u in cfg.uses if u.over]
    if over:
        raise MappingError(f"{device.name} design: " + "; ".join(u.shortfall() for u in over))
    clock = unit.clock_hz
    fmax = param(device, "dsp_fmax", None)
    capped = fmax is not None and fmax < clock
    if capped:
        clock = float(fmax)
    rows, cols, arrays, macs_per_pe = cfg.rows, cfg.cols, cfg.engines, cfg.macs_per_pe
    n_macs, macs_per_dsp = cfg.mac_lanes, cfg.macs_per_dsp
    which = {"design": "the design's", "unit shape": "the spec's"}.get(cfg.pe_array_source,
                                                                       "the default")
    if macs_per_pe == 1.0:
        layout = f"{arrays} x {which} {rows}x{cols} PE array"
        layout += (f" ({n_macs - arrays * rows * cols} MAC lanes unused)" if cfg.filled
                   else " (design.engines)")
    else:
        layout = (f"{which} {rows}x{cols} PE array, time-multiplexed at "
                  f"{macs_per_pe:.3g} MAC per PE per cycle")
    dsp_slice = device.resources.dsp_slice if device.resources is not None else "DSP48E2"
    packing = ""
    if cls in ("int8", "int4") and macs_per_dsp > 1 and macs_per_dsp in _PACKED:
        packing = (f"{_PACKED[int(macs_per_dsp)]} {cls} MACs packed per {dsp_slice} (shared "
                   "27x18 multiplier, AMD/Xilinx "
                   + ("WP486)" if cls == "int8" else "WP521, INT4 optimization)"))
    elif macs_per_dsp < 1:
        packing = f"one {cls} MAC needs {1 / macs_per_dsp:.3g} DSPs"
    if cfg.filled:
        budget = (f"{unit.count} DSPs x {util:g} used x {macs_per_dsp:g} MAC/DSP ({cls})"
                  + (f", capped by the {cfg.limit}" if not cfg.limit.startswith("DSP slices x")
                     else ""))
    else:
        name = device.design.name if device.design is not None else "design"
        budget = (f"design {name}: {arrays} engines x {rows}x{cols} PEs ({cls}, "
                  f"{macs_per_dsp:g} MAC/DSP)")
    notes = [
        f"FPGA: {budget} = {n_macs} MAC/cycle -> {layout} at {format_quantity(clock, 'Hz')}"
        + (f" (capped at dsp_fmax from {format_quantity(unit.clock_hz, 'Hz')})" if capped
           else ""),
        *((packing,) if packing else ()),
    ]
    sram, _ = core.sram_capacities(device)
    report, usage = resource_report(device, cfg, sram, clock)
    if device.resources is not None or device.design is not None:
        notes.append(report)
    dsp_use = cfg.use("dsps")
    details = {"dsp_count": unit.count, "dsp_utilization": util, "macs_per_dsp": macs_per_dsp,
               "pe_count": arrays * rows * cols, "mac_lanes": n_macs, "design_clock_hz": clock,
               "dsp_packing": packing or None, "pe_array": [rows, cols],
               "pe_array_source": cfg.pe_array_source,
               "dsp_used": dsp_use.used if dsp_use is not None else None,
               "engines_source": "filled" if cfg.filled else "design",
               "fill_limit": cfg.limit if cfg.filled else None,
               "design": device.design.name if device.design is not None else None,
               "fpga_resources": usage}
    return core.make_setup(
        device, options, unit=unit.name, rows=rows, cols=cols, arrays=arrays, clock_hz=clock,
        compute_class=cls, macs_per_pe=macs_per_pe, peak_flops=unit.rate(cls) or 0.0,
        notes=tuple(notes), details=details)


core.register_array_family(FAMILY, array_setup)
