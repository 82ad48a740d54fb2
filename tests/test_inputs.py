"""Every value that can be wrong is checked where it enters, with a message naming it; values
that are finite in float64 fit or fail naming their magnitude (issue: data safety, classes 4–5).
"""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import bayesgmm as bg
from bayesgmm.cli import main
from bayesgmm.spec import SpecError, parse_spec
from tests.conftest import blobs

FAITHFUL = bg.load_dataset("faithful")
X = FAITHFUL.to_numpy()


@pytest.fixture(scope="module")
def fit():
    return bg.fit_map(FAITHFUL, 2, random_state=0)


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- silently wrong
def test_an_infinite_tolerance_is_refused_by_the_api_and_the_spec():
    with pytest.raises(ValueError, match="tol must be a finite number ≥ 0, got inf"):
        bg.fit_map(X, 2, tol=float("inf"))
    text = '[data]\ndataset = "faithful"\n[model]\nn_components = 2\n[em]\ntol = inf\n'
    with pytest.raises(SpecError, match=r"s.toml:6: \[em\] tol must be a finite number"):
        parse_spec(text, "s.toml")


def test_a_csv_without_a_header_is_not_read_as_one(tmp_path, capsys):
    np.savetxt(tmp_path / "raw.csv", X, delimiter=",", fmt="%g")
    code, _, err = run_cli(["fit", tmp_path / "raw.csv", "-k", "2"], capsys)
    assert code == 2 and "the first row (3.6, 79) is numbers, not column names" in err
    assert "--no-header" in err
    code, out, _ = run_cli(["fit", tmp_path / "raw.csv", "-k", "2", "--no-header", "--json"],
                           capsys)
    assert code == 0 and '"x0"' in out
    text = f'[data]\npath = "{tmp_path / "raw.csv"}"\nheader = false\n[model]\nn_components = 2\n'
    assert parse_spec(text).data.header is False


def test_repeated_columns_are_refused(tmp_path, capsys):
    FAITHFUL.to_csv(tmp_path / "d.csv", index=False)
    code, _, err = run_cli(["fit", tmp_path / "d.csv", "-k", "2", "--columns",
                            "eruptions,eruptions"], capsys)
    assert code == 2 and "the columns repeat ['eruptions']" in err


def test_a_masked_arrays_mask_is_not_ignored():
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked.mask[3, 1] = True
    with pytest.raises(ValueError, match=r"masked array with 1 masked value\(s\)"):
        bg.fit_map(masked, 2)
    unmasked = np.ma.masked_array(X)  # no masked entries: the data are used as they are
    assert bg.fit_map(unmasked, 2, random_state=0).n_components == 2


def test_asymmetric_covariances_are_refused_not_half_read(fit):
    covs = np.array(fit.covariances)
    covs[1, 0, 1] += 1.0
    init = {"weights": fit.weights, "means": fit.means, "covariances": covs}
    with pytest.raises(ValueError, match=r"init covariances must be symmetric: matrix 1: entry "
                                         r"\[0, 1\]"):
        bg.fit_map(X, 2, init=init)
    with pytest.raises(ValueError, match="covariances must be symmetric"):
        fit.prior.logpdf(fit.weights, fit.means, covs)


def test_a_zero_finite_difference_step_is_refused(fit):
    with pytest.raises(ValueError, match="step must be a finite number > 0, got 0"):
        bg.em_sensitivity(fit, X, step=0)


def test_predictions_for_unrepresentable_rows_are_refused(fit):
    with pytest.raises(ValueError, match=r"row 0 of X \(largest \|x\| 1e\+200\) lies so far "
                                         r"from every component.*float64"):
        fit.predict(np.array([[1e200, 1e200]]))
    with pytest.raises(ValueError, match="float64"):
        fit.predict_proba(np.array([[1e200, 3.0], [3.0, 70.0]]))
    far = fit.predict_proba(np.array([[1e140, 1e140]]))  # far, but representable
    assert np.all(np.isfinite(far)) and far.sum() == pytest.approx(1.0)


def test_target_accept_outside_0_1_is_refused_by_the_api():
    with pytest.raises(ValueError, match=r"target_accept must lie in the open interval \(0, 1\), "
                                         "got 2"):
        bg.sample_posterior(X, 2, sampler="nuts", target_accept=2)


# ----------------------------------------------------------------------------- unhelpful errors
def test_a_prior_mean_of_the_wrong_length_is_named(fit):
    with pytest.raises(ValueError, match=r"a prior mean must have length d=2.*got shape \(3,\)"):
        bg.adjust_prior(fit.prior, {"mean": [0.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match=r"mean has length 3 but scale has shape \(2, 2\)"):
        bg.GMMPrior(mean=[0, 0, 0], shrinkage=1, dof=4, scale=np.eye(2))


@pytest.mark.parametrize("factor", [1e-100, 1e-30, 1e30, 1e100])
def test_the_fit_is_equivariant_at_any_representable_magnitude(factor):
    same = dict(random_state=0, tol=0, max_iter=200, warn_convergence=False)  # same iterations
    fit = bg.fit_map(X, 2, **same)
    scaled = bg.fit_map(X * factor, 2, **same)
    np.testing.assert_allclose(scaled.means / factor, fit.means, rtol=1e-10)
    np.testing.assert_allclose(scaled.covariances / factor**2, fit.covariances, rtol=1e-10)
    # log p(θ | X) changes by the Jacobians of x and θ: −N d log c and −(K d + 2 p_Σ) log c
    K, d, n = 2, 2, len(X)
    shift = -(n * d + K * d + 2 * 6) * np.log(factor)
    assert scaled.log_posterior == pytest.approx(fit.log_posterior + shift, rel=1e-10)


@pytest.mark.parametrize("power", [-300, -7, 5, 330])
def test_power_of_two_rescaling_is_exact(fit, power):
    """With a power-of-two factor the working data are bit-identical, so the fit is too."""
    factor = 2.0**power
    scaled = bg.fit_map(X * factor, 2, random_state=0)
    np.testing.assert_array_equal(scaled.means, fit.means * factor)
    np.testing.assert_array_equal(scaled.covariances, fit.covariances * factor**2)
    assert scaled.n_iter == fit.n_iter


@pytest.mark.parametrize("factor, words", [(1e154, "too large"), (1e-160, "too small")])
def test_magnitudes_float64_cannot_hold_are_named(factor, words):
    with pytest.raises(ValueError, match=rf"the data's spread .* is [\d.e+-]+, {words} for "
                                         "float64.*rescale the data"):
        bg.fit_map(X * factor, 2)
    with pytest.raises(ValueError, match=words):
        bg.default_prior(X * factor, 2)


@pytest.mark.parametrize("weight", [1e-300, 1e300])
def test_extreme_sample_weights_fit(weight):
    # one start (the search would find the likelihood's spikes the prior no longer tames)
    same = dict(init="kmeans++", random_state=0)
    fit = bg.fit_map(X, 2, sample_weight=np.full(len(X), weight), **same)
    assert np.all(np.isfinite(fit.means)) and np.isfinite(fit.log_posterior)
    assert np.all(np.linalg.eigvalsh(fit.covariances) > 0)
    if weight > 1:  # the likelihood dominates: the maximum-likelihood answer
        ml = bg.fit_map(X, 2, prior=None, **same)
        np.testing.assert_allclose(np.sort(fit.means[:, 0]), np.sort(ml.means[:, 0]), rtol=1e-6)
    else:  # the prior dominates: every mean at the prior mean
        np.testing.assert_allclose(fit.means, np.broadcast_to(fit.prior.mean, (2, 2)),
                                   rtol=1e-12)


def test_a_prior_mean_far_beyond_the_data_is_named(fit):
    prior = bg.adjust_prior(fit.prior, {"mean": [1e200, 1e200]})
    with pytest.raises(ValueError, match="the prior mean's distance from the data's centre.* "
                                         "too large"):
        bg.fit_map(X, 2, prior=prior)


def test_pandas_missing_values_and_sparse_input_are_named():
    frame = FAITHFUL.astype("Float64")
    frame.iloc[5, 1] = pd.NA
    with pytest.raises(ValueError, match=r"X has 1 missing value\(s\) in column\(s\) "
                                         r"\['waiting'\], the first in row 5"):
        bg.fit_map(frame, 2)
    clean = FAITHFUL.astype("Float64")  # nullable dtypes without NA are just numbers
    assert bg.fit_map(clean, 2, random_state=0).feature_names == ("eruptions", "waiting")
    with pytest.raises(TypeError, match="sparse input is not supported.*toarray"):
        bg.fit_map(sparse.csr_matrix(X), 2)


def test_wrong_objects_are_named(fit):
    with pytest.raises(TypeError, match="fit must be a MixtureFit .* got NoneType"):
        bg.compare(None, object())
    with pytest.raises(TypeError, match="power_scale needs a GMMPrior .* got NoneType"):
        bg.power_scale(None, 2)
    with pytest.raises(ValueError, match="random_state must be a non-negative integer seed, "
                                         "got -1"):
        bg.fit_map(X, 2, random_state=-1)


def test_hdi_prob_as_text_is_named(fit):
    import arviz as az

    idata = az.from_dict(posterior={"weights": np.full((1, 2, 2), 0.5),
                                    "means": np.broadcast_to(fit.means, (1, 2, 2, 2)),
                                    "covariances": np.broadcast_to(fit.covariances,
                                                                   (1, 2, 2, 2, 2))})
    with pytest.raises(TypeError, match="hdi_prob must be a real number, got '0.9'"):
        bg.compare(fit, idata, hdi_prob="0.9")


def test_a_posterior_draw_that_is_not_positive_definite_is_named(fit):
    import arviz as az

    covs = np.broadcast_to(fit.covariances, (1, 3, 2, 2, 2)).copy()
    covs[0, 2, 1] = -np.eye(2)
    idata = az.from_dict(
        posterior={"weights": np.broadcast_to(fit.weights, (1, 3, 2)),
                   "means": np.broadcast_to(fit.means, (1, 3, 2, 2)), "covariances": covs},
        coords={"component": [0, 1], "feature": ["eruptions", "waiting"],
                "feature_bis": ["eruptions", "waiting"]},
        dims={"weights": ["component"], "means": ["component", "feature"],
              "covariances": ["component", "feature", "feature_bis"]})
    with pytest.raises(ValueError, match=r"1 draw\(s\) fail, the first at chain 0, draw 2, "
                                         "component 1"):
        bg.compare(fit, idata)


def test_impossible_draw_counts_fail_before_compiling(capsys):
    code, _, err = run_cli(["sample", "faithful", "-k", "2", "--draws", str(10**20)], capsys)
    assert code == 2 and "would hold" in err and "GiB" in err and "ask for fewer draws" in err


def test_a_study_name_is_never_a_path():
    base = '[data]\ndataset = "faithful"\n[model]\nn_components = 2\n'
    for name in ("../../x", "/tmp/x", "a/b", ".hidden", ".."):
        with pytest.raises(SpecError, match=r"s.toml:1: name: expected a plain name"):
            parse_spec(f'name = "{name}"\n' + base, "s.toml")
    assert parse_spec('name = "faithful_v2.1"\n' + base).name == "faithful_v2.1"


def test_nonfinite_spec_values_are_refused():
    base = '[data]\ndataset = "faithful"\n[model]\nn_components = 2\n[prior]\n'
    for value in ("inf", "nan", "-inf"):
        with pytest.raises(SpecError, match=r"\[prior\] shrinkage"):
            parse_spec(base + f"shrinkage = {value}\n", "s.toml")


def test_blobs_unaffected_by_the_checks():
    assert bg.fit_map(blobs(seed=1), 3, random_state=0).converged
