"""Sampler health of a posterior run: divergences, R-hat, ESS and labelling agreement.

Pure functions over ArviZ ``InferenceData`` and a MAP-EM result (no PyMC import).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["SamplerHealth", "SamplerWarning", "sampler_health", "chain_labellings",
           "convergence_summary", "max_rhat", "PARAMETERS"]

PARAMETERS = ("weights", "means", "covariances")


class SamplerWarning(UserWarning):
    """The sampler's output shows a problem (divergences, R-hat, ESS or labelling)."""


@dataclass(frozen=True)
class SamplerHealth:
    """Summary of one posterior run.

    Attributes
    ----------
    divergences : int
        Divergent transitions after tuning, over all chains.
    max_rhat : float
        Largest rank-normalised split R-hat over all parameter entries.
    min_ess_bulk, min_ess_tail : float
        Smallest bulk and tail effective sample sizes.
    chain_labellings : list of list of int
        Per chain, the pivot component each of its components matches (identity = pivot's).
    chains_disagree : bool
        Chains sit in different labellings of the components.
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    chain_labellings: list
    chains_disagree: bool

    def problems(self, rhat_limit: float = 1.01, min_ess: float = 400.0) -> list[str]:
        """Plain-language descriptions of what looks wrong (empty when nothing does)."""
        out = []
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions: the sampler could not follow "
                       "the posterior's geometry everywhere; raise target_accept or check the "
                       "prior")
        if self.chains_disagree:
            out.append("the chains sit in different labellings of the components "
                       f"({self.chain_labellings}); relabel before summarising, or start every "
                       "chain at the MAP-EM estimate (the default)")
        if not self.max_rhat <= rhat_limit:
            out.append(f"max R-hat is {self.max_rhat:.3f} (> {rhat_limit}): the chains have not "
                       "mixed; run longer or check for label switching")
        if not self.min_ess_bulk >= min_ess or not self.min_ess_tail >= min_ess:
            out.append(f"smallest effective sample size is {min(self.min_ess_bulk, self.min_ess_tail):.0f}"
                       f" (< {min_ess:.0f}): posterior summaries are imprecise; draw more")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def chain_labellings(posterior, pivot_means: np.ndarray, pivot_covariances: np.ndarray):
    """For each chain, the pivot component matched by each of its components.

    Chain-mean component means are assigned to the pivot's (Hungarian algorithm) by the
    Mahalanobis distance under the pivot's covariance matrices.

    Parameters
    ----------
    posterior : xarray.Dataset with ``means`` (chain, draw, component, feature)
    pivot_means : (K, d)
    pivot_covariances : (K, d, d) dense

    Returns
    -------
    list of list of int, one permutation per chain
    """
    chain_means = posterior["means"].mean("draw").transpose("chain", "component", "feature").values
    chol = np.linalg.cholesky(pivot_covariances)
    out = []
    for m in chain_means:
        diff = m[:, None, :] - pivot_means[None, :, :]  # (chain comp j, pivot comp k, d)
        y = np.linalg.solve(chol[None], diff[..., None])[..., 0]
        _, perm = linear_sum_assignment((y**2).sum(-1))
        out.append(perm.tolist())
    return out


def _varying(posterior) -> list[str]:
    """The mixture parameters present and not constant (K = 1 weights are the constant 1)."""
    return [p for p in PARAMETERS if p in posterior and float(posterior[p].std()) > 0]


def _extreme(ds, fn) -> float:
    values = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size else float("nan")


def max_rhat(posterior) -> float:
    """Largest rank-normalised split R-hat over the entries of weights, means, covariances."""
    import arviz as az

    return _extreme(az.rhat(posterior[_varying(posterior)]), np.max)


def convergence_summary(posterior, sample_stats=None) -> dict:
    """max R-hat, min bulk and tail ESS over the mixture parameters, and divergences."""
    import arviz as az

    post = posterior[_varying(posterior)]
    divergences = (int(sample_stats["diverging"].sum())
                   if sample_stats is not None and "diverging" in sample_stats else 0)
    return {"max_rhat": _extreme(az.rhat(post), np.max),
            "min_ess_bulk": _extreme(az.ess(post, method="bulk"), np.min),
            "min_ess_tail": _extreme(az.ess(post, method="tail"), np.min),
            "divergences": divergences}


def sampler_health(idata, pivot) -> SamplerHealth:
    """Health of a run; ``pivot`` is the :class:`~bayesgmm.MixtureFit` the chains started at."""
    labellings = chain_labellings(idata.posterior, np.asarray(pivot.means),
                                  pivot.covariance_matrices)
    return SamplerHealth(
        **convergence_summary(idata.posterior, idata.sample_stats),
        chain_labellings=labellings,
        chains_disagree=any(lab != labellings[0] for lab in labellings),
    )
