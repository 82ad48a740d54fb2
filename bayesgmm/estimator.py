"""A scikit-learn estimator around :func:`bayesgmm.fit_map` (needs scikit-learn)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_data
from .covariance import get_structure
from .em import fit_map

__all__ = ["MAPGaussianMixture"]


class MAPGaussianMixture(DensityMixin, BaseEstimator):
    """Regularised Gaussian mixture: MAP-EM under the conjugate prior, as an sklearn estimator.

    Parameters mirror :func:`bayesgmm.fit_map`; ``prior`` defaults to the data-scaled default
    prior (``"default"``), so the fit never collapses.  ``covariance_type``, when given, is
    scikit-learn's name for ``covariance`` and takes precedence (drop-in for GaussianMixture).  After ``fit``: ``fit_`` (the
    :class:`~bayesgmm.MixtureFit`), ``weights_``, ``means_``, ``covariances_``,
    ``precisions_cholesky_`` and ``precisions_`` (scikit-learn's shapes and meaning),
    ``converged_``, ``n_iter_``, ``lower_bound_`` (the log posterior per sample, as
    scikit-learn's per-sample bound), ``lower_bounds_`` (its history), ``log_posterior_`` (the
    total), ``n_features_in_`` and, for DataFrames, ``feature_names_in_``.  Methods on new data
    check the number (and names) of features against the fit, as scikit-learn's do.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> model = bg.MAPGaussianMixture(n_components=2, random_state=0)
    >>> model.fit(bg.load_dataset("faithful")).weights_.round(2)
    array([0.36, 0.64])
    """

    def __init__(self, n_components=1, *, covariance="full", prior="default", init="auto",
                 n_init=None, tol=1e-8, max_iter=1000, random_state=None, n_threads=1,
                 covariance_type=None):
        self.n_components = n_components
        self.covariance = covariance
        self.covariance_type = covariance_type
        self.prior = prior
        self.init = init
        self.n_init = n_init
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X, y=None, sample_weight=None):
        """Fit by MAP-EM (:func:`bayesgmm.fit_map`); ``y`` is ignored."""
        validate_data(self, X, reset=True, skip_check_array=True)  # n_features_in_, names
        covariance = self.covariance if self.covariance_type is None else self.covariance_type
        fit = fit_map(X, self.n_components, covariance, prior=self.prior, init=self.init,
                      n_init=self.n_init, tol=self.tol, max_iter=self.max_iter,
                      sample_weight=sample_weight, random_state=self.random_state,
                      n_threads=self.n_threads)
        self.fit_ = fit
        self.weights_, self.means_, self.covariances_ = fit.weights, fit.means, fit.covariances
        self.precisions_cholesky_, self.precisions_ = _precisions(fit)
        self.converged_, self.n_iter_ = fit.converged, fit.n_iter
        self.log_posterior_ = fit.log_posterior
        self.lower_bound_ = fit.log_posterior / fit.n_samples
        self.lower_bounds_ = np.asarray(fit.history) / fit.n_samples
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def _fitted(self, X=None):
        check_is_fitted(self, "fit_")
        if X is not None:  # our checks of X, then its features against the fit's
            check_data(X)
            validate_data(self, X, reset=False, skip_check_array=True)
        return self.fit_

    def predict(self, X):
        return self._fitted(X).predict(_values(X))

    def predict_proba(self, X):
        return self._fitted(X).predict_proba(_values(X))

    def score_samples(self, X):
        return self._fitted(X).score_samples(_values(X))

    def score(self, X, y=None):
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1):
        return self._fitted().sample(n_samples, random_state=self.random_state)

    def bic(self, X):
        return self._fitted(X).bic(_values(X))

    def aic(self, X):
        return self._fitted(X).aic(_values(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


def _values(X):
    """A DataFrame's values (its column names were checked against the fit's)."""
    return X.to_numpy() if hasattr(X, "to_numpy") and hasattr(X, "columns") else X


def _precisions(fit):
    """scikit-learn's ``precisions_cholesky_`` (the inverse Cholesky factors' transposes, i.e.
    the upper-triangular P with P Pᵀ = Σ⁻¹) and ``precisions_`` (Σ⁻¹), in the structure's
    shape: (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical."""
    structure = get_structure(fit.covariance_type)
    covs = np.asarray(fit.covariances)
    if not structure.matrix_valued:
        return 1.0 / np.sqrt(covs), 1.0 / covs
    L = np.linalg.cholesky(covs)
    eye = np.broadcast_to(np.eye(covs.shape[-1]), covs.shape)
    inverse_factor = np.linalg.solve(L, eye)                          # L⁻¹
    precision_cholesky = np.triu(np.swapaxes(inverse_factor, -1, -2))  # L⁻ᵀ, upper
    return precision_cholesky, precision_cholesky @ np.swapaxes(precision_cholesky, -1, -2)
