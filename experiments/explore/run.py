"""Run the example studies of experiments/explore/ and write their results and plots.

    python experiments/explore/run.py                 # every study here, fresh
    python experiments/explore/run.py --only bert-families

Each study goes to results/<name>/ (points.csv, manifest.json, pareto.png, and for grids a
parallel-coordinates plot of the feasible points with the front highlighted; for Morris the
sensitivity bars); results/summary.json holds each study's front and hypervolume.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_one(path: Path, out: Path) -> dict:
    from simulator.cli import main
    from simulator.explore import front, load, load_study
    from simulator.explore.plots import parallel_coordinates

    if out.exists():
        shutil.rmtree(out)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["explore", str(path), "--out", str(out), "--json", "--top", "20"])
    if code != 0:
        raise SystemExit(f"{path.name}: hwsim explore exited {code}")
    summary = json.loads(buf.getvalue())
    study = load_study(path)
    df = load(out)
    ok = df[df["status"] == "ok"]
    if study.method == "grid" and len(ok) > 1:
        best = front(df, study)
        cols = [a.name for a in study.axes if ok[a.name].dtype.kind in "if"] + \
            [m for m, _ in study.objectives]
        parallel_coordinates(ok, cols, out / "parallel.png",
                             highlight=ok.index.isin(best.index))
        summary["parallel_plot"] = str(out / "parallel.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="one study name (the YAML file's stem)")
    args = ap.parse_args(argv)
    studies = sorted(HERE.glob("*.yaml"))
    if args.only:
        studies = [p for p in studies if p.stem == args.only]
    results = {}
    for p in studies:
        print(f"{p.stem} ...", flush=True)
        results[p.stem] = run_one(p, HERE / "results" / p.stem)
        s = results[p.stem]
        print(f"  {s['points']} points, {s['status']}, front of {len(s['front'])}", flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    summary = HERE / "results" / "summary.json"
    old = json.loads(summary.read_text()) if summary.exists() and args.only else {}
    old.update(results)
    rel = {k: json.loads(json.dumps(v).replace(str(HERE) + "/", "")) for k, v in old.items()}
    summary.write_text(json.dumps(rel, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
