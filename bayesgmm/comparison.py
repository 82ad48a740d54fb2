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
from .em import fit_map
from .estep import MixtureParams
from .health import PARAMETERS, convergence_summary
from .result import parameter_entries
from .alignment import dense_draws, gaussian_kl
from .relabelling import (
    Relabelling,
    check_posterior,
    classification_log_probabilities,
    relabel,
)

__all__ = ["Report", "MapCheck", "compare", "map_check", "table_dataset", "parameter_table",
           "adjusted_rand_index"]


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


# ----------------------------------------------------------------------------- is the MAP the MAP?
@dataclass(frozen=True)
class MapCheck:
    """Is the MAP-EM estimate the highest mode the posterior draws know of?

    The draws' log posterior densities, log p(x | θ) + log p(θ) from the ``log_likelihood``
    and ``log_prior`` groups, are the same density ``fit.log_posterior`` reports (DESIGN §2).
    No draw can lie above the highest mode, so a draw above the fit proves the fit is a lower
    mode; EM started from such draws climbs to a higher one.

    Attributes
    ----------
    fit_log_posterior : float
    best_draw_log_posterior : float
        The highest log posterior density among the draws (NaN when the groups are missing).
    gain : float
        Nats the best mode reached by EM from the draws gains over ``fit_log_posterior``;
        0 when no draw lies above the fit.
    improved_fit : MixtureFit or None
        That higher mode, when there is one.
    draws_above : int
        How many draws lie above the fit.
    """

    fit_log_posterior: float
    best_draw_log_posterior: float
    gain: float = 0.0
    improved_fit: object = field(default=None, repr=False)
    draws_above: int = 0

    def summary(self) -> str:
        if not np.isfinite(self.best_draw_log_posterior):
            return ("MAP check: not possible (the draws carry no log_likelihood/log_prior "
                    "groups or no observed data).")
        if self.gain > 0:
            return (f"MAP check: the MAP-EM estimate is NOT the posterior's highest mode — "
                    f"{self.draws_above} draws lie above it, and EM started from them reached "
                    f"a mode {self.gain:.3g} nats higher (log posterior "
                    f"{self.fit_log_posterior + self.gain:.2f} vs {self.fit_log_posterior:.2f})"
                    "; report.map_check.improved_fit holds it.")
        return (f"MAP check: no draw lies above the MAP-EM estimate (best draw "
                f"{self.fit_log_posterior - self.best_draw_log_posterior:.3g} nats below).")

    def to_dict(self) -> dict:
        return {"fit_log_posterior": self.fit_log_posterior,
                "best_draw_log_posterior": self.best_draw_log_posterior, "gain": self.gain,
                "draws_above": self.draws_above,
                "improved_log_posterior": (None if self.improved_fit is None
                                           else self.improved_fit.log_posterior)}


def draw_log_posterior(idata) -> xr.DataArray | None:
    """log p(x | θ) + log p(θ) per draw (chain, draw), from the InferenceData's groups."""
    if not (hasattr(idata, "log_likelihood") and hasattr(idata, "log_prior")):
        return None
    total = 0.0
    for group in (idata.log_likelihood, idata.log_prior):
        for var in group.data_vars.values():
            total = total + var.sum([d for d in var.dims if d not in ("chain", "draw")])
    return total


def map_check(fit, idata, X=None, *, max_starts: int = 8) -> MapCheck:
    """Check a MAP-EM fit against its own posterior draws (see :class:`MapCheck`).

    Parameters
    ----------
    fit : MixtureFit
        With its prior (the draws' density is that prior's posterior).
    idata : arviz.InferenceData
        With ``log_likelihood`` and ``log_prior`` groups (both samplers give them).
    X : ndarray, optional
        The data; by default ``idata.observed_data["x"]``.
    max_starts : int
        EM runs from at most this many draws above the fit (the highest, one per chain first).

    Returns
    -------
    MapCheck
    """
    X = _observed_data(idata, fit) if X is None else np.asarray(X, dtype=float)
    lp = draw_log_posterior(idata)
    if lp is None or X is None or fit.prior is None:
        return MapCheck(float(fit.log_posterior), float("nan"))
    values = lp.transpose("chain", "draw").values
    above = values > fit.log_posterior
    check = MapCheck(float(fit.log_posterior), float(np.nanmax(values)),
                     draws_above=int(above.sum()))
    if not above.any():
        return check
    best = max(  # EM from the highest draw of each chain, highest first
        (_climb(fit, idata.posterior, X, c, int(np.argmax(values[c])))
         for c in np.argsort(-values.max(axis=1))[:max_starts] if above[c].any()),
        key=lambda f: f.log_posterior)
    return MapCheck(check.fit_log_posterior, check.best_draw_log_posterior,
                    gain=max(0.0, float(best.log_posterior - fit.log_posterior)),
                    improved_fit=best if best.log_posterior > fit.log_posterior else None,
                    draws_above=check.draws_above)


def _climb(fit, posterior, X, chain: int, draw: int):
    point = posterior.isel(chain=chain, draw=draw)
    start = MixtureParams(*(point[name].values for name in PARAMETERS))
    return fit_map(X, fit.n_components, fit.covariance_type, fit.prior, init=start,
                   tol=1e-10, max_iter=5000, warn_convergence=False)


@dataclass
class Report:
    """The comparison of a MAP-EM fit with the MCMC posterior (made by :func:`compare`).

    Attributes
    ----------
    fit, idata
        The inputs.
    relabelling : Relabelling
        The draws relabelled to the fit (``.posterior``, ``.idata``).
    table : pandas.DataFrame
        Per parameter entry: MAP, posterior mean, median, sd, HDI, the MAP's quantile, whether
        it is inside the HDI, and the standardised gap.
    kl, clustering, predictive, convergence
        Per-component KL divergences; cluster agreement; PSIS-LOO against the MAP plug-in;
        R-hat, ESS and divergences after relabelling.
    map_check : MapCheck
        Whether a higher mode exists among the draws.
    """

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
    map_check: MapCheck | None = None

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
        if self.map_check is not None:
            lines.append(self.map_check.summary())
        if self.predictive:
            p = self.predictive
            lines.append(f"Predictive accuracy: PSIS-LOO elpd {p['elpd_loo']:.1f} "
                         f"(SE {p['elpd_loo_se']:.1f}, max Pareto k {p['max_pareto_k']:.2f}, out "
                         f"of sample) vs the MAP plug-in's in-sample log density "
                         f"{p['plugin_lppd']:.1f} (not comparable one to one: the plug-in is "
                         f"evaluated on the data it was fitted to, optimistic by about the "
                         f"effective number of parameters, p_loo = {p['p_loo']:.1f}).")
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
        clustering = dict(self.clustering)
        labels = clustering.pop("posterior_modal_labels", None)
        if labels is not None:  # one row per observation: a CSV, not the README
            writer.write("labels.csv", pd.DataFrame({
                "posterior_modal_label": labels,
                "map_label": self.fit.predict(self.X)}).rename_axis("obs").to_csv())
            clustering["labels"] = "labels.csv (one row per observation)"
        sections = ["# MAP-EM vs posterior", "", self.summary(), "",
                    "## Parameters", "", self.table.to_markdown(floatfmt=".4g"), "",
                    "## Kullback–Leibler divergence per component", "",
                    self.kl.to_markdown(floatfmt=".4g"), "",
                    "## Clustering, prediction, convergence", "", "```",
                    json.dumps({"clustering": clustering, "predictive": self.predictive,
                                "convergence": self.convergence,
                                "map_check": (self.map_check.to_dict()
                                              if self.map_check is not None else None)},
                               indent=2, default=float),
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
        Tables, figures and ``map_check`` (:class:`MapCheck`: is the fit the highest mode
        the draws know of; when not, the higher mode EM reaches from them).

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> idata = bg.sample_posterior(X, 2, init=fit, sampler="gibbs", draws=300, tune=100,
    ...                             random_seed=0, progressbar=False)
    >>> report = bg.compare(fit, idata)
    >>> report.map_check.gain, bool(report.table["map_in_hdi"].all())
    (0.0, True)
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
        hdi_prob=hdi_prob, X=X, map_check=map_check(fit, idata, X))
