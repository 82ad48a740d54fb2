"""Prior sweeps on the MAP-EM path: refit over a grid of hyperparameters.

:func:`prior_sweep` refits MAP-EM over a grid of prior settings, each warm-started from its
neighbour along a snake path and its components aligned to the base fit, into one xarray
Dataset; :func:`sweep_summary` says how far each estimate moves.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from ._validation import check_data, check_n_components, feature_names_of
from .alignment import component_permutation
from .covariance import get_structure
from .em import fit_map
from .priors import HYPERPARAMETERS, GMMPrior, adjust_prior, resolve_prior
from .result import MixtureFit, parameter_entries

__all__ = ["prior_sweep", "sweep_summary", "aligned", "AXES"]

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
    if get_structure(fit.covariance_type).per_component:
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
                warm_start: bool = True, n_init: int | None = None, tol: float = 1e-10,
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
        The fit under ``base_prior`` (:func:`~bayesgmm.fit_map`'s default search if not
        given): the warm start of the first setting and the labelling every setting is aligned
        to.
    warm_start : bool
        Start each setting at its grid neighbour's solution (settings are visited in a snake
        order).  False fits every setting independently ("cold": :func:`~bayesgmm.fit_map`'s
        default search), for comparison.
    n_init : int, optional
        ``n_init`` of the base fit and of cold fits (:func:`~bayesgmm.fit_map`'s default).
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
    elif base_fit.covariance_type != structure.name or base_fit.n_components != K:
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
