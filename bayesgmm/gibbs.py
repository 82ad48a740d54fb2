"""The conjugate Gibbs sampler: the PyMC model's posterior, sampled by data augmentation.

Blocked Gibbs (Diebolt & Robert 1994) over the density of DESIGN §2, with the component labels
z as auxiliary variables and the means integrated out of the covariance step:

    z_n | θ          ~ Categorical(r_n1, …, r_nK)         r_nk ∝ π_k N(x_n | μ_k, Σ_k)
    π | z            ~ Dirichlet(α + n)                    n_k = #{n : z_n = k}
    Σ_b | z          ~ IW(ν0 + c_b, Ψ0_b + S_b)            each prior block b (1 × 1: IG)
    μ_k | Σ, z       ~ N(m_k, Σ_k / κ_k)                   κ_k = κ0 + n_k,
                                                           m_k = (κ0 m0 + n_k x̄_k) / κ_k

with B_k = W_k + (κ0 n_k / κ_k)(x̄_k − m0)(x̄_k − m0)ᵀ (W_k the labelled rows' scatter about
x̄_k), S = ``structure.pool(B)`` cut into the prior's blocks and c_b the matching counts
(``pool(n_k I)``: n_k for full and diag, N for tied, n_k d for spherical).  Every structure is
one code path through the covariance table.  The draws come back as the same
:class:`arviz.InferenceData` as the NUTS path (names, dims and groups), so the two samplers
cross-check each other (``tests/test_gibbs.py``).

The sampler runs in the fit's working coordinates (the data centred and divided by a power of
two, DESIGN §6), like MAP-EM; the labels step is one pass of the compiled E-step kernel.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable

import numpy as np

from . import _compat
from ._interrupt import InterruptGuard
from .covariance import CovarianceStructure
from .estep import Coordinates, Engine, MixtureParams, working_coordinates
from .health import SamplingInterrupted
from .priors import GMMPrior

_log = logging.getLogger("bayesgmm")

__all__ = ["sample_gibbs", "gibbs_sweeps", "ConjugateStep", "draw_parameters",
           "sample_inverse_wishart"]


def _kernels():
    from . import _kernels

    return _kernels


def _bartlett(rng: np.random.Generator, dof: np.ndarray, scale: np.ndarray):
    """IW(ν_b, Ψ_b) draws per block and a factor M_b of each (Σ_b = M_b M_bᵀ)."""
    n_blocks, b = scale.shape[0], scale.shape[-1]
    A = np.tril(rng.standard_normal((n_blocks, b, b)), -1)
    diag = np.arange(b)
    A[:, diag, diag] = np.sqrt(rng.chisquare(dof[:, None] - diag))
    return _kernels().bartlett_inverse_wishart(np.ascontiguousarray(scale, dtype=float), A)


def sample_inverse_wishart(rng: np.random.Generator, dof: np.ndarray,
                           scale: np.ndarray) -> np.ndarray:
    """Independent draws Σ_b ~ IW(ν_b, Ψ_b), batched over blocks (Bartlett decomposition).

    With Ψ = L Lᵀ and A lower triangular, A_ii² ~ χ²(ν − i) (i = 0 … b−1), A_ij ~ N(0, 1)
    below the diagonal, W = L⁻ᵀ A Aᵀ L⁻¹ ~ Wishart(ν, Ψ⁻¹) and Σ = W⁻¹ = (L A⁻ᵀ)(L A⁻ᵀ)ᵀ;
    no inverse of Ψ is formed.  For b = 1 this is ψ / χ²(ν), the IG(ν/2, ψ/2) variate.

    Parameters
    ----------
    rng : numpy.random.Generator
    dof : ndarray, shape (B,)
        ν_b > b − 1.
    scale : ndarray, shape (B, b, b)
        Symmetric positive definite Ψ_b.

    Returns
    -------
    ndarray, shape (B, b, b), exactly symmetric

    Examples
    --------
    >>> import numpy as np
    >>> draws = sample_inverse_wishart(np.random.default_rng(0), np.full(20000, 6.0),
    ...                                np.broadcast_to(np.eye(2), (20000, 2, 2)))
    >>> bool(np.allclose(draws.mean(0), np.eye(2) / 3, atol=0.01))   # E Σ = Ψ / (ν − b − 1)
    True
    """
    return _bartlett(rng, dof, scale)[0]


class ConjugateStep:
    """θ | z ~ p(θ | z, X) for one (prior, structure, K, d): the conjugate steps of the module
    docstring, with what does not change between sweeps computed once (the prior's blocks,
    the map from label counts n_k to block counts c_b).

    Parameters
    ----------
    prior : GMMPrior
        Proper in the means (κ0 > 0), in the coordinates of the data it will see.
    structure : CovarianceStructure
    K, d : int
    """

    def __init__(self, prior: GMMPrior, structure: CovarianceStructure, K: int, d: int):
        self.prior, self.structure, self.K, self.d = prior, structure, K, d
        self.prior_scale = np.broadcast_to(np.asarray(prior.scale, dtype=float),
                                           structure.shape(K, d))
        # c = C n: the trace of each block of pool(e_k I), over the block size, per unit count
        units = np.eye(K)[:, :, None, None] * np.eye(d)                      # (K, K, d, d)
        self.count_map = np.stack([
            np.trace(structure.blocks(np.asarray(structure.pool(u), dtype=float)),
                     axis1=-2, axis2=-1) for u in units], axis=1) / structure.block_size(d)
        self.alpha = prior.concentration_for(K)

    def draw(self, rng: np.random.Generator, X: np.ndarray, z: np.ndarray):
        """One draw of θ given labels ``z`` (N,) of the rows of ``X`` (N, d).

        Returns
        -------
        (MixtureParams, ndarray of int (K,))
            θ, and the label counts n_k it was drawn from.
        """
        p, s, K, d = self.prior, self.structure, self.K, self.d
        counts, xbar, W = _kernels().label_statistics(X, z, K)
        kappa = p.shrinkage + counts                                              # κ_k
        centre = (p.shrinkage * p.mean + counts[:, None] * xbar) / kappa[:, None]  # m_k
        diff = xbar - p.mean
        B = W + (p.shrinkage * counts / kappa)[:, None, None] * (diff[:, :, None] * diff[:, None])
        scale = s.blocks(self.prior_scale + s.pool(B))                           # Ψ0_b + S_b
        blocks, factors = _bartlett(rng, p.dof + self.count_map @ counts, scale)  # Σ_b | z
        covs = s.from_blocks(blocks, K, d)
        # μ_k | Σ_k ~ N(m_k, Σ_k / κ_k), through any F_k F_kᵀ = Σ_k: the blocks' factors
        # (1 × 1 blocks: the standard deviations, which expand to a diagonal factor)
        F = s.expand(s.from_blocks(factors, K, d), K, d)
        noise = np.einsum("kij,kj->ki", F, rng.standard_normal((K, d)))
        means = centre + noise / np.sqrt(kappa)[:, None]
        weights = rng.dirichlet(self.alpha + counts) if K > 1 else np.ones(1)    # π | z
        return MixtureParams(weights, means, covs), counts


def draw_parameters(rng: np.random.Generator, X: np.ndarray, z: np.ndarray,
                    prior: GMMPrior, structure: CovarianceStructure, K: int) -> MixtureParams:
    """One draw of θ = (π, Σ, μ) from p(θ | z, X) (a one-off :class:`ConjugateStep`).

    Parameters
    ----------
    rng : numpy.random.Generator
    X : ndarray, shape (N, d)
    z : ndarray of int, shape (N,)
        Labels in 0 … K−1.
    prior : GMMPrior
        Proper in the means (κ0 > 0), in the coordinates of X.
    structure : CovarianceStructure
    K : int

    Returns
    -------
    MixtureParams
    """
    return ConjugateStep(prior, structure, K, X.shape[1]).draw(rng, X, z)[0]


def _log_sum_exp_rows(a: np.ndarray) -> np.ndarray:
    """log Σ_k exp(a_nk), (N, K) → (N,), stable (max subtracted)."""
    peak = a.max(axis=1)
    return peak + np.log(np.exp(a - peak[:, None]).sum(axis=1))


def _draw_labels(rng: np.random.Generator, log_prob: np.ndarray) -> np.ndarray:
    """z_n ~ Categorical(softmax(log_prob_n)) by the Gumbel-max trick, (N, K) → (N,)."""
    return np.argmax(log_prob + rng.gumbel(size=log_prob.shape), axis=1)


def gibbs_sweeps(X: np.ndarray, start: MixtureParams, prior: GMMPrior,
                 structure: CovarianceStructure, rng: np.random.Generator):
    """An endless Gibbs chain: yields (θ, n, log_prob) after each sweep.

    Parameters
    ----------
    X : ndarray, shape (N, d), float64
        The data, in the coordinates of ``start`` and ``prior`` (keep them near unit scale:
        :func:`sample_gibbs` passes working coordinates).
    start : MixtureParams
    prior : GMMPrior
        κ0 > 0.
    structure : CovarianceStructure
    rng : numpy.random.Generator

    Yields
    ------
    theta : MixtureParams
        The new draw of (π, μ, Σ).
    counts : ndarray of int, shape (K,)
        The label counts n_k it was drawn from.
    log_prob : ndarray, shape (N, K)
        log π_k N(x_n | μ_k, Σ_k) at θ: the next sweep's label probabilities, and the
        pointwise log-likelihood after a log-sum-exp.
    """
    X = np.ascontiguousarray(X, dtype=float)
    K, d = np.shape(start.means)
    engine = Engine(X, None, structure, K, Coordinates(np.zeros(d), 1.0))
    step = ConjugateStep(prior, structure, K, d)
    log_prob = engine.log_prob(engine.from_params(start))
    while True:
        theta, counts = step.draw(rng, X, _draw_labels(rng, log_prob))
        log_prob = engine.log_prob(engine.from_params(theta))
        yield theta, counts, log_prob


def sample_gibbs(X: np.ndarray, features, K: int, structure: CovarianceStructure,
                 prior: GMMPrior, start: MixtureParams, *, draws: int, tune: int, chains: int,
                 random_seed: int | None, progressbar: bool = False,
                 allow_partial: bool = False, thin: int | Callable = 1):
    """Run ``chains`` Gibbs chains from ``start`` and return their draws as InferenceData.

    Chains advance in lockstep (one sweep of every chain per step), so an interrupt leaves
    every chain with the same number of draws.  ``tune`` sweeps are discarded (burn-in; Gibbs
    has nothing to tune), then every ``thin``-th sweep is kept.  Each chain has its own
    stream, spawned from ``random_seed``.

    Parameters
    ----------
    X : ndarray, shape (N, d), validated float64
    features : sequence of str, length d
    K : int
    structure : CovarianceStructure
    prior : GMMPrior
        κ0 > 0 (a flat prior on the means leaves an empty component's mean improper).
    start : MixtureParams
        Every chain starts here (the MAP-EM estimate's parameters).
    draws, tune, chains : int
    random_seed : int or None
    progressbar : bool
        One line of progress on stderr, updated every 5 % of the sweeps.
    allow_partial : bool
        On Ctrl-C, return the draws made so far (marked ``posterior.attrs["partial"]``)
        instead of raising :class:`~bayesgmm.health.SamplingInterrupted`.
    thin : int or callable
        Sweeps per kept draw, or a rule that chooses it at the end of burn-in: called with
        the second half of the burn-in's draws (an xarray.Dataset of ``weights``, ``means``
        and ``covariances`` over chain and draw), it returns an int ≥ 1.

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior`` (weights, means, covariances), ``log_likelihood`` (x over obs),
        ``log_prior`` (per parameter, as PyMC's), ``sample_stats`` (``log_posterior``;
        ``component_sizes``, the label counts n_k of the sweep that made each draw) and
        ``observed_data``.
    """
    n, d = X.shape
    coords = working_coordinates(X)
    Xw = (X - coords.center) / coords.scale
    working_prior = prior.rescaled(coords.center, coords.scale)
    offset = coords.log_density_offset(d)
    out = {"weights": np.empty((chains, draws, K)), "means": np.empty((chains, draws, K, d)),
           "covariances": np.empty((chains, draws) + structure.shape(K, d)),
           "log_likelihood": np.empty((chains, draws, n)),
           "component_sizes": np.empty((chains, draws, K), dtype=np.int64)}
    sweeps = [gibbs_sweeps(Xw, coords.to_working(start), working_prior, structure, rng)
              for rng in _chain_streams(random_seed, chains)]
    # the second half of burn-in is kept for a thinning rule to measure autocorrelation on
    recorded = tune - tune // 2 if callable(thin) else 0
    burn_in = {name: np.empty((chains, recorded) + out[name].shape[2:])
               for name in ("weights", "means", "covariances")}

    def sweep_all(keep_at=None, record_at=None):
        for c, chain in enumerate(sweeps):
            theta, counts, log_prob = next(chain)
            if keep_at is None and record_at is None:
                continue
            data = coords.to_data(theta)
            target, t = (out, keep_at) if keep_at is not None else (burn_in, record_at)
            target["weights"][c, t], target["means"][c, t] = data.weights, data.means
            target["covariances"][c, t] = data.covariances
            if keep_at is not None:
                out["log_likelihood"][c, t] = _log_sum_exp_rows(log_prob) + offset
                out["component_sizes"][c, t] = counts

    started, done = time.perf_counter(), 0
    _log.info("Gibbs: nothing to compile; sampling %d chains", chains)
    with InterruptGuard(sampling=True) as guard:
        for step in range(tune):
            if guard.interrupted:
                break
            sweep_all(record_at=step - (tune - recorded) if step >= tune - recorded else None)
            _progress(progressbar, "burn-in", step + 1, tune, chains, started)
        if callable(thin):
            thin = 1 if guard.interrupted else int(thin(_posterior_dataset(
                burn_in, features, structure, K)))
            _log.info("Gibbs: keeping one sweep in %d (thin)", thin)
        for t in range(draws):
            for sweep in range(thin):
                if guard.interrupted:
                    break
                sweep_all(keep_at=t if sweep == thin - 1 else None)
            if guard.interrupted:
                break
            done = t + 1
            _progress(progressbar, f"draws (thin {thin})", done, draws, chains, started)
    if progressbar and guard.interrupted:
        print(file=sys.stderr)  # end the progress line
    if guard.interrupted and (not allow_partial or done == 0):
        raise SamplingInterrupted(
            f"sampling was interrupted after {done} of {draws} draws per chain; nothing is "
            "returned (allow_partial=True keeps partial draws, marked as such)")
    elapsed = time.perf_counter() - started
    idata = _inference_data({k: v[:, :done] for k, v in out.items()}, X, features, prior,
                            structure, K)
    idata.posterior.attrs.update(sampler="gibbs", sampling_time=elapsed, tuning_steps=tune,
                                 thin=thin)
    if done < draws:
        idata.posterior.attrs.update(partial=1, draws_requested=draws)
    return idata


def _progress(show: bool, phase: str, step: int, total: int, chains: int, started: float):
    """One line on stderr, rewritten every 5 % of a phase."""
    if show and step % max(1, total // 20) == 0:
        end = "\n" if step == total else ""
        print(f"\rGibbs {phase}: {step}/{total} × {chains} chains "
              f"({time.perf_counter() - started:.1f} s)", end=end, file=sys.stderr)


def _chain_streams(random_seed, chains: int) -> list:
    """Independent generators, one per chain, from a seed, SeedSequence or Generator."""
    if isinstance(random_seed, np.random.Generator):
        return random_seed.spawn(chains)
    seq = (random_seed if isinstance(random_seed, np.random.SeedSequence)
           else np.random.SeedSequence(random_seed))
    return [np.random.default_rng(s) for s in seq.spawn(chains)]


def _posterior_dataset(draws: dict, features, structure: CovarianceStructure, K: int):
    """``weights``, ``means`` and ``covariances`` (chain, draw, …) with the model's dims."""
    import xarray as xr

    chains, n = draws["weights"].shape[:2]
    lead = ("chain", "draw")
    return xr.Dataset(
        {"weights": (lead + ("component",), draws["weights"]),
         "means": (lead + ("component", "feature"), draws["means"]),
         "covariances": (lead + structure.dims, draws["covariances"])},
        coords={"chain": np.arange(chains), "draw": np.arange(n), "component": np.arange(K),
                "feature": list(features),
                **({"feature_bis": list(features)} if "feature_bis" in structure.dims else {})})


def _inference_data(out: dict, X: np.ndarray, features, prior: GMMPrior,
                    structure: CovarianceStructure, K: int):
    """The NUTS path's InferenceData layout (names, dims, coords, groups) for Gibbs draws."""
    import xarray as xr

    chains, draws = out["weights"].shape[:2]
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "component": np.arange(K),
              "feature": list(features), "feature_bis": list(features),
              "obs": np.arange(len(X))}
    lead = ("chain", "draw")

    def dataset(variables: dict) -> xr.Dataset:
        return xr.Dataset({name: (lead + dims, values) for name, (dims, values)
                           in variables.items()}, coords={
            k: v for k, v in coords.items()
            if any(k in dims for dims, _ in variables.values()) or k in lead})

    posterior = _posterior_dataset(out, features, structure, K)
    flat = {k: out[k].reshape((chains * draws,) + out[k].shape[2:])
            for k in ("weights", "means", "covariances")}
    terms = prior.log_prior_terms(flat["weights"], flat["means"], flat["covariances"])
    terms = {k: v.reshape((chains, draws) + v.shape[1:]) for k, v in terms.items()}
    # one inverse-Wishart block per matrix, per variance otherwise (as PyMC's log_prior)
    block_dims = structure.dims[:-2] if structure.matrix_valued else structure.dims
    log_prior = {"means": (("component",), terms["means"]),
                 "covariances": (block_dims, terms["covariances"])}
    if K > 1:  # as in the PyMC model, K = 1 weights are the constant 1, not a variable
        log_prior["weights"] = ((), terms["weights"])
    log_prior = dataset(log_prior)
    log_posterior = (out["log_likelihood"].sum(-1)
                     + sum(log_prior[v].values.reshape(chains, draws, -1).sum(-1)
                           for v in log_prior.data_vars))
    sample_stats = dataset({"log_posterior": ((), log_posterior),
                            "component_sizes": (("component",), out["component_sizes"])})
    log_likelihood = dataset({"x": (("obs",), out["log_likelihood"])})
    observed = xr.Dataset({"x": (("obs", "feature"), X)},
                          coords={"obs": coords["obs"], "feature": coords["feature"]})
    return _compat.inference_data(posterior=posterior, log_likelihood=log_likelihood,
                                  log_prior=log_prior, sample_stats=sample_stats,
                                  observed_data=observed)
