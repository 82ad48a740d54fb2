"""The conjugate prior: Dirichlet weights, normal–inverse-Wishart means and covariances.

This module is the single written-down definition of the prior density (DESIGN §2); both the
MAP-EM path and the PyMC path evaluate it through :meth:`GMMPrior.logpdf`.

    π ~ Dirichlet(α)
    Σ-block ~ InvWishart(ν0, Ψ0-block)        (blocks per structure: :mod:`bayesgmm.covariance`)
    μ_k | Σ_k ~ Normal(m0, Σ_k / κ0)          (κ0 = 0: flat, improper prior on μ_k)
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.special import gammaln, xlogy

from ._ops import NUMPY_OPS
from ._validation import (
    check_data,
    check_magnitude,
    check_n_components,
    check_sample_weight,
    check_spd,
    check_symmetric,
    column_moments,
    feature_names_of,
    power_of_two,
    readonly_array,
)
from .covariance import STRUCTURES, get_structure

__all__ = ["GMMPrior", "default_prior", "adjust_prior", "power_scale", "resolve_prior",
           "posterior_model_inputs",
           "dirichlet_logpdf", "invwishart_logpdf", "HYPERPARAMETERS"]

#: the hyperparameters :func:`adjust_prior` sets: a new value, or for ``scale`` a multiplier on Ψ0
HYPERPARAMETERS = ("shrinkage", "dof", "scale", "mean", "concentration")

_LOG_2PI = np.log(2.0 * np.pi)


def _positive_scalar(value, name: str, *, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or (value <= 0 if strict else value < 0):
        bound = "> 0" if strict else "≥ 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


@dataclass(frozen=True, eq=False)
class GMMPrior:
    """Conjugate prior for a Gaussian mixture (immutable, validated on construction).

    Parameters
    ----------
    mean : array-like, shape (d,)
        m0, the prior mean of every component mean.
    shrinkage : float
        κ0 ≥ 0; μ_k | Σ_k ~ N(m0, Σ_k/κ0).  κ0 = 0 is a flat (improper) prior on the means.
    dof : float
        ν0, the inverse-Wishart degrees of freedom: ν0 > d − 1 for ``full``/``tied`` and ν0 > 0
        for ``diag``/``spherical`` (whose variances are IG(ν0/2, ψ0/2)).
    scale : array-like
        Ψ0: (d, d) symmetric positive definite for ``full``/``tied``, (d,) or a scalar for
        ``diag``, a scalar for ``spherical``; positive.
    concentration : float or array-like, shape (K,)
        α, the Dirichlet concentration; MAP-EM needs α_k ≥ 1.
    covariance : {"full", "tied", "diag", "spherical"}, optional
        The structure this prior is for.  Inferred from ``scale`` when omitted: 2-D → "full",
        1-D → "diag", scalar → "spherical".

    Notes
    -----
    ``logpdf`` is the normalised log density (every normalising constant included), so that
    ``log p(x | θ) + prior.logpdf(θ)`` is the log posterior density up to log p(x) only.

    Examples
    --------
    >>> import numpy as np, bayesgmm as bg
    >>> prior = bg.GMMPrior(mean=np.zeros(2), shrinkage=0.01, dof=4, scale=np.eye(2))
    >>> prior.covariance
    'full'
    """

    mean: np.ndarray
    shrinkage: float
    dof: float
    scale: np.ndarray
    concentration: np.ndarray | float = 1.0
    covariance: str | None = None
    _structure: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        mean = readonly_array(np.atleast_1d(np.asarray(self.mean, dtype=float)))
        if mean.ndim != 1 or mean.size == 0 or not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be a finite 1-D array of length d, got shape {mean.shape}")
        d = mean.size
        scale = readonly_array(self.scale)
        if scale.ndim in (1, 2) and scale.shape[-1] != d:
            raise ValueError(
                f"mean has length {d} but scale has shape {scale.shape}: both must be for the "
                f"same number of features (scale {(d, d)} or {(d,)} for a mean of length {d})")
        covariance = self.covariance
        if covariance is None:
            covariance = {2: "full", 1: "diag", 0: "spherical"}.get(scale.ndim)
            if covariance is None:
                raise ValueError(f"scale must be (d, d), (d,) or a scalar, got shape {scale.shape}")
        structure = get_structure(covariance)
        self._check_scale(scale, structure, d)
        shrinkage = _positive_scalar(self.shrinkage, "shrinkage", strict=False)
        dof = _positive_scalar(self.dof, "dof", strict=False)
        min_dof = structure.min_dof(d)
        if not dof > min_dof:
            raise ValueError(
                f"dof must exceed {min_dof} for a {structure.name!r} prior in d={d} dimensions "
                f"(got {dof}); the data-scaled default is d + 2 = {d + 2}"
            )
        alpha = np.asarray(self.concentration, dtype=float)
        if alpha.ndim > 1 or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise ValueError("concentration must be a positive scalar or a 1-D array of length K")
        alpha = float(alpha) if alpha.ndim == 0 else readonly_array(alpha)
        for name, value in [("mean", mean), ("scale", scale), ("shrinkage", shrinkage),
                            ("dof", dof), ("concentration", alpha), ("covariance", structure.name),
                            ("_structure", structure)]:
            object.__setattr__(self, name, value)

    @staticmethod
    def _check_scale(scale: np.ndarray, structure, d: int) -> None:
        allowed = structure.scale_shapes(d)
        if scale.shape not in allowed:
            raise ValueError(
                f"scale for a {structure.name!r} prior in d={d} dimensions must have shape "
                f"{' or '.join(map(str, allowed))}, got {scale.shape}"
            )
        if not np.all(np.isfinite(scale)):
            raise ValueError("scale must be finite")
        if scale.ndim == 2:
            check_spd(scale, "scale")
        elif np.any(scale <= 0):
            raise ValueError("scale must be positive")

    # ------------------------------------------------------------------ properties
    @property
    def n_features(self) -> int:
        """d, the dimension this prior is for."""
        return self.mean.size

    def concentration_for(self, n_components: int) -> np.ndarray:
        """α as a (K,) array; raises if a length-K concentration has another length."""
        alpha = np.asarray(self.concentration, dtype=float)
        if alpha.ndim == 0:
            return np.full(n_components, float(alpha))
        if alpha.size != n_components:
            raise ValueError(
                f"the prior's concentration has length {alpha.size} but n_components="
                f"{n_components}"
            )
        return alpha

    def block_scales(self, n_components: int) -> np.ndarray:
        """Ψ0 per inverse-Wishart block, shape (B, b, b) (see :mod:`bayesgmm.covariance`)."""
        s = self._structure
        return s.blocks(np.broadcast_to(self.scale, s.shape(n_components, self.n_features)))

    def check_compatible(self, n_components: int, n_features: int, covariance: str) -> None:
        """Raise a clear error unless this prior fits a (K, d, structure) model."""
        if self.n_features != n_features:
            raise ValueError(
                f"the prior is for d={self.n_features} features but the data have {n_features}"
            )
        if self.covariance != covariance:
            raise ValueError(
                f"the prior was built for covariance={self.covariance!r} but the model uses "
                f"covariance={covariance!r}; build it with default_prior(X, K, "
                f"covariance={covariance!r}) or GMMPrior(..., covariance={covariance!r})"
            )
        self.concentration_for(n_components)

    def rescaled(self, center, scale: float) -> "GMMPrior":
        """The same prior in coordinates z = (x − center) / scale.

        m0 → (m0 − center)/scale and Ψ0 → Ψ0/scale² (κ0, ν0 and α unchanged): the distribution of
        the transformed parameters, so its density differs from this one's only by the Jacobian
        of the change (:meth:`bayesgmm.estep.Coordinates.log_prior_offset`).  Raises a ValueError
        naming the magnitude if the prior is so far from the data's scale that float64 cannot
        hold the squares the M-step forms.
        """
        mean = (self.mean - np.asarray(center, dtype=float)) / scale
        check_magnitude(float(np.abs(mean).max()) or 0.0,
                        "the prior mean's distance from the data's centre, in data spreads,")
        scale2 = np.asarray(self.scale) / (scale * scale)
        variances = np.diag(scale2) if scale2.ndim == 2 else scale2
        check_magnitude(float(np.sqrt(np.mean(variances))),
                        "the prior scale's spread relative to the data's (√(Ψ0 / data variance))")
        # a positive multiple of a validated prior's scale needs no new checks
        rescaled = object.__new__(GMMPrior)
        for name, value in [("mean", readonly_array(mean)), ("scale", readonly_array(scale2))]:
            object.__setattr__(rescaled, name, value)
        for name in ("shrinkage", "dof", "concentration", "covariance", "_structure"):
            object.__setattr__(rescaled, name, getattr(self, name))
        return rescaled

    # ------------------------------------------------------------------ density
    @cached_property
    def _scale_factor(self) -> np.ndarray:
        """Cholesky factor of Ψ0 (standard deviations for a scalar or per-coordinate scale)."""
        return np.linalg.cholesky(self.scale) if self.scale.ndim == 2 else np.sqrt(self.scale)

    def logpdf(self, weights, means, covariances) -> float:
        """Normalised log prior density log p(π) + log p(Σ) + log p(μ | Σ).

        Parameters
        ----------
        weights : array-like, shape (K,)
        means : array-like, shape (K, d)
        covariances : array-like
            In this prior's structure: (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.

        Returns
        -------
        float
            −inf outside the support (weights off the simplex, covariances not SPD).

        Examples
        --------
        >>> import numpy as np, bayesgmm as bg
        >>> prior = bg.GMMPrior(mean=np.zeros(2), shrinkage=0.01, dof=4, scale=np.eye(2))
        >>> round(prior.logpdf([0.5, 0.5], np.zeros((2, 2)), np.stack([np.eye(2)] * 2)), 3)
        -21.334
        """
        terms = self.log_prior_terms(weights, means, covariances)
        return float(sum(np.sum(t) for t in terms.values()))

    def log_prior_terms(self, weights, means, covariances) -> dict:
        """The log prior density split by parameter, as PyMC's ``log_prior`` group splits it.

        Parameters
        ----------
        weights, means, covariances
            As for :meth:`logpdf`, or stacks of S parameter sets along a leading axis
            (weights (S, K), means (S, K, d), covariances (S, …)): every draw of a posterior in
            one vectorised evaluation.

        Returns
        -------
        dict
            ``weights``: log Dirichlet(π | α); ``covariances``: log IW(Σ_b | ν0, Ψ0_b) per
            inverse-Wishart block, shaped as the covariances without their matrix axes (full
            (K,), tied (), diag (K, d), spherical (K,)); ``means``: log N(μ_k | m0, Σ_k/κ0) per
            component, (K,) (zeros for the flat prior κ0 = 0) — each with the leading (S,) of a
            stack.  Outside the support the weights' or covariances' entry is −inf.
        """
        s = self._structure
        weights = np.asarray(weights, dtype=float)
        means = np.asarray(means, dtype=float)
        covariances = np.asarray(covariances, dtype=float)
        single = means.ndim == 2
        if single:
            weights, means, covariances = weights[None], means[None], covariances[None]
        S, K, d = means.shape if means.ndim == 3 else (0, 0, 0)
        if (means.ndim != 3 or covariances.shape != (S,) + s.shape(K, d)
                or weights.shape != (S, K) or d != self.n_features):
            raise ValueError(
                f"expected weights {(K,)}, means {(K, self.n_features)} and {s.name} covariances "
                f"{s.shape(K, self.n_features)} (or stacks of them); got {weights.shape[1:]}, "
                f"{means.shape[1:]}, {covariances.shape[1:]}")
        if s.matrix_valued:  # the upper triangle must agree, not be ignored
            check_symmetric(covariances, "covariances")
        block_shape = s.shape(K, d)[:-2] if s.matrix_valued else s.shape(K, d)
        # log p(π) = log Dirichlet(π | α)
        terms = {"weights": dirichlet_logpdf(weights, self.concentration_for(K)),
                 "means": np.zeros((S, K))}
        # log p(Σ) = Σ_blocks log IW(Σ_block | ν0, Ψ0_block)                (derivation eq. 4.0)
        blocks = np.stack([s.blocks(c) for c in covariances])                    # (S, B, b, b)
        factor, ok = _block_factors(blocks)
        scale_factor = s.blocks(np.broadcast_to(self._scale_factor, s.shape(K, d)))
        iw = invwishart_logpdf(factor, self.dof, scale_factor[None])
        terms["covariances"] = np.where(ok, iw, -np.inf).reshape((S,) + block_shape)
        # log p(μ | Σ) = Σ_k log N(μ_k | m0, Σ_k / κ0)           (omitted for κ0 = 0, flat prior)
        if self.shrinkage > 0:
            dense = np.stack([s.expand(c, K, d) for c in covariances])          # (S, K, d, d)
            valid = ok.all(axis=1)
            dense[~valid] = np.eye(d)  # draws off the support: −inf from their covariances
            L = np.linalg.cholesky(dense)
            y = np.linalg.solve(L, (means - self.mean)[..., None])[..., 0]
            log_det = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
            terms["means"] = (0.5 * d * (np.log(self.shrinkage) - _LOG_2PI) - 0.5 * log_det
                              - 0.5 * self.shrinkage * np.einsum("skd,skd->sk", y, y))
        if single:
            terms = {name: value[0] for name, value in terms.items()}
            terms["weights"] = float(terms["weights"])
        return terms


def _block_factors(blocks: np.ndarray):
    """Cholesky factors of (S, B, b, b) blocks (standard deviations for b = 1) and which
    blocks are positive definite (S, B); a block that is not gets the identity factor."""
    b = blocks.shape[-1]
    if b == 1:
        ok = (blocks[..., 0, 0] > 0) & np.isfinite(blocks[..., 0, 0])
        return np.sqrt(np.where(ok[..., None, None], blocks, 1.0)), ok
    try:
        factor = np.linalg.cholesky(blocks)
        ok = np.all(np.diagonal(factor, axis1=-2, axis2=-1) > 0, axis=-1)
    except np.linalg.LinAlgError:
        ok = np.array([[bool(np.all(np.linalg.eigvalsh(m) > 0)) and np.all(np.isfinite(m))
                        for m in draw] for draw in blocks])
        factor = np.linalg.cholesky(np.where(ok[..., None, None], blocks, np.eye(b)))
    return factor, ok & np.isfinite(factor).all(axis=(-2, -1))


def dirichlet_logpdf(weights: np.ndarray, alpha: np.ndarray):
    """log Dirichlet(π | α), −inf off the simplex; π_k = 0 is allowed where α_k = 1.

    Parameters
    ----------
    weights : ndarray, shape (..., K)
    alpha : ndarray, shape (K,)

    Returns
    -------
    float, or ndarray of the leading shape
    """
    weights = np.asarray(weights, dtype=float)
    on_simplex = np.all(weights >= 0, axis=-1) & np.isclose(weights.sum(-1), 1.0, rtol=0,
                                                           atol=1e-10)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (gammaln(alpha.sum()) - gammaln(alpha).sum()
                 + xlogy(alpha - 1.0, np.where(weights >= 0, weights, 1.0)).sum(-1))
    value = np.where(on_simplex, value, -np.inf)
    return float(value) if value.ndim == 0 else value


def multigammaln(a, b: int, ops=NUMPY_OPS):
    """log Γ_b(a) = b(b−1)/4 log π + Σ_{j=1..b} log Γ(a + (1 − j)/2)."""
    return b * (b - 1) / 4.0 * np.log(np.pi) + sum(ops.gammaln(a + 0.5 * (1 - j))
                                                     for j in range(1, b + 1))


def invwishart_logpdf(cov_factor, dof, scale_factor, ops=NUMPY_OPS):
    """log IW(Σ | ν, Ψ) from Cholesky factors, batched over leading axes.

    log IW = ν/2 log|Ψ| − νb/2 log 2 − log Γ_b(ν/2) − (ν+b+1)/2 log|Σ| − ½ tr(Ψ Σ⁻¹),
    with log|Σ| = 2 Σ log diag L_Σ and tr(Ψ Σ⁻¹) = ‖L_Σ⁻¹ L_Ψ‖²_F (no inverse is formed).
    Written once against ``ops`` (numpy or PyTensor): the MAP-EM prior and the PyMC
    :class:`~bayesgmm.distributions.InverseWishart` both evaluate this function.

    Parameters
    ----------
    cov_factor, scale_factor : array, shape (..., b, b)
        Lower Cholesky factors of Σ and Ψ (b = 1: standard deviations of IG(ν/2, ψ/2) variates).
    dof : float or tensor
    ops : namespace
        :data:`bayesgmm._ops.NUMPY_OPS` or :func:`bayesgmm.distributions.pytensor_ops`.

    Returns
    -------
    array, shape (...)
    """
    b = ops.matrix_size(cov_factor)
    log_det_cov = 2.0 * ops.sum(ops.log(ops.diagonal(cov_factor)), axis=-1)
    log_det_scale = 2.0 * ops.sum(ops.log(ops.diagonal(scale_factor)), axis=-1)
    trace = ops.sum(ops.square(ops.solve_lower(cov_factor, scale_factor)), axis=(-2, -1))
    return (0.5 * dof * log_det_scale - 0.5 * dof * b * np.log(2.0)
            - multigammaln(0.5 * dof, b, ops) - 0.5 * (dof + b + 1) * log_det_cov - 0.5 * trace)


def _data_covariance(X: np.ndarray, sample_weight: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Column means and cov(X) (n − 1 denominator), made positive definite when the data do not
    span R^d.

    With sample weights the moments are weighted, the weights read as frequencies: the mean
    Σ w x / Σ w and the covariance Σ w (x − x̄)(x − x̄)ᵀ / (Σ w − 1), so that integer weights
    give exactly what the rows repeated give.  Weights summing to at most 1 (normalised weights)
    are not frequencies; their covariance divides by Σ w.
    The covariance is computed on X centred and divided by a power of two near its spread, so
    it is accurate at any magnitude whose square float64 holds (else a ValueError names it).
    Returns the mean, the covariance and the number of rows with positive weight.
    """
    n, d = X.shape
    center, spread = column_moments(X)
    check_magnitude(spread, "the data's spread (root mean column variance)")
    s = power_of_two(spread) if spread > 0 else 1.0
    Z = (X - center) / s
    if sample_weight is None:
        cov = np.atleast_2d(np.cov(Z, rowvar=False)) * (s * s)
    else:
        total = float(sample_weight.sum())
        u = sample_weight / power_of_two(sample_weight.max())  # exact; Σ u z stays finite
        shift = u @ Z / u.sum()
        centred = Z - shift
        scatter = (centred * u[:, None]).T @ centred * (total / u.sum())
        cov = np.atleast_2d(scatter / (total - 1.0 if total > 1.0 else total)) * (s * s)
        center = center + s * shift
        n = int(np.count_nonzero(sample_weight))
    return center, cov, n


def _prior_covariance(cov: np.ndarray, n: int) -> np.ndarray:
    """The data covariance a prior scale can be built from.

    With n ≤ d only the diagonal is kept, as mclust does.  Constant or collinear columns leave
    the covariance singular, and a prior scale built from it would let a component collapse onto
    that subspace; a ridge of 10⁻³ × the mean variance is then added to the diagonal (with a
    warning), so every posterior covariance stays positive definite.
    """
    d = cov.shape[0]
    if n <= d:
        cov = np.diag(np.diag(cov))
    mean_var = np.trace(cov) / d
    if not mean_var > 0:
        raise ValueError("every column of X is constant; a data-scaled prior needs some spread")
    eigvals = np.linalg.eigvalsh(cov)
    if eigvals[0] <= 1e-10 * eigvals[-1]:
        constant = np.flatnonzero(np.diag(cov) <= 1e-10 * mean_var)
        what = (f"constant column(s) {constant.tolist()}" if constant.size
                else "collinear columns")
        warnings.warn(
            f"the data covariance is singular ({what}); the default prior adds "
            f"1e-3 × the mean variance ({1e-3 * mean_var:.3g}) to its diagonal", UserWarning,
            stacklevel=4)
        cov = cov + 1e-3 * mean_var * np.eye(d)
    return cov


def prior_from_moments(center, cov, n_samples: int, n_components: int,
                       covariance: str = "full", style: str = "default") -> GMMPrior:
    """:func:`default_prior` from the data's moments (mean, covariance with the n − 1
    denominator, number of rows), for data that are not in memory (e.g. a Dask array).

    Returns
    -------
    GMMPrior
    """
    structure = get_structure(covariance)
    if style not in ("default", "mclust"):
        raise ValueError(f"style must be 'default' or 'mclust', got {style!r}")
    if n_samples < 2:
        raise ValueError("a data-scaled prior needs at least 2 samples to estimate a covariance "
                         f"(got n_samples = {n_samples})")
    cov = _prior_covariance(np.atleast_2d(np.asarray(cov, dtype=float)), n_samples)
    d = cov.shape[0]
    scale = structure.default_scale(cov, style) * n_components ** (-2.0 / d)
    return GMMPrior(mean=np.asarray(center, dtype=float), shrinkage=0.01, dof=d + 2,
                    scale=scale, concentration=1.0, covariance=structure.name)


def default_prior(X, n_components: int, covariance: str = "full", style: str = "default", *,
                  sample_weight=None) -> GMMPrior:
    """The data-scaled default prior of Fraley & Raftery (2007), as mclust's ``priorControl()``.

    κ0 = 0.01, m0 = column means, ν0 = d + 2, α = 1, and Ψ0 = cov(X) / K^(2/d) (n − 1
    denominator) for ``full``/``tied``.  For ``diag``, ``style="default"`` uses one scale per
    coordinate, ψ0_j = var_j / K^(2/d); ``style="mclust"`` uses mclust's single scalar, the mean
    variance tr(cov X)/d / K^(2/d), for every coordinate.  ``spherical`` has one variance per
    component, so its ψ0 is that scalar in both styles.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int
    covariance : {"full", "tied", "diag", "spherical"}
    style : {"default", "mclust"}
    sample_weight : array-like, shape (n_samples,), optional
        Frequency weights: the mean and covariance are weighted, and integer weights give the
        prior of the rows repeated.

    Returns
    -------
    GMMPrior

    Examples
    --------
    >>> import bayesgmm as bg
    >>> prior = bg.default_prior(bg.load_dataset("faithful"), 2, "full")
    >>> prior.shrinkage, prior.dof, prior.scale.shape
    (0.01, 4.0, (2, 2))
    """
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    w = check_sample_weight(sample_weight, n)
    if style not in ("default", "mclust"):
        raise ValueError(f"style must be 'default' or 'mclust', got {style!r}")
    if n < 2:
        raise ValueError("a data-scaled prior needs at least 2 samples to estimate a covariance "
                         f"(got n_samples = {len(X)})")
    center, cov, rows = _data_covariance(X, w)
    return prior_from_moments(center, cov, rows, K, structure.name, style)


def adjust_prior(prior: GMMPrior, setting: dict) -> GMMPrior:
    """``prior`` with some hyperparameters changed (validated like any prior).

    Parameters
    ----------
    prior : GMMPrior
    setting : dict
        Name -> value for any of :data:`HYPERPARAMETERS`: ``shrinkage``, ``dof`` and
        ``concentration`` (a scalar or a length-K vector) replace the prior's value, ``mean``
        replaces m0 with a (d,) vector, and ``scale`` is a positive multiplier on Ψ0.

    Returns
    -------
    GMMPrior
        A new, validated prior (``prior`` is unchanged).

    Examples
    --------
    >>> import bayesgmm as bg
    >>> prior = bg.default_prior(bg.load_dataset("faithful"), 2)
    >>> stronger = bg.adjust_prior(prior, {"shrinkage": 1.0, "scale": 2.0})
    >>> stronger.shrinkage, bool((stronger.scale == 2 * prior.scale).all())
    (1.0, True)
    """
    unknown = [name for name in setting if name not in HYPERPARAMETERS]
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; use any of {HYPERPARAMETERS}")
    fields = {name: getattr(prior, name) for name in HYPERPARAMETERS}
    for name, value in setting.items():
        value = np.asarray(value, dtype=float)
        if name == "mean" and value.shape != (prior.n_features,):
            raise ValueError(f"a prior mean must have length d={prior.n_features} (one entry per "
                             f"feature), got shape {value.shape}")
        if name == "scale":
            if value.ndim or not value > 0:
                raise ValueError(f"the scale multiplier must be a positive number, got {value}")
            value = np.asarray(prior.scale) * value
        fields[name] = float(value) if value.ndim == 0 and name != "scale" else value
    return GMMPrior(**fields, covariance=prior.covariance)


def resolve_prior(prior, X: np.ndarray, n_components: int, covariance: str,
                  allow_none: bool = True, sample_weight=None) -> GMMPrior | None:
    """A validated prior for a (K, d, covariance) model from a :class:`GMMPrior`, a
    :func:`default_prior` style name ("default", "mclust"; weighted moments with
    ``sample_weight``) or None (no prior)."""
    if isinstance(prior, str):
        return default_prior(X, n_components, covariance, style=prior,
                             sample_weight=sample_weight)
    if prior is None:
        if not allow_none:
            raise ValueError("the full posterior needs a proper prior: pass a GMMPrior, "
                             "'default' or 'mclust' (prior=None is maximum likelihood)")
        return None
    if not isinstance(prior, GMMPrior):
        raise TypeError(f"prior must be a GMMPrior, 'default', 'mclust' or None, got {prior!r}")
    prior.check_compatible(n_components, X.shape[1], covariance)
    return prior


def posterior_model_inputs(X, n_components: int, covariance: str, prior):
    """The validated inputs of a full-posterior model (both samplers and the PyMC model).

    Returns
    -------
    (X, features, K, structure, prior)
        X a float64 (N, d) array, the feature names (a DataFrame's columns, else x0, x1, …),
        K, the :class:`~bayesgmm.covariance.CovarianceStructure` and a proper
        :class:`GMMPrior` for them.
    """
    names = feature_names_of(X)
    X = check_data(X)
    K = check_n_components(n_components, len(X))
    structure = get_structure(covariance)
    if structure.pymc_distribution is None:
        supported = [name for name, s in STRUCTURES.items() if s.pymc_distribution]
        raise ValueError(
            f"the full posterior is not available for covariance={structure.name!r}: its prior "
            "is the normal–inverse-Wishart restricted to matrices with a constrained "
            "orientation, which the samplers do not parametrise; use one of "
            f"{supported} (MAP-EM, model selection and the prior studies on the EM path "
            f"support {structure.name!r})")
    prior = resolve_prior(prior, X, K, structure.name, allow_none=False)
    return X, names or tuple(f"x{j}" for j in range(X.shape[1])), K, structure, prior


def power_scale(prior: GMMPrior, a: float, n_components: int | None = None) -> GMMPrior:
    """The conjugate prior proportional to p(θ)^a (derivation §6).

    Every factor stays in its family: Dirichlet α → a(α − 1) + 1; each inverse-Wishart block of
    size b keeps its Ψ0 → aΨ0, and the det Σ exponents of the block's inverse-Wishart and of
    the m mean priors it carries ((det Σ)^(−1/2) each when κ0 > 0) scale together:
    ν0 → a(ν0 + b + 1 + δm) − (b + 1 + δm), with κ0 → aκ0 and m0 unchanged.  For ``full`` that is
    ν0 → a(ν0 + d + 2) − d − 2; for ``tied`` m = K, so ``n_components`` is needed when κ0 > 0.

    Parameters
    ----------
    prior : GMMPrior
    a : float
        The power, > 0; a = 1 returns an equal prior.
    n_components : int, optional
        K; required for a tied prior with κ0 > 0.

    Returns
    -------
    GMMPrior
        log density = a · prior.logpdf(θ) + a constant.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> prior = bg.default_prior(bg.load_dataset("faithful"), 2)
    >>> bg.power_scale(prior, 2.0).shrinkage     # p(θ)² is conjugate again: κ0 doubles
    0.02
    """
    if not isinstance(prior, GMMPrior):
        raise TypeError(f"power_scale needs a GMMPrior (e.g. fit.prior or bg.default_prior(...)), "
                        f"got {type(prior).__name__}")
    if isinstance(a, bool) or not isinstance(a, numbers.Real) or not np.isfinite(a) or a <= 0:
        raise ValueError(f"the power a must be a positive finite number, got {a!r}")
    s = prior._structure
    d = prior.n_features
    if not s.per_component and prior.shrinkage > 0 and n_components is None:
        raise ValueError(f"power-scaling a {s.name!r} prior with κ0 > 0 needs n_components (its "
                         "K mean priors share one covariance)")
    m = s.mean_multiplicity(n_components or 1, d) if prior.shrinkage > 0 else 0
    keep = s.block_size(d) + 1 + m
    dof = a * (prior.dof + keep) - keep
    try:
        return GMMPrior(mean=prior.mean, shrinkage=a * prior.shrinkage, dof=dof,
                        scale=a * np.asarray(prior.scale),
                        concentration=a * (np.asarray(prior.concentration) - 1.0) + 1.0,
                        covariance=s.name)
    except ValueError as exc:
        raise ValueError(f"power-scaling by a={a} gives an invalid prior: {exc}") from None
