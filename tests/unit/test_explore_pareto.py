"""explore.pareto and explore.plots: fronts, hypervolume and plot smoke checks."""

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.explore import pareto
from simulator.explore.pareto import default_reference, hypervolume, pareto_mask
from simulator.explore.plots import parallel_coordinates, pareto_scatter, sensitivity_bars


def _brute_mask(values: np.ndarray, senses) -> np.ndarray:
    v = np.asarray(values, dtype=float) * np.array([1.0 if s == "min" else -1.0 for s in senses])
    finite = np.isfinite(v).all(axis=1)
    out = np.zeros(len(v), dtype=bool)
    for i in range(len(v)):
        if not finite[i]:
            continue
        out[i] = not any(
            finite[j] and np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in range(len(v))
        )
    return out


def _brute_hv(values: np.ndarray, ref) -> float:
    """Count unit cells of the integer grid dominated by some point (minimisation)."""
    pts = [p for p in values if np.isfinite(p).all()]
    lo = [int(min([p[j] for p in pts] + [ref[j]])) for j in range(len(ref))]
    count = 0
    for cell in itertools.product(*(range(lo[j], int(ref[j])) for j in range(len(ref)))):
        c = np.array(cell, dtype=float)
        if any(np.all(p <= c) for p in pts):
            count += 1
    return float(count)


@st.composite
def _problems(draw, max_n=40, k_values=(2, 3, 4), hi=6):
    n = draw(st.integers(1, max_n))
    k = draw(st.sampled_from(k_values))
    vals = draw(st.lists(st.integers(0, hi), min_size=n * k, max_size=n * k))
    values = np.array(vals, dtype=float).reshape(n, k)
    bad = draw(st.lists(st.sampled_from([None, np.nan, np.inf, -np.inf]), min_size=n,
                        max_size=n))
    for i, b in enumerate(bad):
        if b is not None and draw(st.booleans()):
            values[i, draw(st.integers(0, k - 1))] = b
    senses = draw(st.lists(st.sampled_from(["min", "max"]), min_size=k, max_size=k))
    return values, senses


# ---------------------------------------------------------------------------- pareto_mask


@settings(max_examples=300, deadline=None)
@given(_problems())
def test_pareto_mask_matches_brute_force(problem):
    values, senses = problem
    mask = pareto_mask(values, senses)
    assert mask.dtype == bool and mask.shape == (len(values),)
    np.testing.assert_array_equal(mask, _brute_mask(values, senses))
    assert not mask[~np.isfinite(values).all(axis=1)].any()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_pareto_mask_large_matches_brute_force_across_blocks(k):
    rng = np.random.default_rng(k)
    n = 3 * pareto._BLOCK + 17
    values = rng.integers(0, 12, size=(n, k)).astype(float)
    values[::50, 0] = np.nan
    senses = ["min", "max"] * k
    senses = senses[:k]
    sign = np.array([1.0 if s == "min" else -1.0 for s in senses])
    v = values * sign
    le = (v[None, :, :] <= v[:, None, :]).all(axis=2)
    lt = (v[None, :, :] < v[:, None, :]).any(axis=2)
    finite = np.isfinite(v).all(axis=1)
    expected = finite & ~((le & lt) & finite[None, :]).any(axis=1)
    np.testing.assert_array_equal(pareto_mask(values, senses), expected)


def test_pareto_mask_keeps_duplicates_and_drops_failed():
    values = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [np.nan, 0.0], [0, np.inf]])
    np.testing.assert_array_equal(
        pareto_mask(values, ["min", "min"]), [True, True, True, False, False, False]
    )
    np.testing.assert_array_equal(
        pareto_mask(values, ["max", "max"]), [False, False, False, True, False, False]
    )


def test_pareto_mask_empty_and_bad_input():
    assert pareto_mask(np.empty((0, 3)), ["min"] * 3).shape == (0,)
    with pytest.raises(ValueError, match="2 senses"):
        pareto_mask(np.ones((4, 3)), ["min", "max"])
    with pytest.raises(ValueError, match="'minimise'"):
        pareto_mask(np.ones((4, 2)), ["min", "minimise"])
    with pytest.raises(ValueError, match="shape"):
        pareto_mask(np.ones(4), ["min"])
    with pytest.raises(ValueError, match="single string"):
        pareto_mask(np.ones((4, 3)), "min")


# ---------------------------------------------------------------------------- hypervolume


def test_hypervolume_known_values():
    assert hypervolume([[1, 3], [2, 2], [3, 1]], ["min", "min"], [4, 4]) == pytest.approx(6.0)
    assert hypervolume([[1, 2, 3]], ["min"] * 3, [4, 5, 6]) == pytest.approx(27.0)
    # three unit-offset points in a 2-cube: 3 * 4 - 3 * 2 + 1
    pts = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert hypervolume(pts, ["min"] * 3, [2, 2, 2]) == pytest.approx(7.0)
    # two overlapping boxes: 4 + 2 - 1
    assert hypervolume([[0, 0, 1], [1, 1, 0]], ["min"] * 3, [2, 2, 2]) == pytest.approx(5.0)


def test_hypervolume_ignores_points_not_strictly_inside_reference():
    pts = [[1, 1], [4, 0], [0, 5], [np.nan, 0]]
    assert hypervolume(pts, ["min", "min"], [4, 4]) == pytest.approx(9.0)
    assert hypervolume([[4, 4]], ["min", "min"], [4, 4]) == 0.0
    assert hypervolume(np.empty((0, 3)), ["min"] * 3, [1, 1, 1]) == 0.0


@settings(max_examples=150, deadline=None)
@given(_problems(max_n=12, k_values=(2, 3), hi=5), st.data())
def test_hypervolume_matches_grid_count(problem, data):
    values, senses = problem
    k = values.shape[1]
    ref_min = np.array(data.draw(st.lists(st.integers(1, 7), min_size=k, max_size=k)), float)
    sign = np.array([1.0 if s == "min" else -1.0 for s in senses])
    expected = _brute_hv(values * sign, ref_min)
    assert hypervolume(values, senses, ref_min * sign) == pytest.approx(expected)


@settings(max_examples=100, deadline=None)
@given(_problems(max_n=15, k_values=(2, 3, 4), hi=5), st.data())
def test_hypervolume_unchanged_by_dominated_point(problem, data):
    values, senses = problem
    k = values.shape[1]
    sign = np.array([1.0 if s == "min" else -1.0 for s in senses])
    ref = np.full(k, 7.0) * sign
    base = data.draw(st.integers(0, len(values) - 1))
    delta = np.array(data.draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)), float)
    worse = values[base] + delta * sign  # worse or equal in every objective
    hv = hypervolume(values, senses, ref)
    assert hypervolume(np.vstack([values, worse]), senses, ref) == pytest.approx(hv)


@settings(max_examples=100, deadline=None)
@given(_problems(max_n=20, k_values=(2, 3), hi=5))
def test_hypervolume_max_is_negated_min(problem):
    values, senses = problem
    k = values.shape[1]
    ref = np.full(k, 6.0)
    hv_min = hypervolume(values, ["min"] * k, ref)
    assert hypervolume(-values, ["max"] * k, -ref) == pytest.approx(hv_min)
    flip = np.array([1.0 if s == "min" else -1.0 for s in senses])
    assert hypervolume(values * flip, senses, ref * flip) == pytest.approx(hv_min)


def test_hypervolume_bad_reference():
    with pytest.raises(ValueError, match="reference has shape"):
        hypervolume([[1, 2]], ["min", "min"], [3, 3, 3])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[1, 2]], ["min", "min"], [3, np.nan])


def test_hypervolume_3d_front_of_hundreds_is_exact():
    # 496 mutually non-dominated points on the plane x + y + z = 30, checked by a cell count
    pts = np.array([(a, b, 30 - a - b) for a in range(31) for b in range(31 - a)], float)
    assert len(pts) == 496 and pareto_mask(pts, ["min"] * 3).all()
    hv = hypervolume(pts, ["min"] * 3, [31, 31, 31])
    grid = np.stack(np.meshgrid(*(np.arange(31.0),) * 3, indexing="ij"), -1).reshape(-1, 3)
    dominated = np.zeros(len(grid), dtype=bool)
    for p in pts:
        dominated |= (p <= grid).all(axis=1)
    assert hv == pytest.approx(float(dominated.sum()))


# ---------------------------------------------------------------------------- default_reference


def test_default_reference_pads_nadir():
    values = np.array([[1.0, 10.0, 5.0], [3.0, 20.0, 5.0], [np.nan, 100.0, 0.0]])
    ref = default_reference(values, ["min", "max", "min"])
    np.testing.assert_allclose(ref, [3.2, 9.0, 6.0])
    assert hypervolume(values, ["min", "max", "min"], ref) > 0


def test_default_reference_needs_a_finite_point():
    with pytest.raises(ValueError, match="finite"):
        default_reference(np.array([[np.nan, 1.0], [2.0, np.inf]]), ["min", "min"])


# ---------------------------------------------------------------------------- plots


def _frame(k: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.uniform(1, 10, size=(30, k)), columns=[f"obj{i}" for i in range(k)])
    df.loc[3, "obj1"] = np.nan
    df["design"] = [f"d{i}" for i in range(len(df))]
    df["const"] = 2.0
    df["family"] = ["a", "b", "c"] * 10
    return df


def _assert_png_with_content(path, expected):
    assert path == expected and path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    img = imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # something was drawn, not a blank canvas


@pytest.mark.parametrize("k", [2, 3])
def test_pareto_scatter_writes_png(tmp_path, k):
    df = _frame(k)
    out = tmp_path / "sub" / f"front{k}.png"
    got = pareto_scatter(df, [f"obj{i}" for i in range(k)], ["min", "max", "min"][:k], out,
                         label="design", title="t")
    _assert_png_with_content(got, out)


def test_pareto_scatter_rejects_unknown_column(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        pareto_scatter(_frame(2), ["obj0", "nope"], ["min", "min"], tmp_path / "x.png")


def test_parallel_coordinates_writes_png(tmp_path):
    df = _frame(3)
    cols = ["obj0", "obj1", "obj2", "const"]
    front = pd.Series(pareto_mask(df[["obj0", "obj1"]].to_numpy(), ["min", "min"]),
                      index=df.index)
    assert front.any()
    for i, kwargs in enumerate([{}, {"color_by": "obj2", "highlight": front},
                                {"color_by": "family"}]):
        out = tmp_path / f"pc{i}.png"
        _assert_png_with_content(parallel_coordinates(df, cols, out, **kwargs), out)


def test_sensitivity_bars_writes_png(tmp_path):
    out = tmp_path / "sens.png"
    got = sensitivity_bars({"a": 0.1, "b": 0.7, "c": float("nan"), "d": -0.2}, out, title="s")
    _assert_png_with_content(got, out)
