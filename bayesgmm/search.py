"""Searching for the highest mode of the log posterior.

A mixture's posterior has many modes, and under a weak prior the highest are often *spikes*:
small components on a few rows — a tight group, or rows the rest of the fit explains badly
(benchmarks/results/init_benchmark.md: one-row spikes on Old Faithful and overlapping
simulated sets, six-row spikes on iris).  Two strategies look for it beyond a single start:

* :func:`emem_candidates` — emEM (Biernacki, Celeux & Govaert 2003): short EM runs from many
  starts (random, k-means++, and for "auto" the hierarchical "hc" start); the best few by log
  posterior are continued to convergence.
* :func:`improve` — a local search over modes from a converged fit, with three kinds of move:
  split–merge (Ueda et al. 2000: for the pairs of components that overlap most, re-split the
  pair along its principal axis, or merge it and split a third component); spike (re-seat a component that another overlaps on a group of
  rows: the smallest ball holding 1, 4 or d + 2 rows around the tightest rows or the worst
  explained, the freed responsibility joining the component it overlaps most); trim (move one
  row out of, or into, a spike-sized component).  Every move is evaluated by a short run, the
  best few are continued to convergence, and the first that raises the log posterior is kept.
  Repeated until no move does.

On more than :data:`SEARCH_ROWS` rows both run on a random subsample (the same working
coordinates and prior), and EM then finishes on all rows from the best state found.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from . import starts as start_methods
from .covariance import SingularCovarianceError
from .estep import Engine, State
from .iteration import Run

__all__ = ["emem_candidates", "improve", "SEARCH_ROWS"]

#: EM-map evaluations of a short run, and the short runs continued to convergence
SHORT_RUN = 10
CONTINUED = 5
#: rounds of the local search at most (each keeps one improving move)
SEARCH_ROUNDS = 20
#: spike moves: the candidate centres (tightest groups), and the weight (rows) a spike starts
#: with; neighbours looked up per row to find that weight
SPIKE_CENTRES = 8
SPIKE_MASSES = (lambda d: 1.0, lambda d: 4.0, lambda d: d + 2.0)
_SPIKE_QUERY = 32
#: trim moves: components of at most this weight (a function of d) count as spikes
TRIM_SIZE = lambda d: 2.0 * (d + 2)  # noqa: E731
#: split–merge moves: the pairs merged (those that overlap most); spike moves: the components
#: re-seated (those that overlap another most)
MERGE_PAIRS = 6
SEAT_COMPONENTS = 6
#: rows beyond which the search runs on a random subsample of this size
SEARCH_ROWS = 4000


def _short(run_em, engine: Engine, R: np.ndarray) -> Run | None:
    """A short run from responsibilities; None if the start breaks down (maximum likelihood
    with an emptied or singular component)."""
    try:
        return run_em(engine, engine.start_from_responsibilities(R), 0.0, SHORT_RUN)
    except SingularCovarianceError:
        return None


def emem_candidates(engine: Engine, X, K: int, n_init: int, rng, w, run_em,
                    include_hc: bool) -> list[State]:
    """emEM's candidates: ``n_init`` random starts, one k-means++ start and (``include_hc``)
    the "hc" start, each run for :data:`SHORT_RUN` EM steps; the :data:`CONTINUED` best end
    states, to be run to convergence."""
    sources = [("hc", 1)] if include_hc else []
    sources += [("kmeans++", 1), ("random", n_init)]
    runs = [run for method, count in sources
            for R in start_methods.responsibility_starts(X, K, method, count, rng, w)
            if (run := _short(run_em, engine, R)) is not None]
    if not runs:
        raise SingularCovarianceError(None, "every start broke down in its first EM steps")
    runs.sort(key=lambda run: run.log_posterior, reverse=True)
    return [run.state for run in runs[:CONTINUED]]


def _responsibilities(engine: Engine, state: State) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities (N, K) and each row's log mixture density (N,)."""
    log_prob = engine.log_prob(state)
    top = log_prob.max(axis=1, keepdims=True)
    R = np.exp(log_prob - top)
    total = R.sum(axis=1, keepdims=True)
    return R / total, (top + np.log(total))[:, 0]


def _working_data(engine: Engine) -> np.ndarray:
    return (engine.X - engine.center) * engine.inv_scale


def _overlap(R: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Ueda et al.'s merge criterion: the cosine between components' responsibility vectors
    (weighted), (K, K) with a zero diagonal — high for components that explain the same rows."""
    norms = np.sqrt(w @ (R * R))
    overlap = (R * w[:, None]).T @ R / np.maximum(np.outer(norms, norms), np.finfo(float).tiny)
    np.fill_diagonal(overlap, 0.0)
    return overlap


def _principal_side(Z: np.ndarray, r: np.ndarray) -> np.ndarray | None:
    """Which side of the hyperplane through the weighted mean, normal to the leading
    eigenvector of the weighted covariance, each row lies on (None if the weights are zero)."""
    if not r.sum() > 0:
        return None
    centred = Z - r @ Z / r.sum()
    axis = np.linalg.eigh((centred * r[:, None]).T @ centred)[1][:, -1]
    return centred @ axis > 0


def _split_merge_moves(Z: np.ndarray, R: np.ndarray, overlap: np.ndarray, w: np.ndarray):
    """For the :data:`MERGE_PAIRS` pairs of components i, j that overlap most: re-split the
    two (their union cut in two along its principal axis), and merge them while splitting a
    third, k, along its principal axis, the halves taking k's and j's places."""
    K = R.shape[1]
    sides = {k: side for k in range(K) if (side := _principal_side(Z, R[:, k] * w)) is not None}
    upper = np.triu_indices(K, 1)
    for pair in np.argsort(-overlap[upper], kind="stable")[:MERGE_PAIRS]:
        i, j = upper[0][pair], upper[1][pair]
        union = R[:, i] + R[:, j]  # re-split the two: their union cut along its principal axis
        side = _principal_side(Z, union * w)
        if side is not None:
            moved = R.copy()
            moved[:, i], moved[:, j] = union * side, union * ~side
            yield moved
        for k, side in sides.items():
            if k in (i, j):
                continue
            moved = R.copy()
            moved[:, i] += R[:, j]
            moved[:, k], moved[:, j] = R[:, k] * side, R[:, k] * ~side
            yield moved


def _ball_radius(distances: np.ndarray, weights: np.ndarray, mass: float) -> np.ndarray:
    """Per row of sorted ``distances`` (n, m) to its nearest rows of ``weights``, the radius
    at which the cumulative weight first reaches ``mass`` (inf if it never does) — so a row of
    weight 4 and four repeated rows make the same group."""
    reached = np.cumsum(weights, axis=1) >= mass
    first = reached.argmax(axis=1)
    radius = np.take_along_axis(distances, first[:, None], axis=1)[:, 0]
    return np.where(reached.any(axis=1), radius, np.inf)


def _ball(Z: np.ndarray, centre: int, metric: np.ndarray, w: np.ndarray, mass: float):
    """The rows of the smallest ball around row ``centre`` (distances in ``metric``) that
    holds weight ``mass`` (a boolean mask)."""
    W = (Z - Z[centre]) @ metric
    distance = np.einsum("nd,nd->n", W, W)
    order = np.argsort(distance, kind="stable")
    last = min(np.searchsorted(np.cumsum(w[order]), mass), len(Z) - 1)
    return distance <= distance[order[last]] * (1 + 1e-12)


def _tightest(Z: np.ndarray, labels: np.ndarray, metrics: list, w: np.ndarray,
              mass: float, first: np.ndarray) -> np.ndarray:
    """The :data:`SPIKE_CENTRES` rows (among the ``first`` rows of distinct points) around
    which a ball of weight ``mass`` is smallest, in the metric of each row's component."""
    tightness = np.full(len(Z), np.inf)
    for k, metric in enumerate(metrics):
        rows = np.flatnonzero((labels == k) & (w > 0))
        if len(rows) > 1:
            W = Z[rows] @ metric
            distances, near = cKDTree(W).query(W, min(len(rows), _SPIKE_QUERY))
            tightness[rows] = _ball_radius(distances, w[rows][near], mass)
    tightness[~first] = np.inf  # a repeated point is one centre
    centres = np.argsort(tightness, kind="stable")[:SPIKE_CENTRES]
    return centres[np.isfinite(tightness[centres])]


def _spike_seats(Z, R, log_density, state: State, dense: bool, w,
                 first: np.ndarray) -> list[np.ndarray]:
    """Groups of rows a spike may sit on (boolean masks, distinct): balls of weight
    :data:`SPIKE_MASSES` around the rows where such a ball is smallest (tight groups) and
    around the rows the fit explains worst (lowest mixture density; outliers and the fringe)."""
    labels = R.argmax(axis=1)
    metrics = [state.inv_factor[k].T if dense else np.diag(state.inv_factor[k])
               for k in range(R.shape[1])]
    masses = sorted({mass(Z.shape[1]) for mass in SPIKE_MASSES})
    worst = np.argsort(np.where((w > 0) & first, log_density, np.inf),
                       kind="stable")[:SPIKE_CENTRES]
    seats = {}
    for mass in masses:
        centres = worst if mass <= 1 else np.concatenate(
            [_tightest(Z, labels, metrics, w, mass, first), worst])
        for c in centres:
            group = _ball(Z, c, metrics[labels[c]], w, mass)
            seats.setdefault(np.packbits(group).tobytes(), group)
    return list(seats.values())


def _spike_moves(Z: np.ndarray, R: np.ndarray, log_density: np.ndarray, overlap: np.ndarray,
                 state: State, dense: bool, w: np.ndarray, first: np.ndarray):
    """Re-seat component j on a group of rows (:func:`_spike_seats`), j's responsibility
    joining the component it overlaps most; j among the :data:`SEAT_COMPONENTS` components
    that overlap another most (those a mode can best spare)."""
    seats = _spike_seats(Z, R, log_density, state, dense, w, first)
    spare = np.argsort(-overlap.max(axis=1), kind="stable")[:SEAT_COMPONENTS]
    for j in spare:
        target = int(np.argmax(overlap[j]))
        for group in seats:
            moved = R.copy()
            moved[:, target] += moved[:, j]
            moved[:, j] = 0.0
            moved[group] = 0.0
            moved[group, j] = 1.0
            yield moved


def _trim_moves(Z: np.ndarray, R: np.ndarray, state: State, dense: bool, w: np.ndarray,
                point: np.ndarray):
    """For each spike-sized component j (weight at most :data:`TRIM_SIZE`), drop one of its
    points (all rows equal to it, ``point`` being each row's point; to the other components, in
    proportion to their responsibilities) or add one of the :data:`SPIKE_CENTRES` nearest
    points outside it — a spike's best group of rows is rarely the one EM first settles on."""
    K = R.shape[1]
    size = TRIM_SIZE(Z.shape[1])
    for j in np.flatnonzero(w @ R <= size):
        inside = R[:, j] > 0.5
        others = np.delete(np.arange(K), j)
        for p in np.unique(point[inside]):
            rows = point == p
            rest = R[rows][:, others].mean(axis=0)
            moved = R.copy()
            moved[rows] = 0.0
            moved[np.ix_(rows, others)] = rest / rest.sum() if rest.sum() > 0 else 1 / (K - 1)
            yield moved
        metric = state.inv_factor[j].T if dense else np.diag(state.inv_factor[j])
        W = (Z - state.means[j]) @ metric
        distance = np.where(~inside & (w > 0), np.einsum("nd,nd->n", W, W), np.inf)
        order = np.argsort(distance, kind="stable")
        nearest = point[order[np.isfinite(distance[order])]]
        _, at = np.unique(nearest, return_index=True)
        for p in nearest[np.sort(at)][:SPIKE_CENTRES]:
            rows = point == p
            moved = R.copy()
            moved[rows] = 0.0
            moved[rows, j] = 1.0
            yield moved


def improve(engine: Engine, best: Run, run_em, tol: float, max_iter: int) -> Run:
    """The local search over modes from a converged run (module docstring)."""
    K = engine.K
    if K < 2:
        return best
    Z = _working_data(engine)
    w = np.ones(engine.n) if engine.w.size == 0 else engine.w * engine.coords.weight_scale
    # rows equal to each other are one point to the moves (as one row of their total weight)
    _, first_rows, point = np.unique(Z, axis=0, return_index=True, return_inverse=True)
    point = point.ravel()
    first = np.zeros(engine.n, dtype=bool)
    first[first_rows] = True
    for _ in range(SEARCH_ROUNDS):
        R, log_density = _responsibilities(engine, best.state)
        overlap = _overlap(R, w)
        moves = itertools.chain(
            _split_merge_moves(Z, R, overlap, w),
            _spike_moves(Z, R, log_density, overlap, best.state, engine.dense, w, first),
            _trim_moves(Z, R, best.state, engine.dense, w, point))
        candidates = [run for moved in moves if (run := _short(run_em, engine, moved))]
        candidates.sort(key=lambda run: run.log_posterior, reverse=True)
        for candidate in candidates[:CONTINUED]:
            try:
                full = run_em(engine, candidate.state, tol, max_iter)
            except SingularCovarianceError:
                continue
            if full.log_posterior > best.log_posterior + 1e-9 * abs(best.log_posterior):
                best = full
                break
        else:
            return best
    return best
