"""The scikit-learn estimator conforms: scikit-learn's own check suite, feature checks,
sample weights, and GaussianMixture's attributes with its meanings."""

import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import check_estimator

import bayesgmm as bg


def test_check_estimator_passes_every_check():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(bg.MAPGaussianMixture(), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    assert failed == {}
    assert len(results) >= 40


def test_features_are_checked_like_scikit_learns(faithful):
    model = bg.MAPGaussianMixture(n_components=2, random_state=0).fit(faithful)
    assert list(model.feature_names_in_) == ["eruptions", "waiting"]
    with pytest.raises(ValueError, match="feature names"):
        model.predict(faithful[["waiting", "eruptions"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(faithful.to_numpy())
    with pytest.raises(ValueError, match="expecting 2 features"):
        model.score_samples(np.ones((3, 3)))
    with pytest.raises(ValueError, match="Reshape your data"):
        model.predict(np.ones(3))


def test_sklearn_attributes_mean_what_they_mean_there(faithful):
    """precisions_cholesky_, precisions_ and the per-sample lower_bound_ as GaussianMixture's
    (prior=None: the same model; same start)."""
    X = faithful.to_numpy()
    for covariance in ("full", "tied", "diag", "spherical"):
        ours = bg.MAPGaussianMixture(n_components=2, covariance=covariance, prior=None,
                                     init="kmeans++", random_state=0, tol=1e-12,
                                     max_iter=5000).fit(X)
        theirs = GaussianMixture(2, covariance_type=covariance, weights_init=ours.weights_,
                                 means_init=ours.means_, precisions_init=ours.precisions_,
                                 max_iter=1, tol=0, reg_covar=0).fit(X)
        np.testing.assert_allclose(ours.precisions_, theirs.precisions_, rtol=1e-5)
        np.testing.assert_allclose(ours.precisions_cholesky_, theirs.precisions_cholesky_,
                                   rtol=1e-5)
        assert ours.lower_bound_ == pytest.approx(ours.score(X), rel=1e-8)
        assert ours.lower_bounds_[-1] == pytest.approx(ours.lower_bound_)


def test_weights_equal_repeated_rows(faithful):
    """Integer sample weights are the same data with rows repeated (prior, start and fit)."""
    X = faithful.to_numpy()[:60]
    w = np.random.default_rng(0).integers(1, 4, size=len(X))
    weighted = bg.MAPGaussianMixture(n_components=2, random_state=0, tol=1e-12).fit(
        X, sample_weight=w)
    repeated = bg.MAPGaussianMixture(n_components=2, random_state=0, tol=1e-12).fit(
        np.repeat(X, w, axis=0))
    assert weighted.log_posterior_ == pytest.approx(repeated.log_posterior_, rel=1e-9)
    np.testing.assert_allclose(np.sort(weighted.means_, axis=0),
                               np.sort(repeated.means_, axis=0), rtol=1e-6)


def test_covariance_type_is_accepted_as_gaussian_mixture_does(faithful):
    from sklearn.base import clone

    model = bg.MAPGaussianMixture(n_components=2, covariance_type="diag", random_state=0)
    assert clone(model).fit(faithful).covariances_.shape == (2, 2)
    assert model.get_params()["covariance_type"] == "diag"


@pytest.mark.parametrize("init", ["auto", "emem", "hc", "kmeans++", "random"])
def test_integer_weights_equal_repeated_rows_for_every_start(faithful, init):
    X = faithful.to_numpy()[:60]
    w = np.random.default_rng(0).integers(1, 4, size=len(X))
    weighted = bg.fit_map(X, 2, sample_weight=w, init=init, random_state=0, tol=1e-12)
    repeated = bg.fit_map(np.repeat(X, w, axis=0), 2, init=init, random_state=0, tol=1e-12)
    assert weighted.log_posterior == pytest.approx(repeated.log_posterior, rel=1e-12)
    np.testing.assert_allclose(np.sort(weighted.means, axis=0),
                               np.sort(repeated.means, axis=0), rtol=1e-9)


def test_reports_and_specs_pickle(faithful):
    import pickle

    fit = bg.fit_map(faithful, 2, random_state=0)
    idata = bg.sample_posterior(faithful, 2, init=fit, sampler="gibbs", draws=50, tune=0,
                                chains=2, random_seed=0, progressbar=False)
    report = pickle.loads(pickle.dumps(bg.compare(fit, idata)))
    assert report.summary() == bg.compare(fit, idata).summary()
    spec = bg.load_spec("models/old_faithful.toml")
    assert pickle.loads(pickle.dumps(spec)) == spec
