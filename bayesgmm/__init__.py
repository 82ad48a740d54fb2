"""bayesgmm — Bayesian Gaussian mixture models.

One model (Dirichlet weights, normal–inverse-Wishart means and covariances, Gaussian components)
and two inference paths over the same density: MAP-EM (:func:`fit_map`) and, in later modules,
the full posterior in PyMC.  ``import bayesgmm`` imports numpy, scipy and xarray-free code only.
"""

from .covariance import STRUCTURES
from .datasets import load_dataset
from .em import ConvergenceWarning, MixtureParams, fit_map
from .priors import GMMPrior, default_prior
from .result import MixtureFit, load

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "GMMPrior",
    "MAPGaussianMixture",
    "MixtureFit",
    "MixtureParams",
    "STRUCTURES",
    "default_prior",
    "fit_map",
    "load",
    "load_dataset",
]


def __getattr__(name):
    # scikit-learn is optional: the estimator wrapper loads on first use
    if name == "MAPGaussianMixture":
        from .estimator import MAPGaussianMixture

        return MAPGaussianMixture
    raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")
