"""Power-scaling sensitivity of the prior and the likelihood, on both inference paths.

* :func:`em_sensitivity`: the local sensitivity of every MAP estimate to power-scaling the prior
  (p(θ)^a, :func:`~bayesgmm.power_scale`) or the likelihood (p(x | θ)^a, a sample weight a): the
  central finite-difference derivative d θ̂ / d log a at a = 1.
* :func:`mcmc_sensitivity`: priorsense's diagnostic on the relabelled posterior (ArviZ ``psens``,
  PSIS importance weights with Pareto k̂).
* :func:`sensitivity_report`: both side by side with priorsense's verdicts, as a
  :class:`SensitivityReport`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import _compat
from ._validation import check_data, check_positive_number
from .em import fit_map
from .health import PARAMETERS
from .priors import power_scale
from .relabelling import check_posterior, relabel
from .result import MixtureFit, parameter_entries

__all__ = ["em_sensitivity", "mcmc_sensitivity", "power_scaling_weights", "sensitivity_report",
           "SensitivityReport", "verdict", "SENSITIVITY_THRESHOLD", "PARETO_K_THRESHOLD"]


def em_sensitivity(fit: MixtureFit, X, *, step: float = 0.01, tol: float = 1e-14,
                   max_iter: int = 20000) -> pd.DataFrame:
    """Local power-scaling sensitivity of each MAP estimate, d θ̂ / d log a at a = 1.

    θ̂(a) is refitted (warm-started from ``fit``) under the prior p(θ)^a (``prior`` column) and
    under the likelihood p(x | θ)^a (``likelihood`` column, every sample weighted by a), at
    a = e^(±step); the derivative is the central difference, with O(step²) truncation error.

    Parameters
    ----------
    fit : MixtureFit
        A MAP-EM fit (with a prior) of X.
    X : array-like, shape (n_samples, n_features)
    step : float
        h in a = e^(±h).
    tol, max_iter
        Each refit runs to this tolerance: its error is divided by 2h in the difference.

    Returns
    -------
    pandas.DataFrame
        Rows labelled as in :func:`bayesgmm.compare`; columns ``map``, ``prior``,
        ``likelihood``.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> fit = bg.fit_map(bg.load_dataset("faithful"), 2, random_state=0)
    >>> table = bg.em_sensitivity(fit, bg.load_dataset("faithful"))
    >>> "prior" in table.columns and len(table) == 12
    True
    """
    if not isinstance(fit, MixtureFit):
        raise TypeError(f"fit must be a MixtureFit from bg.fit_map, got {type(fit).__name__}")
    if fit.prior is None:
        raise ValueError("em_sensitivity needs a MAP fit (fit.prior is None)")
    step = check_positive_number(step, "step")
    X = check_data(X, n_features=fit.n_features)
    K = fit.n_components

    def refit(prior, weight):
        return fit_map(X, K, fit.covariance_type, prior=prior, init=fit, tol=tol, max_iter=max_iter,
                       sample_weight=np.full(len(X), weight), warn_convergence=False)

    def derivative(make):
        hi, lo = make(np.exp(step)), make(np.exp(-step))
        return {var: (np.asarray(getattr(hi, var)) - np.asarray(getattr(lo, var))) / (2 * step)
                for var in ("weights", "means", "covariances")}

    prior_d = derivative(lambda a: refit(power_scale(fit.prior, a, K), 1.0))
    lik_d = derivative(lambda a: refit(fit.prior, a))
    ds = fit.to_xarray()
    rows, labels = [], []
    for var in ("weights", "means", "covariances"):
        for label, coords in parameter_entries(var, ds[var]):
            index = tuple(coords.values())
            rows.append({"map": float(ds[var].isel(coords)), "prior": prior_d[var][index],
                         "likelihood": lik_d[var][index]})
            labels.append(label)
    return pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))


# ============================================================================ MCMC path
#: priorsense's threshold on the power-scaling sensitivity (Kallioinen et al. 2023, §3.2)
SENSITIVITY_THRESHOLD = 0.05
#: Pareto k̂ above which importance weights are unreliable (Vehtari et al. 2024)
PARETO_K_THRESHOLD = 0.7


def _log_component(idata, component: str) -> np.ndarray:
    """Σ of the log prior (or pointwise log likelihood) per draw, shape (chain, draw)."""
    group = idata.log_prior if component == "prior" else idata.log_likelihood
    total = 0.0
    for var in group.data_vars.values():
        total = total + var.sum([d for d in var.dims if d not in ("chain", "draw")])
    return total.transpose("chain", "draw").values


def power_scaling_weights(idata, a: float, component: str = "prior"):
    """PSIS-smoothed normalised importance weights from the posterior to the one whose
    ``component`` ("prior" or "likelihood") is raised to the power ``a``.

    Returns
    -------
    weights : ndarray, shape (chain, draw), summing to 1
    pareto_k : float
    """
    if component not in ("prior", "likelihood"):
        raise ValueError(f"component must be 'prior' or 'likelihood', got {component!r}")
    if not a > 0:
        raise ValueError(f"the power a must be positive, got {a}")
    log_w = (a - 1.0) * _log_component(idata, component)
    smoothed, k = _compat.psis_log_weights(log_w.ravel() - log_w.max())
    weights = np.exp(smoothed - smoothed.max())
    return (weights / weights.sum()).reshape(log_w.shape), float(k)


def mcmc_sensitivity(idata, fit: MixtureFit, delta: float = 0.01) -> pd.DataFrame:
    """Power-scaling sensitivity of the relabelled posterior (ArviZ ``psens``).

    Columns ``prior`` and ``likelihood``: priorsense's diagnostic, the cumulative
    Jensen–Shannon distance between the posterior and its power-scaled versions (a = 1 ± delta)
    per unit log a; ``pareto_k_prior``/``pareto_k_likelihood``: the largest Pareto k̂ of those
    importance weights (> 0.7: unreliable, refit instead).

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``log_prior`` and ``log_likelihood`` groups (:func:`bayesgmm.sample_posterior`).
    fit : MixtureFit
        The MAP-EM fit the draws are relabelled to.
    delta : float
        The power-scaling step in log a.

    Returns
    -------
    pandas.DataFrame
        One row per parameter entry.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> idata = bg.sample_posterior(X, 2, init=fit, sampler="gibbs", draws=300, tune=100,
    ...                             random_seed=0, progressbar=False)
    >>> table = bg.mcmc_sensitivity(idata, fit)
    >>> sorted(table.columns)[:2]
    ['likelihood', 'pareto_k_likelihood']
    """
    post = check_posterior(fit, idata)
    for group in ("log_prior", "log_likelihood"):
        if not hasattr(idata, group):
            raise ValueError(f"idata has no {group} group; sample with bg.sample_posterior")
    relabelled = relabel(post[list(PARAMETERS)], fit).posterior
    varying = [p for p in PARAMETERS if float(relabelled[p].std()) > 0]
    out = {}
    for component in ("prior", "likelihood"):
        sens = _compat.power_scaling_sensitivity(relabelled, idata.log_prior,
                                                 idata.log_likelihood, component, varying,
                                                 delta)
        k = max(power_scaling_weights(idata, a, component)[1] for a in (1 - delta, 1 + delta))
        out[component] = (sens, k)
    rows, labels = [], []
    for var in varying:
        for label, coords in parameter_entries(var, out["prior"][0][var]):
            row = {component: float(out[component][0][var].isel(coords)) for component in out}
            row["posterior_sd"] = float(relabelled[var].isel(coords).std(ddof=1))
            rows.append(row)
            labels.append(label)
    table = pd.DataFrame(rows, index=pd.Index(labels, name="parameter"))
    table["pareto_k_prior"], table["pareto_k_likelihood"] = out["prior"][1], out["likelihood"][1]
    return table


def verdict(prior: float, likelihood: float) -> str:
    """priorsense's diagnosis from the two sensitivities."""
    if prior >= SENSITIVITY_THRESHOLD and likelihood >= SENSITIVITY_THRESHOLD:
        return "potential prior-data conflict"
    if prior >= SENSITIVITY_THRESHOLD:
        return "potential strong prior / weak likelihood"
    return ""


@dataclass(frozen=True)
class SensitivityReport:
    """Power-scaling sensitivity of a fit — and of its posterior, when sampled — to the prior
    and the likelihood (:func:`sensitivity_report`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per parameter entry.  Always ``map``, ``em_prior``, ``em_likelihood``
        (d θ̂ / d log a, :func:`em_sensitivity`); with a posterior also ``em_prior_sd``
        (``em_prior`` in posterior standard deviations), ``mcmc_prior``, ``mcmc_likelihood``
        (:func:`mcmc_sensitivity`), ``pareto_k_prior``, ``pareto_k_likelihood``, ``verdict``
        (priorsense's thresholds) and ``reliable`` (both k̂ ≤ 0.7).
    """

    table: pd.DataFrame

    @property
    def has_posterior(self) -> bool:
        return "verdict" in self.table

    def summary(self) -> str:
        """One paragraph in plain words: what is flagged, and what is unreliable."""
        table = self.table
        if not self.has_posterior:
            worst = table["em_prior"].abs().idxmax()
            return (f"EM path only (no posterior): the MAP estimate most sensitive to the "
                    f"prior's power is {worst}, d θ̂ / d log a = "
                    f"{table.loc[worst, 'em_prior']:+.4g}.")
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
                     f"(Pareto k̂ > {PARETO_K_THRESHOLD}); read their MCMC sensitivities with "
                     "care.")
        return text


def sensitivity_report(fit: MixtureFit, idata, X) -> SensitivityReport:
    """The EM and MCMC power-scaling sensitivities side by side, with a verdict per parameter.

    Parameters
    ----------
    fit : MixtureFit
        A MAP-EM fit of X.
    idata : arviz.InferenceData or None
        Its posterior (with ``log_prior`` and ``log_likelihood`` groups); None gives the EM
        path alone.
    X : array-like, shape (n_samples, n_features)

    Returns
    -------
    SensitivityReport
        The MAP depends only on the ratio of the two powers, so ``em_prior`` and
        ``em_likelihood`` are each other's negatives.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> idata = bg.sample_posterior(X, 2, init=fit, sampler="gibbs", draws=300, tune=100,
    ...                             random_seed=0, progressbar=False)
    >>> report = bg.sensitivity_report(fit, idata, X)
    >>> "verdict" in report.table.columns
    True
    """
    em = em_sensitivity(fit, X)
    table = pd.DataFrame({"map": em["map"], "em_prior": em["prior"],
                          "em_likelihood": em["likelihood"]})
    if idata is None:
        return SensitivityReport(table)
    mcmc = mcmc_sensitivity(idata, fit)
    table["em_prior_sd"] = em["prior"] / mcmc["posterior_sd"]
    table = table.join(mcmc[["prior", "likelihood", "pareto_k_prior", "pareto_k_likelihood"]]
                       .rename(columns={"prior": "mcmc_prior",
                                        "likelihood": "mcmc_likelihood"}), how="inner")
    table["verdict"] = [verdict(p, lik) for p, lik in zip(table["mcmc_prior"],
                                                          table["mcmc_likelihood"])]
    table["reliable"] = ((table["pareto_k_prior"] <= PARETO_K_THRESHOLD)
                         & (table["pareto_k_likelihood"] <= PARETO_K_THRESHOLD))
    return SensitivityReport(table)
