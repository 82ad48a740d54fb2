import numpy as np
import pytest

import bayesgmm as bg
from tests.conftest import END_TO_END_STRUCTURES, blobs
from tests.reference import log_prior, random_parameters


@pytest.mark.parametrize("covariance", END_TO_END_STRUCTURES)
@pytest.mark.parametrize("shrinkage", [0.0, 0.01, 2.5])
def test_logpdf_equals_sum_of_scipy_densities(covariance, shrinkage):
    rng = np.random.default_rng(7)
    for K, d in [(1, 1), (3, 2), (4, 5)]:
        X = rng.normal(size=(40, d)) * rng.uniform(0.5, 3, size=d)
        base = bg.default_prior(X, K, covariance)
        prior = bg.GMMPrior(mean=rng.normal(size=d), shrinkage=shrinkage,
                            dof=base.dof + rng.uniform(0, 3), scale=base.scale,
                            concentration=rng.uniform(1, 4, size=K), covariance=covariance)
        for _ in range(3):
            theta = random_parameters(rng, K, d, covariance)
            assert prior.logpdf(*theta) == pytest.approx(log_prior(prior, *theta, covariance),
                                                         rel=1e-12, abs=1e-10)


def test_logpdf_outside_support_is_minus_inf():
    prior = bg.default_prior(blobs(), 2, "full")
    w, m, c = random_parameters(np.random.default_rng(0), 2, 3, "full")
    assert prior.logpdf(np.array([0.7, 0.7]), m, c) == -np.inf
    bad = c.copy()
    bad[0] = -np.eye(3)
    assert prior.logpdf(w, m, bad) == -np.inf


def test_zero_weight_allowed_when_concentration_is_one():
    prior = bg.default_prior(blobs(), 2, "spherical")
    _, m, c = random_parameters(np.random.default_rng(0), 2, 3, "spherical")
    assert np.isfinite(prior.logpdf(np.array([1.0, 0.0]), m, c))


@pytest.mark.parametrize("covariance", END_TO_END_STRUCTURES)
def test_default_prior_values(covariance):
    X = blobs(d=3)
    K = 4
    prior = bg.default_prior(X, K, covariance)
    cov = np.cov(X, rowvar=False)
    assert prior.shrinkage == 0.01 and prior.dof == 5 and prior.concentration == 1.0
    np.testing.assert_allclose(prior.mean, X.mean(axis=0))
    expected = {"full": cov, "tied": cov, "diag": np.diag(cov), "EEI": np.diag(cov),
                "EVI": np.diag(cov), "EEV": cov, "VEE": cov, "EVE": cov,
                "spherical": np.trace(cov) / 3, "EII": np.trace(cov) / 3}[covariance] / K ** (2 / 3)
    np.testing.assert_allclose(prior.scale, expected, rtol=1e-13)
    mclust = bg.default_prior(X, K, covariance, style="mclust")
    if covariance in ("diag", "EEI", "EVI"):  # mclust: one scalar, the mean variance
        assert mclust.scale.shape == ()
        assert float(mclust.scale) == pytest.approx(np.trace(cov) / 3 / K ** (2 / 3))
    else:
        np.testing.assert_array_equal(mclust.scale, prior.scale)


def test_default_prior_with_fewer_rows_than_features_uses_diagonal_scale():
    X = np.random.default_rng(0).normal(size=(3, 5))
    prior = bg.default_prior(X, 2, "full")
    np.testing.assert_allclose(prior.scale, np.diag(np.var(X, axis=0, ddof=1)) / 2 ** (2 / 5))


def test_prior_is_frozen_and_read_only():
    prior = bg.default_prior(blobs(), 2, "full")
    with pytest.raises(AttributeError):
        prior.dof = 3.0
    with pytest.raises(ValueError):
        prior.mean[0] = 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dof=1.5), "dof must exceed 2"),
        (dict(scale=-np.eye(3)), "positive definite"),
        (dict(scale=np.ones((3, 3))), "positive definite"),
        (dict(scale=np.array([[1.0, 0.5, 0], [0.1, 1, 0], [0, 0, 1]])), "symmetric"),
        (dict(scale=np.eye(2)), r"mean has length 3 but scale has shape \(2, 2\)"),
        (dict(shrinkage=-1.0), "shrinkage must be finite and ≥ 0"),
        (dict(concentration=[1.0, -2.0]), "concentration must be a positive"),
        (dict(mean=[np.nan, 0, 0]), "mean must be a finite"),
        (dict(covariance="banana"), "not a covariance structure"),
    ],
)
def test_invalid_prior_is_rejected(kwargs, message):
    base = dict(mean=np.zeros(3), shrinkage=0.1, dof=5.0, scale=np.eye(3), covariance="full")
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        bg.GMMPrior(**base)


def test_scale_shapes_per_structure():
    bg.GMMPrior(mean=np.zeros(3), shrinkage=0.1, dof=0.5, scale=np.ones(3), covariance="diag")
    bg.GMMPrior(mean=np.zeros(3), shrinkage=0.1, dof=0.5, scale=2.0, covariance="diag")
    with pytest.raises(ValueError, match="must have shape"):
        bg.GMMPrior(mean=np.zeros(3), shrinkage=0.1, dof=5, scale=np.ones(3),
                    covariance="spherical")
    assert bg.GMMPrior(mean=np.zeros(2), shrinkage=0, dof=3, scale=np.eye(2)).covariance == "full"
