"""The full posterior in PyMC: the MAP-EM model's prior and likelihood, and its NUTS run.

    weights      ~ Dirichlet(α)                                  (K = 1: fixed at 1)
    covariances  ~ InverseWishart(ν0, Ψ0)   full (per component) / tied (one matrix)
                   InverseGamma(ν0/2, ψ0/2) diag (per variance) / spherical (per component)
                                            / EEI, EII (shared), restricted to VEI's and EVI's
                                            variances (:func:`RestrictedInverseGamma`)
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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pytensor.tensor.slinalg import cholesky, solve_triangular

from . import _compat
from ._interrupt import InterruptGuard
from .distributions import InverseWishart, NonCentred, RestrictedInverseGamma
from .health import SamplingInterrupted
from .priors import posterior_model_inputs
from .result import MixtureFit

__all__ = ["build_model", "run_nuts", "run_nutpie", "SamplingInterrupted"]

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


def _inverse_wishart(hyper, structure, K, d):
    # Ψ0 symmetrised (it is symmetric: the density is unchanged) so that its Cholesky factor is
    # taken of a fresh array: nutpie hands pm.Data to Numba read-only, and PyTensor's Numba
    # Cholesky cannot be compiled for a read-only input
    scale = 0.5 * (hyper["prior_scale"] + hyper["prior_scale"].mT)
    return InverseWishart("covariances", hyper["prior_dof"], scale, dims=structure.dims)


def _inverse_gamma(hyper, structure, K, d):
    """IG(ν0/2, ψ0/2), the 1 × 1 inverse-Wishart (derivation §4), on every variance."""
    return pm.InverseGamma("covariances", alpha=hyper["prior_dof"] / 2,
                           beta=hyper["prior_scale"] / 2, dims=structure.dims)


def _restricted_inverse_gamma(hyper, structure, K, d):
    """IG(ν0/2, ψ0/2) on the variances of VEI or EVI, in their free log coordinates (§4c)."""
    return RestrictedInverseGamma("covariances", structure.name, hyper["prior_dof"] / 2,
                                  hyper["prior_scale"] / 2, dims=structure.dims)


#: the PyMC prior of the covariances, by :attr:`CovarianceStructure.pymc_distribution`
_COVARIANCE_PRIORS = {"InverseWishart": _inverse_wishart, "InverseGamma": _inverse_gamma,
                      "RestrictedInverseGamma": _restricted_inverse_gamma}


def _hyperparameters(prior, structure, K: int, d: int) -> dict:
    """The prior's values as the model's data (``pm.Data``), by name: their shapes depend on
    (K, d, structure) only, so a compiled model serves every prior of that shape."""
    scale = (np.asarray(prior.scale, dtype=float) if structure.matrix_valued
             else np.broadcast_to(prior.scale, structure.shape(K, d)))
    return {"prior_concentration": prior.concentration_for(K),
            "prior_dof": np.float64(prior.dof), "prior_scale": np.array(scale, dtype=float),
            "prior_mean": np.asarray(prior.mean, dtype=float),
            "prior_shrinkage": np.float64(prior.shrinkage)}


def build_model(X, n_components: int, covariance: str = "full", prior="default", *,
                likelihood: bool = True, noncentred_means: bool = False) -> pm.Model:
    """The PyMC model of the Gaussian mixture under the conjugate prior.

    The data (``x_data``) and the prior's values (``prior_concentration``, ``prior_dof``,
    ``prior_scale``, ``prior_mean``, ``prior_shrinkage``) are ``pm.Data``: ``pm.set_data``
    replaces them without rebuilding or recompiling the model (shapes must stay the same).

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int
    covariance : str
        A structure with a sampled prior (:func:`~bayesgmm.sample_posterior` lists them).
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
    return _model(X, features, K, structure, prior, likelihood=likelihood,
                  noncentred_means=noncentred_means)


def _model(X, features, K: int, structure, prior, *, likelihood: bool = True,
           noncentred_means: bool = False) -> pm.Model:
    """:func:`build_model` on validated inputs (:func:`~bayesgmm.priors.posterior_model_inputs`)."""
    n, d = X.shape
    coords = {"component": np.arange(K), "feature": list(features),
              "feature_bis": list(features), "obs": np.arange(n)}
    with pm.Model(coords=coords) as model:
        hyper = {name: pm.Data(name, value, shape=np.shape(value))
                 for name, value in _hyperparameters(prior, structure, K, d).items()}
        if K > 1:
            weights = pm.Dirichlet("weights", a=hyper["prior_concentration"], dims="component")
        else:
            weights = pm.Deterministic("weights", pt.ones(1), dims="component")
        covariances = _COVARIANCE_PRIORS[structure.pymc_distribution](hyper, structure, K, d)
        # factor first, then expand: one factorisation per distinct Σ (a tied Σ once), which
        # PyTensor rewrites to the sampler's own factor (LogCholesky tags it)
        factor = (cholesky(covariances, lower=True, on_error="nan") if structure.matrix_valued
                  else pt.sqrt(covariances))
        chol = structure.expand(factor, K, d)
        if prior.shrinkage > 0:
            transform = dict(transform=NonCentred()) if noncentred_means else {}
            means = pm.MvNormal("means", mu=hyper["prior_mean"],
                                chol=chol / pt.sqrt(hyper["prior_shrinkage"]),
                                dims=("component", "feature"), **transform)
        else:
            means = pm.Flat("means", dims=("component", "feature"))
        if likelihood:
            data = pm.Data("x_data", X, shape=(n, d), dims=("obs", "feature"))
            pm.CustomDist("x", weights, means, chol, logp=_mixture_logp,
                          random=_mixture_random, observed=data,
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


@dataclass
class _CompiledNuts:
    """A model and its NUTS step (the compiled log density and gradient), for one shape."""

    model: pm.Model
    step: object
    lock: threading.Lock = field(default_factory=threading.Lock)


#: compiled models by shape, most recently used last (:func:`_compiled_nuts`)
_COMPILED: OrderedDict = OrderedDict()
_COMPILED_KEEP = 8
_COMPILED_LOCK = threading.Lock()


def _compiled_nuts(X, features, K: int, structure, prior, *, noncentred_means: bool,
                   target_accept: float | None, backend: str) -> tuple[_CompiledNuts, bool]:
    """The compiled model for this shape, and whether it was compiled now; :func:`run_nuts`
    sets the data and prior on it while holding the entry's lock.

    Everything that changes the graph is the key: the data's shape and feature names, K, the
    structure, whether κ0 > 0, the means' parametrisation, the step's target and the backend
    (``"nutpie"``: nutpie's compiled model as the step, its target given when sampling).
    Everything else — the data's values and every value of the prior — is ``pm.Data``, so a
    sweep that re-samples many priors, or bootstrap data of one size, compiles once
    per process.  The last :data:`_COMPILED_KEEP` shapes are kept.
    """
    key = (X.shape, tuple(features), K, structure.name, prior.shrinkage > 0, noncentred_means,
           target_accept, backend)
    with _COMPILED_LOCK:
        entry = _COMPILED.pop(key, None)
        compiled = entry is None
        if compiled:
            model = _model(X, features, K, structure, prior, noncentred_means=noncentred_means)
            step = (_compat.nutpie_compile(model) if backend == "nutpie" else
                    _compat.nuts_step(model, target_accept=target_accept, compile_mode=backend))
            entry = _CompiledNuts(model, step)
        _COMPILED[key] = entry
        while len(_COMPILED) > _COMPILED_KEEP:
            _COMPILED.popitem(last=False)
    return entry, compiled


def run_nuts(X, features, K: int, structure, prior, init: MixtureFit, *, draws: int,
             tune: int, chains: int, cores: int | None, random_seed, progressbar: bool,
             target_accept: float, backend: str, noncentred_means: bool,
             allow_partial: bool):
    """PyMC's NUTS on :func:`build_model`, every chain started at ``init``, Ctrl-C handled.

    Arguments are validated by :func:`bayesgmm.sample_posterior`, which documents them; the
    model is compiled once per shape and process (:func:`_compiled_nuts`).

    Returns
    -------
    arviz.InferenceData
        With ``log_likelihood`` and ``log_prior`` groups; ``sample_stats.attrs``
        ``startup_time`` (seconds from the call to the first draw: building and compiling the
        model when ``compiled`` is 1 — including Numba's compilation, which PyMC's own
        ``sampling_time`` counts as sampling — and initialising), ``draw_time`` (first draw
        to the pointwise log-likelihoods) and ``compiled``;
        ``posterior.attrs["partial"]`` on an interrupted run kept with ``allow_partial``.
    """
    if cores is None:
        cores = 1 if backend == "NUMBA" else min(chains, os.cpu_count() or 1)
    with _NutsInterruptGuard() as guard:
        entry, compiled = _compiled_nuts(X, features, K, structure, prior,
                                         noncentred_means=noncentred_means,
                                         target_accept=target_accept, backend=backend)
        with entry.lock:  # one run at a time per compiled model, with its own data set
            _compat.set_data(entry.model, {"x_data": X, **_hyperparameters(
                prior, structure, K, X.shape[1])})
            try:
                idata = _compat.sample_nuts(
                    entry.model, entry.step, draws=draws, tune=tune, chains=chains,
                    cores=cores, random_seed=random_seed, initvals=_initial_values(init),
                    progressbar=progressbar, compile_mode=backend, callback=guard.callback)
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
            _compat.add_log_likelihood_and_prior(idata, entry.model)
    idata.posterior.attrs["sampler"] = "nuts"
    idata.sample_stats.attrs.update(startup_time=guard.first_draw - guard.started,
                                    draw_time=time.perf_counter() - guard.first_draw,
                                    compiled=int(compiled))
    return idata


def run_nutpie(X, features, K: int, structure, prior, init: MixtureFit, *, draws: int,
               tune: int, chains: int, cores: int | None, random_seed, progressbar: bool,
               target_accept: float, noncentred_means: bool):
    """nutpie's NUTS on :func:`build_model` (the ``nutpie`` extra), every chain started at
    ``init`` without jitter, with the ``log_likelihood`` and ``log_prior`` groups added.

    The nutpie model is compiled once per shape and process like :func:`run_nuts`'s (a new
    prior or new data of the same shape are nutpie's ``with_data``), but its compilation cannot
    be cached across processes.  An interrupted run raises :class:`SamplingInterrupted` (nutpie
    returns no partial draws here).

    Returns
    -------
    arviz.InferenceData
        As :func:`run_nuts`'s (``sample_stats`` holds nutpie's statistics).
    """
    started = time.perf_counter()
    try:
        entry, compiled = _compiled_nuts(X, features, K, structure, prior,
                                         noncentred_means=noncentred_means,
                                         target_accept=None, backend="nutpie")
    except ImportError:
        raise ImportError("sampler='nutpie' needs nutpie: pip install 'bayesgmm[nutpie]'"
                          ) from None
    data = {"x_data": X, **_hyperparameters(prior, structure, K, X.shape[1])}
    with entry.lock:
        _compat.set_data(entry.model, data)  # for the log-likelihood and log-prior groups
        ready = _compat.nutpie_prepare(entry.step, entry.model, data, _initial_values(init))
        ready_time = time.perf_counter()
        try:
            posterior, stats = _compat.nutpie_sample(
                ready, draws=draws, tune=tune, chains=chains,
                cores=cores or min(chains, os.cpu_count() or 1), random_seed=random_seed,
                target_accept=target_accept, progressbar=progressbar,
                variables=[v.name for v in entry.model.free_RVs] + (
                    ["weights"] if K == 1 else []))
        except KeyboardInterrupt:
            raise SamplingInterrupted("sampling was interrupted; nutpie returns no partial "
                                      "draws, so nothing is returned") from None
        observed = xr.Dataset({"x": (("obs", "feature"), X)},
                              coords={"obs": np.arange(len(X)), "feature": list(features)})
        idata = _compat.inference_data(posterior=posterior, sample_stats=stats,
                                       observed_data=observed)
        _compat.add_log_likelihood_and_prior(idata, entry.model)
    idata.posterior.attrs["sampler"] = "nutpie"
    idata.sample_stats.attrs.update(startup_time=ready_time - started,
                                    draw_time=time.perf_counter() - ready_time,
                                    compiled=int(compiled))
    return idata
