"""bayesgmm.sample_posterior against the Gaussian mixture a PyMC user typically writes.

Old Faithful, K = 2 and 3, full covariances, 4 chains × (1000 tune + 1000 draws), one BLAS thread.
The hand-built model is ``pm.Mixture`` of ``pm.MvNormal`` components, one ``LKJCholeskyCov``
prior per component, run three ways: from PyMC's default start (its usual use; label switching is
expected), from the same MAP-EM point as ours (the fair speed comparison), and from that point with
the same Numba backend and single process as ours; ours runs twice, the second time with another
prior on the model the first run compiled (its data and prior values are pm.Data).  Reported per
run: start-up time (wall time minus PyMC's sampling time: compilation, initialisation,
log-likelihood), the time to the first draw (which also counts Numba's just-in-time compile, which
PyMC's sampling time includes; warm on-disk caches for every run), sampling time, min bulk ESS over
the weights and means (the parameters both models share) and over all parameters, ESS per second
of sampling, max R-hat, divergences.  bayesgmm also runs ``sampler="nutpie"`` on the same
model (chains on min(chains, CPUs) threads; its first run compiles, and nutpie's compilation
is not cached on disk), whose sampling time is bayesgmm's ``draw_time`` (the draws and the
pointwise log-likelihoods).

    OPENBLAS_NUM_THREADS=1 python benchmarks/posterior_vs_handbuilt.py [--quick]

writes benchmarks/results/posterior_vs_handbuilt.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402

import bayesgmm as bg  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import OUT, markdown_table, write_results  # noqa: E402


def handbuilt_model(X, K):
    """The model of PyMC's mixture examples: LKJ Cholesky priors, one per component."""
    d = X.shape[1]
    with pm.Model() as model:
        w = pm.Dirichlet("w", a=np.ones(K))
        components, mus = [], []
        for k in range(K):
            chol, _, _ = pm.LKJCholeskyCov(f"chol{k}", n=d, eta=2.0,
                                           sd_dist=pm.Exponential.dist(1.0 / X.std(0), shape=d))
            mu = pm.Normal(f"mu{k}", mu=X.mean(0), sigma=2 * X.std(0), shape=d)
            mus.append(mu)
            components.append(pm.MvNormal.dist(mu=mu, chol=chol))
        pm.Mixture("x", w=w, comp_dists=components, observed=X)
    return model


def handbuilt_initvals(fit):
    values = {"w": np.asarray(fit.weights)}
    rows, cols = np.tril_indices(fit.n_features)
    for k in range(fit.n_components):
        values[f"mu{k}"] = np.asarray(fit.means[k])
        values[f"chol{k}"] = np.linalg.cholesky(fit.covariances[k])[rows, cols]
    return values


class FirstDraw:
    """pm.sample callback: the wall time of the first draw (compilation, including Numba's
    just-in-time compile, and initialisation happen before it)."""

    def __init__(self):
        self.start, self.at = time.perf_counter(), None

    def __call__(self, trace, draw):
        if self.at is None:
            self.at = time.perf_counter() - self.start


def summarise(idata, wall, shared, first_draw):
    attrs = idata.sample_stats.attrs  # nutpie's runs: bayesgmm's draw_time (with log-lik)
    sampling = float(attrs["sampling_time"] if "sampling_time" in attrs else attrs["draw_time"])
    post = idata.posterior
    ess = az.ess(post, method="bulk")
    rhat = az.rhat(post)

    def extreme(ds, names, fn):
        vals = np.concatenate([np.ravel(ds[n].values) for n in names])
        return float(fn(vals[np.isfinite(vals)]))

    names = [v for v in post.data_vars if float(post[v].std()) > 0]
    min_shared = extreme(ess, shared, np.min)
    return {"startup_s": wall - sampling, "first_draw_s": first_draw, "sampling_s": sampling,
            "min_ess_bulk_shared": min_shared, "min_ess_bulk_all": extreme(ess, names, np.min),
            "ess_per_s_shared": min_shared / sampling, "max_rhat": extreme(rhat, names, np.max),
            "divergences": int(idata.sample_stats["diverging"].sum())}


OURS = "bayesgmm (Numba, 1 process)"
OURS_SECOND_PRIOR = "bayesgmm, a second prior (compiled model reused)"
#: sampler="nutpie" (the nutpie extra): compiled in this process, then reused
NUTPIE = "bayesgmm, sampler='nutpie' (its compile included)"
NUTPIE_SECOND_PRIOR = "bayesgmm, sampler='nutpie', a second prior"


def run(X, K, draws, tune, seed, ours_only=False):
    fit = bg.fit_map(X, K, "full", n_init=4, tol=1e-10, max_iter=5000, random_state=seed)
    rows = {}
    # the second run re-samples another prior on the model the first compiled (pm.Data)
    other = replace(fit.prior, shrinkage=10 * fit.prior.shrinkage)
    for name, prior, sampler in ((OURS, fit.prior, "nuts"), (OURS_SECOND_PRIOR, other, "nuts"),
                                 (NUTPIE, fit.prior, "nutpie"),
                                 (NUTPIE_SECOND_PRIOR, other, "nutpie")):
        t = time.perf_counter()
        idata = bg.sample_posterior(X, K, "full", prior, sampler=sampler, init=fit, draws=draws,
                                    tune=tune, chains=4, random_seed=seed, progressbar=False)
        rows[name] = summarise(idata, time.perf_counter() - t, ["weights", "means"],
                               float(idata.sample_stats.attrs["startup_time"]))
        rows[name]["chains_disagree_on_labels"] = json.loads(
            idata.posterior.attrs["sampler_health"])["chains_disagree"]
    if ours_only:
        return rows
    shared = ["w"] + [f"mu{k}" for k in range(K)]
    variants = {
        "hand-built, PyMC default start (C, 2 processes)": {},
        "hand-built, MAP-EM start (C, 2 processes)": {"initvals": handbuilt_initvals(fit),
                                                      "init": "adapt_diag"},
        "hand-built, MAP-EM start (Numba, 1 process)": {
            "initvals": handbuilt_initvals(fit), "init": "adapt_diag", "cores": 1,
            "compile_kwargs": {"mode": "NUMBA"}},
    }
    for name, kwargs in variants.items():
        t = time.perf_counter()
        first = FirstDraw()
        model = handbuilt_model(X, K)
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = pm.sample(draws=draws, tune=tune, chains=4, random_seed=seed,
                              progressbar=False, callback=first, **kwargs)
        rows[name] = summarise(idata, time.perf_counter() - t, shared, first.at)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 + 200 iterations, K = 2")
    parser.add_argument("--ours-only", action="store_true",
                        help="re-measure bayesgmm's rows only, keeping the committed hand-built "
                             "rows (after a change to bayesgmm)")
    args = parser.parse_args()
    X = bg.load_dataset("faithful").to_numpy()
    draws = tune = 200 if args.quick else 1000
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "pymc": pm.__version__, "n_cpus": os.cpu_count(),
                          "OPENBLAS_NUM_THREADS": os.environ["OPENBLAS_NUM_THREADS"]},
              "draws": draws, "tune": tune, "chains": 4, "runs": {}}
    suffix = "_quick" if args.quick else ""
    committed = OUT / f"posterior_vs_handbuilt{suffix}.json"
    if args.ours_only:
        result = json.loads(committed.read_text())
        result["machine_ours_only_run"] = {"platform": platform.platform(),
                                           "pymc": pm.__version__}
    for K in ([2] if args.quick else [2, 3]):
        rows = run(X, K, draws, tune, seed=2026, ours_only=args.ours_only)
        result["runs"].setdefault(f"K={K}", {}).update(rows)
        print(json.dumps(rows, indent=1), flush=True)
    write_results(f"posterior_vs_handbuilt{suffix}", result, None, table(result))


def table(result: dict) -> str:
    """The Markdown table of a result."""
    cells = []
    for key, rows in result["runs"].items():
        for name, r in rows.items():
            first = "—" if r.get("first_draw_s") is None else f"{r['first_draw_s']:.1f}"
            cells.append([key[2:], name, f"{r['startup_s']:.1f}", first, f"{r['sampling_s']:.1f}",
                          f"{r['min_ess_bulk_shared']:.0f}", f"{r['ess_per_s_shared']:.1f}",
                          f"{r['min_ess_bulk_all']:.0f}", f"{r['max_rhat']:.3f}",
                          str(r["divergences"])])
    return markdown_table(
        ["K", "run", "start-up s", "first draw s", "sampling s", "min bulk ESS (weights, means)",
         "ESS/s", "min bulk ESS (all)", "max R-hat", "divergences"], ["---"] * 10, cells)

if __name__ == "__main__":
    main()
