"""Run a study: the points not stored yet, evaluated on a backend (here, local processes, a
Dask cluster), each row stored as it completes, with progress (rate and time left).

Grid, random and Morris studies evaluate a fixed list of points, so a resumed study ends with
exactly the points of an uninterrupted one. NSGA-II and TPE studies ask optuna for each next
point from the history told so far (:mod:`simulator.explore.optimize`); a resume replays the
stored rows in their order, which gives the same next points when one point is evaluated at
a time (``jobs`` 1); with more, the order rows complete in shapes the history.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.explore.design import design_points
from simulator.explore.evaluate import evaluate_point
from simulator.explore.store import StudyStore, load, stored_rows
from simulator.explore.study import ADAPTIVE, Study, load_study, point_id
from simulator.workers import make_backend

__all__ = ["run_study", "StudyRun", "Progress", "CHUNK_POINTS"]

#: Most points one task evaluates on a worker process or a Dask worker.
CHUNK_POINTS = 16


@dataclass(frozen=True)
class Progress:
    """Where a run stands: points done (this run and before), in all, rate, time left."""

    done: int
    total: int
    resumed: int
    rate_per_s: float
    eta_s: float

    def line(self) -> str:
        eta = f"{self.eta_s:,.0f} s left" if self.eta_s == self.eta_s else "estimating"
        return (f"explore: {self.done:,}/{self.total:,} points ({self.rate_per_s:,.1f}/s, "
                f"{eta})")


@dataclass(frozen=True)
class StudyRun:
    """A finished (or stopped at ``limit``) study: its directory and its points."""

    study: Study
    directory: Path
    evaluated: int   # this run
    resumed: int     # stored before this run
    wall_s: float

    def dataframe(self) -> Any:
        return load(self.directory)


def _evaluate(study: Study, pid: str, point: dict[str, Any]) -> dict[str, Any]:
    """One point's row (a module-level function: worker processes and Dask import it)."""
    row = evaluate_point(study, point)
    row.update(point_id=pid, **point)
    return row


def _evaluate_chunk(study: Study, chunk: list[tuple[str, dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
    """Several points' rows in one task: a task's round trip (pickling the study, the
    scheduler) costs ~8 ms on Dask, as much as a small point."""
    return [_evaluate(study, pid, p) for pid, p in chunk]


def run_study(study: Study | str | os.PathLike, out: str | os.PathLike | None = None, *,
              resume: bool = False, jobs: int = 1, backend: str = "local",
              scheduler: str | None = None,
              progress: Callable[[Progress], None] | None = None,
              limit: int | None = None) -> StudyRun:
    """Evaluate every point of ``study`` not yet in ``out`` (default: ``<study>.explore``
    next to the study file), storing each row as it completes.

    ``backend`` "local" runs ``jobs`` worker processes (1: in this process); "dask" a
    LocalCluster of ``jobs`` workers, or the cluster of ``scheduler`` (``tcp://host:8786``).
    ``limit`` stops after that many new points (a later ``resume`` goes on)."""
    s = study if isinstance(study, Study) else load_study(study)
    directory = Path(out) if out is not None else s.path.with_suffix(".explore")
    pool = make_backend(backend, jobs, scheduler)
    try:
        store = StudyStore(directory, s, resume=resume)
        t0 = time.perf_counter()
        if s.method in ADAPTIVE:
            done, resumed, total = _run_adaptive(s, store, pool, progress, limit, t0)
        else:
            done, resumed, total = _run_fixed(s, store, pool, progress, limit, t0)
    finally:
        pool.close()
    return StudyRun(s, directory, done, resumed, time.perf_counter() - t0)


def _tell(progress: Callable[[Progress], None] | None, t0: float, done: int, todo: int,
          resumed: int, total: int) -> None:
    if progress is None:
        return
    el = time.perf_counter() - t0
    rate = done / el if el > 0 else 0.0
    progress(Progress(resumed + done, total, resumed, rate,
                      (todo - done) / rate if rate > 0 else float("nan")))


def _run_fixed(s: Study, store: StudyStore, pool: Any, progress: Any, limit: int | None,
               t0: float) -> tuple[int, int, int]:
    points = list(dict((point_id(p), p) for p in design_points(s)).items())  # distinct, in order
    stored = store.done()
    todo = [(pid, p) for pid, p in points if pid not in stored]
    resumed = len(points) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    done = 0
    # chunks of points per task on worker processes (a few chunks per worker in flight, so
    # rows are stored often); one point at a time in this process
    size = 1 if pool.slots == 1 and pool.name == "inline" else \
        max(1, min(CHUNK_POINTS, len(todo) // (8 * pool.slots)))
    queue = [todo[i:i + size] for i in range(0, len(todo), size)]
    inflight: set[Any] = set()
    while queue or inflight:
        while queue and len(inflight) < 2 * pool.slots:
            inflight.add(pool.submit(_evaluate_chunk, s, queue.pop(0)))
        finished, inflight = pool.wait_any(inflight)
        rows = [r for f in finished for r in f.result()]
        store.append(rows)
        done += len(rows)
        _tell(progress, t0, done, len(todo), resumed, len(points))
    return done, resumed, len(points)


def _run_adaptive(s: Study, store: StudyStore, pool: Any, progress: Any, limit: int | None,
                  t0: float) -> tuple[int, int, int]:
    from simulator.explore.optimize import OptunaSearch

    search = OptunaSearch(s)
    history = stored_rows(store, s)
    search.replay(history)
    rows_by_id = {point_id(p): r for p, r in history}
    total = int(s.samples or 0)
    resumed = len(history)
    budget = total - resumed if limit is None else min(limit, total - resumed)
    done = asked = 0
    inflight: dict[Any, dict[str, Any]] = {}
    while asked < budget or inflight:
        while asked < budget and len(inflight) < pool.slots:
            p = search.ask()
            asked += 1
            pid = point_id(p)
            if pid in rows_by_id:  # asked again: its row answers, stored again as this trial's
                row = dict(rows_by_id[pid], **p)
                search.tell(p, row)
                store.append([row])
                done += 1
                continue
            inflight[pool.submit(_evaluate, s, pid, p)] = p
        if not inflight:
            continue
        finished, _ = pool.wait_any(inflight)
        rows = []
        for f in finished:
            p = inflight.pop(f)
            row = f.result()
            rows.append(row)
            rows_by_id[row["point_id"]] = row
            search.tell(p, row)
        store.append(rows)
        done += len(rows)
        _tell(progress, t0, done, budget, resumed, total)
    return done, resumed, total
