"""PyMC distributions of covariances the library lacks, with the covariance as the value variable.

PyMC ships no inverse-Wishart; its Wishart has no transform, and a Wishart on the precision has its
mode elsewhere than the inverse-Wishart on the covariance.  Here Σ itself is the value variable:
its log density is :func:`bayesgmm.priors.invwishart_logpdf` (the one definition the MAP-EM prior
uses), and :class:`LogCholesky` maps it bijectively to unconstrained space so NUTS can sample it,
while ``compile_logp(jacobian=False)`` and ``pm.find_MAP`` see the density in Σ-space.

:func:`RestrictedInverseGamma` does the same for the variances of mclust's VEI and EVI models
(σ²_kj = λ_k a_j, resp. λ a_kj, with ∏_j a_j = 1): the inverse-gamma prior of ``diag`` evaluated
on that set, sampled through :class:`LogVolumeShape` (``docs/derivation.md`` §4c).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.slinalg import cholesky, solve_triangular
from scipy import stats

from ._compat import pymc_transform_base
from .decomposition import DIAGONAL_MODELS
from .priors import invwishart_logpdf

Transform = pymc_transform_base()

__all__ = ["InverseWishart", "LogCholesky", "NonCentred", "RestrictedInverseGamma",
           "LogVolumeShape", "pytensor_ops"]


def _static_size(a) -> int:
    size = a.type.shape[-1]
    if size is None:
        raise ValueError("the matrix size must be known statically (fixed d)")
    return int(size)


def pytensor_ops() -> SimpleNamespace:
    """:data:`bayesgmm._ops.NUMPY_OPS`' operations on PyTensor tensors."""
    return SimpleNamespace(
        log=pt.log,
        sum=pt.sum,
        square=pt.square,
        gammaln=pt.gammaln,
        diagonal=lambda a: pt.diagonal(a, axis1=-2, axis2=-1),
        matrix_size=_static_size,
        solve_lower=lambda L, B: solve_triangular(L, B, lower=True),
    )


class LogCholesky(Transform):
    """Σ (…, d, d) symmetric positive definite ↔ z (…, d(d+1)/2) unconstrained.

    z packs the lower triangle of the Cholesky factor L (Σ = L Lᵀ) row by row, with the diagonal
    on the log scale.  The map z ↦ Σ has log |Jacobian| = d log 2 + Σ_i (d − i + 2) z_ii
    (i = 1..d): d log 2 + Σ_i (d − i + 1) log L_ii for L ↦ L Lᵀ, plus Σ_i log L_ii for
    L_ii = exp(z_ii).
    """

    # no underscore: PyMC recovers variable names by splitting "<name>_<transform>__" on "_"
    name = "logcholesky"

    def __init__(self, d: int):
        self.d = int(d)
        rows, cols = np.tril_indices(self.d)
        self.rows, self.cols = rows, cols
        self.diag_positions = np.flatnonzero(rows == cols)
        # exponent of exp(z_ii) in the Jacobian: d − i + 2 for 1-based row i
        self.jacobian_weights = (self.d - np.arange(self.d) + 1).astype(float)

    def forward(self, value, *inputs):
        L = cholesky(value, lower=True, on_error="nan")
        packed = L[..., self.rows, self.cols]
        return pt.set_subtensor(packed[..., self.diag_positions],
                                pt.log(packed[..., self.diag_positions]))

    def _factor(self, value):
        entries = pt.set_subtensor(value[..., self.diag_positions],
                                   pt.exp(value[..., self.diag_positions]))
        L = pt.zeros((*tuple(value.shape)[:-1], self.d, self.d), dtype=value.dtype)
        L = pt.set_subtensor(L[..., self.rows, self.cols], entries)
        # lets PyTensor rewrite cholesky(L Lᵀ) → L, so the density's factorisations of Σ (the
        # inverse-Wishart's, the means' and the likelihood's) all reuse this factor
        L.tag.lower_triangular = True
        return L

    def backward(self, value, *inputs):
        L = self._factor(value)
        return L @ L.mT

    def log_jac_det(self, value, *inputs):
        diag = value[..., self.diag_positions]
        return self.d * np.log(2.0) + pt.sum(diag * self.jacobian_weights, axis=-1)


def _logp(value, nu, scale):
    ops = pytensor_ops()
    chol_value = cholesky(value, lower=True, on_error="nan")
    chol_scale = cholesky(scale, lower=True, on_error="nan")
    return invwishart_logpdf(chol_value, nu, chol_scale, ops)


def _random(nu, scale, rng=None, size=None):
    """Draws with scipy's invwishart; parameters broadcast over the batch ``size``."""
    nu, scale = np.asarray(nu, dtype=float), np.asarray(scale, dtype=float)
    core = scale.shape[-2:]
    size = tuple(size) if size is not None else np.broadcast_shapes(nu.shape, scale.shape[:-2])
    nu, scale = np.broadcast_to(nu, size), np.broadcast_to(scale, size + core)
    out = np.empty(size + core)
    for idx in np.ndindex(*size):
        out[idx] = stats.invwishart.rvs(df=nu[idx], scale=scale[idx], random_state=rng)
    return out


def _support_point(rv, size, nu, scale):
    """The mode Ψ / (ν + d + 1)."""
    d = scale.shape[-1]
    mode = scale / (nu + d + 1)
    return mode if rv.ndim == 2 else pt.broadcast_to(mode, rv.shape)


def InverseWishart(name: str, nu, scale, **kwargs):
    """Inverse-Wishart IW(ν, Ψ) random variable on covariance matrices (PyMC model context).

    Parameters
    ----------
    name : str
    nu : float or scalar tensor
        Degrees of freedom ν > d − 1.
    scale : array or tensor, shape (d, d)
        Ψ, symmetric positive definite (a tensor, e.g. ``pm.Data``, needs a static shape).
    **kwargs
        ``dims``, ``shape``, ``initval`` … as for any PyMC variable; leading (batch) dims give
        independent matrices, e.g. ``dims=("component", "feature", "feature_bis")``.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from bayesgmm import InverseWishart
    >>> with pm.Model():
    ...     sigma = InverseWishart("sigma", 5.0, np.eye(2))
    >>> sigma.type.ndim
    2
    """
    nu, scale = pt.as_tensor(nu, dtype="float64"), pt.as_tensor(scale, dtype="float64")
    d = _static_size(scale)
    return pm.CustomDist(name, nu, scale, logp=_logp, random=_random,
                         support_point=_support_point, signature="(),(d,d)->(d,d)",
                         transform=LogCholesky(d), **kwargs)


class NonCentred(Transform):
    """μ ↔ z = L⁻¹ (μ − m) for a MvNormal(m, L Lᵀ) whose L depends on other parameters.

    Under the normal–inverse-Wishart prior μ_k | Σ_k ~ N(m0, Σ_k/κ0) the posterior of a weakly
    supported component is a funnel in (μ_k, Σ_k); sampling z instead removes it, while μ stays
    the model's value variable (``compile_logp(jacobian=False)`` still sees the density of μ).
    log |dμ/dz| = Σ_j log L_jj.
    """

    name = "noncentred"

    @staticmethod
    def _mean_and_factor(inputs):
        mean, cov = inputs[-2], inputs[-1]
        return mean, cholesky(cov, lower=True, on_error="nan")

    def forward(self, value, *inputs):
        mean, L = self._mean_and_factor(inputs)
        return solve_triangular(L, (value - mean)[..., None], lower=True)[..., 0]

    def backward(self, value, *inputs):
        mean, L = self._mean_and_factor(inputs)
        return mean + (L @ value[..., None])[..., 0]

    def log_jac_det(self, value, *inputs):
        _, L = self._mean_and_factor(inputs)
        return pt.sum(pt.log(pt.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


class LogVolumeShape(Transform):
    """Variances σ² (K, d) of a VEI or EVI model ↔ their free log coordinates z.

    VEI: log σ²_kj = l_k + u_j, z = (l_1..l_K, u_1..u_{d−1});  EVI: log σ²_kj = l + v_kj,
    z = (l, v_k1..v_k(d−1) for each k) — the last shape coordinate of each shape is minus the sum
    of the others (∏_j a_j = 1).  ``forward`` projects any positive (K, d) array onto the set
    (least squares in log σ²), so it is the inverse of ``backward`` on the set.

    The measure NUTS samples against is Lebesgue on z times ∏_kj σ²_kj: the log-Jacobian is
    Σ_kj log σ²_kj (d Σ_k l_k, resp. K d l).  With K = 1 the set is all of (0, ∞)^d, z is a
    linear image of log σ², and this is Lebesgue measure on the variances (up to a constant)
    — the measure of ``diag``'s inverse-gamma prior (``docs/derivation.md`` §4c).
    """

    name = "logvolumeshape"

    def __init__(self, model: str, K: int, d: int):
        if model not in DIAGONAL_MODELS:
            raise ValueError(f"LogVolumeShape is for the models {DIAGONAL_MODELS}, not {model!r}")
        # VEI: a volume per component and one shape; EVI: one volume and a shape per component
        self.volume_varies = model[0] == "V"
        self.K, self.d = int(K), int(d)

    def forward(self, value, *inputs):
        s = pt.log(value)
        if self.volume_varies:
            volumes = s.mean(axis=1)
            shape = (s - volumes[:, None]).mean(axis=0)
            return pt.concatenate([volumes, shape[:-1]])
        volume = s.mean()
        shapes = s - s.mean(axis=1, keepdims=True)
        return pt.concatenate([volume[None], shapes[:, :-1].ravel()])

    def _log_variances(self, value):
        K, d = self.K, self.d
        if self.volume_varies:
            volumes, free = value[:K], value[K:]
            shape = pt.concatenate([free, -free.sum(keepdims=True)])
            return volumes[:, None] + shape[None, :]
        free = value[1:].reshape((K, d - 1))
        shapes = pt.concatenate([free, -free.sum(axis=1, keepdims=True)], axis=1)
        return value[0] + shapes

    def backward(self, value, *inputs):
        return pt.exp(self._log_variances(value))

    def log_jac_det(self, value, *inputs):
        if self.volume_varies:
            return self.d * value[:self.K].sum()
        return self.K * self.d * value[0]


def _restricted_logp(value, alpha, beta):
    return pm.logp(pm.InverseGamma.dist(alpha=alpha, beta=beta), value).sum(axis=(-2, -1))


def _no_direct_draws(alpha, beta, rng=None, size=None):
    raise NotImplementedError(
        "the VEI/EVI prior (inverse gammas restricted to the model's variances) has no direct "
        "sampler: draw it by MCMC instead, e.g. pm.sample on bg.build_model(X, K, covariance, "
        "prior, likelihood=False)")


def RestrictedInverseGamma(name: str, model: str, alpha, beta, **kwargs):
    """∏_kj IG(σ²_kj | α, β_kj) on the variances (K, d) of a VEI or EVI model (PyMC context).

    The density is ``diag``'s inverse-gamma prior evaluated on the model's set, against the
    measure :class:`LogVolumeShape` states; it is proper there (α > 0, β > 0: derivation
    §4c) but its normaliser is not known in closed form, so it has no direct random draws
    (prior draws: MCMC on the prior-only model).

    Parameters
    ----------
    name : str
    model : {"VEI", "EVI"}
    alpha : float or scalar tensor
        α = ν0 / 2 > 0.
    beta : array or tensor, shape (K, d)
        β = ψ0 / 2 > 0, static shape.
    **kwargs
        ``dims`` … as for any PyMC variable; no batch dims.

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> from bayesgmm.distributions import RestrictedInverseGamma
    >>> with pm.Model() as m:
    ...     v = RestrictedInverseGamma("v", "VEI", 2.0, np.ones((3, 2)))
    >>> m.initial_point()["v_logvolumeshape__"].shape    # 3 volumes and 1 free shape entry
    (4,)
    """
    alpha, beta = pt.as_tensor(alpha, dtype="float64"), pt.as_tensor(beta, dtype="float64")
    K, d = (int(n) for n in beta.type.shape)
    transform = LogVolumeShape(model, K, d)
    return pm.CustomDist(name, alpha, beta, logp=_restricted_logp, random=_no_direct_draws,
                         support_point=lambda rv, size, a, b: transform.backward(
                             transform.forward(b / (a + 1))),
                         signature="(),(k,d)->(k,d)", transform=transform, **kwargs)
