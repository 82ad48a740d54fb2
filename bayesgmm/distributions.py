"""An inverse-Wishart distribution for PyMC, with the covariance matrix as the value variable.

PyMC ships no inverse-Wishart; its Wishart has no transform, and a Wishart on the precision has its
mode elsewhere than the inverse-Wishart on the covariance.  Here Σ itself is the value variable:
its log density is :func:`bayesgmm.priors.invwishart_logpdf` (the one definition the MAP-EM prior
uses), and :class:`LogCholesky` maps it bijectively to unconstrained space so NUTS can sample it,
while ``compile_logp(jacobian=False)`` and ``pm.find_MAP`` see the density in Σ-space.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.slinalg import cholesky, solve_triangular
from scipy import stats

from ._compat import pymc_transform_base
from .priors import invwishart_logpdf

Transform = pymc_transform_base()

__all__ = ["InverseWishart", "LogCholesky", "NonCentred", "pytensor_ops"]


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
