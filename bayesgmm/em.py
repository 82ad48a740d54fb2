"""MAP-EM for Gaussian mixtures under the conjugate prior of :mod:`bayesgmm.priors`.

One EM iteration is a single pass over row chunks that fuses the E-step (responsibilities through
Cholesky factors and log-sum-exp) with the accumulation of the M-step's sufficient statistics, so
no (N, K)-sized temporary is ever formed.  Equations are numbered as in ``docs/derivation.md``.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np
from scipy.cluster.vq import kmeans2
from threadpoolctl import threadpool_limits

from ._validation import (
    check_data,
    check_n_components,
    check_positive_int,
    check_sample_weight,
    feature_names_of,
)
from .covariance import CovarianceStructure, SingularCovarianceError, get_structure
from .priors import GMMPrior, resolve_prior

__all__ = ["fit_map", "MixtureParams", "ConvergenceWarning", "log_prob_chunks"]

_LOG_2PI = np.log(2.0 * np.pi)
#: Scratch values per chunk (K · rows · d): 2¹⁸ was as fast as or faster than 2¹⁴, 2¹⁶ and 2²⁰
#: on four (N = 1e5, d, K) cases here; the working set stays near the cache (DESIGN §7).
_CHUNK_VALUES = 2**18


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the relative change of the log posterior fell below tol."""


class MixtureParams(NamedTuple):
    """Mixture parameters: weights (K,), means (K, d), covariances (structure's shape)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


@dataclass(frozen=True)
class _Stats:
    """Sufficient statistics of one pass, in whitened coordinates of the current components."""

    log_likelihood: float
    n_k: np.ndarray  # (K,)   N_k = Σ_n w_n r_nk                     (eq. 3.1)
    s1: np.ndarray  # (K, d) Σ_n w_n r_nk y_nk,  y = L_k⁻¹(x − μ_k)  (eq. 3.2)
    moment: np.ndarray  # structure-reduced Σ_n w_n r_nk y_nk y_nkᵀ  (eq. 3.3)


# ============================================================================ the E-pass
class _Pass:
    """Row-chunked evaluation of a mixture over X, optionally on a small thread pool.

    Rows are shifted by the column means before use (the mixture is shift-equivariant), which
    keeps the raw moments of the diag/spherical GEMM path free of cancellation from a large
    offset of the data.
    """

    def __init__(self, X, sample_weight, structure: CovarianceStructure, n_components: int,
                 n_threads: int = 1, chunk_rows: int | None = None):
        self.X, self.w, self.structure = X, sample_weight, structure
        n, d = X.shape
        K = n_components
        rows = chunk_rows or max(64, _CHUNK_VALUES // (K * (d + 2)))
        self.bounds = [(a, min(a + rows, n)) for a in range(0, n, rows)]
        self.rows, self.K, self.d = min(rows, n), K, d
        self.n_threads = min(n_threads, len(self.bounds))
        self.shift = X.mean(axis=0)
        self._local = threading.local()

    def _scratch(self, n: int):
        """Per-thread buffers: the shifted chunk (n, d) and the (K, n, d) work array."""
        local = self._local
        if getattr(local, "work", None) is None:
            local.work = np.empty((self.K, self.rows, self.d))
            local.chunk = np.empty((self.rows, self.d))
        return local.chunk[:n], local.work[:, :n]

    def _map(self, fn):
        """fn(a, b) over the chunks, yielded in chunk order (so reductions are deterministic)."""
        if self.n_threads <= 1:
            yield from (fn(a, b) for a, b in self.bounds)
            return
        with ThreadPoolExecutor(self.n_threads) as pool:
            yield from pool.map(lambda ab: fn(*ab), self.bounds)

    def _log_prob(self, a, b, means, factor, offset):
        """log π_k + log N(x_n | μ_k, Σ_k) for rows a:b, shape (n, K) (eq. 1.3), and the
        structure's cache for :meth:`stats`; ``means`` are shifted like the rows."""
        Z, work = self._scratch(b - a)
        np.subtract(self.X[a:b], self.shift, out=Z)
        maha, cache = self.structure.mahalanobis(Z, means, factor, work)
        maha *= -0.5
        maha += offset
        return maha, Z, cache

    def _offset(self, params: MixtureParams, factor) -> np.ndarray:
        """log π_k − ½ (d log 2π + log det Σ_k), shape (K,)."""
        with np.errstate(divide="ignore"):  # π_k = 0 is allowed (an emptied component)
            log_weights = np.log(params.weights)
        log_det = self.structure.log_det(factor, self.K, self.d)
        return log_weights - 0.5 * (self.d * _LOG_2PI + log_det)

    def stats(self, params: MixtureParams, factor, resp: np.ndarray | None = None) -> _Stats:
        """One fused E-pass: log-likelihood and sufficient statistics at ``params``.

        With ``resp`` (N, K) given, those responsibilities are used instead of the E-step's (the
        M-step-first start); ``params.means``/``factor`` then only fix the whitening.
        """
        structure = self.structure
        means = params.means - self.shift
        offset = self._offset(params, factor)

        def chunk(a, b):
            log_prob, Z, cache = self._log_prob(a, b, means, factor, offset)
            if resp is None:
                # log-sum-exp, sharing its exponentials with the responsibilities
                top = log_prob.max(axis=1, keepdims=True)
                R = np.exp(log_prob - top, out=log_prob)
                total = R.sum(axis=1, keepdims=True)
                R /= total  # r_nk                                               (eq. 3.0)
                log_norm = (top + np.log(total))[:, 0]  # log p(x_n)              (eq. 1.2)
            else:
                log_norm, R = np.zeros(b - a), np.array(resp[a:b], dtype=float)
            if self.w is not None:
                R *= self.w[a:b, None]
                ll = float(self.w[a:b] @ log_norm)
            else:
                ll = float(log_norm.sum())
            return (ll, R.sum(0)) + structure.accumulate(Z, cache, R)

        # a running sum: memory stays one chunk's statistics, however many chunks there are
        totals = None
        for part in self._map(chunk):
            totals = part if totals is None else tuple(t + p for t, p in zip(totals, part))
        ll, n_k, A1, A2 = totals
        s1, moment = structure.finish(n_k, A1, A2, means, factor)
        return _Stats(ll, n_k, s1, moment)

    def log_prob(self, params: MixtureParams, factor) -> np.ndarray:
        """Joint log densities log π_k N(x_n | μ_k, Σ_k), shape (N, K)."""
        means, offset = params.means - self.shift, self._offset(params, factor)
        return np.concatenate(list(self._map(
            lambda a, b: self._log_prob(a, b, means, factor, offset)[0])))


def log_prob_chunks(X, params: MixtureParams, covariance: str) -> np.ndarray:
    """log π_k + log N(x_n | μ_k, Σ_k) for every row and component, shape (N, K)."""
    structure = get_structure(covariance)
    factor = structure.factor(params.covariances)
    return _Pass(X, None, structure, len(params.weights)).log_prob(params, factor)


# ============================================================================ the M-step
def _identity_covariances(structure: CovarianceStructure, K: int, d: int) -> np.ndarray:
    shape = structure.shape(K, d)
    if structure.prior_scale_ndim == 2:
        return np.array(np.broadcast_to(np.eye(d), shape))
    return np.ones(shape)


def _m_step(stats: _Stats, params: MixtureParams, factor, structure: CovarianceStructure,
            prior: GMMPrior | None) -> MixtureParams:
    """Joint posterior mode given the expected sufficient statistics (derivation §3–§4)."""
    n_k = stats.n_k
    K, d = params.means.shape
    safe_n = np.where(n_k > 0, n_k, 1.0)
    xbar = params.means + structure.unwhiten(factor, stats.s1 / safe_n[:, None])  # x̄_k (3.2)
    W = structure.scatter(factor, stats.moment, stats.s1, n_k)  # W_k, reduced      (3.3)
    n_total = n_k.sum()
    if prior is None:  # maximum likelihood (eq. 2.6, 2.7, 2.8)
        empty = np.flatnonzero(n_k <= 0)
        if empty.size:
            raise SingularCovarianceError(int(empty[0]), f"component {empty[0]} has no data left")
        weights = n_k / n_total
        counts = structure.block_counts(n_k, d)
        covs = structure.combine(W) / counts[:, None, None]
        return MixtureParams(weights, xbar, structure.from_blocks(covs, K, d))

    alpha = prior.concentration_for(K)
    kappa, m0 = prior.shrinkage, prior.mean
    # π_k = (N_k + α_k − 1) / (N + Σα − K)                                        (eq. 4.1)
    weights = (n_k + alpha - 1.0) / (n_total + alpha.sum() - K)
    # μ_k = (N_k x̄_k + κ0 m0) / (N_k + κ0); a flat prior keeps an emptied mean     (eq. 4.2)
    if kappa > 0:
        means = (n_k[:, None] * xbar + kappa * m0) / (n_k + kappa)[:, None]
    else:
        means = np.where(n_k[:, None] > 0, xbar, params.means)
    # B_k = W_k + κ0 N_k / (κ0 + N_k) (x̄_k − m0)(x̄_k − m0)ᵀ                         (eq. 4.3)
    dev = xbar - m0
    shrink = kappa * n_k / (kappa + n_k) if kappa > 0 else np.zeros(K)
    B = W + structure.reduce(shrink[:, None, None] * dev[:, :, None] * dev[:, None, :])
    # Σ-block = (Ψ0 + B) / (ν0 + b + 1 + n_block + δ·m)                            (eq. 4.4)
    b = 1 if structure.prior_scale_ndim < 2 else d
    delta = 1.0 if kappa > 0 else 0.0
    denom = (prior.dof + b + 1 + structure.block_counts(n_k, d)
             + delta * structure.mean_multiplicity(K, d))
    covs = (prior.block_scales(K) + structure.combine(B)) / denom[:, None, None]
    return MixtureParams(weights, means, structure.from_blocks(covs, K, d))


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
    expected = [(K,), (K, d), structure.shape(K, d)]
    for name, arr, shape in zip(("weights", "means", "covariances"), (weights, means, covs),
                                expected):
        if arr.shape != shape:
            raise ValueError(f"init {name} must have shape {shape} for {structure.name!r}, "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"init {name} must be finite")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError("init weights must be non-negative and sum to 1")
    try:
        structure.factor(covs)
    except SingularCovarianceError as exc:
        raise ValueError(f"init covariances: {exc}") from None
    return MixtureParams(weights, means, covs)


# ============================================================================ the loop
def _log_posterior(log_lik: float, params: MixtureParams, factor, prior: GMMPrior | None):
    if prior is None:
        return log_lik
    return log_lik + prior.logpdf_factored(params.weights, params.means, factor)


def _run_em(em_pass: _Pass, start, prior, tol: float, max_iter: int):
    """EM from a start: parameters (E-step first) or responsibilities (M-step first)."""
    structure = em_pass.structure
    K, d = em_pass.K, em_pass.d
    if isinstance(start, MixtureParams):
        params = start
    else:  # responsibilities: whiten about their weighted means with the identity factor
        R = start if em_pass.w is None else start * em_pass.w[:, None]
        n_k = R.sum(0)
        means = (R.T @ em_pass.X) / np.where(n_k > 0, n_k, 1.0)[:, None]
        ident = _identity_covariances(structure, K, d)
        pivot = MixtureParams(np.full(K, 1.0 / K), means, ident)
        factor = structure.factor(ident)
        params = _m_step(em_pass.stats(pivot, factor, resp=start), pivot, factor, structure,
                         prior)
    history = []
    n_iter, converged = 0, False
    while True:
        factor = structure.factor(params.covariances)
        stats = em_pass.stats(params, factor)
        history.append(_log_posterior(stats.log_likelihood, params, factor, prior))
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * abs(history[-1]):
            converged = True
            break
        if n_iter >= max_iter:
            break
        params = _m_step(stats, params, factor, structure, prior)
        n_iter += 1
    return params, stats.log_likelihood, np.array(history), n_iter, converged


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
        Stop when |Δ log posterior| < tol · |log posterior|; ``tol=0`` runs exactly
        ``max_iter`` iterations.
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
    from .result import MixtureFit  # the result module imports this one

    feature_names = feature_names_of(X)
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    w = check_sample_weight(sample_weight, n)
    n_init = check_positive_int(n_init, "n_init")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    n_threads = check_positive_int(n_threads, "n_threads")
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    prior = resolve_prior(prior, X, K, structure.name)
    if prior is not None and np.any(prior.concentration_for(K) < 1):
        raise ValueError(
            "MAP-EM needs concentration α_k ≥ 1 (for α_k < 1 the posterior mode of π lies on "
            "the boundary of the simplex); use α ≥ 1 or the full posterior"
        )
    rng = np.random.default_rng(random_state)

    if isinstance(init, str):
        if init not in ("kmeans++", "random"):
            raise ValueError(f"init={init!r} is not a method; use 'kmeans++', 'random', an "
                             "(n_samples, K) responsibility matrix, or initial parameters")
        starts = (lambda: _init_responsibilities(X, K, init, rng) for _ in range(n_init))
    elif isinstance(init, np.ndarray) or isinstance(init, (list, tuple)):
        R = _check_responsibilities(init, n, K)
        starts = iter([lambda: R])
    else:
        p = _check_params(init, K, d, structure)
        starts = iter([lambda: p])

    em_pass = _Pass(X, w, structure, K, n_threads=n_threads)
    best = None
    with threadpool_limits(limits=1, user_api="blas"):
        for make_start in starts:
            try:
                run = _run_em(em_pass, make_start(), prior, float(tol), max_iter)
            except SingularCovarianceError as exc:
                if prior is None:
                    raise _singular_error(exc, K, structure.name) from None
                raise
            if best is None or run[2][-1] > best[2][-1]:
                best = run
    params, log_lik, history, n_iter, converged = best
    if warn_convergence and not converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (relative change of the log "
            f"posterior above tol={tol}); raise max_iter or check the fit", ConvergenceWarning,
            stacklevel=2)
    return MixtureFit(
        weights=params.weights, means=params.means, covariances=params.covariances,
        covariance=structure.name, prior=prior, log_likelihood=log_lik,
        log_posterior=float(history[-1]), history=history, n_iter=n_iter, converged=converged,
        n_samples=n if w is None else float(w.sum()), feature_names=feature_names,
    )
