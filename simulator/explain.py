"""Explain a prediction like a teacher: the arithmetic behind ``--explain``, with the numbers.

Pure functions that turn an op's :class:`~simulator.mapping.base.OpCost` (or a run's
:class:`~simulator.results.result.Result`) into lines of text a student can check by hand:

* :func:`op_lines` walks one op through the roofline and the mapper: its FLOPs with the
  formula and the shapes, the compulsory bytes of each tensor (elements x bytes per element),
  arithmetic intensity against the ridge point (peak FLOP/s over the bandwidth of the memory
  level the traffic comes from, both numbers shown), the compute and memory lower bounds, the
  efficiencies the mapper assumed and where each comes from (the spec's ``params`` or the
  family default of :mod:`simulator.arch.params`, with its source), the family's own facts
  (GPU tiles and waves; systolic/FPGA folds, fill and drain and dataflow; CPU threads and
  blocking; the alpha-beta or NCCL model of a collective), the fixed costs, and how they add
  up to the predicted time, ending with the check ``predicted >= max(compute bound, memory
  bound)``.
* :func:`result_lines` explains a run: totals, the op shapes that dominate, the share of
  time that is compute-, memory-, communication- or latency-bound, the energy split, average
  power against the TDP, and the dollar arithmetic.

Numbers print with four significant digits and an SI prefix (``183.8 us``), counts exactly
(``137,438,953,472 FLOP``). The CLI only prints what these return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulator.arch.params import FAMILY_DEFAULTS
from simulator.units import format_quantity
from workloads.ops import (
    ELEMENTWISE_FNS,
    Attention,
    Collective,
    Conv2d,
    Elementwise,
    Embedding,
    MatMul,
    Memcpy,
    Norm,
    Op,
    Pool,
    Softmax,
)

if TYPE_CHECKING:
    from simulator.arch.spec import Device, MemoryLevel, System
    from simulator.cost.dollars import CostOptions
    from simulator.mapping.base import OpCost
    from simulator.results.result import Result

__all__ = ["op_lines", "result_lines", "timing_lines", "flop_lines", "tensor_bytes",
           "param_source", "roofline_level", "Roofline", "roofline"]

_DATAFLOWS = {"os": "output stationary: each PE keeps one output and accumulates over K",
              "ws": "weight stationary: a tile of B (the weights) is pinned in the PEs and A "
                    "streams through",
              "is": "input stationary: a tile of A is pinned in the PEs and B streams through"}


def _nccl_row(device: Device) -> str:
    """Which of NCCL's per-generation table rows the part gets, and why (its capability)."""
    from simulator.mapping.common import nccl_generation, param

    cc = param(device, "compute_capability", None)
    why = f"compute capability {float(cc):.1f}" if cc is not None else "no compute_capability"
    return f"{nccl_generation(device).capitalize()} ({why})"


def q(x: float, unit: str) -> str:
    """``x`` in ``unit`` with an SI prefix and 4 significant digits.

    >>> q(3.35e12, "B/s"), q(1.8381e-4, "s")
    ('3.35 TB/s', '183.8 us')
    """
    return format_quantity(x, unit, 4)


def _n(x: float) -> str:
    """An exact count with thousands separators (``137,438,953,472``), or 4 digits when not
    a whole number."""
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4g}"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _w(x: float) -> str:
    """Watts: ``367 W``, ``5,558 W``, ``10,200 W`` (never exponent notation)."""
    return f"{x:,.0f} W" if abs(x) >= 100 else f"{x:.3g} W"


# -- the work -------------------------------------------------------------------------------
def flop_lines(op: Op) -> list[str]:
    """The FLOP count of ``op`` as a formula with its shapes, ending with the total."""
    fl = op.flops()
    out: list[str] = []
    if isinstance(op, MatMul):
        mm = 2.0 * op.m * op.n * op.k * op.batch
        out.append(f"FLOPs = 2 x M x N x K x batch = 2 x {op.m} x {op.n} x {op.k} x {op.batch}"
                   f" = {_n(mm)} FLOP (2 FLOP per multiply-add), on the matrix units")
    elif isinstance(op, Conv2d):
        g, m, n, k = op.gemm_shape()
        out.append(f"output size P x Q: P = (H + 2 x pad - R) / stride + 1 = ({op.h} + "
                   f"2 x {op.pad} - {op.r}) / {op.stride} + 1 = {op.p}, Q = {op.q}")
        out.append(f"as a GEMM (im2col): M = n x P x Q = {op.n} x {op.p} x {op.q} = {m}, "
                   f"N = k / groups = {op.k} / {g} = {n}, K = c / groups x R x S = "
                   f"{op.c // g} x {op.r} x {op.s} = {k}")
        out.append(f"FLOPs = 2 x groups x M x N x K = 2 x {g} x {m} x {n} x {k} = "
                   f"{_n(2.0 * g * m * n * k)} FLOP, on the matrix units")
    elif isinstance(op, Attention):
        kind = (f"seq x context + seq x (seq + 1) / 2 = {op.seq} x {op.context} + {op.seq} x "
                f"{op.seq + 1} / 2" if op.causal else
                f"seq x (context + seq) = {op.seq} x {op.kv_len}")
        if op.seq_lens is not None:  # packed: each sample attends over its own length
            kind = (f"the mean over the {op.batch} samples' own lengths (packed, "
                    f"{op.tokens} tokens, the longest {op.seq})")
        out.append(f"query-key pairs per (batch, head), {'causal' if op.causal else 'full'}: "
                   f"{kind} = {_n(op.score_pairs)}")
        out.append(f"matrix FLOPs (QK^T and PV, 2 FLOP per multiply-add each) = 4 x batch x "
                   f"heads x pairs x head_dim = 4 x {op.batch} x {op.heads} x "
                   f"{_n(op.score_pairs)} x {op.head_dim} = {_n(fl.matrix)} FLOP")
        out.append(f"softmax: 4 vector FLOP and 1 exp per pair = {_n(fl.vector)} + "
                   f"{_n(fl.special)} FLOP")
    elif isinstance(op, Elementwise):
        _, v, s = ELEMENTWISE_FNS[op.fn]
        out.append(f"{op.fn}: {v:g} vector FLOP" + (f" and {s:g} transcendental" if s else "")
                   + f" per element x {op.numel} elements")
    elif isinstance(op, Norm):
        per = {"layernorm": 7, "rmsnorm": 4, "batchnorm": 2}[op.norm]
        out.append(f"{op.norm}: {per} vector FLOP per element x rows x cols = {per} x "
                   f"{op.rows} x {op.cols}"
                   + ("" if op.norm == "batchnorm" else f", plus one rsqrt per row ({op.rows})"))
    elif isinstance(op, Softmax):
        out.append(f"softmax: 4 vector FLOP (max, subtract, sum, divide) and 1 exp per element"
                   f" x rows x cols = {op.rows} x {op.cols}")
    elif isinstance(op, Embedding):
        out.append("embedding: a table gather, no arithmetic (0 FLOP)")
    elif isinstance(op, Pool):
        out.append(f"{op.mode} pool: one FLOP per window element x n x c x P x Q x R x S = "
                   f"{op.n} x {op.c} x {op.p} x {op.q} x {op.r} x {op.s}")
    elif isinstance(op, Collective):
        if fl.total:
            out.append(f"{op.collective}: the reduction adds (bytes / {op.dtype.bytes:g} B per "
                       f"element) x (devices - 1) / devices = {_n(op.bytes / op.dtype.bytes)} x "
                       f"{op.devices - 1} / {op.devices} FLOP per rank")
        else:
            out.append(f"{op.collective}: moves data, no arithmetic (0 FLOP)")
    elif isinstance(op, Memcpy):
        out.append("memcpy: moves data, no arithmetic (0 FLOP)")
    extra = fl.total - (2.0 * op.m * op.n * op.k * op.batch if isinstance(op, MatMul) else
                        2.0 * math.prod(op.gemm_shape()) if isinstance(op, Conv2d) else
                        fl.total)
    if extra > 0:
        out.append(f"plus {_n(extra)} vector/special FLOP on the output (bias, fused epilogue "
                   f"{', '.join(getattr(op, 'epilogue', ())) or 'bias'})")
    out.append(f"total = {_n(fl.total)} FLOP ({q(fl.total, 'FLOP')}: matrix {_n(fl.matrix)}, "
               f"vector {_n(fl.vector)}, special {_n(fl.special)})")
    return out


def tensor_bytes(op: Op) -> list[tuple[str, str, float]]:
    """``(tensor, formula, bytes)`` of every tensor read or written once; the rows add up to
    ``op.min_bytes`` exactly (a last ``other`` row holds what no formula names)."""
    rows: list[tuple[str, str, float]] = []
    e = op.dtype.bytes
    dn = op.dtype.name
    if isinstance(op, MatMul):
        bd = op.b_dtype
        frac = op.weight_stored_fraction
        sp = f" x {frac:.4g} stored (pruned, compressed)" if frac != 1.0 else ""
        rows += [("A (read)", f"batch x M x K x {e:g} B ({dn}) = {op.batch} x {op.m} x {op.k}"
                  f" x {e:g}", op.a_bytes()),
                 ("B (read)", f"batch x K x N x {bd.bytes:g} B ({bd.name}) = {op.batch} x "
                  f"{op.k} x {op.n} x {bd.bytes:g}{sp}", op.b_bytes()),
                 ("C (written)", f"batch x M x N x {e:g} B ({dn}) = {op.batch} x {op.m} x "
                  f"{op.n} x {e:g}", op.c_bytes())]
    elif isinstance(op, Conv2d):
        wd = op.weight_dtype or op.dtype
        rows += [("input (read)", f"n x c x H x W x {e:g} B ({dn}) = {op.n} x {op.c} x {op.h}"
                  f" x {op.w} x {e:g}", float(op.n * op.c * op.h * op.w * e)),
                 ("filter (read)", f"k x c/groups x R x S x {wd.bytes:g} B ({wd.name}) = "
                  f"{op.k} x {op.c // op.groups} x {op.r} x {op.s} x {wd.bytes:g}"
                  + (" (+ bias)" if op.bias else "")
                  + (" x stored fraction (pruned)" if op.sparsity else ""), op.weight_bytes()),
                 ("output (written)", f"n x k x P x Q x {e:g} B = {op.n} x {op.k} x {op.p} x "
                  f"{op.q} x {e:g}", op.bytes_written())]
    elif isinstance(op, Attention) and op.seq_lens is None:
        kv = (op.kv_dtype or op.dtype).bytes
        rows += [("Q (read)", f"batch x seq x heads x head_dim x {e:g} B ({dn}) = {op.batch} x "
                  f"{op.seq} x {op.heads} x {op.head_dim} x {e:g}",
                  float(op.batch * op.seq * op.heads * op.head_dim * e)),
                 ("K and V (read)", f"2 x batch x (context + seq) x kv_heads x head_dim x "
                  f"{kv:g} B = 2 x {op.batch} x {op.kv_len} x {op.kv_heads} x {op.head_dim} x "
                  f"{kv:g}", 2.0 * op.batch * op.kv_len * op.kv_heads * op.head_dim * kv),
                 ("O (written)", f"batch x seq x heads x head_dim x {e:g} B",
                  float(op.batch * op.seq * op.heads * op.head_dim * e)),
                 ("new K and V (written)", f"2 x batch x seq x kv_heads x head_dim x {kv:g} B",
                  2.0 * op.batch * op.seq * op.kv_heads * op.head_dim * kv)]
    else:
        rows += [("inputs (read)", f"{q(op.bytes_read(), 'B')} in {dn} ({e:g} B per element)",
                  op.bytes_read()),
                 ("outputs (written)", f"{q(op.bytes_written(), 'B')}", op.bytes_written())]
    rest = op.min_bytes - sum(b for _, _, b in rows)
    if abs(rest) > 0.5:
        rows.append(("other (fused epilogue inputs, index tensors)", "", rest))
    return rows


# -- where the numbers come from ------------------------------------------------------------
def param_source(device: Device, name: str, key: str | None = None) -> tuple[Any, str]:
    """``(value, where it comes from)`` of spec parameter ``name`` (entry ``key`` of a
    per-dtype or per-kind table): the spec's ``params`` if it sets it, else the family default
    of :mod:`simulator.arch.params` with its source."""
    if name in device.params:
        v = device.params[name]
        if key is None or not isinstance(v, Mapping):
            return v, f"the spec of {device.name} sets params.{name}"
        if key in v:
            return v[key], f"the spec of {device.name} sets params.{name}.{key}"
    d = FAMILY_DEFAULTS.get(device.family, {}).get(name)
    if d is None:
        return None, f"no {device.family} default"
    val = d.value.get(key) if key is not None and isinstance(d.value, Mapping) else d.value
    return val, (f"the {device.family} family default (simulator/arch/params.py): "
                 f"{d.source}")


def roofline_level(cost: OpCost, device: Device) -> MemoryLevel:
    """The memory level the op's compulsory traffic comes from: DRAM, unless the mapper served
    the whole working set from an on-chip level (no DRAM bytes), then the outermost level that
    carried bytes."""
    by = cost.bytes_by_level
    if by.get(device.dram.name, 0.0) > 0:
        return device.dram
    for lvl in device.memory[1:]:
        if by.get(lvl.name, 0.0) > 0:
            return lvl
    return device.dram


class Roofline:
    """The roofline numbers of one op on one device (plain attributes, SI units)."""

    def __init__(self, op: Op, cost: OpCost, device: Device):
        fl = op.flops()
        self.unit_kind = "matrix" if fl.matrix > 0 else "vector"
        peak, cls = device.peak(op.dtype, self.unit_kind)
        self.compute_class = cls or cost.compute_class
        if self.unit_kind == "matrix" and device.native_peak(self.compute_class, "matrix") <= 0:
            self.unit_kind = "vector"  # e.g. fp32 GEMM on a GPU's CUDA cores
        self.unit = next((u.name for u in device.units(self.unit_kind)
                          if u.rate(self.compute_class)), self.unit_kind)
        sparse = 1.0
        sp = getattr(op, "sparsity", None)
        if sp is not None and sp.pattern == "n:m" and (sp.n, sp.m) == (2, 4):
            table = device.params.get("sparse_speedup") or {}
            sparse = max(1.0, float(table.get(self.compute_class, 1.0)))
        self.sparse_speedup = sparse
        self.peak = peak * sparse
        self.flops = fl.total
        self.bytes = op.min_bytes
        # Where the compulsory bytes come from: DRAM, one on-chip level (the working set is
        # resident), or both (DRAM moves fewer than the compulsory bytes: the rest, e.g. the
        # producer's output still in the L2, comes from the outermost on-chip level used).
        outer = roofline_level(cost, device)
        dram_share = min(cost.bytes_by_level.get(device.dram.name, 0.0), self.bytes)
        onchip = next((lvl for lvl in device.memory[1:]
                       if cost.bytes_by_level.get(lvl.name, 0.0) > 0), None)
        if outer is device.dram and onchip is not None \
                and dram_share < self.bytes * (1 - 1e-9):
            self.shares = [(device.dram, dram_share), (onchip, self.bytes - dram_share)]
        else:
            self.shares = [(outer, self.bytes)]
        times = [(b / lvl.bandwidth_Bps if lvl.bandwidth_Bps else 0.0, lvl)
                 for lvl, b in self.shares]
        self.memory_bound_s, self.level = max(times, key=lambda t: t[0])
        self.bandwidth = self.level.bandwidth_Bps
        self.intensity = self.flops / self.bytes if self.bytes else math.inf
        self.ridge = self.peak / self.bandwidth if self.bandwidth else math.inf
        self.compute_bound_s = self.flops / self.peak if self.peak else 0.0

    @property
    def side(self) -> str:
        """``compute`` or ``memory``: the larger of the two bounds."""
        return "compute" if self.compute_bound_s >= self.memory_bound_s else "memory"

    @property
    def bound_s(self) -> float:
        return max(self.compute_bound_s, self.memory_bound_s)


def roofline(op: Op, cost: OpCost, device: Device) -> Roofline:
    """The roofline numbers of ``op`` on ``device`` (see :class:`Roofline`)."""
    return Roofline(op, cost, device)


# -- one op ---------------------------------------------------------------------------------
def timing_lines(op: Op, cost: OpCost, device: Device) -> list[str]:
    """Which timing the predicted time is (:mod:`simulator.timing`: a kernel's device time, an
    op inside a captured graph, an op issued into a stream, or an eager framework op with its
    host dispatch), and the overheads it applies with their values and sources."""
    from simulator.timing import MEANINGS, launch_part, timing_overheads

    mode = str(cost.details.get("timing") or "stream")
    out = [f"timing: {mode}: {MEANINGS[mode]}"]
    for row in timing_overheads(device, mode):
        v = row["value_s"]
        out.append(f"  {row['name']} = {q(v, 's') if v is not None else 'none'}: "
                   f"{row['applies']}; {row['source']}")
    removed = float(cost.details.get("launch_removed_s", 0.0))
    if mode in ("kernel", "graph") and removed:
        gap = cost.details.get("launch_s", 0.0) if mode == "graph" else 0.0
        out.append(f"  this op: launch share {q(removed, 's')} replaced by {q(float(gap), 's')}"
                   " (included in the fixed costs above)")
    elif mode in ("stream", "eager"):
        out.append(f"  this op: launch share {q(launch_part(op, cost, device), 's')} "
                   "(included in the fixed costs above)")
    if mode == "eager" and "eager_class" in cost.details:
        out += _eager_lines(op, cost, device)
    if mode == "eager" and "host_s" in cost.details:
        host = float(cost.details["host_s"])
        if host > 0:
            side = ("host-bound: the device idles between ops" if host > cost.latency_s else
                    "device-bound: the host keeps ahead")
            out.append(f"  host dispatch {q(host, 's')} vs device {q(cost.latency_s, 's')}: in a "
                       f"stream of such ops {side} (per op: max of the two)")
    return out


def _eager_lines(op: Op, cost: OpCost, device: Device) -> list[str]:
    """How ``eager`` costs ``op`` (:mod:`simulator.timing`): the ATen calls eager PyTorch makes
    for it with their source, the host time they add up to, and on the device the unfused
    kernels where the recipe's kernels are not the op's fused one."""
    from simulator.timing import EAGER_HOST_PARAMS, eager_recipe

    det = cost.details
    name, calls, source = eager_recipe(op, cost, device)
    out = [f"  eager recipe {name}: {len(calls)} ATen call{'s' if len(calls) > 1 else ''} "
           f"({', '.join(c.name for c in calls)}); {source}"]
    counts = (sum(c.python for c in calls), sum(c.outputs for c in calls),
              sum(c.kernels for c in calls))
    terms = []
    for (pname, _), n in zip(EAGER_HOST_PARAMS, counts):
        v = float(param_source(device, pname)[0] or 0.0)
        terms.append(f"{n} x {pname} {q(v, 's')}")
    out.append(f"  host per op: {' + '.join(terms)} = {q(float(det.get('host_s', 0.0)), 's')}")
    if "eager_unfused_s" in det:
        out.append(f"  device: the {sum(1 for c in calls if c.kernels)} kernels run unfused, "
                   f"each reading and writing its own tensor with its own launch: "
                   f"{q(float(det['eager_unfused_s']), 's')} of kernels, a "
                   f"{q(float(det['eager_span_s']), 's')} span as the host issues them (vs "
                   f"{q(float(det['eager_fused_s']), 's')} for the fused kernel under stream); "
                   f"the first may start {q(float(det.get('host_lead_s', 0.0)), 's')} before "
                   f"the host has issued the last")
    return out


def _efficiencies(op: Op, cost: OpCost, device: Device) -> list[str]:
    """The efficiency factors the mapper applied, each with its value and source."""
    det = cost.details
    cls = cost.compute_class
    lines: list[str] = []
    gemm_like = op.kind in ("matmul", "conv2d") and det.get("kernel") != "depthwise"
    if op.kind == "attention" and device.family == "gpu":
        v, src = param_source(device, "attention_efficiency")
        lines.append(f"attention_efficiency = {_g(float(det.get('efficiency', v)))}: the fused "
                     f"kernel's share of matrix peak; {src}")
    elif gemm_like or op.kind == "attention":
        v, src = param_source(device, "compute_efficiency", cls)
        if v is None:
            v, src = 1.0, (f"none set for {cls}: 1.0 (the fold model already counts fill, "
                           "drain and ragged edges)")
        used = float(det.get("efficiency", v))
        extra = ""
        if device.family == "cpu" and used != float(v):
            extra = (f" (x emulation_penalty {_g(param_source(device, 'emulation_penalty')[0])}"
                     f": {op.dtype.name} is converted to {cls})")
        lines.append(f"compute_efficiency[{cls}] = {_g(used)}{extra}: the fraction of peak a "
                     f"large, well-fed GEMM sustains; {src}")
    if not gemm_like and op.kind != "attention" and (op.flops().vector or op.flops().special):
        v, src = param_source(device, "vector_efficiency")
        lines.append(f"vector_efficiency = {_g(float(v))}: fraction of the vector units' peak "
                     f"a pointwise kernel sustains; {src}")
    if op.kind != "collective":
        v, src = param_source(device, "bandwidth_efficiency")
        lines.append(f"bandwidth_efficiency = {_g(float(v))}: achievable fraction of each memory"
                     f" level's bandwidth; {src}")
    kinds = device.params.get("kind_efficiency") or {}
    if op.kind in kinds:
        lines.append(f"kind_efficiency[{op.kind}] = {_g(float(kinds[op.kind]))}: busy time "
                     f"divided by it; the spec of {device.name} sets params.kind_efficiency")
    if op.kind == "collective" and det.get("protocol"):
        v, src = param_source(device, "nvlink_efficiency")
        lines.append(f"nvlink_efficiency = {_g(float(v))}: fraction of the NVLink line rate "
                     f"NCCL moves as data; {src}")
    return lines


def _family_lines(op: Op, cost: OpCost, device: Device, rf: Roofline) -> list[str]:
    """The family's own facts: how the modelled compute time differs from FLOPs / peak."""
    det = cost.details
    lines: list[str] = []
    eff = det.get("efficiency")
    if "tile" in det and "waves" in det:  # GPU GEMM or fused attention
        tm, tn = det["tile"]
        what = (f"the queries are cut into {tm}-row blocks per (batch, head)"
                if op.kind == "attention" else f"C is cut into {tm}x{tn} thread-block tiles")
        split = int(det.get("split_k", 1) or 1)
        blocks = det["tiles"] * split
        lines.append(f"GPU: {what}: {det['tiles']} tiles"
                     + (f" x {split} K-splits = {blocks} blocks" if split > 1 else "")
                     + f" over {det['sms']} SMs = {blocks / det['sms']:.3g} -> {det['waves']} "
                     f"wave{'s' if det['waves'] != 1 else ''} ({det['wave_efficiency']:.1%} "
                     f"wave efficiency; the rest is SMs the last wave leaves idle)")
        if eff:
            ideal = rf.flops / (rf.peak * float(eff)) if rf.peak else 0.0
            lines.append(f"compute time at the assumed efficiency: FLOPs / (peak x {_g(eff)}) ="
                         f" {_n(rf.flops)} / ({q(rf.peak, 'FLOP/s')} x {_g(eff)}) = "
                         f"{q(ideal, 's')}; with waves and padded tiles"
                         + (f" and the power cap's clock x{_g(float(det['clock_scale']))}"
                            if float(det.get("clock_scale", 1.0) or 1.0) < 1.0 else "")
                         + f" the model gives {q(cost.compute_s, 's')}"
                         + (f" ({cost.compute_s / ideal:.3g}x)" if ideal else ""))
    elif "folds" in det and "cycles_per_fold" in det:  # systolic or FPGA
        r, c = det["array"]
        clk = float(det.get("clock_hz") or 0.0)
        df = det.get("dataflow", "")
        if device.family == "fpga" and "mac_lanes" in det:
            lines.append(f"FPGA: {det['dsp_count']} DSP slices x dsp_utilization "
                         f"{_g(det['dsp_utilization'])} x {_g(det['macs_per_dsp'])} MAC per DSP "
                         f"= {det['mac_lanes']} MAC lanes -> {det['arrays']} engines of "
                         f"{r}x{c} PEs at {q(clk, 'Hz')}: engine peak {det['mac_lanes']} x 2 "
                         f"x {q(clk, 'Hz')} = {q(det['mac_lanes'] * 2 * clk, 'FLOP/s')} "
                         f"({det.get('fill_limit', 'design')})")
        lines.append(f"dataflow {df}: {_DATAFLOWS.get(df, df)}")
        lines.append(f"{det['arrays_used']} of {det['arrays']} arrays of {r}x{c} PEs used"
                     + (f", the GEMM split along {det['split']}"
                        if det.get("split") not in (None, "none") else ""))
        raw = float(det["folds"]) * float(det["cycles_per_fold"])
        cc = float(det["compute_cycles"])
        div = raw / cc if cc else 1.0
        lines.append(f"folds: {det['folds']} per array x {det['cycles_per_fold']} cycles per "
                     f"fold (the streamed rows plus {r + c - 2} cycles of fill and drain, "
                     f"R + C - 2 = {r} + {c} - 2) = {_n(raw)} cycles")
        lines.append(f"compute cycles = {_n(raw)} / {div:.4g} (MACs per PE x compute "
                     f"efficiency) = {cc:,.1f} cycles; at {q(clk, 'Hz')}: "
                     f"{q(cc / clk if clk else 0.0, 's')} (the model's compute time "
                     f"{q(cost.compute_s, 's')}); MAC utilisation "
                     f"{float(det.get('utilization', 0.0)):.1%}")
        ceff = param_source(device, "compute_efficiency", cost.compute_class)[0] or 1.0
        if rf.peak and rf.unit_kind == "matrix":
            ideal = rf.flops / (rf.peak * float(ceff))
            lines.append(f"with every PE busy it would take FLOPs / (peak x {_g(ceff)}) = "
                         f"{q(ideal, 's')}; the folds' fill and drain, ragged edges and idle "
                         f"arrays make it {q(cost.compute_s, 's')}"
                         + (f" ({cost.compute_s / ideal:.3g}x)" if ideal else ""))
        if clk:
            lines.append(f"DRAM: {q(cost.dram_bytes, 'B')} in "
                         f"{float(det.get('memory_cycles', 0.0)):,.1f} cycles = "
                         f"{q(cost.memory_s, 's')} at {q(device.dram.bandwidth_Bps, 'B/s')} x "
                         f"bandwidth_efficiency; double buffered loads overlap the folds")
    elif "gemms" in det and "softmax_s" in det:  # systolic/FPGA attention: two GEMMs
        clk = float(det.get("clock_hz") or 0.0)
        df = det.get("dataflow", "")
        lines.append(f"dataflow {df}: {_DATAFLOWS.get(df, df)}")
        for name, g in det["gemms"].items():
            r, c = g["array"]
            raw = float(g["folds"]) * float(g["cycles_per_fold"])
            gc = float(g["compute_cycles"])
            lines.append(f"{'QK^T' if name == 'qk' else 'PV'}: {g['folds']} folds x "
                         f"{g['cycles_per_fold']} cycles per fold ({r + c - 2} of them fill and "
                         f"drain, R + C - 2) on {g['arrays_used']} of {g['arrays']} arrays = "
                         f"{_n(raw)} cycles / {raw / gc if gc else 1.0:.4g} (MACs per PE x "
                         f"compute efficiency) = {gc:,.1f} compute cycles")
        cc = float(det["compute_cycles"])
        soft = float(det["softmax_s"])
        lines.append(f"compute time = {cc:,.1f} cycles / {q(clk, 'Hz')} + softmax on the "
                     f"vector unit {q(soft, 's')} = {q(cc / clk + soft if clk else soft, 's')}"
                     f" (the model's {q(cost.compute_s, 's')}); MAC utilisation "
                     f"{float(det.get('utilization', 0.0)):.1%}")
    elif "threads" in det and "blocking" in det:  # CPU GEMM
        b = det["blocking"]
        lines.append(f"CPU: {det['threads']} threads on {det['cores']} cores, cache blocks "
                     f"mc x kc x nc = {b['mc']} x {b['kc']} x {b['nc']}; operands resident in "
                     f"{det.get('resident') or 'DRAM'}")
        if eff:
            ideal = rf.flops / (rf.peak * float(eff)) if rf.peak else 0.0
            lines.append(f"compute time at the assumed efficiency: FLOPs / (peak x {_g(eff)}) ="
                         f" {q(ideal, 's')}; the model gives {q(cost.compute_s, 's')} (the peak"
                         f" of the {det['threads']} threads used, packing and epilogue)")
    elif op.kind == "collective":
        link = device.link
        a, b = float(det.get("alpha_s", 0.0)), float(det.get("beta_s", 0.0))
        sent = float(det.get("bytes_sent", 0.0))
        algo = det.get("algorithm", "?")
        model = (f"NCCL {algo}/{det['protocol']} (NCCL's algorithms, protocols and constants, "
                 f"its {_nccl_row(device)} tables; simulator.network.nccl)"
                 if det.get("protocol") else f"alpha-beta, {algo} algorithm")
        lines.append(f"collective model: {model} on {det.get('link', '?')}"
                     + (f" ({q(link.bandwidth_Bps, 'B/s')} per direction, "
                        f"{q(link.latency_s, 's')} per hop)" if link else ""))
        for ph in det.get("phases", ()):
            lines.append(f"  {ph}")
        steps = sum(int(n) for ph in det.get("phases", ())
                    for n in re.findall(r"(\d+) steps", ph))
        if steps:
            lines.append(f"alpha (latency) = {steps} step{'s' if steps != 1 else ''} x {q(a / steps, 's')} per step = "
                         f"{q(a, 's')}")
        else:
            lines.append(f"alpha (latency) = {q(a, 's')}")
        if b > 0:
            per = (f" ({steps} step{'s' if steps != 1 else ''} x {q(sent / steps, 'B')} per "
                   "step)" if steps else "")
            lines.append(f"beta (bandwidth) = bytes each rank sends{per} / effective bandwidth = "
                         f"{q(sent, 'B')} / {q(sent / b, 'B/s')} = {q(b, 's')}")
        lines.append(f"time = alpha + beta = {q(a, 's')} + {q(b, 's')} = {q(a + b, 's')}; the "
                     f"reduction arithmetic ({q(cost.compute_s, 's')}) overlaps it")
    elif eff is None and op.kind in ("elementwise", "norm", "softmax", "pool", "embedding",
                                     "memcpy") or det.get("kernel") == "depthwise":
        bw = float(param_source(device, "bandwidth_efficiency")[0])
        t = cost.dram_bytes / (device.dram.bandwidth_Bps * bw) if cost.dram_bytes else 0.0
        lines.append(f"streaming kernel: DRAM bytes / achievable bandwidth = "
                     f"{q(cost.dram_bytes, 'B')} / ({q(device.dram.bandwidth_Bps, 'B/s')} x "
                     f"{_g(bw)}) = {q(t, 's')}; the model's memory time {q(cost.memory_s, 's')}"
                     + (" (adds latency chains or on-chip levels, see the notes)"
                        if abs(cost.memory_s - t) > 1e-3 * max(t, 1e-30) else ""))
    return lines


def _memory_binding(cost: OpCost, device: Device) -> str:
    """Which memory level sets the modelled memory time."""
    det = cost.details
    bw = float(param_source(device, "bandwidth_efficiency")[0])
    dram_t = cost.dram_bytes / (device.dram.bandwidth_Bps * bw) if cost.dram_bytes else 0.0
    if _is_collective(cost):
        return f"the link {det.get('link', '?')} (no memory level: the data crosses the link)"
    if cost.dram_bytes <= 0:
        lvl = roofline_level(cost, device)
        return (f"{lvl.name}: the working set is served on chip ({q(lvl.bandwidth_Bps, 'B/s')}"
                f" peak), no DRAM traffic")
    rel = abs(cost.memory_s - dram_t) / max(cost.memory_s, 1e-30)
    if rel < 1e-3:
        return (f"{device.dram.name}: {q(cost.dram_bytes, 'B')} / "
                f"{q(device.dram.bandwidth_Bps * bw, 'B/s')} achievable = {q(dram_t, 's')}")
    red = float(det.get("reduce_s") or 0.0)
    sbw = float(det.get("stream_bw") or 0.0)
    if sbw > 0 and abs(cost.dram_bytes / sbw + red - cost.memory_s) <= 1e-3 * cost.memory_s:
        return (f"{device.dram.name}: {q(cost.dram_bytes, 'B')} at the "
                f"{q(sbw, 'B/s')} the kernel's loads in flight sustain (Little's law: "
                f"{det.get('stages', '?')} pipeline stages per SM against the DRAM latency; "
                f"{q(device.dram.bandwidth_Bps * bw, 'B/s')} achievable) = "
                f"{q(cost.dram_bytes / sbw, 's')}"
                + (f", plus {q(red, 's')} of split-K reduction" if red else ""))
    if "feed_s" in det and float(det["feed_s"]) + red >= dram_t:
        l2 = str(device.params.get("l2_level", "l2"))
        return (f"{l2}: the operand feed from the {l2} into the SMs takes "
                f"{q(float(det['feed_s']), 's')}, longer than {device.dram.name} alone "
                f"({q(cost.dram_bytes, 'B')} at {q(device.dram.bandwidth_Bps * bw, 'B/s')} "
                f"achievable = {q(dram_t, 's')})")
    why = ("the wait of dependent loads on memory latency" if "chain_s" in det else
           "cache levels, threads and write-allocate" if device.family == "cpu" else
           "other levels and reductions")
    return (f"{device.dram.name} and more: {device.dram.name} alone would take {q(dram_t, 's')} "
            f"({q(cost.dram_bytes, 'B')} at {q(device.dram.bandwidth_Bps * bw, 'B/s')}); "
            f"the model's {q(cost.memory_s, 's')} adds {why} (see the notes)")


def _is_collective(cost: OpCost) -> bool:
    """A collective's cost carries its alpha-beta terms."""
    return "alpha_s" in cost.details


#: fixed or serial time terms the mappers put in ``details`` (seconds), with their words
_TIME_TERMS = (
    ("launch_s", "launch and inter-kernel gap (launch_overhead)"),
    ("startup_s", "kernel startup (instruction and parameter fetch)"),
    ("fill_s", "pipeline fill and drain (first load's and last store's latency)"),
    ("wave_overhead_s", "per-wave pipeline fill and output write"),
    ("reduce_s", "split-K reduction"),
)


def _match(items: list[tuple[str, float]], target: float,
           rel: float = 1e-3) -> list[tuple[str, float]] | None:
    """The subset of ``items`` (fewest first) whose times add up to ``target`` within
    ``rel``."""
    from itertools import combinations

    tol = rel * max(abs(target), 1e-12)
    for n in range(1, len(items) + 1):
        for combo in combinations(items, n):
            if abs(sum(v for _, v in combo) - target) <= tol:
                return list(combo)
    return None


def _time_terms(cost: OpCost, device: Device | None = None) -> list[tuple[str, float]]:
    """The mapper's time terms from ``details``; where it did not record its launch or (on
    a GPU) its pipeline fill, the spec's values stand in for them."""
    det = cost.details
    out = [(label, float(det.get(k) or 0.0)) for k, label in _TIME_TERMS]
    if device is not None:
        v, src = param_source(device, "launch_overhead")
        word = "launch and inter-kernel gap" if device.family == "gpu" else "dispatch per op"
        out[0] = (f"{word} (launch_overhead; {src})",
                  out[0][1] if "launch_s" in det else float(v or 0.0))
        if det.get("timing") in ("kernel", "graph"):  # simulator.timing replaced the launch
            out[0] = ("graph node gap (graph_launch_gap, see 'Which time this is')",
                      float(det.get("graph_gap_s", 0.0)))
        if "fill_s" not in det and device.family == "gpu":
            l2 = device.level(str(device.params.get("l2_level", "l2")))
            fill = device.params.get("pipeline_latency")
            out[2] = (out[2][0], float(fill) if fill is not None else device.dram.latency_s
                      + (l2.latency_s if l2 is not None and l2 is not device.dram else 0.0))
    clk = float(det.get("clock_hz") or 0.0)
    if clk and float(det.get("stall_cycles") or 0.0) > 0:
        out.append(("DRAM stall cycles: the first fold's loads are not hidden",
                    float(det["stall_cycles"]) / clk))
    return [(label, v) for label, v in out if v > 0]


def _fixed_parts(cost: OpCost, device: Device | None = None
                 ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """``(the terms that make up overhead_s, the others)`` among the mapper's time terms
    (launch, startup, fill, per-wave overhead, reduction, stalls); ``([], all)`` when no
    subset of them adds up to the overhead."""
    terms = _time_terms(cost, device)
    fixed_keys = [t for t in terms if not t[0].startswith(("per-wave", "split-K", "DRAM stall"))]
    inside = _match(fixed_keys, cost.overhead_s) if cost.overhead_s > 0 else []
    if inside is None:
        return [], terms
    return inside, [t for t in terms if t not in inside]


def _fixed_lines(cost: OpCost, device: Device) -> list[str]:
    parts, _ = _fixed_parts(cost, device)
    rest = cost.overhead_s - sum(v for _, v in parts)
    if rest > 1e-15:
        v, src = param_source(device, "launch_overhead")
        if v is not None and abs(float(v) - rest) <= 1e-12 + 1e-6 * rest:
            label = f"launch_overhead (dispatch per op); {src}"
        else:
            label = "other fixed cost (see the mapper's notes)"
        parts.append((label, rest))
    if not parts:
        return ["fixed costs: none (0 s)"]
    lines = [f"fixed costs = {' + '.join(q(v, 's') for _, v in parts)}"
             + (f" = {q(cost.overhead_s, 's')}:" if len(parts) > 1 else ":")]
    lines += [f"  {q(v, 's')}: {label}" for label, v in parts]
    if "folds" in cost.details:
        lines.append("  (the array's fill and drain is inside every fold's cycles, in 6)")
    return lines


def op_lines(op: Op, cost: OpCost, system: System) -> list[str]:
    """The whole explanation of one op on ``system``'s device, as lines of text.

    Examples
    --------
    >>> from simulator.api import predict_op, resolve_system
    >>> from workloads.ops import MatMul
    >>> op, s = MatMul(m=64, n=64, k=64, dtype="bf16"), resolve_system("h100-sxm")
    >>> lines = op_lines(op, predict_op(op, s), s)
    >>> print(lines[3].strip()[:67])
    FLOPs = 2 x M x N x K x batch = 2 x 64 x 64 x 64 x 1 = 524,288 FLOP
    >>> [x.strip()[:22] for x in lines if "ridge point =" in x]
    ['ridge point = peak / b']
    """
    dev = system.device
    rf = roofline(op, cost, dev)
    out = [f"Explain: {op.describe()} on {dev.name} ({dev.family} family)", "",
           "1. The work"]
    out += [f"  {x}" for x in flop_lines(op)]
    out += ["", "2. The compulsory bytes (every tensor read once, every result written once)"]
    for name, formula, b in tensor_bytes(op):
        out.append(f"  {name}: {formula + ' = ' if formula else ''}{_n(b)} B")
    out.append(f"  total = {_n(rf.bytes)} B ({q(rf.bytes, 'B')})")
    coll = op.kind == "collective"
    out += ["", "3. Arithmetic intensity vs the ridge point"]
    if coll:
        out.append("  a collective is bound by its link, not by the roofline of one device "
                   "(see 6)")
    else:
        out.append(f"  arithmetic intensity = FLOPs / bytes = {_n(rf.flops)} / {_n(rf.bytes)} = "
                   f"{_g(rf.intensity)} FLOP/B")
        sp = (f" (x{_g(rf.sparse_speedup)} 2:4 sparse)" if rf.sparse_speedup != 1.0 else "")
        out.append(f"  peak {rf.compute_class} rate of the {rf.unit_kind} units ({rf.unit}) = "
                   f"{q(rf.peak, 'FLOP/s')}{sp}; {rf.level.name} bandwidth = "
                   f"{q(rf.bandwidth, 'B/s')} ("
                   + ("the level the compulsory bytes come from)" if len(rf.shares) == 1 else
                      "the level that binds: the compulsory bytes come from "
                      + " and ".join(f"{lvl.name} ({_n(b)} B)" for lvl, b in rf.shares)
                      + ")"))
        out.append(f"  ridge point = peak / bandwidth = {q(rf.peak, 'FLOP/s')} / "
                   f"{q(rf.bandwidth, 'B/s')} = {_g(rf.ridge)} FLOP/B")
        cmp_ = ">=" if rf.intensity >= rf.ridge else "<"
        out.append(f"  intensity {_g(rf.intensity)} {cmp_} ridge {_g(rf.ridge)}: by the "
                   f"roofline alone it is {'compute' if cmp_ == '>=' else 'memory'}-bound")
        out += ["", "4. The two lower bounds (at peak, nothing lost)"]
        out.append(f"  compute bound = FLOPs / peak = {_n(rf.flops)} / {q(rf.peak, 'FLOP/s')} = "
                   f"{q(rf.compute_bound_s, 's')}")
        if len(rf.shares) == 1:
            out.append(f"  memory bound = bytes / bandwidth = {_n(rf.bytes)} / "
                       f"{q(rf.bandwidth, 'B/s')} = {q(rf.memory_bound_s, 's')}")
        else:
            out.append("  memory bound = the slower level's share = max("
                       + ", ".join(f"{_n(b)} / {q(lvl.bandwidth_Bps, 'B/s')}"
                                   for lvl, b in rf.shares)
                       + f") = {q(rf.memory_bound_s, 's')}")
        out.append(f"  the larger bound: {rf.side} ({q(rf.bound_s, 's')})")
    out += ["", "5. Efficiencies assumed (value; where it comes from)"]
    out += [f"  {x}" for x in _efficiencies(op, cost, dev)] or ["  none"]
    out += ["", "6. How the mapper models it"]
    out += [f"  {x}" for x in _family_lines(op, cost, dev, rf)]
    if coll:
        out.append(f"  communication time = {q(cost.memory_s, 's')}")
    else:
        out.append(f"  compute time {q(cost.compute_s, 's')} on {rf.unit} ({rf.unit_kind} units,"
                   f" {cost.compute_class}); memory time {q(cost.memory_s, 's')}, set by "
                   f"{_memory_binding(cost, dev)}")
        top = "compute" if cost.compute_s >= cost.memory_s else "memory"
        out.append(f"  the larger: {top} time; the model calls the op {cost.bound}-bound"
                   + (" (the fixed costs below exceed its busy time)"
                      if cost.bound == "latency" else ""))
    out += ["", "7. Fixed costs"]
    out += [f"  {x}" for x in _fixed_lines(cost, dev)]
    timing = timing_lines(op, cost, dev)
    if timing:
        out += ["", "Which time this is"] + [f"  {x}" for x in timing]
    out += ["", "8. Adding up"]
    busy = max(cost.compute_s, cost.memory_s)
    extra = cost.latency_s - busy - cost.overhead_s
    terms = ([f"max(reduction {q(cost.compute_s, 's')}, communication "
              f"{q(cost.memory_s, 's')})"] if coll else
             [f"max(compute {q(cost.compute_s, 's')}, memory {q(cost.memory_s, 's')})"])
    if cost.overhead_s or not coll:
        terms.append(f"fixed {q(cost.overhead_s, 's')}")
    if abs(extra) > 1e-9 * max(cost.latency_s, 1e-30):
        matched = _match(_fixed_parts(cost, dev)[1], extra, 0.01) if extra > 0 else None
        why = (" + ".join(label.split(" (")[0] for label, _ in matched) if matched else
               "not overlapped with the rest, see the notes")
        terms.append(f"{'serial ' if extra > 0 else ''}{q(extra, 's')} ({why})")
    out.append(f"  predicted = {' + '.join(terms)} = {q(cost.latency_s, 's')}")
    if not coll:
        holds = cost.latency_s >= rf.bound_s * (1 - 1e-9)
        out.append(f"  check: predicted {q(cost.latency_s, 's')} >= max(compute bound "
                   f"{q(rf.compute_bound_s, 's')}, memory bound {q(rf.memory_bound_s, 's')}) = "
                   f"{q(rf.bound_s, 's')}: "
                   + (f"holds ({cost.latency_s / rf.bound_s:.3g}x the roofline)"
                      if holds and rf.bound_s > 0 else "holds" if holds else
                      "does NOT hold (an efficiency factor above 1, e.g. kind_efficiency, or a "
                      "calibration lets it beat the peak)"))
        out.append(f"  achieved {cost.utilization:.1%} of the {cost.compute_class} peak the "
                   "mapper measures against")
    if cost.notes:
        out += ["", "The mapper's own notes"] + [f"  - {n}" for n in cost.notes]
    return out


# -- a run ----------------------------------------------------------------------------------
def _bound_shares(r: Result) -> dict[str, float]:
    """Share of summed op time by each op's bound (compute, memory, communication, latency)."""
    agg: dict[str, float] = {}
    for rec in r.records:
        agg[rec.bound] = agg.get(rec.bound, 0.0) + rec.latency_s
    tot = sum(agg.values()) or 1.0
    return {k: v / tot for k, v in sorted(agg.items(), key=lambda kv: -kv[1])}


def cost_lines(r: Result, system: System | None = None,
               options: CostOptions | None = None) -> list[str]:
    """The dollar arithmetic behind ``r.cost.usd``."""
    from simulator.cost.dollars import J_PER_KWH, CostOptions

    o = options or CostOptions()
    c = r.cost
    if c.mode == "unpriced":
        return ["cost: unknown, the spec gives no price (cost.price or cost.hourly)"]
    if c.mode == "cloud":
        return [f"cloud: ${c.usd_per_hour:,.4g} per hour x {q(r.latency_s, 's')} / 3600 s per "
                f"hour = ${c.usd:.4g} (electricity is in the hourly price)"]
    lines = []
    if system is not None:
        from simulator.cost.dollars import purchase_price

        price = purchase_price(system)
        life = (system.pricing.lifetime_s if system.pricing and system.pricing.price_usd
                else system.device.pricing.lifetime_s)
        if price:
            lines.append(f"TCO: price ${price:,.0f} / (lifetime {life / 86400 / 365:.4g} years"
                         f" = {life:,.0f} s x utilisation {o.utilization:g}) = "
                         f"${price / (life * o.utilization):.4g} per second")
    lines.append(f"hardware: ${c.usd_per_hour / 3600:.4g} per second x {q(r.latency_s, 's')} = "
                 f"${c.hardware_usd:.4g}")
    lines.append(f"electricity: {q(r.energy_j, 'J')} / {J_PER_KWH:.4g} J per kWh x PUE "
                 f"{o.pue:g} x ${o.usd_per_kwh:g} per kWh = ${c.electricity_usd:.4g}")
    lines.append(f"total = ${c.hardware_usd:.4g} + ${c.electricity_usd:.4g} = ${c.usd:.4g}")
    return lines


def result_lines(r: Result, system: System | None = None, top: int = 5,
                 options: CostOptions | None = None) -> list[str]:
    """The explanation of a run as lines of text; ``system`` (the one simulated) adds the TDP
    and the purchase price, ``options`` the cost options used (defaults otherwise)."""
    out = ["Why, in numbers:"]
    for w in r.warnings:
        out.append(f"- note: {w}")
    busy = sum(rec.latency_s for rec in r.records)
    achieved = r.flops / r.latency_s if r.latency_s > 0 else 0.0
    out += ["", "1. Totals",
            f"  latency {q(r.latency_s, 's')} for {r.meta.get('graph_ops', len(r.records))} op "
            f"instances ({r.meta.get('unique_ops', '?')} distinct shapes) on {r.devices} "
            f"device(s); summed op time {q(busy, 's')}"
            + (" (more than the latency: ops overlap on streams and devices)"
               if busy > r.latency_s * 1.0001 else ""),
            f"  work {_n(r.flops)} FLOP ({q(r.flops, 'FLOP')}) / {q(r.latency_s, 's')} = "
            f"{q(achieved, 'FLOP/s')} = {r.peak_fraction:.1%} of the system's peak "
            f"{q(r.peak_flops, 'FLOP/s')}"]
    tm = r.meta.get("timing")
    if isinstance(tm, Mapping):
        out += ["", f"Timing: {tm['mode']}: {tm['meaning']}"]
        for row in tm.get("overheads", ()):
            v = row["value_s"]
            out.append(f"  {row['name']} = {q(v, 's') if v is not None else 'none'}: "
                       f"{row['applies']}; {row['source']}")
        used = {str(c) for rec in r.records if (c := rec.details.get("eager_class"))}
        if "recipe_set" in tm:
            out.append(f"  eager recipes: {tm['recipe_set']} ({tm['recipe_set_meaning']}; "
                       "params.eager_recipes)")
        for row in tm.get("recipes", ()):
            if row["class"] in used:
                out.append(f"  eager recipe {row['class']}: {row['python_calls']} Python "
                           f"call(s), {row['kernels']} kernel(s), {row['outputs']} output(s) "
                           f"per op; {row['source']}")
        if "host_s" in tm:
            out.append(f"  host of device {tm['device']}: {q(tm['host_s'], 's')} of dispatch vs "
                       f"{q(tm['device_busy_s'], 's')} of device work; the device waited "
                       f"{q(tm['host_wait_s'], 's')} for it ({tm['host_wait_fraction']:.1%} of "
                       f"the latency); {tm['host_bound_ops']} op instances dispatch longer "
                       f"than they run: "
                       + ("HOST-BOUND, the host is the slower stage" if tm["host_bound"]
                          else "device-bound, the host keeps ahead"))
    out += ["", "2. Where the time goes (share of summed op time, by what binds each op)"]
    shares = _bound_shares(r)
    words = {"compute": "compute-bound (matrix/vector units)",
             "memory": "memory-bound (bytes from memory)",
             "communication": "communication-bound (links)",
             "latency": "latency-bound (fixed costs: launches, hops)"}
    for k, v in shares.items():
        out.append(f"  {v:6.1%} {words.get(k, k)}")
    out += ["", f"3. The op shapes that dominate (top {top})"]
    groups = r.top_op_groups(top)
    for i, g in enumerate(groups, 1):
        name = g["example"] if g["count"] == 1 else f"{g['example']} (x{g['count']})"
        out.append(f"  {i}. {name}: {g['count']} x {q(g['each_s'], 's')} = "
                   f"{q(g['latency_s'], 's')}, {g['share']:.1%} of op time, {g['bound']}-bound")
    out.append(f"  these {len(groups)} shapes: {sum(g['share'] for g in groups):.1%} of op time")
    out += ["", "4. Longest instance of each op class"]
    for k in r.by_kind():
        rec = max((x for x in r.records if x.kind == k["kind"]), key=lambda x: x.latency_s)
        out.append(f"- {k['kind']}: {k['share']:.0%} of the time, mostly {k['bound']}-bound. "
                   f"Longest: {rec.name}, {q(rec.latency_s, 's')}, {rec.describe}")
        out += [f"    {n}" for n in rec.notes]
    e = r.energy
    links = set(getattr(e, "links", ()) or ())
    mem = sum(v for k, v in e.memory_j.items() if k not in links)
    comm = sum(v for k, v in e.memory_j.items() if k in links)
    parts = [("compute", e.compute_j), ("memory", mem)] + \
        ([("communication", comm)] if links else []) + [("static", e.static_j)]
    out += ["", "5. Energy and power",
            f"  compute {q(e.compute_j, 'J')} + memory {q(mem, 'J')} ("
            + ", ".join(f"{k} {q(v, 'J')}" for k, v in e.memory_j.items() if k not in links)
            + ")" + (f" + communication {q(comm, 'J')}" if links else "")
            + f" + static {q(e.static_j, 'J')}"
            + (f" (of which host/switches/fans {q(e.system_j, 'J')})" if e.system_j else "")
            + f" = {q(r.energy_j, 'J')}"]
    if hasattr(e, "parts"):  # the finer split of --breakdown (idle, busy floor, ...)
        parts = [(k.removesuffix("_j").replace("_", " ").replace("memory.", "memory "), v)
                 for k, v in e.parts().items() if v]
    if r.energy_j:
        out.append("  split: " + ", ".join(f"{k} {v / r.energy_j:.1%}" for k, v in parts))
    pw = f"  average power = {q(r.energy_j, 'J')} / {q(r.latency_s, 's')} = {_w(r.avg_power_w)}"
    if system is not None and system.tdp_w:
        pw += (f" vs TDP {_w(system.tdp_w)} ({r.avg_power_w / system.tdp_w:.0%}"
               f"{', above it: the part would throttle' if r.avg_power_w > system.tdp_w else ''})")
    out.append(pw)
    out += ["", "6. Cost"] + [f"  {x}" for x in cost_lines(r, system, options)]
    if r.cost.mode != "unpriced":
        if r.usd_per_million_tokens:
            out.append(f"  per 1M tokens: ${r.cost.usd:.4g} / {_n(r.tokens)} tokens x 1e6 = "
                       f"${r.usd_per_million_tokens:.4g}")
        elif r.samples:
            out.append(f"  per sample: ${r.cost.usd:.4g} / {_g(r.samples)} = "
                       f"${r.usd_per_sample:.4g}")
    return out
