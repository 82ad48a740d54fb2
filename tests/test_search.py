"""The search for the highest mode ("auto"/"emem" starts, :mod:`bayesgmm.search`)."""

import warnings

import numpy as np
import pytest

import bayesgmm as bg
from bayesgmm import search
from bayesgmm.estep import Engine, working_coordinates
from bayesgmm.iteration import run_squarem
from bayesgmm.priors import resolve_prior
from tests.conftest import blobs


def _broad_search(X, K, starts):
    """The best log posterior over many random starts and the "hc" start, each to
    convergence — an independent reference for the highest mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [bg.fit_map(X, K, init="random", random_state=seed, tol=1e-10, max_iter=20000)
                for seed in range(starts)]
        fits.append(bg.fit_map(X, K, init="hc", tol=1e-10, max_iter=20000))
    return max(f.log_posterior for f in fits)


@pytest.mark.parametrize("data, K", [("faithful", 3), ("faithful", 4), ("iris", 3)])
def test_auto_reaches_the_best_mode_of_a_broad_search(data, K):
    """Cases where a single k-means++ start never reaches the highest mode (0 of 40 seeds in
    benchmarks/results/init_benchmark.md): every seed of the default search reaches at least
    the best of 200 random starts and the hierarchical one."""
    X = bg.load_dataset(data).to_numpy()
    reference = _broad_search(X, K, 200)
    for seed in range(3):
        fit = bg.fit_map(X, K, tol=1e-10, max_iter=20000, random_state=seed)
        assert fit.log_posterior >= reference - 1e-6, (seed, reference - fit.log_posterior)


def _engine(X, K, covariance="full", w=None):
    prior = resolve_prior("default", X, K, covariance)
    coords = working_coordinates(X, w)
    return Engine(X, w, bg.covariance.get_structure(covariance), K, coords,
                  prior.rescaled(coords.center, coords.scale))


def test_moves_are_responsibility_matrices_and_improve_never_descends():
    X = bg.load_dataset("faithful").to_numpy()
    engine = _engine(X, 4)
    start = engine.start_from_responsibilities(np.eye(4)[np.arange(len(X)) % 4])
    run = run_squarem(engine, start, 1e-10, 5000)
    R, log_density = search._responsibilities(engine, run.state)
    Z, w = search._working_data(engine), np.ones(len(X))
    first = np.ones(len(X), dtype=bool)
    overlap = search._overlap(R, w)
    moves = [*search._split_merge_moves(Z, R, overlap, w),
             *search._spike_moves(Z, R, log_density, overlap, run.state, True, w, first),
             *search._trim_moves(Z, R, run.state, True, w, np.arange(len(X)))]
    assert len(moves) > 20
    for moved in moves:
        assert moved.shape == R.shape and np.all(moved >= 0)
        np.testing.assert_allclose(moved.sum(axis=1), 1.0, rtol=1e-12)
    improved = search.improve(engine, run, run_squarem, 1e-10, 5000)
    assert improved.log_posterior >= run.log_posterior
    assert improved.converged


def test_repeated_rows_are_one_point_to_the_trim_moves():
    """Dropping a point from a spike, or adding one, moves every copy of it (as a weighted row
    would)."""
    X = bg.load_dataset("faithful").to_numpy()
    repeated = np.vstack([X, X[:3], X[:3]])
    engine = _engine(repeated, 3)
    labels = np.r_[np.zeros(len(X), int), [1, 2, 1, 1, 2, 1]]  # copies split between spikes
    R = np.eye(3)[labels]
    state = engine.start_from_responsibilities(R)
    Z = search._working_data(engine)
    point = np.unique(Z, axis=0, return_inverse=True)[1].ravel()
    moves = list(search._trim_moves(Z, R, state, True, np.ones(len(Z)), point))
    copied = set(point[len(X):])
    touched = set()
    for moved in moves:
        for p in np.unique(point[np.any(moved != R, axis=1)]):
            copies = moved[point == p]
            assert np.all(copies == copies[0])
            touched.add(p)
    assert copied <= touched  # each copied point was dropped from its spike at least once


def test_the_search_on_a_subsample_finishes_at_a_fixed_point_of_all_rows():
    X = blobs(seed=8, n=3 * (search.SEARCH_ROWS // 2), d=2, K=3)
    assert len(X) > search.SEARCH_ROWS
    fit = bg.fit_map(X, 3, random_state=1, tol=1e-10, max_iter=20000)
    assert fit.converged and fit.n_samples == len(X)
    again = bg.fit_map(X, 3, prior=fit.prior, init=fit, tol=1e-10, max_iter=20000,
                       acceleration=None)
    np.testing.assert_allclose(again.means, fit.means, rtol=1e-7, atol=1e-9)
    assert again.log_posterior == pytest.approx(fit.log_posterior, abs=1e-8)


def test_searched_components_come_in_the_order_of_their_means():
    X = bg.load_dataset("iris").to_numpy()
    for init in ("auto", "emem"):
        fit = bg.fit_map(X, 3, init=init, random_state=0)
        assert np.all(np.diff(fit.means[:, 0]) >= 0)
