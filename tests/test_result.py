import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture

import bayesgmm as bg
from tests.conftest import END_TO_END_STRUCTURES, SKLEARN_STRUCTURES, blobs
from tests.reference import component_log_densities


@pytest.fixture(scope="module", params=END_TO_END_STRUCTURES)
def fitted(request):
    X = blobs(seed=12, n=300, d=3)
    return X, bg.fit_map(X, 3, request.param, random_state=0)


def test_predictions_match_scipy(fitted):
    X, fit = fitted
    joint = component_log_densities(X, fit.means, fit.covariances, fit.covariance_type) + np.log(
        fit.weights)
    log_px = np.logaddexp.reduce(joint, axis=1)
    np.testing.assert_allclose(fit.score_samples(X), log_px, rtol=1e-12)
    np.testing.assert_allclose(fit.predict_proba(X), np.exp(joint - log_px[:, None]), atol=1e-12)
    np.testing.assert_array_equal(fit.predict(X), joint.argmax(1))
    assert fit.log_likelihood == pytest.approx(log_px.sum(), rel=1e-12)


def test_criteria_formulas(fitted):
    X, fit = fitted
    K, d = 3, 3
    n_cov = {"full": K * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": K * d,
             "spherical": K, "EEI": d, "EII": 1,  # mclust's nMclustParams from here on
             "EVI": 1 + K * (d - 1), "EEV": 1 + (d - 1) + K * d * (d - 1) // 2,
             "VEE": K + (d - 1) + d * (d - 1) // 2,
             "EVE": 1 + K * (d - 1) + d * (d - 1) // 2}[fit.covariance_type]
    p = K - 1 + K * d + n_cov
    ll = fit.score_samples(X).sum()
    assert fit.n_parameters() == p
    assert fit.bic(X) == pytest.approx(-2 * ll + p * np.log(len(X)), rel=1e-12)
    assert fit.aic(X) == pytest.approx(-2 * ll + 2 * p, rel=1e-12)
    R = fit.predict_proba(X)
    assert fit.icl(X) == pytest.approx(fit.bic(X) - 2 * np.log(R.max(1)).sum(), rel=1e-12)
    assert fit.icl(X) >= fit.bic(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance", SKLEARN_STRUCTURES)
def test_bic_and_parameter_count_agree_with_sklearn(covariance):
    X = blobs(seed=2)
    fit = bg.fit_map(X, 3, covariance, prior=None, random_state=0)
    sk = GaussianMixture(3, covariance_type=covariance, weights_init=fit.weights,
                         means_init=fit.means, max_iter=1, reg_covar=0).fit(X)
    sk.weights_, sk.means_, sk.covariances_ = fit.weights, fit.means, fit.covariances
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
    sk.precisions_cholesky_ = _compute_precision_cholesky(fit.covariances, covariance)
    assert fit.bic(X) == pytest.approx(sk.bic(X), rel=1e-10)
    assert fit.aic(X) == pytest.approx(sk.aic(X), rel=1e-10)


def test_sample_reproduces_the_mixture(fitted):
    _, fit = fitted
    draws, labels = fit.sample(40000, random_state=3)
    again, _ = fit.sample(40000, random_state=3)
    np.testing.assert_array_equal(draws, again)
    counts = np.bincount(labels, minlength=3)
    # multinomial counts: each within 4 binomial sds of N π_k
    sd = np.sqrt(40000 * fit.weights * (1 - fit.weights))
    assert np.all(np.abs(counts - 40000 * fit.weights) < 4 * sd)
    dense = fit.covariance_matrices
    for k in range(3):
        Xk = draws[labels == k]
        # mean: 4 standard errors per coordinate
        se = np.sqrt(np.diag(dense[k]) / len(Xk))
        assert np.all(np.abs(Xk.mean(0) - fit.means[k]) < 4 * se)
        # each component passes a KS test of its first whitened coordinate against N(0, 1)
        z = (Xk[:, 0] - fit.means[k, 0]) / np.sqrt(dense[k, 0, 0])
        assert stats.kstest(z, "norm").pvalue > 1e-3


def test_results_are_read_only(fitted):
    _, fit = fitted
    for name in ("weights", "means", "covariances", "history"):
        with pytest.raises(ValueError):
            getattr(fit, name)[...] = 0
    with pytest.raises(AttributeError):
        fit.n_iter = 3


def test_to_xarray_dims_and_feature_names():
    X = bg.load_dataset("iris")
    dims = {"full": ("component", "feature", "feature_bis"), "tied": ("feature", "feature_bis"),
            "diag": ("component", "feature"), "spherical": ("component",), "EEI": ("feature",),
            "EII": (), "EVI": ("component", "feature")}
    dims.update(dict.fromkeys(("EEV", "VEE", "EVE"), dims["full"]))
    for covariance in END_TO_END_STRUCTURES:
        ds = bg.fit_map(X, 3, covariance, random_state=0).to_xarray()
        assert ds["covariances"].dims == dims[covariance]
        assert ds["means"].dims == ("component", "feature")
        assert list(ds["feature"].values) == list(X.columns)
        assert ds.sizes["component"] == 3
    plain = bg.fit_map(X.to_numpy(), 2, random_state=0).to_xarray()
    assert list(plain["feature"].values) == ["x0", "x1", "x2", "x3"]


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
def test_save_load_round_trip_is_exact(fitted, tmp_path, suffix):
    X, fit = fitted
    path = fit.save(tmp_path / f"fit{suffix}")
    back = bg.load(path)
    for name in ("weights", "means", "covariances", "history"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fit, name))
    for name in ("covariance_type", "log_likelihood", "log_posterior", "n_iter", "converged",
                 "n_samples", "feature_names"):
        assert getattr(back, name) == getattr(fit, name)
    for name in ("mean", "scale", "shrinkage", "dof", "concentration", "covariance"):
        np.testing.assert_array_equal(getattr(back.prior, name), getattr(fit.prior, name))
    np.testing.assert_array_equal(back.predict_proba(X), fit.predict_proba(X))


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
def test_save_load_without_prior_and_with_names(tmp_path, suffix):
    fit = bg.fit_map(bg.load_dataset("faithful"), 2, prior=None, random_state=0)
    back = bg.load(fit.save(tmp_path / f"ml{suffix}"))
    assert back.prior is None and back.feature_names == ("eruptions", "waiting")


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "x"}'))
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    import xarray as xr

    xr.Dataset({"x": ("i", np.ones(3))}).to_netcdf(tmp_path / "other.nc")
    for name in ("other.npz", "plain.npz", "other.nc"):
        with pytest.raises(ValueError, match=f"{name}.*(not a saved bayesgmm|not a readable)"):
            bg.load(tmp_path / name)


def test_predict_checks_feature_count(fitted):
    _, fit = fitted
    with pytest.raises(ValueError, match="has 2 features but the model was fitted with 3"):
        fit.predict(np.zeros((4, 2)))


def test_sklearn_estimator():
    from sklearn.base import clone

    X = bg.load_dataset("faithful")
    est = bg.MAPGaussianMixture(2, random_state=0).fit(X)
    fit = bg.fit_map(X, 2, random_state=0)
    np.testing.assert_array_equal(est.means_, fit.means)
    np.testing.assert_array_equal(est.predict(X), fit.predict(X))
    assert est.score(X) == pytest.approx(fit.log_likelihood / len(X))
    assert clone(est).get_params()["n_components"] == 2
    assert list(est.feature_names_in_) == ["eruptions", "waiting"]


def test_import_does_not_load_pymc_or_sklearn():
    import subprocess
    import sys

    code = ("import sys, bayesgmm; "
            "print(any(m in sys.modules for m in ('pymc', 'pytensor', 'arviz', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("covariance", ["full", "tied", "diag", "spherical"])
def test_fits_priors_and_the_estimator_pickle(faithful, covariance):
    """pickle/joblib — how scikit-learn users persist models — round-trip exactly (the
    covariance table's rows pickle by name)."""
    import io
    import pickle

    import joblib

    fit = bg.fit_map(faithful, 2, covariance, random_state=0)
    again = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(again.predict_proba(faithful), fit.predict_proba(faithful))
    for name in ("mean", "scale", "shrinkage", "dof", "covariance"):
        np.testing.assert_array_equal(getattr(again.prior, name), getattr(fit.prior, name))
    assert again.prior.logpdf(fit.weights, fit.means, fit.covariances) == \
        fit.prior.logpdf(fit.weights, fit.means, fit.covariances)
    estimator = bg.MAPGaussianMixture(n_components=2, covariance=covariance).fit(faithful)
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    np.testing.assert_array_equal(loaded.predict(faithful), estimator.predict(faithful))
    assert loaded.score(faithful) == estimator.score(faithful)
