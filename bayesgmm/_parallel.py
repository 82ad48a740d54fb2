"""Running independent fits on an executor: a thread or process pool, or a Dask Client.

Model selection's candidates and a sweep's searched settings are embarrassingly parallel
(DESIGN §8); bayesgmm writes no scheduler — it hands picklable jobs to whatever executor the
user has.
"""

from __future__ import annotations

from .em import fit_map

__all__ = ["map_over", "searched_fit", "shared"]


def map_over(executor, function, items) -> list:
    """``function`` over ``items`` in order: serially (None), by ``executor.map`` (a
    ``concurrent.futures.Executor``), or submit-and-gather on a Dask ``Client``."""
    if executor is None:
        return [function(item) for item in items]
    if hasattr(executor, "gather"):
        return executor.gather(executor.map(function, items, pure=False))
    return list(executor.map(function, items))


def shared(executor, X):
    """``X`` as the jobs for ``executor`` should carry it: on a Dask ``Client``, scattered to
    every worker once (jobs then carry a reference, resolved on the worker); otherwise ``X``
    itself (a process pool pickles it with each job)."""
    if hasattr(executor, "scatter"):
        return executor.scatter(X, broadcast=True)
    return X


def searched_fit(job):
    """One fit_map from its job ``(X, (K, covariance), prior, options)`` (a module-level
    function, so process pools and Dask workers receive it by reference); None when maximum
    likelihood (prior None) breaks down on a singular covariance (mclust's NA)."""
    X, (K, covariance), prior, options = job
    try:
        return fit_map(X, K, covariance, prior, **options)
    except ValueError:
        if prior is not None:
            raise
        return None
