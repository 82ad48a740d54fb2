"""The PyMC model is the MAP-EM model: same density, same mode; and NUTS samples it correctly.

Log densities and gradients are evaluated uncompiled (mode FAST_COMPILE) to keep CI short; the
sampling tests share one compiled model each.
"""

import json

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest

import bayesgmm as bg
from bayesgmm.distributions import LogCholesky
from bayesgmm.health import SamplerHealth
from tests.conftest import SAMPLER_STRUCTURES

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
FAST = {"mode": "FAST_COMPILE"}


def _transformed_point(model, values):
    """Model value-variable point (unconstrained space) from constrained parameter values
    (PyMC applies each transform given the other variables' values, as for initial points)."""
    for rv in model.free_RVs:
        model.set_initval(rv, np.asarray(values[rv.name], dtype=float))
    return model.initial_point()


@pytest.fixture(scope="module", params=SAMPLER_STRUCTURES)
def em_and_model(request, faithful):
    fit = bg.fit_map(faithful, 2, request.param, random_state=0, tol=0, max_iter=3000,
                     warn_convergence=False)
    return fit, bg.build_model(faithful, 2, request.param, fit.prior)


def test_model_names_and_dims_match_the_em_result(em_and_model):
    fit, model = em_and_model
    ds = fit.to_xarray()
    for name in ("weights", "means", "covariances"):
        assert model.named_vars_to_dims[name] == ds[name].dims
    assert list(model.coords["feature"]) == ["eruptions", "waiting"]
    assert model.named_vars_to_dims["x"] == ("obs", "feature")


def test_logp_at_the_em_estimate_is_its_log_posterior(em_and_model):
    fit, model = em_and_model
    values = {"weights": fit.weights, "means": fit.means, "covariances": fit.covariances}
    point = _transformed_point(model, values)
    logp = model.compile_logp(jacobian=False, **FAST)(point)
    assert logp == pytest.approx(fit.log_posterior, rel=1e-8)


def test_em_estimate_is_the_mode_of_the_model(em_and_model):
    fit, model = em_and_model
    values = {"weights": fit.weights, "means": fit.means, "covariances": fit.covariances}
    point = _transformed_point(model, values)
    dlogp = model.compile_dlogp(jacobian=False, **FAST)
    at_mode = np.abs(dlogp(point)).max()
    # the same gradient one percent (in unconstrained coordinates) away from the mode
    nudged = {k: v + 0.01 for k, v in point.items()}
    away = np.abs(dlogp(nudged)).max()
    # EM ran to its fixed point, so what is left is rounding in sums of N = 272 terms
    assert at_mode < 1e-6 * away


def test_find_map_started_nearby_returns_the_em_estimate(em_and_model):
    fit, model = em_and_model
    values = {"weights": fit.weights, "means": fit.means * 1.02,
              "covariances": np.asarray(fit.covariances) * 1.1}
    start = {rv.name: values[rv.name] for rv in model.free_RVs}
    with pytensor.config.change_flags(mode="FAST_COMPILE"), model:
        found = pm.find_MAP(start=start, progressbar=False)
        logp = model.compile_logp(jacobian=False)
    # L-BFGS-B stops once an iteration improves logp by less than ftol = 2.2e-9 relative; EM's
    # estimate is the maximum, so the optimiser ends just below it (10 × ftol: the remaining
    # steps of a linearly converging tail), and in the same mode
    gap = fit.log_posterior - logp(_transformed_point(model, found))
    assert -1e-9 * abs(fit.log_posterior) <= gap <= 10 * 2.2e-9 * abs(fit.log_posterior)
    np.testing.assert_allclose(found["means"], fit.means, rtol=1e-2)
    np.testing.assert_allclose(found["covariances"], fit.covariances, rtol=1e-2)
    np.testing.assert_allclose(found["weights"], fit.weights, atol=1e-2)


# ------------------------------------------------------------------ the transform
@pytest.mark.parametrize("d", [1, 2, 4])
def test_log_cholesky_round_trips_and_its_log_jacobian_is_right(d):
    rng = np.random.default_rng(d)
    transform = LogCholesky(d)
    A = rng.normal(size=(3, d, d))
    sigma = A @ A.transpose(0, 2, 1) + np.eye(d)
    z = transform.forward(pt.as_tensor(sigma)).eval()
    assert z.shape == (3, d * (d + 1) // 2)
    np.testing.assert_allclose(transform.backward(pt.as_tensor(z)).eval(), sigma, rtol=1e-12)

    # log|det ∂ vech(Σ) / ∂z| by central finite differences of the numpy map z -> vech Σ
    zv = pt.dvector("z")
    back = pytensor.function([zv], transform.backward(zv), mode="FAST_COMPILE")
    rows, cols = np.tril_indices(d)
    vech = lambda v: back(v)[rows, cols]  # noqa: E731
    log_jac = transform.log_jac_det(pt.as_tensor(z)).eval()
    for i in range(3):
        h = 1e-6
        J = np.column_stack([(vech(z[i] + h * e) - vech(z[i] - h * e)) / (2 * h)
                             for e in np.eye(z.shape[1])])
        assert log_jac[i] == pytest.approx(np.linalg.slogdet(J)[1], abs=1e-6)


def test_inverse_wishart_logp_equals_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    scale = np.array([[2.0, 0.3], [0.3, 0.5]])
    values = stats.invwishart.rvs(df=6.5, scale=scale, size=4, random_state=rng)
    with pm.Model(coords={"k": range(4), "a": [0, 1], "b": [0, 1]}) as model:
        bg.InverseWishart("S", 6.5, scale, dims=("k", "a", "b"))
    logp = model.compile_logp(jacobian=False, **FAST)(_transformed_point(model, {"S": values}))
    assert logp == pytest.approx(stats.invwishart.logpdf(values.transpose(1, 2, 0), df=6.5,
                                                         scale=scale).sum(), rel=1e-12)


# ------------------------------------------------------------------ sampling
def _within_mcse(estimate, truth, mcse, z=4.0):
    """|estimate − truth| ≤ z · MCSE entrywise (z = 4: two-sided 6e-5 per entry)."""
    estimate, truth, mcse = map(np.asarray, (estimate, truth, mcse))
    assert np.all(np.abs(estimate - truth) <= z * mcse), np.abs(estimate - truth) / mcse


@pytest.mark.slow
def test_k1_posterior_is_the_analytic_normal_inverse_wishart():
    rng = np.random.default_rng(4)
    X = rng.multivariate_normal([1.0, -2.0], [[2.0, 0.6], [0.6, 1.0]], size=40)
    prior = bg.GMMPrior(mean=[0.0, 0.0], shrinkage=2.0, dof=6.0, scale=np.eye(2) * 1.5)
    n, d = X.shape
    xbar = X.mean(0)
    S = (X - xbar).T @ (X - xbar)
    kappa_n, nu_n = prior.shrinkage + n, prior.dof + n
    m_n = (prior.shrinkage * prior.mean + n * xbar) / kappa_n
    psi_n = prior.scale + S + prior.shrinkage * n / kappa_n * np.outer(xbar - prior.mean,
                                                                        xbar - prior.mean)
    idata = bg.sample_posterior(X, 1, "full", prior, sampler="nuts", draws=1000, tune=500,
                                chains=2, random_seed=3, progressbar=False)
    post = idata.posterior
    _within_mcse(post["means"].mean(("chain", "draw")).values[0], m_n,
                 az.mcse(post)["means"].values[0])
    _within_mcse(post["covariances"].mean(("chain", "draw")).values[0],
                 psi_n / (nu_n - d - 1), az.mcse(post)["covariances"].values[0])
    assert set(idata.groups()) >= {"posterior", "sample_stats", "log_likelihood", "log_prior"}
    assert idata.log_likelihood["x"].dims == ("chain", "draw", "obs")


@pytest.mark.slow
def test_prior_only_sampling_reproduces_the_prior_moments():
    X = np.zeros((5, 2))  # only fixes d; the likelihood is left out
    prior = bg.GMMPrior(mean=[1.0, -1.0], shrinkage=0.5, dof=12.0,
                        scale=np.array([[3.0, 1.0], [1.0, 2.0]]), concentration=[2.0, 5.0])
    model = bg.build_model(X, 2, "full", prior, likelihood=False)
    with model:
        idata = pm.sample(draws=1500, tune=500, chains=2, random_seed=5, progressbar=False,
                          compile_kwargs={"mode": "NUMBA"}, cores=1)
    post = idata.posterior
    _within_mcse(post["covariances"].mean(("chain", "draw")).values,
                 np.broadcast_to(prior.scale / (prior.dof - 3), (2, 2, 2)),
                 az.mcse(post)["covariances"].values)
    _within_mcse(post["means"].mean(("chain", "draw")).values,
                 np.broadcast_to(prior.mean, (2, 2)), az.mcse(post)["means"].values)
    _within_mcse(post["weights"].mean(("chain", "draw")).values, [2 / 7, 5 / 7],
                 az.mcse(post)["weights"].values)


@pytest.mark.slow
def test_faithful_four_chains_are_healthy(faithful_nuts):
    idata, sampler_warnings = faithful_nuts
    assert sampler_warnings == []
    assert idata.posterior.attrs["sampler"] == "nuts"
    health = SamplerHealth(**json.loads(
        idata.posterior.attrs["sampler_health"]))
    assert health.max_rhat <= 1.01 and health.divergences == 0
    assert not health.chains_disagree
    assert list(idata.posterior["feature"].values) == ["eruptions", "waiting"]
    assert az.loo(idata).elpd_loo < 0  # the pointwise log-likelihood group works for LOO


def test_a_new_prior_reuses_the_compiled_model_and_samples_as_a_fresh_one(faithful,
                                                                         monkeypatch):
    """The data and the prior are pm.Data: a second prior of the same shape samples with the
    compiled step (``compiled`` 0), and its draws equal those of a freshly compiled model."""
    from collections import OrderedDict
    from dataclasses import replace

    from bayesgmm import posterior

    fit = bg.fit_map(faithful, 2, "full", random_state=0)
    first = replace(fit.prior, shrinkage=0.5)
    second = replace(fit.prior, dof=fit.prior.dof + 6, mean=fit.prior.mean + 1.0)
    run = dict(sampler="nuts", init=fit, draws=30, tune=30, chains=1, random_seed=3,
               progressbar=False)
    bg.sample_posterior(faithful, 2, "full", first, **run)
    cached = bg.sample_posterior(faithful, 2, "full", second, **run)
    assert cached.sample_stats.attrs["compiled"] == 0
    assert cached.sample_stats.attrs["startup_time"] > 0
    monkeypatch.setattr(posterior, "_COMPILED", OrderedDict())
    fresh = bg.sample_posterior(faithful, 2, "full", second, **run)
    assert fresh.sample_stats.attrs["compiled"] == 1
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(cached.posterior[name].values, fresh.posterior[name].values)
    np.testing.assert_array_equal(cached.log_prior["means"].values, fresh.log_prior["means"].values)
    assert "constant_data" not in cached.groups()


def test_the_density_factorises_each_covariance_once(faithful):
    """LogCholesky's factor is reused by the inverse-Wishart, the means' prior and the
    likelihood: the compiled log density and gradient hold one Cholesky of Σ (and one of the
    prior scale Ψ0, a pm.Data input)."""
    from pytensor.graph.basic import ancestors
    from pytensor.tensor.slinalg import Cholesky

    fn = bg.build_model(faithful, 2, "full").logp_dlogp_function(mode="FAST_RUN")
    factorised = [node.inputs[0] for node in fn._pytensor_function.maker.fgraph.toposort()
                  if isinstance(getattr(node.op, "core_op", node.op), Cholesky)]
    assert len(factorised) == 1
    named = {v.name for v in ancestors(factorised) if v.owner is None and v.name}
    assert named == {"prior_scale"}


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(prior=bg.GMMPrior(mean=[0, 0, 0], shrinkage=1, dof=4, scale=np.eye(3))),
         ValueError, "d=3 features but the data have 2"),
        (dict(prior=bg.GMMPrior(mean=[0, 0], shrinkage=1, dof=4, scale=np.eye(2),
                                covariance="tied")), ValueError, "covariance='tied'"),
        (dict(prior=None), ValueError, "needs a proper prior"),
        (dict(chains=0), ValueError, "chains must be at least 1"),
        (dict(draws=0), ValueError, "draws must be at least 1"),
        (dict(init="em"), TypeError, "init must be a MixtureFit"),
        (dict(n_components=300), ValueError, "exceeds the number of samples"),
    ],
)
def test_bad_input_is_named(faithful, kwargs, error, message):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(error, match=message):
        bg.sample_posterior(faithful, **kwargs)


def test_init_of_another_model_is_rejected(faithful):
    fit3 = bg.fit_map(faithful, 3, "full", random_state=0)
    with pytest.raises(ValueError, match=r"init is a fit with K=3.*model has K=2"):
        bg.sample_posterior(faithful, 2, "full", init=fit3)
    diag = bg.fit_map(faithful, 2, "diag", random_state=0)
    with pytest.raises(ValueError, match="covariance='diag'"):
        bg.sample_posterior(faithful, 2, "full", init=diag)


def test_non_centred_means_round_trip_and_jacobian():
    from bayesgmm.distributions import NonCentred

    rng = np.random.default_rng(0)
    mean = rng.normal(size=3)
    A = rng.normal(size=(2, 3, 3))
    cov = A @ A.transpose(0, 2, 1) + np.eye(3)
    mu = rng.normal(size=(2, 3))
    inputs = (pt.as_tensor(mean), pt.as_tensor(cov))
    transform = NonCentred()
    z = transform.forward(pt.as_tensor(mu), *inputs).eval()
    np.testing.assert_allclose(transform.backward(pt.as_tensor(z), *inputs).eval(), mu,
                               rtol=1e-12)
    # z ↦ μ is affine with matrix L: log|det| = log det L = ½ log det Σ
    np.testing.assert_allclose(transform.log_jac_det(pt.as_tensor(z), *inputs).eval(),
                               0.5 * np.linalg.slogdet(cov)[1], rtol=1e-12)


@pytest.mark.parametrize("covariance", ["full", "spherical"])
def test_non_centred_model_has_the_same_density(faithful, covariance):
    fit = bg.fit_map(faithful, 2, covariance, random_state=0, tol=1e-12)
    model = bg.build_model(faithful, 2, covariance, fit.prior, noncentred_means=True)
    values = {"weights": fit.weights, "means": fit.means, "covariances": fit.covariances}
    logp = model.compile_logp(jacobian=False, **FAST)(_transformed_point(model, values))
    assert logp == pytest.approx(fit.log_posterior, rel=1e-8)


def test_prior_and_posterior_predictive_sampling_work_on_the_model(faithful):
    """The likelihood has a ``random``: PyMC's predictive samplers and ArviZ's plot_ppc work.
    Replicated data from Gibbs draws match the data's mean and spread within 5 standard
    errors of the replicated statistic."""
    import matplotlib

    matplotlib.use("Agg")
    idata = bg.sample_posterior(faithful, 2, sampler="gibbs", draws=100, tune=50, chains=2,
                                random_seed=0, progressbar=False)
    model = bg.build_model(faithful, 2, "full", "default")
    pp = pm.sample_posterior_predictive(idata, model=model, random_seed=1, progressbar=False,
                                        compile_kwargs=FAST)
    x = pp.posterior_predictive["x"]
    assert x.dims == ("chain", "draw", "obs", "feature")
    X = np.asarray(faithful)
    for stat in (np.mean, np.std):
        replicated = stat(x.values.reshape(-1, *X.shape), axis=1)   # (S, d)
        spread = replicated.std(0)
        assert np.all(np.abs(replicated.mean(0) - stat(X, axis=0)) < 5 * spread)
    az.plot_ppc(pp, num_pp_samples=20)
    with model:
        prior = pm.sample_prior_predictive(draws=20, random_seed=2, compile_kwargs=FAST)
    assert prior.prior_predictive["x"].shape == (1, 20) + X.shape
