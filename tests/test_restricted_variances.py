"""The full posterior of VEI and EVI: the inverse-gamma prior restricted to their variances.

NUTS samples it in the free log coordinates of :class:`~bayesgmm.distributions.LogVolumeShape`
(derivation §4c).  Checked here: the transform and its measure (with K = 1 the sampled density
is ``diag``'s, exactly), and NUTS against an independent random-walk Metropolis sampler written
with scipy's densities.  That the EM estimate is the model's mode is checked with the other
structures in ``tests/test_posterior.py``.
"""

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest
from scipy import stats

import bayesgmm as bg
from bayesgmm import decomposition
from bayesgmm.distributions import LogVolumeShape

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
FAST = {"mode": "FAST_COMPILE"}


def _on_the_set(model, K, d, rng):
    """Random variances of the model: σ²_kj = λ_k a_j (VEI) or λ a_kj (EVI), ∏_j a_j = 1."""
    z = rng.normal(size=decomposition.n_covariance_parameters(model, K, d))
    return decomposition.from_unconstrained(model, z, K, d)


@pytest.mark.parametrize("model", ["VEI", "EVI"])
@pytest.mark.parametrize("K, d", [(1, 1), (1, 3), (3, 1), (3, 2), (2, 4)])
def test_log_volume_shape_round_trips_and_states_its_measure(model, K, d):
    rng = np.random.default_rng(K * 10 + d)
    transform = LogVolumeShape(model, K, d)
    variances = _on_the_set(model, K, d, rng)
    z = transform.forward(pt.as_tensor(variances)).eval()
    assert z.shape == (decomposition.n_covariance_parameters(model, K, d),)  # mclust's count
    np.testing.assert_allclose(transform.backward(pt.as_tensor(z)).eval(), variances,
                               rtol=1e-12)
    # the same coordinates as the EM path's parametrisation (decomposition.to_unconstrained)
    np.testing.assert_allclose(z, decomposition.to_unconstrained(model, variances), atol=1e-12)
    # forward projects off-set values onto the set (least squares in log σ²)
    off = variances * np.exp(0.1 * rng.normal(size=variances.shape))
    projected = transform.backward(transform.forward(pt.as_tensor(off))).eval()
    np.testing.assert_allclose(transform.backward(transform.forward(pt.as_tensor(projected)))
                               .eval(), projected, rtol=1e-12)
    # the measure: Lebesgue on z times ∏ σ²_kj
    assert transform.log_jac_det(pt.as_tensor(z)).eval() == pytest.approx(
        np.log(variances).sum(), abs=1e-12)


@pytest.mark.parametrize("model", ["VEI", "EVI"])
def test_with_one_component_the_sampled_density_is_diags(faithful, model):
    """K = 1 leaves the variances free: the density NUTS samples (Jacobian included) differs
    from ``diag``'s, at any point, by one constant (the linear map z ↦ log σ²), so the two
    posteriors are the same distribution — the analytic normal–inverse-gamma posterior that
    tests/test_gibbs.py checks the samplers against."""
    prior, diag = bg.default_prior(faithful, 1, model), bg.default_prior(faithful, 1, "diag")
    for name in ("mean", "shrinkage", "dof", "scale"):
        np.testing.assert_array_equal(getattr(prior, name), getattr(diag, name))
    ours = bg.build_model(faithful, 1, model, prior)
    theirs = bg.build_model(faithful, 1, "diag", diag)
    logp_ours = ours.compile_logp(jacobian=True, **FAST)
    logp_theirs = theirs.compile_logp(jacobian=True, **FAST)
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(5):
        values = {"means": rng.normal([3.5, 70.0], [1.0, 10.0])[None],
                  "covariances": np.exp(rng.normal(size=(1, 2)) + [0.0, 4.0])}
        gaps.append(logp_ours(_point(ours, values)) - logp_theirs(_point(theirs, values)))
    np.testing.assert_allclose(gaps, gaps[0], atol=1e-9)


def _point(model, values):
    for rv in model.free_RVs:
        model.set_initval(rv, np.asarray(values[rv.name], dtype=float))
    return model.initial_point()


def test_the_restricted_prior_says_it_has_no_direct_draws(faithful):
    """Prior predictive draws need the prior's own draws, which the restricted prior has no
    closed form for: the error says how to get them.  Posterior predictive draws work."""
    model = bg.build_model(faithful, 2, "VEI", likelihood=False)
    with pytest.raises(NotImplementedError, match="no direct sampler.*likelihood=False"):
        pm.draw(model["covariances"], random_seed=0)


# ----------------------------------------------------------------------------- vs Metropolis
def _log_density(theta, X, prior, model, K):
    """The posterior density of (η, μ, z) against Lebesgue measure, for many θ at once, from
    scipy's densities and the EM path's parametrisation: weights w = softmax(0, η), Dirichlet
    prior with its Jacobian, means N(m0, σ²_k/κ0), inverse gammas on the variances at
    σ²(z), the measure ∏σ² of derivation §4c, and the mixture likelihood.  θ: (C, P)."""
    d = X.shape[1]
    eta, mu, z = theta[:, :K - 1], theta[:, K - 1:K - 1 + K * d], theta[:, K - 1 + K * d:]
    logits = np.concatenate([np.zeros((len(theta), 1)), eta], axis=1)
    log_w = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    var = np.stack([decomposition.from_unconstrained(model, zc, K, d) for zc in z])  # (C, K, d)
    means, sd = mu.reshape(-1, K, d), np.sqrt(var)
    log_prior = (stats.dirichlet.logpdf(np.exp(log_w).T, prior.concentration_for(K))
                 + log_w.sum(1)  # |∂w/∂η| of the softmax with a fixed first logit
                 + stats.norm.logpdf(means, prior.mean, sd / np.sqrt(prior.shrinkage)).sum((1, 2))
                 + stats.invgamma.logpdf(var, prior.dof / 2,
                                         scale=np.asarray(prior.scale) / 2).sum((1, 2))
                 + np.log(var).sum((1, 2)))
    comp = (stats.norm.logpdf(X[None, :, None, :], means[:, None], sd[:, None]).sum(-1)
            + log_w[:, None, :])  # (C, n, K)
    return log_prior + np.logaddexp.reduce(comp, axis=2).sum(1)


def _metropolis(X, prior, model, K, start, rng, chains=8, steps=24_000, burn=4_000):
    """Random-walk Metropolis, all chains at once, its Gaussian proposal scaled 2.4/√P by the
    covariance of a pilot run (Roberts & Rosenthal 2001); returns (chains, draws, P)."""
    P = len(start)
    theta = start + 1e-3 * rng.normal(size=(chains, P))
    current = _log_density(theta, X, prior, model, K)
    cov = np.eye(P) * 1e-4
    draws = []
    for step in range(steps):
        if step in (1_000, burn // 2):  # two adaptations of the proposal, then fixed
            pilot = np.concatenate(draws[len(draws) // 2:])
            cov = np.cov(pilot.T) + 1e-12 * np.eye(P)
        proposal = theta + (2.4 / np.sqrt(P)) * rng.normal(size=(chains, P)) @ np.linalg.cholesky(
            cov).T
        proposed = _log_density(proposal, X, prior, model, K)
        accept = np.log(rng.uniform(size=chains)) < proposed - current
        theta[accept], current[accept] = proposal[accept], proposed[accept]
        draws.append(theta.copy())
    return np.stack(draws[burn:], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["VEI", "EVI"])
def test_nuts_agrees_with_an_independent_metropolis_sampler(model):
    """Two well-separated components (no label switching), n = 80: posterior means of the
    weights, means and variances from NUTS and from :func:`_metropolis` agree within 4.5
    combined Monte-Carlo standard errors (|Z| > 4.5 by chance with probability 7e-6 per
    quantity, 11 quantities).  ≈ 40 s each (a NUTS compile and 24 000 Metropolis steps)."""
    rng = np.random.default_rng(7)
    scales = {"VEI": [[0.5, 2.0], [1.0, 4.0]], "EVI": [[0.5, 2.0], [2.0, 0.5]]}[model]
    X = np.concatenate([rng.normal([0.0, 0.0], np.sqrt(scales[0]), size=(40, 2)),
                        rng.normal([6.0, 8.0], np.sqrt(scales[1]), size=(40, 2))])
    K, d = 2, 2
    fit = bg.fit_map(X, K, model, random_state=0)
    nuts = bg.sample_posterior(X, K, model, fit.prior, init=fit, draws=1000, tune=1000,
                               chains=2, random_seed=1, progressbar=False)
    assert nuts.posterior.attrs["sampler"] == "nuts"  # auto: VEI/EVI have no Gibbs step
    start = np.concatenate([np.log(fit.weights[1:] / fit.weights[0]), np.ravel(fit.means),
                            decomposition.to_unconstrained(model, fit.covariances)])
    theta = _metropolis(X, fit.prior, model, K, start, np.random.default_rng(2))
    reference = {
        "weights": np.exp(theta[..., :1]) / (1 + np.exp(theta[..., :1])) * [-1, 1] + [1, 0],
        "means": theta[..., 1:1 + K * d].reshape(theta.shape[:2] + (K, d)),
        "covariances": np.stack([[decomposition.from_unconstrained(model, t, K, d)
                                  for t in chain] for chain in theta[..., 1 + K * d:]]),
    }
    for name, draws in reference.items():
        ours = nuts.posterior[name]
        ref = az.convert_to_dataset({name: draws})[name]
        diff = ours.mean(("chain", "draw")).values - ref.mean(("chain", "draw")).values
        se = np.hypot(az.mcse(nuts.posterior[[name]])[name].values,
                      az.mcse(az.convert_to_dataset({name: draws}))[name].values)
        assert np.all(np.abs(diff) <= 4.5 * se), (name, diff / se)
