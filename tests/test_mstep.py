"""Each closed-form M-step maximises the expected complete-data log posterior (DESIGN §3).

The objective is built from scipy densities (tests/reference.py) and maximised numerically on an
unconstrained parametrisation (softmax weights, free means, log-Cholesky or log-variance
covariances); the closed form must match the optimiser's maximiser.
"""

import numpy as np
import pytest
from scipy.optimize import minimize

import bayesgmm as bg
from tests.conftest import STRUCTURES, blobs
from tests.reference import component_log_densities, log_prior

K, D = 2, 3


def _unpack(z, covariance):
    a = np.append(z[: K - 1], 0.0)
    weights = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
    means = z[K - 1: K - 1 + K * D].reshape(K, D)
    rest = z[K - 1 + K * D:]
    if covariance in ("full", "tied"):
        n_mat = K if covariance == "full" else 1
        tri = np.tril_indices(D)
        L = np.zeros((n_mat, D, D))
        for i, chunk in enumerate(rest.reshape(n_mat, -1)):
            L[i][tri] = chunk
            L[i][np.diag_indices(D)] = np.exp(np.diag(L[i]))
        covs = L @ L.transpose(0, 2, 1)
        return weights, means, covs if covariance == "full" else covs[0]
    return weights, means, np.exp(rest).reshape((K, D) if covariance == "diag" else (K,))


def _pack(weights, means, covs, covariance):
    a = np.log(weights)[: K - 1] - np.log(weights[-1])
    if covariance in ("full", "tied"):
        mats = covs if covariance == "full" else covs[None]
        parts = []
        for S in mats:
            L = np.linalg.cholesky(S)
            L[np.diag_indices(D)] = np.log(np.diag(L))
            parts.append(L[np.tril_indices(D)])
        rest = np.concatenate(parts)
    else:
        rest = np.log(covs).ravel()
    return np.concatenate([a, means.ravel(), rest])


@pytest.mark.parametrize("covariance", STRUCTURES)
@pytest.mark.parametrize("with_prior, shrinkage", [(True, 0.0), (True, 0.7), (False, None)])
def test_m_step_is_the_numerical_maximiser(covariance, with_prior, shrinkage):
    rng = np.random.default_rng(0)
    X = blobs(seed=1, n=60, d=D, K=K)
    w = rng.uniform(0.5, 2.0, size=len(X))
    R = rng.dirichlet(np.ones(K), size=len(X))
    base = bg.default_prior(X, K, covariance)
    prior = bg.GMMPrior(mean=rng.normal(size=D), shrinkage=shrinkage, dof=base.dof + 1.3,
                        scale=base.scale * 2, concentration=[1.5, 3.0],
                        covariance=covariance) if with_prior else None
    closed = bg.fit_map(X, K, covariance, prior=prior, init=R, sample_weight=w, max_iter=0,
                        warn_convergence=False)

    def neg_q(z):
        theta = _unpack(z, covariance)
        q = np.sum(w[:, None] * R * (np.log(theta[0])
                                     + component_log_densities(X, theta[1], theta[2], covariance)))
        return -(q + (log_prior(prior, *theta, covariance) if prior else 0.0))

    z_hat = _pack(closed.weights, closed.means, closed.covariances, covariance)
    start = z_hat + rng.normal(scale=0.3, size=z_hat.size)
    opt = minimize(neg_q, start, method="BFGS", options={"gtol": 1e-7, "maxiter": 5000})
    # the closed form is at least as good as the optimiser's answer (to rounding of Q) ...
    assert -neg_q(z_hat) >= -opt.fun - 1e-9 * abs(opt.fun)
    # ... and it is the same point: with gtol 1e-7 and curvature O(N) the optimiser's
    # parameters are within ~1e-7 / N of the maximiser; 1e-5 leaves room for BFGS's line search
    np.testing.assert_allclose(_pack(*_unpack(opt.x, covariance), covariance), z_hat,
                               atol=1e-5)
