"""Figures of a :class:`~bayesgmm.comparison.Report`; each function returns a matplotlib Figure.

Nothing is drawn at import; matplotlib is imported on first use.
"""

from __future__ import annotations

import numpy as np

from .alignment import dense_draws

__all__ = ["plot_ellipses", "plot_forest", "plot_marginals", "plot_traces", "plot_sweep",
           "plot_predictive", "predictive_draws", "plot_model_selection", "plot_classification",
           "plot_uncertainty", "plot_density", "REPORT_FIGURES"]


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
            ax.scatter(report.X[:, i], report.X[:, j], s=6, color="0.6", label="data")
        for k in range(fit.n_components):
            c = colors[k % len(colors)]
            for n, s in enumerate(pick):
                _ellipse(ax, means[s, k, [i, j]], dense[s, k][sub], color=c, alpha=0.15, lw=0.8,
                         label=(f"component {k}: {len(pick)} posterior draws" if n == 0
                                else None))
            _ellipse(ax, np.asarray(fit.means[k, [i, j]]), map_dense[k][sub], color=c, lw=2.5,
                     label=f"component {k}: MAP")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.set_title("Component 2-sd contours (the ellipse holding 86 % of each Gaussian's "
                     "mass):\nMAP-EM estimate (thick) and posterior draws (thin)", fontsize=10)
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
    """Posterior HDIs (lines), posterior means (dots) and the MAP (crosses) on each parameter's
    own scale: one panel per parameter and feature (weights; means and covariances of each
    feature pair), rows labelled by component."""
    plt = _plt()
    t = report.table
    groups = _forest_groups(t.index)
    heights = [len(rows) + 1.2 for _, rows in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(6.5, 0.3 * sum(heights) + 1.0),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, rows) in zip(axes[:, 0], groups):
        sub = t.loc[rows]
        y = np.arange(len(sub))[::-1]
        ax.hlines(y, sub["hdi_lower"], sub["hdi_upper"], color="C0", lw=2.5,
                  label=f"{report.hdi_prob:.0%} HDI")
        ax.plot(sub["mean"], y, "o", color="C0", ms=5, label="posterior mean")
        ax.plot(sub["map"], y, "x", color="C3", ms=8, mew=2, label="MAP-EM")
        ax.set_yticks(y, [_short_label(r) for r in rows], fontsize="small")
        ax.set_ylim(-0.8, len(sub) - 0.2)
        ax.set_title(title, fontsize="small", loc="left")
        ax.tick_params(axis="x", labelsize="small")
        ax.grid(axis="x", color="0.9")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize="small",
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_size_inches()[1]))
    return fig


def _forest_groups(labels):
    """Table rows grouped by parameter and feature(s): "weights", "means[·, eruptions]", …"""
    groups: dict = {}
    for label in labels:
        name, _, inside = label.partition("[")
        parts = inside.rstrip("]").split(", ")
        key = name if len(parts) <= 1 or name == "weights" else f"{name}[{', '.join(parts[1:])}]"
        groups.setdefault(key, []).append(label)
    return [(f"{key} (data units)" if key != "weights" else "weights", rows)
            for key, rows in groups.items()]


def _short_label(label: str) -> str:
    """"means[1, waiting]" → "component 1"; a label without a component is kept."""
    inside = label.partition("[")[2].rstrip("]").split(", ")
    return f"component {inside[0]}" if inside and inside[0].isdigit() else label


def plot_marginals(report, max_panels: int = 24):
    """Marginal posterior densities (a kernel density estimate of the draws) with the HDI
    shaded, the posterior mean and the MAP-EM value, one panel per parameter entry."""
    from scipy.stats import gaussian_kde

    plt = _plt()
    t = report.table.iloc[:max_panels]
    cols = min(4, len(t))
    rows = int(np.ceil(len(t) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.6), squeeze=False)
    post = report.posterior
    from .result import parameter_entries

    panels = [(label, name, coords) for name in ("weights", "means", "covariances")
              for label, coords in parameter_entries(name, post[name])][:max_panels]
    for ax, (label, name, coords) in zip(axes.ravel(), panels):
        draws = post[name].isel(coords).values.ravel()
        row = t.loc[label]
        lo, hi = draws.min(), draws.max()
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
        if np.ptp(draws) > 0:
            density = gaussian_kde(draws)(grid)
            ax.plot(grid, density, color="C0", lw=1.5)
            inside = (grid >= row["hdi_lower"]) & (grid <= row["hdi_upper"])
            ax.fill_between(grid, 0, density, where=inside, color="C0", alpha=0.25)
        ax.axvline(row["mean"], color="C0", lw=1, ls="--")
        ax.axvline(row["map"], color="C3", lw=2)
        ax.set_title(label, fontsize="small")
        ax.set_yticks([])
        ax.tick_params(labelsize="x-small")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("posterior density", fontsize="x-small")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig.legend([Line2D([], [], color="C0"), Patch(color="C0", alpha=0.25),
                Line2D([], [], color="C0", ls="--"), Line2D([], [], color="C3", lw=2)],
               ["posterior (kernel density)", f"{report.hdi_prob:.0%} HDI", "posterior mean",
                "MAP-EM"], loc="upper center", ncol=4, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_size_inches()[1]))
    return fig


def plot_traces(report, max_rows: int = 12):
    """Trace of every chain for each parameter entry (relabelled draws), one row per entry so
    features of different scales never share an axis; chains in distinct colours with a key."""
    plt = _plt()
    post = report.posterior
    from .result import parameter_entries

    entries = [(label, name, coords) for name in ("weights", "means", "covariances")
               for label, coords in parameter_entries(name, post[name])][:max_rows]
    chains = post.sizes["chain"]
    fig, axes = plt.subplots(len(entries), 1, figsize=(8, 1.25 * len(entries) + 0.8),
                             sharex=True, squeeze=False)
    for ax, (label, name, coords) in zip(axes[:, 0], entries):
        values = post[name].isel(coords).transpose("chain", "draw").values
        for c in range(chains):
            ax.plot(values[c], lw=0.5, alpha=0.8, color=f"C{c % 10}", label=f"chain {c}")
        ax.set_ylabel(label, fontsize="x-small", rotation=0, ha="right", va="center")
        ax.tick_params(labelsize="x-small")
    axes[-1, 0].set_xlabel("draw (after tuning / burn-in)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(chains, 8), fontsize="small",
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_size_inches()[1]))
    return fig


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
    from .covariance import MCLUST_NAMES

    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    table, criterion = selection.table, selection.criterion
    markers = "osD^vP*X<>hpd"
    groups = list(table.groupby("covariance", sort=False))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    for i, (name, rows) in enumerate(groups):
        label = name if MCLUST_NAMES[name] == name else f"{name} ({MCLUST_NAMES[name]})"
        ax.plot(rows["n_components"], rows[criterion], marker=markers[i % len(markers)],
                ms=4, color=colours[i % len(colours)], label=label)
    best = selection.best
    value = table.loc[(table.n_components == best.n_components)
                      & (table.covariance == best.covariance_type), criterion].iloc[0]
    ax.plot([best.n_components], [value], "o", ms=14, mfc="none", mec="k", mew=1.5,
            label=f"chosen: K = {best.n_components}, {best.covariance_type}")
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.set_xticks(sorted(table["n_components"].unique()))
    # beside the axes: with mclust's fourteen structures a legend inside hides the curves
    ax.legend(title="covariance", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0)
    ax.set_title(f"Model selection by {criterion.upper()}")
    return ax


# ----------------------------------------------------------------------------- mclust-style
def _pairs(fit, X, size: float = 3.2):
    """A figure with one panel per feature pair (lower triangle; one panel for d ≤ 2) and the
    (i, j) feature indices of each panel (j = None for d = 1)."""
    plt = _plt()
    d = fit.n_features
    if d <= 2:
        fig, ax = plt.subplots(figsize=(size * 1.6, size * 1.35))
        return fig, [(ax, 0, 1 if d == 2 else None)]
    fig, axes = plt.subplots(d - 1, d - 1, figsize=(size * (d - 1), size * (d - 1)),
                             squeeze=False)
    panels = []
    for r in range(d - 1):
        for c in range(d - 1):
            ax = axes[r, c]
            if c > r:
                ax.axis("off")
            else:
                panels.append((ax, c, r + 1))
    return fig, panels


def _feature_names(fit):
    return [str(f) for f in fit.to_xarray()["feature"].values]


def _label_axes(ax, names, i, j):
    ax.set_xlabel(names[i], fontsize="small")
    ax.set_ylabel(names[j] if j is not None else "density", fontsize="small")
    ax.tick_params(labelsize="x-small")


def plot_classification(fit, X):
    """mclust's classification plot: the data coloured by their MAP-EM label, with each
    component's 2-sd ellipse (86 % of its mass) and mean; a pairs grid for d > 2, a rug of
    labelled points under the component densities for d = 1.

    Returns
    -------
    matplotlib.figure.Figure
    """
    X = np.asarray(X, dtype=float)
    labels = fit.predict(X)
    names, dense = _feature_names(fit), fit.covariance_matrices
    fig, panels = _pairs(fit, X)
    for ax, i, j in panels:
        for k in range(fit.n_components):
            c = f"C{k % 10}"
            rows = labels == k
            if j is None:
                grid = np.linspace(X[:, i].min(), X[:, i].max(), 300)
                ax.plot(grid, _normal(grid, fit.weights[k], fit.means[k, i], dense[k, i, i]),
                        color=c, lw=2, label=f"component {k} ({rows.sum()} points)")
                ax.plot(X[rows, i], np.zeros(rows.sum()), "|", color=c, ms=12)
            else:
                ax.scatter(X[rows, i], X[rows, j], s=8, color=c, alpha=0.7,
                           label=f"component {k} ({rows.sum()} points)")
                sub = np.ix_([i, j], [i, j])
                _ellipse(ax, fit.means[k, [i, j]], dense[k][sub], color=c, lw=1.8)
                ax.plot(*fit.means[k, [i, j]], "+", color="k", ms=10, mew=1.5)
        _label_axes(ax, names, i, j)
    panels[0][0].legend(fontsize="x-small", loc="best",
                        title="MAP-EM label (ellipses: 2 sd)", title_fontsize="x-small")
    fig.suptitle(f"Classification: K = {fit.n_components}, {fit.covariance_type} covariances",
                 fontsize="medium")
    fig.tight_layout()
    return fig


def plot_uncertainty(fit, X):
    """mclust's uncertainty plot: each point sized and coloured by its classification
    uncertainty 1 − max_k r_nk (0: certain; at most 1 − 1/K), component ellipses for
    reference; a pairs grid for d > 2.

    Returns
    -------
    matplotlib.figure.Figure
    """
    X = np.asarray(X, dtype=float)
    uncertainty = 1.0 - fit.predict_proba(X).max(axis=1)
    names, dense = _feature_names(fit), fit.covariance_matrices
    fig, panels = _pairs(fit, X)
    top = max(1.0 - 1.0 / fit.n_components, 1e-12)
    sizes = 4 + 120 * uncertainty / top
    for ax, i, j in panels:
        y = np.zeros(len(X)) if j is None else X[:, j]
        points = ax.scatter(X[:, i], y, s=sizes, c=uncertainty, cmap="viridis", vmin=0,
                            vmax=top, alpha=0.8, edgecolors="none")
        if j is not None:
            sub = np.ix_([i, j], [i, j])
            for k in range(fit.n_components):
                _ellipse(ax, fit.means[k, [i, j]], dense[k][sub], color="0.3", lw=1, ls="--",
                         label="component 2-sd ellipses" if k == 0 else None)
        else:
            ax.set_yticks([])
        _label_axes(ax, names, i, j)
    colorbar = fig.colorbar(points, ax=[p[0] for p in panels], shrink=0.8)
    colorbar.set_label("uncertainty 1 − max responsibility")
    if panels[0][2] is not None:
        panels[0][0].legend(fontsize="x-small", loc="best")
    fig.suptitle("Classification uncertainty (larger, lighter points: less certain)",
                 fontsize="medium")
    return fig


def _mixture_density(weights, means, dense, grid_points):
    """Σ_k π_k N(x | μ_k, Σ_k) at (P, d') points for (marginal) parameters of d' features."""
    from scipy.stats import multivariate_normal

    return sum(w * multivariate_normal(m, S).pdf(grid_points)
               for w, m, S in zip(weights, means, dense))


def plot_density(fit, X, idata=None, n_draws: int = 100, random_state=0):
    """mclust's density plot: contours of the MAP-EM mixture density (each pair's marginal for
    d > 2, over the data), and with posterior draws ``idata`` the posterior mean density
    (dashed); for d = 1 the density curve with the 5–95 % band of the draws' densities.

    Returns
    -------
    matplotlib.figure.Figure
    """
    X = np.asarray(X, dtype=float)
    names, dense = _feature_names(fit), fit.covariance_matrices
    draws = None
    if idata is not None:
        w, m, S = dense_draws(idata.posterior, fit.covariance_type)
        pick = np.random.default_rng(random_state).choice(len(w), min(n_draws, len(w)),
                                                          replace=False)
        draws = (w[pick], m[pick], S[pick])
    fig, panels = _pairs(fit, X)
    for ax, i, j in panels:
        idx = [i] if j is None else [i, j]
        sub = np.ix_(range(fit.n_components), idx, idx)
        lo, hi = X[:, idx].min(0), X[:, idx].max(0)
        pad = 0.1 * (hi - lo + 1e-12)
        axes_grid = [np.linspace(a - p, b + p, 120 if j is None else 80)
                     for a, b, p in zip(lo, hi, pad)]
        if j is None:
            points = axes_grid[0][:, None]
            ax.plot(axes_grid[0], _mixture_density(fit.weights, fit.means[:, idx], dense[sub],
                                                   points), color="C0", lw=2, label="MAP-EM")
            if draws is not None:
                curves = np.stack([_mixture_density(wd, md[:, idx], Sd[sub], points)
                                   for wd, md, Sd in zip(*draws)])
                q = np.quantile(curves, [0.05, 0.95], axis=0)
                ax.fill_between(axes_grid[0], q[0], q[1], color="C0", alpha=0.25,
                                label=f"posterior 5–95 % ({len(curves)} draws)")
            ax.plot(X[:, i], np.zeros(len(X)), "|", color="0.4", ms=8, label="data")
        else:
            gx, gy = np.meshgrid(*axes_grid)
            points = np.column_stack([gx.ravel(), gy.ravel()])
            z = _mixture_density(fit.weights, fit.means[:, idx], dense[sub], points)
            levels = np.quantile(z, [0.5, 0.75, 0.9, 0.97, 0.995])
            ax.scatter(X[:, i], X[:, j], s=4, color="0.6", label="data")
            ax.contour(gx, gy, z.reshape(gx.shape), levels=np.unique(levels), colors="C0",
                       linewidths=1.2)
            ax.plot([], [], color="C0", label="MAP-EM density")
            if draws is not None:
                mean = np.mean([_mixture_density(wd, md[:, idx], Sd[sub], points)
                                for wd, md, Sd in zip(*draws)], axis=0)
                ax.contour(gx, gy, mean.reshape(gx.shape), levels=np.unique(levels),
                           colors="C3", linewidths=1, linestyles="--")
                ax.plot([], [], color="C3", ls="--", label="posterior mean density")
        _label_axes(ax, names, i, j)
    panels[0][0].legend(fontsize="x-small", loc="best")
    title = "Mixture density" + ("" if fit.n_features <= 2 else " (2-D marginals)")
    if panels[0][2] is not None:
        title += ": contours at the 50, 75, 90, 97 and 99.5 % quantiles of the grid's density"
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return fig


REPORT_FIGURES = {"ellipses": plot_ellipses, "forest": plot_forest,
                  "marginals": plot_marginals, "trace": plot_traces,
                  "predictive": plot_predictive}


def plot_sweep(sweep, variable: str = "weights", summary=None):
    """A prior sweep (:func:`bayesgmm.prior_sweep`): one panel per grid axis, each entry's
    relative change from its value under the base prior against that axis, the other axes held
    at the base prior's setting (the grid value nearest to it), the base marked.

    Parameters
    ----------
    sweep : xarray.Dataset
    variable : str
        A variable of the sweep (``weights``, ``means``, ``covariances``, ``log_posterior`` …).
    summary : callable, optional
        Dataset -> DataArray, e.g. ``lambda ds: ds.covariances.isel(feature=0, feature_bis=0)``
        or the smallest weight ``lambda ds: ds.weights.min("component")``; overrides
        ``variable``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .result import parameter_entries

    plt = _plt()
    axes_names = list(sweep["log_posterior"].dims)
    quantity = summary(sweep) if summary is not None else sweep[variable]
    name = getattr(quantity, "name", None) or variable
    base = {axis: _base_index(sweep, axis) for axis in axes_names}
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.8 * len(axes_names) + 1.8, 3.8),
                             squeeze=False)
    for ax, axis in zip(axes[0], axes_names):
        others = {d: base[d] for d in axes_names if d != axis}
        sub = quantity.isel(others) if others else quantity
        reference = sub.isel({axis: base[axis]})
        change = (sub - reference) / abs(reference).where(abs(reference) > 0, 1.0)
        x = sweep[axis].values
        for label, coords in parameter_entries(name, change.isel({axis: 0})):
            ax.plot(x, change.isel(coords).values, marker="o", ms=3, label=label)
        ax.axvline(x[base[axis]], color="k", ls=":", lw=1, label="base prior")
        ax.axhline(0, color="0.8", lw=0.8)
        if np.all(x > 0) and x.max() / x.min() > 5:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(x, [f"{v:g}" for v in x])  # the grid's own values, never crowded ticks
        ax.set_xlabel(axis + (" (multiplier on Ψ0)" if axis == "scale" else ""))
        held = ", ".join(f"{d} = {sweep[d].values[i]:.3g}" for d, i in others.items()
                         if np.ndim(sweep[d].values[i]) == 0)
        ax.set_title(f"{axis} varied" + (f"; {held} (base)" if held else ""), fontsize="small")
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    axes[0][0].set_ylabel(f"change of {name} from the base prior")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize="x-small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_size_inches()[0], 1))
    return fig


def _base_index(sweep, axis: str) -> int:
    """The grid index nearest the base prior's value of ``axis`` (recorded by prior_sweep;
    1 for the ``scale`` multiplier), else the middle."""
    values = np.asarray(sweep[axis].values, dtype=float)
    target = sweep.attrs.get(f"base_{axis}", 1.0 if axis == "scale" else None)
    if target is None or values.ndim != 1:
        return len(values) // 2
    if np.all(values > 0) and target > 0:
        return int(np.argmin(np.abs(np.log(values) - np.log(target))))
    return int(np.argmin(np.abs(values - target)))