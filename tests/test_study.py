"""End to end: `bayesgmm demo` at a small size writes every file its report promises, and every
number in the report equals the Python API's for the same seed."""

import json
import re
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesgmm as bg
from bayesgmm.cli import main
from bayesgmm.health import SamplerWarning
from bayesgmm.spec import load_spec

DRAWS = TUNE = 100
CHAINS = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "demo_output"
    code = main(["demo", "--quick", "--draws", str(DRAWS), "--tune", str(TUNE), "--out",
                 str(folder), "--quiet"])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def api():
    """The same study through the Python API."""
    X = bg.load_dataset("faithful")
    prior = bg.default_prior(X, 2, "full")
    fit = bg.fit_map(X, 2, "full", prior=prior, tol=1e-10, max_iter=1000,
                     random_state=0)
    with warnings.catch_warnings():  # 2 × 100 draws are too few for R-hat/ESS, as expected
        warnings.simplefilter("ignore", SamplerWarning)
        idata = bg.sample_posterior(X, 2, "full", prior, init=fit, draws=DRAWS, tune=TUNE,
                                    chains=CHAINS, random_seed=0, progressbar=False,
                                    sampler="gibbs")
    return X, fit, idata


def links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


@pytest.mark.slow
def test_demo_writes_every_promised_file(demo):
    index = (demo / "README.md").read_text()
    listed = re.findall(r"^\* `([^`]+)`", index, flags=re.M)
    assert len(listed) >= 7
    for name in listed:
        assert (demo / name).exists(), name
    for readme in [demo / "README.md", *demo.glob("*/README.md")]:
        for link in links(readme.read_text()):
            assert (readme.parent / link).exists(), (readme, link)
    for figure in ("ellipses", "forest", "marginals", "trace"):
        assert (demo / "comparison" / f"{figure}.png").stat().st_size > 1000
    for table in ("sweep_summary", "power_scaling"):
        assert (demo / "sensitivity" / f"{table}.csv").exists()
        assert (demo / "sensitivity" / f"{table}.md").exists()
    provenance = json.loads((demo / "provenance.json").read_text())
    assert provenance["versions"]["bayesgmm"] == bg.__version__ and provenance["seed"] == 0
    spec = load_spec(demo / "spec.toml")
    assert spec.sampler.draws == DRAWS and spec.sampler.chains == CHAINS
    assert "The MAP lies inside the 94% HDI" in index
    assert not list(demo.parent.glob(".demo_output*")), "a staging folder was left behind"


@pytest.mark.slow
def test_demo_numbers_equal_the_python_api(demo, api):
    X, fit, idata = api
    em = xr.open_dataset(demo / "em_fit.nc")
    for var in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(em[var].values, getattr(fit, var))
    assert em.attrs["log_posterior"] == fit.log_posterior
    em.close()
    assert bg.load(demo / "em_fit.nc").log_posterior == fit.log_posterior

    saved = az.from_netcdf(demo / "posterior.nc")
    for var in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(saved.posterior[var].values, idata.posterior[var].values)

    report = bg.compare(fit, idata)
    table = pd.read_csv(demo / "comparison" / "comparison.csv", index_col=0)
    pd.testing.assert_frame_equal(table, report.table, check_exact=False, rtol=1e-12,
                                  check_dtype=False, check_names=False)
    assert report.summary() in (demo / "README.md").read_text()

    spec = load_spec(demo / "spec.toml")
    grid = {k: list(v) for k, v in spec.sensitivity.grid.items()}
    sweep = bg.prior_sweep(X, 2, "full", fit.prior, grid, base_fit=fit, n_init=spec.em.n_init,
                           tol=spec.em.tol, max_iter=spec.em.max_iter, random_state=spec.seed,
                           progress=False)  # the spec's own [em] settings
    saved_sweep = xr.open_dataset(demo / "sensitivity" / "sweep.nc")
    for var in ("weights", "means", "covariances", "log_posterior"):
        np.testing.assert_array_equal(saved_sweep[var].values, sweep[var].values)
    saved_sweep.close()

    sens = bg.sensitivity_report(fit, idata, X).table
    saved_sens = pd.read_csv(demo / "sensitivity" / "power_scaling.csv", index_col=0)
    numeric = sens.select_dtypes("number").columns
    pd.testing.assert_frame_equal(saved_sens[numeric], sens[numeric], check_exact=False,
                                  rtol=1e-12, check_names=False)
