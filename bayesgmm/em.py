"""MAP-EM for Gaussian mixtures under the conjugate prior of :mod:`bayesgmm.priors`.

Each iteration is one fused E-pass over row chunks (:mod:`bayesgmm.estep`) and a closed-form
M-step.  EM runs in working coordinates (:class:`~bayesgmm.estep.Coordinates`) — the data centred
and divided by a power of two near their spread, sample weights divided by a power of two near
their largest — and a fit is equivariant under that change, so the result is the same in the
user's units, at any finite magnitude.  Equations are numbered as in ``docs/derivation.md``.
"""

from __future__ import annotations

import warnings
from typing import Mapping, NamedTuple

import numpy as np
from scipy.cluster.vq import kmeans2
from threadpoolctl import threadpool_limits

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
from .estep import EPass, MixtureParams, Stats, working_coordinates
from .priors import GMMPrior, resolve_prior
from .result import MixtureFit

__all__ = ["fit_map", "ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the relative change of the log posterior fell below tol."""


# ============================================================================ the M-step
def _m_step(stats: Stats, params: MixtureParams, factor, structure: CovarianceStructure,
            prior: GMMPrior | None, weight_scale: float = 1.0) -> MixtureParams:
    """Joint posterior mode given the expected sufficient statistics (derivation §3–§4).

    ``weight_scale`` multiplies the pass's statistics back to the user's sample weights; it is
    applied after centring (3.3), where every quantity is of the data's own size.
    """
    K, d = params.means.shape
    safe_n = np.where(stats.n_k > 0, stats.n_k, 1.0)
    xbar = params.means + structure.unwhiten(factor, stats.s1 / safe_n[:, None])  # x̄_k (3.2)
    W = weight_scale * structure.scatter(factor, stats.moment, stats.s1, stats.n_k)  # (3.3)
    n_k = weight_scale * stats.n_k
    n_total = n_k.sum()
    if prior is None:  # maximum likelihood (eq. 2.6, 2.7, 2.8)
        empty = np.flatnonzero(n_k <= 0)
        if empty.size:
            raise SingularCovarianceError(int(empty[0]), f"component {empty[0]} has no data left")
        return MixtureParams(n_k / n_total, xbar, structure.maximum_likelihood(W, n_k, K, d))

    alpha = prior.concentration_for(K)
    kappa, m0 = prior.shrinkage, prior.mean
    # π_k = (N_k + α_k − 1) / (N + Σα − K)                                        (eq. 4.1)
    # (the prior's constants grouped first: N_k may be far smaller than α_k)
    weights = (n_k + (alpha - 1.0)) / (n_total + (alpha.sum() - K))
    # μ_k = (N_k x̄_k + κ0 m0) / (N_k + κ0); a flat prior keeps an emptied mean     (eq. 4.2)
    if kappa > 0:
        means = (n_k[:, None] * xbar + kappa * m0) / (n_k + kappa)[:, None]
    else:
        means = np.where(n_k[:, None] > 0, xbar, params.means)
    # B_k = W_k + κ0 N_k / (κ0 + N_k) (x̄_k − m0)(x̄_k − m0)ᵀ                         (eq. 4.3)
    dev = xbar - m0
    shrink = kappa * n_k / (kappa + n_k) if kappa > 0 else np.zeros(K)
    B = W + structure.reduce(shrink[:, None, None] * dev[:, :, None] * dev[:, None, :])
    return MixtureParams(weights, means, structure.mode(B, n_k, prior, K, d))  # (eq. 4.4)


# ============================================================================ initialisation
def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _hard_responsibilities(labels: np.ndarray, K: int) -> np.ndarray:
    R = np.zeros((labels.size, K))
    R[np.arange(labels.size), labels] = 1.0
    return R


def _init_responsibilities(X: np.ndarray, K: int, method: str, rng: np.random.Generator):
    """Hard labels from k-means (k-means++ seeding) or from K random data points as centres.

    Distances are measured on standardised columns so no feature dominates by its units.
    """
    Z = _standardise(X)
    if method == "kmeans++":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty k-means cluster is handled by EM itself
            _, labels = kmeans2(Z, K, iter=10, minit="++", rng=rng)
    else:  # "random"
        centres = Z[rng.choice(len(Z), size=K, replace=False)]
        labels = np.argmin(((Z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return _hard_responsibilities(labels, K)


def _check_responsibilities(resp, n: int, K: int) -> np.ndarray:
    R = np.asarray(resp, dtype=float)
    if R.shape != (n, K):
        raise ValueError(
            f"an init responsibility matrix must have shape (n_samples, n_components) = "
            f"{(n, K)}, got {R.shape}"
        )
    if not np.all(np.isfinite(R)) or np.any(R < 0):
        raise ValueError("init responsibilities must be finite and non-negative")
    row_sums = R.sum(axis=1)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(
            f"init responsibility rows must sum to 1; {bad.size} row(s) do not, the first is row "
            f"{int(bad[0])} (sum {row_sums[bad[0]]:.6g})"
        )
    return R


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


# ============================================================================ the loop
class _Run(NamedTuple):
    """One EM run, in working coordinates."""

    params: MixtureParams
    log_likelihood: float  # with the user's sample weights
    history: np.ndarray  # log posterior at the start and after every M-step
    n_iter: int
    converged: bool

    @property
    def log_posterior(self) -> float:
        return float(self.history[-1])


def _log_posterior(log_lik: float, params: MixtureParams, factor, prior: GMMPrior | None):
    if prior is None:
        return log_lik
    return log_lik + prior.logpdf_factored(params.weights, params.means, factor)


def _run_em(em_pass: EPass, start, prior, tol: float, max_iter: int) -> _Run:
    """EM from a start: parameters (E-step first) or responsibilities (M-step first)."""
    structure = em_pass.structure
    K, d = em_pass.K, em_pass.d
    omega = em_pass.coords.weight_scale
    if isinstance(start, MixtureParams):
        params = start
    else:  # responsibilities: whiten about their weighted means with the identity factor
        R = start if em_pass.w is None else start * em_pass.w[:, None]
        n_k = R.sum(0)
        means = em_pass.weighted_sums(start) / np.where(n_k > 0, n_k, 1.0)[:, None]
        ident = structure.identity(K, d)
        pivot = MixtureParams(np.full(K, 1.0 / K), means, ident)
        factor = structure.factor(ident)
        params = _m_step(em_pass.stats(pivot, factor, resp=start), pivot, factor, structure,
                         prior, omega)
    history = []
    n_iter, converged = 0, False
    while True:
        factor = structure.factor(params.covariances)
        stats = em_pass.stats(params, factor)
        history.append(_log_posterior(omega * stats.log_likelihood, params, factor, prior))
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            converged = True
            break
        if n_iter >= max_iter:
            break
        params = _m_step(stats, params, factor, structure, prior, omega)
        n_iter += 1
    return _Run(params, omega * stats.log_likelihood, np.array(history), n_iter, converged)


def _singular_error(exc: SingularCovarianceError, K: int, covariance: str) -> ValueError:
    return ValueError(
        f"maximum-likelihood EM (prior=None) broke down: {exc}, so the likelihood is unbounded "
        f"there. Fit with a prior instead, e.g. prior='default' (bg.default_prior(X, {K}, "
        f"covariance={covariance!r})), which keeps every covariance positive definite."
    )


def fit_map(X, n_components: int, covariance: str = "full", prior="default", *,
            init="kmeans++", n_init: int = 1, tol: float = 1e-8, max_iter: int = 1000,
            sample_weight=None, random_state=None, n_threads: int = 1,
            warn_convergence: bool = True):
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
    init : "kmeans++", "random", array (n_samples, K), or parameters
        A method name; a responsibility matrix (EM then starts with an M-step, as mclust's
        ``me(z=)``); or parameters (a mapping or object with ``weights``, ``means``,
        ``covariances``, e.g. another fit), which start with an E-step.
    n_init : int
        Restarts for the random methods; the fit with the highest log posterior is kept.
    tol : float
        Stop when |Δ log posterior| < tol · |log posterior| (the log posterior of the data in
        working coordinates, so the rule does not depend on the data's units); ``tol=0`` runs
        exactly ``max_iter`` iterations.
    max_iter : int
        Maximum number of M-steps per restart.
    sample_weight : array-like, shape (n_samples,), optional
        Non-negative observation weights (the likelihood term of row n is multiplied by w_n).
    random_state : int, numpy Generator or None
        Seeds every random choice; the same seed reproduces the fit bit for bit.
    n_threads : int
        Row chunks are processed on this many threads (BLAS itself is kept at one thread).
    warn_convergence : bool
        Warn with :class:`ConvergenceWarning` when ``max_iter`` is reached first.

    Returns
    -------
    MixtureFit
    """
    feature_names = feature_names_of(X)
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    w = check_sample_weight(sample_weight, n)
    n_init = check_positive_int(n_init, "n_init")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    n_threads = check_positive_int(n_threads, "n_threads")
    tol = check_tolerance(tol)
    rng = np.random.default_rng(check_random_state(random_state))
    coords = working_coordinates(X, w)
    prior = resolve_prior(prior, X, K, structure.name)
    if prior is not None and np.any(prior.concentration_for(K) < 1):
        raise ValueError(
            "MAP-EM needs concentration α_k ≥ 1 (for α_k < 1 the posterior mode of π lies on "
            "the boundary of the simplex); use α ≥ 1 or the full posterior"
        )
    working_prior = None if prior is None else prior.rescaled(coords.center, coords.scale)

    if isinstance(init, str):
        if init not in ("kmeans++", "random"):
            raise ValueError(f"init={init!r} is not a method; use 'kmeans++', 'random', an "
                             "(n_samples, K) responsibility matrix, or initial parameters")
        starts = (lambda: _init_responsibilities(X, K, init, rng) for _ in range(n_init))
    elif isinstance(init, np.ndarray) or isinstance(init, (list, tuple)):
        R = _check_responsibilities(init, n, K)
        starts = iter([lambda: R])
    else:
        p = coords.to_working(_check_params(init, K, d, structure))
        starts = iter([lambda: p])

    em_pass = EPass(X, w, structure, K, coords, n_threads=n_threads)
    best = None
    with threadpool_limits(limits=1, user_api="blas"):
        for make_start in starts:
            try:
                run = _run_em(em_pass, make_start(), working_prior, tol, max_iter)
            except SingularCovarianceError as exc:
                if prior is None:
                    raise _singular_error(exc, K, structure.name) from None
                raise
            if best is None or run.log_posterior > best.log_posterior:
                best = run
    if warn_convergence and not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (relative change of the log "
            f"posterior above tol={tol}); raise max_iter or check the fit", ConvergenceWarning,
            stacklevel=2)
    total_weight = float(n if w is None else w.sum())
    ll_offset = total_weight * coords.log_density_offset(d)
    lp_offset = ll_offset + (0.0 if prior is None
                             else coords.log_prior_offset(structure, K, d, prior))
    params = coords.to_data(best.params)
    return MixtureFit(
        weights=params.weights, means=params.means, covariances=params.covariances,
        covariance_type=structure.name, prior=prior,
        log_likelihood=best.log_likelihood + ll_offset,
        log_posterior=best.log_posterior + lp_offset, history=best.history + lp_offset,
        n_iter=best.n_iter, converged=best.converged, n_samples=total_weight,
        feature_names=feature_names,
    )
