"""The one place that decides per covariance structure.

Every structure-specific fact of the package is a pure function or a value in one row of
:data:`STRUCTURES` — its shapes and dims, its Cholesky factor, the compiled kernel family that
runs its E-pass and M-step and how its covariances map to that family's layout, which of its
parameters are shared across components, its prior (the blocks, their sizes and the allowed and
default scales), its unconstrained parametrisation and the PyMC distribution of its
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
§4), and one M-step formula (4.4) serves every row.  The E-pass and M-step run in one of two
compiled kernel families (:mod:`bayesgmm._kernels`): ``dense`` (K, d, d) covariances through
their inverse Cholesky factors, or ``diagonal`` (K, d) variances; a row says which, how its
covariances map to that layout, and which variances it shares (``per_component``,
``isotropic``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import numpy as np

from . import decomposition
from ._validation import check_symmetric

__all__ = ["CovarianceStructure", "STRUCTURES", "STRUCTURE_NAMES", "MCLUST_NAMES",
           "SingularCovarianceError", "get_structure", "check_covariances"]


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
        Cholesky factor (lower) or standard deviations, in the structure's shape; raises
        :class:`SingularCovarianceError`.

    kernel : {"dense", "diagonal"}
        The compiled kernel family of the E-pass and the M-step.
    isotropic : bool
        (diagonal kernels) one variance serves all d coordinates of a component.
    to_kernel : callable (covariances, K, d) -> (K, d, d) dense | (K, d) diagonal
        The covariances in the kernel's layout (a copy per component where shared).
    from_kernel : callable (kernel covariances, K, d) -> covariances
        Back to the structure's own shape.

    blocks : callable (array of the covariances' shape,) -> (B, b, b)
        The inverse-Wishart blocks; applied to Ψ0 broadcast to that shape, the blocks' scales.
    from_blocks : callable ((B, b, b), K, d) -> covariances
    block_size : callable (d,) -> int
        b, the size of each inverse-Wishart block (d, or 1 for variances).
    mean_multiplicity : callable (K, d) -> int
        How many mean priors N(μ_k | m0, Σ_k/κ0) contain one block's variance.
    pool : callable ((K, d, d),) -> covariances' shape
        A per-component statistic (scatter matrices B_k, or n_k I) pooled the way the
        structure's covariances are shared: itself (full), Σ_k (tied), diagonals (diag),
        traces (spherical).  The conjugate update of every prior block adds the pooled scatter
        to its scale (derivation §4; the Gibbs sampler's covariance step).
    scale_shapes : callable (d,) -> tuple of shapes
        The shapes a prior scale Ψ0 may have (it is broadcast to the covariances' shape).
    default_scale : callable (cov (d, d), style) -> Ψ0
        The data-scaled default Ψ0 before the K^(−2/d) factor, from the data covariance:
        ``style`` "default" or "mclust" (Fraley & Raftery 2007; derivation §4).
    pymc_distribution : str or None
        The prior of the covariances as a PyMC variable, built by :mod:`bayesgmm.posterior`:
        ``"InverseWishart"`` (matrix blocks), ``"InverseGamma"`` (variances) or
        ``"RestrictedInverseGamma"`` (the variances of VEI and EVI, sampled in their free log
        coordinates: derivation §4c); None where the prior restricted to the structure's set
        has no parametrisation the samplers draw (the orientation models), which they refuse.

    to_unconstrained : callable (covariances,) -> (p,)
        An unconstrained vector (log-Cholesky entries or log variances), p = n_parameters.
    from_unconstrained : callable ((p,), K, d) -> covariances
        Its inverse.
    constrained_mstep : callable ((K, d, d) | (K, d) scatters M_k, (K,) counts c_k, previous
        covariances) -> covariances, or None
        For structures whose set is a constrained subset of their kernel layout (mclust's
        volume–shape–orientation models, :mod:`bayesgmm.decomposition`): the M-step from the
        kernel's unconstrained per-component update M_k / c_k.
    """

    name: str
    dims: tuple
    per_component: bool
    shape: Callable
    n_parameters: Callable
    identity: Callable
    expand: Callable
    factor: Callable
    kernel: str
    isotropic: bool
    to_kernel: Callable
    from_kernel: Callable
    blocks: Callable
    from_blocks: Callable
    block_size: Callable
    mean_multiplicity: Callable
    pool: Callable
    scale_shapes: Callable
    default_scale: Callable
    pymc_distribution: str
    to_unconstrained: Callable
    from_unconstrained: Callable
    constrained_mstep: Callable | None = None

    def __reduce__(self):
        """Pickled by name: a row of :data:`STRUCTURES` is a singleton (its functions are
        lambdas, which pickle cannot store), so fits, priors and estimators pickle."""
        return get_structure, (self.name,)

    @property
    def conjugate(self) -> bool:
        """Each prior block is conjugate to the complete-data likelihood, so the Gibbs sampler
        draws the covariances exactly (not the constrained models of
        :mod:`bayesgmm.decomposition`)."""
        return self.constrained_mstep is None

    @property
    def matrix_valued(self) -> bool:
        """The covariances are d × d matrices (their upper triangle must match the lower)."""
        return "feature_bis" in self.dims

    def min_dof(self, d: int) -> int:
        """ν0 must exceed b − 1 for a proper inverse-Wishart on b × b blocks."""
        return self.block_size(d) - 1


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


def _shared_sd(variances: np.ndarray) -> np.ndarray:
    """Standard deviations of variances all components share (EEI, EII)."""
    variances = np.asarray(variances, dtype=float)
    if not np.all((variances > 0) & np.isfinite(variances)):
        raise SingularCovarianceError(None, "the shared covariance is singular (a variance is "
                                            "not positive)")
    return np.sqrt(variances)


def _sd(variances: np.ndarray) -> np.ndarray:
    variances = np.asarray(variances, dtype=float)
    bad = ~(variances > 0) | ~np.isfinite(variances)
    if bad.any():
        k = int(np.argwhere(bad)[0][0])
        raise SingularCovarianceError(k, _singular_message(k) + " (a variance is not positive)")
    return np.sqrt(variances)


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
        expand=lambda c, K, d: c,
        factor=lambda c: _cholesky_stack(c, list(range(len(c)))),
        kernel="dense",
        isotropic=False,
        to_kernel=lambda c, K, d: c,
        from_kernel=lambda kc, K, d: kc,
        blocks=lambda c: c,
        from_blocks=lambda b, K, d: b,
        block_size=lambda d: d,
        mean_multiplicity=lambda K, d: 1,
        pool=lambda B: B,
        scale_shapes=lambda d: ((d, d),),
        default_scale=lambda cov, style: cov,
        pymc_distribution="InverseWishart",
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
        expand=lambda c, K, d: c[None] * np.ones((K, 1, 1)),
        factor=lambda c: _cholesky_stack(c[None], [None])[0],
        kernel="dense",
        isotropic=False,
        to_kernel=lambda c, K, d: np.repeat(c[None], K, axis=0),
        from_kernel=lambda kc, K, d: kc[0],
        blocks=lambda c: c[None],
        from_blocks=lambda b, K, d: b[0],
        block_size=lambda d: d,
        mean_multiplicity=lambda K, d: K,
        pool=lambda B: B.sum(0),
        scale_shapes=lambda d: ((d, d),),
        default_scale=lambda cov, style: cov,
        pymc_distribution="InverseWishart",
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
        expand=lambda c, K, d: c[:, :, None] * np.eye(d),
        factor=_sd,
        kernel="diagonal",
        isotropic=False,
        to_kernel=lambda c, K, d: c,
        from_kernel=lambda kc, K, d: kc,
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(K, d),
        block_size=lambda d: 1,
        mean_multiplicity=lambda K, d: 1,
        pool=lambda B: np.diagonal(B, axis1=-2, axis2=-1).copy(),
        scale_shapes=lambda d: ((d,), ()),
        default_scale=_diag_scale,
        pymc_distribution="InverseGamma",
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
        expand=lambda c, K, d: c[:, None, None] * np.eye(d),
        factor=_sd,
        kernel="diagonal",
        isotropic=True,
        to_kernel=lambda c, K, d: np.repeat(c[:, None], d, axis=1),
        from_kernel=lambda kc, K, d: kc[:, 0],
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(K),
        block_size=lambda d: 1,
        mean_multiplicity=lambda K, d: d,
        pool=lambda B: np.trace(B, axis1=-2, axis2=-1),
        scale_shapes=lambda d: ((),),
        default_scale=_mean_variance,
        pymc_distribution="InverseGamma",
        to_unconstrained=lambda c: np.log(c).reshape(-1),
        from_unconstrained=lambda z, K, d: np.exp(np.asarray(z, dtype=float)).reshape(K),
    ),
    "EEI": CovarianceStructure(
        name="EEI",
        dims=("feature",),
        per_component=False,
        shape=lambda K, d: (d,),
        n_parameters=lambda K, d: d,
        identity=lambda K, d: np.ones(d),
        expand=lambda c, K, d: c[..., :, None] * np.eye(d) * np.ones((K, 1, 1)),
        factor=_shared_sd,
        kernel="diagonal",
        isotropic=False,
        to_kernel=lambda c, K, d: np.repeat(np.asarray(c)[None], K, axis=0),
        from_kernel=lambda kc, K, d: kc[0].copy(),
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(d),
        block_size=lambda d: 1,
        mean_multiplicity=lambda K, d: K,
        pool=lambda B: np.diagonal(B, axis1=-2, axis2=-1).sum(0),
        scale_shapes=lambda d: ((d,), ()),
        default_scale=_diag_scale,
        pymc_distribution="InverseGamma",
        to_unconstrained=lambda c: np.log(c).reshape(-1),
        from_unconstrained=lambda z, K, d: np.exp(np.asarray(z, dtype=float)).reshape(d),
    ),
    "EII": CovarianceStructure(
        name="EII",
        dims=(),
        per_component=False,
        shape=lambda K, d: (),
        n_parameters=lambda K, d: 1,
        identity=lambda K, d: np.ones(()),
        expand=lambda c, K, d: c * np.eye(d) * np.ones((K, 1, 1)),
        factor=_shared_sd,
        kernel="diagonal",
        isotropic=True,
        to_kernel=lambda c, K, d: np.full((K, d), float(c)),
        from_kernel=lambda kc, K, d: np.asarray(kc[0, 0]),
        blocks=lambda c: c.reshape(-1, 1, 1),
        from_blocks=lambda b, K, d: b.reshape(()),
        block_size=lambda d: 1,
        mean_multiplicity=lambda K, d: K * d,
        pool=lambda B: np.trace(B, axis1=-2, axis2=-1).sum(0),
        scale_shapes=lambda d: ((),),
        default_scale=_mean_variance,
        pymc_distribution="InverseGamma",
        to_unconstrained=lambda c: np.log(c).reshape(-1),
        from_unconstrained=lambda z, K, d: np.exp(np.asarray(z, dtype=float)).reshape(()),
    ),
}


def _decomposed(model: str) -> CovarianceStructure:
    """A volume–shape–orientation model: stored and computed like ``diag`` (orientation I) or
    ``full``, with its own parameter count, parametrisation and constrained M-step."""
    base = STRUCTURES["diag" if model in decomposition.DIAGONAL_MODELS else "full"]
    return replace(
        base, name=model,
        n_parameters=partial(decomposition.n_covariance_parameters, model),
        pymc_distribution=("RestrictedInverseGamma" if model in decomposition.DIAGONAL_MODELS
                           else None),
        to_unconstrained=partial(decomposition.to_unconstrained, model),
        from_unconstrained=partial(decomposition.from_unconstrained, model),
        constrained_mstep=partial(decomposition.constrained_mstep, model))


STRUCTURES.update({model: _decomposed(model) for model in decomposition.MODELS})

#: mclust's three-letter name of every structure (volume, shape, orientation: Equal, Variable or
#: Identity), accepted wherever a structure is named
MCLUST_NAMES = {"full": "VVV", "tied": "EEE", "diag": "VVI", "spherical": "VII",
                "EEI": "EEI", "EII": "EII", **{m: m for m in decomposition.MODELS}}
_ALIASES = {mclust: name for name, mclust in MCLUST_NAMES.items() if mclust != name}

#: every accepted name: the table's names and their mclust aliases
STRUCTURE_NAMES = tuple(STRUCTURES) + tuple(_ALIASES)


def get_structure(name: str) -> CovarianceStructure:
    """Look up a structure by name or mclust alias (``"VVV"`` is ``"full"``), with a clear error
    for unknown names."""
    try:
        return STRUCTURES[_ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance={name!r} is not a covariance structure; use one of "
            f"{list(STRUCTURES)} or mclust's names {sorted(_ALIASES)}"
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
