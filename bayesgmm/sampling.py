"""The full posterior's front door: :func:`sample_posterior`, with NUTS (PyMC) or conjugate Gibbs.

Both samplers draw from the same density (DESIGN §2) and return the same InferenceData; this
module validates every argument once, starts both at the MAP-EM estimate, keeps BLAS at one
thread and attaches the sampler's health.  PyMC is imported only when NUTS runs.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from ._validation import check_positive_int, check_probability, check_random_state
from .covariance import get_structure
from .em import fit_map
from .gibbs import sample_gibbs
from .health import (SamplerWarning, SamplingInterrupted, aligned_to_pivot,
                     convergence_summary, sampler_health)
from .priors import posterior_model_inputs
from .result import MixtureFit
from .scales import add_scales

__all__ = ["sample_posterior", "resolve_sampler", "auto_thin", "check_thin", "SAMPLERS",
           "MAX_AUTO_THIN", "SamplingInterrupted"]

#: the samplers :func:`sample_posterior` offers ("auto" chooses: :func:`resolve_sampler`)
SAMPLERS = ("auto", "gibbs", "nuts", "nutpie")
#: the samplers' own options, with the values used when they are not given
_OPTION_DEFAULTS = {"cores": None, "target_accept": 0.9, "backend": "NUMBA",
                    "noncentred_means": False, "thin": "auto"}
#: the samplers that take each option
_OPTION_SAMPLERS = {"cores": ("nuts", "nutpie"), "target_accept": ("nuts", "nutpie"),
                    "backend": ("nuts",), "noncentred_means": ("nuts", "nutpie"),
                    "thin": ("gibbs",)}
#: thin="auto" keeps at most one sweep in this many (a kept draw costs thin sweeps)
MAX_AUTO_THIN = 100
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: draws and pointwise log-likelihoods may take at most this share of the machine's memory
_MEMORY_SHARE = 0.5


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


def resolve_sampler(sampler: str, prior) -> str:
    """The sampler ``sampler="auto"`` runs for ``prior``: Gibbs whenever its conjugate steps
    exist — the prior on the means is proper (κ0 > 0) and the structure is conjugate (not VEI
    or EVI, whose restricted variances have no conjugate conditional) — else NUTS.

    Gibbs is the default because it is the better sampler of this model on every problem
    measured (``benchmarks/results/samplers.md``): no compilation, 7× NUTS's effective draws
    per second on Old Faithful K = 2, 17–22× on K = 3 (where, thinned by default, it meets
    R-hat ≤ 1.01 and NUTS does not), and it moves between label-permuted
    modes, where NUTS's chains stall in one mode or switch inside a chain.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not a sampler; use one of {list(SAMPLERS)}")
    if sampler != "auto":
        return sampler
    return ("gibbs" if prior.shrinkage > 0 and get_structure(prior.covariance).conjugate
            else "nuts")


def _sampler_options(sampler: str, given: dict) -> dict:
    """The options ``sampler`` takes, defaults filled in; an error naming any given to a
    sampler without them."""
    misplaced = [name for name, value in given.items()
                 if value is not None and sampler not in _OPTION_SAMPLERS[name]]
    if misplaced:
        owners = " or ".join(f"sampler={s!r}" for s in _OPTION_SAMPLERS[misplaced[0]])
        raise ValueError(f"{', '.join(misplaced)} {'applies' if len(misplaced) == 1 else 'apply'}"
                         f" to {owners} only; sampler={sampler!r} has no such option "
                         f"(leave it out, or pass {owners})")
    return {name: _OPTION_DEFAULTS[name] if value is None else value
            for name, value in given.items() if sampler in _OPTION_SAMPLERS[name]}


def auto_thin(burn_in, pivot: MixtureFit) -> int:
    """Sweeps per kept draw for ``thin="auto"``: the integrated autocorrelation time of the
    slowest parameter, measured on (the second half of) the burn-in after matching each
    draw's components to ``pivot``'s, between 1 and :data:`MAX_AUTO_THIN`.

    τ̂ = (draws × chains) / min bulk ESS; keeping every τ̂-th sweep (rounded) aims at nearly
    independent kept draws (an ESS near their number).  A short burn-in underestimates τ
    where chains move between modes rarely, so the aim is generous: with half of it
    (⌈τ̂/2⌉) two of six runs on the K = 3 benchmark cases ended with R-hat 1.011 and 1.014
    (by hand).  Fewer than 20 recorded draws per chain: 1.

    Parameters
    ----------
    burn_in : xarray.Dataset
        ``weights``, ``means``, ``covariances`` over (chain, draw, …).
    pivot : MixtureFit

    Returns
    -------
    int

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> burn_in = bg.sample_posterior(X, 2, init=fit, draws=500, tune=10, thin=1,
    ...                               random_seed=0, progressbar=False).posterior
    >>> auto_thin(burn_in, fit)       # K = 2 on Old Faithful: nearly independent sweeps
    1
    """
    if burn_in.sizes["draw"] < 20:
        return 1
    aligned, _ = aligned_to_pivot(burn_in, pivot.covariance_type, pivot)
    ess = convergence_summary(aligned)["min_ess_bulk"]
    if not np.isfinite(ess) or ess <= 0:
        return 1
    tau = burn_in.sizes["draw"] * burn_in.sizes["chain"] / ess
    return int(np.clip(np.rint(tau), 1, MAX_AUTO_THIN))


def check_thin(thin, name: str = "thin"):
    """``"auto"`` or an integer ≥ 1 (specs and the command line share this check)."""
    if isinstance(thin, str) and thin == "auto":
        return thin
    if isinstance(thin, str):
        raise ValueError(f"{name} must be 'auto' or an integer ≥ 1, got {thin!r}")
    return check_positive_int(thin, name)


def sample_posterior(X, n_components: int, covariance: str = "full", prior="default", *,
                     sampler: str = "auto", init: MixtureFit | None = None, draws: int = 1000,
                     tune: int = 1000, chains: int = 4, random_seed=None,
                     progressbar: bool = True, allow_partial: bool = False,
                     cores: int | None = None, target_accept: float | None = None,
                     backend: str | None = None, noncentred_means: bool | None = None,
                     thin: int | str | None = None):
    """Sample the full posterior, every chain started at the MAP-EM estimate.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int
    covariance : str
        A structure whose prior the samplers draw: ``"full"``, ``"tied"``, ``"diag"``,
        ``"spherical"`` (mclust's VVV, EEE, VVI, VII), ``"EEI"``, ``"EII"``, and — NUTS
        only — ``"VEI"`` and ``"EVI"``; the orientation models are refused.
    prior : GMMPrior, "default" or "mclust"
        The same prior object :func:`~bayesgmm.fit_map` takes (a proper prior is required).
    sampler : {"auto", "gibbs", "nuts", "nutpie"}
        ``"gibbs"``: the conjugate blocked Gibbs sampler of :mod:`bayesgmm.gibbs` — no
        compilation, moves freely between the posterior's label-permuted modes; needs
        shrinkage κ0 > 0 and a conjugate structure (not VEI, EVI).  ``"nuts"``: PyMC's NUTS
        on :func:`~bayesgmm.build_model` (compiled once per model shape and process).
        ``"auto"`` (default): Gibbs when it applies, else NUTS (:func:`resolve_sampler` says
        why).  Both return the same
        InferenceData; ``posterior.attrs["sampler"]`` names the one that ran.
        ``"nutpie"`` (the ``nutpie`` extra): nutpie's NUTS on the same model, compiled once
        per shape and process, from ``init`` without jitter (``benchmarks/README.md`` has
        its cost); it keeps no partial draws on Ctrl-C.
    init : MixtureFit, optional
        Starting point of every chain; by default ``fit_map`` is run (its default search,
        seeded by ``random_seed``).
    draws, tune, chains : int
        Kept draws and tuning (NUTS) or burn-in (Gibbs) steps per chain; number of chains.
    random_seed : int, optional
    progressbar : bool
    allow_partial : bool
        What an interrupted run (Ctrl-C) gives.  False (default): :class:`SamplingInterrupted`
        is raised and nothing is returned.  True: the draws made so far are returned, marked
        ``posterior.attrs["partial"] = 1`` with ``draws_requested``; :func:`bayesgmm.compare`
        says so and report folders refuse them.
    cores : int, optional
        NUTS: worker processes; default 1 with the Numba backend (each worker process would
        compile the model again), else min(chains, CPUs).  nutpie: threads, default
        min(chains, CPUs).
    target_accept : float, optional
        NUTS and nutpie only: the target acceptance rate, in (0, 1) (default 0.9).
    backend : {"NUMBA", "C", "FAST_RUN", ...}, optional
        NUTS only: PyTensor's compilation mode of the log density (default "NUMBA", which
        compiles and evaluates faster than C on these models; ``benchmarks/README.md``).
    noncentred_means : bool, optional
        NUTS and nutpie only: see :func:`~bayesgmm.build_model` (default False).
    thin : int or "auto", optional
        Gibbs only: sweeps per kept draw.  "auto" (default) measures the autocorrelation
        time τ̂ of the burn-in and keeps every τ̂-th sweep (rounded), at most every
        :data:`MAX_AUTO_THIN`-th (:func:`auto_thin`): 1 on easy posteriors (Old Faithful
        K = 2), 20–100 on overlapping K = 3 problems, where the chains move between modes
        slowly; the number used is ``posterior.attrs["thin"]``.  A sweep costs ≈ 0.1 ms per
        chain on the bundled data sets.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (``weights``, ``means``, ``covariances`` with the dims of
        :meth:`MixtureFit.to_xarray`, plus standard deviations ``sd`` and ``correlations``
        that list each covariance entry once: :func:`bayesgmm.scales.add_scales`),
        ``sample_stats``, ``log_likelihood`` (``x``, pointwise over ``obs``), ``log_prior``
        (per parameter) and ``observed_data``.
        ``posterior.attrs``: ``sampler`` and ``sampler_health`` (divergences, R-hat and ESS
        after matching each draw's components to ``init``'s, the share of draws that needed
        it; :func:`bayesgmm.health.sampler_health`).  BLAS runs on one thread throughout.

    Raises
    ------
    SamplingInterrupted
        On Ctrl-C, unless ``allow_partial``.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> idata = bg.sample_posterior(X, 2, sampler="gibbs", draws=200, tune=100, chains=2,
    ...                             random_seed=0, progressbar=False)
    >>> idata.posterior["means"].dims
    ('chain', 'draw', 'component', 'feature')
    """
    X, features, K, structure, prior = posterior_model_inputs(X, n_components, covariance,
                                                              prior)
    sampler = resolve_sampler(sampler, prior)
    if sampler == "nutpie" and allow_partial:
        raise ValueError("allow_partial applies to sampler='nuts' and sampler='gibbs' only: "
                         "nutpie returns no partial draws (leave it out)")
    options = _sampler_options(sampler, {
        "cores": cores, "target_accept": target_accept, "backend": backend,
        "noncentred_means": noncentred_means, "thin": thin})
    if sampler in ("nuts", "nutpie"):
        options["target_accept"] = check_probability(options["target_accept"], "target_accept")
        if options["cores"] is not None:
            options["cores"] = check_positive_int(options["cores"], "cores")
    elif not structure.conjugate:
        raise ValueError(f"sampler='gibbs' cannot draw covariance={structure.name!r}: its "
                         "variances are restricted (volume and shape), so their conditional is "
                         "no conjugate inverse-gamma; use sampler='nuts' (or 'auto', which "
                         "chooses it)")
    elif not prior.shrinkage > 0:
        raise ValueError("sampler='gibbs' needs a proper prior on the means (shrinkage κ0 > 0): "
                         "with κ0 = 0 an empty component's mean has an improper posterior; set "
                         "shrinkage or use sampler='nuts'")
    draws = check_positive_int(draws, "draws")
    tune = check_positive_int(tune, "tune", minimum=0)
    chains = check_positive_int(chains, "chains")
    random_seed = check_random_state(random_seed, "random_seed")
    n, d = X.shape
    _check_memory(draws, chains, n + K * (d + 1) + int(np.prod(structure.shape(K, d))))
    if init is None:
        init = fit_map(X, K, structure.name, prior=prior, tol=1e-10, max_iter=5000,
                       random_state=random_seed, warn_convergence=False)
    init = _check_init(init, K, d, structure.name)
    if sampler == "gibbs":
        thin = check_thin(options["thin"])
        options["thin"] = partial(auto_thin, pivot=init) if thin == "auto" else thin
    run = dict(draws=draws, tune=tune, chains=chains, random_seed=random_seed,
               progressbar=progressbar, allow_partial=allow_partial)
    with _single_threaded_blas():
        if sampler == "gibbs":
            idata = sample_gibbs(X, features, K, structure, prior, init.params, **run,
                                 **options)
        elif sampler == "nutpie":
            from .posterior import run_nutpie

            seed = (random_seed if random_seed is None or isinstance(random_seed, int)
                    else int(np.random.default_rng(random_seed).integers(2**63)))
            run.update(random_seed=seed)
            del run["allow_partial"]
            idata = run_nutpie(X, features, K, structure, prior, init, **run, **options)
        else:
            from .posterior import run_nuts

            idata = run_nuts(X, features, K, structure, prior, init, **run, **options)
    scaled = add_scales(idata.posterior, structure.name)
    for name in ("sd", "correlations"):
        if name in scaled:
            idata.posterior[name] = scaled[name]
    health = sampler_health(idata, init)
    idata.posterior.attrs["sampler_health"] = health.to_json()
    for problem in health.problems():
        warnings.warn(problem, SamplerWarning, stacklevel=2)
    return idata
