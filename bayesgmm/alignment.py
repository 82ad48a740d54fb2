"""Matching the components of Gaussian mixtures (the posterior is label-symmetric).

Pure functions over arrays and xarray objects: the Gaussian Kullback–Leibler divergence, dense
covariance draws, the Hungarian assignment of one mixture's components to another's (a pivot, such
as the MAP-EM fit) by symmetric KL, and applying per-draw permutations.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .covariance import get_structure

__all__ = ["gaussian_kl", "dense_draws", "assign", "pivot_permutations",
           "component_permutation", "apply_permutations", "draw_permutations"]


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


def dense_draws(posterior, covariance: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def assign(costs: np.ndarray) -> np.ndarray:
    """Per (K, K) cost matrix [draw component j, target k], the j for each k (min total)."""
    perms = np.empty(costs.shape[:2], dtype=int)
    for s, cost in enumerate(costs):
        rows, cols = linear_sum_assignment(cost)
        perms[s, cols] = rows
    return perms


def pivot_permutations(means, dense, pivot_means, pivot_dense) -> np.ndarray:
    """(S, K): for each draw, the draw component assigned to each pivot component."""
    m1, S1 = means[:, :, None], dense[:, :, None]
    m2, S2 = pivot_means[None, None], pivot_dense[None, None]
    cost = gaussian_kl(m1, S1, m2, S2) + gaussian_kl(m2, S2, m1, S1)  # symmetric KL (S, j, k)
    return assign(cost)


def draw_permutations(posterior, pivot) -> np.ndarray:
    """(chain, draw, K): for each draw of ``posterior``, the draw component matched to each of
    the pivot fit's components (Hungarian on symmetric KL)."""
    _, means, dense = dense_draws(posterior, pivot.covariance_type)
    perms = pivot_permutations(means, dense, np.asarray(pivot.means), pivot.covariance_matrices)
    return perms.reshape(posterior.sizes["chain"], posterior.sizes["draw"], -1)


def component_permutation(means: np.ndarray, dense: np.ndarray, pivot) -> np.ndarray:
    """For one parameter set (means (K, d), dense covariances (K, d, d)), the component matched
    to each of the pivot fit's components."""
    return pivot_permutations(means[None], dense[None], np.asarray(pivot.means),
                               pivot.covariance_matrices)[0]


def apply_permutations(posterior, perms: np.ndarray):
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
