"""Independent reference densities built from scipy.stats only (never from bayesgmm's code)."""

import numpy as np
from scipy import stats


#: mclust's volume–shape–orientation models, stored as per-component matrices or variances
MATRIX_MODELS = ("EEV", "VEV", "EVV", "VEE", "EVE", "VVE")
VARIANCE_MODELS = ("VEI", "EVI")


def dense_covariances(covariances, covariance, K, d):
    """(K, d, d) matrices from a structure's covariances, written out case by case."""
    c = np.asarray(covariances, dtype=float)
    if covariance == "full" or covariance in MATRIX_MODELS:
        return c
    if covariance in VARIANCE_MODELS:
        return np.stack([np.diag(v) for v in c])
    if covariance == "tied":
        return np.repeat(c[None], K, axis=0)
    if covariance == "diag":
        return np.stack([np.diag(v) for v in c])
    if covariance == "EEI":
        return np.repeat(np.diag(c)[None], K, axis=0)
    if covariance == "EII":
        return np.repeat((float(c) * np.eye(d))[None], K, axis=0)
    return np.stack([v * np.eye(d) for v in c])


def log_prior(prior, weights, means, covariances, covariance):
    """log p(θ) as a sum of scipy.stats densities (dirichlet, invwishart, invgamma, normal)."""
    K, d = np.shape(means)
    alpha = np.broadcast_to(np.asarray(prior.concentration, dtype=float), (K,))
    lp = stats.dirichlet.logpdf(weights, alpha)
    nu, scale = prior.dof, np.asarray(prior.scale, dtype=float)
    if covariance == "full" or covariance in MATRIX_MODELS:  # the constrained Σ_k too
        lp += sum(stats.invwishart.logpdf(S, df=nu, scale=scale) for S in covariances)
    elif covariance == "tied":
        lp += stats.invwishart.logpdf(covariances, df=nu, scale=scale)
    elif covariance == "diag" or covariance in VARIANCE_MODELS:
        psi = np.broadcast_to(scale, (d,))
        lp += sum(stats.invgamma.logpdf(v, a=nu / 2, scale=psi / 2).sum() for v in covariances)
    elif covariance == "EEI":  # one variance per coordinate, shared by the components
        psi = np.broadcast_to(scale, (d,))
        lp += stats.invgamma.logpdf(covariances, a=nu / 2, scale=psi / 2).sum()
    else:  # spherical: one variance per component; EII: one variance for all
        lp += stats.invgamma.logpdf(covariances, a=nu / 2, scale=float(scale) / 2).sum()
    if prior.shrinkage > 0:
        dense = dense_covariances(covariances, covariance, K, d)
        lp += sum(stats.multivariate_normal.logpdf(m, prior.mean, S / prior.shrinkage)
                  for m, S in zip(means, dense))
    return float(lp)


def component_log_densities(X, means, covariances, covariance):
    """log N(x_n | μ_k, Σ_k), shape (N, K), from scipy.stats.multivariate_normal."""
    K, d = np.shape(means)
    dense = dense_covariances(covariances, covariance, K, d)
    return np.column_stack([stats.multivariate_normal.logpdf(X, m, S).reshape(len(X))
                            for m, S in zip(means, dense)])


def log_likelihood(X, weights, means, covariances, covariance, sample_weight=None):
    from scipy.special import logsumexp

    lp = component_log_densities(X, means, covariances, covariance) + np.log(weights)
    per_row = logsumexp(lp, axis=1)
    return float(per_row.sum() if sample_weight is None else sample_weight @ per_row)


def random_parameters(rng, K, d, covariance):
    """Random valid (weights, means, covariances) in a structure's shapes."""
    weights = rng.dirichlet(np.full(K, 2.0))
    means = rng.normal(size=(K, d))
    if covariance in ("full", "tied"):
        A = rng.normal(size=(K, d, d))
        covs = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(d)
        covs = covs if covariance == "full" else covs[0]
    elif covariance == "diag":
        covs = rng.gamma(3.0, 0.5, size=(K, d))
    elif covariance in MATRIX_MODELS + VARIANCE_MODELS:
        covs = _decomposed(rng, K, d, covariance)
    elif covariance == "EEI":
        covs = rng.gamma(3.0, 0.5, size=d)
    elif covariance == "EII":
        covs = np.asarray(rng.gamma(3.0, 0.5))
    else:
        covs = rng.gamma(3.0, 0.5, size=K)
    return weights, means, covs


def _decomposed(rng, K, d, model):
    """Σ_k = λ_k D_k A_k D_kᵀ with each letter's Equal (one draw for all components), Variable
    (one per component) or Identity, from random volumes, shapes and rotations (QR)."""
    def draw(letter, make):
        if letter == "I":
            return [None] * K
        return [make()] * K if letter == "E" else [make() for _ in range(K)]

    def shape():
        a = rng.gamma(3.0, 0.5, size=d)
        return a / np.exp(np.log(a).mean())

    def rotation():
        q, r = np.linalg.qr(rng.normal(size=(d, d)))
        return q * np.sign(np.diag(r))

    volumes = draw(model[0], lambda: rng.gamma(3.0, 0.5))
    shapes = draw(model[1], shape)
    rotations = draw(model[2], rotation)
    if model[2] == "I":
        return np.array([lam * a for lam, a in zip(volumes, shapes)])
    return np.array([lam * (D * a) @ D.T for lam, a, D in zip(volumes, shapes, rotations)])
