"""Prior sensitivity: power-scaling (EM and MCMC) and hyperparameter sweeps."""

import arviz as az
import numpy as np
import pytest

import bayesgmm as bg
from bayesgmm import power_scaling, sweep
from tests.conftest import END_TO_END_STRUCTURES, blobs
from tests.reference import random_parameters

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


# ------------------------------------------------------------------ power_scale
@pytest.mark.parametrize("covariance", END_TO_END_STRUCTURES)
@pytest.mark.parametrize("shrinkage", [0.0, 0.7])
def test_power_scaled_density_is_a_times_log_prior(covariance, shrinkage):
    rng = np.random.default_rng(0)
    K, d = 3, 3
    X = rng.normal(size=(50, d))
    prior = bg.GMMPrior(mean=rng.normal(size=d), shrinkage=shrinkage, dof=7.0,
                        scale=bg.default_prior(X, K, covariance).scale,
                        concentration=[1.5, 2.0, 3.0], covariance=covariance)
    for a in (0.8, 1.7, 3.0):
        scaled = bg.power_scale(prior, a, n_components=K)
        gaps = [scaled.logpdf(*t) - a * prior.logpdf(*t)
                for t in (random_parameters(rng, K, d, covariance) for _ in range(5))]
        assert np.ptp(gaps) < 1e-10 * max(1.0, np.abs(gaps).max())
    same = bg.power_scale(prior, 1.0, n_components=K)
    for name in ("mean", "shrinkage", "dof", "scale", "concentration"):
        np.testing.assert_allclose(getattr(same, name), getattr(prior, name), rtol=1e-15)


def test_power_scale_rejects_bad_powers():
    prior = bg.default_prior(blobs(d=3), 2, "full")  # dof = 5
    with pytest.raises(ValueError, match="positive finite"):
        bg.power_scale(prior, 0.0)
    with pytest.raises(ValueError, match="positive finite"):
        bg.power_scale(prior, -1.0)
    with pytest.raises(ValueError, match=r"a=0.6 gives an invalid prior: dof must exceed 2"):
        bg.power_scale(prior, 0.6)  # ν' = 0.6 (5 + 5) − 5 = 1 ≤ d − 1
    with pytest.raises(ValueError, match="needs n_components"):
        bg.power_scale(bg.default_prior(blobs(d=3), 2, "tied"), 2.0)


# ------------------------------------------------------------------ EM local sensitivity
def test_em_sensitivity_matches_the_closed_form_derivative():
    # K = 1: μ̂(a) = (N x̄ + a κ0 m0) / (N + a κ0), so dμ̂/dlog a = N κ0 (m0 − x̄) / (N + κ0)²
    X = np.random.default_rng(1).normal(size=(25, 2)) + [3.0, -1.0]
    prior = bg.GMMPrior(mean=[0.0, 0.0], shrinkage=4.0, dof=5.0, scale=np.eye(2))
    fit = bg.fit_map(X, 1, "full", prior=prior, tol=1e-14)
    table = bg.em_sensitivity(fit, X)
    n, kappa, xbar = len(X), prior.shrinkage, X.mean(0)
    expected = n * kappa * (prior.mean - xbar) / (n + kappa) ** 2
    # central difference with h = 0.01: relative truncation error ~ h² ≈ 1e-4
    np.testing.assert_allclose(table.loc[["means[0, x0]", "means[0, x1]"], "prior"], expected,
                               rtol=1e-3)
    np.testing.assert_allclose(table["likelihood"], -table["prior"], rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------------ sweeps
GRID = {"shrinkage": [0.01, 0.1, 1.0], "dof": [4.0, 6.0, 10.0]}


@pytest.fixture(scope="module")
def sweeps():
    X = blobs(seed=3, n=300, d=2, K=3)
    warm = bg.prior_sweep(X, 3, "full", grid=GRID, tol=1e-12, progress=False)
    cold = bg.prior_sweep(X, 3, "full", grid=GRID, tol=1e-12, warm_start=False, progress=False)
    return warm, cold


def test_warm_sweep_reaches_the_cold_optimum_in_fewer_iterations(sweeps):
    warm, cold = sweeps
    assert bool(warm.converged.all()) and bool(cold.converged.all())
    # both stop within ~1e-12 of their fixed points; the optima agree where the paths land in
    # the same mode
    np.testing.assert_allclose(warm.log_posterior, cold.log_posterior, rtol=1e-10)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(warm[name], cold[name], rtol=1e-4, atol=1e-6)
    # a warm start costs fewer EM steps than one fresh start (a cold fit's n_iter counts only
    # the last run of its search, so compare with single k-means++ fits)
    X = blobs(seed=3, n=300, d=2, K=3)
    base = bg.default_prior(X, 3)
    fresh = sum(bg.fit_map(X, 3, prior=bg.adjust_prior(base, {"shrinkage": k, "dof": v}),
                           init="kmeans++", random_state=0, tol=1e-12).n_iter
                for k in GRID["shrinkage"] for v in GRID["dof"])
    assert int(warm.n_iter.sum()) < fresh


def test_mode_exchange_carries_a_higher_mode_across_the_grid():
    """Settings stuck in a mode 150 nats low reach the real mode once one setting holds it:
    _exchange_modes hands it on neighbour to neighbour until no setting gains."""
    from bayesgmm.estep import MixtureParams
    from bayesgmm.sweep import _exchange_modes

    rng = np.random.default_rng(0)
    X = np.vstack([c + rng.normal(size=(100, 2)) for c in ([0, 0], [6, 0], [0, 6.0])])
    base = bg.default_prior(X, 3)
    priors = {(i,): bg.adjust_prior(base, {"shrinkage": k})
              for i, k in enumerate([0.01, 0.03, 0.1, 0.3, 1.0])}
    stuck_start = MixtureParams(np.ones(3) / 3, np.array([[-0.5, 0], [0.5, 0], [3, 3.0]]),
                                np.stack([np.eye(2), np.eye(2), 10 * np.eye(2)]))
    def refit(idx, start):
        return bg.fit_map(X, 3, prior=priors[idx], init=start, tol=1e-10)

    fits = {idx: refit(idx, stuck_start) for idx in priors}
    best = {idx: bg.fit_map(X, 3, prior=p, random_state=0, tol=1e-10) for idx, p in
            priors.items()}
    assert all(fits[i].log_posterior < best[i].log_posterior - 100 for i in priors)
    fits[(4,)] = best[(4,)]
    _exchange_modes(fits, (5,), lambda targets: [refit(*t) for t in targets])
    for idx in priors:
        assert fits[idx].log_posterior == pytest.approx(best[idx].log_posterior, abs=1e-6)


def test_sweep_dataset_layout(sweeps):
    warm, _ = sweeps
    assert warm["covariances"].dims == ("shrinkage", "dof", "component", "feature",
                                        "feature_bis")
    assert list(warm["shrinkage"].values) == GRID["shrinkage"]
    for name in ("log_posterior", "log_likelihood", "bic", "converged", "n_iter"):
        assert warm[name].dims == ("shrinkage", "dof")


def test_sweep_over_vector_axes():
    X = blobs(seed=1, n=120, d=2, K=2)
    ds = bg.prior_sweep(X, 2, "diag", grid={"mean": [[0, 0], [1, 1]],
                                            "concentration": [[1, 1], [5, 2]]}, progress=False)
    assert ds["means"].dims == ("mean", "concentration", "component", "feature")
    np.testing.assert_array_equal(ds["mean_value"].values, [[0, 0], [1, 1]])


@pytest.mark.parametrize("grid, message", [
    ({"kappa": [1.0]}, r"unknown hyperparameter\(s\) \['kappa'\]"),
    ({"shrinkage": []}, "grid axis 'shrinkage' is empty"),
    ({"dof": [5.0, 0.5]}, r"grid setting \{'dof': 0.5\} gives an invalid prior: dof must exceed 1"),
    ({"shrinkage": [-1.0]}, "shrinkage must be finite and ≥ 0"),
    ({}, "non-empty dict"),
])
def test_bad_grids_fail_before_any_fit(monkeypatch, grid, message):
    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started before the grid was validated")

    monkeypatch.setattr(sweep, "fit_map", no_fit)
    with pytest.raises(ValueError, match=message):
        bg.prior_sweep(blobs(d=2), 2, "full", grid=grid, progress=False)


# ------------------------------------------------------------------ MCMC power-scaling
def _niw_posterior_mean(prior, X):
    n, d = X.shape
    xbar = X.mean(0)
    kappa_n, nu_n = prior.shrinkage + n, prior.dof + n
    m_n = (prior.shrinkage * prior.mean + n * xbar) / kappa_n
    dev = xbar - prior.mean
    psi_n = (prior.scale + (X - xbar).T @ (X - xbar)
             + prior.shrinkage * n / kappa_n * np.outer(dev, dev))
    return m_n, psi_n / (nu_n - d - 1)


@pytest.fixture(scope="module")
def conflict():
    """K = 1, a strong prior (κ0 = 10) centred 2.5 data sd away from the data."""
    X = np.random.default_rng(2).normal(size=(20, 2))
    prior = bg.GMMPrior(mean=[2.5, 2.5], shrinkage=10.0, dof=6.0, scale=np.eye(2) * 3)
    fit = bg.fit_map(X, 1, "full", prior=prior, tol=1e-12)
    idata = bg.sample_posterior(X, 1, "full", prior, sampler="nuts", init=fit, draws=2000,
                                tune=1000, chains=2, random_seed=4, progressbar=False)
    return X, prior, fit, idata


@pytest.mark.slow
def test_reweighted_posterior_equals_the_analytic_power_scaled_posterior(conflict):
    X, prior, fit, idata = conflict
    post = idata.posterior
    base_mean, _ = _niw_posterior_mean(prior, X)
    for a in (0.8, 1.25):
        w, k = power_scaling.power_scaling_weights(idata, a, "prior")
        assert k < power_scaling.PARETO_K_THRESHOLD
        truth, _ = _niw_posterior_mean(bg.power_scale(prior, a), X)
        means = post["means"].values[:, :, 0, :]  # (chain, draw, d)
        estimate = np.einsum("cd,cdj->j", w, means)
        # Monte Carlo error of a weighted mean: sd / √ESS, with ESS the smaller of the chains'
        # ESS and the weights' 1 / Σw²
        ess = min(float(az.ess(post)["means"].min()), 1.0 / np.square(w).sum())
        se = means.reshape(-1, 2).std(0) / np.sqrt(ess)
        assert np.all(np.abs(estimate - truth) < 4 * se)
        assert np.all(np.abs(truth - base_mean) > 4 * se)  # the test can tell a from 1


@pytest.mark.slow
def test_conflict_is_flagged_and_a_weak_prior_is_not(conflict):
    X, prior, fit, idata = conflict
    report = bg.sensitivity_report(fit, idata, X)
    assert "prior-data conflict" in report.summary()
    means = report.table.loc[["means[0, x0]", "means[0, x1]"]]
    assert (means["verdict"] == "potential prior-data conflict").all()
    assert means["reliable"].all()

    weak = bg.default_prior(X, 1, "full")
    weak_fit = bg.fit_map(X, 1, "full", prior=weak, tol=1e-12)
    weak_idata = bg.sample_posterior(X, 1, "full", weak, sampler="nuts", init=weak_fit,
                                     draws=1000, tune=1000, chains=2, random_seed=5,
                                     progressbar=False)
    weak_table = bg.mcmc_sensitivity(weak_idata, weak_fit)
    assert (weak_table.loc[["means[0, x0]", "means[0, x1]"], "prior"]
            < power_scaling.SENSITIVITY_THRESHOLD).all()


def test_sweep_plots_render(sweeps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayesgmm.plots import plot_sweep

    warm, _ = sweeps
    for fig in (plot_sweep(warm), plot_sweep(warm, "log_posterior"),
                plot_sweep(warm, summary=lambda ds: ds.weights.min("component"))):
        assert len(fig.axes) == 2
        plt.close(fig)


def test_sweeps_run_their_searches_on_an_executor():
    """A process pool gives the serial sweep exactly (warm: the anchors; cold: every
    setting)."""
    from concurrent.futures import ProcessPoolExecutor

    X = blobs(seed=3, n=300, d=2, K=3)
    with ProcessPoolExecutor(2) as pool:
        for warm in (True, False):
            serial = bg.prior_sweep(X, 3, "full", grid=GRID, warm_start=warm, progress=False)
            pooled = bg.prior_sweep(X, 3, "full", grid=GRID, warm_start=warm, progress=False,
                                    executor=pool)
            np.testing.assert_array_equal(pooled.log_posterior, serial.log_posterior)
