"""Figures of a :class:`~bayesgmm.comparison.Report`; each function returns a matplotlib Figure.

Nothing is drawn at import; matplotlib is imported on first use.
"""

from __future__ import annotations

import numpy as np

from . import _compat
from .alignment import dense_draws

__all__ = ["plot_ellipses", "plot_forest", "plot_marginals", "plot_traces", "plot_sweep",
           "plot_predictive", "predictive_draws", "plot_model_selection", "REPORT_FIGURES"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _ellipse(ax, mean, cov, n_sd=2.0, **kwargs):
    """The n_sd contour of N(mean, cov) in 2-D, from the Cholesky factor."""
    t = np.linspace(0, 2 * np.pi, 100)
    circle = np.stack([np.cos(t), np.sin(t)])
    path = mean[:, None] + n_sd * np.linalg.cholesky(cov) @ circle
    ax.plot(path[0], path[1], **kwargs)


def plot_ellipses(report, features=(0, 1), n_draws: int = 40, random_state=0):
    """Data with the MAP's 2-sd covariance ellipses over those of posterior draws.

    For d = 1: a histogram with the MAP's component densities over the draws'.
    """
    plt = _plt()
    fit = report.fit
    weights, means, dense = dense_draws(report.posterior, fit.covariance_type)
    rng = np.random.default_rng(random_state)
    pick = rng.choice(len(weights), size=min(n_draws, len(weights)), replace=False)
    map_dense = fit.covariance_matrices
    names = list(fit.to_xarray()["feature"].values)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6, 5))
    if fit.n_features == 1:
        grid = np.linspace(*_range(report, fit, 0), 300)
        if report.X is not None:
            ax.hist(report.X[:, 0], bins=30, density=True, color="0.85")
        for k in range(fit.n_components):
            c = colors[k % len(colors)]
            for s in pick:
                ax.plot(grid, _normal(grid, weights[s, k], means[s, k, 0], dense[s, k, 0, 0]),
                        color=c, alpha=0.15, lw=0.8)
            ax.plot(grid, _normal(grid, fit.weights[k], fit.means[k, 0], map_dense[k, 0, 0]),
                    color=c, lw=2.5, label=f"component {k} (MAP)")
        ax.set_xlabel(names[0])
        ax.set_ylabel("density")
    else:
        i, j = features
        sub = np.ix_([i, j], [i, j])
        if report.X is not None:
            ax.scatter(report.X[:, i], report.X[:, j], s=6, color="0.6")
        for k in range(fit.n_components):
            c = colors[k % len(colors)]
            for s in pick:
                _ellipse(ax, means[s, k, [i, j]], dense[s, k][sub], color=c, alpha=0.15, lw=0.8)
            _ellipse(ax, np.asarray(fit.means[k, [i, j]]), map_dense[k][sub], color=c, lw=2.5,
                     label=f"component {k} (MAP)")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
    ax.set_title("MAP (thick) and posterior draws (thin)")
    ax.legend(loc="best", fontsize="small")
    return fig


def _range(report, fit, j):
    if report.X is not None:
        lo, hi = report.X[:, j].min(), report.X[:, j].max()
    else:
        sd = np.sqrt(fit.covariance_matrices[:, j, j]).max()
        lo, hi = fit.means[:, j].min() - 3 * sd, fit.means[:, j].max() + 3 * sd
    pad = 0.1 * (hi - lo + 1e-12)
    return lo - pad, hi + pad


def _normal(x, weight, mean, var):
    return weight * np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)


def plot_forest(report):
    """Posterior HDIs (lines), means (dots) and the MAP (crosses), one row per parameter."""
    plt = _plt()
    t = report.table
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(t) + 1.2))
    y = np.arange(len(t))[::-1]
    # each row on its own scale: (value − posterior mean) / posterior sd
    scale = t["sd"].where(t["sd"] > 0, 1.0)
    lo = (t["hdi_lower"] - t["mean"]) / scale
    hi = (t["hdi_upper"] - t["mean"]) / scale
    ax.hlines(y, lo, hi, color="C0", lw=2, label=f"{report.hdi_prob:.0%} HDI")
    ax.plot(np.zeros(len(t)), y, "o", color="C0", label="posterior mean")
    ax.plot(t["std_diff"], y, "x", color="C3", ms=8, mew=2, label="MAP")
    ax.set_yticks(y, t.index)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel("(value − posterior mean) / posterior sd")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_marginals(report, max_panels: int = 24):
    """Marginal posterior densities (histograms of the draws) with the MAP as a line."""
    plt = _plt()
    t = report.table.iloc[:max_panels]
    cols = min(4, len(t))
    rows = int(np.ceil(len(t) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.2 * rows), squeeze=False)
    post = report.posterior
    from .result import parameter_entries

    panels = [(label, name, coords) for name in ("weights", "means", "covariances")
              for label, coords in parameter_entries(name, post[name])][:max_panels]
    for ax, (label, name, coords) in zip(axes.ravel(), panels):
        draws = post[name].isel(coords).values.ravel()
        ax.hist(draws, bins=40, density=True, color="C0", alpha=0.6)
        ax.axvline(t.loc[label, "map"], color="C3", lw=2)
        ax.set_title(label, fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_traces(report):
    """ArviZ trace plots of the relabelled draws."""
    return _compat.plot_trace(report.posterior, ["weights", "means", "covariances"],
                              compact=True)


def predictive_draws(posterior, covariance: str, n_rows: int, n_draws: int = 200,
                     random_state=0) -> np.ndarray:
    """Replicated data sets from the posterior predictive: for each of ``n_draws`` posterior
    draws θ, ``n_rows`` rows x ~ p(x | θ).

    Returns
    -------
    ndarray, shape (n_draws, n_rows, d)
    """
    weights, means, dense = dense_draws(posterior, covariance)
    rng = np.random.default_rng(random_state)
    pick = rng.choice(len(weights), size=min(n_draws, len(weights)), replace=False)
    chol = np.linalg.cholesky(dense[pick])                                    # (S, K, d, d)
    u = rng.random((len(pick), n_rows, 1))
    labels = (u > np.cumsum(weights[pick], axis=1)[:, None, :-1]).sum(-1)   # (S, n)
    rows = np.arange(len(pick))[:, None]
    noise = rng.standard_normal((len(pick), n_rows, means.shape[-1], 1))
    return means[pick][rows, labels] + (chol[rows, labels] @ noise)[..., 0]


def plot_predictive(report, n_draws: int = 200, bins: int = 30, random_state=0):
    """Posterior predictive check per feature: the data's histogram against the 5–95 % band
    and median of the same histogram over data sets replicated from posterior draws.

    A feature whose data histogram leaves the band where the model puts too much or too little
    mass shows where the mixture misfits (e.g. skewed or heavy-tailed clusters).
    """
    plt = _plt()
    fit = report.fit
    if report.X is None:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no observed data in the InferenceData", ha="center", va="center")
        ax.axis("off")
        return fig
    X = report.X
    reps = predictive_draws(report.posterior, fit.covariance_type, len(X), n_draws,
                            random_state)
    names = list(fit.to_xarray()["feature"].values)
    d = fit.n_features
    cols = min(d, 3)
    rows = -(-d // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= d:
            ax.axis("off")
            continue
        edges = np.histogram_bin_edges(X[:, j], bins=bins)
        width = np.diff(edges)
        observed = np.histogram(X[:, j], bins=edges)[0] / (len(X) * width)
        replicated = np.stack([np.histogram(r[:, j], bins=edges)[0] for r in reps]) / (
            len(X) * width)
        lo, mid, hi = np.quantile(replicated, [0.05, 0.5, 0.95], axis=0)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.fill_between(centres, lo, hi, step="mid", color="C0", alpha=0.3,
                        label="posterior predictive, 5–95 %")
        ax.step(centres, mid, where="mid", color="C0", lw=1, label="posterior predictive, median")
        ax.step(centres, observed, where="mid", color="k", lw=1.5, label="data")
        ax.set_xlabel(names[j])
        ax.set_ylabel("density (per unit of the feature)")
    axes.flat[0].legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Posterior predictive check: histograms of the data and of {len(reps)} "
                 f"replicated data sets ({bins} bins)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_model_selection(selection, ax=None):
    """mclust's BIC plot: the criterion against K, one line per covariance structure, the
    chosen candidate circled (lower is better on bayesgmm's scale).

    Parameters
    ----------
    selection : ModelSelection
        From :func:`bayesgmm.select_model`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    table, criterion = selection.table, selection.criterion
    markers = "osD^vP*X"
    for i, (name, rows) in enumerate(table.groupby("covariance", sort=False)):
        ax.plot(rows["n_components"], rows[criterion], marker=markers[i % len(markers)],
                ms=4, label=name)
    best = selection.best
    value = table.loc[(table.n_components == best.n_components)
                      & (table.covariance == best.covariance_type), criterion].iloc[0]
    ax.plot([best.n_components], [value], "o", ms=14, mfc="none", mec="k", mew=1.5,
            label=f"chosen: K = {best.n_components}, {best.covariance_type}")
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.set_xticks(sorted(table["n_components"].unique()))
    ax.legend(title="covariance", fontsize=8)
    ax.set_title(f"Model selection by {criterion.upper()}")
    return ax


REPORT_FIGURES = {"ellipses": plot_ellipses, "forest": plot_forest,
                  "marginals": plot_marginals, "trace": plot_traces,
                  "predictive": plot_predictive}


def plot_sweep(sweep, variable: str = "weights", summary=None):
    """A prior sweep (:func:`bayesgmm.prior_sweep`): one panel per grid axis, the chosen
    quantity against that axis (other axes held at their middle setting), one line per entry.

    Parameters
    ----------
    sweep : xarray.Dataset
    variable : str
        A variable of the sweep (``weights``, ``means``, ``covariances``, ``log_posterior`` …).
    summary : callable, optional
        Dataset -> DataArray, e.g. ``lambda ds: ds.covariances.isel(feature=0, feature_bis=0)``
        or the smallest weight ``lambda ds: ds.weights.min("component")``; overrides
        ``variable``.
    """
    plt = _plt()
    axes_names = [d for d in sweep["log_posterior"].dims]
    quantity = summary(sweep) if summary is not None else sweep[variable]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.5 * len(axes_names), 3.5),
                             squeeze=False)
    for ax, axis in zip(axes[0], axes_names):
        others = {d: sweep.sizes[d] // 2 for d in axes_names if d != axis}
        sub = quantity.isel(others) if others else quantity
        x = sweep[axis].values
        entry_dims = [d for d in sub.dims if d != axis]
        flat = sub.transpose(axis, *entry_dims).values.reshape(len(x), -1)
        for j in range(flat.shape[1]):
            ax.plot(x, flat[:, j], marker="o", ms=3)
        if np.all(x > 0) and x.max() / x.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(axis)
        held = ", ".join(f"{d}={sweep[d].values[i]:.3g}" for d, i in others.items()
                         if np.ndim(sweep[d].values[i]) == 0)
        ax.set_title(held or axis, fontsize="small")
    axes[0][0].set_ylabel(getattr(quantity, "name", None) or variable)
    fig.tight_layout()
    return fig
