"""The full posterior in PyMC: the MAP-EM model's prior and likelihood, sampled with NUTS.

    weights      ~ Dirichlet(α)                                  (K = 1: fixed at 1)
    covariances  ~ InverseWishart(ν0, Ψ0)   full (per component) / tied (one matrix)
                   InverseGamma(ν0/2, ψ0/2) diag (per variance) / spherical (per component)
    means | Σ    ~ MvNormal(m0, Σ_k / κ0)                        (κ0 = 0: Flat)
    x_n          ~ Σ_k π_k N(μ_k, Σ_k)                           (labels marginalised)

The prior's parameters are read from the same :class:`~bayesgmm.GMMPrior` object that
:func:`~bayesgmm.fit_map` uses, and ``compile_logp(jacobian=False)`` of this model at a MAP-EM
estimate equals that fit's ``log_posterior`` (``tests/test_posterior.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.slinalg import cholesky, solve_triangular
from threadpoolctl import threadpool_limits

from . import _compat
from ._validation import (
    check_data,
    check_n_components,
    check_positive_int,
    check_probability,
    check_random_state,
    feature_names_of,
)
from .covariance import get_structure
from .distributions import InverseWishart, NonCentred
from .em import fit_map
from .health import SamplerWarning, sampler_health
from .priors import resolve_prior
from .result import MixtureFit

__all__ = ["build_model", "sample_posterior", "SamplingInterrupted"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: draws and pointwise log-likelihoods may take at most this share of the machine's memory
_MEMORY_SHARE = 0.5
_log = logging.getLogger("bayesgmm")


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling was interrupted (Ctrl-C) before every draw was made; nothing is returned."""


class _InterruptGuard:
    """Ctrl-C during sampling without tracebacks from compiled code or silently short chains.

    While PyMC draws, SIGINT only sets a flag (raising inside Numba-compiled code surfaces as a
    ``SystemError``); the per-draw callback then stops the chain, and :func:`sample_posterior`
    raises :class:`SamplingInterrupted`.  Before the first draw (compilation), SIGINT raises
    at once.  Signal handlers can be set only from the main thread; elsewhere the guard does
    nothing and the draw count alone reveals an interrupted run.
    """

    def __init__(self):
        self.interrupted = self.sampling = False
        self.started = time.perf_counter()
        self.first_draw = None
        self._previous = None

    def _handler(self, signum, frame):
        self.interrupted = True
        if not self.sampling:
            raise KeyboardInterrupt

    def callback(self, trace, draw):
        if not self.sampling:
            self.sampling, self.first_draw = True, time.perf_counter()
            _log.info("compiled and initialised in %.1f s; sampling",
                      self.first_draw - self.started)
        if self.interrupted:
            raise KeyboardInterrupt  # PyMC ends the chain (and each later one at its first draw)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


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


def _inverse_wishart(prior, structure, K, d):
    return InverseWishart("covariances", prior.dof, prior.scale, dims=structure.dims)


def _inverse_gamma(prior, structure, K, d):
    """IG(ν0/2, ψ0/2), the 1 × 1 inverse-Wishart (derivation §4), on every variance."""
    scale = np.broadcast_to(prior.scale, structure.shape(K, d))
    return pm.InverseGamma("covariances", alpha=prior.dof / 2, beta=scale / 2,
                           dims=structure.dims)


#: the PyMC prior of the covariances, by :attr:`CovarianceStructure.pymc_distribution`
_COVARIANCE_PRIORS = {"InverseWishart": _inverse_wishart, "InverseGamma": _inverse_gamma}


def _prepare(X, n_components, covariance, prior):
    names = feature_names_of(X)
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    prior = resolve_prior(prior, X, K, structure.name, allow_none=False)
    return X, names or tuple(f"x{j}" for j in range(d)), K, structure, prior


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
    """
    X, features, K, structure, prior = _prepare(X, n_components, covariance, prior)
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
            pm.CustomDist("x", weights, means, chol, logp=_mixture_logp, observed=X,
                          signature="(k),(k,d),(k,d,d)->(d)", dims=("obs", "feature"))
    return model


@contextmanager
def _single_threaded_blas():
    """One BLAS thread here and in sampler worker processes (they inherit the environment)."""
    saved = {name: os.environ.get(name) for name in _BLAS_ENV}
    os.environ.update({name: "1" for name in _BLAS_ENV})
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_init(init, K: int, d: int, covariance: str) -> MixtureFit:
    if not isinstance(init, MixtureFit):
        raise TypeError(f"init must be a MixtureFit from bg.fit_map or None, got {type(init)}")
    if (init.n_components, init.n_features, init.covariance_type) != (K, d, covariance):
        raise ValueError(
            f"init is a fit with K={init.n_components}, d={init.n_features}, "
            f"covariance={init.covariance_type!r}, but the model has K={K}, d={d}, "
            f"covariance={covariance!r}"
        )
    return init


def _initial_values(fit: MixtureFit) -> dict:
    values = {"means": np.array(fit.means), "covariances": np.array(fit.covariances)}
    if fit.n_components > 1:
        # an emptied component (π_k = 0) lies on the simplex boundary: nudge it inside
        weights = np.maximum(fit.weights, 1e-8)
        values["weights"] = weights / weights.sum()
    return values


def _check_memory(draws: int, chains: int, n_values: int) -> None:
    """Refuse, before any compilation, a run whose draws cannot fit in memory."""
    needed = float(draws) * chains * n_values * 8
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if needed > _MEMORY_SHARE * available:
        raise ValueError(
            f"draws={draws} × chains={chains} would hold {needed / 2**30:.3g} GiB of draws and "
            f"pointwise log-likelihoods ({n_values} values per draw), more than "
            f"{_MEMORY_SHARE:.0%} of this machine's {available / 2**30:.3g} GiB; ask for fewer "
            "draws")


def _completed_draws(idata) -> int:
    post = getattr(idata, "posterior", None)
    return 0 if post is None or "draw" not in post.sizes else int(post.sizes["draw"])


def sample_posterior(X, n_components: int, covariance: str = "full", prior="default", *,
                     init: MixtureFit | None = None, draws: int = 1000, tune: int = 1000,
                     chains: int = 4, cores: int | None = None, random_seed=None,
                     progressbar: bool = True, target_accept: float = 0.9,
                     backend: str = "NUMBA", noncentred_means: bool = False,
                     allow_partial: bool = False, **sample_kwargs):
    """Sample the full posterior with NUTS, starting every chain at the MAP-EM estimate.

    Parameters
    ----------
    X, n_components, covariance, prior
        As for :func:`build_model`.
    init : MixtureFit, optional
        Starting point for every chain; by default ``fit_map`` is run (its default search,
        seeded by ``random_seed``).  Starting all chains at one mode keeps them in one labelling.
    draws, tune, chains : int
        Kept draws and tuning steps per chain; number of chains.
    cores : int, optional
        Worker processes.  Default: 1 with the Numba backend (each worker process would compile
        the model again), else min(chains, CPUs).  BLAS is limited to one thread.
    random_seed : int, optional
    progressbar : bool
    target_accept : float
        NUTS' target acceptance rate, in (0, 1).
    backend : {"NUMBA", "C", "FAST_RUN", ...}
        PyTensor compilation mode of the sampler's log density; Numba compiles faster and
        evaluates faster than the C backend on these models (``benchmarks/README.md``).
    noncentred_means : bool
        See :func:`build_model`.
    allow_partial : bool
        What an interrupted run (Ctrl-C) gives.  False (default): :class:`SamplingInterrupted`
        is raised and nothing is returned.  True: the draws made so far are returned, marked
        ``posterior.attrs["partial"] = 1`` with ``draws_requested``; :func:`bayesgmm.compare`
        says so and report folders refuse them.
    **sample_kwargs
        Passed to :func:`pymc.sample`.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``sample_stats``, ``log_likelihood`` (``x``, pointwise over
        ``obs``), ``log_prior`` and ``observed_data``; ``posterior.attrs["sampler_health"]``
        holds divergences, R-hat, ESS and label agreement (see :func:`bayesgmm.health.sampler_health`).
    """
    data = X  # keeps a DataFrame's column names for the model's coords
    X, _, K, structure, prior = _prepare(X, n_components, covariance, prior)
    draws = check_positive_int(draws, "draws")
    tune = check_positive_int(tune, "tune", minimum=0)
    chains = check_positive_int(chains, "chains")
    target_accept = check_probability(target_accept, "target_accept")
    random_seed = check_random_state(random_seed, "random_seed")
    n, d = X.shape
    _check_memory(draws, chains, n + K * (d + 1) + int(np.prod(structure.shape(K, d))))
    if init is None:
        init = fit_map(X, K, structure.name, prior=prior, tol=1e-10, max_iter=5000,
                       random_state=random_seed, warn_convergence=False)
    init = _check_init(init, K, X.shape[1], structure.name)
    model = build_model(data, K, structure.name, prior, noncentred_means=noncentred_means)
    if cores is None:
        cores = 1 if backend == "NUMBA" else min(chains, os.cpu_count() or 1)
    with _single_threaded_blas():
        with _InterruptGuard() as guard:
            try:
                idata = _compat.sample_nuts(
                    model, draws=draws, tune=tune, chains=chains, cores=cores,
                    random_seed=random_seed, initvals=_initial_values(init),
                    target_accept=target_accept, progressbar=progressbar,
                    compile_mode=backend, callback=guard.callback, **sample_kwargs)
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
    health = sampler_health(idata, init)
    idata.posterior.attrs["sampler_health"] = health.to_json()
    for problem in health.problems():
        warnings.warn(problem, SamplerWarning, stacklevel=2)
    return idata
