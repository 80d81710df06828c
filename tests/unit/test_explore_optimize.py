"""OptunaSearch: exact resume, points in the domain, failed rows as failed trials, quality."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optuna")

from simulator.errors import HwsimError  # noqa: E402
from simulator.explore.optimize import OptunaSearch, population_size  # noqa: E402
from simulator.explore.pareto import hypervolume, pareto_mask  # noqa: E402
from simulator.explore.study import Axis, Constraint, Study, point_id  # noqa: E402

OBJECTIVES = (("latency_s", "min"), ("throughput", "max"))
SENSES = [s for _, s in OBJECTIVES]
BW = ("1 TB/s", "2 TB/s", "3 TB/s")  # a discrete axis of text values


def make_study(method: str, axes: tuple[Axis, ...], samples: int = 30, seed: int = 0,
               constraints: tuple[Constraint, ...] = ()) -> Study:
    return Study(name="toy", path=Path("toy.yaml"), base="h100-sxm", workloads=(), axes=axes,
                 objectives=OBJECTIVES, constraints=constraints, method=method,
                 samples=samples, seed=seed)


MIXED = (
    Axis("memory.hbm.bandwidth", BW, True),
    Axis("batch", (1, 2, 4, 8, 16), False),
    Axis("compute.clock", (), True, (0.5, 2.0, False, False)),
    Axis("memory.hbm.capacity", (), True, (1.0, 1e4, True, False)),
    Axis("compute.tensor_core.count", (), True, (16.0, 256.0, True, True)),
)
POWER = (Constraint("avg_power_w", "<=", 5.0, "avg_power_w <= 5"),)


def fake_row(point: dict[str, Any]) -> dict[str, Any]:
    """A deterministic evaluation with every status: failures, infeasible points, ok ones."""
    bw = BW.index(point["memory.hbm.bandwidth"]) + 1
    b, clock = point["batch"], point["compute.clock"]
    cap, cores = point["memory.hbm.capacity"], point["compute.tensor_core.count"]
    if b == 16 and bw == 1:
        return {"status": "does_not_fit", "error": "no room"}
    if cores > 240:
        return {"status": "error", "error": "boom", "latency_s": math.nan}
    lat = 1.0 / (bw * clock) + math.log10(cap) / 10 + 1.0 / cores
    row = {"status": "ok", "error": "", "latency_s": lat, "throughput": b * clock * bw,
           "avg_power_w": clock * bw}
    if row["avg_power_w"] > 5.0:
        row["status"] = "infeasible"
    return row


def drive(search: OptunaSearch, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Ask and tell ``n`` points one at a time."""
    out = []
    for _ in range(n):
        p = search.ask()
        r = fake_row(p)
        search.tell(p, r)
        out.append((p, r))
    return out


@pytest.mark.parametrize("method", ["nsga2", "tpe"])
def test_resume_replays_to_the_same_points(method: str) -> None:
    study = make_study(method, MIXED, samples=40, seed=7, constraints=POWER)  # population 8
    whole = drive(OptunaSearch(study), 30)
    first = drive(OptunaSearch(study), 12)  # a run killed after 12 rows
    resumed = OptunaSearch(study)  # a new process: the stored rows replayed
    resumed.replay(first)
    assert resumed.told == 12
    rest = drive(resumed, 18)
    assert [p for p, _ in first + rest] == [p for p, _ in whole]
    assert len({point_id(p) for p, _ in whole}) == 30  # no point asked twice
    statuses = {r["status"] for _, r in whole}
    assert {"ok", "infeasible"} <= statuses  # the replayed history held both kinds
    # another seed: another search
    other = drive(OptunaSearch(make_study(method, MIXED, samples=40, seed=8,
                                          constraints=POWER)), 30)
    assert [p for p, _ in other] != [p for p, _ in whole]


@pytest.mark.parametrize("method", ["nsga2", "tpe"])
def test_points_lie_in_the_axes_domains(method: str) -> None:
    search = OptunaSearch(make_study(method, MIXED, samples=40))
    pts = [p for p, _ in drive(search, 40)]
    for p in pts:
        assert list(p) == [a.name for a in MIXED]
        assert p["memory.hbm.bandwidth"] in BW and isinstance(p["memory.hbm.bandwidth"], str)
        assert p["batch"] in (1, 2, 4, 8, 16) and type(p["batch"]) is int
        assert isinstance(p["compute.clock"], float) and 0.5 <= p["compute.clock"] <= 2.0
        assert 1.0 <= p["memory.hbm.capacity"] <= 1e4
        cores = p["compute.tensor_core.count"]
        assert type(cores) is int and 16 <= cores <= 256
    # every value of a small discrete axis comes up, and ranges are used, not one spot
    assert {p["memory.hbm.bandwidth"] for p in pts} == set(BW)
    assert len({p["compute.clock"] for p in pts}) > 10
    dists = search.to_optuna().trials[0].distributions
    assert dists["memory.hbm.capacity"].log and not dists["compute.clock"].log
    assert dists["compute.tensor_core.count"].log and dists["compute.tensor_core.count"].step == 1


def test_failed_rows_are_failed_trials_and_infeasible_ones_carry_violations() -> None:
    from optuna.trial import TrialState

    search = OptunaSearch(make_study("nsga2", MIXED, constraints=POWER))
    p = search.ask()
    rows = [
        {"status": "does_not_fit", "error": "no room"},
        {"status": "error", "error": "boom", "latency_s": 1.0, "throughput": 2.0},
        {"status": "ok", "error": "", "latency_s": math.nan, "throughput": 2.0},
        {"status": "ok", "error": "", "latency_s": 1.0},  # an objective missing
        {"status": "ok", "error": "", "latency_s": 1.0, "throughput": 2.0, "avg_power_w": 4.0},
        {"status": "infeasible", "error": "constraint fails: avg_power_w <= 5",
         "latency_s": 1.0, "throughput": 2.0, "avg_power_w": 7.5},
    ]
    points = [p] + [search.ask() for _ in rows[1:]]
    assert len({point_id(q) for q in points}) == len(points)
    for q, r in zip(points, rows):
        search.tell(q, r)
    trials = search.to_optuna().trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 4 + [TrialState.COMPLETE] * 2
    assert trials[4].values == [1.0, 2.0] and trials[4].constraints == {"c0": 0.0}
    assert trials[5].constraints == {"c0": pytest.approx(0.5)}  # 2.5 W over a 5 W bound
    search.ask()  # and the search goes on from such a history


def test_batches_asked_before_telling_and_told_out_of_order() -> None:
    study = make_study("tpe", MIXED, samples=40, seed=3)

    def run() -> list[dict[str, Any]]:
        search = OptunaSearch(study)
        asked = []
        for _ in range(3):
            batch = [search.ask() for _ in range(6)]
            asked += batch
            for q in reversed(batch):
                search.tell(q, fake_row(q))
        assert search.told == 18
        assert search.to_optuna().trials[0].params["compute.clock"] == asked[5]["compute.clock"]  # told order
        return asked

    a, b = run(), run()
    assert a == b
    assert len({point_id(p) for p in a}) == 18  # pending points are not asked twice


@pytest.mark.parametrize("method", ["nsga2", "tpe"])
def test_the_kept_study_asks_as_a_rebuilt_one(method: str) -> None:
    """Between asks the search keeps its optuna study, updated in place; it must ask exactly
    what a study rebuilt from the history would, whatever the order of asks and tells."""
    study = make_study(method, MIXED, samples=40, seed=5, constraints=POWER)
    kept, rebuilt = OptunaSearch(study), OptunaSearch(study)
    rng = random.Random(1)
    pending: list[dict[str, Any]] = []
    for _ in range(70):
        if len(pending) < 4 and (not pending or rng.random() < 0.6):
            rebuilt._cache = None  # force a rebuild on every ask
            p = kept.ask()
            assert rebuilt.ask() == p
            pending.append(p)
        else:  # mostly the oldest first (the kept study's fast path), sometimes another
            p = pending.pop(0 if rng.random() < 0.7 else rng.randrange(len(pending)))
            kept.tell(p, fake_row(p))
            rebuilt.tell(p, fake_row(p))
    assert kept.told == rebuilt.told > 25


def test_small_space_is_explored_without_repeats_then_repeats() -> None:
    axes = (Axis("memory.hbm.bandwidth", BW, True), Axis("batch", (1, 2), False))
    search = OptunaSearch(make_study("nsga2", axes, samples=10))
    rows = {"status": "ok", "error": "", "latency_s": 1.0, "throughput": 1.0}
    seen = []
    for _ in range(6):
        p = search.ask()
        seen.append(point_id(p))
        search.tell(p, rows)
    assert len(set(seen)) == 6  # the whole space, each point once
    p = search.ask()  # nothing new is left: a known point, not a hang
    search.tell(p, rows)
    assert search.told == 7 and len(search.to_optuna().trials) == 6  # folded into its first


ZDT_AXES = (Axis("compute.clock", tuple(round(i / 20, 2) for i in range(21)), True),
            Axis("memory.hbm.capacity", tuple(round(i / 5, 1) for i in range(6)), True),
            Axis("batch", (1, 2, 3, 4, 5, 6), False))


def zdt_row(p: dict[str, Any]) -> dict[str, Any]:
    """ZDT1 on a 756-point grid: latency x, throughput 10 - g (1 - sqrt(x / g)), where g > 1
    off the front (capacity 0 and batch 1)."""
    x = p["compute.clock"]
    g = 1 + 1.5 * (p["memory.hbm.capacity"] + (p["batch"] - 1) / 5)
    return {"status": "ok", "error": "", "latency_s": x,
            "throughput": 10 - g * (1 - math.sqrt(x / g))}


def test_nsga2_finds_most_of_the_grid_front_hypervolume() -> None:
    names = [a.name for a in ZDT_AXES]
    grid = [dict(zip(names, c)) for c in itertools.product(*(a.values for a in ZDT_AXES))]

    def objectives(points: list[dict[str, Any]]) -> np.ndarray:
        return np.array([[zdt_row(p)[m] for m, _ in OBJECTIVES] for p in points])

    ref = [1.1, 10 - 1.1]  # just beyond the front's worst point in each objective
    values = objectives(grid)
    best = hypervolume(values[pareto_mask(values, SENSES)], SENSES, ref)
    assert population_size(80) == 8  # ten generations
    ratios, baseline = [], []
    for seed in range(5):
        search = OptunaSearch(make_study("nsga2", ZDT_AXES, samples=80, seed=seed))
        found = []
        for _ in range(80):
            p = search.ask()
            search.tell(p, zdt_row(p))
            found.append(p)
        ratios.append(hypervolume(objectives(found), SENSES, ref) / best)
        baseline.append(hypervolume(objectives(random.Random(seed).sample(grid, 80)), SENSES,
                                    ref) / best)
    assert np.mean(ratios) >= 0.8, ratios
    assert np.mean(ratios) > np.mean(baseline) + 0.05, (ratios, baseline)  # beats random


def test_unsupported_method_is_a_clear_error() -> None:
    with pytest.raises(HwsimError, match="'grid' is not an optuna search"):
        OptunaSearch(make_study("grid", MIXED))


def test_a_point_outside_the_axes_is_refused() -> None:
    search = OptunaSearch(make_study("tpe", MIXED))
    p = search.ask()
    with pytest.raises(HwsimError, match="not one of its values"):
        search.tell({**p, "batch": 3}, {"status": "ok"})
    with pytest.raises(HwsimError, match="outside its range"):
        search.tell({**p, "compute.clock": 9.0}, {"status": "ok"})


def test_importing_the_module_does_not_import_optuna() -> None:
    code = ("import sys, simulator.explore.optimize; "
            "sys.exit(1 if 'optuna' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
