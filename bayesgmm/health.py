"""Sampler health of a posterior run: divergences, R-hat, ESS and labelling agreement.

Pure functions over ArviZ ``InferenceData`` and a MAP-EM result (no PyMC import).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from . import _compat
from .alignment import apply_permutations, component_permutation, dense_draws, draw_permutations

__all__ = ["SamplerHealth", "SamplerWarning", "SamplingInterrupted", "sampler_health",
           "chain_labellings", "convergence_summary", "max_rhat", "PARAMETERS"]

PARAMETERS = ("weights", "means", "covariances")


class SamplerWarning(UserWarning):
    """The sampler's output shows a problem (divergences, R-hat, ESS or labelling)."""


class SamplingInterrupted(KeyboardInterrupt):
    """Sampling was interrupted (Ctrl-C) before every draw was made; nothing is returned."""


@dataclass(frozen=True)
class SamplerHealth:
    """Summary of one posterior run.

    Attributes
    ----------
    divergences : int
        Divergent transitions after tuning, over all chains.
    max_rhat : float
        Largest rank-normalised split R-hat over all parameter entries, after each draw's
        components are matched to the pivot's (label switching is not a convergence failure).
    min_ess_bulk, min_ess_tail : float
        Smallest bulk and tail effective sample sizes, likewise.
    relabelled_share : float
        Share of draws whose components sit in another labelling than the pivot's: the
        sampler moved between the posterior's label-permuted modes (routine for Gibbs, a sign
        of overlapping components for NUTS started at one mode).
    chain_labellings : list of list of int
        Per chain, its component matched to each pivot component (identity = pivot's).
    chains_disagree : bool
        Chains sit in different labellings of the components.
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    chain_labellings: list
    chains_disagree: bool
    relabelled_share: float = 0.0

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
            out.append(f"max R-hat is {self.max_rhat:.3f} (> {rhat_limit}) after matching every "
                       "draw's components to the MAP-EM estimate's: the chains have not mixed; "
                       "run longer")
        unsettled = not (self.max_rhat <= rhat_limit and self.min_ess_bulk >= min_ess)
        if self.relabelled_share > 0.01 and unsettled:
            out.append(f"the posterior is multimodal: {self.relabelled_share:.0%} of the draws "
                       "sit in another labelling of the components than the MAP-EM estimate "
                       "(overlapping components, or one the data barely identify); the "
                       "sampler moves between such modes slowly — summarise after relabelling "
                       "(bg.compare does), draw many more or further apart (sampler='gibbs' "
                       "with more draws or a larger thin: its sweeps are cheap) or consider "
                       "fewer components")
        if not self.min_ess_bulk >= min_ess or not self.min_ess_tail >= min_ess:
            out.append(f"smallest effective sample size is {min(self.min_ess_bulk, self.min_ess_tail):.0f}"
                       f" (< {min_ess:.0f}): posterior summaries are imprecise; draw more")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def chain_labellings(posterior, covariance: str, pivot) -> list[list[int]]:
    """For each chain, the chain component matched to each pivot component.

    Each chain's mean Gaussian components (mean of its draws' means and covariance matrices)
    are assigned to the pivot's by the Hungarian algorithm on symmetric KL divergence, the
    same assignment :func:`bayesgmm.relabel` makes per draw.

    Parameters
    ----------
    posterior : xarray.Dataset with ``means`` and ``covariances`` over (chain, draw, …)
    covariance : str
        The structure of ``covariances``.
    pivot : MixtureFit

    Returns
    -------
    list of list of int, one permutation per chain (the identity: the pivot's labelling)
    """
    out = []
    for chain in posterior["chain"].values:
        _, means, dense = dense_draws(posterior.sel(chain=[chain]), covariance)
        out.append(component_permutation(means.mean(0), dense.mean(0), pivot).tolist())
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
    return _extreme(_compat.rhat(posterior[_varying(posterior)]), np.max)


def convergence_summary(posterior, sample_stats=None) -> dict:
    """max R-hat, min bulk and tail ESS over the mixture parameters, and divergences."""
    post = posterior[_varying(posterior)]
    divergences = (int(sample_stats["diverging"].sum())
                   if sample_stats is not None and "diverging" in sample_stats else 0)
    return {"max_rhat": _extreme(_compat.rhat(post), np.max),
            "min_ess_bulk": _extreme(_compat.ess(post, method="bulk"), np.min),
            "min_ess_tail": _extreme(_compat.ess(post, method="tail"), np.min),
            "divergences": divergences}


def aligned_to_pivot(posterior, covariance: str, pivot):
    """Each draw's components matched to the pivot's (Hungarian on symmetric KL).

    Returns
    -------
    (xarray.Dataset, float)
        The reordered draws, and the share of draws that needed reordering.
    """
    perms = draw_permutations(posterior, pivot)
    moved = float(np.mean(np.any(perms != np.arange(perms.shape[-1]), axis=-1)))
    return apply_permutations(posterior, perms), moved


def sampler_health(idata, pivot) -> SamplerHealth:
    """Health of a run; ``pivot`` is the :class:`~bayesgmm.MixtureFit` the chains started at."""
    labellings = chain_labellings(idata.posterior, pivot.covariance_type, pivot)
    aligned, moved = aligned_to_pivot(idata.posterior, pivot.covariance_type, pivot)
    return SamplerHealth(
        **convergence_summary(aligned, getattr(idata, "sample_stats", None)),
        chain_labellings=labellings,
        chains_disagree=any(lab != labellings[0] for lab in labellings),
        relabelled_share=moved,
    )
