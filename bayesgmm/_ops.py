"""The few array operations the prior density needs, for numpy and for PyTensor.

The density functions of :mod:`bayesgmm.priors` are written once against this small namespace, so
the MAP-EM path (numpy) and the PyMC model (PyTensor) evaluate the very same expressions.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy.special import gammaln

__all__ = ["NUMPY_OPS", "pytensor_ops"]

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


def _static_size(a) -> int:
    size = a.type.shape[-1]
    if size is None:
        raise ValueError("the matrix size must be known statically (fixed d)")
    return int(size)


def pytensor_ops() -> SimpleNamespace:
    """The same operations on PyTensor tensors (imported on first use)."""
    import pytensor.tensor as pt
    from pytensor.tensor.slinalg import solve_triangular

    return SimpleNamespace(
        log=pt.log,
        sum=pt.sum,
        square=pt.square,
        gammaln=pt.gammaln,
        diagonal=lambda a: pt.diagonal(a, axis1=-2, axis2=-1),
        matrix_size=_static_size,
        solve_lower=lambda L, B: solve_triangular(L, B, lower=True),
    )
