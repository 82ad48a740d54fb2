"""Diagnostics: relabelling, the comparison table, model-level comparisons, figures, report."""

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayesgmm as bg
from bayesgmm.alignment import apply_permutations
from bayesgmm.estep import MixtureParams
from bayesgmm.covariance import get_structure
from tests.conftest import END_TO_END_STRUCTURES

matplotlib.use("Agg")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::DeprecationWarning")


def mixture_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, d))
    centres[1, 0] = 6.0
    labels = rng.integers(0, 2, size=n)
    A = np.linalg.cholesky(0.5 * np.eye(d) + 0.5)  # correlated coordinates
    return centres[labels] + rng.normal(size=(n, d)) @ A.T


def synthetic_idata(fit, X, chains=4, draws=150, seed=0, spread=0.02):
    """Draws concentrated around the fit (a stand-in posterior in the fit's labelling)."""
    rng = np.random.default_rng(seed)
    K, d, S = fit.n_components, fit.n_features, chains * draws
    weights = rng.dirichlet(np.asarray(fit.weights) * 4000, size=S)
    sd = np.sqrt(np.diagonal(fit.covariance_matrices, axis1=-2, axis2=-1))
    means = fit.means + spread * sd * rng.normal(size=(S, K, d))
    covs = np.asarray(fit.covariances)
    if get_structure(fit.covariance_type).matrix_valued:
        df = 400.0
        mats = covs.reshape(-1, d, d)
        draws_ = np.stack([[stats.invwishart.rvs(df, m * (df - d - 1), random_state=rng)
                            for m in mats] for _ in range(S)]).reshape((S,) + covs.shape)
        if d == 1:
            draws_ = draws_.reshape((S,) + covs.shape)
    else:
        draws_ = covs * np.exp(spread * rng.normal(size=(S,) + covs.shape))
    ds = fit.to_xarray()
    shape = lambda a: a.reshape((chains, draws) + a.shape[1:])  # noqa: E731
    post = xr.Dataset(
        {name: (("chain", "draw") + ds[name].dims, shape(v))
         for name, v in (("weights", weights), ("means", means), ("covariances", draws_))},
        coords={"chain": np.arange(chains), "draw": np.arange(draws),
                **{c: ds[c] for c in ("component", "feature", "feature_bis")}})
    observed = xr.Dataset({"x": (("obs", "feature"), X)},
                          coords={"feature": ds["feature"].values})
    return az.InferenceData(posterior=post, observed_data=observed)


@pytest.fixture(scope="module", params=END_TO_END_STRUCTURES)
def synthetic(request):
    X = mixture_data(300, 2, seed=1)
    fit = bg.fit_map(X, 2, request.param, random_state=0)
    return fit, X, synthetic_idata(fit, X)


# ------------------------------------------------------------------ relabelling
@pytest.mark.parametrize("method", ["pivot", "stephens"])
def test_relabelling_recovers_a_known_permutation(synthetic, method):
    fit, X, idata = synthetic
    post = idata.posterior
    rng = np.random.default_rng(3)
    perms = np.stack([[rng.permutation(2) for _ in range(post.sizes["draw"])]
                      for _ in range(post.sizes["chain"])])
    scrambled = apply_permutations(post, perms)
    result = bg.relabel(scrambled, fit, method=method, X=X)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(result.posterior[name].values, post[name].values)
    assert result.n_permuted == int(np.any(perms != [0, 1], axis=-1).sum())


def test_label_switched_chains_are_repaired(synthetic):
    fit, X, idata = synthetic
    post = idata.posterior
    perms = np.zeros((post.sizes["chain"], post.sizes["draw"], 2), dtype=int)
    perms[:] = [0, 1]
    perms[1] = perms[3] = [1, 0]  # two whole chains in the other labelling
    switched = apply_permutations(post, perms)
    result = bg.relabel(switched, fit)
    assert result.rhat_before > 1.5
    assert result.rhat_after <= 1.01


def test_relabel_rejects_unknown_method(synthetic):
    fit, X, idata = synthetic
    with pytest.raises(ValueError, match="method must be"):
        bg.relabel(idata.posterior, fit, method="ecr")
    with pytest.raises(ValueError, match="needs the data X"):
        bg.relabel(idata.posterior, fit, method="stephens")


# ------------------------------------------------------------------ the table
def test_table_equals_arviz_summaries(synthetic):
    fit, X, idata = synthetic
    report = bg.compare(fit, idata)
    summary = az.summary(report.posterior, hdi_prob=0.94, kind="stats", round_to="none")
    t = report.table
    common = t.index.intersection(summary.index)
    assert len(common) == len(t)
    np.testing.assert_allclose(t.loc[common, "mean"], summary.loc[common, "mean"], rtol=1e-12)
    np.testing.assert_allclose(t.loc[common, "sd"], summary.loc[common, "sd"], rtol=1e-12)
    np.testing.assert_allclose(t.loc[common, "hdi_lower"], summary.loc[common, "hdi_3%"])
    np.testing.assert_allclose(t.loc[common, "hdi_upper"], summary.loc[common, "hdi_97%"])
    assert list(t.columns) == ["map", "mean", "median", "sd", "hdi_lower", "hdi_upper",
                               "map_quantile", "map_in_hdi", "std_diff"]
    # the xarray form carries the same numbers on the results' dims
    ds = report.table_xarray
    assert ds["means"].dims == ("stat", "component", "feature")
    label = t.index[t.index.str.startswith("means")][0]
    assert float(ds["means"].sel(stat="mean").isel(component=0, feature=0)) == t.loc[label,
                                                                                       "mean"]


def test_quantile_and_hdi_columns_on_constructed_cases(synthetic):
    fit, X, idata = synthetic
    draws = idata.posterior["means"].isel(component=0, feature=0).values.ravel()
    means = np.array(fit.means)
    means[0, 0] = np.quantile(draws, 0.05, method="inverted_cdf")  # a MAP at the 5 % quantile
    means[1, 1] = idata.posterior["means"].isel(component=1, feature=1).max().item() + 1.0
    moved = bg.MixtureFit(**{**{f: getattr(fit, f) for f in fit.__dataclass_fields__},
                             "means": means})
    t = bg.compare(moved, idata).table
    names = list(fit.to_xarray()["feature"].values)
    at_q05 = t.loc[f"means[0, {names[0]}]"]
    expected = ((draws < means[0, 0]).mean() + 0.5 * (draws == means[0, 0]).mean())
    assert at_q05["map_quantile"] == pytest.approx(expected) and abs(expected - 0.05) < 0.01
    outside = t.loc[f"means[1, {names[1]}]"]
    assert outside["map_quantile"] == 1.0 and not outside["map_in_hdi"]
    assert outside["std_diff"] > 3


# ------------------------------------------------------------------ model level
def test_adjusted_rand_index_equals_sklearn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 3, 50), rng.integers(0, 4, 50)

        from bayesgmm.comparison import adjusted_rand_index

        assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0


def test_kl_table_matches_scipy_integration():
    from bayesgmm.alignment import gaussian_kl

    rng = np.random.default_rng(1)
    m1, m2 = rng.normal(size=2), rng.normal(size=2)
    A, B = rng.normal(size=(2, 2, 2))
    S1, S2 = A @ A.T + np.eye(2), B @ B.T + np.eye(2)
    # Monte Carlo estimate of E_1[log p1 − log p2] with 4e5 draws: error ~ 4 sd / √n
    x = stats.multivariate_normal(m1, S1).rvs(size=400_000, random_state=rng)
    terms = stats.multivariate_normal(m1, S1).logpdf(x) - stats.multivariate_normal(m2, S2).logpdf(x)
    assert gaussian_kl(m1, S1, m2, S2) == pytest.approx(terms.mean(),
                                                        abs=4 * terms.std() / np.sqrt(x.shape[0]))


def test_model_level_outputs(synthetic):
    fit, X, idata = synthetic
    report = bg.compare(fit, idata)
    assert report.kl.shape == (2, 5) and np.all(report.kl.values >= 0)
    assert report.clustering["adjusted_rand_index"] == 1.0  # well-separated, tight posterior
    assert report.clustering["mean_abs_resp_diff"] < 0.01
    assert report.convergence["max_rhat"] <= 1.01
    assert report.predictive == {}  # no log_likelihood group in this stand-in
    assert "inside the 94% HDI" in report.summary()


# ------------------------------------------------------------------ figures and report
@pytest.mark.parametrize("covariance", END_TO_END_STRUCTURES)
@pytest.mark.parametrize("d", [1, 2, 4])
def test_every_figure_renders(covariance, d):
    import matplotlib.pyplot as plt

    from bayesgmm import plots

    X = mixture_data(120, d, seed=d)
    fit = bg.fit_map(X, 2, covariance, random_state=0)
    report = bg.compare(fit, synthetic_idata(fit, X, chains=2, draws=60))
    for name, make in plots.REPORT_FIGURES.items():
        fig = make(report)
        assert fig.axes, name
        plt.close(fig)


def test_report_folder(synthetic, tmp_path):
    fit, X, idata = synthetic
    report = bg.compare(fit, idata)
    folder = report.to_markdown(tmp_path / "report")
    for name in ("README.md", "comparison.csv", "kl.csv", "ellipses.png", "forest.png",
                 "marginals.png", "trace.png"):
        assert (folder / name).stat().st_size > 0, name
    text = (folder / "README.md").read_text()
    assert report.summary().splitlines()[0] in text
    back = pd.read_csv(folder / "comparison.csv", index_col=0)
    np.testing.assert_allclose(back["mean"], report.table["mean"])


# ------------------------------------------------------------------ bad input
def test_bad_input_is_named(synthetic):
    fit, X, idata = synthetic
    post = idata.posterior
    other = bg.fit_map(X, 3, fit.covariance_type, random_state=0)
    with pytest.raises(ValueError, match="3 components|has 2 components but the fit has 3"):
        bg.compare(other, idata)
    renamed = az.InferenceData(posterior=post.assign_coords(feature=["a", "b"],
                                                            feature_bis=["a", "b"]))
    with pytest.raises(ValueError, match="features .* do not match"):
        bg.compare(fit, renamed)
    stacked = az.InferenceData(posterior=post.stack(sample=("chain", "draw")))
    with pytest.raises(ValueError, match=r"no \['chain', 'draw'\] dim"):
        bg.compare(fit, stacked)
    nan = post.copy(deep=True)
    nan["means"][0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="means contain 1 NaN"):
        bg.compare(fit, az.InferenceData(posterior=nan))
    # a structure whose covariances have other dims (EVI's draws look like diag's)
    structure = next(s for s in ("diag", "full")
                     if get_structure(s).dims != get_structure(fit.covariance_type).dims)
    with pytest.raises(ValueError, match="sample the same structure"):
        bg.compare(bg.fit_map(X, 2, structure, random_state=0), idata)


# ------------------------------------------------------------------ large and small samples
@pytest.mark.slow
def test_diagnostics_see_bernstein_von_mises_and_its_failure():
    """N = 5000: the MAP sits inside every 94 % HDI and |MAP − mean| / sd is small (the
    posterior is nearly Gaussian around the mode; the gap is O(1/√N) in sd units, plus Monte
    Carlo noise ~1/√ESS ≈ 0.05).  N = 30: the covariance mode lies well below the posterior mean,
    by (1 − (ν_n − d − 1)/(ν_n + d + 2)) ≈ 30 % of it, about 0.8 posterior sd for ν_n ≈ 19."""
    large = mixture_data(5000, 2, seed=7)
    fit = bg.fit_map(large, 2, "full", random_state=0)
    idata = bg.sample_posterior(large, 2, "full", fit.prior, sampler="nuts", init=fit,
                                draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
    t = bg.compare(fit, idata).table
    assert t["map_in_hdi"].all()
    assert t["std_diff"].abs().max() < 0.3

    small = mixture_data(30, 2, seed=8)
    fit = bg.fit_map(small, 2, "full", random_state=0)
    idata = bg.sample_posterior(small, 2, "full", fit.prior, init=fit, draws=1000, tune=1000,
                                chains=2, random_seed=2, progressbar=False)
    t = bg.compare(fit, idata).table
    variances = t[[("covariances" in i) and (i.split(", ")[1] == i.split(", ")[2][:-1])
                   for i in t.index]]
    assert variances["std_diff"].min() < -0.5


# ----------------------------------------------------------------------------- is the MAP the MAP?
@pytest.fixture(scope="module")
def three_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [6, 0], [0, 6.0]])
    return np.vstack([c + rng.normal(size=(100, 2)) for c in centres])


def test_map_check_finds_the_higher_mode_a_local_fit_missed(three_blobs):
    """A fit stuck with two components in one cluster and one spanning two is 154 nats below
    the real mode; Gibbs draws started there leave it at once, and EM from the best of them
    reaches the mode the default search finds — to EM's tolerance."""
    X = three_blobs
    good = bg.fit_map(X, 3, random_state=0)
    stuck = bg.fit_map(X, 3, init=MixtureParams(
        np.ones(3) / 3, np.array([[-0.5, 0], [0.5, 0], [3, 3.0]]),
        np.stack([np.eye(2), np.eye(2), 10 * np.eye(2)])))
    assert stuck.log_posterior < good.log_posterior - 100
    idata = bg.sample_posterior(X, 3, "full", stuck.prior, sampler="gibbs", init=stuck,
                                draws=100, tune=0, chains=2, random_seed=0, progressbar=False)
    check = bg.compare(stuck, idata).map_check
    assert check.draws_above > 0 and check.best_draw_log_posterior > stuck.log_posterior
    assert check.gain == pytest.approx(good.log_posterior - stuck.log_posterior, abs=1e-6)
    assert check.improved_fit.log_posterior == pytest.approx(good.log_posterior, abs=1e-6)
    assert "NOT the posterior's highest mode" in bg.compare(stuck, idata).summary()

    idata = bg.sample_posterior(X, 3, "full", good.prior, sampler="gibbs", init=good,
                                draws=100, tune=0, chains=2, random_seed=0, progressbar=False)
    check = bg.compare(good, idata).map_check
    assert check.gain == 0 and check.improved_fit is None and check.draws_above == 0
    assert check.best_draw_log_posterior < good.log_posterior
    assert check.to_dict()["improved_log_posterior"] is None


def test_map_check_says_when_it_cannot_run(synthetic):
    """Draws without log_likelihood/log_prior groups (a stand-in posterior) cannot be checked;
    the report says so instead of guessing."""
    fit, _, idata = synthetic
    check = bg.compare(fit, idata).map_check
    assert np.isnan(check.best_draw_log_posterior) and check.gain == 0
    assert "not possible" in check.summary()


def test_predictive_draws_follow_the_mixture(synthetic):
    """Replicated data from draws concentrated at the fit have the fit's mixture mean and
    component shares (within 5 standard errors over 200 × 300 rows)."""
    from bayesgmm.plots import predictive_draws

    fit, X, idata = synthetic
    reps = predictive_draws(idata.posterior, fit.covariance_type, 300, n_draws=200)
    assert reps.shape == (200, 300, 2)
    post = idata.posterior
    draw_means = np.einsum("cdk,cdkj->cdj", post["weights"].values,
                           post["means"].values).reshape(-1, 2)   # each draw's mixture mean
    flat = reps.reshape(-1, 2)
    # SE of the pooled mean: row noise plus the spread of the 200 draws' own means
    se = np.sqrt(flat.var(0) / len(flat) + draw_means.var(0) / 200)
    assert np.all(np.abs(flat.mean(0) - draw_means.mean(0)) < 5 * se)
    share = (fit.predict(flat) == 0).mean()
    assert abs(share - fit.weights[0]) < 0.02


def test_relabel_returns_inference_data_with_every_labelled_group_permuted(three_blobs):
    """Chains started in another labelling of the components are relabelled as a whole
    InferenceData: the posterior, and the log_prior and sample_stats entries per component,
    move together (each draw's per-component log prior still belongs to its component)."""
    X = three_blobs
    fit = bg.fit_map(X, 3, random_state=0)
    order = [2, 0, 1]
    shuffled = bg.fit_map(X, 3, "full", fit.prior, init=MixtureParams(
        fit.weights[order], fit.means[order], fit.covariances[order]), max_iter=0,
        warn_convergence=False)
    idata = bg.sample_posterior(X, 3, "full", fit.prior, sampler="gibbs", init=shuffled,
                                draws=30, tune=0, chains=2, random_seed=1, progressbar=False)
    result = bg.relabel(idata, fit)
    assert result.n_permuted == 60
    out = result.idata
    assert set(out.groups()) == set(idata.groups())
    for c, t in [(0, 0), (1, 29)]:
        draw = out.posterior.isel(chain=c, draw=t)
        terms = fit.prior.log_prior_terms(draw["weights"].values, draw["means"].values,
                                          draw["covariances"].values)
        np.testing.assert_allclose(out.log_prior["means"].isel(chain=c, draw=t), terms["means"])
        np.testing.assert_allclose(out.log_prior["covariances"].isel(chain=c, draw=t),
                                   terms["covariances"])
    np.testing.assert_array_equal(out.log_likelihood["x"], idata.log_likelihood["x"])
    sizes = out.sample_stats["component_sizes"].isel(chain=0).mean("draw").values
    assert np.all(np.abs(sizes - 100) < 10)  # each blob's 100 rows, in the fit's order
    np.testing.assert_allclose(out.posterior["means"].mean(("chain", "draw")), fit.means,
                               atol=0.3)
