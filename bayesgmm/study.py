"""Run a study spec end to end (:func:`run_study`) and write its report folder
(:func:`write_report`), atomically: into a temporary folder beside the target, then moved into
place, so a failure never leaves a half-written report.

Stages, each using only the public API: ``fit`` (MAP-EM, with model selection over candidate
Ks), ``sample`` (NUTS from the MAP-EM estimate), ``compare`` (:func:`bayesgmm.compare`) and
``sensitivity`` (:func:`bayesgmm.prior_sweep` over the spec's grid, and power-scaling on the EM
path and, when sampled, on the MCMC path).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ._validation import check_data, check_n_components
from .datasets import load_dataset, read_csv, select_columns
from .em import fit_map
from .priors import adjust_prior, default_prior
from .result import MixtureFit
from .spec import SamplerSpec, StudySpec

__all__ = ["STAGES", "StudyResult", "load_data", "study_prior", "run_study", "write_report",
           "check_output_folder", "fit_json", "stages_of"]

#: every stage, in order
STAGES = ("fit", "sample", "compare", "sensitivity")
#: the file that marks a folder as a bayesgmm report (which may be replaced by a new run)
_MARKER = "provenance.json"


@dataclass
class StudyResult:
    """Everything a study produced (the stages not run are None)."""

    spec: StudySpec
    data: pd.DataFrame
    fit: MixtureFit
    selection: pd.DataFrame | None = None
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
            frame = read_csv(data.path, data.columns)
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


def study_prior(spec: StudySpec, X, n_components: int):
    """The spec's prior for K components: ``default_prior`` of its style with its overrides
    (None for ``style = "none"``)."""
    if spec.prior.style == "none":
        return None
    prior = default_prior(X, n_components, spec.model.covariance, style=spec.prior.style)
    try:
        prior = adjust_prior(prior, spec.prior.overrides)
        prior.check_compatible(n_components, X.shape[1], spec.model.covariance)
        return prior
    except ValueError as exc:
        raise spec.error(f"for K={n_components}: {exc}", "prior") from None


def _priors(spec: StudySpec, X) -> dict:
    """K -> prior for every candidate K, all validated before any fit."""
    out = {}
    for K in spec.model.n_components:
        try:
            check_n_components(K, len(X))
        except ValueError:
            raise spec.error(f"n_components={K} exceeds the {len(X)} rows of the data; use at "
                             f"most {len(X)}", "model", "n_components") from None
        out[K] = study_prior(spec, X, K)
    return out


# ---------------------------------------------------------------------- running
def _fit(spec: StudySpec, X, K: int, prior) -> MixtureFit:
    em = spec.em
    return fit_map(X, K, spec.model.covariance, prior=prior, init=em.init, n_init=em.n_init,
                   tol=em.tol, max_iter=em.max_iter, random_state=spec.seed)


def _select(spec: StudySpec, X, priors: dict) -> tuple[MixtureFit, pd.DataFrame | None]:
    if len(priors) == 1:
        (K, prior), = priors.items()
        return _fit(spec, X, K, prior), None
    fits = {K: _fit(spec, X, K, prior) for K, prior in priors.items()}
    table = pd.DataFrame(
        [{"n_parameters": f.n_parameters(), "log_likelihood": f.log_likelihood,
          "log_posterior": f.log_posterior, "bic": f.bic(X), "icl": f.icl(X),
          "converged": f.converged} for f in fits.values()],
        index=pd.Index(list(fits), name="n_components"))
    best = int(table[spec.model.criterion].idxmin())
    table["selected"] = table.index == best
    return fits[best], table


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
                           f"{spec.model.covariance} covariances, {len(X)} × {X.shape[1]} data",
                           lambda: _select(spec, X, priors))
    result = StudyResult(spec=spec, data=X, fit=fit, selection=selection, timings=timings)
    K, prior = fit.n_components, fit.prior
    sampler = spec.sampler or SamplerSpec()  # the defaults, for `bayesgmm sample` on data
    if "sample" in stages:
        from .posterior import sample_posterior

        result.idata = timed("sample", f"NUTS: {sampler.chains} chains × ({sampler.tune} tune + "
                             f"{sampler.draws} draws), starting at the MAP-EM estimate",
                             lambda: sample_posterior(
                                 X, K, spec.model.covariance, prior, init=fit,
                                 draws=sampler.draws, tune=sampler.tune, chains=sampler.chains,
                                 random_seed=spec.seed, progressbar=progress,
                                 target_accept=sampler.target_accept,
                                 noncentred_means=sampler.noncentred_means))
    if "compare" in stages:
        from .comparison import compare

        result.report = timed("compare", "comparing the MAP-EM estimate with the posterior",
                              lambda: compare(fit, result.idata, method=sampler.relabel,
                                              hdi_prob=sampler.hdi_prob))
    if "sensitivity" in stages:
        _sensitivity(result, progress, timed)
    return result


def _sensitivity(result: StudyResult, progress: bool, timed) -> None:
    from .sensitivity import em_sensitivity, prior_sweep, sensitivity_report, sweep_summary

    spec, X, fit = result.spec, result.data, result.fit
    settings = spec.sensitivity
    if settings is None or (settings.grid is None and not settings.power_scaling):
        raise ValueError(f"study {spec.name!r} has no [sensitivity] grid or power_scaling to run")
    if settings.grid:
        n = int(np.prod([len(v) for v in settings.grid.values()]))
        result.sweep = timed("sweep", f"prior sweep: {n} settings of {', '.join(settings.grid)}",
                             lambda: prior_sweep(
                                 X, fit.n_components, spec.model.covariance, fit.prior,
                                 {k: list(v) for k, v in settings.grid.items()}, base_fit=fit,
                                 n_init=spec.em.n_init, tol=spec.em.tol,
                                 max_iter=spec.em.max_iter, random_state=spec.seed,
                                 progress=progress))
        result.sweep_summary = sweep_summary(result.sweep)
    if settings.power_scaling:
        if result.idata is not None:
            result.power_scaling = timed("power_scaling", "power-scaling the prior and the "
                                         "likelihood (EM and MCMC)",
                                         lambda: sensitivity_report(fit, result.idata, X))
        else:
            result.power_scaling = timed("power_scaling", "power-scaling the prior and the "
                                         "likelihood (EM)", lambda: em_sensitivity(fit, X))


# ---------------------------------------------------------------------- outputs
def fit_json(fit: MixtureFit) -> dict:
    """The fit as JSON-ready data: :meth:`MixtureFit.to_dataset` in xarray's dict form
    (``xarray.Dataset.from_dict`` reads it back)."""
    return _jsonable(fit.to_dataset().to_dict(data="list"))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_output_folder(folder) -> Path:
    """Raise unless ``folder`` can receive a report: absent, empty, or an earlier report."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"output {str(folder)!r} is a file; choose a folder name")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / _MARKER).exists():
        raise FileExistsError(f"output folder {str(folder)!r} is not empty and is not a bayesgmm "
                              "report; choose another folder or empty it")
    return folder


def _write_table(table: pd.DataFrame, folder: Path, name: str, title: str) -> str:
    """Write ``name``.csv and ``name``.md; return the Markdown section for an index page."""
    table.to_csv(folder / f"{name}.csv")
    markdown = table.to_markdown(floatfmt=".4g")
    (folder / f"{name}.md").write_text(f"# {title}\n\n{markdown}\n")
    return f"## {title}\n\n{markdown}\n"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("bayesgmm", "numpy", "scipy", "pandas", "xarray", "pymc", "pytensor",
                    "arviz"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def write_report(result: StudyResult, folder, *, command: list[str] | None = None) -> Path:
    """Write a study's report folder (see the README.md it contains for the index).

    The folder is assembled in a temporary sibling and moved into place; an earlier report in
    ``folder`` is replaced, any other non-empty folder is refused.

    Returns
    -------
    Path
        The report folder.
    """
    folder = check_output_folder(folder).resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_contents(result, staging, command)
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            folder.rename(retired / folder.name)
            staging.rename(folder)
            shutil.rmtree(retired)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _write_contents(result: StudyResult, folder: Path, command) -> None:
    import matplotlib

    matplotlib.use("Agg")  # figures go to files only
    import matplotlib.pyplot as plt

    spec, fit, X = result.spec, result.fit, result.data
    (folder / "spec.toml").write_text(spec.to_toml())
    fit.save(folder / "em_fit.nc")
    (folder / "em_fit.json").write_text(json.dumps(fit_json(fit), indent=1) + "\n")
    files = {"spec.toml": "the effective study spec (every setting explicit)",
             "provenance.json": "package versions, seed, command, data checksum, timings",
             "em_fit.nc": "the MAP-EM estimate and its prior (netCDF; `bg.load` reads it)",
             "em_fit.json": "the same, as JSON"}
    if result.selection is not None:
        _write_table(result.selection, folder, "model_selection", "Model selection")
        files["model_selection.md"] = f"every candidate K and its {spec.model.criterion}"
        files["model_selection.csv"] = "the same table as CSV"
    if result.idata is not None:
        result.idata.to_netcdf(str(folder / "posterior.nc"))
        files["posterior.nc"] = "the posterior draws, log-likelihood and log-prior (ArviZ netCDF)"
    if result.report is not None:
        result.report.to_markdown(folder / "comparison")
        files["comparison/"] = ("MAP-EM vs posterior: README.md, comparison.csv, kl.csv, "
                                "figures")
    if result.sweep is not None or result.power_scaling is not None:
        files["sensitivity/"] = _write_sensitivity(result, folder / "sensitivity", plt)
    provenance = {"bayesgmm_study": spec.name, "seed": spec.seed,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": command, "spec_source": str(spec.source) if spec.source else None,
                  "data": {"rows": len(X), "columns": list(X.columns),
                           "sha256": hashlib.sha256(np.ascontiguousarray(X.to_numpy())
                                                    ).hexdigest()},
                  "timings_s": result.timings, "versions": _versions()}
    (folder / _MARKER).write_text(json.dumps(provenance, indent=1) + "\n")
    (folder / "README.md").write_text(_index(result, files, provenance))


def _write_sensitivity(result: StudyResult, folder: Path, plt) -> str:
    from .plots import plot_sweep

    folder.mkdir()
    sections = ["# Prior sensitivity", ""]
    if result.sweep is not None:
        result.sweep.to_netcdf(folder / "sweep.nc")
        scalars = ["log_posterior", "bic", "converged", "n_iter"]
        result.sweep[scalars].to_dataframe().to_csv(folder / "sweep_settings.csv")
        sections += [_sweep_sentence(result), "",
                     _write_table(result.sweep_summary, folder, "sweep_summary",
                                  "MAP estimates across the prior grid")]
        for variable in ("weights", "means", "covariances"):
            fig = plot_sweep(result.sweep, variable)
            fig.savefig(folder / f"sweep_{variable}.png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            sections.append(f"![sweep of {variable}](sweep_{variable}.png)")
        sections.append("")
    if result.power_scaling is not None:
        sections += [_power_scaling_sentence(result), "",
                     _write_table(result.power_scaling, folder, "power_scaling",
                                  "Power-scaling sensitivity")]
    (folder / "README.md").write_text("\n".join(sections) + "\n")
    return "sweep (netCDF, CSV, figures) and power-scaling tables: README.md"


def _sweep_sentence(result: StudyResult) -> str:
    sweep, table = result.sweep, result.sweep_summary
    n = int(sweep["log_posterior"].size)
    top = table.index[0]
    unconverged = int((~sweep["converged"].values.astype(bool)).sum())
    return (f"Across {n} prior settings ({', '.join(sweep['log_posterior'].dims)}), the MAP "
            f"estimate that moved most is {top}: from {table.loc[top, 'min']:.4g} to "
            f"{table.loc[top, 'max']:.4g} ({table.loc[top, 'relative_range']:.1%} of its mean "
            f"size). {unconverged} setting(s) did not converge.")


def _power_scaling_sentence(result: StudyResult) -> str:
    table = result.power_scaling
    if "verdict" not in table:
        worst = table["prior"].abs().idxmax()
        return (f"EM path only (no posterior): the MAP estimate most sensitive to the prior's "
                f"power is {worst}, d θ̂ / d log a = {table.loc[worst, 'prior']:+.4g}.")
    from .sensitivity import PARETO_K_THRESHOLD, SENSITIVITY_THRESHOLD

    flagged = table[table["verdict"] != ""]
    unreliable = int((~table["reliable"]).sum())
    if flagged.empty:
        text = (f"No parameter crosses priorsense's threshold ({SENSITIVITY_THRESHOLD}) for "
                "prior sensitivity: the prior is not driving the posterior.")
    else:
        text = (f"{len(flagged)} of {len(table)} parameters are flagged: "
                + "; ".join(f"{p} ({v})" for p, v in flagged["verdict"].head(5).items())
                + ("; …" if len(flagged) > 5 else "") + ".")
    if unreliable:
        text += (f" For {unreliable} parameter(s) the importance weights are unreliable "
                 f"(Pareto k̂ > {PARETO_K_THRESHOLD}); read their MCMC sensitivities with care.")
    return text


def _index(result: StudyResult, files: dict, provenance: dict) -> str:
    spec, fit, X = result.spec, result.fit, result.data
    source = (f"bundled data set `{spec.data.dataset}`" if spec.data.dataset
              else f"`{spec.data.path}`")
    lines = [f"# {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [f"Produced by bayesgmm {provenance['versions']['bayesgmm']} on "
              f"{provenance['created']} from [`spec.toml`](spec.toml), seed {spec.seed}.", "",
              "## Data", "",
              f"{len(X)} rows × {X.shape[1]} columns ({', '.join(map(str, X.columns))}) from "
              f"{source}{', standardised' if spec.data.standardize else ''}.", ""]
    if result.selection is not None:
        lines += ["## Model selection", "",
                  f"{spec.model.criterion.upper()} (lower is better) chooses K = "
                  f"{fit.n_components}; see [model_selection.md](model_selection.md).", ""]
    lines += ["## MAP-EM estimate", "", "```", fit.summary(), f"  BIC = {fit.bic(X):.3f}",
              "```", ""]
    if result.idata is not None:
        from .health import SamplerHealth

        health = result.idata.posterior.attrs.get("sampler_health")
        problems = SamplerHealth(**json.loads(health)).problems() if health else []
        lines += ["## Full posterior", ""]
        lines += (["The sampler reported:", ""] + [f"* {p}." for p in problems] if problems
                  else ["The sampler reported no problems (R-hat, ESS, divergences)."]) + [""]
    if result.report is not None:
        lines += ["## MAP-EM vs posterior", "", result.report.summary(), "",
                  "Details: [comparison/README.md](comparison/README.md).", ""]
    if result.sweep is not None or result.power_scaling is not None:
        lines += ["## Prior sensitivity", ""]
        if result.sweep is not None:
            lines += [_sweep_sentence(result), ""]
        if result.power_scaling is not None:
            lines += [_power_scaling_sentence(result), ""]
        lines += ["Details: [sensitivity/README.md](sensitivity/README.md).", ""]
    lines += ["## Files", ""] + [f"* `{name}` — {text}" for name, text in files.items()]
    return "\n".join(lines) + "\n"
