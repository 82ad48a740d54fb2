"""The one place that decides per covariance structure.

Every structure-specific fact of the package is a pure function or a value in one row of
:data:`STRUCTURES` — its shapes and dims, its Cholesky factor and E-step kernels, which of its
parameters are shared across components, its prior (the blocks, their sizes and the allowed and
default scales), its M-step, its unconstrained parametrisation and the PyMC distribution of its
covariances.  The EM loop, the prior density, the PyMC model and the command line look the
structure up here instead of branching on its name, so adding a structure is one row plus its
contract test (``tests/test_covariance.py``).  Shapes, with K components and d features:

============  ==============  =========================  ===========================
structure     covariances     Cholesky ``factor``        prior blocks (IW(ν0, ψ) each)
============  ==============  =========================  ===========================
full          (K, d, d)       (K, d, d) lower L_k        K blocks of d × d
tied          (d, d)          (d, d) lower L             1 block of d × d
diag          (K, d)          (K, d) standard devs       K·d blocks of 1 × 1
spherical     (K,)            (K,) standard deviations   K blocks of 1 × 1
============  ==============  =========================  ===========================

A one-dimensional inverse-Wishart IW(ν0, ψ) is the inverse-gamma IG(ν0/2, ψ/2), so every prior on
covariances is a product of inverse-Wisharts over the blocks of the table (``docs/derivation.md``
§4), and one M-step formula (4.4) serves every row.  The E-step works in *whitened* coordinates
y = L_k⁻¹ (x − μ_k); the sufficient statistics it accumulates there are mapped back to data space
by :attr:`CovarianceStructure.unwhiten` and :attr:`CovarianceStructure.scatter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.blas import dsyrk, dtrsm

from ._validation import check_symmetric

__all__ = ["CovarianceStructure", "STRUCTURES", "SingularCovarianceError", "get_structure",
           "check_covariances"]


class SingularCovarianceError(ValueError):
    """A covariance matrix is not positive definite; ``component`` is its index (None if tied)."""

    def __init__(self, component: int | None, message: str):
        super().__init__(message)
        self.component = component


@dataclass(frozen=True)
class CovarianceStructure:
    """The pure functions and facts that define one covariance structure.

    Attributes
    ----------
    name : str
        scikit-learn's name: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"``.
    dims : tuple of str
        Named dims of ``covariances`` (xarray results and PyMC coords share them).
    per_component : bool
        Each component has its own covariance parameters (False: one set shared by all).
    shape : callable (K, d) -> tuple
        Shape of the ``covariances`` array.
    n_parameters : callable (K, d) -> int
        Number of free covariance parameters.
    identity : callable (K, d) -> covariances
        Unit covariances in this structure's shape.
    expand : callable (covariances, K, d) -> (K, d, d)
        Dense covariance matrices; written with broadcasting only, so it serves numpy arrays
        and PyTensor tensors alike.

    factor : callable (covariances,) -> factor
        Cholesky factor (lower) or standard deviations; raises :class:`SingularCovarianceError`.
    log_det : callable (factor, K, d) -> (K,)
        log det Σ_k per component.
    whiten : callable (X (n, d), means (K, d), factor, out (K, n, d)) -> out
        y_nk = L_k⁻¹ (x_n − μ_k), written into ``out``.
    mahalanobis : callable (Z (n, d), means (K, d), factor, scratch (K, n, d)) -> (maha, cache)
        ‖L_k⁻¹ (z_n − μ_k)‖², shape (n, K), and what ``accumulate`` reuses for the chunk.
    accumulate : callable (Z, cache, R (n, K)) -> (A1, A2)
        Per-chunk weighted sums: whitened Σ r y and Σ r y yᵀ (full, tied), or the raw Σ r z and
        Σ r z² (diag; spherical: Σ r ‖z‖²) that ``finish`` centres after the pass.
    finish : callable (n_k, A1, A2, means, factor) -> (s1 (K, d), moment)
        The pass totals as whitened statistics about μ_k: s1 = Σ r y and the moment Σ r y yᵀ,
        reduced to (K, d, d) full/tied, (K, d) diag, (K,) spherical.
    unwhiten : callable (factor, V (K, d)) -> (K, d)
        v ↦ L_k v.
    scatter : callable (factor, M, s1 (K, d), n_k (K,)) -> per-component scatter
        W_k = L_k (M_k − s1_k s1_kᵀ / N_k) L_kᵀ, reduced like ``moment``.
    reduce : callable (outer (K, d, d)) -> like ``moment``
        Reduces per-component d × d matrices to the structure's statistics.

    combine : callable (per-component statistic) -> blocks-shaped statistic
        Sums what is shared (tied: over components); identity otherwise.
    blocks : callable (array of the covariances' shape,) -> (B, b, b)
        The inverse-Wishart blocks; applied to Ψ0 broadcast to that shape, the blocks' scales.
    from_blocks : callable ((B, b, b), K, d) -> covariances
    block_size : callable (d,) -> int
        b, the size of each inverse-Wishart block (d, or 1 for variances).
    block_counts : callable (n_k (K,), d) -> (B,)
        Data count entering each block's mode (N_k, N, N_k per coordinate, d·N_k).
    mean_multiplicity : callable (K, d) -> int
        How many mean priors N(μ_k | m0, Σ_k/κ0) contain one block's variance.
    scale_shapes : callable (d,) -> tuple of shapes
        The shapes a prior scale Ψ0 may have (it is broadcast to the covariances' shape).
    default_scale : callable (cov (d, d), style) -> Ψ0
        The data-scaled default Ψ0 before the K^(−2/d) factor, from the data covariance:
        ``style`` "default" or "mclust" (Fraley & Raftery 2007; derivation §4).
    pymc_distribution : str
        The prior of the covariances as a PyMC variable: ``"InverseWishart"`` (matrix blocks)
        or ``"InverseGamma"`` (variances), built by :mod:`bayesgmm.posterior`.

    to_unconstrained : callable (covariances,) -> (p,)
        An unconstrained vector (log-Cholesky entries or log variances), p = n_parameters.
    from_unconstrained : callable ((p,), K, d) -> covariances
        Its inverse.
    """

    name: str
    dims: tuple
    per_component: bool
    shape: Callable
    n_parameters: Callable
    identity: Callable
    expand: Callable
    factor: Callable
    log_det: Callable
    whiten: Callable
    mahalanobis: Callable
    accumulate: Callable
    finish: Callable
    unwhiten: Callable
    scatter: Callable
    reduce: Callable
    combine: Callable
    blocks: Callable
    from_blocks: Callable
    block_size: Callable
    block_counts: Callable
    mean_multiplicity: Callable
    scale_shapes: Callable
    default_scale: Callable
    pymc_distribution: str
    to_unconstrained: Callable
    from_unconstrained: Callable

    @property
    def matrix_valued(self) -> bool:
        """The covariances are d × d matrices (their upper triangle must match the lower)."""
        return "feature_bis" in self.dims

    def min_dof(self, d: int) -> int:
        """ν0 must exceed b − 1 for a proper inverse-Wishart on b × b blocks."""
        return self.block_size(d) - 1

    def mode(self, B, n_k: np.ndarray, prior, K: int, d: int) -> np.ndarray:
        """The covariances of the joint posterior mode given the scatter B_k (eq. 4.3),
        reduced like ``moment``, for the prior ``prior`` (eq. 4.4):

            Σ-block = (Ψ0 + B) / (ν0 + b + 1 + n_block + δ m).
        """
        delta = 1.0 if prior.shrinkage > 0 else 0.0
        denom = (prior.dof + self.block_size(d) + 1 + self.block_counts(n_k, d)
                 + delta * self.mean_multiplicity(K, d))
        covs = (prior.block_scales(K) + self.combine(B)) / denom[:, None, None]
        return self.from_blocks(covs, K, d)

    def maximum_likelihood(self, W, n_k: np.ndarray, K: int, d: int) -> np.ndarray:
        """The maximum-likelihood covariances given the scatter W_k about x̄_k (eq. 2.8)."""
        counts = self.block_counts(n_k, d)
        return self.from_blocks(self.combine(W) / counts[:, None, None], K, d)


# ----------------------------------------------------------------------------- factors
def _cholesky_stack(covs: np.ndarray, names: list[int | None]) -> np.ndarray:
    """Batched Cholesky; on failure, name the first matrix that is not positive definite."""
    try:
        factors = np.linalg.cholesky(covs)
        ok = np.all(np.diagonal(factors, axis1=-2, axis2=-1) > 0, axis=-1)
    except np.linalg.LinAlgError:
        ok = [_is_spd(c) for c in covs]
    if not np.all(ok):
        name = names[int(np.argmin(ok))]
        raise SingularCovarianceError(name, _singular_message(name))
    return factors


def _is_spd(cov: np.ndarray) -> bool:
    try:
        return bool(np.all(np.diag(np.linalg.cholesky(cov)) > 0))
    except np.linalg.LinAlgError:
        return False


def _singular_message(component: int | None) -> str:
    which = "the tied covariance" if component is None else f"the covariance of component {component}"
    return f"{which} is singular or not positive definite"


def _sd(variances: np.ndarray) -> np.ndarray:
    variances = np.asarray(variances, dtype=float)
    bad = ~(variances > 0) | ~np.isfinite(variances)
    if bad.any():
        k = int(np.argwhere(bad)[0][0])
        raise SingularCovarianceError(k, _singular_message(k) + " (a variance is not positive)")
    return np.sqrt(variances)


def _diag_log_det(lower: np.ndarray) -> np.ndarray:
    """log det Σ = 2 Σ_j log L_jj (Cholesky), batched over leading axes."""
    return 2.0 * np.log(np.diagonal(lower, axis1=-2, axis2=-1)).sum(-1)


# ----------------------------------------------------------------------------- whitening
def _solve_lower_inplace(lower: np.ndarray, rows: np.ndarray) -> None:
    """rows ← rows L⁻ᵀ, i.e. y_n = L⁻¹ x_n for each row, in place (BLAS trsm, no inverse).

    ``rows`` is a C-contiguous (n, d) block, so ``rows.T`` is the F-ordered (d, n) right-hand
    side that trsm overwrites.
    """
    dtrsm(1.0, lower, rows.T, lower=1, overwrite_b=1)


def _whiten_full(X, means, lower, out):
    for k in range(len(means)):
        np.subtract(X, means[k], out=out[k])
        _solve_lower_inplace(lower[k], out[k])
    return out


def _whiten_tied(X, means, lower, out):
    # L⁻¹(x − μ_k) = L⁻¹x − L⁻¹μ_k: one triangular solve for the chunk
    np.copyto(out[0], X)
    _solve_lower_inplace(lower, out[0])
    shifts = solve_triangular(lower, means.T, lower=True, check_finite=False).T
    for k in range(len(means) - 1, -1, -1):
        np.subtract(out[0], shifts[k], out=out[k])
    return out


def _whiten_scaled(X, means, sd, out):
    sd = sd if sd.ndim == 2 else sd[:, None]
    np.subtract(X[None, :, :], means[:, None, :], out=out)
    out /= sd[:, None, :]
    return out


# ----------------------------------------------------------------------------- chunk passes
def _mahalanobis_whitened(whiten):
    """Full/tied: whiten the chunk, keep Y (K, n, d) for the moments."""
    def mahalanobis(Z, means, factor, scratch):
        Y = whiten(Z, means, factor, scratch)
        return np.einsum("knd,knd->nk", Y, Y), Y
    return mahalanobis


def _accumulate_whitened(Z, Y, R):
    s1 = np.matmul(R.T[:, None, :], Y)[:, 0, :]
    K, _, d = Y.shape
    moment = np.empty((K, d, d))
    for k in range(K):
        # Σ_n r_nk y yᵀ as one rank-n update (syrk: half a GEMM's flops) of √r-scaled rows,
        # in place: Y is not needed after this chunk
        Y[k] *= np.sqrt(R[:, k])[:, None]
        upper = dsyrk(1.0, Y[k].T, lower=0)
        moment[k] = np.triu(upper) + np.triu(upper, 1).T
    return s1, moment


def _mahalanobis_diag(Z, means, sd, scratch):
    # Σ_j (z_j − μ_kj)² / σ²_kj = z² · P − 2 z · (μ P) + μ² · P, as two GEMMs (P = 1/σ²)
    precision = 1.0 / np.square(sd)
    Z2 = np.square(Z, out=scratch[0])
    maha = Z2 @ precision.T
    maha -= 2.0 * (Z @ (means * precision).T)
    maha += (np.square(means) * precision).sum(1)
    return maha, Z2


def _mahalanobis_spherical(Z, means, sd, scratch):
    precision = 1.0 / np.square(sd)
    z2 = np.einsum("nd,nd->n", Z, Z)
    maha = np.multiply.outer(z2, precision)
    maha -= 2.0 * (Z @ means.T) * precision
    maha += np.einsum("kd,kd->k", means, means) * precision
    return maha, z2


def _accumulate_raw(Z, Z2, R):
    return R.T @ Z, R.T @ Z2


def _finish_whitened(n_k, A1, A2, means, factor):
    return A1, A2


def _finish_diag(n_k, A1, A2, means, sd):
    # Σ r (z − μ)² = Σ r z² − 2 μ Σ r z + N μ²; whitened by σ
    s1 = (A1 - n_k[:, None] * means) / sd
    moment = (A2 - 2.0 * means * A1 + n_k[:, None] * np.square(means)) / np.square(sd)
    return s1, moment


def _finish_spherical(n_k, A1, A2, means, sd):
    s1 = (A1 - n_k[:, None] * means) / sd[:, None]
    moment = (A2 - 2.0 * np.einsum("kd,kd->k", means, A1)
              + n_k * np.einsum("kd,kd->k", means, means)) / np.square(sd)
    return s1, moment


def _unwhiten_full(lower, V):
    return np.einsum("kij,kj->ki", lower, V)


def _unwhiten_tied(lower, V):
    return V @ lower.T


def _unwhiten_scaled(sd, V):
    return V * (sd if sd.ndim == 2 else sd[:, None])


def _centered(M, s1, n_k, outer):
    """M − s1 s1ᵀ / N_k (whitened scatter about x̄_k; 0 for an empty component)."""
    inv = np.divide(1.0, n_k, out=np.zeros_like(n_k), where=n_k > 0)
    return M - outer(s1, s1) * (inv.reshape((-1,) + (1,) * (M.ndim - 1)))


def _scatter_full(lower, M, s1, n_k):
    C = _centered(M, s1, n_k, lambda a, b: a[:, :, None] * b[:, None, :])
    return lower @ C @ lower.transpose(0, 2, 1)


def _scatter_tied(lower, M, s1, n_k):
    C = _centered(M, s1, n_k, lambda a, b: a[:, :, None] * b[:, None, :])
    return lower @ C @ lower.T


def _scatter_diag(sd, M, s1, n_k):
    return sd**2 * _centered(M, s1, n_k, np.multiply)


def _scatter_spherical(sd, M, s1, n_k):
    return sd**2 * _centered(M, s1, n_k, lambda a, b: (a * b).sum(-1))


# ----------------------------------------------------------------------------- parametrisation
def _log_cholesky(covs: np.ndarray) -> np.ndarray:
    """Lower Cholesky entries row by row with the diagonal on the log scale, per matrix."""
    L = np.linalg.cholesky(covs)
    d = covs.shape[-1]
    rows, cols = np.tril_indices(d)
    packed = L[..., rows, cols]
    diag = rows == cols
    packed[..., diag] = np.log(packed[..., diag])
    return packed.reshape(-1)


def _from_log_cholesky(z: np.ndarray, n_matrices: int, d: int) -> np.ndarray:
    rows, cols = np.tril_indices(d)
    packed = np.asarray(z, dtype=float).reshape(n_matrices, -1).copy()
    diag = rows == cols
    packed[:, diag] = np.exp(packed[:, diag])
    L = np.zeros((n_matrices, d, d))
    L[:, rows, cols] = packed
    return L @ L.transpose(0, 2, 1)


def _diag_scale(cov: np.ndarray, style: str) -> np.ndarray:
    """Per-coordinate variances (default) or mclust's one scalar, the mean variance."""
    return np.diag(cov).copy() if style == "default" else _mean_variance(cov, style)


def _mean_variance(cov: np.ndarray, style: str) -> np.ndarray:
    return np.asarray(np.trace(cov) / cov.shape[0])


# ----------------------------------------------------------------------------- the table
STRUCTURES: dict[str, CovarianceStructure] = {
    "full": CovarianceStructure(
        name="full",
        dims=("component", "feature", "feature_bis"),
        per_component=True,
        shape=lambda K, d: (K, d, d),
        n_parameters=lambda K, d: K * d * (d + 1) // 2,
        identity=lambda K, d: np.array(np.broadcast_to(np.eye(d), (K, d, d))),
        factor=lambda c: _cholesky_stack(c, list(range(len(c)))),
        log_det=lambda L, K, d: _diag_log_det(L),
        whiten=_whiten_full,
        mahalanobis=_mahalanobis_whitened(_whiten_full),
        accumulate=_accumulate_whitened,
        finish=_finish_whitened,
        unwhiten=_unwhiten_full,
        scatter=_scatter_full,
        reduce=lambda outer: outer,
        combine=lambda per_component: per_component,
        blocks=lambda c: c,
        from_blocks=lambda b, K, d: b,
        block_size=lambda d: d,
        block_counts=lambda n_k, d: n_k,
        mean_multiplicity=lambda K, d: 1,
        scale_shapes=lambda d: ((d, d),),
        default_scale=lambda cov, style: cov,
        pymc_distribution="InverseWishart",
        expand=lambda c, K, d: c,
        to_unconstrained=_log_cholesky,
        from_unconstrained=lambda z, K, d: _from_log_cholesky(z, K, d),
    ),
    "tied": CovarianceStructure(
        name="tied",
        dims=("feature", "feature_bis"),
        per_component=False,
        shape=lambda K, d: (d, d),
        n_parameters=lambda K, d: d * (d + 1) // 2,
        identity=lambda K, d: np.eye(d),
        factor=lambda c: _cholesky_stack(c[None], [None])[0],
        log_det=lambda L, K, d: np.full(K, _diag_log_det(L)),
        whiten=_whiten_tied,
        mahalanobis=_mahalanobis_whitened(_whiten_tied),
        accumulate=_accumulate_whitened,
        finish=_finish_whitened,
        unwhiten=_unwhiten_tied,
        scatter=_scatter_tied,
        reduce=lambda outer: outer,
        combine=lambda per_component: per_component.sum(0, keepdims=True),
        blocks=lambda c: c[None],
        from_blocks=lambda b, K, d: b[0],
        block_size=lambda d: d,
        block_counts=lambda n_k, d: np.atleast_1d(n_k.sum()),
        mean_multiplicity=lambda K, d: K,
        scale_shapes=lambda d: ((d, d),),
        default_scale=lambda cov, style: cov,
        pymc_distribution="InverseWishart",
        expand=lambda c, K, d: c[None] * np.ones((K, 1, 1)),
        to_unconstrained=_log_cholesky,
        from_unconstrained=lambda z, K, d: _from_log_cholesky(z, 1, d)[0],
    ),
    "diag": CovarianceStructure(
        name="diag",
        dims=("component", "feature"),
        per_component=True,
        shape=lambda K, d: (K, d),
        n_parameters=lambda K, d: K * d,
        identity=lambda K, d: np.ones((K, d)),
        factor=_sd,
        log_det=lambda sd, K, d: 2.0 * np.log(sd).sum(-1),
        whiten=_whiten_scaled,
        mahalanobis=_mahalanobis_diag,
        accumulate=_accumulate_raw,
        finish=_finish_diag,
        unwhiten=_unwhiten_scaled,
        scatter=_scatter_diag,
        reduce=lambda outer: np.diagonal(outer, axis1=-2, axis2=-1),
        combine=lambda per_component: per_component.reshape(-1, 1, 1),
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(K, d),
        block_size=lambda d: 1,
        block_counts=lambda n_k, d: np.repeat(n_k, d),
        mean_multiplicity=lambda K, d: 1,
        scale_shapes=lambda d: ((d,), ()),
        default_scale=_diag_scale,
        pymc_distribution="InverseGamma",
        expand=lambda c, K, d: c[:, :, None] * np.eye(d),
        to_unconstrained=lambda c: np.log(c).reshape(-1),
        from_unconstrained=lambda z, K, d: np.exp(np.asarray(z, dtype=float)).reshape(K, d),
    ),
    "spherical": CovarianceStructure(
        name="spherical",
        dims=("component",),
        per_component=True,
        shape=lambda K, d: (K,),
        n_parameters=lambda K, d: K,
        identity=lambda K, d: np.ones(K),
        factor=_sd,
        log_det=lambda sd, K, d: 2.0 * d * np.log(sd),
        whiten=_whiten_scaled,
        mahalanobis=_mahalanobis_spherical,
        accumulate=_accumulate_raw,
        finish=_finish_spherical,
        unwhiten=_unwhiten_scaled,
        scatter=_scatter_spherical,
        reduce=lambda outer: np.trace(outer, axis1=-2, axis2=-1),
        combine=lambda per_component: per_component.reshape(-1, 1, 1),
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(K),
        block_size=lambda d: 1,
        block_counts=lambda n_k, d: d * n_k,
        mean_multiplicity=lambda K, d: d,
        scale_shapes=lambda d: ((),),
        default_scale=_mean_variance,
        pymc_distribution="InverseGamma",
        expand=lambda c, K, d: c[:, None, None] * np.eye(d),
        to_unconstrained=lambda c: np.log(c).reshape(-1),
        from_unconstrained=lambda z, K, d: np.exp(np.asarray(z, dtype=float)).reshape(K),
    ),
}


def get_structure(name: str) -> CovarianceStructure:
    """Look up a structure by name, with a clear error for unknown names."""
    try:
        return STRUCTURES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance={name!r} is not a covariance structure; use one of {sorted(STRUCTURES)}"
        ) from None


def check_covariances(structure: CovarianceStructure, covariances, K: int, d: int,
                      name: str = "covariances"):
    """Validate covariances given for a (K, d) model of ``structure`` and return their factor.

    Checks the shape, finiteness, symmetry (matrix structures: the upper triangle is not
    silently ignored) and positive definiteness, each with a message naming ``name``.
    """
    try:
        covs = np.asarray(covariances, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array") from None
    shape = structure.shape(K, d)
    if covs.shape != shape:
        raise ValueError(f"{name} must have shape {shape} for {structure.name!r} covariances "
                         f"(K={K}, d={d}), got {covs.shape}")
    if not np.all(np.isfinite(covs)):
        raise ValueError(f"{name} must be finite")
    if structure.matrix_valued:
        check_symmetric(covs, name)
    try:
        return structure.factor(covs)
    except SingularCovarianceError as exc:
        raise ValueError(f"{name}: {exc}") from None
