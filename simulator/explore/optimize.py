"""Adaptive multi-objective search by optuna (NSGA-II or TPE), asked and told one point at a time.

:class:`OptunaSearch` never runs an objective itself: :meth:`~OptunaSearch.ask` proposes a
design point, whoever evaluates it (a worker process, a Dask cluster) hands the row back to
:meth:`~OptunaSearch.tell`, and a resumed study :meth:`~OptunaSearch.replay` s its stored rows.

Determinism (what makes a resume exact): the next point is a pure function of the study file
and of the history -- the rows told, in the order told, and the points asked and not told yet
-- in any process. ``ask`` asks an in-memory optuna study holding the told trials in told
order, then the pending points as running trials, with a fresh sampler seeded from
``(study.seed, trials told, points pending)``. That study is built from the history, and kept
between asks only while it stays equal to a rebuilt one (rows told oldest-first are finished
in place; a tell out of order drops it); a test checks the two ask alike. So a run killed
after k rows and replayed asks the same next points as one never stopped (exactly so when
points are evaluated one at a time; with several in flight, the order rows come back in is
part of the history). NSGA-II's generations come from the history too: the completed trials,
in told order, in chunks of :func:`population_size`.

How rows become trials:

* ``ok``: a complete trial with the objective values;
* ``infeasible`` (a constraint fails): a complete trial with its values and one constraint
  violation per study constraint (0 when it holds, else by how much it fails relative to its
  bound). Optuna 5 samplers read these from the trial itself (``Trial.set_constraint``; the
  ``constraints_func`` argument is deprecated), NSGA-II and TPE alike, preferring feasible
  points and, among infeasible ones, smaller violations;
* ``does_not_fit``, ``error``, or any objective missing or not finite: a failed trial, which
  both samplers leave out of what they learn from.

A point told a second time (asked again, or stored twice) is folded into its first row, so the
history matches what the store holds. ``ask`` avoids points told or pending: it asks the
sampler again a few times and then draws at random, and repeats one only when it cannot find
another (a small discrete space all explored).
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import HwsimError
from simulator.explore.study import Axis, Study, point_id

__all__ = ["OptunaSearch", "METHODS", "population_size"]

#: Search methods this module runs.
METHODS = ("nsga2", "tpe")
_OK = ("ok", "infeasible")
_SAMPLER_TRIES = 8      # sampler proposals per ask before drawing at random
_RANDOM_TRIES = 200     # random draws before accepting a point already seen


def population_size(samples: int | None) -> int:
    """NSGA-II's population: a tenth of the trials, so a study sees about ten generations
    (on an 80-trial toy problem ten of 8 beat five of 16), between 8 (fewer gives the
    crossover too little to mix) and 50 (optuna's default)."""
    return min(50, max(8, int(samples or 0) // 10))


def _seed(*parts: Any) -> int:
    blob = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")


@dataclass
class _Cache:
    """An optuna study equal to what :meth:`OptunaSearch._build` would make from the history
    and the pending points now, kept between asks so that each does not copy every trial."""

    study: Any
    storage: Any
    study_id: int
    running: list[int]  # trial numbers of the pending points, in the order asked


class OptunaSearch:
    """Multi-objective search by optuna (NSGA-II or TPE), ask/tell so points can be evaluated
    anywhere."""

    def __init__(self, study: Study):
        if study.method not in METHODS:
            raise HwsimError(f"{study.name}: search method {study.method!r} is not an optuna "
                             f"search (expected one of {', '.join(METHODS)})")
        if not study.objectives:
            raise HwsimError(f"{study.name}: an {study.method} search needs an objective")
        if not study.axes:
            raise HwsimError(f"{study.name}: an {study.method} search needs an axis")
        try:
            import optuna
        except ImportError:
            raise HwsimError(f"{study.name}: search method {study.method} needs optuna: "
                             "pip install optuna") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.study = study
        self._directions = ["minimize" if s == "min" else "maximize"
                            for _, s in study.objectives]
        self._dists = {a.name: self._distribution(a) for a in study.axes}
        self._pop = population_size(study.samples)
        self._nsga2 = _nsga2_sampler(optuna)
        # NSGA-II reads each complete trial's generation from this attribute
        self._generation_key = self._nsga2._get_generation_key()
        self._history: list[Any] = []          # FrozenTrial templates, in told order
        self._told_ids: set[str] = set()
        self._completed = 0                    # complete trials in the history
        self._pending: list[tuple[str, dict[str, Any]]] = []  # (point id, params), asked order
        self._told = 0
        self._cache: _Cache | None = None     # what _build would make now, kept

    # -- the search space -------------------------------------------------------------------
    def _distribution(self, a: Axis) -> Any:
        d = self._optuna.distributions
        if a.continuous is None:  # a list of values: their indices, any type of value
            return d.CategoricalDistribution(tuple(range(len(a.values))))
        lo, hi, log, integer = a.continuous  # a range (steps or not): sampled, as random does
        if integer:
            return d.IntDistribution(math.ceil(lo), math.floor(hi), log=log)
        return d.FloatDistribution(lo, hi, log=log)

    def _to_param(self, a: Axis, value: Any) -> Any:
        """A point's value as optuna's parameter: an index, or the number itself."""
        if a.continuous is None:
            for i, v in enumerate(a.values):
                if type(v) is type(value) and v == value:
                    return i
            for i, v in enumerate(a.values):  # a value that went through text (a stored row)
                x = _number(v)
                if str(v) == str(value) or (x is not None and x == _number(value)):
                    return i
            raise HwsimError(f"{self.study.name}: axes.{a.name}: {value!r} is not one of its "
                             f"values {list(a.values)!r}")
        x = _number(value)
        lo, hi, _, integer = a.continuous
        tol = 1e-9 * max(abs(lo), abs(hi))
        if x is None or not lo - tol <= x <= hi + tol:
            raise HwsimError(f"{self.study.name}: axes.{a.name}: {value!r} is outside its "
                             f"range [{lo:g}, {hi:g}]")
        return int(round(x)) if integer else min(max(x, lo), hi)

    def _to_value(self, a: Axis, param: Any) -> Any:
        """Optuna's parameter as the point's value (a float as sampled: a stored row's text
        gives it back exactly, and so does a replay)."""
        if a.continuous is None:
            return a.values[int(param)]
        return int(param) if a.continuous[3] else float(param)

    def _point(self, params: dict[str, Any]) -> dict[str, Any]:
        return {a.name: self._to_value(a, params[a.name]) for a in self.study.axes}

    def _params(self, point: dict[str, Any]) -> dict[str, Any]:
        missing = [a.name for a in self.study.axes if a.name not in point]
        if missing:
            raise HwsimError(f"{self.study.name}: a point without axes {', '.join(missing)}")
        return {a.name: self._to_param(a, point[a.name]) for a in self.study.axes}

    # -- telling --------------------------------------------------------------------------------
    @property
    def told(self) -> int:
        """Rows told (replayed ones included; a point told again counts again)."""
        return self._told

    def replay(self, rows: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Tell back (point, row) pairs stored by an earlier run, in their stored order."""
        for point, row in rows:
            self.tell(point, row)

    def tell(self, point: dict[str, Any], row: dict[str, Any]) -> None:
        """The row of a point (asked or not, in any order): its trial joins the history."""
        params = self._params(point)
        pid = point_id(point)
        at = next((i for i, (q, _) in enumerate(self._pending) if q == pid), None)
        if at is not None:
            del self._pending[at]
        self._told += 1
        if pid in self._told_ids:  # told before: the history keeps its first row
            self._cache = None if at is not None else self._cache
            return
        self._told_ids.add(pid)
        trial = self._trial(params, row)
        self._history.append(trial)
        self._update_cache(trial, at)

    def _update_cache(self, trial: Any, at: int | None) -> None:
        """Keep the cached optuna study equal to what :meth:`_build` would make now: the
        oldest pending trial finished in place, or a trial not asked added while none is
        pending; anything else (a tell out of order) drops it, to be rebuilt."""
        c = self._cache
        if c is None:
            return
        if at is None and not c.running:
            c.study.add_trial(trial)
        elif at == 0 and c.running:
            tid = c.storage.get_trial_id_from_study_id_trial_number(c.study_id, c.running[0])
            for k, v in trial.system_attrs.items():
                c.storage.set_trial_system_attr(tid, k, v)
            c.storage.set_trial_state_values(tid, trial.state, trial.values)
            del c.running[0]
        else:
            self._cache = None

    def _trial(self, params: dict[str, Any], row: dict[str, Any]) -> Any:
        optuna = self._optuna
        values = [_number(row.get(m)) for m, _ in self.study.objectives]
        ok = row.get("status") in _OK and all(v is not None and math.isfinite(v)
                                               for v in values)
        if not ok:
            return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                             distributions=self._dists)
        generation = self._completed // self._pop
        self._completed += 1
        return optuna.trial.create_trial(
            values=values, params=params, distributions=self._dists,
            constraints=self._violations(row) if self.study.constraints else None,
            system_attrs={self._generation_key: generation})

    def _violations(self, row: dict[str, Any]) -> dict[str, float]:
        """Per constraint, 0 if it holds, else how far it fails relative to its bound."""
        out = {}
        for i, c in enumerate(self.study.constraints):
            v = _number(row.get(c.metric))
            if v is not None and c.holds(v):
                out[f"c{i}"] = 0.0
            elif v is None or not math.isfinite(v):
                out[f"c{i}"] = 1.0
            else:
                scale = abs(c.bound) if c.bound != 0 else max(abs(v), 1.0)
                excess = v - c.bound if c.op in ("<", "<=") else c.bound - v
                out[f"c{i}"] = max(excess / scale, 1e-9)
        if row.get("status") == "infeasible" and not any(out.values()):
            out["infeasible"] = 1.0  # the row says so, though its values pass here
        return out

    # -- asking ---------------------------------------------------------------------------------
    def _sampler(self, seed: int) -> Any:
        samplers = self._optuna.samplers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's experimental-feature warnings
            if self.study.method == "nsga2":
                return self._nsga2(population_size=self._pop, seed=seed)
            return samplers.TPESampler(multivariate=True, seed=seed)

    def _build(self, sampler: Any) -> _Cache:
        """A fresh in-memory optuna study holding the history, then the pending points."""
        optuna = self._optuna
        storage = optuna.storages.InMemoryStorage()
        s = optuna.create_study(storage=storage, directions=self._directions, sampler=sampler)
        running = [optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                             params=p, distributions=self._dists)
                   for _, p in self._pending]
        s.add_trials([*self._history, *running])
        return _Cache(s, storage, storage.get_study_id_from_name(s.study_name),
                      list(range(len(self._history), len(self._history) + len(running))))

    def to_optuna(self) -> Any:
        """The told history as an optuna study (to inspect or plot; pending points left out)."""
        s = self._optuna.create_study(directions=self._directions,
                                      sampler=self._sampler(self.study.seed))
        s.add_trials(self._history)
        return s

    def ask(self) -> dict[str, Any]:
        """The next point to evaluate: axis name -> value (a discrete axis: one of its values,
        exactly as given; a continuous one: a number in its range, int if integer,
        log-uniform if log)."""
        seed = _seed("hwsim-optuna", self.study.method, self.study.seed, len(self._history),
                     len(self._pending))
        seen = self._told_ids | {q for q, _ in self._pending}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = self._sampler(seed)
            if self._cache is None:
                self._cache = self._build(sampler)
            else:  # the same trials as a rebuilt study, asked by a fresh sampler
                self._cache.study.sampler = sampler
            c = self._cache
            point: dict[str, Any] = {}
            for attempt in range(_SAMPLER_TRIES):  # one sampler, so each proposal differs
                trial = c.study.ask(self._dists)
                point = self._point(trial.params)
                if point_id(point) not in seen:
                    if attempt == 0:
                        c.running.append(trial.number)
                    else:  # the proposals refused are running trials in it: drop it
                        self._cache = None
                    return self._asked(point)
        self._cache = None
        rng = random.Random(seed)
        for _ in range(_RANDOM_TRIES):
            p = self._point({n: d.to_external_repr(_draw(d, rng)) for n, d in self._dists.items()})
            if point_id(p) not in seen:
                return self._asked(p)
        return self._asked(point)  # every point tried is known: the space is (nearly) all seen

    def _asked(self, point: dict[str, Any]) -> dict[str, Any]:
        self._pending.append((point_id(point), self._params(point)))
        return point


_NSGA2: Any = None


def _nsga2_sampler(optuna: Any) -> Any:
    """optuna's NSGA-II, handing a generation's parents back in trial order always (optuna's
    own does so when it reads them from its cache, in the order selected when it selects
    them: a study kept between asks and a rebuilt one would mate other parents)."""
    global _NSGA2
    if _NSGA2 is None:
        class HwsimNSGAII(optuna.samplers.NSGAIISampler):  # type: ignore[misc, name-defined]
            def get_parent_population(self, study: Any, generation: int) -> list[Any]:
                parents = super().get_parent_population(study, generation)
                return sorted(parents, key=lambda t: t.number)

        _NSGA2 = HwsimNSGAII
    return _NSGA2


def _draw(d: Any, rng: random.Random) -> float:
    """A uniform draw (log-uniform for a log range) from an optuna distribution, internal."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(d, CategoricalDistribution):
        return float(rng.randrange(len(d.choices)))
    lo, hi = float(d.low), float(d.high)
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if d.log else rng.uniform(lo, hi)
    return float(min(max(round(x), d.low), d.high)) if isinstance(d, IntDistribution) else x


def _number(v: Any) -> float | None:
    """A value as a float, or None (missing, not a number, a bool)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
