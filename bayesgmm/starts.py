"""Starting partitions for MAP-EM.

Each method returns hard responsibilities (N, K) from which EM starts with an M-step:

* ``"kmeans++"``: k-means (Lloyd, 10 iterations) from k-means++ seeding;
* ``"random"``: every row to the nearest of K randomly chosen rows.

Distances are measured on standardised columns so no feature dominates by its units.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.vq import kmeans2

__all__ = ["START_METHODS", "responsibility_starts", "check_responsibilities",
           "hard_responsibilities"]

#: the start methods :func:`bayesgmm.fit_map` accepts by name
START_METHODS = ("kmeans++", "random")


def hard_responsibilities(labels: np.ndarray, K: int) -> np.ndarray:
    R = np.zeros((labels.size, K))
    R[np.arange(labels.size), labels] = 1.0
    return R


def _standardise(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _labels(Z: np.ndarray, K: int, method: str, rng: np.random.Generator) -> np.ndarray:
    if method == "kmeans++":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty k-means cluster is handled by EM itself
            return kmeans2(Z, K, iter=10, minit="++", rng=rng)[1]
    centres = Z[rng.choice(len(Z), size=K, replace=False)]
    return np.argmin(((Z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def responsibility_starts(X: np.ndarray, K: int, method: str, n_init: int,
                          rng: np.random.Generator, sample_weight=None):
    """``n_init`` starting responsibility matrices (N, K) of ``method``, made lazily."""
    Z = _standardise(X)
    for _ in range(n_init):
        yield hard_responsibilities(_labels(Z, K, method, rng), K)


def check_responsibilities(resp, n: int, K: int) -> np.ndarray:
    """A user's responsibility matrix: shape (n, K), finite, non-negative, rows summing to 1."""
    R = np.asarray(resp, dtype=float)
    if R.shape != (n, K):
        raise ValueError(
            f"an init responsibility matrix must have shape (n_samples, n_components) = "
            f"{(n, K)}, got {R.shape}"
        )
    if not np.all(np.isfinite(R)) or np.any(R < 0):
        raise ValueError("init responsibilities must be finite and non-negative")
    row_sums = R.sum(axis=1)
    bad = np.flatnonzero(np.abs(row_sums - 1.0) > 1e-6)
    if bad.size:
        raise ValueError(
            f"init responsibility rows must sum to 1; {bad.size} row(s) do not, the first is row "
            f"{int(bad[0])} (sum {row_sums[bad[0]]:.6g})"
        )
    return R
