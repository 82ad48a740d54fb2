"""bayesgmm — Bayesian Gaussian mixture models.

One model (Dirichlet weights, normal–inverse-Wishart means and covariances, Gaussian components)
and two inference paths over the same density: MAP-EM (:func:`fit_map`) and the full posterior in
PyMC (:func:`build_model`, :func:`sample_posterior`).  ``import bayesgmm`` does not import PyMC.
"""

from .covariance import STRUCTURES
from .datasets import load_dataset
from .em import ConvergenceWarning, fit_map
from .estep import MixtureParams
from .priors import GMMPrior, adjust_prior, default_prior, power_scale
from .result import MixtureFit, load
from .spec import StudySpec, load_spec

__version__ = "0.1.0"

#: the covariance structures' names (scikit-learn's; mclust's VVV, EEE, VVI, VII)
COVARIANCE_TYPES = tuple(STRUCTURES)

__all__ = [
    "ConvergenceWarning",
    "GMMPrior",
    "InverseWishart",
    "MAPGaussianMixture",
    "MixtureFit",
    "MixtureParams",
    "COVARIANCE_TYPES",
    "build_model",
    "compare",
    "relabel",
    "adjust_prior",
    "default_prior",
    "fit_map",
    "load",
    "load_dataset",
    "load_spec",
    "StudySpec",
    "run_study",
    "write_report",
    "power_scale",
    "prior_sweep",
    "select_model",
    "ModelSelection",
    "posterior_sweep",
    "em_sensitivity",
    "mcmc_sensitivity",
    "sensitivity_report",
    "sweep_summary",
    "sample_posterior",
    "SamplingInterrupted",
    "plots",
    "Report",
]


# Loaded on first use: PyMC (the posterior path) and scikit-learn (the estimator) are heavy,
# and `import bayesgmm` must not import them.
_LAZY = {"MAPGaussianMixture": "estimator", "build_model": "posterior", "compare": "comparison",
         "relabel": "relabelling", "Report": "comparison", "prior_sweep": "sweep", "select_model": "selection",
         "ModelSelection": "selection", "posterior_sweep": "sweep",
         "em_sensitivity": "power_scaling", "mcmc_sensitivity": "power_scaling",
         "sensitivity_report": "power_scaling", "SensitivityReport": "power_scaling",
         "sweep_summary": "sweep",
         "run_study": "study", "write_report": "report",
         "sample_posterior": "sampling", "SamplingInterrupted": "health",
         "InverseWishart": "distributions"}


#: submodules loaded on first use (``bg.plots.plot_density(...)``)
_LAZY_MODULES = ("plots",)


def __getattr__(name):
    if name in _LAZY_MODULES:
        from importlib import import_module

        return import_module(f".{name}", __name__)
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")
