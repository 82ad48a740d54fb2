"""The EM map of one fit: the fused E-pass, the M-step and the log posterior, in working coordinates.

An :class:`Engine` holds what one fit needs — X, the sample weights, the covariance structure, the
working coordinates and the working prior — and evaluates the EM map F(θ) with the compiled
kernels of :mod:`bayesgmm._kernels`.  Parameters live in *kernel layout* while EM runs
(:class:`State`: dense (K, d, d) covariances with their Cholesky factors and inverses, or (K, d)
variances with their standard deviations) and return to the structure's own shapes at the end.

Working coordinates (:class:`Coordinates`): the data centred and divided by a power of two near
their spread, sample weights divided by a power of two near their largest.  A fit is
equivariant under that change, so the result is the same in the user's units, at any finite
magnitude, and only log densities gain the change-of-variables constants.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._validation import check_magnitude, column_moments, power_of_two
from .covariance import CovarianceStructure, SingularCovarianceError, get_structure
from .priors import GMMPrior

__all__ = ["MixtureParams", "Coordinates", "working_coordinates", "model_coordinates", "State",
           "Stats", "Engine", "joint_log_density"]

_LOG_2PI = math.log(2.0 * math.pi)
#: scratch values per chunk of the E-pass, by kernel family: the working set stays near the
#: cache (DESIGN §7).  Dense kernels hold K (d + 3) values per row and gain from longer BLAS
#: calls; diagonal kernels hold K + 2d + 4 and prefer smaller chunks (benchmarks/em_vs_sklearn.py
#: --chunks measures the choice)
_CHUNK_VALUES = {"dense": 2**18, "diagonal": 2**16}


def _kernels():
    """The compiled kernels (Numba is imported on first use, not by ``import bayesgmm``)."""
    from . import _kernels

    return _kernels


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
        scales by s, each entry of a prior block (b(b+1)/2 for a b × b block) by s² — for a
        structure constrained inside its blocks (:mod:`bayesgmm.decomposition`) the log prior
        is the blocks' densities at the constrained point, so it is the blocks' entries that
        count."""
        n_means = K * d if prior.shrinkage > 0 else 0
        b = structure.block_size(d)
        n_blocks = structure.blocks(np.asarray(structure.identity(K, d))).shape[0]
        return -(n_means + n_blocks * b * (b + 1)) * np.log(self.scale)


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


# ============================================================================ kernel layout
class State(NamedTuple):
    """Parameters in kernel layout with their factorisation.

    dense: covs (K, d, d), factor L_k (lower Cholesky), inv_factor U_k = L_k⁻¹;
    diagonal: covs (K, d) variances, factor σ_kj, inv_factor 1/σ_kj.  ``packed`` is the
    unconstrained vector of :meth:`Engine.pack` (made when needed).
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    factor: np.ndarray
    inv_factor: np.ndarray
    log_det: np.ndarray  # (K,)
    packed: np.ndarray | None = None


class Stats(NamedTuple):
    """One E-pass's sufficient statistics (weights divided by the weight scale), whitened about
    the pass's means: N_k (3.1), s1 = Σ w r y (3.2), moment = Σ w r y yᵀ (dense, (K, d, d)) or
    Σ w r y² (diagonal, (K, d)) (3.3).  For a shared factor (tied) moment[0] holds the sum over
    components and the other entries are zero."""

    log_likelihood: float
    n_k: np.ndarray
    s1: np.ndarray
    moment: np.ndarray


class KernelPrior(NamedTuple):
    """The working prior's hyperparameters in kernel layout."""

    alpha: np.ndarray  # (K,)
    shrinkage: float
    mean: np.ndarray  # (d,)
    dof: float
    scale: np.ndarray  # dense (K, d, d) | diagonal (K, d)
    scale_factor: np.ndarray  # dense: Cholesky factors of scale; diagonal: unused
    scale_log_det: np.ndarray  # (K,)


def _kernel_prior(prior: GMMPrior, structure: CovarianceStructure, K: int, d: int):
    scale = structure.to_kernel(np.broadcast_to(prior.scale, structure.shape(K, d)), K, d)
    scale = np.ascontiguousarray(scale, dtype=float)
    if structure.kernel == "dense":
        chol = np.linalg.cholesky(scale)
        log_det = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    else:
        chol, log_det = np.zeros((K, d, d)), np.zeros(K)
    return KernelPrior(np.ascontiguousarray(prior.concentration_for(K), dtype=float),
                       float(prior.shrinkage), np.ascontiguousarray(prior.mean, dtype=float),
                       float(prior.dof), scale, np.ascontiguousarray(chol), log_det)


_NO_PRIOR_CACHE: dict = {}


def _no_prior(K: int, d: int, kernel: str) -> KernelPrior:
    """Placeholder arrays for the kernels' prior arguments when there is no prior."""
    key = (K, d, kernel)
    if key not in _NO_PRIOR_CACHE:
        shape = (K, d, d) if kernel == "dense" else (K, d)
        _NO_PRIOR_CACHE[key] = KernelPrior(np.ones(K), 0.0, np.zeros(d), 0.0, np.zeros(shape),
                                           np.zeros((K, d, d)), np.zeros(K))
    return _NO_PRIOR_CACHE[key]


# ============================================================================ the engine
class Engine:
    """The EM map F of one fit, and the log posterior, in working coordinates.

    Parameters
    ----------
    X : (N, d) float64, C-ordered (read in chunks, never copied)
    sample_weight : (N,) or None
    structure : CovarianceStructure
    n_components : int
    coords : Coordinates
    prior : GMMPrior or None
        In working coordinates (:meth:`GMMPrior.rescaled`).
    n_threads : int
        Row blocks processed on this many threads (the kernels release the GIL).
    """

    def __init__(self, X, sample_weight, structure: CovarianceStructure, n_components: int,
                 coords: Coordinates, prior: GMMPrior | None = None, n_threads: int = 1,
                 chunk_rows: int | None = None):
        self.X, self.structure, self.coords, self.prior = X, structure, coords, prior
        self.K = K = n_components
        self.n, self.d = X.shape
        self.w = (np.empty(0) if sample_weight is None
                  else np.ascontiguousarray(sample_weight / coords.weight_scale))
        self.omega = coords.weight_scale
        factors = K if structure.per_component else 1
        per_row = (factors * (self.d + 3) + K if structure.kernel == "dense"
                   else K + 2 * self.d + 4)
        self.rows = chunk_rows or max(16, _CHUNK_VALUES[structure.kernel] // per_row)
        self.n_threads = max(1, min(n_threads, self.n // self.rows))
        self.center = np.ascontiguousarray(coords.center, dtype=float)
        self.inv_scale = 1.0 / coords.scale
        self.dense = structure.kernel == "dense"
        self.kprior = (_kernel_prior(prior, structure, K, self.d) if prior is not None
                       else _no_prior(K, self.d, structure.kernel))
        self.k = _kernels()
        self._empty_lp = np.empty((0, K))
        self._empty_r = np.empty((0, K))
        p, shared = self.kprior, not structure.per_component
        # one scratch workspace per thread, reused by every pass (_kernels.estep_dense)
        block = max(1, min(self.rows, self.n))
        self._work = [(np.empty(self.k.work_size(self.dense, self.d, K, shared, block)),
                       np.empty(block, dtype=np.int64)) for _ in range(self.n_threads)]
        # the compiled EM map's arguments that do not change between iterations
        self._data_args = (X, self.center, self.inv_scale, self.w, self.rows, *self._work[0])
        self._model_args = (
            (shared, self.omega, prior is not None, p.alpha, p.shrinkage, p.mean, p.dof,
             p.scale, p.scale_factor, p.scale_log_det) if self.dense else
            (shared, structure.isotropic, self.omega, prior is not None, p.alpha, p.shrinkage,
             p.mean, p.dof, p.scale))

    # ------------------------------------------------------------------ layouts
    def _singular(self, bad: int) -> SingularCovarianceError:
        component = int(bad) if self.structure.per_component else None
        which = ("the tied covariance" if component is None
                 else f"the covariance of component {component}")
        return SingularCovarianceError(component, f"{which} is singular or not positive "
                                                  "definite")

    def state(self, weights, means, covs) -> State:
        """Factor kernel-layout covariances; raises :class:`SingularCovarianceError`."""
        if self.dense:
            L, U, log_det, bad = self.k.factor_dense(covs, not self.structure.per_component)
        else:
            L, U, log_det, bad = self.k.factor_diagonal(covs)
        if bad >= 0:
            raise self._singular(bad)
        return State(weights, means, covs, L, U, log_det)

    def from_params(self, params: MixtureParams) -> State:
        covs = np.ascontiguousarray(self.structure.to_kernel(
            np.asarray(params.covariances, dtype=float), self.K, self.d), dtype=float)
        return self.state(np.ascontiguousarray(params.weights, dtype=float),
                          np.ascontiguousarray(params.means, dtype=float), covs)

    def pack(self, state: State) -> np.ndarray:
        """θ as an unconstrained vector (log π_k, μ_k, log-Cholesky entries or log variances)."""
        if state.packed is not None:
            return state.packed
        if self.dense:
            return self.k.pack_dense(state.weights, state.means, state.factor)
        return self.k.pack_diagonal(state.weights, state.means, state.covs)

    def unpack(self, u: np.ndarray) -> State:
        """The state of an unconstrained vector (raises if a covariance is not positive
        definite after rounding)."""
        unpack = self.k.unpack_dense if self.dense else self.k.unpack_diagonal
        return self.state(*unpack(u, self.K, self.d))

    def params(self, state: State) -> MixtureParams:
        return MixtureParams(state.weights, state.means,
                             self.structure.from_kernel(state.covs, self.K, self.d))

    # ------------------------------------------------------------------ the E-pass
    def _pass(self, state: State, a: int, b: int, log_prob_out, resp, thread: int = 0):
        offset = self.k.log_offsets(state.weights, state.log_det, self.d)
        args = (self.X, a, b, self.center, self.inv_scale, self.w, state.means,
                state.inv_factor, offset, self.rows, log_prob_out, resp)
        if self.dense:
            return self.k.estep_dense(*args, not self.structure.per_component,
                                      *self._work[thread])
        return self.k.estep_diagonal(*args, *self._work[thread])

    def estep(self, state: State, resp: np.ndarray | None = None) -> Stats:
        """One fused E-pass: log-likelihood and whitened statistics at ``state``.  With ``resp``
        (N, K) those responsibilities are used instead of the E-step's (the M-step-first start)."""
        resp = self._empty_r if resp is None else np.ascontiguousarray(resp, dtype=float)
        if self.n_threads == 1:
            return Stats(*self._pass(state, 0, self.n, self._empty_lp, resp))
        edges = np.linspace(0, self.n, self.n_threads + 1).astype(int)
        with ThreadPoolExecutor(self.n_threads) as pool:
            parts = list(pool.map(
                lambda t: self._pass(state, edges[t], edges[t + 1], self._empty_lp, resp, t),
                range(self.n_threads)))
        return Stats(*(sum(p[i] for p in parts) for i in range(4)))  # in block order

    def log_prob(self, state: State) -> np.ndarray:
        """log π_k N(z_n | μ_k, Σ_k), shape (N, K), in working coordinates."""
        out = np.empty((self.n, self.K))
        self._pass(state, 0, self.n, out, self._empty_r)
        return out

    # ------------------------------------------------------------------ the posterior
    def log_prior(self, state: State) -> float:
        p = self.kprior
        if self.prior is None:
            return 0.0
        s = self.structure
        if self.dense:
            return self.k.log_prior_dense(state.weights, state.means, state.inv_factor,
                                          state.log_det, p.alpha, p.shrinkage, p.mean, p.dof,
                                          p.scale_factor, p.scale_log_det, not s.per_component)
        return self.k.log_prior_diagonal(state.weights, state.means, state.covs, p.alpha,
                                         p.shrinkage, p.mean, p.dof, p.scale,
                                         not s.per_component, s.isotropic)

    def log_posterior(self, state: State, stats: Stats) -> float:
        """ω · log p(Z | θ') + log p'(θ'): the working log posterior (log likelihood alone
        without a prior)."""
        return self.omega * stats.log_likelihood + self.log_prior(state)

    # ------------------------------------------------------------------ the M-step
    def m_step(self, stats: Stats, state: State) -> State:
        """The joint posterior mode (or the ML estimate) given a pass's statistics."""
        p, s = self.kprior, self.structure
        has_prior = self.prior is not None
        if not has_prior and np.any(stats.n_k <= 0):
            k = int(np.flatnonzero(stats.n_k <= 0)[0])
            raise SingularCovarianceError(k, f"component {k} has no data left")
        if self.dense:
            weights, means, covs = self.k.mstep_dense(
                stats.n_k, stats.s1, stats.moment, self.omega, state.means, state.factor,
                has_prior, p.alpha, p.shrinkage, p.mean, p.dof, p.scale, not s.per_component)
        else:
            weights, means, covs = self.k.mstep_diagonal(
                stats.n_k, stats.s1, stats.moment, self.omega, state.means, state.factor,
                has_prior, p.alpha, p.shrinkage, p.mean, p.dof, p.scale,
                not s.per_component, s.isotropic)
        return self.state(weights, means, self._constrain(covs, stats.n_k, state.covs))

    def _constrain(self, covs, n_k, previous):
        """The constrained M-step of a volume–shape–orientation structure (eq. 4b.1) from the
        kernel's per-component update Σ_k = M_k / c_k; other structures pass through."""
        s = self.structure
        if s.constrained_mstep is None:
            return covs
        c = self.omega * n_k
        if self.prior is not None:  # c_k = ω N_k + ν0 + b + 1 + δ           (eq. 4.4)
            c = c + self.kprior.dof + s.block_size(self.d) + 1 + (self.kprior.shrinkage > 0)
        scale = c[:, None, None] if covs.ndim == 3 else c[:, None]
        try:  # c_k > 0: an empty component was refused before the kernel's M-step
            with np.errstate(all="ignore"):
                out = s.constrained_mstep(covs * scale, c, previous)
        except np.linalg.LinAlgError:
            out = None
        if out is None or not np.all(np.isfinite(out)):  # a degenerate scatter (a point)
            raise SingularCovarianceError(None, "a covariance became singular in the "
                                                f"constrained {s.name} M-step")
        return np.ascontiguousarray(out)

    def em_map(self, state: State) -> tuple[State, float, float]:
        """F(θ), the log posterior at θ and the log-likelihood at θ (one E-pass, one M-step);
        on one thread, a single compiled call."""
        if self.n_threads > 1:
            stats = self.estep(state)
            log_post = self.log_posterior(state, stats)
            return self.m_step(stats, state), log_post, self.omega * stats.log_likelihood
        if self.dense:
            out = self.k.em_map_dense(*self._data_args, state.weights, state.means,
                                      state.factor, state.inv_factor, state.log_det,
                                      *self._model_args)
        else:
            out = self.k.em_map_diagonal(*self._data_args, state.weights, state.means,
                                         state.factor, state.inv_factor, state.covs,
                                         state.log_det, *self._model_args)
        log_post, log_lik, n_k, weights, means, covs, factor, inv_factor, log_det, bad, u = out
        if self.prior is None and n_k.min() <= 0:
            k = int(np.flatnonzero(n_k <= 0)[0])
            raise SingularCovarianceError(k, f"component {k} has no data left")
        if self.structure.constrained_mstep is not None:
            new = self.state(weights, means, self._constrain(covs, n_k, state.covs))
            return new, log_post, log_lik
        if bad >= 0:
            raise self._singular(bad)
        return State(weights, means, covs, factor, inv_factor, log_det, u), log_post, log_lik

    def step(self, new: State, old: State) -> float:
        """The size of an EM step: max |u(new) − u(old)| in the unconstrained coordinates."""
        return self.k.max_abs_difference(self.pack(new), self.pack(old))

    def start_from_responsibilities(self, resp: np.ndarray) -> State:
        """The M-step-first start (mclust's ``me(z=)``): whiten about the responsibilities'
        weighted means with unit covariances, then one M-step."""
        R = resp if self.w.size == 0 else resp * self.w[:, None]
        n_k = R.sum(0)
        ident = self.from_params(MixtureParams(np.full(self.K, 1.0 / self.K),
                                               np.zeros((self.K, self.d)),
                                               self.structure.identity(self.K, self.d)))
        first = self.estep(ident, resp)  # Σ w r z, about 0
        means = first.s1 / np.where(n_k > 0, n_k, 1.0)[:, None]
        pivot = ident._replace(means=np.ascontiguousarray(means))
        return self.m_step(self.estep(pivot, resp), pivot)


#: rows per block of :func:`joint_log_density`
_PREDICT_ROWS = 8192


def joint_log_density(X: np.ndarray, params: MixtureParams, covariance: str,
                      rows: int = _PREDICT_ROWS):
    """log π_k + log N(x_n | μ_k, Σ_k) for every row and component, in blocks.

    Evaluated in the model's own working coordinates (:func:`model_coordinates`), so it is
    accurate whatever the magnitude of X and of the parameters.

    Yields
    ------
    (first_row, ndarray of shape (rows, K)) for consecutive blocks of X
    """
    structure = get_structure(covariance)
    coords = model_coordinates(params, structure)
    K = len(params.weights)
    offset = coords.log_density_offset(X.shape[1])
    for a in range(0, len(X), rows):
        block = X[a:a + rows]
        engine = Engine(block, None, structure, K, coords)
        with np.errstate(over="ignore", invalid="ignore"):
            out = engine.log_prob(engine.from_params(coords.to_working(params)))
        yield a, out + offset
