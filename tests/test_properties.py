"""Properties of fit_map on generated data (hypothesis): whatever the data — duplicated points,
integer grids, collinear columns, tiny samples — every covariance is positive definite, the log
posterior never decreases, the same seed gives the same fit, and the fit is equivariant under
affine changes of units, row permutations and relabelled starts."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import bayesgmm as bg
from tests.conftest import END_TO_END_STRUCTURES

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
FIXED = dict(tol=0, max_iter=15, warn_convergence=False)
#: the same EM steps, so the paths compare step for step (SQUAREM's accept/reject decisions
#: compare log posteriors, whose rounding is not itself equivariant)
PLAIN = dict(FIXED, acceleration=None)


@st.composite
def problems(draw):
    """(X, K, covariance): awkward small data sets and a model for them."""
    n = draw(st.integers(6, 40))
    d = draw(st.integers(1, 3))
    values = st.one_of(st.floats(-50, 50, allow_nan=False, allow_infinity=False),
                       st.integers(-2, 2).map(float))  # grids: ties and duplicated points
    X = draw(arrays(np.float64, (n, d), elements=values))
    if d > 1 and draw(st.booleans()):
        X[:, -1] = 2.0 * X[:, 0] + 1.0  # an exactly collinear column
    assume(np.ptp(X, axis=0).max() > 0)  # a data-scaled prior needs some spread
    K = draw(st.integers(1, min(3, n)))
    return X, K, draw(st.sampled_from(END_TO_END_STRUCTURES))


def _fit(X, K, covariance, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the singular-data ridge warning
        return bg.fit_map(X, K, covariance, **kwargs)


def _labels(n, K, seed=0):
    labels = np.random.default_rng(seed).integers(0, K, size=n)
    labels[:K] = np.arange(K)
    return np.eye(K)[labels]


@SETTINGS
@given(problems(), st.integers(0, 2**16))
def test_positive_definite_monotone_and_reproducible(problem, seed):
    X, K, covariance = problem
    fit = _fit(X, K, covariance, random_state=seed, **FIXED)
    dense = fit.covariance_matrices
    assert np.all(np.isfinite(dense)) and np.all(np.linalg.eigvalsh(dense) > 0)
    assert np.all(np.isfinite(fit.means)) and fit.weights.sum() == pytest.approx(1.0)
    slack = 1e-10 * np.abs(fit.history).max()
    assert np.all(np.diff(fit.history) >= -slack)
    again = _fit(X, K, covariance, random_state=seed, **FIXED)
    np.testing.assert_array_equal(again.covariances, fit.covariances)
    np.testing.assert_array_equal(again.history, fit.history)


@SETTINGS
@given(problems(), st.floats(1e-3, 1e3), st.floats(-1e3, 1e3))
def test_affine_change_of_units_transforms_the_fit(problem, a, b):
    """Fit (aX + b) = the fit of X mapped by x ↦ a x + b, started from the same partition."""
    X, K, covariance = problem
    R = _labels(len(X), K)
    fit = _fit(X, K, covariance, init=R, **PLAIN)
    moved = _fit(a * X + b, K, covariance, init=R, **PLAIN)
    spread = np.sqrt(np.diagonal(fit.covariance_matrices, axis1=-2, axis2=-1)).max()
    np.testing.assert_allclose((moved.means - b) / a, fit.means, rtol=1e-7,
                               atol=1e-7 * (spread + np.abs(fit.means).max()))
    np.testing.assert_allclose(moved.covariances / a**2, fit.covariances, rtol=1e-6,
                               atol=1e-9 * spread**2)
    np.testing.assert_allclose(moved.weights, fit.weights, rtol=1e-7, atol=1e-9)


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_row_order_and_component_labels_do_not_matter(problem, random):
    X, K, covariance = problem
    start = _fit(X, K, covariance, init=_labels(len(X), K), tol=0, max_iter=1,
                 warn_convergence=False)
    fit = _fit(X, K, covariance, init=start, **PLAIN)
    rows = np.array(random.sample(range(len(X)), len(X)))
    shuffled = _fit(X[rows], K, covariance, init=start, **PLAIN)
    perm = np.array(random.sample(range(K), K))
    covs = np.asarray(start.covariances)
    per_component = "component" in bg.covariance.get_structure(covariance).dims
    relabelled = _fit(X, K, covariance, **PLAIN, init={
        "weights": start.weights[perm], "means": start.means[perm],
        "covariances": covs[perm] if per_component else covs})
    scale = np.abs(fit.covariances).max()
    for other, order in ((shuffled, np.arange(K)), (relabelled, perm)):
        np.testing.assert_allclose(other.weights, fit.weights[order], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(other.means, fit.means[order], rtol=1e-8,
                                   atol=1e-8 * (1 + np.abs(fit.means).max()))
        expected = np.asarray(fit.covariances)[order] if per_component else fit.covariances
        np.testing.assert_allclose(other.covariances, expected, rtol=1e-7, atol=1e-9 * scale)
