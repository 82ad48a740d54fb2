"""Every call that depends on the PyMC or ArviZ version, in one place (DESIGN §6–§7).

The tested line is PyMC 5.x with ArviZ 0.23 (Python 3.11).  PyMC 6 / ArviZ 1.x change exactly
these: ``InferenceData`` becomes an xarray ``DataTree``, the statistics (R-hat, ESS, HDI, LOO,
PSIS, power-scaling) move to arviz-stats with new signatures and return types, plotting moves
to arviz-plots, and PyMC's transform base class and sampling keywords move.  Each function below
has a version-independent signature (plain xarray/numpy/pandas in and out), so moving to the
new line means changing this module only.  ArviZ and PyMC (and nutpie, an optional extra) are
imported on first use.
"""

from __future__ import annotations

import numpy as np

from ._io import netcdf_bytes

__all__ = ["rhat", "ess", "hdi", "loo", "psis_log_weights", "power_scaling_sensitivity",
           "summary", "inference_data", "inference_data_bytes",
           "pymc_transform_base", "nuts_step", "sample_nuts", "nutpie_compile",
           "nutpie_prepare", "nutpie_sample", "set_data", "add_log_likelihood_and_prior"]


# ----------------------------------------------------------------------------- ArviZ
def rhat(posterior):
    """Rank-normalised split R-hat per entry: Dataset → Dataset (no chain/draw dims)."""
    import arviz as az

    return az.rhat(posterior)


def ess(posterior, method: str = "bulk"):
    """Effective sample size per entry ("bulk" or "tail"): Dataset → Dataset."""
    import arviz as az

    return az.ess(posterior, method=method)


def hdi(posterior, prob: float):
    """Highest-density interval per entry: (lower, upper), each a Dataset."""
    import arviz as az

    interval = az.hdi(posterior, hdi_prob=prob)
    return (interval.sel(hdi="lower", drop=True), interval.sel(hdi="higher", drop=True))


def loo(idata) -> dict:
    """PSIS-LOO: ``elpd_loo``, ``se``, ``p_loo`` and the pointwise Pareto k̂ (an array)."""
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k; callers report k̂
        result = az.loo(idata, pointwise=True)
    return {"elpd_loo": float(result.elpd_loo), "se": float(result.se),
            "p_loo": float(result.p_loo), "pareto_k": np.asarray(result.pareto_k.values)}


def psis_log_weights(log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed log importance weights of a 1-D array, and the Pareto k̂."""
    import arviz as az

    smoothed, k = az.psislw(np.asarray(log_weights))
    return np.asarray(smoothed), float(k)


def power_scaling_sensitivity(posterior, log_prior, log_likelihood, component: str,
                              var_names, delta: float):
    """priorsense's power-scaling sensitivity (cumulative Jensen–Shannon distance per unit
    log a) of each posterior entry to the prior or the likelihood: Dataset."""
    import arviz as az

    data = az.InferenceData(posterior=posterior, log_prior=log_prior,
                            log_likelihood=log_likelihood)
    return az.psens(data, component=component, var_names=list(var_names), delta=delta)


def summary(idata, var_names, kind: str = "stats"):
    """ArviZ's summary table (a pandas DataFrame)."""
    import arviz as az

    return az.summary(idata, var_names=list(var_names), kind=kind)


def inference_data(**groups):
    """An InferenceData from xarray Datasets, one per group."""
    import arviz as az

    return az.InferenceData(**groups)


def inference_data_bytes(idata) -> bytes:
    """An InferenceData as netCDF-4 bytes (one group per ArviZ group), built in memory, so that
    writing it is one atomic file write; ``arviz.from_netcdf`` reads it back."""
    return netcdf_bytes(idata.to_datatree())


# ----------------------------------------------------------------------------- PyMC
def pymc_transform_base():
    """The base class of PyMC's value transforms."""
    from pymc.logprob.transforms import Transform

    return Transform


def nuts_step(model, *, target_accept: float, compile_mode: str):
    """PyMC's NUTS step on every free variable of ``model``, built (and its log density and
    gradient compiled) once; :func:`sample_nuts` reuses it.

    Building the step explicitly skips PyMC's step assignment, which compiles gradients only
    to choose NUTS for every variable (≈ 3 s of start-up on Old Faithful K = 2).
    """
    import pymc as pm

    with model:
        return pm.NUTS(target_accept=target_accept, compile_kwargs={"mode": compile_mode})


def sample_nuts(model, step, *, draws: int, tune: int, chains: int, cores: int, random_seed,
                initvals, progressbar: bool, compile_mode: str, callback=None):
    """PyMC's sampler with a NUTS ``step`` from :func:`nuts_step`, from given initial values
    without jitter; returns InferenceData without the ``constant_data`` group (the prior's
    values, which the Gibbs sampler's InferenceData does not carry either).  The step's
    adaptation is reset at the start of every chain, so a step serves any number of runs.
    """
    import pymc as pm

    idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores,
                      random_seed=random_seed, initvals=initvals, step=step,
                      progressbar=progressbar, model=model,
                      compile_kwargs={"mode": compile_mode}, callback=callback)
    if "constant_data" in idata.groups():
        del idata["constant_data"]
    return idata


def nutpie_compile(model):
    """nutpie's compiled model of ``model`` (Numba backend; its ``pm.Data`` stay replaceable by
    :func:`nutpie_prepare`).  Raises ImportError when nutpie is not installed."""
    import nutpie

    return nutpie.compile_pymc_model(model, backend="numba", jitter_rvs=set())


def nutpie_prepare(compiled, model, data: dict, initvals: dict):
    """``compiled`` with new ``pm.Data`` values and every chain started at ``initvals`` (the
    constrained values of the free variables) without jitter — nutpie's own start is fixed
    when it compiles, so it is replaced here by the transformed point, flattened in nutpie's
    order."""
    import dataclasses

    from pymc.initial_point import make_initial_point_fn

    point = make_initial_point_fn(model=model, overrides=initvals, jitter_rvs=set(),
                                  return_transformed=True)(0)
    names, slices = compiled.shape_info[0], compiled.shape_info[1]
    start = np.concatenate([np.ravel(point[name]) for name, where in zip(names, slices)
                            if where.stop <= compiled.n_dim]).astype(float)
    if start.size != compiled.n_dim:  # nutpie changed how it lays out its variables
        raise RuntimeError(f"this nutpie lays out {compiled.n_dim} unconstrained values, the "
                           f"model's start has {start.size}; use the tested nutpie 0.16")
    used = {name: value for name, value in data.items() if name in compiled.shared_data}
    return dataclasses.replace(compiled.with_data(**used),  # (K = 1 has no concentration)
                               initial_point_func=lambda seed=None: start.copy())


def nutpie_sample(compiled, *, draws: int, tune: int, chains: int, cores: int, random_seed,
                  target_accept: float, progressbar: bool, variables):
    """nutpie's sampler: the posterior of ``variables`` and the sample_stats (``diverging``
    among them) as xarray Datasets."""
    import nutpie

    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores,
                          seed=random_seed, target_accept=target_accept,
                          progress_bar=progressbar, save_warmup=False)
    return idata.posterior[list(variables)], idata.sample_stats


def set_data(model, values: dict) -> None:
    """Replace the values of ``pm.Data`` containers (same shapes)."""
    import pymc as pm

    pm.set_data(values, model=model)


def add_log_likelihood_and_prior(idata, model) -> None:
    """Add the pointwise ``log_likelihood`` and the ``log_prior`` groups to ``idata``."""
    import pymc as pm

    # evaluated once per draw: not worth a compilation (compiling the two functions cost more
    # than evaluating them uncompiled, measured once on Old Faithful)
    for compute in (pm.compute_log_likelihood, pm.compute_log_prior):
        compute(idata, model=model, progressbar=False, compile_kwargs={"mode": "FAST_COMPILE"})
