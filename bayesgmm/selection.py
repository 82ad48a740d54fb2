"""Model selection in one call: every K and covariance structure, chosen by BIC or ICL.

:func:`select_model` is bayesgmm's ``Mclust(X)``: it fits each (K, structure) candidate by
MAP-EM with the default search, and — since a search can miss a mode another candidate found —
offers each fit's classification to its neighbours as a start: the same K under the other
structures (mclust's hierarchical tree shares one classification the same way) and K + 1 by
splitting the fit's widest component (a warm start from K − 1).  A candidate keeps the highest
log posterior it reaches.  BIC and ICL are on the package's scale (lower is better; mclust
reports −BIC).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ._parallel import map_over, searched_fit, shared
from ._validation import check_data, check_n_components, check_positive_int
from .covariance import STRUCTURES, get_structure
from .dask_em import dask_moments, is_dask_array, resolve_dask_prior
from .em import fit_map
from .priors import resolve_prior
from .result import MixtureFit

__all__ = ["ModelSelection", "select_model", "CRITERIA"]

#: the criteria :func:`select_model` can choose by
CRITERIA = ("bic", "icl")
#: table columns, in order
COLUMNS = ("n_components", "covariance", "log_likelihood", "log_posterior", "n_parameters",
           "bic", "icl", "converged")


@dataclass
class ModelSelection:
    """The result of :func:`select_model`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (K, covariance), columns :data:`COLUMNS`, in candidate order.
    best : MixtureFit
        The candidate with the lowest ``criterion``.
    criterion : str
    fits : dict
        (K, covariance) → MixtureFit.
    """

    table: pd.DataFrame
    best: MixtureFit
    criterion: str
    fits: dict = field(repr=False)

    def plot(self, ax=None):
        """BIC (or ICL) against K, one line per structure, the chosen model circled.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from .plots import plot_model_selection

        return plot_model_selection(self, ax=ax)

    @property
    def marked_table(self) -> pd.DataFrame:
        """:attr:`table` with a ``selected`` column marking the chosen candidate."""
        best = self.best
        return self.table.assign(selected=(self.table.n_components == best.n_components)
                                 & (self.table.covariance == best.covariance_type))

    def summary(self) -> str:
        row = self.table.loc[self.table[self.criterion].idxmin()]
        return (f"Chosen by {self.criterion.upper()}: K = {int(row.n_components)}, "
                f"{row.covariance} covariances ({self.criterion.upper()} {row[self.criterion]:.1f}"
                f", lower is better) among {len(self.table)} candidates.")


def _candidates(n_components, covariance, n: int):
    Ks = [n_components] if np.ndim(n_components) == 0 else list(n_components)
    structures = (list(STRUCTURES) if covariance is None else
                  [covariance] if isinstance(covariance, str) else list(covariance))
    if not Ks or not structures:
        raise ValueError("n_components and covariance must each name at least one candidate "
                         f"(got {list(Ks)!r} and {list(structures)!r})")
    Ks = sorted({check_n_components(K, n) for K in Ks})
    structures = list(dict.fromkeys(get_structure(c).name for c in structures))
    return Ks, structures


def select_model(X, n_components=range(1, 10), covariance=None,
                 prior="default", *, criterion: str = "bic", init="auto",
                 n_init: int | None = None, tol: float = 1e-8, max_iter: int = 1000,
                 acceleration: str | None = "squarem", random_state=0,
                 n_jobs: int = 1, executor=None) -> ModelSelection:
    """Fit every (K, covariance) candidate by MAP-EM and choose one by BIC or ICL.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_components : int or iterable of int
        Candidate K (each 1 ≤ K ≤ N).
    covariance : str or iterable of str, optional
        Candidate structures (names or mclust's aliases); by default every structure bayesgmm
        has (:data:`bayesgmm.covariance.STRUCTURES`).
    prior : "default", "mclust", None or callable
        A style name builds each candidate's data-scaled prior (:func:`~bayesgmm.default_prior`);
        None fits by maximum likelihood (a candidate whose covariance becomes singular gets no
        estimate, as mclust's NA); a callable ``prior(K, covariance)`` returns each
        candidate's GMMPrior (or None).
    criterion : {"bic", "icl"}
    init, n_init, tol, max_iter, acceleration
        As for :func:`~bayesgmm.fit_map` (``init`` is each candidate's own search).
    random_state : int or None
        Each candidate's search gets its own stream spawned from it.
    n_jobs : int
        Candidates fitted concurrently on this many threads (the EM kernels release the GIL).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Runs the candidates' searches instead (e.g. a ``ProcessPoolExecutor``, or a Dask
        ``Client`` to spread them over a cluster, which receives X once); the results are
        those of the serial run.  Not used for a Dask array X, whose fits are already spread
        over its blocks.

    Returns
    -------
    ModelSelection

    Examples
    --------
    >>> import bayesgmm as bg
    >>> sel = bg.select_model(bg.load_dataset("faithful"), range(1, 4), ["full", "tied"])
    >>> sel.table.columns.tolist()[:4]
    ['n_components', 'covariance', 'log_likelihood', 'log_posterior']
    >>> (sel.best.n_components, sel.best.covariance_type)
    (3, 'tied')
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is not a criterion; use one of {CRITERIA}")
    if not (prior is None or isinstance(prior, str) or callable(prior)):
        raise TypeError("prior must be a style name ('default', 'mclust'), None, or a function "
                        "(K, covariance) -> GMMPrior: each candidate needs its own prior")
    n_jobs = check_positive_int(n_jobs, "n_jobs")
    names = X.columns if hasattr(X, "columns") else None
    on_dask = is_dask_array(X)
    if not on_dask:
        X = check_data(X)
    Ks, structures = _candidates(n_components, covariance, len(X))
    cells = [(K, c) for K in Ks for c in structures]
    moments = dask_moments(X) if on_dask and isinstance(prior, str) else None
    resolve = (partial(resolve_dask_prior, moments=moments) if on_dask else resolve_prior)
    priors = {cell: resolve(prior(*cell) if callable(prior) else prior, X, *cell)
              for cell in cells}  # every candidate's prior validated before any fit
    seeds = dict(zip(cells, np.random.SeedSequence(random_state).spawn(len(cells))))
    settings = dict(tol=tol, max_iter=max_iter, acceleration=acceleration,
                    warn_convergence=False)

    def fit(cell, **start):
        return fit_map(X, cell[0], cell[1], priors[cell], **settings, **start)

    executor = None if on_dask else executor  # a Dask array's fits are spread over its blocks
    data = shared(executor, X)
    jobs = [(data, cell, priors[cell], dict(settings, init=init, n_init=n_init,
                                            random_state=np.random.default_rng(seeds[cell])))
            for cell in cells]
    with ThreadPoolExecutor(n_jobs) as pool:
        fits = dict(zip(cells, map_over(executor or pool, searched_fit, jobs)))
        if not on_dask:  # classifications of a Dask array are not gathered on the client
            _share_classifications(fits, cells, Ks, structures, fit, pool, X)
    if names is not None:
        fits = {cell: f if f is None else replace(f, feature_names=tuple(map(str, names)))
                for cell, f in fits.items()}
    table = pd.DataFrame([_row(K, c, f, X) for (K, c), f in fits.items()], columns=list(COLUMNS))
    if table[criterion].isna().all():
        raise ValueError("no candidate could be fitted: maximum likelihood broke down for every "
                         "one; use prior='default'")
    best = table.loc[table[criterion].idxmin()]
    return ModelSelection(table=table, best=fits[(int(best.n_components), best.covariance)],
                          criterion=criterion, fits=fits)


def _row(K: int, covariance: str, fit: MixtureFit | None, X) -> dict:
    if fit is None:  # as mclust's NA: no estimate for this candidate
        return {"n_components": K, "covariance": covariance, "converged": False}
    return {"n_components": K, "covariance": covariance, "log_likelihood": fit.log_likelihood,
            "log_posterior": fit.log_posterior, "n_parameters": fit.n_parameters(),
            "bic": fit.bic(X), "icl": fit.icl(X), "converged": fit.converged}


def _split_widest(fit: MixtureFit, X: np.ndarray) -> np.ndarray:
    """Responsibilities for K + 1 components: the fit's hard classification with its widest
    component (largest weight × total variance) split along its principal axis."""
    labels = fit.predict(X)
    spread = np.asarray(fit.weights) * np.trace(fit.covariance_matrices, axis1=1, axis2=2)
    k = int(np.argmax(spread))
    rows = labels == k
    if rows.sum() >= 2:
        centred = X[rows] - X[rows].mean(0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        labels = labels.copy()
        labels[np.flatnonzero(rows)[centred @ axis > 0]] = fit.n_components
    return np.eye(fit.n_components + 1)[labels]


def _share_classifications(fits, cells, Ks, structures, fit, pool, X) -> None:
    """Offer each candidate's classification to the other structures at its K and, split, to
    K + 1; keep whichever start reaches the higher log posterior (in place, until none gains)."""
    pending = list(cells)
    while pending:
        offers = []
        for K, c in pending:
            if fits[(K, c)] is None:
                continue
            resp = np.eye(K)[fits[(K, c)].predict(X)]
            offers += [((K, other), resp) for other in structures if other != c]
            nxt = Ks.index(K) + 1
            if nxt < len(Ks) and Ks[nxt] == K + 1:
                offers.append(((K + 1, c), _split_widest(fits[(K, c)], X)))
        results = list(pool.map(lambda offer: _try(fit, *offer), offers))
        pending = []
        for (cell, _), candidate in zip(offers, results):
            if candidate is not None and (fits[cell] is None or candidate.log_posterior >
                                          fits[cell].log_posterior + 1e-9 * abs(
                                              fits[cell].log_posterior)):
                fits[cell] = candidate
                if cell not in pending:
                    pending.append(cell)


def _try(fit, cell, resp):
    """EM from responsibilities; None if the start leaves a component empty or singular."""
    if np.any(resp.sum(0) == 0):
        return None
    try:
        return fit(cell, init=resp)
    except ValueError:
        return None
