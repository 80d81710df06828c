"""Design-space exploration: studies as files, searched, stored as they run, and their
Pareto fronts (``hwsim explore study.yaml``).

>>> from simulator.explore import load_study, run_study, load  # doctest: +SKIP
>>> run = run_study(load_study("experiments/explore/h100-decode.yaml"), jobs=2)  # doctest: +SKIP
>>> df = load(run.directory)  # doctest: +SKIP
"""

from simulator.explore.run import Progress, StudyRun, run_study
from simulator.explore.store import load
from simulator.explore.study import Study, StudyError, load_study

__all__ = ["Study", "StudyError", "load_study", "run_study", "StudyRun", "Progress", "load",
           "front"]


def front(df, study: Study):
    """The rows of ``df`` (from :func:`load`) on the Pareto front of the study's objectives,
    among the feasible points (status ok), each point once (an adaptive search may have
    asked for a point twice)."""
    from simulator.explore.pareto import pareto_mask

    ok = df[df["status"] == "ok"].drop_duplicates("point_id")
    names = [m for m, _ in study.objectives]
    senses = [s for _, s in study.objectives]
    if ok.empty:
        return ok
    return ok[pareto_mask(ok[names].to_numpy(dtype=float), senses)]
