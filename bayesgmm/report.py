"""The report folder of a study (:func:`write_report`): README index, spec, provenance, the fit,
the posterior, the comparison and the sensitivity study.

The folder is written through :func:`bayesgmm._io.publish_folder`: assembled in a staging sibling
and moved into place, replacing only a report bayesgmm provably wrote.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import MARKER, PROVENANCE, FolderWriter, check_output_folder, publish_folder
from .study import StudyResult

__all__ = ["write_report", "check_output_folder", "write_table"]


def write_table(writer: FolderWriter, table: pd.DataFrame, name: str, title: str) -> str:
    """Write ``name``.csv and ``name``.md; return the Markdown section for an index page."""
    writer.write(f"{name}.csv", table.to_csv())
    markdown = table.to_markdown(floatfmt=".4g")
    writer.write(f"{name}.md", f"# {title}\n\n{markdown}\n")
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


def provenance_of(result: StudyResult, command: list[str] | None) -> dict:
    """What ``provenance.json`` records: study, seed, time, command, data checksum, timings and
    package versions."""
    spec, X = result.spec, result.data
    return {"bayesgmm_study": spec.name, "seed": spec.seed,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command, "spec_source": str(spec.source) if spec.source else None,
            "data": {"rows": len(X), "columns": list(X.columns),
                     "sha256": hashlib.sha256(np.ascontiguousarray(X.to_numpy())).hexdigest()},
            "timings_s": result.timings, "versions": _versions()}


def write_report(result: StudyResult, folder, *, command: list[str] | None = None) -> Path:
    """Write a study's report folder (see the README.md it contains for the index).

    The folder is assembled in a staging sibling and moved into place atomically.  An existing
    ``folder`` is replaced only if it is a report bayesgmm wrote (its marker and
    ``provenance.json`` agree, and it holds nothing else); any other non-empty folder is refused
    with :class:`~bayesgmm._io.OutputFolderError` and left untouched.

    Parameters
    ----------
    result : StudyResult
        From :func:`bayesgmm.run_study` (a complete run: partial posteriors are refused).
    folder : str or Path
    command : list of str, optional
        The command line recorded in ``provenance.json``.

    Returns
    -------
    Path
        The report folder.

    Examples
    --------
    >>> import tempfile, pathlib, bayesgmm as bg
    >>> result = bg.run_study(bg.load_spec("models/old_faithful.toml"), ("fit",),
    ...                       progress=False)
    >>> folder = bg.write_report(result, pathlib.Path(tempfile.mkdtemp()) / "report")
    >>> (folder / "README.md").is_file()
    True
    """
    if result.idata is not None and result.idata.posterior.attrs.get("partial"):
        raise ValueError("the posterior is from an interrupted run (partial draws); a report "
                         "is written only for complete runs")
    provenance = provenance_of(result, command)
    return publish_folder(folder, lambda writer: _write_contents(result, writer, provenance),
                          provenance)


def _write_contents(result: StudyResult, writer: FolderWriter, provenance: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")  # figures go to files only
    from ._compat import inference_data_bytes
    from .result import _ENCODERS

    spec, fit = result.spec, result.fit
    writer.write("spec.toml", spec.to_toml())
    writer.write("em_fit.nc", _ENCODERS[".nc"](fit))
    writer.write("em_fit.json", _ENCODERS[".json"](fit))
    files = {"spec.toml": "the effective study spec (every setting explicit)",
             PROVENANCE: "package versions, seed, command, data checksum, timings",
             "em_fit.nc": "the MAP-EM estimate and its prior (netCDF; `bg.load` reads it)",
             "em_fit.json": "the same, as JSON (`bg.load` reads it too)"}
    if result.selection is not None:
        import matplotlib.pyplot as plt

        write_table(writer, result.selection.marked_table.set_index(
            ["n_components", "covariance"]), "model_selection", "Model selection")
        ax = result.selection.plot()
        writer.write_figure("model_selection.png", ax.figure, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        files["model_selection.md"] = (f"every candidate (K, covariance) with its BIC, ICL and "
                                       f"log posterior; chosen by {spec.model.criterion}")
        files["model_selection.csv"] = "the same table as CSV"
        files["model_selection.png"] = f"{spec.model.criterion.upper()} against K per structure"
    if result.idata is not None:
        writer.write("posterior.nc", inference_data_bytes(result.idata))
        files["posterior.nc"] = "the posterior draws, log-likelihood and log-prior (ArviZ netCDF)"
    if result.report is not None:
        result.report.write_files(writer.sub("comparison"))
        files["comparison/"] = ("MAP-EM vs posterior: README.md, comparison.csv, kl.csv, "
                                "labels.csv, figures")
    if result.sweep is not None or result.power_scaling is not None:
        files["sensitivity/"] = _write_sensitivity(result, writer.sub("sensitivity"))
    files[MARKER] = "marks the folder as a report bayesgmm wrote (it may replace it)"
    writer.write("README.md", _index(result, files, provenance))


def _write_sensitivity(result: StudyResult, writer: FolderWriter) -> str:
    import matplotlib.pyplot as plt

    from .plots import plot_sweep

    sections = ["# Prior sensitivity", ""]
    if result.sweep is not None:
        writer.write_netcdf("sweep.nc", result.sweep)
        scalars = ["log_posterior", "bic", "converged", "n_iter"]
        writer.write("sweep_settings.csv", result.sweep[scalars].to_dataframe().to_csv())
        sections += [_sweep_sentence(result), "",
                     write_table(writer, result.sweep_summary, "sweep_summary",
                                 "MAP estimates across the prior grid")]
        for variable in ("weights", "means", "covariances"):
            fig = plot_sweep(result.sweep, variable)
            writer.write_figure(f"sweep_{variable}.png", fig, dpi=100, bbox_inches="tight")
            plt.close(fig)
            sections.append(f"![sweep of {variable}](sweep_{variable}.png)")
        sections.append("")
    if result.power_scaling is not None:
        sections += [result.power_scaling.summary(), "",
                     _power_scaling_section(writer, result.power_scaling.table)]
    writer.write("README.md", "\n".join(sections) + "\n")
    return "sweep (netCDF, CSV, figures) and power-scaling tables: README.md"


#: the power-scaling table's scale-free columns, as the report shows them, and their legend
_POWER_SCALING_COLUMNS = {
    "em_prior_sd": "EM: d θ̂ / d log a for prior power a, in posterior sds",
    "mcmc_prior": "MCMC: priorsense's sensitivity to the prior (cumulative JS distance)",
    "mcmc_likelihood": "MCMC: the same for the likelihood",
    "verdict": "plain-language diagnosis (priorsense's thresholds)",
}


def _power_scaling_section(writer: FolderWriter, table) -> str:
    """The full table as CSV; in Markdown the scale-free columns with a legend, and the Pareto
    k̂ of the importance weights — one number per direction, not per row — stated once."""
    writer.write("power_scaling.csv", table.to_csv())
    shown = table[[c for c in _POWER_SCALING_COLUMNS if c in table.columns]]
    legend = [f"* `{column}`: {text}" for column, text in _POWER_SCALING_COLUMNS.items()
              if column in shown.columns]
    notes = []
    for direction in ("prior", "likelihood"):
        column = f"pareto_k_{direction}"
        if column in table.columns and table[column].notna().any():
            k = float(table[column].iloc[0])
            notes.append(f"Pareto k̂ of the {direction}-scaling importance weights: {k:.2f} "
                         f"({'reliable' if k < 0.7 else 'unreliable'}; below 0.7 is reliable).")
    markdown = shown.to_markdown(floatfmt=".3g")
    text = "\n".join(["# Power-scaling sensitivity", "", *notes, "", markdown, "", *legend,
                      "", "Raw derivatives (in data units) and every column: "
                      "[power_scaling.csv](power_scaling.csv)."])
    writer.write("power_scaling.md", text + "\n")
    return "## " + text.removeprefix("# ") + "\n"


def _sweep_sentence(result: StudyResult) -> str:
    sweep, table = result.sweep, result.sweep_summary
    n = int(sweep["log_posterior"].size)
    top = table.index[0]
    unconverged = int((~sweep["converged"].values.astype(bool)).sum())
    return (f"Across {n} prior settings ({', '.join(sweep['log_posterior'].dims)}), the MAP "
            f"estimate that moved most is {top}: from {table.loc[top, 'min']:.4g} to "
            f"{table.loc[top, 'max']:.4g} ({table.loc[top, 'relative_range']:.1%} of its mean "
            f"size). {unconverged} setting(s) did not converge.")


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
                  f"{fit.n_components} with {fit.covariance_type} covariances among "
                  f"{len(result.selection.table)} candidates; see "
                  "[model_selection.md](model_selection.md).", "",
                  "![model selection](model_selection.png)", ""]
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
            lines += [result.power_scaling.summary(), ""]
        lines += ["Details: [sensitivity/README.md](sensitivity/README.md).", ""]
    lines += ["## Files", ""] + [f"* `{name}` — {text}" for name, text in files.items()]
    return "\n".join(lines) + "\n"
