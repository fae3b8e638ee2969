"""physeg.families.kinetic._cbo.cbo_minimize: the seeded CBO adapter over cbx."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cbx")

from physeg.families.kinetic._cbo import cbo_minimize  # noqa: E402


def test_quadratic_minimum_found_and_box_respected():
    seen = []
    res = cbo_minimize(lambda X: np.sum((X - np.array([0.3, -1.0])) ** 2, axis=1),
                       bounds=[(0, 1), (-2, 0)], n_agents=20, max_iter=100, rng=0,
                       callback=lambda it, X, v: seen.append(X.copy()))
    np.testing.assert_allclose(res.x, [0.3, -1.0], atol=0.06)  # box widths 1 and 2
    assert res.f < 5e-3
    allx = np.concatenate(seen)
    assert allx[:, 0].min() >= 0 and allx[:, 0].max() <= 1
    assert allx[:, 1].min() >= -2 and allx[:, 1].max() <= 0
    assert res.n_iter == 100 and len(res.history["best"]) == 100
    assert np.all(np.diff(res.history["best"]) <= 0)  # best-so-far never increases


def test_box_constrained_minimum_on_the_boundary():
    # unconstrained minimum (2.5, 4) lies outside; the constrained one is (2, 4) on a face
    res = cbo_minimize(lambda X: np.sum((X - np.array([2.5, 4.0])) ** 2, axis=1),
                       bounds=[(1, 2), (3, 5)], n_agents=20, max_iter=60, rng=1)
    np.testing.assert_allclose(res.x, [2, 4], atol=0.1)


def test_rastrigin_global_minimum():
    shift = np.array([1.5, -0.5])

    def rastrigin(X):
        z = X - shift
        return 20 + np.sum(z**2 - 10 * np.cos(2 * np.pi * z), axis=1)

    res = cbo_minimize(rastrigin, bounds=[(-3, 3)] * 2, n_agents=50, max_iter=150, rng=1)
    np.testing.assert_allclose(res.x, shift, atol=0.1)


def test_seeded_runs_repeat_and_differ_across_seeds():
    f = lambda X: np.sum(np.sin(5 * X) + X**2, axis=1)  # noqa: E731
    a = cbo_minimize(f, bounds=[(-2, 2)] * 3, n_agents=10, max_iter=10, rng=3)
    b = cbo_minimize(f, bounds=[(-2, 2)] * 3, n_agents=10, max_iter=10, rng=3)
    c = cbo_minimize(f, bounds=[(-2, 2)] * 3, n_agents=10, max_iter=10, rng=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.history["best"] == b.history["best"]
    assert not np.array_equal(a.x, c.x)


def test_non_vectorised_and_initial_agents():
    calls = []

    def f(x):
        calls.append(x.shape)
        return float(np.sum((x - 0.5) ** 2))

    x0 = np.full((5, 2), 0.9)
    res = cbo_minimize(f, x0, bounds=[(0, 1)] * 2, max_iter=3, rng=0, vectorised=False)
    assert set(calls) == {(2,)}
    assert res.n_evals == 5 * 3
    assert res.f <= 2 * 0.4**2 + 1e-12  # never worse than the starting agents


def test_energy_tol_stops_early():
    res = cbo_minimize(lambda X: np.sum(X**2, axis=1), bounds=[(-1, 1)], n_agents=10,
                       max_iter=100, rng=0, energy_tol=1e-2)
    assert res.n_iter < 100 and res.f <= 1e-2


def test_errors():
    f = lambda X: X[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match="pairs"):
        cbo_minimize(f, bounds=[0, 1])
    with pytest.raises(ValueError, match="low < high"):
        cbo_minimize(f, bounds=[(1, 0)])
    with pytest.raises(ValueError, match="n_agents"):
        cbo_minimize(f, bounds=[(0, 1)], n_agents=1)
    with pytest.raises(ValueError, match="x0 must have shape"):
        cbo_minimize(f, np.zeros(3), bounds=[(0, 1)])
    with pytest.raises(ValueError, match="returned 1 values"):
        cbo_minimize(lambda X: 0.0, bounds=[(0, 1)], n_agents=3, max_iter=1)
