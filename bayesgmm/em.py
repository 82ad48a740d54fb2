"""MAP-EM for Gaussian mixtures under the conjugate prior of :mod:`bayesgmm.priors`:
:func:`fit_map`.

It checks its inputs, sets up the working coordinates (:class:`~bayesgmm.estep.Coordinates`;
the fit is equivariant under that change of units) and the EM map
(:class:`~bayesgmm.estep.Engine`), chooses starts (:mod:`bayesgmm.starts`,
:mod:`bayesgmm.search`), runs the EM iteration from each (:mod:`bayesgmm.iteration`: plain EM
or SQUAREM, to a fixed point) and returns the best as a :class:`~bayesgmm.MixtureFit` in the
user's units.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
from threadpoolctl import ThreadpoolController

from ._validation import (
    check_data,
    check_n_components,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tolerance,
    feature_names_of,
)
from .covariance import (
    CovarianceStructure,
    SingularCovarianceError,
    check_covariances,
    get_structure,
)
from . import search
from . import starts as start_methods
from .dask_em import is_dask_array
from .estep import Engine, MixtureParams, working_coordinates
from .iteration import ACCELERATIONS, RUNS, Run
from .priors import resolve_prior
from .result import MixtureFit

__all__ = ["fit_map", "ConvergenceWarning", "ACCELERATIONS"]

class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before its estimated distance to the fixed point fell below
    tol."""


#: starts of the random methods when n_init is not given: restarts of "kmeans++"/"random", or
#: random short runs of "emem"/"auto"
_DEFAULT_N_INIT = {"kmeans++": 1, "random": 1, "hc": 1, "emem": 50, "auto": 50}
_BLAS = []


def _one_blas_thread():
    """BLAS limited to one thread while EM runs (DESIGN §7).  The controller scans the loaded
    libraries once per process (a scan per fit cost ~2 ms on small fits)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _search(engine: Engine, init: str, n_init: int, rng, w, run_em, tol, max_iter) -> Run:
    """"emem" and "auto" (:mod:`bayesgmm.search`): emEM's candidates run to convergence, and
    for "auto" the local search over modes — on a random subsample of at most
    :data:`~bayesgmm.search.SEARCH_ROWS` rows, EM then finishing on all rows."""
    searching, n = engine, engine.n
    if n > search.SEARCH_ROWS:
        rows = np.sort(rng.choice(n, search.SEARCH_ROWS, replace=False))
        searching = Engine(np.ascontiguousarray(engine.X[rows]), None if w is None else w[rows],
                           engine.structure, engine.K, engine.coords, engine.prior)
    Xs = searching.X
    ws = None if searching.w.size == 0 else searching.w * engine.coords.weight_scale
    candidates = search.emem_candidates(searching, Xs, engine.K, n_init, rng, ws, run_em,
                                        include_hc=init == "auto")
    best = max((run_em(searching, state, tol, max_iter) for state in candidates),
               key=lambda run: run.log_posterior)
    if init == "auto":
        best = search.improve(searching, best, run_em, tol, max_iter)
    return best if searching is engine else run_em(engine, best.state, tol, max_iter)


def _in_canonical_order(params: MixtureParams, structure) -> MixtureParams:
    """Components ordered by their means, first feature first (a search may reach the same
    mode with its components in any order; this makes the order reproducible)."""
    order = np.lexsort(params.means.T[::-1])
    covariances = params.covariances[order] if structure.per_component else params.covariances
    return MixtureParams(params.weights[order], params.means[order], covariances)


def _starting_states(init, engine: Engine, X, K: int, n_init: int, rng, w, coords,
                     structure):
    """The states EM runs from, each to convergence (made lazily)."""
    n, d = X.shape
    if isinstance(init, str):
        for R in start_methods.responsibility_starts(X, K, init, n_init, rng, w):
            yield engine.start_from_responsibilities(R)
    elif isinstance(init, (np.ndarray, list, tuple)) and not hasattr(init, "weights"):
        yield engine.start_from_responsibilities(start_methods.check_responsibilities(init, n,
                                                                                      K))
    else:
        yield engine.from_params(coords.to_working(_check_params(init, K, d, structure)))


def _singular_error(exc: SingularCovarianceError, K: int, covariance: str) -> ValueError:
    return ValueError(
        f"maximum-likelihood EM (prior=None) broke down: {exc}, so the likelihood is unbounded "
        f"there. Fit with a prior instead, e.g. prior='default' (bg.default_prior(X, {K}, "
        f"covariance={covariance!r})), which keeps every covariance positive definite."
    )


def _check_params(init, K: int, d: int, structure: CovarianceStructure) -> MixtureParams:
    get = (lambda k: getattr(init, k)) if not isinstance(init, Mapping) else init.__getitem__
    try:
        weights, means, covs = (np.array(get(k), dtype=float)
                                for k in ("weights", "means", "covariances"))
    except (KeyError, AttributeError):
        raise ValueError("init parameters need 'weights', 'means' and 'covariances'") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"init parameters must be numeric arrays: {exc}") from None
    for name, arr, shape in (("weights", weights, (K,)), ("means", means, (K, d))):
        if arr.shape != shape:
            raise ValueError(f"init {name} must have shape {shape} for {structure.name!r}, "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"init {name} must be finite")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError("init weights must be non-negative and sum to 1")
    check_covariances(structure, covs, K, d, "init covariances")
    return MixtureParams(weights, means, covs)


def fit_map(X, n_components: int, covariance: str = "full", prior="default", *,
            init="auto", n_init: int | None = None, tol: float = 1e-8,
            max_iter: int = 1000,
            sample_weight=None, random_state=None, n_threads: int = 1,
            acceleration: str | None = "squarem", warn_convergence: bool = True):
    """Fit a Gaussian mixture by MAP-EM (maximum a posteriori under the conjugate prior).

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Data; a pandas DataFrame's column names are kept as feature names.
    n_components : int
        K, the number of components.
    covariance : {"full", "tied", "diag", "spherical"}
    prior : GMMPrior, "default", "mclust" or None
        The prior; a string builds :func:`default_prior` with that style from X.  ``None`` runs
        plain maximum-likelihood EM, which stops with an error if a covariance becomes singular.
    init : str, array (n_samples, K), or parameters
        A start method: ``"auto"`` (default: emEM with the "hc" start among its candidates,
        then a local search over modes — :mod:`bayesgmm.search`), ``"emem"`` (short EM runs
        from many starts, the best few continued; Biernacki, Celeux & Govaert 2003),
        ``"hc"`` (deterministic model-based hierarchical agglomeration, as mclust),
        ``"kmeans++"`` or ``"random"`` (:mod:`bayesgmm.starts`).  Or a responsibility
        matrix (EM then starts with an M-step, as mclust's ``me(z=)``), or parameters (a
        mapping or object with ``weights``, ``means``, ``covariances``, e.g. another fit),
        which start with an E-step.  After "auto" and "emem" the components are ordered by
        their means (first feature first); otherwise they keep the order of the start.
    n_init : int, optional
        For "kmeans++" and "random", the starts, each run to convergence (default 1); for
        "emem" and "auto", the random short runs (default 50).  The fit with the highest log
        posterior is kept.
    tol : float
        EM stops when its estimated distance to the fixed point — the last plain EM step,
        divided by one minus the contraction rate of the last two — falls below ``tol``.  The
        step is measured in the largest entry of the change of (log π_k, μ_k in units of the
        data's spread, log-Cholesky factors / log variances): ``tol`` bounds, roughly, the
        relative error of every parameter with respect to EM's fixed point.  ``tol=0`` runs
        exactly ``max_iter`` EM-map evaluations.
    max_iter : int
        Maximum number of EM-map evaluations (E-pass and M-step) per start.
    sample_weight : array-like, shape (n_samples,), optional
        Non-negative observation weights (the likelihood term of row n is multiplied by w_n).
    random_state : int, numpy Generator or None
        Seeds every random choice; the same seed reproduces the fit bit for bit.
    n_threads : int
        Blocks of rows are processed on this many threads (BLAS itself is kept at one thread).
    acceleration : {"squarem", None}
        SQUAREM (default: 3–10 times fewer EM-map evaluations on slow problems, the same fixed
        point, a monotone log posterior) or None for plain EM.
    warn_convergence : bool
        Warn with :class:`ConvergenceWarning` when ``max_iter`` is reached first.

    Returns
    -------
    MixtureFit
        ``n_iter`` counts EM-map evaluations; ``history`` holds the log posterior of every
        accepted iterate (never decreasing).

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, "full", random_state=0)
    >>> fit.weights.round(2), fit.converged
    (array([0.36, 0.64]), True)
    >>> bg.fit_map(X, 2, "diag", prior=None, init="kmeans++", random_state=0).covariances.shape
    (2, 2)
    """
    if is_dask_array(X):
        return _fit_map_dask(X, n_components, covariance, prior, init=init, n_init=n_init,
                             tol=tol, max_iter=max_iter, sample_weight=sample_weight,
                             random_state=random_state, acceleration=acceleration,
                             warn_convergence=warn_convergence)
    feature_names = feature_names_of(X)
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    w = check_sample_weight(sample_weight, n)
    n_init = None if n_init is None else check_positive_int(n_init, "n_init")
    n_threads = check_positive_int(n_threads, "n_threads")
    tol, max_iter, rng = _check_run(tol, max_iter, acceleration, random_state)
    coords = working_coordinates(X, w)
    prior = _check_map_prior(resolve_prior(prior, X, K, structure.name, sample_weight=w), K)
    working_prior = None if prior is None else prior.rescaled(coords.center, coords.scale)
    engine = Engine(X, w, structure, K, coords, working_prior, n_threads=n_threads)

    if isinstance(init, str) and init not in start_methods.START_METHODS:
        raise ValueError(f"init={init!r} is not a method; use one of "
                         f"{start_methods.START_METHODS}, an (n_samples, K) responsibility "
                         "matrix, or initial parameters")
    run_em = RUNS[acceleration]
    if n_init is None:
        n_init = _DEFAULT_N_INIT.get(init, 1) if isinstance(init, str) else 1
    best = None
    with _one_blas_thread():
        try:
            if isinstance(init, str) and init in ("emem", "auto"):
                best = _search(engine, init, n_init, rng, w, run_em, tol, max_iter)
            for start in ([] if best else _starting_states(init, engine, X, K, n_init, rng,
                                                           w, coords, structure)):
                run = run_em(engine, start, tol, max_iter)
                if best is None or run.log_posterior > best.log_posterior:
                    best = run
        except SingularCovarianceError as exc:
            if prior is None:
                raise _singular_error(exc, K, structure.name) from None
            raise
    total_weight = float(n if w is None else w.sum())
    params = coords.to_data(engine.params(best.state))
    if isinstance(init, str) and init in ("emem", "auto"):
        params = _in_canonical_order(params, structure)
    return _mixture_fit(best, params, coords, prior, structure, total_weight, feature_names,
                        warn_convergence, max_iter, tol)


def _check_run(tol, max_iter, acceleration, random_state):
    """The iteration's settings, validated (in memory and on Dask alike): tol, max_iter and
    the random generator."""
    tol = check_tolerance(tol)
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    if acceleration not in RUNS:
        raise ValueError(f"acceleration must be 'squarem' or None (plain EM), got "
                         f"{acceleration!r}")
    return tol, max_iter, np.random.default_rng(check_random_state(random_state))


def _check_map_prior(prior, K: int):
    """A prior MAP-EM can maximise under: every α_k ≥ 1."""
    if prior is not None and np.any(prior.concentration_for(K) < 1):
        raise ValueError(
            "MAP-EM needs concentration α_k ≥ 1 (for α_k < 1 the posterior mode of π lies on "
            "the boundary of the simplex); use α ≥ 1 or the full posterior"
        )
    return prior


def _mixture_fit(best: Run, params: MixtureParams, coords, prior, structure, total_weight,
                 feature_names, warn_convergence: bool, max_iter: int, tol: float) -> MixtureFit:
    """The MixtureFit of a run: parameters in data coordinates, log densities with the
    change-of-variables constants of the working coordinates."""
    if warn_convergence and not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} EM steps (estimated distance to the "
            f"fixed point above tol={tol}); raise max_iter or check the fit", ConvergenceWarning,
            stacklevel=3)
    K, d = np.shape(params.means)
    ll_offset = total_weight * coords.log_density_offset(d)
    lp_offset = ll_offset + (0.0 if prior is None
                             else coords.log_prior_offset(structure, K, d, prior))
    return MixtureFit(
        weights=params.weights, means=params.means, covariances=params.covariances,
        covariance_type=structure.name, prior=prior,
        log_likelihood=best.log_likelihood + ll_offset,
        log_posterior=best.log_posterior + lp_offset,
        history=np.array(best.history) + lp_offset, n_iter=best.n_iter,
        converged=best.converged, n_samples=total_weight, feature_names=feature_names,
    )


def _fit_map_dask(X, K, covariance, prior, *, init, n_init, tol, max_iter, sample_weight,
                  random_state, acceleration, warn_convergence) -> MixtureFit:
    """:func:`fit_map` for a Dask array (:mod:`bayesgmm.dask_em`): moments in one pass, the
    start searched in memory on a uniform sample of rows, EM over the blocks."""
    from . import dask_em

    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be 2-D with at least one feature, got shape {X.shape}")
    n, d = X.shape
    K = check_n_components(K, n)
    structure = get_structure(covariance)
    tol, max_iter, rng = _check_run(tol, max_iter, acceleration, random_state)
    if sample_weight is not None and np.shape(sample_weight) != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {np.shape(sample_weight)}")
    center, cov, rows, total = dask_em.dask_moments(X, sample_weight)
    w_max = None if sample_weight is None else float(np.asarray(
        sample_weight.max().compute() if dask_em.is_dask_array(sample_weight)
        else np.max(sample_weight)))
    coords = dask_em.dask_coordinates(center, cov, w_max)
    prior = _check_map_prior(dask_em.resolve_dask_prior(prior, X, K, structure.name,
                                                        moments=(center, cov, rows, total)), K)
    working_prior = None if prior is None else prior.rescaled(coords.center, coords.scale)
    engine = dask_em.DaskEngine(X, sample_weight, structure, K, coords, working_prior)
    if isinstance(init, str):  # the start: the method in memory on a sample, the full prior
        Xs, ws = dask_em.sample_rows(X, sample_weight, search.SEARCH_ROWS, rng)
        start = fit_map(Xs, K, structure.name, prior=prior, init=init, n_init=n_init,
                        tol=tol, max_iter=max_iter, sample_weight=ws, random_state=rng,
                        acceleration=acceleration, warn_convergence=False).params
    elif isinstance(init, np.ndarray) and not hasattr(init, "weights"):
        raise ValueError("a responsibility-matrix start is not available for Dask arrays; "
                         "give a method or initial parameters")
    else:
        start = _check_params(init, K, d, structure)
    with _one_blas_thread():
        best = RUNS[acceleration](engine, engine.from_params(coords.to_working(start)), tol,
                                  max_iter)
    params = coords.to_data(engine.params(best.state))
    if isinstance(init, str) and init in ("emem", "auto"):
        params = _in_canonical_order(params, structure)
    return _mixture_fit(best, params, coords, prior, structure, total, None,
                        warn_convergence, max_iter, tol)
