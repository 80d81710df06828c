"""The points a study evaluates, by its search method: the grid's product or seeded random
draws (:meth:`Study.points`), the Morris elementary-effects design
(:mod:`simulator.explore.sensitivity`), or none fixed in advance (NSGA-II, TPE: asked one by
one, :mod:`simulator.explore.optimize`)."""

from __future__ import annotations

from typing import Any

from simulator.explore.study import ADAPTIVE, Study, point_id

__all__ = ["design_points", "design_size", "describe"]


def design_points(study: Study) -> list[dict[str, Any]]:
    """Every point of a fixed design, in its order (repeats included for Morris); [] for an
    adaptive search."""
    if study.method == "morris":
        from simulator.explore.sensitivity import morris_points

        return morris_points(study)
    if study.method in ADAPTIVE:
        return []
    return study.points()


def design_size(study: Study) -> int:
    """Distinct points (or trials) the search evaluates."""
    if study.method == "grid":
        return study.grid_size()
    if study.method == "morris":
        return len({point_id(p) for p in design_points(study)})
    return int(study.samples or 0)


def describe(study: Study) -> str:
    """One line: what the study varies and how many points it evaluates."""
    return (f"{study.name}: {len(study.axes)} axes ({', '.join(a.name for a in study.axes)}) "
            f"over {len(study.workloads)} workload(s), {study.method} search of "
            f"{design_size(study):,} points, objectives "
            f"{', '.join(f'{m} ({s})' for m, s in study.objectives)}")
