"""explore.sensitivity: the Morris design over a study's axes and its elementary effects."""

import math

import numpy as np
import pandas as pd
import pytest

from simulator.errors import HwsimError
from simulator.explore.sensitivity import (
    morris_design,
    morris_indices,
    morris_points,
    num_levels,
    ranking,
)
from simulator.explore.study import Axis, Study, point_id

KINDS = ("a", "b", "c", "d", "e")
INT_LO, INT_HI = 1, 64
LOG_LO, LOG_HI = 40e9, 160e9


def _study(tmp_path, *, samples=10, seed=3, axes=None, objectives=(("latency_s", "min"),)):
    if axes is None:
        axes = (
            Axis("kind", KINDS, False),                                    # a list of strings
            Axis("batch", (), False, (float(INT_LO), float(INT_HI), False, True)),  # int range
            Axis("memory.hbm.capacity", (), True, (LOG_LO, LOG_HI, True, False)),   # log range
        )
    return Study(name="t", path=tmp_path / "t.yaml", base="h100-sxm", workloads=(),
                 axes=tuple(axes), objectives=tuple(objectives), constraints=(),
                 method="morris", samples=samples, seed=seed, raw={})


def _metric(p):
    """10 per step of kind, ~1 across the whole batch range, nothing from capacity."""
    return (10.0 * KINDS.index(p["kind"]) + (p["batch"] - INT_LO) / (INT_HI - INT_LO)
            + 0.0 * p["memory.hbm.capacity"])


def _table(study, metric=_metric):
    pts = {point_id(p): p for p in morris_points(study)}  # one row per distinct point
    rows = [{"point_id": pid, **p, "status": "ok", "latency_s": metric(p),
             "energy_j": 2.0 * metric(p)} for pid, p in pts.items()]
    return pd.DataFrame(rows)


def test_design_shape_levels_and_determinism(tmp_path):
    s = _study(tmp_path, samples=7)
    x, pts = morris_design(s)
    k = len(s.axes)
    assert x.shape == ((k + 1) * 7, k) and len(pts) == (k + 1) * 7
    assert num_levels(s) == 4
    assert set(np.round(x.ravel(), 9)) <= {0.0, round(1 / 3, 9), round(2 / 3, 9), 1.0}
    # each trajectory moves one axis at a time by the Morris step (2/3 on 4 levels)
    steps = np.abs(np.diff(x.reshape(7, k + 1, k), axis=1))
    assert np.all((steps > 1e-9).sum(axis=2) == 1)
    assert np.allclose(steps[steps > 1e-9], 2 / 3)
    x2, pts2 = morris_design(s)
    assert np.array_equal(x, x2) and pts == pts2 and morris_points(s) == pts
    x3, _ = morris_design(_study(tmp_path, samples=7, seed=4))
    assert not np.array_equal(x, x3)


def test_design_values_in_the_axes_domains(tmp_path):
    s = _study(tmp_path, samples=20)
    _, pts = morris_design(s)
    for p in pts:
        assert set(p) == {a.name for a in s.axes}
        assert p["kind"] in KINDS
        assert type(p["batch"]) is int and INT_LO <= p["batch"] <= INT_HI
        cap = p["memory.hbm.capacity"]
        assert type(cap) is float and LOG_LO <= cap <= LOG_HI
    # the ends and geometric (not linear) interior levels are reached
    caps = {p["memory.hbm.capacity"] for p in pts}
    assert LOG_LO in caps and LOG_HI in caps
    geometric = LOG_LO * (LOG_HI / LOG_LO) ** (1 / 3)
    assert any(math.isclose(c, geometric, rel_tol=1e-5) for c in caps)
    assert {p["batch"] for p in pts} <= {1, 22, 43, 64}
    # discrete levels map by index: 4 levels over 5 values reach indices 0, 1, 3, 4
    assert {p["kind"] for p in pts} <= {"a", "b", "d", "e"}


def test_levels_follow_small_discrete_axes(tmp_path):
    rng = (0.0, 1.0, False, False)
    assert num_levels(_study(tmp_path, axes=[Axis("x", (), False, rng)])) == 4
    for n, want in ((2, 2), (3, 2), (4, 4), (9, 4), (1, 4)):
        axes = [Axis("x", (), False, rng), Axis("d", tuple(range(n)), False)]
        s = _study(tmp_path, axes=axes, samples=5)
        assert num_levels(s) == want
        x, pts = morris_design(s)
        assert set(np.round(x.ravel(), 9)) <= set(np.round(np.linspace(0, 1, want), 9))
        assert {p["d"] for p in pts} <= set(range(n))


def test_indices_rank_the_axes_by_their_effect(tmp_path):
    s = _study(tmp_path, objectives=(("latency_s", "min"), ("energy_j", "min")))
    idx = morris_indices(s, _table(s))
    assert set(idx) == {"latency_s", "energy_j"}
    lat = idx["latency_s"]
    assert set(lat) == {"kind", "batch", "memory.hbm.capacity"}
    kind, batch, cap = (lat[n][0] for n in ("kind", "batch", "memory.hbm.capacity"))
    assert kind > batch > cap
    assert cap == pytest.approx(0.0, abs=1e-12) and lat["memory.hbm.capacity"][1] == \
        pytest.approx(0.0, abs=1e-12)
    assert batch == pytest.approx(1.0, rel=0.05)  # a linear effect: exactly its range
    assert lat["batch"][1] < 0.05  # linear and additive: (almost) no spread
    # raw mu_star in the metric's units: doubling the metric doubles mu_star
    assert idx["energy_j"]["kind"][0] == pytest.approx(2 * kind)
    r = ranking(lat)
    assert [n for n, _ in r] == ["kind", "batch", "memory.hbm.capacity"]
    assert r[0][1] == 1.0 and r[1][1] == pytest.approx(batch / kind) and r[2][1] == 0.0
    assert morris_indices(s, _table(s)) == idx  # deterministic (bootstrap seeded too)


def test_rows_are_matched_by_point_id_not_order(tmp_path):
    s = _study(tmp_path)
    df = _table(s)
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    extra = pd.DataFrame([{"point_id": "0" * 16, "kind": "a", "batch": 2,
                           "memory.hbm.capacity": 1.0, "status": "ok", "latency_s": 1e9,
                           "energy_j": 1e9}])
    assert morris_indices(s, pd.concat([shuffled, extra])) == morris_indices(s, df)


def test_missing_or_failed_points_raise_a_clear_error(tmp_path):
    s = _study(tmp_path)
    pts = morris_points(s)
    df = _table(s)
    gone = point_id(pts[0])
    n_rows = sum(point_id(p) == gone for p in pts)
    with pytest.raises(HwsimError, match=rf"{n_rows} of the Morris design's {len(pts)} points"
                       r".*1 not evaluated.*Morris needs every point.*feasible"):
        morris_indices(s, df[df.point_id != gone])
    failed = df.copy()
    failed.loc[failed.point_id == gone, ["status", "latency_s"]] = ["infeasible", np.nan]
    with pytest.raises(HwsimError, match=r"latency_s: .*1 failed.*Morris needs every point"):
        morris_indices(s, failed)
    # a failed status hides a stale number too
    stale = df.copy()
    stale.loc[stale.point_id == gone, "status"] = "does_not_fit"
    with pytest.raises(HwsimError, match="Morris needs every point"):
        morris_indices(s, stale)


def test_study_without_samples_or_axes_is_refused(tmp_path):
    with pytest.raises(HwsimError, match="samples"):
        morris_design(_study(tmp_path, samples=None))
    with pytest.raises(HwsimError, match="at least one axis"):
        morris_design(_study(tmp_path, axes=()))


def test_ranking_of_no_effect_is_all_zero():
    assert ranking({"a": (0.0, 0.0), "b": (0.0, 0.0)}) == [("a", 0.0), ("b", 0.0)]
    assert ranking({"a": (1.0, 0.0), "b": (4.0, 1.0)}) == [("b", 1.0), ("a", 0.25)]
