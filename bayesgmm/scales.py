"""Per-component standard deviations and correlations of posterior draws.

A covariance matrix holds each off-diagonal entry twice, so a summary of ``covariances`` lists
every covariance twice and mixes scales.  :func:`add_scales` adds the quantities users read —
standard deviations (``sd``) and, for matrix structures, correlations over the distinct
feature pairs (``correlations``) — to a posterior of either sampler, with dims, so ArviZ's
summaries, relabelling and plots treat them like any other parameter.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .covariance import get_structure

__all__ = ["add_scales", "SUMMARY_VARIABLES"]

#: the posterior variables a summary table shows (covariances through sd and correlations)
SUMMARY_VARIABLES = ("weights", "means", "sd", "correlations")


def add_scales(posterior: xr.Dataset, covariance: str) -> xr.Dataset:
    """The posterior with ``sd`` and, for d ≥ 2 matrix structures, ``correlations`` added.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with ``covariances`` in the dims of :meth:`MixtureFit.to_xarray` for
        ``covariance``.
    covariance : str
        The covariance structure.

    Returns
    -------
    xarray.Dataset
        ``sd``: the standard deviations √Σ_jj, dims of ``covariances`` without
        ``feature_bis`` (full: (…, component, feature); tied: (…, feature); diag: (…,
        component, feature); spherical: (…, component)).  ``correlations``: Σ_ij / (σ_i σ_j)
        for i < j, dims (…, [component,] feature_pair) with coordinates ``"a:b"``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> cov = xr.DataArray([[[[4.0, 1.0], [1.0, 1.0]]]], dims=("chain", "draw", "feature",
    ...                    "feature_bis"), coords={"feature": ["a", "b"], "feature_bis": ["a", "b"]})
    >>> out = add_scales(xr.Dataset({"covariances": cov}), "tied")
    >>> out["sd"].values.ravel().tolist(), out["correlations"].values.ravel().tolist()
    ([2.0, 1.0], [0.5])
    """
    structure = get_structure(covariance)
    covariances = posterior["covariances"]
    if not structure.matrix_valued:
        return posterior.assign(sd=np.sqrt(covariances))
    variances = xr.DataArray(np.diagonal(covariances.values, axis1=-2, axis2=-1),
                             dims=covariances.dims[:-1],
                             coords={k: v for k, v in covariances.coords.items()
                                     if "feature_bis" not in v.dims})
    sd = np.sqrt(variances)
    out = posterior.assign(sd=sd)
    features = list(covariances["feature"].values)
    rows, cols = np.triu_indices(len(features), k=1)
    if rows.size == 0:
        return out
    corr = (covariances.values[..., rows, cols]
            / (sd.values[..., rows] * sd.values[..., cols]))
    pairs = [f"{features[i]}:{features[j]}" for i, j in zip(rows, cols)]
    return out.assign(correlations=xr.DataArray(
        corr, dims=covariances.dims[:-2] + ("feature_pair",),
        coords={**{k: v for k, v in covariances.coords.items()
                   if "feature" not in v.dims and "feature_bis" not in v.dims},
                "feature_pair": pairs}))
