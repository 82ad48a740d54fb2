"""Relabelling of mixture posterior draws (the posterior is label-symmetric).

Two methods, both returning one permutation of the components per draw:

* ``"pivot"``: per draw, the Hungarian assignment of its components to the pivot's (the MAP-EM
  solution) that minimises the total symmetric Kullback–Leibler divergence between Gaussians.
* ``"stephens"``: Stephens' (2000, JRSS-B 62:795–809, §4.1 / Algorithm 2) KL relabelling on the
  classification probabilities p_nk(θ⁽ˢ⁾): alternately average the permuted probabilities into
  Q, and give each draw the permutation minimising Σ_n Σ_k p_{n ν(k)} log(p_{n ν(k)} / q_nk);
  started from the pivot permutations and aligned to the pivot's labels at the end.

Pure functions over arrays and xarray objects; no PyMC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from . import _compat
from .alignment import apply_permutations, assign, dense_draws, draw_permutations
from .covariance import get_structure
from .health import PARAMETERS, max_rhat
from .result import MixtureFit

__all__ = ["Relabelling", "relabel", "check_posterior", "classification_log_probabilities"]

def check_posterior(fit, idata) -> xr.Dataset:
    """The posterior of ``idata``, checked against ``fit``: its groups and dims, the same
    structure, K and features, finite draws and positive-definite covariances.

    Parameters
    ----------
    fit : MixtureFit
    idata : arviz.InferenceData

    Returns
    -------
    xarray.Dataset
        ``idata.posterior``.
    """
    if not isinstance(fit, MixtureFit):
        raise TypeError(f"fit must be a MixtureFit (from bg.fit_map or bg.load), got "
                        f"{type(fit).__name__}")
    post = getattr(idata, "posterior", None)
    if post is None:
        raise ValueError("idata has no posterior group; pass the InferenceData of "
                         "bg.sample_posterior")
    missing = [d for d in ("chain", "draw") if d not in post.dims]
    if missing:
        raise ValueError(f"the posterior has no {missing} dim(s); compare needs draws over "
                         "(chain, draw)")
    absent = [p for p in PARAMETERS if p not in post]
    if absent:
        raise ValueError(f"the posterior lacks {absent}; it must hold weights, means and "
                         "covariances as bg.sample_posterior returns them")
    structure = get_structure(fit.covariance_type)
    if post["covariances"].dims[2:] != structure.dims:
        raise ValueError(
            f"the posterior's covariances have dims {post['covariances'].dims[2:]}, but the fit is "
            f"{fit.covariance_type!r} with dims {structure.dims}: sample the same structure")
    K = post.sizes.get("component")
    if K != fit.n_components:
        raise ValueError(f"the posterior has {K} components but the fit has {fit.n_components}")
    features = [str(f) for f in post["feature"].values]
    expected = list(fit.to_xarray()["feature"].values)
    if features != expected:
        raise ValueError(f"the posterior's features {features} do not match the fit's "
                         f"{expected}")
    for p in PARAMETERS:
        n_bad = int((~np.isfinite(post[p].values)).sum())
        if n_bad:
            raise ValueError(f"the posterior's {p} contain {n_bad} NaN or infinite values")
    _check_draws_spd(post, structure)
    return post


def _check_draws_spd(post: xr.Dataset, structure) -> None:
    """Every drawn covariance must be symmetric positive definite (name the first that is not)."""
    covs = post["covariances"].transpose("chain", "draw", *structure.dims).values
    K, d = post.sizes["component"], post.sizes["feature"]
    flat = covs.reshape((-1,) + covs.shape[2:])
    dense = np.stack([structure.expand(c, K, d) for c in flat])
    eig_ok = np.linalg.eigvalsh(dense)[..., 0] > 0  # (S, K)
    sym_ok = np.all(np.abs(dense - np.swapaxes(dense, -1, -2))
                    <= 1e-8 * np.abs(dense).max(axis=(-2, -1), keepdims=True), axis=(-2, -1))
    bad = np.argwhere(~(eig_ok & sym_ok))
    if bad.size:
        s, k = (int(i) for i in bad[0])
        chain, draw = divmod(s, post.sizes["draw"])
        raise ValueError(f"the posterior's covariances are not all symmetric positive definite: "
                         f"{len(bad)} draw(s) fail, the first at chain {chain}, draw {draw}, "
                         f"component {k}; such draws cannot come from the model")


def classification_log_probabilities(X, weights, means, dense) -> np.ndarray:
    """log p(z_n = k | x_n, θ⁽ˢ⁾), shape (S, N, K)."""
    S, K, d = means.shape
    L = np.linalg.cholesky(dense)  # (S, K, d, d)
    diff = X[None, None, :, :] - means[:, :, None, :]  # (S, K, N, d)
    y = np.linalg.solve(L, np.swapaxes(diff, -1, -2))  # (S, K, d, N)
    log_det = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # (S, K)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    joint = (log_w[:, :, None] - 0.5 * (d * np.log(2 * np.pi) + log_det[:, :, None]
                                          + np.square(y).sum(-2)))  # (S, K, N)
    joint = np.swapaxes(joint, 1, 2)
    return joint - logsumexp(joint, axis=-1, keepdims=True)


def _stephens_permutations(log_p: np.ndarray, start: np.ndarray, pivot_resp: np.ndarray,
                           max_iter: int = 100) -> np.ndarray:
    """Stephens' KL algorithm (Algorithm 2) from ``start``; result aligned to the pivot."""
    p = np.exp(log_p)  # (S, N, K)
    perms = start.copy()
    rows = np.arange(len(p))[:, None]
    for _ in range(max_iter):
        permuted = p[rows, :, perms].transpose(0, 2, 1)  # p_{n, ν_s(k)}: (S, N, K)
        log_q = np.log(np.maximum(permuted.mean(0), np.finfo(float).tiny))  # (N, K)
        # Σ_n p_{nj} log(p_{nj} / q_{nk}): the entropy term does not depend on k
        cost = -np.einsum("snj,nk->sjk", p, log_q)
        new = assign(cost)
        if np.array_equal(new, perms):
            break
        perms = new
    # the algorithm fixes labels only up to one global permutation: align Q with the pivot
    global_cost = -np.einsum("nj,nk->jk", pivot_resp, log_q)
    align = assign(global_cost[None])[0]
    return perms[:, align]


@dataclass(frozen=True)
class Relabelling:
    """Result of :func:`relabel`.

    Attributes
    ----------
    posterior : xarray.Dataset
        The relabelled draws (same variables, dims and coords as the input).
    permutations : ndarray, shape (chain, draw, K)
        For each draw, the original component that became component k.
    n_permuted : int
        Draws whose permutation is not the identity.
    rhat_before, rhat_after : float
        Largest R-hat over weights, means and covariances before and after.
    method : str
    idata : arviz.InferenceData
        The input InferenceData with the relabelled posterior and every other group whose
        variables have a ``component`` dim (``log_prior``, ``sample_stats``) permuted alike;
        label-free groups (``log_likelihood``, ``observed_data``) as they were.  Given a
        Dataset, an InferenceData with that one group.
    """

    posterior: xr.Dataset
    permutations: np.ndarray
    n_permuted: int
    rhat_before: float
    rhat_after: float
    method: str
    idata: object = None


def relabel(posterior, pivot, method: str = "pivot", X=None) -> Relabelling:
    """Relabel posterior draws to the pivot's labelling.

    Parameters
    ----------
    posterior : arviz.InferenceData or xarray.Dataset
        Draws with ``weights``, ``means``, ``covariances`` over (chain, draw, component, …):
        an InferenceData (its ``posterior`` group; ``observed_data`` serves as X) or the
        posterior Dataset itself.
    pivot : MixtureFit
        The MAP-EM solution; its structure tells how to read ``covariances``.
    method : {"pivot", "stephens"}
    X : array (N, d), optional
        The data, needed by ``"stephens"`` (classification probabilities).

    Returns
    -------
    Relabelling

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> idata = bg.sample_posterior(X, 2, init=fit, sampler="gibbs", draws=100, tune=0,
    ...                             chains=2, random_seed=0, progressbar=False)
    >>> result = bg.relabel(idata, fit)
    >>> result.n_permuted, sorted(result.idata.groups())[:2]
    (0, ['log_likelihood', 'log_prior'])
    """
    if method not in ("pivot", "stephens"):
        raise ValueError(f"method must be 'pivot' or 'stephens', got {method!r}")
    idata = None
    if not isinstance(posterior, xr.Dataset):
        idata, posterior = posterior, posterior.posterior
        if X is None and hasattr(idata, "observed_data") and "x" in idata.observed_data:
            X = idata.observed_data["x"].values
    perms = draw_permutations(posterior, pivot)
    if method == "stephens":
        if X is None:
            raise ValueError("method='stephens' needs the data X (classification probabilities)")
        weights, means, dense = dense_draws(posterior, pivot.covariance_type)
        log_p = classification_log_probabilities(np.asarray(X, dtype=float), weights, means,
                                                 dense)
        perms = _stephens_permutations(log_p, perms.reshape(len(weights), -1),
                                       pivot.predict_proba(X)).reshape(perms.shape)
    relabelled = apply_permutations(posterior, perms)
    identity = np.arange(perms.shape[-1])
    return Relabelling(
        posterior=relabelled, permutations=perms,
        n_permuted=int(np.any(perms != identity, axis=-1).sum()),
        rhat_before=max_rhat(posterior), rhat_after=max_rhat(relabelled), method=method,
        idata=_relabelled_inference_data(idata, relabelled, perms))


def _relabelled_inference_data(idata, relabelled: xr.Dataset, perms: np.ndarray):
    if idata is None:
        return _compat.inference_data(posterior=relabelled)
    groups = {name: idata[name] for name in idata.groups()}
    groups["posterior"] = relabelled
    for name, group in groups.items():
        if name != "posterior" and "chain" in group.dims and "component" in group.dims:
            groups[name] = apply_permutations(group, perms)
    return _compat.inference_data(**groups)
