"""The few array operations the prior density needs, as a namespace (here: numpy's).

The density functions of :mod:`bayesgmm.priors` are written once against such a namespace, so
the MAP-EM path (this one, numpy) and the PyMC model (the same operations on PyTensor tensors,
:func:`bayesgmm.distributions.pytensor_ops`) evaluate the very same expressions.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy.special import gammaln

__all__ = ["NUMPY_OPS"]

NUMPY_OPS = SimpleNamespace(
    log=np.log,
    sum=np.sum,
    square=np.square,
    gammaln=gammaln,
    diagonal=lambda a: np.diagonal(a, axis1=-2, axis2=-1),
    matrix_size=lambda a: a.shape[-1],
    # L⁻¹ B for lower-triangular L, batched over leading axes (b is tiny: 1 … d)
    solve_lower=lambda L, B: np.linalg.solve(L, B),
)
