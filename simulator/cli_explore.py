"""``hwsim explore STUDY.yaml``: run a design-space study, store every point, show its front."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def add_explore_parser(sub: Any, pos_int, check_out) -> None:
    p = sub.add_parser(
        "explore", help="run a design-space study (axes over spec fields, objectives, "
                        "constraints) and show its Pareto front",
        description="Evaluate the points of a study file (axes over spec fields, run options "
                    "and parts; a grid, seeded random draws, NSGA-II or TPE by optuna, or a "
                    "Morris design), append each to <out>/points.csv as it completes, and "
                    "print the Pareto front of the objectives (and for Morris, which axes "
                    "matter), with plots. A study that stopped (Ctrl-C, a killed process) "
                    "continues with --resume, evaluating nothing twice.")
    p.add_argument("study", help="the study YAML (see simulator/explore/study.py)")
    p.add_argument("--out", help="study directory (default: <study>.explore next to it)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study stored in --out, skipping the points it holds")
    p.add_argument("--jobs", type=pos_int, default=1, help="worker processes (default 1)")
    p.add_argument("--backend", choices=("local", "dask"), default="local",
                   help="where points are evaluated: local processes (--jobs of them), or "
                        "Dask (a LocalCluster of --jobs workers, or --scheduler's cluster)")
    p.add_argument("--scheduler", default=None,
                   help="a running Dask scheduler, e.g. tcp://host:8786 (with --backend dask)")
    p.add_argument("--limit", type=pos_int, default=None,
                   help="stop after this many new points (continue later with --resume)")
    p.add_argument("--top", type=pos_int, default=10, help="front rows to print")
    p.add_argument("--no-plot", action="store_true",
                   help="do not write the plots (pareto, parallel coordinates, the best "
                        "design's roofline and breakdown, sensitivity)")
    p.add_argument("--json", action="store_true",
                   help="print the summary and the front as JSON")
    p.set_defaults(fn=lambda a: cmd_explore(a, check_out))


def cmd_explore(a: argparse.Namespace, check_out) -> int:
    from pathlib import Path

    from simulator.explore import front, load, load_study, run_study
    from simulator.explore.design import describe

    study = load_study(a.study)
    out = Path(a.out) if a.out else study.path.with_suffix(".explore")
    check_out(out, "--out", directory=True)
    print("  " + describe(study), file=sys.stderr, flush=True)
    last = [0.0]

    def progress(p) -> None:
        import time

        now = time.monotonic()
        if now - last[0] >= 2.0 or p.done == p.total:
            last[0] = now
            print("  " + p.line(), file=sys.stderr, flush=True)

    try:
        run = run_study(study, out, resume=a.resume, jobs=a.jobs, backend=a.backend,
                        scheduler=a.scheduler, progress=progress, limit=a.limit)
    except KeyboardInterrupt:
        print(f"interrupted: the points done are in {out}; continue with --resume",
              file=sys.stderr)
        return 130
    df = load(run.directory)
    counts = df["status"].value_counts().to_dict()
    best = front(df, study)
    names = [m for m, _ in study.objectives]
    plot = None
    if not a.no_plot and len(best) and len(names) >= 2:
        from simulator.explore.plots import pareto_scatter

        plot = pareto_scatter(df[df["status"] == "ok"], names,
                              [s for _, s in study.objectives], run.directory / "pareto.png",
                              title=study.name)
    axes = [x.name for x in study.axes]
    plots = [str(plot)] if plot else []
    if not a.no_plot and len(best):
        plots += _best_design_plots(study, df, best, run.directory)
    hv = _hypervolume(df, study)
    sens = _sensitivity(study, df, run.directory, plot=not a.no_plot)
    if a.json:
        print(json.dumps({"study": study.name, "directory": str(run.directory),
                          "points": int(len(df)), "evaluated": run.evaluated,
                          "resumed": run.resumed, "status": counts, "hypervolume": hv,
                          "front": json.loads(best[["point_id", *axes, *names]]
                                              .to_json(orient="records")),
                          "plot": str(plot) if plot else None, "plots": plots,
                          "sensitivity": sens}))
        return 0
    print(f"{study.name}: {len(df):,} points in {run.directory} ({run.evaluated:,} evaluated "
          f"now in {run.wall_s:.1f} s, {run.resumed:,} stored before); "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if sens is not None:
        for metric, ranks in sens["ranking"].items():
            print(f"which axes matter for {metric} (Morris mu*, relative): "
                  + ", ".join(f"{ax} {r:.2f}" for ax, r in ranks))
        if sens.get("error"):
            print(f"sensitivity: {sens['error']}")
    if not len(best):
        print("no feasible point: see the status and error columns of points.csv")
        return 1
    print(f"Pareto front of {', '.join(f'{m} ({s})' for m, s in study.objectives)}: "
          f"{len(best)} point(s)" + (f", hypervolume {hv:.4g}" if hv is not None else ""))
    show = best.sort_values(names[0], ascending=study.objectives[0][1] == "min").head(a.top)
    cols = [*axes, *names]
    rows = [[_fmt(r[c]) for c in cols] for _, r in show.iterrows()]
    w = [max(len(c), *(len(x[i]) for x in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(k) for c, k in zip(cols, w, strict=True)))
    for x in rows:
        print("  ".join(v.rjust(k) for v, k in zip(x, w, strict=True)))
    if plots:
        print("plots: " + ", ".join(plots))
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "-"
    return str(v)


def _hypervolume(df: Any, study) -> float | None:
    """The front's hypervolume against the nadir of the feasible points (pushed out 10%)."""
    from simulator.explore.pareto import default_reference, hypervolume

    ok = df[df["status"] == "ok"]
    if ok.empty:
        return None
    names = [m for m, _ in study.objectives]
    senses = [s for _, s in study.objectives]
    vals = ok[names].to_numpy(dtype=float)
    try:
        return float(hypervolume(vals, senses, default_reference(vals, senses)))
    except ValueError:
        return None


def _sensitivity(study, df: Any, directory, *, plot: bool) -> dict[str, Any] | None:
    """Morris indices of a ``morris`` study (per objective: mu*, sigma per axis; a ranking),
    with a bar chart per objective; None for other searches."""
    if study.method != "morris":
        return None
    from simulator.errors import HwsimError
    from simulator.explore.sensitivity import morris_indices, ranking

    try:
        idx = morris_indices(study, df)
    except HwsimError as e:
        return {"indices": {}, "ranking": {}, "error": str(e)}
    out = {"indices": {m: {ax: {"mu_star": mu, "sigma": sd} for ax, (mu, sd) in v.items()}
                       for m, v in idx.items()},
           "ranking": {m: ranking(v) for m, v in idx.items()}, "plots": []}
    if plot:
        from simulator.explore.plots import sensitivity_bars

        for m, v in idx.items():
            path = directory / f"sensitivity-{m}.png"
            sensitivity_bars(dict(ranking(v)), path,
                             title=f"{study.name}: which axes matter for {m} (Morris mu*)")
            out["plots"].append(str(path))
    return out


def _best_design_plots(study, df: Any, best: Any, directory) -> list[str]:
    """The feasible points' parallel coordinates (the front highlighted), and the best
    design's roofline and time breakdown (best by the first objective; its first workload
    simulated again)."""
    from simulator.arch.loader import load_arch
    from simulator.explore.plots import parallel_coordinates
    from simulator.plan import make_plan
    from simulator.predict import Predictor
    from simulator.results.plots import breakdown_plot, roofline_plot

    out = []
    ok = df[df["status"] == "ok"].drop_duplicates("point_id")
    names = [m for m, _ in study.objectives]
    cols = [x.name for x in study.axes if ok[x.name].dtype.kind in "if"] + names
    if len(ok) > 1 and len(cols) > 1:
        out.append(str(parallel_coordinates(ok, cols, directory / "parallel.png",
                                            highlight=ok.index.isin(best.index))))
    m, sense = study.objectives[0]
    top = best.sort_values(m, ascending=sense == "min").iloc[0]
    point = {x.name: _axis_value(x, top[x.name]) for x in study.axes}
    system = load_arch(study.arch_of(point), study.spec_overrides(point))
    w = study.workloads[0]
    kw = {**w.options, **study.run_options(point)}
    timing = kw.pop("timing", None)
    plan = make_plan(w.workload, system, **kw)
    r = Predictor(system, timing=timing).run(plan)
    label = "\n".join(", ".join(f"{k}={v}" for k, v in list(point.items())[i:i + 2])
                      for i in range(0, len(point), 2))
    out.append(str(roofline_plot(r, system.device, directory / "best-roofline.png",
                                 dtype=r.meta["dtype"],
                                 title=f"best by {m} ({w.workload}):\n{label}")))
    out.append(str(breakdown_plot(r, directory / "best-breakdown.png",
                                  title=f"best by {m} ({w.workload}):\n{label}")))
    return out


def _axis_value(axis, cell: Any) -> Any:
    """A DataFrame cell back to the axis value the study gave (None: a conditional axis
    not set on this point)."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return None
    for v in axis.values:
        if v == cell or str(v) == str(cell):
            return v
    if axis.continuous is not None and axis.continuous[3]:
        return int(cell)
    return cell.item() if hasattr(cell, "item") else cell
