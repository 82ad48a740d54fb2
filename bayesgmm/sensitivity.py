"""Prior-sensitivity studies on the MAP-EM path: hyperparameter sweeps and power-scaling.

* :func:`prior_sweep` refits MAP-EM over a grid of hyperparameters, each setting warm-started from
  its neighbour and its components aligned to the base fit, into one xarray Dataset.
* :func:`em_sensitivity` gives the local sensitivity of every MAP estimate to power-scaling the
  prior (p(θ)^a, :func:`~bayesgmm.power_scale`) or the likelihood (p(x | θ)^a, a sample weight a):
  the central finite-difference derivative d θ̂ / d log a at a = 1.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from ._validation import check_data, check_n_components, check_positive_number, feature_names_of
from .covariance import get_structure
from .em import fit_map
from .priors import HYPERPARAMETERS, GMMPrior, adjust_prior, power_scale, resolve_prior
from .relabelling import component_permutation
from .result import MixtureFit, parameter_entries

__all__ = ["prior_sweep", "sweep_summary", "em_sensitivity", "mcmc_sensitivity", "sensitivity_report",
           "power_scaling_weights", "verdict", "AXES"]

#: grid axes and how each sets the prior: a value for the field, or a multiplier on Ψ0
AXES = HYPERPARAMETERS


def _check_grid(grid) -> dict:
    if not isinstance(grid, dict) or not grid:
        raise ValueError(f"grid must be a non-empty dict of axis -> values, axes: {AXES}")
    unknown = [name for name in grid if name not in AXES]
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown} in the grid; use any of {AXES}")
    out = {}
    for name, values in grid.items():
        values = [np.asarray(v, dtype=float) for v in np.atleast_1d(np.asarray(values, dtype=float))
                  ] if name != "mean" else [np.asarray(v, dtype=float) for v in values]
        if len(values) == 0:
            raise ValueError(f"grid axis {name!r} is empty; give it at least one value")
        out[name] = values
    return out


def _setting_prior(base: GMMPrior, setting: dict) -> GMMPrior:
    try:
        return adjust_prior(base, setting)
    except ValueError as exc:
        pretty = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in setting.items()}
        raise ValueError(f"grid setting {pretty} gives an invalid prior: {exc}") from None


def _snake(shape):
    """All indices of ``shape``, ordered so consecutive ones differ by one step on one axis."""
    if not shape:
        yield ()
        return
    for i, rest in enumerate(_snake(shape[:-1])):
        inner = range(shape[-1]) if i % 2 == 0 else range(shape[-1] - 1, -1, -1)
        for j in inner:
            yield rest + (j,)


def aligned(fit: MixtureFit, pivot: MixtureFit) -> MixtureFit:
    """``fit`` with its components reordered to match ``pivot`` (symmetric-KL Hungarian)."""
    perm = component_permutation(np.asarray(fit.means), fit.covariance_matrices, pivot)
    covs = np.asarray(fit.covariances)
    if "component" in get_structure(fit.covariance).dims:
        covs = covs[perm]
    return replace(fit, weights=np.asarray(fit.weights)[perm],
                   means=np.asarray(fit.means)[perm], covariances=covs)


def _progress(iterable, total, description, enabled):
    if not enabled:
        return iterable
    try:
        from rich.progress import track
    except ImportError:  # rich comes with PyMC; without it, no bar
        return iterable
    return track(iterable, total=total, description=description)


def prior_sweep(X, n_components: int, covariance: str = "full", base_prior="default",
                grid: dict | None = None, *, base_fit: MixtureFit | None = None,
                warm_start: bool = True, n_init: int = 5, tol: float = 1e-10,
                max_iter: int = 5000, random_state=0, progress: bool = True) -> xr.Dataset:
    """Refit MAP-EM over a grid of prior hyperparameters.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int
    covariance : str
    base_prior : GMMPrior, "default" or "mclust"
        The prior every setting modifies.
    grid : dict
        Axis name -> values; the settings are the product of the axes.  ``shrinkage``, ``dof``,
        ``concentration`` (scalars or length-K vectors) replace the prior's value; ``scale`` is a
        multiplier on Ψ0; ``mean`` takes (d,) vectors.  Every setting is validated before any fit.
    base_fit : MixtureFit, optional
        The fit under ``base_prior`` (run with 5 restarts if not given): the warm start of the
        first setting and the labelling every setting is aligned to.
    warm_start : bool
        Start each setting at its grid neighbour's solution (settings are visited in a snake
        order).  False fits every setting independently ("cold": k-means++ with ``n_init``
        restarts), for comparison.
    n_init : int
        Restarts of the base fit and of cold fits.
    tol, max_iter, random_state
        As for :func:`~bayesgmm.fit_map`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        One dim per grid axis (``mean`` and vector ``concentration`` axes are indexed, their
        values in ``<axis>_value``) plus the parameter dims: ``weights``, ``means``,
        ``covariances``, ``log_posterior``, ``log_likelihood``, ``bic``, ``converged``,
        ``n_iter``.
    """
    names = feature_names_of(X)
    X = check_data(X)
    K = check_n_components(n_components, len(X))
    structure = get_structure(covariance)
    base = resolve_prior(base_prior, X, K, structure.name, allow_none=False)
    axes = _check_grid(grid)
    shape = tuple(len(v) for v in axes.values())
    settings = {idx: {name: axes[name][i] for name, i in zip(axes, idx)}
                for idx in np.ndindex(*shape)}
    priors = {idx: _setting_prior(base, s) for idx, s in settings.items()}  # validate first
    if base_fit is None:
        base_fit = fit_map(X, K, structure.name, prior=base, n_init=n_init, tol=tol,
                           max_iter=max_iter, random_state=random_state)
    elif base_fit.covariance != structure.name or base_fit.n_components != K:
        raise ValueError("base_fit must be a fit of the same K and covariance structure")
    fits = {}
    previous = base_fit
    order = list(_snake(shape))
    rng = np.random.default_rng(random_state)
    for idx in _progress(order, len(order), "prior sweep", progress):
        start = dict(init=previous) if warm_start else dict(n_init=n_init, random_state=rng)
        fit = fit_map(X, K, structure.name, prior=priors[idx], tol=tol, max_iter=max_iter,
                      warn_convergence=False, **start)
        fits[idx] = previous = aligned(fit, base_fit)
    return _sweep_dataset(axes, shape, fits, X, base_fit, names)


def _sweep_dataset(axes, shape, fits, X, base_fit, names) -> xr.Dataset:
    template = replace(base_fit, feature_names=names or base_fit.feature_names).to_xarray()
    axis_dims = list(axes)
    coords, extra = {}, {}
    for name, values in axes.items():
        if all(np.ndim(v) == 0 for v in values):
            coords[name] = [float(v) for v in values]
        else:
            coords[name] = np.arange(len(values))
            extra[f"{name}_value"] = ((name, f"{name}_entry"), np.stack(values))
    data = {}
    for var in ("weights", "means", "covariances"):
        dims = template[var].dims
        arr = np.stack([np.asarray(getattr(fits[idx], var)) for idx in np.ndindex(*shape)])
        data[var] = (axis_dims + list(dims), arr.reshape(shape + arr.shape[1:]))
    scalars = {"log_posterior": lambda f: f.log_posterior,
               "log_likelihood": lambda f: f.log_likelihood, "bic": lambda f: f.bic(X),
               "converged": lambda f: f.converged, "n_iter": lambda f: f.n_iter}
    for var, get in scalars.items():
        data[var] = (axis_dims, np.array([get(fits[idx]) for idx in np.ndindex(*shape)]
                                         ).reshape(shape))
    coords.update({c: template[c].values for c in ("component", "feature", "feature_bis")})
    return xr.Dataset({**data, **extra}, coords=coords)


def sweep_summary(sweep: xr.Dataset) -> pd.DataFrame:
    """How far each MAP estimate moves across a :func:`prior_sweep` grid.

    Returns
    -------
    pandas.DataFrame
        One row per parameter entry (labelled as in :func:`bayesgmm.compare`), columns ``min``,
        ``max``, ``range`` (max − min over every setting) and ``relative_range`` (range / mean
        |value|), sorted by ``relative_range``, largest first.
    """
    axes = list(sweep["log_posterior"].dims)
    rows, labels = [], []
    for var in ("weights", "means", "covariances"):
        for label, coords in parameter_entries(var, sweep[var].isel({a: 0 for a in axes})):
            values = sweep[var].isel(coords).values
            low, high = float(values.min()), float(values.max())
            scale = float(np.abs(values).mean())
            rows.append({"min": low, "max": high, "range": high - low,
                         "relative_range": (high - low) / scale if scale > 0 else 0.0})
            labels.append(label)
    table = pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))
    return table.sort_values("relative_range", ascending=False)


def em_sensitivity(fit: MixtureFit, X, *, step: float = 0.01, tol: float = 1e-14,
                   max_iter: int = 20000) -> pd.DataFrame:
    """Local power-scaling sensitivity of each MAP estimate, d θ̂ / d log a at a = 1.

    θ̂(a) is refitted (warm-started from ``fit``) under the prior p(θ)^a (``prior`` column) and
    under the likelihood p(x | θ)^a (``likelihood`` column, every sample weighted by a), at
    a = e^(±step); the derivative is the central difference, with O(step²) truncation error.

    Parameters
    ----------
    fit : MixtureFit
        A MAP-EM fit (with a prior) of X.
    X : array-like, shape (n_samples, n_features)
    step : float
        h in a = e^(±h).
    tol, max_iter
        Each refit runs to this tolerance: its error is divided by 2h in the difference.

    Returns
    -------
    pandas.DataFrame
        Rows labelled as in :func:`bayesgmm.compare`; columns ``map``, ``prior``,
        ``likelihood``.
    """
    if not isinstance(fit, MixtureFit):
        raise TypeError(f"fit must be a MixtureFit from bg.fit_map, got {type(fit).__name__}")
    if fit.prior is None:
        raise ValueError("em_sensitivity needs a MAP fit (fit.prior is None)")
    step = check_positive_number(step, "step")
    X = check_data(X, n_features=fit.n_features)
    K = fit.n_components

    def refit(prior, weight):
        return fit_map(X, K, fit.covariance, prior=prior, init=fit, tol=tol, max_iter=max_iter,
                       sample_weight=np.full(len(X), weight), warn_convergence=False)

    def derivative(make):
        hi, lo = make(np.exp(step)), make(np.exp(-step))
        return {var: (np.asarray(getattr(hi, var)) - np.asarray(getattr(lo, var))) / (2 * step)
                for var in ("weights", "means", "covariances")}

    prior_d = derivative(lambda a: refit(power_scale(fit.prior, a, K), 1.0))
    lik_d = derivative(lambda a: refit(fit.prior, a))
    ds = fit.to_xarray()
    rows, labels = [], []
    for var in ("weights", "means", "covariances"):
        for label, coords in parameter_entries(var, ds[var]):
            index = tuple(coords.values())
            rows.append({"map": float(ds[var].isel(coords)), "prior": prior_d[var][index],
                         "likelihood": lik_d[var][index]})
            labels.append(label)
    return pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))


# ============================================================================ MCMC path
#: priorsense's threshold on the power-scaling sensitivity (Kallioinen et al. 2023, §3.2)
SENSITIVITY_THRESHOLD = 0.05
#: Pareto k̂ above which importance weights are unreliable (Vehtari et al. 2024)
PARETO_K_THRESHOLD = 0.7


def _log_component(idata, component: str) -> np.ndarray:
    """Σ of the log prior (or pointwise log likelihood) per draw, shape (chain, draw)."""
    group = idata.log_prior if component == "prior" else idata.log_likelihood
    total = 0.0
    for var in group.data_vars.values():
        total = total + var.sum([d for d in var.dims if d not in ("chain", "draw")])
    return total.transpose("chain", "draw").values


def power_scaling_weights(idata, a: float, component: str = "prior"):
    """PSIS-smoothed normalised importance weights from the posterior to the one whose
    ``component`` ("prior" or "likelihood") is raised to the power ``a``.

    Returns
    -------
    weights : ndarray, shape (chain, draw), summing to 1
    pareto_k : float
    """
    import arviz as az

    if component not in ("prior", "likelihood"):
        raise ValueError(f"component must be 'prior' or 'likelihood', got {component!r}")
    if not a > 0:
        raise ValueError(f"the power a must be positive, got {a}")
    log_w = (a - 1.0) * _log_component(idata, component)
    smoothed, k = az.psislw(log_w.ravel() - log_w.max())
    weights = np.exp(smoothed - smoothed.max())
    return (weights / weights.sum()).reshape(log_w.shape), float(k)


def mcmc_sensitivity(idata, fit: MixtureFit, delta: float = 0.01) -> pd.DataFrame:
    """Power-scaling sensitivity of the relabelled posterior (ArviZ ``psens``).

    Columns ``prior`` and ``likelihood``: priorsense's diagnostic, the cumulative
    Jensen–Shannon distance between the posterior and its power-scaled versions (a = 1 ± delta)
    per unit log a; ``pareto_k_prior``/``pareto_k_likelihood``: the largest Pareto k̂ of those
    importance weights (> 0.7: unreliable, refit instead).
    """
    import arviz as az

    from .comparison import _check_inputs
    from .health import PARAMETERS
    from .relabelling import relabel

    post = _check_inputs(fit, idata)
    for group in ("log_prior", "log_likelihood"):
        if not hasattr(idata, group):
            raise ValueError(f"idata has no {group} group; sample with bg.sample_posterior")
    relabelled = relabel(post[list(PARAMETERS)], fit).posterior
    data = az.InferenceData(posterior=relabelled, log_prior=idata.log_prior,
                            log_likelihood=idata.log_likelihood)
    varying = [p for p in PARAMETERS if float(relabelled[p].std()) > 0]
    out = {}
    for component in ("prior", "likelihood"):
        sens = az.psens(data, component=component, var_names=varying, delta=delta)
        k = max(power_scaling_weights(data, a, component)[1] for a in (1 - delta, 1 + delta))
        out[component] = (sens, k)
    rows, labels = [], []
    for var in varying:
        for label, coords in parameter_entries(var, out["prior"][0][var]):
            row = {component: float(out[component][0][var].isel(coords)) for component in out}
            row["posterior_sd"] = float(relabelled[var].isel(coords).std(ddof=1))
            rows.append(row)
            labels.append(label)
    table = pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))
    table["pareto_k_prior"], table["pareto_k_likelihood"] = out["prior"][1], out["likelihood"][1]
    return table


def verdict(prior: float, likelihood: float) -> str:
    """priorsense's diagnosis from the two sensitivities."""
    if prior >= SENSITIVITY_THRESHOLD and likelihood >= SENSITIVITY_THRESHOLD:
        return "potential prior-data conflict"
    if prior >= SENSITIVITY_THRESHOLD:
        return "potential strong prior / weak likelihood"
    return ""


def sensitivity_report(fit: MixtureFit, idata, X) -> pd.DataFrame:
    """The EM and MCMC power-scaling sensitivities side by side, with a verdict per parameter.

    Columns: ``map``; ``em_prior``, ``em_likelihood`` (d θ̂ / d log a, :func:`em_sensitivity`;
    the MAP depends only on the ratio of the two powers, so they are each other's negatives);
    ``em_prior_sd`` (``em_prior`` in posterior standard deviations, comparable across
    parameters);
    ``mcmc_prior``, ``mcmc_likelihood`` (:func:`mcmc_sensitivity`); ``verdict`` (priorsense's
    thresholds, 0.05); ``reliable`` (both Pareto k̂ ≤ 0.7).
    """
    em = em_sensitivity(fit, X)
    mcmc = mcmc_sensitivity(idata, fit)
    table = pd.DataFrame({"map": em["map"], "em_prior": em["prior"],
                          "em_likelihood": em["likelihood"],
                          "em_prior_sd": em["prior"] / mcmc["posterior_sd"]}).join(
        mcmc[["prior", "likelihood", "pareto_k_prior", "pareto_k_likelihood"]].rename(
            columns={"prior": "mcmc_prior", "likelihood": "mcmc_likelihood"}), how="inner")
    table["verdict"] = [verdict(p, lik) for p, lik in zip(table["mcmc_prior"],
                                                          table["mcmc_likelihood"])]
    table["reliable"] = ((table["pareto_k_prior"] <= PARETO_K_THRESHOLD)
                         & (table["pareto_k_likelihood"] <= PARETO_K_THRESHOLD))
    return table
