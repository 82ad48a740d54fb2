"""MAP-EM for Gaussian mixtures under the conjugate prior of :mod:`bayesgmm.priors`.

One EM iteration is a single pass over row chunks that fuses the E-step (responsibilities through
Cholesky factors and log-sum-exp) with the accumulation of the M-step's sufficient statistics, so
no (N, K)-sized temporary is ever formed.  EM runs in working coordinates (:class:`Coordinates`):
the data centred and divided by a power of two near their spread, sample weights divided by a
power of two near their largest — a fit is equivariant under that change, so the result is the
same in the user's units, at any finite magnitude.  Equations are numbered as in
``docs/derivation.md``.
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
    check_magnitude,
    check_n_components,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tolerance,
    column_moments,
    feature_names_of,
    power_of_two,
)
from .covariance import (
    CovarianceStructure,
    SingularCovarianceError,
    check_covariances,
    get_structure,
)
from .priors import GMMPrior, resolve_prior

__all__ = ["fit_map", "MixtureParams", "ConvergenceWarning", "Coordinates",
           "working_coordinates", "joint_log_density"]

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


# ============================================================================ coordinates
@dataclass(frozen=True)
class Coordinates:
    """The working coordinates of a fit: z = (x − center) / scale, weights w / weight_scale.

    A Gaussian-mixture fit is equivariant under x ↦ (x − c)/s, and under the transformed prior
    (:meth:`GMMPrior.rescaled`) the posterior is the pushforward of the original one; multiplying
    every weight by a constant multiplies the likelihood's statistics by it.  With ``scale`` and
    ``weight_scale`` powers of two the change is exact, and only the log densities gain the
    change-of-variables constants below.
    """

    center: np.ndarray  # (d,)
    scale: float
    weight_scale: float = 1.0

    def to_working(self, params: MixtureParams) -> MixtureParams:
        s = self.scale
        return MixtureParams(np.asarray(params.weights, dtype=float),
                             (np.asarray(params.means, dtype=float) - self.center) / s,
                             np.asarray(params.covariances, dtype=float) / (s * s))

    def to_data(self, params: MixtureParams) -> MixtureParams:
        s = self.scale
        return MixtureParams(params.weights, self.center + s * params.means,
                             (s * s) * params.covariances)

    def log_density_offset(self, d: int) -> float:
        """log p(x | θ) − log p(z | θ'): −d log s for every row."""
        return -d * np.log(self.scale)

    def log_prior_offset(self, structure: CovarianceStructure, K: int, d: int,
                         prior: GMMPrior) -> float:
        """log p(θ) − log p'(θ') = −log |∂θ/∂θ'|: each mean entry under a proper mean prior
        scales by s, each free covariance entry by s²."""
        n_means = K * d if prior.shrinkage > 0 else 0
        return -(n_means + 2 * structure.n_parameters(K, d)) * np.log(self.scale)


def working_coordinates(X: np.ndarray, sample_weight: np.ndarray | None = None) -> Coordinates:
    """The column means and a power-of-two scale of X, and a power-of-two weight scale.

    Raises a ValueError naming the magnitude when the data's spread is too large or too small
    for its square (the covariances) to be held in float64.
    """
    center, spread = column_moments(X)
    check_magnitude(spread, "the data's spread (root mean column variance)")
    scale = power_of_two(spread) if spread > 0 else 1.0
    weight_scale = 1.0 if sample_weight is None else power_of_two(sample_weight.max())
    return Coordinates(center, scale, weight_scale)


def model_coordinates(params: MixtureParams, structure: CovarianceStructure) -> Coordinates:
    """Working coordinates of a fitted model: its mixture mean and a power-of-two scale near
    its components' typical standard deviation (for evaluating it on new data)."""
    K, d = np.shape(params.means)
    dense = np.asarray(structure.expand(np.asarray(params.covariances), K, d))
    spread = float(np.sqrt(np.diagonal(dense, axis1=-2, axis2=-1).mean()))
    return Coordinates(np.asarray(params.weights) @ np.asarray(params.means),
                       power_of_two(spread) if spread > 0 else 1.0)


@dataclass(frozen=True)
class _Stats:
    """Sufficient statistics of one pass, in whitened coordinates of the current components,
    with the pass's (divided) sample weights."""

    log_likelihood: float
    n_k: np.ndarray  # (K,)   N_k = Σ_n w_n r_nk                     (eq. 3.1)
    s1: np.ndarray  # (K, d) Σ_n w_n r_nk y_nk,  y = L_k⁻¹(z − μ_k)  (eq. 3.2)
    moment: np.ndarray  # structure-reduced Σ_n w_n r_nk y_nk y_nkᵀ  (eq. 3.3)


# ============================================================================ the E-pass
class _Pass:
    """Row-chunked evaluation of a mixture over X in working coordinates, optionally on a small
    thread pool.  Each chunk is mapped to z = (x − center) / scale as it is read (X itself is
    neither copied nor changed)."""

    def __init__(self, X, sample_weight, structure: CovarianceStructure, n_components: int,
                 coords: Coordinates, n_threads: int = 1, chunk_rows: int | None = None):
        self.X, self.structure, self.coords = X, structure, coords
        self.w = None if sample_weight is None else sample_weight / coords.weight_scale
        n, d = X.shape
        K = n_components
        rows = chunk_rows or max(64, _CHUNK_VALUES // (K * (d + 2)))
        self.bounds = [(a, min(a + rows, n)) for a in range(0, n, rows)]
        self.rows, self.K, self.d = min(rows, n), K, d
        self.n_threads = min(n_threads, len(self.bounds))
        self.inv_scale = 1.0 / coords.scale
        self._local = threading.local()

    def _scratch(self, n: int):
        """Per-thread buffers: the working chunk (n, d) and the (K, n, d) work array."""
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

    def working_rows(self, a: int, b: int, out: np.ndarray) -> np.ndarray:
        np.subtract(self.X[a:b], self.coords.center, out=out)
        out *= self.inv_scale  # a power of two: exact
        return out

    def _log_prob(self, a, b, means, factor, offset):
        """log π_k + log N(z_n | μ_k, Σ_k) for rows a:b, shape (n, K) (eq. 1.3), and the
        structure's cache for :meth:`stats`."""
        Z, work = self._scratch(b - a)
        self.working_rows(a, b, Z)
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
        """One fused E-pass: log-likelihood and sufficient statistics at ``params`` (working
        coordinates).

        With ``resp`` (N, K) given, those responsibilities are used instead of the E-step's (the
        M-step-first start); ``params.means``/``factor`` then only fix the whitening.
        """
        structure = self.structure
        means = params.means
        offset = self._offset(params, factor)

        def chunk(a, b):
            log_prob, Z, cache = self._log_prob(a, b, means, factor, offset)
            if resp is None:
                # log-sum-exp, sharing its exponentials with the responsibilities
                top = log_prob.max(axis=1, keepdims=True)
                R = np.exp(log_prob - top, out=log_prob)
                total = R.sum(axis=1, keepdims=True)
                R /= total  # r_nk                                               (eq. 3.0)
                log_norm = (top + np.log(total))[:, 0]  # log p(z_n)              (eq. 1.2)
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

    def weighted_sums(self, R: np.ndarray) -> np.ndarray:
        """Σ_n w_n r_nk z_n, shape (K, d), for given responsibilities (chunked)."""
        def chunk(a, b):
            Z, _ = self._scratch(b - a)
            Rc = R[a:b] if self.w is None else R[a:b] * self.w[a:b, None]
            return Rc.T @ self.working_rows(a, b, Z)
        return sum(self._map(chunk), np.zeros((self.K, self.d)))

    def log_prob(self, params: MixtureParams, factor) -> np.ndarray:
        """Joint log densities log π_k N(z_n | μ_k, Σ_k), shape (N, K), working coordinates."""
        offset = self._offset(params, factor)
        return np.concatenate(list(self._map(
            lambda a, b: self._log_prob(a, b, params.means, factor, offset)[0].copy())))


def joint_log_density(X: np.ndarray, params: MixtureParams, covariance: str) -> np.ndarray:
    """log π_k + log N(x_n | μ_k, Σ_k) for every row and component, shape (N, K).

    Evaluated in the model's own working coordinates (:func:`model_coordinates`), so it is
    accurate whatever the magnitude of X and of the parameters.
    """
    structure = get_structure(covariance)
    coords = model_coordinates(params, structure)
    working = coords.to_working(params)
    factor = structure.factor(working.covariances)
    em_pass = _Pass(X, None, structure, len(params.weights), coords)
    with np.errstate(over="ignore", invalid="ignore"):
        out = em_pass.log_prob(working, factor)
    out += coords.log_density_offset(X.shape[1])
    return out


# ============================================================================ the M-step
def _identity_covariances(structure: CovarianceStructure, K: int, d: int) -> np.ndarray:
    shape = structure.shape(K, d)
    if "feature_bis" in structure.dims:
        return np.array(np.broadcast_to(np.eye(d), shape))
    return np.ones(shape)


def _m_step(stats: _Stats, params: MixtureParams, factor, structure: CovarianceStructure,
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
        weights = n_k / n_total
        counts = structure.block_counts(n_k, d)
        covs = structure.combine(W) / counts[:, None, None]
        return MixtureParams(weights, xbar, structure.from_blocks(covs, K, d))

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
    # Σ-block = (Ψ0 + B) / (ν0 + b + 1 + n_block + δ·m)                            (eq. 4.4)
    b = d if "feature_bis" in structure.dims else 1
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


def _run_em(em_pass: _Pass, start, prior, tol: float, max_iter: int) -> _Run:
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
        ident = _identity_covariances(structure, K, d)
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

    em_pass = _Pass(X, w, structure, K, coords, n_threads=n_threads)
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
        covariance=structure.name, prior=prior, log_likelihood=best.log_likelihood + ll_offset,
        log_posterior=best.log_posterior + lp_offset, history=best.history + lp_offset,
        n_iter=best.n_iter, converged=best.converged, n_samples=total_weight,
        feature_names=feature_names,
    )
