"""Starting partitions for MAP-EM.

Each method yields hard responsibilities (N, K) from which EM starts with an M-step:

* ``"kmeans++"``: k-means (Lloyd's iterations) from k-means++ seeding;
* ``"random"``: every row to the nearest of K rows drawn at random;
* ``"hc"``: model-based hierarchical agglomeration (deterministic): Ward's criterion — the
  classification likelihood of the EII model (Fraley 1998) — on mclust's scaled-SVD coordinates
  (Scrucca & Raftery 2015), cut at K clusters.

Distances are measured in standardised coordinates so that no feature dominates by its units.
Sample weights are masses: row n counts w_n times, and rows are drawn by inverse-CDF sampling on
the cumulative weights, so that integer weights and the same rows repeated give the same starts
(to rounding).  The strategies that combine several starts (emEM, ``"auto"``) live in
:mod:`bayesgmm.em`, which runs the short EM runs they need.
"""

from __future__ import annotations

import numpy as np

__all__ = ["START_METHODS", "RANDOM_METHODS", "responsibility_starts", "check_responsibilities",
           "hard_responsibilities", "kmeans", "hierarchical_labels"]

#: the start methods :func:`bayesgmm.fit_map` accepts by name
START_METHODS = ("auto", "emem", "hc", "kmeans++", "random")
#: the methods that draw at random (``n_init`` starts each)
RANDOM_METHODS = ("kmeans++", "random")
#: rows agglomerated by "hc"; beyond this a deterministic, evenly spaced subsample is used and
#: the other rows join the nearest cluster (the agglomeration is O(n²) in time)
HC_ROWS = 2000
#: rows of the k-means++ / random seeding beyond which a random subsample seeds the centres
_LLOYD_ITERATIONS = 10
_CHUNK_ROWS = 4096


def hard_responsibilities(labels: np.ndarray, K: int) -> np.ndarray:
    R = np.zeros((labels.size, K))
    R[np.arange(labels.size), labels] = 1.0
    return R


def _standardised(X: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    weights = np.ones(len(X)) if w is None else w
    mean = weights @ X / weights.sum()
    sd = np.sqrt(weights @ (X - mean) ** 2 / weights.sum())
    return (X - mean) / np.where(sd > 0, sd, 1.0)


def _nearest(Z: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and squared distance per row, in row chunks (no (N, K) array)."""
    labels = np.empty(len(Z), dtype=np.intp)
    dist = np.empty(len(Z))
    c2 = np.einsum("kd,kd->k", centres, centres)
    for a in range(0, len(Z), _CHUNK_ROWS):
        block = Z[a:a + _CHUNK_ROWS]
        D = c2 - 2.0 * block @ centres.T + np.einsum("nd,nd->n", block, block)[:, None]
        labels[a:a + len(block)] = D.argmin(1)
        dist[a:a + len(block)] = np.maximum(D[np.arange(len(block)), labels[a:a + len(block)]],
                                            0.0)
    return labels, dist


def _draw(masses: np.ndarray, rng: np.random.Generator) -> int:
    """A row with probability ∝ its mass, by inverse CDF (repeated rows draw alike)."""
    cumulative = np.cumsum(masses)
    return min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")),
               len(masses) - 1)


def kmeans(Z: np.ndarray, K: int, rng: np.random.Generator, w: np.ndarray | None = None,
           seeding: str = "kmeans++") -> np.ndarray:
    """Weighted k-means labels: k-means++ seeding (Arthur & Vassilvitskii 2007) or K rows drawn
    by weight, then Lloyd's iterations (an emptied cluster keeps its centre)."""
    masses = np.ones(len(Z)) if w is None else w
    centres = np.empty((K, Z.shape[1]))
    if seeding == "kmeans++":
        centres[0] = Z[_draw(masses, rng)]
        dist = _nearest(Z, centres[:1])[1]
        for k in range(1, K):
            total = masses * dist
            centres[k] = Z[_draw(total if total.sum() > 0 else masses, rng)]
            dist = np.minimum(dist, _nearest(Z, centres[k:k + 1])[1])
        iterations = _LLOYD_ITERATIONS
    else:  # K distinct points, so that no cluster starts empty
        for k in range(K):
            for _ in range(100):
                centres[k] = Z[_draw(masses, rng)]
                if not np.any(np.all(centres[:k] == centres[k], axis=1)):
                    break
        iterations = 0
    labels = _nearest(Z, centres)[0]
    for _ in range(iterations):
        totals = np.zeros((K, Z.shape[1]))
        np.add.at(totals, labels, masses[:, None] * Z)
        counts = np.bincount(labels, weights=masses, minlength=K)
        filled = counts > 0
        centres[filled] = totals[filled] / counts[filled, None]
        new = _nearest(Z, centres)[0]
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


# ----------------------------------------------------------------------------- "hc"
def _scaled_svd(Z: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """mclust's ``hcUse = "SVD"`` coordinates: the standardised data rotated onto their
    singular vectors and scaled by the inverse square roots of the singular values, so that
    directions of small spread are not drowned by large ones (Scrucca & Raftery 2015).  With
    weights, the SVD of the √w-scaled rows (that of the rows repeated)."""
    rows = Z if w is None else Z * np.sqrt(w)[:, None]
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    keep = s > s[0] * 1e-10
    return Z @ vt[keep].T / np.sqrt(s[keep])


def _ward(Y: np.ndarray, masses: np.ndarray, K: int) -> np.ndarray:
    """Ward agglomeration with initial masses down to K clusters: the nearest-neighbour chain
    algorithm with merge cost m_a m_b / (m_a + m_b) ‖ȳ_a − ȳ_b‖² (Lance–Williams for Ward),
    O(n² d) time and O(n d) memory.  Returns labels 0..K−1 numbered by first row."""
    from . import _kernels

    masses = np.asarray(masses, dtype=float)
    masses = np.maximum(masses / masses.max(), np.finfo(float).tiny)  # the cut is scale-free
    labels = _kernels.ward_chain(np.ascontiguousarray(Y, dtype=float), masses, K)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))  # cluster ids by first appearance
    return order[np.searchsorted(np.unique(labels), labels)]


def hierarchical_labels(X: np.ndarray, K: int, w: np.ndarray | None = None) -> np.ndarray:
    """The "hc" start: Ward on scaled-SVD coordinates (deterministic), on at most
    :data:`HC_ROWS` evenly spaced rows; the other rows join the nearest cluster mean."""
    Y = _scaled_svd(_standardised(X, w), w)
    masses = np.ones(len(X)) if w is None else w
    rows = np.flatnonzero(masses > 0)  # rows of no weight join at the end
    if len(rows) > HC_ROWS:
        rows = rows[np.linspace(0, len(rows) - 1, HC_ROWS).astype(int)]
    if len(rows) < K:
        raise ValueError(f"the 'hc' start needs at least K={K} rows of positive weight")
    sub = _ward(Y[rows], masses[rows], K)
    if len(rows) == len(X):
        return sub
    totals = np.zeros((K, Y.shape[1]))
    np.add.at(totals, sub, masses[rows, None] * Y[rows])
    counts = np.bincount(sub, weights=masses[rows], minlength=K)
    labels = _nearest(Y, totals / counts[:, None])[0]  # the rows left out join the nearest
    labels[rows] = sub
    return labels


# ----------------------------------------------------------------------------- the starts
def responsibility_starts(X: np.ndarray, K: int, method: str, n_init: int,
                          rng: np.random.Generator, sample_weight=None):
    """Starting responsibility matrices (N, K), made lazily: ``n_init`` of a random method,
    or the one "hc" start."""
    if method == "hc":
        yield hard_responsibilities(hierarchical_labels(X, K, sample_weight), K)
        return
    Z = _standardised(X, sample_weight)
    for _ in range(n_init):
        yield hard_responsibilities(kmeans(Z, K, rng, sample_weight, method), K)


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
