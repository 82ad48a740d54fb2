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
    assert ours.log_likelihood == pytest.approx(case["loglik"], rel=1e-8)
