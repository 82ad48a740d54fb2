"""The full posterior in PyMC: the MAP-EM model's prior and likelihood, and its NUTS run.

    weights      ~ Dirichlet(α)                                  (K = 1: fixed at 1)
    covariances  ~ InverseWishart(ν0, Ψ0)   full (per component) / tied (one matrix)
                   InverseGamma(ν0/2, ψ0/2) diag (per variance) / spherical (per component)
    means | Σ    ~ MvNormal(m0, Σ_k / κ0)                        (κ0 = 0: Flat)
    x_n          ~ Σ_k π_k N(μ_k, Σ_k)                           (labels marginalised)

The prior's parameters are read from the same :class:`~bayesgmm.GMMPrior` object that
:func:`~bayesgmm.fit_map` uses, and ``compile_logp(jacobian=False)`` of this model at a MAP-EM
estimate equals that fit's ``log_posterior`` (``tests/test_posterior.py``).
:func:`bayesgmm.sample_posterior` (:mod:`bayesgmm.sampling`) is the front door that runs it.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.slinalg import cholesky, solve_triangular

from . import _compat
from ._interrupt import InterruptGuard
from .distributions import InverseWishart, NonCentred
from .health import SamplingInterrupted
from .priors import posterior_model_inputs
from .result import MixtureFit

__all__ = ["build_model", "run_nuts", "SamplingInterrupted"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_log = logging.getLogger("bayesgmm")


class _NutsInterruptGuard(InterruptGuard):
    """:class:`~bayesgmm._interrupt.InterruptGuard` for PyMC: the per-draw callback marks the
    start of sampling (logging the compile time) and stops the chain once interrupted."""

    def __init__(self):
        super().__init__()
        self.started = time.perf_counter()
        self.first_draw = None

    def callback(self, trace, draw):
        if not self.sampling:
            self.sampling, self.first_draw = True, time.perf_counter()
            _log.info("compiled and initialised in %.1f s; sampling",
                      self.first_draw - self.started)
        if self.interrupted:
            raise KeyboardInterrupt  # PyMC ends the chain (and each later one at its first draw)


def _mixture_logp(value, weights, means, chol):
    """log Σ_k π_k N(x_n | μ_k, L_k L_kᵀ) per row, vectorised over components.

    Parameters
    ----------
    value : (N, d);  weights : (K,);  means : (K, d);  chol : (K, d, d) lower Cholesky factors

    Returns
    -------
    (N,)
    """
    # PyMC hands the parameters over with the observations' batch dims (all of size 1 here)
    weights, means, chol = (p[(0,) * (p.ndim - core)]
                            for p, core in ((weights, 1), (means, 2), (chol, 3)))
    d = chol.type.shape[-1]
    centred = value.T[None, :, :] - means[:, :, None]  # (K, d, N)
    y = solve_triangular(chol, centred, lower=True)  # L_k⁻¹ (x_n − μ_k), batched over K
    log_det = 2.0 * pt.sum(pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (K,)
    joint = (pt.log(weights)[:, None]
             - 0.5 * (d * _LOG_2PI + log_det[:, None] + pt.sum(pt.square(y), axis=1)))
    return pt.logsumexp(joint, axis=0)


def _mixture_random(weights, means, chol, rng=None, size=None):
    """Draws x ~ Σ_k π_k N(μ_k, L_k L_kᵀ) of shape size + (d,): the likelihood's ``random``,
    so that prior and posterior predictive sampling work on the model."""
    weights, means, chol = (np.asarray(p)[(0,) * (np.ndim(p) - core)]
                            for p, core in ((weights, 1), (means, 2), (chol, 3)))
    size = () if size is None else tuple(np.atleast_1d(size))
    labels = rng.choice(len(weights), p=weights / weights.sum(), size=size)
    noise = rng.standard_normal(size + (means.shape[-1], 1))
    return means[labels] + (chol[labels] @ noise)[..., 0]


def _inverse_wishart(prior, structure, K, d):
    return InverseWishart("covariances", prior.dof, prior.scale, dims=structure.dims)


def _inverse_gamma(prior, structure, K, d):
    """IG(ν0/2, ψ0/2), the 1 × 1 inverse-Wishart (derivation §4), on every variance."""
    scale = np.broadcast_to(prior.scale, structure.shape(K, d))
    return pm.InverseGamma("covariances", alpha=prior.dof / 2, beta=scale / 2,
                           dims=structure.dims)


#: the PyMC prior of the covariances, by :attr:`CovarianceStructure.pymc_distribution`
_COVARIANCE_PRIORS = {"InverseWishart": _inverse_wishart, "InverseGamma": _inverse_gamma}


def build_model(X, n_components: int, covariance: str = "full", prior="default", *,
                likelihood: bool = True, noncentred_means: bool = False) -> pm.Model:
    """The PyMC model of the Gaussian mixture under the conjugate prior.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int
    covariance : {"full", "tied", "diag", "spherical"}
    prior : GMMPrior, "default" or "mclust"
        The same prior object :func:`~bayesgmm.fit_map` takes (a proper prior is required).
    likelihood : bool
        False leaves the observations out: the model is then the prior alone (X only fixes d).
    noncentred_means : bool
        Sample the means through :class:`~bayesgmm.distributions.NonCentred` (μ stays the value
        variable and the density is unchanged).  It removes the (μ_k, Σ_k) funnel of weakly
        supported components but couples z and Σ where the data pin μ down, so it is off by
        default (``benchmarks/README.md`` has the measurements).

    Returns
    -------
    pymc.Model
        Free variables ``weights`` (component), ``means`` (component, feature) and
        ``covariances`` (the structure's dims, as :meth:`MixtureFit.to_xarray`), and the
        observed ``x`` (obs, feature) whose pointwise log density is the marginal mixture density.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> model = bg.build_model(bg.load_dataset("faithful"), 2, "full")
    >>> sorted(rv.name for rv in model.free_RVs)
    ['covariances', 'means', 'weights']
    """
    X, features, K, structure, prior = posterior_model_inputs(X, n_components, covariance, prior)
    n, d = X.shape
    coords = {"component": np.arange(K), "feature": list(features),
              "feature_bis": list(features), "obs": np.arange(n)}
    with pm.Model(coords=coords) as model:
        if K > 1:
            weights = pm.Dirichlet("weights", a=prior.concentration_for(K), dims="component")
        else:
            weights = pm.Deterministic("weights", pt.ones(1), dims="component")
        covariances = _COVARIANCE_PRIORS[structure.pymc_distribution](prior, structure, K, d)
        chol = cholesky(structure.expand(covariances, K, d), lower=True, on_error="nan")
        if prior.shrinkage > 0:
            transform = dict(transform=NonCentred()) if noncentred_means else {}
            means = pm.MvNormal("means", mu=prior.mean, chol=chol / np.sqrt(prior.shrinkage),
                                dims=("component", "feature"), **transform)
        else:
            means = pm.Flat("means", dims=("component", "feature"))
        if likelihood:
            pm.CustomDist("x", weights, means, chol, logp=_mixture_logp,
                          random=_mixture_random, observed=X,
                          signature="(k),(k,d),(k,d,d)->(d)", dims=("obs", "feature"))
    return model


def _initial_values(fit: MixtureFit) -> dict:
    values = {"means": np.array(fit.means), "covariances": np.array(fit.covariances)}
    if fit.n_components > 1:
        # an emptied component (π_k = 0) lies on the simplex boundary: nudge it inside
        weights = np.maximum(fit.weights, 1e-8)
        values["weights"] = weights / weights.sum()
    return values


def _completed_draws(idata) -> int:
    post = getattr(idata, "posterior", None)
    return 0 if post is None or "draw" not in post.sizes else int(post.sizes["draw"])


def run_nuts(data, K: int, structure, prior, init: MixtureFit, *, draws: int, tune: int,
             chains: int, cores: int | None, random_seed, progressbar: bool,
             target_accept: float, backend: str, noncentred_means: bool,
             allow_partial: bool):
    """PyMC's NUTS on :func:`build_model`, every chain started at ``init``, Ctrl-C handled.

    Arguments are validated by :func:`bayesgmm.sample_posterior`, which documents them.

    Returns
    -------
    arviz.InferenceData
        With ``log_likelihood`` and ``log_prior`` groups; ``posterior.attrs["partial"]`` on
        an interrupted run kept with ``allow_partial``.
    """
    model = build_model(data, K, structure.name, prior, noncentred_means=noncentred_means)
    if cores is None:
        cores = 1 if backend == "NUMBA" else min(chains, os.cpu_count() or 1)
    with _NutsInterruptGuard() as guard:
        try:
            idata = _compat.sample_nuts(
                model, draws=draws, tune=tune, chains=chains, cores=cores,
                random_seed=random_seed, initvals=_initial_values(init),
                target_accept=target_accept, progressbar=progressbar,
                compile_mode=backend, callback=guard.callback)
        except KeyboardInterrupt:
            raise SamplingInterrupted("sampling was interrupted before it began drawing; "
                                      "nothing is returned") from None
        completed = _completed_draws(idata)
        if guard.interrupted or completed < draws:
            if not allow_partial or completed == 0:
                raise SamplingInterrupted(
                    f"sampling was interrupted after {completed} of {draws} draws per "
                    "chain; nothing is returned (allow_partial=True keeps partial draws, "
                    "marked as such)")
            idata.posterior.attrs.update(partial=1, draws_requested=draws)
    _compat.add_log_likelihood_and_prior(idata, model)
    idata.posterior.attrs["sampler"] = "nuts"
    return idata
