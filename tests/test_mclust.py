"""MAP-EM with style="mclust" reproduces R's mclust (me() with priorControl()).

Fixtures: tests/fixtures/mclust_fits.json, made by tests/fixtures/make_mclust_fixtures.R from
mclust's own initial classification (hc + hclass).  mclust stops when the relative change of its
log-likelihood falls below 1e-14, which leaves it a little short of the fixed point; the allowed gap
is derived from how far one of our EM steps still moves mclust's answer (below).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import bayesgmm as bg
from bayesgmm.covariance import get_structure
from tests.reference import log_likelihood, log_prior

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "mclust_fits.json").read_text())
CASES = FIXTURES["cases"]


def _flat(weights, means, covs):
    return np.concatenate([np.ravel(weights), np.ravel(means), np.ravel(covs)])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['data']}-K{c['n_components']}-"
                                                       f"{c['model']}")
def test_converged_fit_equals_mclust(case):
    X = bg.load_dataset(case["data"]).to_numpy()
    K, covariance = case["n_components"], case["covariance"]
    prior = bg.default_prior(X, K, covariance, style="mclust")
    # the default prior itself equals mclust's defaultPrior()
    ref = case["prior"]
    assert prior.dof == ref["dof"] and prior.shrinkage == ref["shrinkage"]
    np.testing.assert_allclose(prior.mean, ref["mean"], rtol=1e-14)
    np.testing.assert_allclose(prior.scale, ref["scale"], rtol=1e-13)

    ours = _at_mclusts_fixed_point(X, K, covariance, prior, case)
    assert ours.log_likelihood == pytest.approx(case["loglik"], rel=1e-8)


def _at_mclusts_fixed_point(X, K, covariance, prior, case):
    """Our EM from mclust's initial classification, checked to reach mclust's fixed point."""
    mclust = _flat(case["weights"], case["means"], case["covariances"])
    R = np.eye(K)[case["init_labels"]]
    ours = bg.fit_map(X, K, covariance, prior=prior, init=R, tol=0, max_iter=3000,
                      warn_convergence=False)
    # Distance of mclust's answer to the fixed point θ* of the EM map T: EM contracts at a rate
    # ρ near θ*, so ‖θ_m − θ*‖ ≤ ‖T(θ_m) − θ_m‖ / (1 − ρ); ρ is estimated from two steps.
    init = dict(weights=case["weights"], means=case["means"],
                covariances=np.asarray(case["covariances"]))
    steps = [bg.fit_map(X, K, covariance, prior=prior, init=init, tol=0, max_iter=m,
                        acceleration=None, warn_convergence=False) for m in (1, 2)]
    t1, t2 = (_flat(s.weights, s.means, s.covariances) for s in steps)
    step1, step2 = np.abs(t1 - mclust), np.abs(t2 - t1)
    rho = min(np.linalg.norm(step2) / np.linalg.norm(step1), 0.999)
    bound = 2 * step1 / (1 - rho) + 1e-10 * np.abs(mclust)  # ×2: the rate is a linearisation
    gap = np.abs(_flat(ours.weights, ours.means, ours.covariances) - mclust)
    assert np.all(gap <= bound), (gap / bound).max()
    return ours


# ----------------------------------------------------------------------------- EEI and EII
# tests/fixtures/mclust_structures.json, from make_mclust_structures.R
STRUCTURE_FIXTURES = json.loads((Path(__file__).parent / "fixtures" /
                                 "mclust_structures.json").read_text())


def _case_id(c):
    return f"{c['data']}-K{c['n_components']}-{c['model']}"


@pytest.mark.parametrize("case", [c for c in STRUCTURE_FIXTURES["fits"] if not c["prior"]],
                         ids=_case_id)
def test_maximum_likelihood_equals_mclust(case):
    """Without a prior mclust's EEI and EII are the maximum-likelihood EM: same fixed point."""
    X = bg.load_dataset(case["data"]).to_numpy()
    ours = _at_mclusts_fixed_point(X, case["n_components"], case["model"], None, case)
    assert ours.covariance_type == case["covariance"]
    assert ours.log_likelihood == pytest.approx(case["loglik"], rel=1e-10)


def _reference_log_posterior(X, prior, covariance, weights, means, covariances):
    return (log_likelihood(X, weights, means, covariances, covariance)
            + log_prior(prior, weights, means, covariances, covariance))


@pytest.mark.parametrize("case", [c for c in STRUCTURE_FIXTURES["fits"] if c["prior"]],
                         ids=_case_id)
def test_with_mclusts_prior_ours_is_the_mode_mclust_misses(case):
    """With priorControl() mclust's EEI keeps the maximum-likelihood means (no shrinkage toward
    the prior mean) and its EII leaves the prior scale out of the variance's numerator
    (docs/derivation.md §11).  Ours is the mode of the stated density: a numerical optimiser
    of scipy's log posterior (tests/reference.py) started there gains nothing, while from
    mclust's answer the same density rises."""
    from scipy.optimize import minimize

    X = bg.load_dataset(case["data"]).to_numpy()
    K, covariance = case["n_components"], case["covariance"]
    d = X.shape[1]
    prior = bg.default_prior(X, K, covariance, style="mclust")
    ours = bg.fit_map(X, K, covariance, prior=prior, init=np.eye(K)[case["init_labels"]],
                      tol=0, max_iter=3000, warn_convergence=False)

    def unpack(u):
        logits, rest = np.append(u[:K - 1], 0.0), u[K - 1:]
        weights = np.exp(logits - np.logaddexp.reduce(logits))
        means = rest[:K * d].reshape(K, d)
        covs = np.exp(rest[K * d:]).reshape(get_structure(covariance).shape(K, d))
        return weights, means, covs

    def pack(weights, means, covs):
        logw = np.log(weights)
        return np.concatenate([logw[:-1] - logw[-1], np.ravel(means), np.log(np.ravel(covs))])

    def objective(u):
        return -_reference_log_posterior(X, prior, covariance, *unpack(u))

    at_ours = pack(ours.weights, ours.means, ours.covariances)
    assert -objective(at_ours) == pytest.approx(ours.log_posterior, rel=1e-12)
    polished = minimize(objective, at_ours, method="BFGS")
    assert -polished.fun - ours.log_posterior < 1e-7  # nothing left to gain: the mode
    at_mclust = pack(np.asarray(case["weights"]), np.asarray(case["means"]),
                     np.asarray(case["covariances"]))
    gain = ours.log_posterior + objective(at_mclust)
    assert gain > 1e-6, gain  # mclust's answer is below the mode of the density it states


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical", "EEI", "EII"])
def test_parameter_counts_are_mclusts(covariance):
    """n_parameters (and so BIC) counts as mclust's nMclustParams, d = 1..4, K = 1..4."""
    cells = [c for c in STRUCTURE_FIXTURES["n_parameters"] if c["covariance"] == covariance]
    assert len(cells) == 16
    for c in cells:
        K, d = c["n_components"], c["d"]
        fit = bg.MixtureFit(weights=np.full(K, 1 / K), means=np.zeros((K, d)),
                            covariances=get_structure(covariance).identity(K, d),
                            covariance_type=covariance, prior=None, log_likelihood=0.0,
                            log_posterior=0.0, history=np.zeros(1), n_iter=0, converged=True,
                            n_samples=10.0)
        assert fit.n_parameters() == c["n_parameters"], (K, d)


@pytest.mark.parametrize("data", ["faithful", "iris"])
def test_maximum_likelihood_bic_table_is_mclusts(data):
    """select_model(prior=None) over EEI and EII against mclustBIC without a prior: never below
    mclust's log-likelihood; where EM continued from mclust's fit reaches the mode select_model
    reports, the BIC equals mclust's to 1e-8, and elsewhere select_model's mode is higher."""
    X = bg.load_dataset(data).to_numpy()
    d = X.shape[1]
    cells = [c for c in STRUCTURE_FIXTURES["bic"] if c["data"] == data]
    selection = bg.select_model(X, range(1, 10), ["EII", "EEI"], prior=None)
    t = selection.table
    agree = 0
    for c in cells:
        K, covariance = c["n_components"], c["covariance"]
        row = t[(t.n_components == K) & (t.covariance == covariance)].iloc[0]
        assert row.log_likelihood >= c["loglik"] - 1e-9 * abs(c["loglik"])
        start = dict(weights=np.atleast_1d(c["weights"]),
                     means=np.asarray(c["means"]).reshape(K, d),
                     covariances=np.asarray(c["covariances"]))
        converged = bg.fit_map(X, K, covariance, prior=None, init=start, tol=1e-12,
                               warn_convergence=False)
        if abs(converged.log_likelihood - row.log_likelihood) < 1e-8 * abs(row.log_likelihood):
            assert row.bic == pytest.approx(-c["bic"], rel=1e-8), (K, covariance)
            agree += 1
        else:
            assert converged.log_likelihood < row.log_likelihood
    assert agree >= 1
