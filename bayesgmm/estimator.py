"""A scikit-learn estimator around :func:`bayesgmm.fit_map` (needs scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from .em import fit_map

__all__ = ["MAPGaussianMixture"]


class MAPGaussianMixture(DensityMixin, BaseEstimator):
    """Regularised Gaussian mixture: MAP-EM under the conjugate prior, as an sklearn estimator.

    Parameters mirror :func:`bayesgmm.fit_map`; ``prior`` defaults to the data-scaled default
    prior (``"default"``), so the fit never collapses.  After ``fit``: ``fit_`` (the
    :class:`~bayesgmm.MixtureFit`), ``weights_``, ``means_``, ``covariances_``, ``converged_``,
    ``n_iter_``, ``lower_bound_`` (the log posterior) and ``n_features_in_``.
    """

    def __init__(self, n_components=1, *, covariance="full", prior="default", init="auto",
                 n_init=None, tol=1e-8, max_iter=1000, random_state=None, n_threads=1):
        self.n_components = n_components
        self.covariance = covariance
        self.prior = prior
        self.init = init
        self.n_init = n_init
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, y=None, sample_weight=None):
        fit = fit_map(X, self.n_components, self.covariance, prior=self.prior, init=self.init,
                      n_init=self.n_init, tol=self.tol, max_iter=self.max_iter,
                      sample_weight=sample_weight, random_state=self.random_state,
                      n_threads=self.n_threads)
        self.fit_ = fit
        self.weights_, self.means_, self.covariances_ = fit.weights, fit.means, fit.covariances
        self.converged_, self.n_iter_, self.lower_bound_ = fit.converged, fit.n_iter, fit.log_posterior
        self.n_features_in_ = fit.n_features
        if fit.feature_names is not None:
            self.feature_names_in_ = np.asarray(fit.feature_names, dtype=object)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _fitted(self):
        check_is_fitted(self, "fit_")
        return self.fit_

    def predict(self, X):
        return self._fitted().predict(X)

    def predict_proba(self, X):
        return self._fitted().predict_proba(X)

    def score_samples(self, X):
        return self._fitted().score_samples(X)

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1):
        return self._fitted().sample(n_samples, random_state=self.random_state)

    def bic(self, X):
        return self._fitted().bic(X)

    def aic(self, X):
        return self._fitted().aic(X)
