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
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from .covariance import get_structure
from .health import max_rhat

__all__ = ["Relabelling", "relabel", "gaussian_kl", "dense_draws", "apply_permutations",
           "component_permutation"]

def gaussian_kl(mean1, cov1, mean2, cov2) -> np.ndarray:
    """KL(N(μ1, Σ1) ‖ N(μ2, Σ2)), broadcasting over leading axes.

    ½ [tr(Σ2⁻¹Σ1) + (μ2 − μ1)ᵀ Σ2⁻¹ (μ2 − μ1) − d + log det Σ2 − log det Σ1], through Cholesky
    factors: tr(Σ2⁻¹Σ1) = ‖L2⁻¹ L1‖²_F.
    """
    d = np.shape(mean1)[-1]
    L1, L2 = np.linalg.cholesky(cov1), np.linalg.cholesky(cov2)
    L1, L2 = np.broadcast_arrays(L1, L2)
    trace = np.square(np.linalg.solve(L2, L1)).sum((-2, -1))
    diff = np.broadcast_to(np.asarray(mean2) - np.asarray(mean1), L2.shape[:-1])
    maha = np.square(np.linalg.solve(L2, diff[..., None])[..., 0]).sum(-1)
    log_det = lambda L: 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # noqa: E731
    return 0.5 * (trace + maha - d + log_det(L2) - log_det(L1))


def dense_draws(posterior: xr.Dataset, covariance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (S, K), means (S, K, d) and dense covariances (S, K, d, d) of stacked draws."""
    structure = get_structure(covariance)
    weights = posterior["weights"].transpose("chain", "draw", "component").values
    means = posterior["means"].transpose("chain", "draw", "component", "feature").values
    covs = posterior["covariances"].transpose("chain", "draw", *structure.dims).values
    n_chain, n_draw, K, d = means.shape
    S = n_chain * n_draw
    covs = covs.reshape((S,) + covs.shape[2:])
    dense = np.stack([structure.expand(c, K, d) for c in covs])
    return weights.reshape(S, K), means.reshape(S, K, d), dense


def _assign(costs: np.ndarray) -> np.ndarray:
    """Per (K, K) cost matrix [draw component j, target k], the j for each k (min total)."""
    perms = np.empty(costs.shape[:2], dtype=int)
    for s, cost in enumerate(costs):
        rows, cols = linear_sum_assignment(cost)
        perms[s, cols] = rows
    return perms


def _pivot_permutations(means, dense, pivot_means, pivot_dense) -> np.ndarray:
    """(S, K): for each draw, the draw component assigned to each pivot component."""
    m1, S1 = means[:, :, None], dense[:, :, None]
    m2, S2 = pivot_means[None, None], pivot_dense[None, None]
    cost = gaussian_kl(m1, S1, m2, S2) + gaussian_kl(m2, S2, m1, S1)  # symmetric KL (S, j, k)
    return _assign(cost)


def component_permutation(means: np.ndarray, dense: np.ndarray, pivot) -> np.ndarray:
    """For one parameter set (means (K, d), dense covariances (K, d, d)), the component matched
    to each of the pivot fit's components."""
    return _pivot_permutations(means[None], dense[None], np.asarray(pivot.means),
                               pivot.covariance_matrices)[0]


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
        new = _assign(cost)
        if np.array_equal(new, perms):
            break
        perms = new
    # the algorithm fixes labels only up to one global permutation: align Q with the pivot
    global_cost = -np.einsum("nj,nk->jk", pivot_resp, log_q)
    align = _assign(global_cost[None])[0]
    return perms[:, align]


def apply_permutations(posterior: xr.Dataset, perms: np.ndarray) -> xr.Dataset:
    """Reorder every variable with a ``component`` dim by ``perms`` (chain, draw, K)."""
    out = posterior.copy()
    for name, var in posterior.data_vars.items():
        if "component" not in var.dims:
            continue
        arr = var.transpose("chain", "draw", "component", ...)
        idx = perms.reshape(perms.shape + (1,) * (arr.ndim - 3))
        values = np.take_along_axis(arr.values, idx, axis=2)
        out[name] = arr.copy(data=values).transpose(*var.dims)
    return out


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
    """

    posterior: xr.Dataset
    permutations: np.ndarray
    n_permuted: int
    rhat_before: float
    rhat_after: float
    method: str


def relabel(posterior: xr.Dataset, pivot, method: str = "pivot", X=None) -> Relabelling:
    """Relabel posterior draws to the pivot's labelling.

    Parameters
    ----------
    posterior : xarray.Dataset
        With ``weights``, ``means``, ``covariances`` over (chain, draw, component, …).
    pivot : MixtureFit
        The MAP-EM solution; its structure tells how to read ``covariances``.
    method : {"pivot", "stephens"}
    X : array (N, d), optional
        The data, needed by ``"stephens"`` (classification probabilities).

    Returns
    -------
    Relabelling
    """
    if method not in ("pivot", "stephens"):
        raise ValueError(f"method must be 'pivot' or 'stephens', got {method!r}")
    weights, means, dense = dense_draws(posterior, pivot.covariance)
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    perms = _pivot_permutations(means, dense, np.asarray(pivot.means), pivot.covariance_matrices)
    if method == "stephens":
        if X is None:
            raise ValueError("method='stephens' needs the data X (classification probabilities)")
        log_p = classification_log_probabilities(np.asarray(X, dtype=float), weights, means,
                                                 dense)
        perms = _stephens_permutations(log_p, perms, pivot.predict_proba(X))
    perms = perms.reshape(n_chain, n_draw, -1)
    relabelled = apply_permutations(posterior, perms)
    identity = np.arange(perms.shape[-1])
    return Relabelling(
        posterior=relabelled, permutations=perms,
        n_permuted=int(np.any(perms != identity, axis=-1).sum()),
        rhat_before=max_rhat(posterior), rhat_after=max_rhat(relabelled), method=method)
