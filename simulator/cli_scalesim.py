"""``hwsim scalesim``: run a SCALE-Sim study (config + topology files, unchanged) on hwsim.

Thin: :mod:`simulator.scalesim_files` reads the files, builds the device and costs the
layers; this module parses the options, prints SCALE-Sim's report columns with hwsim's latency
and energy, and writes the report CSVs.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from simulator.cli_format import dumps
from simulator.cli_format import table as _table
from simulator.errors import HwsimError, SpecError
from simulator.units import format_quantity as fq

__all__ = ["add_scalesim_parser", "cmd_scalesim"]

_OPERANDS = ("ifmap", "filter", "ofmap")


def _clock(text: str) -> float:
    from simulator.units import UnitError, parse_quantity

    try:
        return parse_quantity(text, "frequency")
    except UnitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _dtype(text: str) -> str:
    from workloads.dtypes import get_dtype

    try:
        return get_dtype(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_scalesim_parser(sub: Any, check_out) -> None:
    """Register ``scalesim`` on the CLI's subparsers (the CLI passes its output-path check)."""
    p = sub.add_parser(
        "scalesim", help="run a SCALE-Sim study (its .cfg and topology .csv) on hwsim",
        description="Read a SCALE-Sim config (v1-v3 INI) and topology (conv or GEMM CSV) "
                    "unchanged, cost each layer with hwsim's systolic model on the configured "
                    "array, and print SCALE-Sim's report columns (cycles, utilisation, SRAM "
                    "and DRAM words) with hwsim's latency, energy, and the array's silicon "
                    "area, power and unit cost.")
    p.add_argument("--config", required=True, metavar="X.cfg", help="SCALE-Sim config file")
    p.add_argument("--topology", required=True, metavar="Y.csv",
                   help="SCALE-Sim topology: conv (Layer name, IFMAP Height, ...) or GEMM "
                        "(Layer, M, N, K), told apart by the header")
    p.add_argument("--dtype", type=_dtype, default="int8",
                   help="element type; one word = one element (default int8: 1 B, "
                        "SCALE-Sim's word)")
    p.add_argument("--clock", type=_clock, default=1e9, metavar="FREQ",
                   help="array clock, e.g. 1GHz (default; SCALE-Sim counts cycles only)")
    p.add_argument("--schedule", choices=("scalesim", "best"), default="scalesim",
                   help="scalesim: SCALE-Sim's fixed loop nest (default); best: hwsim's "
                        "SRAM tiling search")
    p.add_argument("--report-version", dest="report_version", choices=("2", "3"),
                   default=None, help="SCALE-Sim report columns (default: the config's "
                                      "version; v3 adds 'Total Cycles (incl. prefetch)')")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write COMPUTE_REPORT.csv, BANDWIDTH_REPORT.csv, "
                        "DETAILED_ACCESS_REPORT.csv (SCALE-Sim's columns) and "
                        "HWSIM_REPORT.csv (latency, energy) here")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(fn=lambda a: cmd_scalesim(a, check_out))


def _read_inputs(a: argparse.Namespace):
    """Both files, with the problems of both reported at once."""
    from simulator.scalesim_files import read_config, read_topology

    cfg = topo = None
    errors: list[str] = []
    try:
        cfg = read_config(a.config)
    except SpecError as e:
        errors.append(str(e))
    try:
        topo = read_topology(a.topology, a.dtype)
    except SpecError as e:
        errors.append(str(e))
    if errors:
        raise HwsimError("\n".join(errors))
    return cfg, topo


def _silicon(device) -> tuple[dict[str, float] | None, str | None]:
    """Area, power and unit cost of the configured part (``simulator.cost.silicon``), or why
    not."""
    try:
        from simulator.cost.silicon import silicon_report
    except ImportError as e:
        return None, ("silicon area, power and unit cost: not available (simulator.cost.silicon "
                      f"cannot be imported: {e})")
    try:
        r = silicon_report(device)
        out = {"area_mm2": float(r.area_mm2), "power_w": float(r.power_w),
               "unit_cost_usd": float(r.unit_cost_usd)}
    except (HwsimError, ValueError, TypeError, AttributeError, ArithmeticError) as e:
        return None, f"silicon area, power and unit cost: not available ({e})"
    return out, None


def _n(x: float) -> str:
    """A count (cycles, words) with thousands separators."""
    return f"{int(math.ceil(x - 1e-6)) if x > 0 else 0:,}"


def _pct(x: float) -> str:
    return f"{x:.2f}"


def cmd_scalesim(a: argparse.Namespace, check_out) -> int:
    from simulator.scalesim_files import (
        BANDWIDTH_COLUMNS,
        BASE_ARCH,
        COMPUTE_COLUMNS,
        DETAIL_COLUMNS,
        build_system,
        report_csv,
        run_study,
        totals,
    )

    if a.out:
        check_out(a.out, "--out", directory=True)
    cfg, topo = _read_inputs(a)
    version = int(a.report_version or cfg.version)
    notes = [*cfg.notes, *topo.notes]
    system = build_system(cfg, dtype=a.dtype, clock_hz=a.clock)
    reports = run_study(cfg, topo, system, dtype=a.dtype, schedule=a.schedule,
                        on_note=notes.append)
    tot = totals(reports)
    nominal = system if cfg.bandwidth_mode == "USER" else \
        build_system(cfg, dtype=a.dtype, clock_hz=a.clock, calc_stall_free=False)
    silicon, why = _silicon(nominal.device)
    if why:
        notes.append(why)
    dev = system.device
    wb = _word_bytes(a.dtype)
    compute_cols = COMPUTE_COLUMNS[version]
    files: dict[str, str] = {}
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        texts = {
            "COMPUTE_REPORT.csv": report_csv(compute_cols, (r.compute_row(version)
                                                            for r in reports)),
            "BANDWIDTH_REPORT.csv": report_csv(BANDWIDTH_COLUMNS,
                                               (r.bandwidth_row() for r in reports)),
            "DETAILED_ACCESS_REPORT.csv": report_csv(DETAIL_COLUMNS,
                                                     (r.detail_row() for r in reports)),
            "HWSIM_REPORT.csv": report_csv(
                ["LayerID", "Layer name", "Latency (s)", "Energy (J)", "Dynamic Energy (J)",
                 "Static Energy (J)", "Bound"],
                ([r.layer_id, r.name, repr(r.latency_s), repr(r.energy_j),
                  repr(r.dynamic_energy_j), repr(r.static_energy_j), r.bound]
                 for r in reports)),
        }
        for name, text in texts.items():
            (out / name).write_text(text, encoding="utf-8")
            files[name] = str(out / name)
    if a.json:
        doc = {
            "config": {"path": cfg.path, "run_name": cfg.run_name, "rows": cfg.rows,
                       "cols": cfg.cols, "sram_bytes": cfg.sram_bytes,
                       "dataflow": cfg.dataflow, "bandwidth_mode": cfg.bandwidth_mode,
                       "bandwidth_words_per_cycle": cfg.bandwidth_words,
                       "version": cfg.version},
            "topology": {"path": topo.path, "name": topo.name, "form": topo.form,
                         "layers": len(topo.layers)},
            "device": {"base": BASE_ARCH, "dtype": a.dtype, "word_bytes": wb,
                       "clock_hz": a.clock, "dram_bandwidth_Bps": dev.dram.bandwidth_Bps,
                       "schedule": a.schedule, "static_power_w": dev.power.static_w},
            "report_version": version,
            "layers": [r.to_dict() for r in reports],
            "total": tot, "silicon": silicon, "files": files, "notes": notes,
        }
        print(dumps(doc))
        return 0
    bw = ("CALC: DRAM sized never to stall the array" if cfg.bandwidth_mode == "CALC" else
          f"DRAM {cfg.bandwidth_words} words/cycle = {fq(dev.dram.bandwidth_Bps, 'B/s')}")
    print(f"{cfg.run_name}: {cfg.describe()}")
    print(f"hwsim: {BASE_ARCH} with this array at {fq(a.clock, 'Hz')}, {a.dtype} "
          f"({wb:g} B/word), {bw}; schedule {a.schedule}")
    print(f"topology {topo.name} ({topo.form}, {len(reports)} layers)\n")
    head = ["Layer", *compute_cols[1:], "latency", "energy", "bound"]
    rows = []
    sums = [0] * (len(compute_cols) - 4)  # the cycle columns, summed for the total line
    for r in reports:
        c = r.compute_row(version)
        sums = [s + x for s, x in zip(sums, c[1:-3], strict=True)]
        rows.append([str(c[0]), r.name, *(_n(x) for x in c[1:-3]),
                     *(_pct(x) for x in c[-3:]), fq(r.latency_s, "s"), fq(r.energy_j, "J"),
                     r.bound])
    rows.append(["total", "", *(_n(x) for x in sums), _pct(tot["overall_util_pct"]), "", "",
                 fq(tot["latency_s"], "s"), fq(tot["energy_j"], "J"), ""])
    print("COMPUTE_REPORT")
    print(_table(rows, ["LayerID", *head]))
    t = max(tot["total_cycles"], 1)
    rows = [[str(r.layer_id), *(f"{x:.3f}" for x in r.bandwidth_row()[1:])] for r in reports]
    rows.append(["total", *(f"{tot[k][o] / t:.3f}" for k in ("sram_words", "dram_words")
                            for o in _OPERANDS)])
    print("\nBANDWIDTH_REPORT (words/cycle)")
    print(_table(rows, BANDWIDTH_COLUMNS))
    detail = [c for c in DETAIL_COLUMNS if c.endswith(("Reads", "Writes"))]
    rows = [[str(r.layer_id), *(_n(r.sram_words[o]) for o in _OPERANDS),
             *(_n(r.dram_words[o]) for o in _OPERANDS)] for r in reports]
    rows.append(["total", *(_n(tot[k][o]) for k in ("sram_words", "dram_words")
                            for o in _OPERANDS)])
    print("\nDETAILED_ACCESS_REPORT (words)")
    print(_table(rows, ["LayerID", *detail]))
    print()
    cycles = (f"{sums[0]:,} cycles ({sums[1]:,} stall)" if version == 2 else
              f"{sums[0]:,} cycles incl. prefetch ({sums[1]:,} after it, {sums[2]:,} stall)")
    print(f"total: {cycles}, "
          f"{fq(tot['latency_s'], 's')}, {fq(tot['energy_j'], 'J')} "
          f"({fq(tot['dynamic_energy_j'], 'J')} dynamic + {fq(tot['static_energy_j'], 'J')} "
          f"static at {dev.power.static_w:g} W)")
    if silicon:
        print(f"silicon ({cfg.rows}x{cfg.cols} array, {fq(sum(cfg.sram_bytes.values()), 'B')} "
              f"SRAM): area {silicon['area_mm2']:.4g} mm^2, power {silicon['power_w']:.4g} W, "
              f"unit cost ${silicon['unit_cost_usd']:,.2f}")
    for note in notes:
        print(f"note: {note}")
    if files:
        print(f"\nreports written to {a.out}: {', '.join(files)}")
    return 0


def _word_bytes(dtype: str) -> float:
    from workloads.dtypes import get_dtype

    return float(get_dtype(dtype).bytes)
