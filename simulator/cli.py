"""``hwsim`` command line: a thin argparse layer over :mod:`simulator.api`.

Errors a user can act on (:class:`~simulator.errors.HwsimError`) print as ``error: ...`` on
stderr with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simulator.cli_format import add_timing  # noqa: F401  (used below)
from simulator.cli_format import dumps as _dumps
from simulator.cli_format import table as _table
from simulator.errors import HwsimError, WorkloadError
from simulator.units import format_quantity as fq

DEFAULT_RUN = {"workload": "llama2-7b", "arch": "h100-sxm", "phase": "decode", "batch": 8,
               "context": 2048}
#: parts ``hwsim compare`` uses without --arch: one of each family (GPU, TPU, FPGA, ASIC, CPU)
DEFAULT_COMPARE_ARCHS = "a100-sxm-80gb,tpu-v5e,alveo-u280,eyeriss,cpu-host"
#: largest integer a size option or a JSONL field accepts (exact as a float; 9.0e15)
MAX_INT = 2**53


# -- formatting helpers ----------------------------------------------------------------------
def _t(x: float) -> str:
    return fq(x, "s")


def _dump(obj: Any) -> None:
    print(_dumps(obj))


def _check_out(path: str | Path, option: str, *, directory: bool = False,
               make_parents: bool = False) -> None:
    """Fail fast, in one line, if ``path`` cannot be written: before the long work starts.

    A file needs its folder to exist (unless the writer creates parents, ``make_parents``); a
    ``directory`` (created with its parents) needs its nearest existing ancestor. Either way a
    temporary file is created and removed there to prove it is writable.
    """
    p = Path(path)
    if directory:
        if p.exists() and not p.is_dir():
            raise HwsimError(f"{option} {path}: exists and is not a folder")
    elif p.is_dir():
        raise HwsimError(f"{option} {path}: is a folder, expected a file path")
    folder = p if directory else (p.parent if str(p.parent) else Path("."))
    if directory or make_parents:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.exists():
        raise HwsimError(f"{option} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise HwsimError(f"{option} {path}: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise HwsimError(f"{option} {path}: cannot write in {folder} "
                         f"({e.strerror or e})") from None
    if p.is_file() and not os.access(p, os.W_OK):
        raise HwsimError(f"{option} {path}: file is not writable")


# -- commands --------------------------------------------------------------------------------
def cmd_archs(a: argparse.Namespace) -> int:
    from simulator.arch.loader import list_arch_files, load_arch
    from simulator.cost.dollars import system_hourly_rate

    rows, out = [], []
    for name in list_arch_files():
        s = load_arch(name)
        d = s.device
        peaks = {k: d.native_peak(k, "matrix") or d.native_peak(k, "vector")
                 for k in ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")}
        hourly = system_hourly_rate(s)
        price = (s.pricing.price_usd * s.nodes if s.pricing and s.pricing.price_usd else
                 (d.pricing.price_usd or 0) * s.count)
        info = {"name": name, "kind": s.kind, "family": d.family, "devices": s.count,
                "peak_flops": {k: v * s.count for k, v in peaks.items() if v},
                "memory_bytes": s.memory_capacity_bytes,
                "memory_bandwidth_Bps": d.dram.bandwidth_Bps * s.count,
                "tdp_w": s.tdp_w, "price_usd": price or None, "usd_per_hour": hourly,
                "description": s.description or d.description}
        out.append(info)
        pf = info["peak_flops"]

        def pk(k: str, pf: dict = pf) -> str:
            return f"{pf[k] / 1e12:.4g}" if k in pf else "-"

        rows.append([name, s.kind if s.count == 1 else f"{s.count}x {d.kind}", pk("fp32"),
                     pk("bf16"), pk("fp8"), pk("int8"), fq(s.memory_capacity_bytes, "B"),
                     fq(d.dram.bandwidth_Bps * s.count, "B/s"), f"{s.tdp_w:.4g} W",
                     f"${price:,.0f}" if price else "-",
                     f"${hourly:.2f}" if hourly else "-"])
    if a.json:
        _dump(out)
    else:
        print(_table(rows, ["part", "kind", "fp32 TF", "bf16 TF", "fp8 TF", "int8 TOPS",
                            "memory", "mem BW", "TDP", "price", "$/hour"]))
        print("\nPeak rates are dense, derived from the spec (units x FLOP/cycle x clock).")
    return 0


def cmd_workloads(a: argparse.Namespace) -> int:
    from workloads.zoo import list_models

    models = list_models()
    if a.json:
        _dump([{"name": m.name, "family": m.family, "params": m.params,
                "published_params": m.published_params, "description": m.description}
               for m in models])
        return 0
    rows = [[m.name, m.family, f"{m.params / 1e6:,.1f} M", m.description] for m in models]
    print(_table(rows, ["model", "family", "params", "description"]))
    return 0


def _run_options(a: argparse.Namespace):
    from simulator.api import RunOptions
    from simulator.cost.dollars import CostOptions

    return RunOptions(phase=a.phase, batch=a.batch, seq=a.seq, context=a.context, dtype=a.dtype,
                      weight_dtype=a.weight_dtype, kv_dtype=a.kv_dtype, tp=a.tp,
                      pp=getattr(a, "pp", None) or 1, dp=getattr(a, "dp", None),
                      microbatches=getattr(a, "microbatches", None) or 1,
                      ep=getattr(a, "ep", None) or 1,
                      recompute=getattr(a, "recompute", None) or "none",
                      image_size=a.image_size, dataflow=a.dataflow,
                      schedule=getattr(a, "schedule", None),
                      cost=CostOptions(mode=a.cost_mode), fuse=not a.no_fuse,
                      fuse_projections=not getattr(a, "unfuse_projections", False),
                      calibration=getattr(a, "calibration", None),
                      force_calibration=getattr(a, "force_calibration", False),
                      sparsity=getattr(a, "sparsity", None), timing=getattr(a, "timing", None),
                      seq_lens=getattr(a, "seq_lens", None))


def _print_result(r, a: argparse.Namespace) -> None:
    tp, unit = r.throughput
    fp = r.meta["footprint"]
    m = r.meta
    head = f"{r.workload} {r.phase} on {r.arch}"
    if r.devices > 1:
        head += f" ({m.get('devices_used', r.devices)} of {r.devices} devices: {m['layout']})"
    head += f": batch {r.batch}"
    if m.get("dp", 1) > 1:
        head += f" (split over {m['dp']} replicas)"
    if m.get("seq_lens"):  # variable-length samples, packed
        head += (f", {m['seq_lens']} lengths packed: {r.tokens:,.0f} tokens (max {m['seq']}, "
                 f"{r.batch * m['seq']:,} padded)")
    elif m.get("seq") and r.phase != "decode" and m.get("family") in ("decoder", "encoder"):
        head += f", seq {m['seq']}"
    if r.phase == "decode":
        head += f", context {m['context']}"
    head += f", {m['dtype']}, {r.timing} timing"
    if m.get("weight_dtype"):
        head += f" (weights {m['weight_dtype']})"
    if m.get("sparsity"):
        sp = m["sparsity"]
        head += (f", weights pruned {sp['pattern']} (density {sp['density']:.3g}, "
                 f"{sp['pruned_layers']} layers)")
    print(head)
    band = m.get("latency_band_rel")
    lat = _t(r.latency_s)
    if m.get("calibration"):
        lat += (f" ± {band:.0%} (calibrated with {m['calibration']}; 68% band of held-out errors)"
                if band == band else f" (calibrated with {m['calibration']}; no error band)")
    rows = [
        ["latency", lat],
        ["throughput", f"{tp:,.4g} {unit}"],
        ["energy", f"{fq(r.energy_j, 'J')}  ({fq(r.energy_per_sample_j, 'J')} per sample)"],
        ["average power", f"{r.avg_power_w:,.1f} W"],
        ["cost", ("unknown (no price in the spec" + ("; the chip's manufacturing cost is "
                                                      "under unit cost)" if m.get("silicon")
                                                      else ")")) if r.cost.mode == "unpriced" else
                 f"${r.cost.usd:.3g} ({r.cost.mode}, ${r.cost.usd_per_hour:.2f}/h)"
                 + (f"; ${r.usd_per_million_tokens:.3g} per 1M tokens"
                    if r.usd_per_million_tokens else f"; ${r.usd_per_sample:.3g} per sample")],
        ["memory / device", f"{fq(fp['total'], 'B')} of {fq(r.memory_capacity_bytes, 'B')} "
                            "(" + ", ".join(f"{label} {fq(fp[k], 'B')}" for k, label in
                                            (("weights", "weights"), ("kv_cache", "KV"),
                                             ("activations", "activations"),
                                             ("gradients", "gradients"),
                                             ("optimizer_state", "optimizer state"))
                                            if k in fp and (fp[k] or k == "weights")) + ")"],
        ["compute", f"{fq(r.flops, 'FLOP')} on all devices, {r.peak_fraction:.1%} of the "
                    "system's peak matrix rate"],
        ["ops", f"{r.meta['graph_ops']} instances, {r.meta['unique_ops']} distinct shapes"
                + (f", {r.meta['fused_ops']} pointwise ops fused into GEMM/conv epilogues"
                   if r.meta.get("fused_ops") else "")],
    ]
    tm = m.get("timing")
    if isinstance(tm, dict) and "host_s" in tm:
        rows.append(["host (eager)", f"{_t(tm['host_s'])} dispatch vs {_t(tm['device_busy_s'])} "
                                     f"device work; device waited {_t(tm['host_wait_s'])} "
                                     f"({tm['host_wait_fraction']:.0%}): "
                                     + ("HOST-BOUND" if tm["host_bound"] else "device-bound")])
    rows += _silicon_rows(m)
    print(_table(rows, ["metric", "value"]))
    print()
    kinds = r.by_kind()
    print(_table([[k["kind"], str(k["count"]), _t(k["latency_s"]), f"{k['share']:.1%}",
                   fq(k["energy_j"], "J"), k["bound"]] for k in kinds],
                 ["op class", "count", "time", "share", "energy", "bound"]))
    print()
    top = r.top_op_groups(a.top)
    print(_table([[g["example"] if g["count"] == 1 else f"{g['example']} (x{g['count']})",
                   g["kind"], _t(g["latency_s"]), f"{g['share']:.1%}", _t(g["each_s"]),
                   g["bound"], f"{g['utilization']:.0%}"] for g in top],
                 [f"top {len(top)} ops by total time", "kind", "time", "share", "each",
                  "bound", "util"]))
    if a.breakdown:
        e = r.energy
        print()
        lat = r.latency_s or 1.0
        rows = [[k.removesuffix("_j").replace("_", " ").replace("memory.", "memory: "),
                 fq(v, "J"), fq(v / lat, "W"), f"{v / (e.total_j or 1.0):.1%}"]
                for k, v in e.parts().items()]
        rows.append(["total", fq(e.total_j, "J"), fq(e.total_j / lat, "W"), "100.0%"])
        print(_table(rows, ["energy part", "energy", "avg power", "share"]))
        pw = m.get("power") or {}
        if pw:
            print(f"per device: {fq(r.device_power_w, 'W')} average, "
                  f"{fq(r.peak_power_w, 'W')} peak; limit {fq(pw['power_limit_w'], 'W')}, "
                  f"effective clock {pw['effective_clock_hz'] / 1e9:.3g} GHz of "
                  f"{pw['clock_hz'] / 1e9:.3g}")
    for w in r.warnings:
        print(f"warning: {w}", file=sys.stderr)


def _silicon_rows(meta) -> list[list[str]]:
    """Area, peak power and unit cost of a systolic part (simulator.cost.silicon)."""
    sil = meta.get("silicon")
    if not sil:
        note = meta.get("silicon_note")
        return [["chip area", note]] if note else []
    parts = sorted(sil["area_breakdown_mm2"].items(), key=lambda kv: -kv[1])
    return [
        ["chip area", f"{sil['area_mm2']:,.3g} mm^2 at {sil['node']} ("
                      + ", ".join(f"{k} {v:,.3g}" for k, v in parts[:4]) + ")"],
        ["chip power", f"{sil['power_w']:,.3g} W at peak (leakage {sil['leakage_w']:,.3g} W; "
                       f"spec TDP {sil['tdp_w']:,.3g} W)"],
        ["unit cost", f"${sil['unit_cost_usd']:,.2f} per chip (die ${sil['die_usd']:,.2f} at "
                      f"{sil['yield']:.1%} yield, package and test ${sil['package_usd']:,.2f}, "
                      f"memory ${sil['memory_usd']:,.2f}; manufacturing cost, no margin)"],
    ]


def _explain_result(r, a: argparse.Namespace | None = None) -> None:
    """Print the run's arithmetic (simulator.explain); ``a`` names the system simulated."""
    from simulator.explain import result_lines

    system = options = None
    if a is not None:
        from simulator.api import resolve_system
        from simulator.cost.dollars import CostOptions

        system = resolve_system(a.arch, a.set or ())
        options = CostOptions(mode=a.cost_mode)
    print()
    print("\n".join(result_lines(r, system, top=a.top if a is not None else 5,
                                 options=options)))


def cmd_run(a: argparse.Namespace) -> int:
    from simulator.api import simulate

    defaults = DEFAULT_RUN if a.workload is None else {"arch": "h100-sxm", "phase": "auto",
                                                        "batch": 1}
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.trace:
        _check_out(a.trace, "--trace")
    r = simulate(a.workload, a.arch, _run_options(a), overrides=a.set or ())
    if a.trace:
        with open(a.trace, "w", encoding="utf-8") as f:
            f.write(_dumps(r.to_chrome_trace()))
    if a.json:
        d = r.to_dict()
        if r.meta.get("sparsity"):
            d["sparsity"] = dict(r.meta["sparsity"])
        _dump(d)
    else:
        _print_result(r, a)
        if a.explain:
            _explain_result(r, a)
        if a.trace:
            print(f"\ntrace written to {a.trace} (open in https://ui.perfetto.dev)")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from simulator.api import simulate
    from simulator.errors import CapacityError

    if a.phase is None:
        a.phase = "auto"
    archs = [x.strip() for x in (a.arch or DEFAULT_COMPARE_ARCHS).split(",") if x.strip()]
    if not archs:
        raise HwsimError(f"--arch {a.arch!r}: expected a comma-separated list of parts")
    out, rows = [], []
    for arch in archs:
        try:
            r = simulate(a.workload, arch, _run_options(a), overrides=a.set or ())
        except (CapacityError, HwsimError) as e:
            out.append({"arch": arch, "error": str(e)})
            rows.append([arch, "does not run: " + str(e).split(";")[0][:90], "", "", "", "", ""])
            continue
        tp, unit = r.throughput
        d = r.to_dict(ops=False)
        if r.meta.get("sparsity"):
            d["sparsity"] = dict(r.meta["sparsity"])
        d["perf_per_watt"] = tp / r.avg_power_w if r.avg_power_w else None
        # work per dollar: throughput over the $/s the system costs (unpriced or free -> None)
        rate = r.cost.usd_per_hour
        d["perf_per_usd"] = tp * 3600 / rate if rate and math.isfinite(rate) else None
        out.append(d)
        rows.append([arch, _t(r.latency_s) + (" (host-bound)" if r.host_bound else ""),
                     f"{tp:,.4g} {unit}", fq(r.energy_per_sample_j, "J"),
                     f"{r.avg_power_w:,.4g} W",
                     f"{d['perf_per_watt']:.4g}" if d["perf_per_watt"] else "-",
                     f"{d['perf_per_usd']:.4g}" if d["perf_per_usd"] else "-"])
    if a.json:
        _dump(out)
    else:
        print(f"{a.workload}, {a.timing or 'stream'} timing")
        print(_table(rows, ["part", "latency", "throughput", "energy/sample", "avg power",
                            "perf/W (per J)", "perf/$ (per $)"]))
    return 0


OP_FIELDS = {
    "matmul": ("m", "n", "k", "batch"),
    "conv2d": ("batch", "c", "h", "w", "k", "r", "s", "stride", "pad", "groups"),
    "attention": ("batch", "heads", "kv_heads", "head_dim", "seq", "context", "phase", "causal"),
    "softmax": ("rows", "cols"), "layernorm": ("rows", "cols"), "rmsnorm": ("rows", "cols"),
    "gelu": ("numel",), "relu": ("numel",), "silu": ("numel",), "add": ("numel",),
    "mul": ("numel",), "memcpy": ("bytes",), "allreduce": ("bytes", "devices"),
    "allgather": ("bytes", "devices"), "reducescatter": ("bytes", "devices"),
    "alltoall": ("bytes", "devices"), "embedding": ("tokens", "vocab", "dim"),
}
#: flags whose op field has another name: conv2d's batch is the op's ``n`` (NCHW)
OP_RENAMES = {"conv2d": {"batch": "n"}}
#: old spellings that keep working: ``hwsim op conv2d --n 8`` is ``--batch 8``
OP_ALIASES = {"conv2d": {"n": "batch"}}
#: what ``hwsim op`` assumes when a flag is left out (said in the output, and in --json)
OP_DEFAULTS = {"conv2d": {"batch": 1}, "attention": {"batch": 1, "phase": "prefill"}}


def _op_cost_dict(op, cost, system) -> dict[str, Any]:
    d = {"kind": op.kind, "op": op.describe(), "arch": system.name,
         "timing": str(cost.details.get("timing") or "stream"),
         "latency_s": cost.latency_s, "energy_j": cost.energy_j, "flops": cost.flops.total,
         "bytes": cost.dram_bytes, "min_bytes": op.min_bytes, "bound": cost.bound,
         "compute_s": cost.compute_s, "memory_s": cost.memory_s, "overhead_s": cost.overhead_s,
         "utilization": cost.utilization, "compute_class": cost.compute_class,
         "bytes_by_level": dict(cost.bytes_by_level)}
    det = dict(cost.details)
    for k in ("cycles", "compute_cycles"):
        if k in det:
            d[k] = det[k]
    d["details"] = det
    return d


def _explain_op(op, cost, system) -> None:
    """Print the op's arithmetic, step by step (simulator.explain)."""
    from simulator.explain import op_lines

    print()
    print("\n".join(op_lines(op, cost, system)))


def cmd_op(a: argparse.Namespace) -> int:
    from simulator.api import predict_op, resolve_system
    from workloads.ops import op_from_dict

    kind = a.kind.lower()
    if kind not in OP_FIELDS:
        raise HwsimError(f"unknown op kind {a.kind!r}; known: {', '.join(OP_FIELDS)}")
    flag = lambda f: "--" + f.replace("_", "-")  # noqa: E731
    given = {f for fs in OP_FIELDS.values() for f in fs if getattr(a, f, None) is not None}
    for alias, target in OP_ALIASES.get(kind, {}).items():
        if alias in given:
            if target in given and getattr(a, target) != getattr(a, alias):
                raise HwsimError(f"{kind}: {flag(target)} {getattr(a, target)} and "
                                 f"{flag(alias)} {getattr(a, alias)} disagree ({flag(alias)} is an "
                                 f"old spelling of {flag(target)}); give one")
            setattr(a, target, getattr(a, alias))
            given = (given - {alias}) | {target}
    stray = sorted(given - set(OP_FIELDS[kind]))
    if stray:
        raise HwsimError(f"{kind}: {flag(stray[0])} does not apply; {kind} takes "
                         + ", ".join(map(flag, OP_FIELDS[kind])))
    assumed = {f: v for f, v in OP_DEFAULTS.get(kind, {}).items() if f not in given}
    for f, v in assumed.items():
        setattr(a, f, v)
    renames = OP_RENAMES.get(kind, {})
    fields = {renames.get(f, f): getattr(a, f) for f in OP_FIELDS[kind]
              if getattr(a, f, None) is not None}
    if a.sparsity is not None:
        if kind not in ("matmul", "conv2d"):
            raise HwsimError(f"--sparsity prunes a weight: it applies to matmul and conv2d, "
                             f"not {kind}")
        fields["sparsity"] = a.sparsity
        if kind == "matmul":
            fields["weight"] = True  # B is the pruned weight
    try:
        op = op_from_dict({"kind": kind, "dtype": a.dtype, **fields})
    except ValueError as e:
        raise HwsimError(str(e)) from None
    system = resolve_system(a.arch, a.set or ())
    cost = predict_op(op, system, dataflow=a.dataflow, schedule=a.schedule, timing=a.timing)
    from simulator.predict import dtype_warnings

    warns = dtype_warnings(system.device, (op.dtype.name,
                                           getattr(getattr(op, "weight_dtype", None), "name",
                                                   None)))
    notes = [f"{flag(f)} not given: {v} assumed (all --seq tokens new; --phase decode "
             "--context N is one step against a KV cache)" for f, v in assumed.items()
             if f == "phase"]
    if a.json:
        d = _op_cost_dict(op, cost, system)
        if notes:
            d["assumed"] = {f: v for f, v in assumed.items() if f == "phase"}
        if warns:
            d["warnings"] = warns
        _dump(d)
        return 0
    rows = [["latency", _t(cost.latency_s)], ["energy", fq(cost.energy_j, "J")],
            ["FLOPs", fq(cost.flops.total, "FLOP")], ["DRAM bytes", fq(cost.dram_bytes, "B")],
            ["bound", cost.bound], ["utilization", f"{cost.utilization:.1%}"],
            ["timing", str(cost.details.get("timing") or "stream")]]
    if "host_s" in cost.details:
        host = float(cost.details["host_s"])
        rows.append(["host dispatch (eager)",
                     f"{_t(host)}: " + ("host-bound in a stream of such ops (the device "
                                        "idles)" if host > cost.latency_s else
                                        "device-bound (the host keeps ahead)")])
    for k in ("cycles", "compute_cycles", "tile", "waves", "folds", "dataflow"):
        if k in cost.details:
            rows.append([k, str(cost.details[k])])
    print(f"{op.describe()} on {system.name}")
    for n in notes:
        print(f"note: {n}")
    for w in warns:
        print(f"warning: {w}")
    print(_table(rows, ["metric", "value"]))
    if a.explain:
        _explain_op(op, cost, system)
    return 0


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")


def _bad_value(v: Any) -> str | None:
    """Why a JSONL field value cannot be an op field, or None when it can."""
    if isinstance(v, float) and not math.isfinite(v):
        return f"{v} is not a finite number"
    if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > MAX_INT:
        return f"{v:.4g} is too large (at most 2**53 = {MAX_INT:.3g})"
    if isinstance(v, dict):
        return "expected a number, a string or a list of strings, got an object"
    if isinstance(v, list):
        inner = [p for x in v if (p := _bad_value(x) if not isinstance(x, (list, dict))
                                  else "lists may not nest")]
        return inner[0] if inner else None
    return None


def _op_from_line(line: str, where: str):
    """One ``hwsim ops`` JSONL line -> an Op; HwsimError naming ``where`` (file:line)."""
    from dataclasses import fields as dc_fields

    from workloads.ops import op_from_dict

    def no_constant(name: str) -> None:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        d = json.loads(line, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise HwsimError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise HwsimError(f"{where}: JSON nested too deeply") from None
    except ValueError as e:  # NaN / Infinity, or an integer of thousands of digits
        msg = str(e) if "JSON allows" in str(e) else "an integer of thousands of digits"
        raise HwsimError(f"{where}: {msg}") from None
    if not isinstance(d, dict):
        raise HwsimError(f'{where}: expected a JSON object such as {{"kind": "matmul", "m": 64, '
                         f'"n": 4096, "k": 4096}}, got {_json_type(d)}')
    for k, v in d.items():
        if (problem := _bad_value(v)) is not None:
            raise HwsimError(f"{where}: field {k!r}: {problem}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    try:
        op = op_from_dict(d)
    except (ValueError, TypeError) as e:
        raise HwsimError(f"{where}: {e}") from None
    for f in dc_fields(op):  # op_from_dict does not check types the shape checks let through
        v = getattr(op, f.name)
        if str(f.type).startswith("int") and isinstance(v, float):
            raise HwsimError(f"{where}: {op.kind}: {f.name} must be a whole number, got {v!r}")
        if str(f.type) == "bool" and not isinstance(v, bool):
            raise HwsimError(f"{where}: {op.kind}: {f.name} must be true or false, got {v!r}")
    return op


def cmd_ops(a: argparse.Namespace) -> int:
    from simulator.api import predict_op, resolve_system

    system = resolve_system(a.arch, a.set or ())
    ops = []
    try:
        with open(a.input, "rb") as f:
            lines = list(f)
    except OSError as e:
        raise HwsimError(f"{a.input}: cannot read ({e.strerror or e})") from None
    for i, raw in enumerate(lines, 1):
        where = f"{a.input}:{i}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HwsimError(f"{where}: not UTF-8 text ({e.reason})") from None
        if line.strip():
            ops.append((where, _op_from_line(line, where)))
    if not ops:
        raise HwsimError(f"{a.input}: no ops (expected one JSON object per line)")
    for where, op in ops:
        try:
            cost = predict_op(op, system, dataflow=a.dataflow, schedule=a.schedule,
                              timing=a.timing)
        except (HwsimError, ValueError, ArithmeticError) as e:
            raise HwsimError(f"{where}: {e}") from None
        d = _op_cost_dict(op, cost, system)
        if a.json:
            d.pop("details")
            _dump(d)
        else:
            print(f"{op.describe()}: {_t(cost.latency_s)}, {cost.bound}-bound")
    return 0


def cmd_roofline(a: argparse.Namespace) -> int:
    from simulator.api import resolve_system, simulate
    from simulator.results.plots import roofline_plot

    _check_out(a.out, "--out")
    system = resolve_system(a.arch, a.set or ())
    r = simulate(a.workload, system, _run_options(a))
    path = roofline_plot(r, system.device, a.out, dtype=r.meta["dtype"])
    print(f"roofline of {r.workload} on {system.name} written to {path} "
          f"({len(r.records)} ops placed)")
    return 0


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_validate(a: argparse.Namespace) -> int:
    from simulator.validate.measure import MeasureSettings
    from simulator.validate.run import validate

    if a.suite is None and a.workload is None:
        a.suite = "ops"
    if a.out:
        _check_out(a.out, "--out", directory=True)
    settings = MeasureSettings(warmup=a.warmup, min_reps=a.reps, min_time_s=a.min_time,
                               threads=a.threads, energy=a.energy, rotate_sets=a.rotate_sets,
                               passes=a.passes)
    path = validate(suite=a.suite, workload=a.workload, device=a.device, out=a.out,
                    settings=settings, phase=a.phase or "auto", batch=a.batch or 1, seq=a.seq,
                    context=a.context, dtype=a.dtype, fuse=not a.no_fuse, progress=_progress)
    print(f"dataset written to {path}")
    from simulator.validate.energy import energy_note

    try:
        print(energy_note(json.loads((Path(path) / "meta.json").read_text()).get("energy")))
    except (OSError, ValueError):  # the dataset is written; the note is a courtesy
        pass
    print(f"next: hwsim compare-measured {path} --arch <part>; "
          f"hwsim calibrate {path} --arch <part> --out <part>.calib.yaml")
    return 0


def cmd_compare_measured(a: argparse.Namespace) -> int:
    from simulator.validate.calibrate import CalibrationProfile
    from simulator.validate.compare import compare, default_report_dir, write_report
    from simulator.validate.energy import energy_note
    from simulator.validate.traces import load_measurements

    first = a.dataset[0]
    out = a.out or default_report_dir(first, a.arch, calibrated=bool(a.calibration))
    _check_out(out, "--out", directory=True)
    profile = CalibrationProfile.load(a.calibration) if a.calibration else None
    ds = load_measurements(a.dataset, dtype=a.dtype)
    c = compare(ds, a.arch, profile, timing=a.timing)
    report = write_report(c, out, title=f"hwsim {a.arch} vs measured ({Path(first).name})")
    from dataclasses import asdict

    sums = [c.overall, *([c.e2e] if c.e2e.count else []), *c.by_class.values()]
    traced = bool(ds.meta.get("source"))
    skipped = [s for s in ds.meta.get("skipped") or () if isinstance(s, dict)] if traced else []
    if a.json:
        _dump({"arch": c.arch, "dataset": c.dataset, "report": str(report), "timing": c.timing,
               "summaries": [asdict(x) for x in sums],
               "by_kind": [asdict(x) for x in c.by_kind.values()],
               "by_op": [asdict(x) for x in c.by_group.values()] if traced else [],
               "energy": [asdict(x) for x in c.energy.values()],
               "power": [asdict(x) for x in c.power.values()],
               "energy_note": energy_note(ds.meta.get("energy")),
               "skipped": skipped,
               "unsupported": [asdict(u) for u in c.unsupported]})
        return 0
    pct = lambda x: f"{x:+.1%}" if x == x else "-"  # noqa: E731

    def rows(xs: Any) -> list[list[str]]:
        return [[x.label, str(x.count), pct(x.mape).lstrip("+"), pct(x.median_ape).lstrip("+"),
                 pct(x.bias), f"{pct(x.worst_error)} ({x.worst_id})"] for x in xs]

    head = ["class", "ops", "MAPE", "median", "bias", "worst"]
    print(f"{c.arch} vs measured {c.device} ({c.dataset}, {c.timing} time)"
          + (" with calibration" if profile else ""))
    print(_table(rows(sums), head))
    if traced:
        print("\nper op kind:")
        print(_table(rows(c.by_kind.values()), ["kind", *head[1:]]))
        print("\nper profiled op:")
        print(_table(rows(c.by_group.values()), ["op", *head[1:]]))
    for title, ss in (("energy per call", c.energy), ("average power", c.power)):
        if ss:
            print(f"\n{title} (predicted vs measured):")
            print(_table(rows(ss.values()), head))
    if not c.energy and not c.power:
        print(f"\n{energy_note(ds.meta.get('energy'))}")
    if skipped:
        reasons: dict[str, int] = {}
        for s in skipped:
            reasons[str(s.get("reason"))] = reasons.get(str(s.get("reason")), 0) + 1
        for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"not matched: {n} x {why}", file=sys.stderr)
    for u in c.unsupported:
        print(f"not predicted: {u.id} ({u.kind}): {u.reason}", file=sys.stderr)
    print(f"\nreport: {report}")
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from simulator.validate.calibrate import fit
    from simulator.validate.compare import compare, write_report

    out = Path(a.out or f"{a.arch}.calib.yaml")
    _check_out(out, "--out", make_parents=True)
    if a.report:
        _check_out(a.report, "--report", directory=True)
    from simulator.validate.traces import load_measurements

    ds = load_measurements(a.dataset, dtype=a.dtype)
    r = fit(ds, a.arch, holdout=a.holdout, seed=a.seed, prior=a.prior, timing=a.timing)
    r.profile.save(out)
    print(r.summary())
    print(f"\ncalibration profile written to {out}; use it with "
          f"hwsim run ... --arch {a.arch} --calibration {out}")
    if a.report:
        from simulator.validate.calibrate import CalibrationProfile

        c = compare(ds, a.arch, CalibrationProfile.load(out), timing=a.timing)
        rep = write_report(c, a.report, title=f"hwsim {a.arch} calibrated vs measured")
        print(f"report: {rep}")
    return 0


# -- parser ----------------------------------------------------------------------------------
def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _int(lo: int = 1):
    """argparse type: a whole number in [lo, 2**53]; anything else is a usage error."""
    def parse(text: str) -> int:
        try:
            v = int(text.strip()) if len(text) < 4000 else None  # int() limit: 4,300 digits
        except ValueError:
            v = None
        if v is None:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {_short(text)!r}")
        if abs(v) > MAX_INT:
            raise argparse.ArgumentTypeError(f"{v} is too large (at most 2**53 in size)")
        if v < lo:
            raise argparse.ArgumentTypeError(
                f"expected {'a positive' if lo == 1 else f'a >= {lo}'} whole number, got {v}")
        return v
    parse.__name__ = "positive int" if lo == 1 else f"int >= {lo}" if lo >= 0 else "int"
    return parse


def _float(lo: float = 0.0, hi: float = math.inf, lo_open: bool = True, hi_open: bool = True):
    """argparse type: a finite number in the interval (lo, hi) (ends closed on request)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_short(text)!r}") from None
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and \
            (v < hi if hi_open else v <= hi)
        if not ok:
            rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise argparse.ArgumentTypeError(
                f"expected a finite number in {rng}, got {_short(text)!r}")
        return v
    parse.__name__ = "number"
    return parse


# op shape flags take any whole number: the op checks the range and names itself and the field
POS_INT, NONNEG_INT, SIZE_INT = _int(1), _int(0), _int(-MAX_INT)


def _add_common(p: argparse.ArgumentParser, arch_default: str | None = None,
                arch_help: str = "part or system name, or a spec .yaml") -> None:
    p.add_argument("--arch", default=arch_default, help=arch_help)
    p.add_argument("--set", action="append", metavar="PATH=VALUE",
                   help='override a spec field, e.g. --set "memory.hbm.bandwidth=4 TB/s"')
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--dataflow", choices=("os", "ws", "is"), help="systolic/FPGA dataflow")
    p.add_argument("--schedule", choices=("best", "scalesim"),
                   help="systolic/FPGA memory schedule: best (hwsim's SRAM tiling search, the "
                        "default) or scalesim (SCALE-Sim v3's fixed schedule and read buffers, "
                        "one array)")
    add_timing(p)


def _add_measured_timing(p: argparse.ArgumentParser, what: str) -> None:
    """``--timing`` of compare-measured and calibrate: the dataset says what it measured."""
    p.add_argument("--timing", choices=("kernel", "graph", "stream", "eager"), default=None,
                   help=f"{what} (default: the dataset's own: kernel for profiler traces and "
                        "CSV profiles, stream for harness loops); eager: a loop of one op runs "
                        "at the slower of its host dispatch and its device time")


def _add_workload(p: argparse.ArgumentParser, default_workload: str | None = None) -> None:
    p.add_argument("--workload", default=default_workload,
                   help="shipped model name or a HuggingFace config.json / YAML")
    p.add_argument("--phase", default=None, choices=("auto", "forward", "prefill", "decode", "train"))
    p.add_argument("--batch", type=POS_INT, default=None)
    p.add_argument("--seq", type=POS_INT, default=None, help="sequence length (prefill/encoder)")
    p.add_argument("--seq-lens", dest="seq_lens", default=None, metavar="DATASET|FILE|L1,L2,..",
                   help="variable-length samples instead of --seq, run packed (no padding: "
                        "linear layers on the sum of the lengths, attention per sample, as "
                        "TensorRT's varlen BERT and FlashAttention varlen do): a dataset "
                        "(squad-v1.1), a file of lengths (one per line, or 'length count'), "
                        "or lengths such as 128,200,384; the batch takes --batch lengths at "
                        "evenly spaced quantiles")
    p.add_argument("--context", type=NONNEG_INT, default=None, help="KV-cache length (decode)")
    p.add_argument("--dtype", default=None,
                   help="compute precision (default: the part's natural one, bf16 on most)")
    p.add_argument("--weight-dtype", dest="weight_dtype", default=None,
                   help="weights-only quantisation, e.g. int4 with --dtype bf16")
    p.add_argument("--kv-dtype", dest="kv_dtype", default=None)
    p.add_argument("--tp", type=POS_INT, default=None,
                   help="tensor-parallel degree (default: the largest power of two of the "
                        "devices that divides the model)")
    p.add_argument("--pp", type=POS_INT, default=None,
                   help="pipeline-parallel stages (default 1; forward/prefill/decode)")
    p.add_argument("--dp", type=POS_INT, default=None,
                   help="data-parallel replicas (default: the devices left over, at most one "
                        "per sample)")
    p.add_argument("--ep", type=POS_INT, default=None,
                   help="expert-parallel devices for mixture-of-experts models (default 1)")
    p.add_argument("--microbatches", type=POS_INT, default=None,
                   help="micro-batches per pipeline replica (with --pp)")
    p.add_argument("--recompute", choices=("none", "full"), default=None,
                   help="training: activation recomputation (default none)")
    p.add_argument("--image-size", dest="image_size", type=POS_INT, default=None)
    p.add_argument("--cost-mode", dest="cost_mode", default="auto", choices=("auto", "cloud", "tco"))
    p.add_argument("--no-fuse", dest="no_fuse", action="store_true",
                   help="run pointwise ops as separate kernels (default: fused into GEMM/conv "
                        "epilogues, as XLA/TensorRT do)")
    p.add_argument("--unfuse-projections", dest="unfuse_projections", action="store_true",
                   help="transformers: one GEMM per Q/K/V and gate/up projection (default: "
                        "QKV and gate/up each one GEMM, as vLLM and Megatron-LM run them)")


def _sparsity_arg(text: str):
    """argparse type for --sparsity: N:M or a fraction of weights pruned (see
    :func:`workloads.ops.parse_sparsity`); a usage error names the value."""
    from workloads.ops import parse_sparsity

    try:
        return parse_sparsity(text, "got")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_sparsity(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--sparsity", type=_sparsity_arg, default=None, metavar="N:M|FRACTION",
                   help=f"{what}prune the weights: 2:4 (structured; sparse tensor cores run "
                        "it at up to 2x) or a fraction of weights pruned such as 0.7 "
                        "(unstructured); weights are stored compressed (default: dense)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hwsim", description="Hardware performance simulator for "
                                 "deep-learning workloads: latency, energy and cost.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("archs", help="list shipped parts and systems")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_archs)

    p = sub.add_parser("workloads", help="list shipped models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_workloads)

    p = sub.add_parser("run", help="simulate a workload on a part (default: "
                       "llama2-7b decode, batch 8, context 2048 on h100-sxm)")
    _add_common(p)
    _add_workload(p)
    p.add_argument("--breakdown", action="store_true", help="energy by part")
    from simulator.power.cli_args import add_power_limit
    add_power_limit(p)
    p.add_argument("--trace", metavar="FILE", help="write a Chrome/Perfetto trace JSON")
    p.add_argument("--explain", action="store_true", help="say why, in plain words")
    p.add_argument("--calibration", metavar="PROFILE.yaml",
                   help="apply a calibration profile (from hwsim calibrate) and print an error band")
    p.add_argument("--force-calibration", dest="force_calibration", action="store_true",
                   help="apply a profile fitted on a different part")
    p.add_argument("--top", type=POS_INT, default=8,
                   help="how many op shapes to list (identical layers grouped)")
    _add_sparsity(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("compare", help="one workload on several parts (default: "
                       f"{DEFAULT_COMPARE_ARCHS})")
    _add_common(p, arch_help="comma-separated parts or systems (default: one of each family, "
                             f"{DEFAULT_COMPARE_ARCHS})")
    _add_workload(p, "bert-base")
    _add_sparsity(p)
    p.set_defaults(fn=cmd_compare, batch=1)

    p = sub.add_parser("op", help="predict one op on one part")
    p.add_argument("kind", help=", ".join(OP_FIELDS))
    _add_common(p, "h100-sxm")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--explain", action="store_true")
    _add_sparsity(p, "matmul (its B operand is the weight) or conv2d: ")
    for name in sorted({f for fs in OP_FIELDS.values() for f in fs} | {"n"}):
        if name in ("phase",):
            p.add_argument("--phase", choices=("prefill", "decode"), default=None,
                           help="attention: prefill (default) or decode (needs --context)")
        elif name == "causal":
            p.add_argument("--causal", action="store_true", default=None)
        elif name == "bytes":
            p.add_argument("--bytes", type=_float(0.0, float(MAX_INT), hi_open=False),
                           default=None)
        else:
            helps = {"batch": "batch (matmul, attention, conv2d; default 1)",
                     "n": "matmul: columns of the output; conv2d: old spelling of --batch"}
            p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                           type=SIZE_INT, help=helps.get(name))
    p.set_defaults(fn=cmd_op)

    p = sub.add_parser("ops", help="predict many ops from a JSONL file")
    p.add_argument("--input", required=True)
    _add_common(p, "h100-sxm")
    p.set_defaults(fn=cmd_ops)

    p = sub.add_parser("validate", help="measure an op suite or a workload for real with "
                       "PyTorch (cuda if present, else cpu) and write a dataset")
    p.add_argument("--suite", default=None, help="smoke | cpu | gpu | ops (default: ops)")
    p.add_argument("--workload", default=None, help="measure a zoo model per op and end to end")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", default=None, help="dataset folder (default: "
                   "./hwsim-measurements/<device>-<what>-<time>)")
    p.add_argument("--phase", default=None)
    p.add_argument("--batch", type=POS_INT, default=None)
    p.add_argument("--seq", type=POS_INT, default=None)
    p.add_argument("--context", type=NONNEG_INT, default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--no-fuse", dest="no_fuse", action="store_true")
    p.add_argument("--warmup", type=NONNEG_INT, default=3)
    p.add_argument("--reps", type=POS_INT, default=5, help="minimum repetitions per op")
    p.add_argument("--min-time", dest="min_time", type=_float(0.0, 3600.0, lo_open=False),
                   default=0.2, help="minimum seconds of repetitions per op")
    p.add_argument("--threads", type=POS_INT, default=None, help="CPU threads (default: all)")
    p.add_argument("--passes", type=POS_INT, default=1,
                   help="measure the op list this many times in turn and keep each op's "
                        "median pass (robust to slow periods on a shared machine)")
    p.add_argument("--energy", action=argparse.BooleanOptionalAction, default=None,
                   help="energy loop per op and end to end: NVML on CUDA, RAPL on CPU "
                        "(default: where readable; a note says why not)")
    p.add_argument("--rotate-sets", dest="rotate_sets", type=POS_INT, default=None,
                   help="input sets rotated per op (default: enough to exceed the last-level "
                        "cache, so operands come from DRAM; 1 = warm caches)")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("compare-measured", help="predicted vs measured: error table, plots "
                       "and a markdown report")
    p.add_argument("dataset", nargs="+", help="a dataset folder (hwsim validate), or one or "
                   "more PyTorch profiler / Kineto traces (.json, .json.gz) and per-op CSV "
                   "profiles (kernel time)")
    p.add_argument("--dtype", default="fp16", help="precision of CSV profiles that do not "
                   "say (default fp16)")
    p.add_argument("--arch", required=True)
    p.add_argument("--calibration", default=None, help="compare with a calibration applied")
    p.add_argument("--out", default=None, help="report folder (default: "
                   "./hwsim-reports/<dataset name>/<arch>[-calibrated] under the current "
                   "directory; never inside the dataset)")
    p.add_argument("--json", action="store_true")
    _add_measured_timing(p, "predict under this timing")
    p.set_defaults(fn=cmd_compare_measured)

    p = sub.add_parser("calibrate", help="fit efficiency factors to a dataset, report "
                       "held-out error, write a calibration profile")
    p.add_argument("dataset", nargs="+", help="a dataset folder, or profiler traces / per-op "
                   "CSV profiles (as compare-measured reads them)")
    p.add_argument("--dtype", default="fp16", help="precision of CSV profiles that do not "
                   "say (default fp16)")
    p.add_argument("--arch", required=True)
    p.add_argument("--out", default=None, help="profile path (default: <arch>.calib.yaml)")
    p.add_argument("--holdout", type=_float(0.0, 1.0, lo_open=False), default=0.3,
                   help="fraction of shapes per op class held out of the fit")
    p.add_argument("--seed", type=NONNEG_INT, default=0)
    p.add_argument("--prior", type=_float(0.0, lo_open=False), default=None,
                   help="weight of each parameter's log distance from its spec value "
                        "(default 0: none; ~1 keeps trading-off parameters near the spec)")
    p.add_argument("--report", default=None, help="also write a calibrated report here")
    _add_measured_timing(p, "fit under this timing (graph fits graph_launch_gap, eager also "
                            "eager_dispatch)")
    p.set_defaults(fn=cmd_calibrate)

    p = sub.add_parser("roofline", help="roofline plot with every op of a workload")
    _add_common(p, "h100-sxm")
    _add_workload(p, "gpt2")
    p.add_argument("--out", default="roofline.png", help="image path (.png, .svg, .pdf)")
    p.set_defaults(fn=cmd_roofline)

    from simulator.cli_serve import add_serve_parser
    from simulator.cli_train import add_train_parser

    add_train_parser(sub, POS_INT, NONNEG_INT, _check_out)

    add_serve_parser(sub, POS_INT, NONNEG_INT, _float(), _check_out)
    from simulator.cli_plan import add_plan_parser

    add_plan_parser(sub, POS_INT, NONNEG_INT, _float())
    from simulator.cli_explore import add_explore_parser

    add_explore_parser(sub, POS_INT, _check_out)
    from simulator.cli_scalesim import add_scalesim_parser

    add_scalesim_parser(sub, _check_out)
    from simulator.cli_edge import add_edge_parser

    add_edge_parser(sub, POS_INT)
    from simulator.cli_ui import add_ui_parser

    add_ui_parser(sub, NONNEG_INT)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if getattr(a, "phase", "x") is None and a.command not in ("run", "op"):
        a.phase = "auto"
    if getattr(a, "batch", "x") is None and a.command not in ("run", "op"):
        a.batch = 1
    try:
        return a.fn(a)
    except (HwsimError, WorkloadError, ValueError) as e:  # SpecError is a HwsimError
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `hwsim run --json | head`
        return 0
    except OSError as e:  # a file that vanished or filled the disk between check and write
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
