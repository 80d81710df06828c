"""Check the SCALE-Sim v3 closed forms of SEMANTICS.md against reference.csv.

    python3 experiments/scalesim/check_closed_forms.py [--rows] [--no-replay] [--only LAYER,...]

Plain python3, stdlib only. Two predictors are evaluated for every row of reference.csv:

* ``closed_form(row)`` -- the O(1) formulas of SEMANTICS.md sections 2-6 (compute cycles,
  SRAM counts, DRAM counts under ideal streaming, stall/total cycles from the prefetch schedule).
* ``replay(row)`` -- SEMANTICS.md section 7: a pure-python re-execution of SCALE-Sim's memory
  model (read_buffer's circular window of hashed lines, write_buffer's drain logic and the
  per-demand-line stall accumulation of double_buffered_scratchpad) driven by demand streams
  generated from closed-form index maths instead of numpy matrices. It exists to show where
  the closed forms' residual comes from; it reproduces SCALE-Sim's DRAM counts and cycles.

Prints per-row errors with --rows, and always a summary (max / mean |error| per quantity and
dataflow, and how many rows are within issue 13's tolerances).
"""

import argparse
import csv
import os
import sys
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))  # the repository root: simulator/ is stdlib-only here
from simulator.mapping.scalesim_memory import Layer, closed_form, replay, spills  # noqa: E402

REF = os.path.join(HERE, "reference.csv")

WORD_BYTES = 1          # single_layer_sim.run: word_size = 1


def layer_from_row(row):
    """The Layer of one reference.csv row."""
    conv = None
    if row["kind"] == "conv":
        conv = tuple(int(row[k]) for k in ("ifmap_h", "ifmap_w", "filter_h", "filter_w",
                                            "channels", "stride"))
    return Layer(rows=int(row["array_rows"]), cols=int(row["array_cols"]),
                 dataflow=row["dataflow"], m=int(row["M"]), n=int(row["N"]), k=int(row["K"]),
                 bandwidth_words=int(row["bandwidth_words_per_cycle"]),
                 sram_words={o: int(row[f"{o}_sram_kb"]) * 1024 // WORD_BYTES
                             for o in ("ifmap", "filter", "ofmap")}, conv=conv)


def closed_form_row(row):
    return closed_form(layer_from_row(row))


def replay_row(row):
    return replay(layer_from_row(row))





# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------

QUANTITIES = ["compute_cycles", "total_cycles", "stall_cycles", "sram_ifmap_reads",
              "sram_filter_reads", "sram_ofmap_writes", "dram_ifmap_reads",
              "dram_filter_reads", "dram_ofmap_writes", "total_cycles_incl_prefetch",
              "overall_util_pct", "mapping_eff_pct", "compute_util_pct"]
TOLERANCE = {"compute_cycles": 1.0, "dram_ifmap_reads": 5.0, "dram_filter_reads": 5.0,
             "dram_ofmap_writes": 5.0, "total_cycles": 10.0}


def pct(pred, ref):
    if ref == 0:
        return 0.0 if pred == 0 else 100.0
    return (pred - ref) / ref * 100.0


def summarize(name, errs):
    print(f"\n== {name}: |error| % per quantity and dataflow "
          f"(max / mean / rows within issue-13 tolerance) ==")
    print(f"{'quantity':28s} " + "  ".join(f"{df:>24s}" for df in ("os", "ws", "is")))
    for q in QUANTITIES:
        if not any(errs[(q, df)] for df in ("os", "ws", "is")):
            continue
        cells = []
        for df in ("os", "ws", "is"):
            v = errs[(q, df)]
            tol = TOLERANCE.get(q)
            ok = f"{sum(abs(x) <= tol for x in v)}/{len(v)}" if tol else f"n={len(v)}"
            cells.append(f"{max(map(abs, v)):8.2f} {sum(map(abs, v)) / len(v):7.2f} {ok:>7s}")
        print(f"{q:28s} " + "  ".join(f"{c:>24s}" for c in cells))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default=REF)
    ap.add_argument("--rows", action="store_true", help="print per-row errors")
    ap.add_argument("--no-replay", action="store_true", help="closed forms only")
    ap.add_argument("--only", default="", help="comma-separated layer names")
    args = ap.parse_args(argv)
    with open(args.ref) as f:
        rows = list(csv.DictReader(f))
    only = {s for s in args.only.split(",") if s}
    rows = [r for r in rows if not only or r["layer"] in only]
    predictors = [("closed_form", closed_form_row)] + ([] if args.no_replay else [("replay", replay_row)])
    for name, fn in predictors:
        errs = defaultdict(list)
        errs_fit = defaultdict(list)
        t0 = time.time()
        for r in rows:
            pred = fn(r)
            fit = not spills(layer_from_row(r))
            line = []
            for q in QUANTITIES:
                if q in pred:
                    e = pct(pred[q], float(r[q]))
                    errs[(q, r["dataflow"])].append(e)
                    if fit:
                        errs_fit[(q, r["dataflow"])].append(e)
                    if abs(e) > 0.005:
                        line.append(f"{q}={pred[q]} vs {r[q]} ({e:+.2f}%)")
            if args.rows:
                tag = f"{r['array_rows']}x{r['array_cols']} {r['dataflow']} {r['layer']}"
                print(f"[{name}] {tag}: " + ("; ".join(line) if line else "exact"))
        summarize(f"{name} ({len(rows)} rows, {time.time() - t0:.1f}s)", errs)
        if name == "closed_form":
            n_fit = len(errs_fit[("compute_cycles", "os")] + errs_fit[("compute_cycles", "ws")]
                        + errs_fit[("compute_cycles", "is")])
            summarize(f"{name}, only the {n_fit} rows where ifmap and filter fit the active "
                      f"half-SRAM", errs_fit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
