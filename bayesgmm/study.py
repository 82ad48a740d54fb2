"""Run a study spec end to end (:func:`run_study`); :mod:`bayesgmm.report` writes its folder.

Stages, each using only the public API: ``fit`` (MAP-EM, with model selection over candidate
Ks), ``sample`` (NUTS from the MAP-EM estimate), ``compare`` (:func:`bayesgmm.compare`) and
``sensitivity`` (:func:`bayesgmm.prior_sweep` over the spec's grid, and power-scaling on the EM
path and, when sampled, on the MCMC path).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._validation import check_data, check_n_components
from .datasets import load_dataset, read_csv, select_columns
from .em import fit_map
from .priors import adjust_prior, default_prior
from .result import MixtureFit
from .selection import ModelSelection, select_model
from .spec import SamplerSpec, StudySpec

__all__ = ["STAGES", "StudyResult", "load_data", "study_prior", "run_study", "stages_of"]

#: every stage, in order
STAGES = ("fit", "sample", "compare", "sensitivity")


@dataclass
class StudyResult:
    """Everything a study produced (the stages not run are None)."""

    spec: StudySpec
    data: pd.DataFrame
    fit: MixtureFit
    selection: ModelSelection | None = None
    idata: object | None = None
    report: object | None = None
    sweep: object | None = None
    sweep_summary: pd.DataFrame | None = None
    power_scaling: pd.DataFrame | None = None
    timings: dict = field(default_factory=dict)


def stages_of(spec: StudySpec) -> tuple[str, ...]:
    """The stages a spec asks for: the fit, the posterior and comparison when it has a
    ``[sampler]`` table, the sensitivity study when it has ``[sensitivity]``."""
    return ("fit",) + (("sample", "compare") if spec.sampler else ()) + (
        ("sensitivity",) if spec.sensitivity else ())


# ---------------------------------------------------------------------- inputs
def load_data(spec: StudySpec) -> pd.DataFrame:
    """The spec's data: its columns as float64, standardised (z-scores) if asked."""
    data = spec.data
    source_key = "dataset" if data.dataset is not None else "path"
    try:
        if data.dataset is not None:
            frame = load_dataset(data.dataset, features_only=data.columns is None)
            frame = select_columns(frame, data.columns, f"data set {data.dataset!r}")
        else:
            frame = read_csv(data.path, data.columns, header=data.header)
        check_data(frame, name="the data")
    except FileNotFoundError as exc:
        raise spec.error(str(exc), "data", "path") from None
    except (ValueError, TypeError) as exc:
        raise spec.error(str(exc), "data", "columns" if data.columns else source_key) from None
    if data.standardize:
        sd = frame.std(ddof=1)
        constant = [str(c) for c in sd.index[~(sd > 0)]]
        if constant:
            raise spec.error(f"cannot standardise constant column(s) {constant}; drop them or "
                             "set standardize = false", "data", "standardize")
        frame = (frame - frame.mean()) / sd
    return frame


def study_prior(spec: StudySpec, X, n_components: int, covariance: str):
    """The spec's prior for K components of a structure: ``default_prior`` of its style with
    its overrides (None for ``style = "none"``)."""
    if spec.prior.style == "none":
        return None
    prior = default_prior(X, n_components, covariance, style=spec.prior.style)
    try:
        prior = adjust_prior(prior, spec.prior.overrides)
        prior.check_compatible(n_components, X.shape[1], covariance)
        return prior
    except ValueError as exc:
        raise spec.error(f"for K={n_components}, {covariance}: {exc}", "prior") from None


def _priors(spec: StudySpec, X) -> dict:
    """(K, covariance) -> prior for every candidate, all validated before any fit."""
    out = {}
    for K in spec.model.n_components:
        try:
            check_n_components(K, len(X))
        except ValueError:
            raise spec.error(f"n_components={K} exceeds the {len(X)} rows of the data; use at "
                             f"most {len(X)}", "model", "n_components") from None
        for covariance in spec.model.covariance:
            out[K, covariance] = study_prior(spec, X, K, covariance)
    return out


# ---------------------------------------------------------------------- running
def _select(spec: StudySpec, X, priors: dict):
    """The spec's model: its one candidate fitted, or the one :func:`select_model` chooses
    (returned too, as the second item; None for a single candidate)."""
    if len(priors) == 1:
        (K, covariance), prior = next(iter(priors.items()))
        return fit_map(X, K, covariance, prior=prior, random_state=spec.seed,
                       **spec.em.fit_options), None
    options = dict(spec.em.fit_options)
    selection = select_model(X, spec.model.n_components, spec.model.covariance,
                             prior=lambda K, covariance: priors[K, covariance],
                             criterion=spec.model.criterion, random_state=spec.seed, **options)
    return selection.best, selection


def run_study(spec: StudySpec, stages=None, *, progress: bool = True, log=None) -> StudyResult:
    """Run the stages of a study.

    Parameters
    ----------
    spec : StudySpec
    stages : sequence of str, optional
        Any of :data:`STAGES` (default: what the spec asks for, :func:`stages_of`); ``sample``
        and ``compare`` use the spec's sampler settings or the defaults, ``sensitivity`` its
        grid and power-scaling settings.
    progress : bool
        Progress bars for the sampler and the sweep.
    log : callable, optional
        Called with a one-line message as each stage starts.

    Returns
    -------
    StudyResult

    Examples
    --------
    >>> import bayesgmm as bg
    >>> result = bg.run_study(bg.load_spec("models/old_faithful.toml"), ("fit",),
    ...                       progress=False)
    >>> result.fit.n_components, result.idata is None
    (2, True)
    """
    stages = stages_of(spec) if stages is None else tuple(stages)
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {STAGES}")
    if "compare" in stages and "sample" not in stages:
        stages = stages + ("sample",)
    log = log or (lambda message: None)
    X = load_data(spec)
    priors = _priors(spec, X)
    if set(stages) - {"fit"} and spec.prior.style == "none":
        raise ValueError(f"study {spec.name!r} has no prior (style = 'none'); the posterior and "
                         "sensitivity stages need one")
    timings = {}

    def timed(name, message, work):
        log(message)
        start = time.perf_counter()
        out = work()
        timings[name] = round(time.perf_counter() - start, 3)
        return out

    candidates = spec.model.n_components
    fit, selection = timed("fit", f"MAP-EM: K = {', '.join(map(str, candidates))}, "
                           f"{', '.join(spec.model.covariance)} covariances, "
                           f"{len(X)} × {X.shape[1]} data",
                           lambda: _select(spec, X, priors))
    result = StudyResult(spec=spec, data=X, fit=fit, selection=selection, timings=timings)
    K, prior = fit.n_components, fit.prior
    sampler = spec.sampler or SamplerSpec()  # the defaults, for `bayesgmm sample` on data
    if "sample" in stages:
        from .sampling import resolve_sampler, sample_posterior

        method = resolve_sampler(sampler.method, prior)
        nuts = method in ("nuts", "nutpie")
        options = ({"target_accept": sampler.target_accept,
                    "noncentred_means": sampler.noncentred_means} if nuts
                   else {"thin": sampler.thin})
        result.idata = timed("sample", f"{method.upper()}: {sampler.chains} chains × "
                             f"({sampler.tune} {'tune' if nuts else 'burn-in'} + "
                             f"{sampler.draws} draws), starting at the MAP-EM estimate",
                             lambda: sample_posterior(
                                 X, K, fit.covariance_type, prior, init=fit,
                                 sampler=method, draws=sampler.draws,
                                 tune=sampler.tune, chains=sampler.chains,
                                 random_seed=spec.seed, progressbar=progress, **options))
    if "compare" in stages:
        from .comparison import compare

        result.report = timed("compare", "comparing the MAP-EM estimate with the posterior",
                              lambda: compare(fit, result.idata, method=sampler.relabel,
                                              hdi_prob=sampler.hdi_prob))
    if "sensitivity" in stages:
        _sensitivity(result, progress, timed)
    return result


def _sensitivity(result: StudyResult, progress: bool, timed) -> None:
    from .power_scaling import sensitivity_report
    from .sweep import prior_sweep, sweep_summary

    spec, X, fit = result.spec, result.data, result.fit
    settings = spec.sensitivity
    if settings is None or (settings.grid is None and not settings.power_scaling):
        raise ValueError(f"study {spec.name!r} has no [sensitivity] grid or power_scaling to run")
    if settings.grid:
        n = int(np.prod([len(v) for v in settings.grid.values()]))
        result.sweep = timed("sweep", f"prior sweep: {n} settings of {', '.join(settings.grid)}",
                             lambda: prior_sweep(
                                 X, fit.n_components, fit.covariance_type, fit.prior,
                                 {k: list(v) for k, v in settings.grid.items()}, base_fit=fit,
                                 n_init=spec.em.n_init, tol=spec.em.tol,
                                 max_iter=spec.em.max_iter, random_state=spec.seed,
                                 progress=progress))
        result.sweep_summary = sweep_summary(result.sweep)
    if settings.power_scaling:
        paths = "EM and MCMC" if result.idata is not None else "EM"
        result.power_scaling = timed("power_scaling", f"power-scaling the prior and the "
                                     f"likelihood ({paths})",
                                     lambda: sensitivity_report(fit, result.idata, X))
