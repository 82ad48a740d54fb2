"""Where the MAP-EM estimate sits in the MCMC posterior: ``bg.compare(fit, idata)``.

Works on results only — a :class:`~bayesgmm.MixtureFit` and ArviZ ``InferenceData`` — never on
either path's internals.  Draws are relabelled to the fit before any summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import _compat
from ._validation import check_probability
from .health import PARAMETERS, convergence_summary
from .result import parameter_entries
from .alignment import dense_draws, gaussian_kl
from .relabelling import (
    Relabelling,
    check_posterior,
    classification_log_probabilities,
    relabel,
)

__all__ = ["Report", "compare", "table_dataset", "parameter_table", "adjusted_rand_index"]


# ----------------------------------------------------------------------------- tables
def table_dataset(posterior: xr.Dataset, fit, hdi_prob: float = 0.94) -> xr.Dataset:
    """The MAP against the (relabelled) posterior, over the results' own dims.

    One variable per parameter with a leading ``stat`` dim: ``map``, ``mean``, ``median``,
    ``sd`` (ddof = 1, as ArviZ), ``hdi_lower``, ``hdi_upper`` (ArviZ HDI at ``hdi_prob``),
    ``map_quantile`` (fraction of draws below the MAP value, ties counted half), ``map_in_hdi``
    (1/0) and ``std_diff`` = (MAP − mean) / sd.
    """
    em = fit.to_xarray()
    lower, upper = _compat.hdi(posterior[list(PARAMETERS)], hdi_prob)
    sample = ("chain", "draw")
    out = {}
    for name in PARAMETERS:
        da, value = posterior[name], em[name]
        mean, sd = da.mean(sample), da.std(sample, ddof=1)
        lo, hi = lower[name], upper[name]
        stats = {"map": value, "mean": mean, "median": da.median(sample), "sd": sd,
                 "hdi_lower": lo, "hdi_upper": hi,
                 "map_quantile": (da < value).mean(sample) + 0.5 * (da == value).mean(sample),
                 "map_in_hdi": ((lo <= value) & (value <= hi)).astype(float),
                 "std_diff": xr.where(sd > 0, (value - mean) / sd.where(sd > 0, 1.0), 0.0)}
        out[name] = xr.concat(list(stats.values()),
                              dim=pd.Index(list(stats), name="stat"))
    return xr.Dataset(out)


def parameter_table(table: xr.Dataset) -> pd.DataFrame:
    """:func:`table_dataset` flattened: one row per scalar parameter (upper triangle for
    covariance matrices), a readable label as index, the statistics as columns."""
    rows, labels = [], []
    for name in PARAMETERS:
        for label, coords in parameter_entries(name, table[name]):
            rows.append(table[name].isel(coords).to_series())
            labels.append(label)
    frame = pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))
    frame.columns = list(frame.columns)
    return frame.astype({"map_in_hdi": bool})


# ----------------------------------------------------------------------------- model level
def adjusted_rand_index(a, b) -> float:
    """Hubert & Arabie's adjusted Rand index of two labelings."""
    a, b = np.asarray(a), np.asarray(b)
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    pairs = lambda x: (x * (x - 1) / 2.0).sum()  # noqa: E731
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([a.size]))
    maximum = 0.5 * (rows + cols)
    return 1.0 if maximum == expected else float((index - expected) / (maximum - expected))


def _observed_data(idata, fit):
    if hasattr(idata, "observed_data") and "x" in idata.observed_data:
        X = idata.observed_data["x"].values
        if X.shape[1] != fit.n_features:
            raise ValueError("the observed data's features do not match the fit")
        return X
    return None


@dataclass
class Report:
    """The comparison of a MAP-EM fit with the MCMC posterior (see :func:`compare`)."""

    fit: object
    idata: object
    relabelling: Relabelling
    table: pd.DataFrame
    table_xarray: xr.Dataset
    kl: pd.DataFrame
    clustering: dict
    predictive: dict
    convergence: dict
    hdi_prob: float
    X: np.ndarray | None = field(repr=False, default=None)

    @property
    def posterior(self) -> xr.Dataset:
        """The relabelled posterior draws."""
        return self.relabelling.posterior

    def summary(self) -> str:
        """A short plain-language summary."""
        t = self.table
        inside = int(t["map_in_hdi"].sum())
        worst = t["std_diff"].abs().idxmax()
        attrs = self.idata.posterior.attrs
        lines = [f"PARTIAL RUN: sampling was interrupted after {self.posterior.sizes['draw']} of "
                 f"{attrs['draws_requested']} draws per chain; read every number below as "
                 "provisional."] if attrs.get("partial") else []
        lines += [
            f"The MAP lies inside the {self.hdi_prob:.0%} HDI for {inside} of {len(t)} "
            f"parameters; largest standardised gap: {worst}, {t.loc[worst, 'std_diff']:+.2f} sd.",
            f"Relabelling ({self.relabelling.method}) permuted {self.relabelling.n_permuted} "
            f"draws; max R-hat {self.relabelling.rhat_before:.3f} before, "
            f"{self.relabelling.rhat_after:.3f} after.",
            f"Convergence: {self.convergence['divergences']} divergences, min bulk ESS "
            f"{self.convergence['min_ess_bulk']:.0f}, min tail ESS "
            f"{self.convergence['min_ess_tail']:.0f}.",
        ]
        if self.clustering:
            lines.append(f"Cluster agreement (EM labels vs posterior-modal labels): adjusted "
                         f"Rand index {self.clustering['adjusted_rand_index']:.3f}; mean "
                         f"|Δ responsibility| {self.clustering['mean_abs_resp_diff']:.4f}.")
        if self.predictive:
            p = self.predictive
            lines.append(f"Predictive accuracy: PSIS-LOO elpd {p['elpd_loo']:.1f} "
                         f"(SE {p['elpd_loo_se']:.1f}, max Pareto k {p['max_pareto_k']:.2f}) vs "
                         f"the MAP plug-in's in-sample log density {p['plugin_lppd']:.1f}.")
        return "\n".join(lines)

    def to_markdown(self, path, figures: bool = True) -> Path:
        """Write the tables (Markdown and CSV), the figures (PNG) and README.md to a folder.

        The folder is written atomically (:func:`bayesgmm._io.publish_folder`): an existing one
        is replaced only if bayesgmm wrote it, any other non-empty folder is refused.
        """
        from datetime import datetime, timezone

        from ._io import publish_folder

        provenance = {"bayesgmm": "comparison report",
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return publish_folder(path, lambda w: self.write_files(w, figures), provenance)

    def write_files(self, writer, figures: bool = True) -> None:
        """Write the report's files through a :class:`bayesgmm._io.FolderWriter`."""
        from . import plots

        writer.write("comparison.csv", self.table.to_csv())
        writer.write("kl.csv", self.kl.to_csv())
        sections = ["# MAP-EM vs posterior", "", self.summary(), "",
                    "## Parameters", "", self.table.to_markdown(floatfmt=".4g"), "",
                    "## Kullback–Leibler divergence per component", "",
                    self.kl.to_markdown(floatfmt=".4g"), "",
                    "## Clustering, prediction, convergence", "", "```",
                    json.dumps({"clustering": self.clustering, "predictive": self.predictive,
                                "convergence": self.convergence}, indent=2, default=float),
                    "```"]
        if figures:
            import matplotlib.pyplot as plt

            sections += ["", "## Figures", ""]
            for name, make in plots.REPORT_FIGURES.items():
                fig = make(self)
                writer.write_figure(f"{name}.png", fig, dpi=100, bbox_inches="tight")
                plt.close(fig)
                sections.append(f"![{name}]({name}.png)")
        writer.write("README.md", "\n".join(sections) + "\n")


def _kl_table(post: xr.Dataset, fit) -> pd.DataFrame:
    _, means, dense = dense_draws(post, fit.covariance_type)
    map_means, map_dense = np.asarray(fit.means), fit.covariance_matrices
    kl_draws = gaussian_kl(map_means[None], map_dense[None], means, dense)  # (S, K)
    kl_mean = gaussian_kl(map_means, map_dense, means.mean(0), dense.mean(0))
    q = np.quantile(kl_draws, [0.05, 0.5, 0.95], axis=0)
    return pd.DataFrame({"kl_map_to_posterior_mean": kl_mean, "kl_map_to_draw_q05": q[0],
                         "kl_map_to_draw_median": q[1], "kl_map_to_draw_q95": q[2],
                         "kl_map_to_draw_mean": kl_draws.mean(0)},
                        index=pd.Index(post["component"].values, name="component"))


def _clustering(post: xr.Dataset, fit, X) -> dict:
    weights, means, dense = dense_draws(post, fit.covariance_type)
    resp = np.zeros((len(X), fit.n_components))
    for chunk in np.array_split(np.arange(len(weights)), max(1, len(weights) // 200)):
        resp += np.exp(classification_log_probabilities(
            X, weights[chunk], means[chunk], dense[chunk])).sum(0)
    resp /= len(weights)
    em_resp = fit.predict_proba(X)
    return {"adjusted_rand_index": adjusted_rand_index(em_resp.argmax(1), resp.argmax(1)),
            "mean_abs_resp_diff": float(np.abs(em_resp - resp).mean()),
            "posterior_modal_labels": resp.argmax(1).tolist()}


def _predictive(idata, fit, X) -> dict:
    if not hasattr(idata, "log_likelihood"):
        return {}
    loo = _compat.loo(idata)
    plugin = float(fit.score_samples(X).sum())
    return {"elpd_loo": loo["elpd_loo"], "elpd_loo_se": loo["se"],
            "p_loo": loo["p_loo"], "max_pareto_k": float(np.max(loo["pareto_k"])),
            "plugin_lppd": plugin,
            "plugin_scoring": "Σ_n log p(x_n | θ̂_MAP), in-sample at the MAP-EM estimate (no "
                              "refit, so optimistic by about the effective number of "
                              "parameters); elpd_loo is PSIS leave-one-out over the posterior"}


def compare(fit, idata, *, method: str = "pivot", hdi_prob: float = 0.94) -> Report:
    """Put a MAP-EM fit and the MCMC posterior of the same model side by side.

    Parameters
    ----------
    fit : MixtureFit
    idata : arviz.InferenceData
        From :func:`bayesgmm.sample_posterior` (``posterior``; ``observed_data``,
        ``log_likelihood`` and ``sample_stats`` are used when present).
    method : {"pivot", "stephens"}
        Relabelling method (see :mod:`bayesgmm.relabelling`).
    hdi_prob : float

    Returns
    -------
    Report
    """
    hdi_prob = check_probability(hdi_prob, "hdi_prob")
    post = check_posterior(fit, idata)
    X = _observed_data(idata, fit)
    relabelled = relabel(post[list(PARAMETERS)], fit, method=method, X=X)
    rpost = relabelled.posterior
    table = table_dataset(rpost, fit, hdi_prob)
    return Report(
        fit=fit, idata=idata, relabelling=relabelled,
        table=parameter_table(table), table_xarray=table,
        kl=_kl_table(rpost, fit),
        clustering=_clustering(rpost, fit, X) if X is not None else {},
        predictive=_predictive(idata, fit, X) if X is not None else {},
        convergence=convergence_summary(rpost, getattr(idata, "sample_stats", None)),
        hdi_prob=hdi_prob, X=X)
