"""Prior sweeps on the MAP-EM path: refit over a grid of hyperparameters.

:func:`prior_sweep` refits MAP-EM over a grid of prior settings into one xarray Dataset, its
components aligned to the base fit; :func:`sweep_summary` says how far each estimate moves.

A warm sweep must still report each setting's highest mode, not the mode its neighbour's
solution happens to lead to (measured on Old Faithful, K = 3: a plain warm path stayed on a
lower mode in 45 of 100 settings, by up to 12.5 nats).  So it works in three steps: the
default search (:func:`~bayesgmm.fit_map`) at the base prior and on a coarse lattice of the
grid (each axis at its first, middle and last value); a snake path through the grid (each step
one grid move), cut into as many segments as there are lattice points, each segment
warm-starting every setting from the previous one (the first segment from the base fit, the
others from the nearest lattice point's fit); then *mode exchange*: every setting offers its
solution to its grid neighbours (EM under the neighbour's prior from it), a neighbour that
gains offers its new solution in turn, until no setting gains.  A mode found anywhere in the
grid thus reaches every setting where it is the higher one.

Every step is a list of independent fits — the lattice searches, the segments, each round of
the exchange — so an ``executor`` runs them in parallel, and the answer is the same with any
executor or none.  Warm starts are kept where they pay: within a segment (a neighbouring
setting's mode is a few EM iterations away) and in the exchange; only the segments' first
settings start from a lattice point instead of their predecessor.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from ._parallel import map_over, searched_fit, shared
from ._validation import check_data, check_n_components, feature_names_of
from .alignment import component_permutation
from .comparison import map_check, table_dataset
from .covariance import get_structure
from .dask_em import is_dask_array, resolve_dask_prior
from .em import fit_map
from .health import convergence_summary
from .priors import HYPERPARAMETERS, GMMPrior, adjust_prior, resolve_prior
from .relabelling import relabel
from .result import MixtureFit, parameter_entries
from .sampling import resolve_sampler, sample_posterior

__all__ = ["prior_sweep", "posterior_sweep", "sweep_summary", "aligned", "AXES"]

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
                max_iter: int = 5000, random_state=0, progress: bool = True,
                executor=None) -> xr.Dataset:
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
        True: the default search on a coarse lattice, a warm-started snake path, then mode
        exchange between neighbours (module docstring) — each setting ends at the highest mode
        any setting found.  False fits every setting independently ("cold":
        :func:`~bayesgmm.fit_map`'s default search), for comparison.
    n_init : int, optional
        ``n_init`` of the base fit and of cold fits (:func:`~bayesgmm.fit_map`'s default).
    tol, max_iter, random_state
        As for :func:`~bayesgmm.fit_map`.
    progress : bool
        Show a progress bar.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Runs the independent fits in parallel — the lattice searches, the path's segments and
        each round of mode exchange, or every setting of a cold sweep — on a process pool or a
        Dask Client (which receives X once, scattered to its workers; a process pool pickles
        X with each job).  The result is the serial one.  Not used for a Dask array X, whose
        fits are already spread over its blocks.

    Returns
    -------
    xarray.Dataset
        One dim per grid axis (``mean`` and vector ``concentration`` axes are indexed, their
        values in ``<axis>_value``) plus the parameter dims: ``weights``, ``means``,
        ``covariances``, ``log_posterior``, ``log_likelihood``, ``bic``, ``converged``,
        ``n_iter``.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> sweep = bg.prior_sweep(X, 2, grid={"shrinkage": [0.01, 1.0], "scale": [0.5, 2.0]},
    ...                        progress=False)
    >>> sweep["means"].dims, bool(sweep.converged.all())
    (('shrinkage', 'scale', 'component', 'feature'), True)
    """
    names = feature_names_of(X)
    X = X if is_dask_array(X) else check_data(X)
    axes, shape, fits, base_fit, _ = _sweep_fits(
        X, n_components, covariance, base_prior, grid, base_fit=base_fit,
        warm_start=warm_start, n_init=n_init, tol=tol, max_iter=max_iter,
        random_state=random_state, progress=progress, executor=executor)
    ds = _sweep_dataset(axes, shape, fits, X, base_fit, names)
    return ds.assign_attrs(_base_values(base_fit.prior, axes))


def _base_values(prior: GMMPrior, axes) -> dict:
    """The base prior's value on each scalar grid axis (``scale`` is a multiplier: 1)."""
    out = {}
    for axis in axes:
        value = 1.0 if axis == "scale" else np.asarray(getattr(prior, axis, np.nan), float)
        if np.ndim(value) == 0 and np.isfinite(value):
            out[f"base_{axis}"] = float(value)
    return out


def _sweep_fits(X, n_components, covariance, base_prior, grid, *, base_fit, warm_start,
                n_init, tol, max_iter, random_state, progress, executor=None):
    """The fits of :func:`prior_sweep`: (axes, shape, {index: aligned fit}, base fit, priors)."""
    K = check_n_components(n_components, len(X))
    structure = get_structure(covariance)
    if is_dask_array(X):
        base = resolve_dask_prior(base_prior, X, K, structure.name)
        if base is None:
            raise ValueError("a prior sweep needs a prior: pass a GMMPrior, 'default' or "
                             "'mclust'")
    else:
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
    order = list(_snake(shape))
    streams = dict(zip(order, np.random.default_rng(random_state).spawn(len(order))))
    options = dict(tol=tol, max_iter=max_iter, warn_convergence=False)
    model = (K, structure.name)
    # a Dask array's fits are already spread over its blocks: they run one after another
    executor = None if is_dask_array(X) else executor
    data = shared(executor, X)

    def searched(settings) -> dict:  # independent default searches, on the executor
        jobs = [(data, model, priors[idx], dict(options, n_init=n_init,
                                                 random_state=streams[idx]))
                for idx in settings]
        return dict(zip(settings, map_over(executor, searched_fit, jobs)))

    def offers(targets) -> list:  # EM under each target's prior from the offered fit
        jobs = [(data, model, priors[idx], dict(options, init=start)) for idx, start in targets]
        return map_over(executor, searched_fit, jobs)

    if not warm_start:
        fits = searched(order)
    else:
        anchors = searched(_anchors(shape))  # searched anchors, seeds of the exchange
        segments = _segments(order, len(anchors))
        jobs = [(data, model, [priors[idx] for idx in segment],
                 base_fit if i == 0 else anchors[_nearest(segment[0], anchors)],
                 [anchors.get(idx) for idx in segment], options)
                for i, segment in enumerate(segments)]
        paths = map_over(executor, _warm_path,
                         _progress(jobs, len(jobs), "prior sweep segments", progress))
        fits = {idx: fit for segment, path in zip(segments, paths)
                for idx, fit in zip(segment, path)}
        _exchange_modes(fits, shape, offers)
    fits = {idx: aligned(fit, base_fit) for idx, fit in fits.items()}
    return axes, shape, fits, base_fit, priors


def _segments(order: list, count: int) -> list[list]:
    """``order`` cut into at most ``count`` contiguous pieces of near-equal length."""
    count = max(1, min(count, len(order)))
    bounds = np.linspace(0, len(order), count + 1).round().astype(int)
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _nearest(idx, anchors: dict):
    """The anchor closest to ``idx`` in grid steps (the first of equals, in lattice order)."""
    return min(anchors, key=lambda a: sum(abs(i - j) for i, j in zip(idx, a)))


def _warm_path(job) -> list:
    """One segment of a warm sweep (a job for the executor): ``(X, (K, covariance), priors,
    start, searched, options)`` → a fit per prior, each EM started from the previous step's
    result (the first from ``start``), keeping the higher of it and the step's searched fit
    where there is one."""
    X, (K, covariance), priors, previous, searched, options = job
    path = []
    for prior, known in zip(priors, searched):
        previous = _higher(fit_map(X, K, covariance, prior, init=previous, **options), known)
        path.append(previous)
    return path


def posterior_sweep(X, n_components: int, covariance: str = "full", base_prior="default",
                    grid: dict | None = None, *, sampler: str = "auto", draws: int = 1000,
                    tune: int = 200, chains: int = 4, hdi_prob: float = 0.94,
                    random_state=0, progress: bool = True, **sampler_options) -> xr.Dataset:
    """The full posterior over a grid of priors, summarised beside each setting's MAP.

    For every setting of ``grid`` (as :func:`prior_sweep`, whose MAP-EM fits it runs first):
    :func:`~bayesgmm.sample_posterior` from that setting's MAP (the Gibbs sampler wherever it
    applies, by default: no compilation, so a grid costs seconds per setting), the draws
    relabelled to the MAP,
    and the comparison table of :func:`bayesgmm.comparison.table_dataset`.

    Parameters
    ----------
    X, n_components, covariance, base_prior, grid
        As for :func:`prior_sweep`.
    sampler : {"auto", "gibbs", "nuts", "nutpie"}
        As :func:`~bayesgmm.sample_posterior`'s, "auto" resolved once for the base prior: every
        setting runs the same sampler (``attrs["sampler"]``).  NUTS (and nutpie) compiles its model once for the whole sweep (the prior's values are
        the model's data), so a NUTS sweep costs one compilation plus sampling per setting.
    draws, tune, chains : int
        Per setting.
    hdi_prob : float
    random_state : int
        Seeds the sweep's searches and, with the setting's index, each setting's chains.
    progress : bool
    **sampler_options
        Passed to :func:`~bayesgmm.sample_posterior` (e.g. ``target_accept`` for NUTS,
        ``thin`` for Gibbs).

    Returns
    -------
    xarray.Dataset
        The grid axes, a ``stat`` dim (``map``, ``mean``, ``median``, ``sd``, ``hdi_lower``,
        ``hdi_upper``, ``map_quantile``, ``map_in_hdi``, ``std_diff``) and the parameters'
        dims, for ``weights``, ``means`` and ``covariances``; per setting ``log_posterior``
        (the MAP's), ``max_rhat``, ``min_ess_bulk`` and ``map_gain`` (nats the draws' best
        mode gains over the MAP: :func:`bayesgmm.comparison.map_check`).

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> ds = bg.posterior_sweep(X, 2, grid={"shrinkage": [0.01, 1.0]}, draws=200, tune=50,
    ...                         chains=2, progress=False)
    >>> ds["means"].sel(stat="mean").dims
    ('shrinkage', 'component', 'feature')
    """
    names = feature_names_of(X)
    data = X
    X = check_data(X)
    axes, shape, fits, base_fit, priors = _sweep_fits(
        X, n_components, covariance, base_prior, grid, base_fit=None, warm_start=True,
        n_init=None, tol=1e-10, max_iter=5000, random_state=random_state, progress=False)
    tables, extra = {}, {}
    order = list(_snake(shape))
    sampler = resolve_sampler(sampler, base_fit.prior)  # one sampler for every setting
    for i, idx in enumerate(_progress(order, len(order), "posterior sweep", progress)):
        fit = replace(fits[idx], feature_names=names) if names else fits[idx]
        idata = sample_posterior(data, fit.n_components, fit.covariance_type, priors[idx],
                                 sampler=sampler, init=fit, draws=draws, tune=tune,
                                 chains=chains, random_seed=_setting_seed(random_state, i),
                                 progressbar=False, **sampler_options)
        relabelled = relabel(idata, fit)
        tables[idx] = table_dataset(relabelled.posterior, fit, hdi_prob)
        health = convergence_summary(relabelled.posterior)
        extra[idx] = {"log_posterior": fit.log_posterior, "max_rhat": health["max_rhat"],
                      "min_ess_bulk": health["min_ess_bulk"],
                      "map_gain": map_check(fit, idata, X).gain}
    ds = _grid_dataset(axes, shape, tables, extra, names or base_fit.feature_names)
    ds.attrs["sampler"] = sampler
    return ds


def _setting_seed(random_state, i: int) -> int:
    """An independent integer seed for setting ``i`` of a sweep seeded by ``random_state``."""
    base = 0 if random_state is None else int(np.random.default_rng(random_state).integers(2**32))
    return int(np.random.SeedSequence([base, i]).generate_state(1)[0])


def _grid_dataset(axes, shape, tables: dict, extra: dict, names) -> xr.Dataset:
    """Stack per-setting Datasets and scalars along the grid's axes."""
    coords = {name: ([float(v) for v in values] if all(np.ndim(v) == 0 for v in values)
                     else np.arange(len(values))) for name, values in axes.items()}
    cells = [tables[idx].expand_dims({name: [coords[name][i]] for name, i in zip(axes, idx)})
             for idx in np.ndindex(*shape)]
    ds = xr.combine_by_coords(cells) if len(cells) > 1 else cells[0]
    for var in next(iter(extra.values())):
        ds[var] = (list(axes), np.array([extra[idx][var] for idx in np.ndindex(*shape)],
                                        dtype=float).reshape(shape))
    if names:
        ds = ds.assign_coords(feature=list(names), feature_bis=list(names)) if (
            "feature_bis" in ds.dims) else ds.assign_coords(feature=list(names))
    return ds


def _higher(fit: MixtureFit, other: MixtureFit | None) -> MixtureFit:
    """The fit with the higher log posterior (the first on ties)."""
    if other is None or fit.log_posterior >= other.log_posterior - _GAIN * abs(
            other.log_posterior):
        return fit
    return other


#: a mode counts as higher than another when its log posterior exceeds it by this relative gap
_GAIN = 1e-9


def _anchors(shape):
    """A coarse lattice of the grid: each axis at its first, middle and last value."""
    per_axis = [sorted({0, (n - 1) // 2, n - 1}) for n in shape]
    return [tuple(int(p[i]) for p, i in zip(per_axis, c))
            for c in np.ndindex(*(len(p) for p in per_axis))]


def _neighbours(idx, shape):
    for axis, n in enumerate(shape):
        for step in (-1, 1):
            j = idx[axis] + step
            if 0 <= j < n:
                yield idx[:axis] + (j,) + idx[axis + 1:]


def _exchange_modes(fits: dict, shape, offers) -> None:
    """Offer every setting's solution to its neighbours until no setting gains (in place).

    Works in rounds, so each round's refits are independent jobs: every pending setting
    offers its solution to each neighbour (``offers([(neighbour, fit), ...])`` returns the
    EM fits under the neighbours' priors), each neighbour keeps the best offer that beats
    it, and the settings that gained are the next round's.  The result does not depend on
    how the jobs are scheduled.  Terminates: a setting is pending again only after its log
    posterior rose by more than :data:`_GAIN`, and each setting's log posterior is bounded
    by its highest mode.
    """
    pending = list(fits)
    while pending:
        targets = [(other, fits[idx]) for idx in pending for other in _neighbours(idx, shape)]
        gained = {}
        for (other, _), candidate in zip(targets, offers(targets)):
            best = gained.get(other, fits[other])
            if candidate.log_posterior > best.log_posterior + _GAIN * abs(best.log_posterior):
                gained[other] = candidate
        fits.update(gained)
        pending = list(gained)


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

    Parameters
    ----------
    sweep : xarray.Dataset
        From :func:`prior_sweep`.

    Returns
    -------
    pandas.DataFrame
        One row per parameter entry (labelled as in :func:`bayesgmm.compare`), columns ``min``,
        ``max``, ``range`` (max − min over every setting) and ``relative_range`` (range / mean
        absolute value), sorted by ``relative_range``, largest first.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> sweep = bg.prior_sweep(bg.load_dataset("faithful"), 2, grid={"shrinkage": [0.01, 1.0]},
    ...                        progress=False)
    >>> list(bg.sweep_summary(sweep).columns)
    ['min', 'max', 'range', 'relative_range']
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
