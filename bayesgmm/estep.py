"""The E-pass: a mixture evaluated over row chunks of X in working coordinates.

One pass fuses the E-step (responsibilities through Cholesky factors and log-sum-exp) with the
accumulation of the M-step's sufficient statistics, so no (N, K)-sized temporary is ever formed.
It runs in working coordinates (:class:`Coordinates`): the data centred and divided by a power of
two near their spread, sample weights divided by a power of two near their largest.  Equations
are numbered as in ``docs/derivation.md``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._validation import check_magnitude, column_moments, power_of_two
from .covariance import CovarianceStructure, get_structure
from .priors import GMMPrior

__all__ = ["MixtureParams", "Coordinates", "working_coordinates", "model_coordinates",
           "EPass", "Stats", "joint_log_density"]

_LOG_2PI = np.log(2.0 * np.pi)
#: Scratch values per chunk (K · rows · d): the working set stays near the cache (DESIGN §7;
#: the chunk size was chosen with benchmarks/em_vs_sklearn.py).
_CHUNK_VALUES = 2**18


class MixtureParams(NamedTuple):
    """Mixture parameters: weights (K,), means (K, d), covariances (structure's shape)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


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
class Stats:
    """Sufficient statistics of one pass, in whitened coordinates of the current components,
    with the pass's (divided) sample weights."""

    log_likelihood: float
    n_k: np.ndarray  # (K,)   N_k = Σ_n w_n r_nk                     (eq. 3.1)
    s1: np.ndarray  # (K, d) Σ_n w_n r_nk y_nk,  y = L_k⁻¹(z − μ_k)  (eq. 3.2)
    moment: np.ndarray  # structure-reduced Σ_n w_n r_nk y_nk y_nkᵀ  (eq. 3.3)


class EPass:
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

    def stats(self, params: MixtureParams, factor, resp: np.ndarray | None = None) -> Stats:
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
        return Stats(ll, n_k, s1, moment)

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
    em_pass = EPass(X, None, structure, len(params.weights), coords)
    with np.errstate(over="ignore", invalid="ignore"):
        out = em_pass.log_prob(working, factor)
    out += coords.log_density_offset(X.shape[1])
    return out
