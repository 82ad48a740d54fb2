"""MAP-EM per covariance structure against the package's own VVV (``full``) path.

mclust's per-iteration times cannot be measured here (no R in the benchmark), so every structure
is timed against ``full`` in the same run: each fit starts from the same k-means++ start
(``init="kmeans++"``, ``n_init=1``, seeded), runs to ``tol=1e-8`` under the default prior, and
the structures are interleaved over 5 repeats; reported are the median wall time, the median
time per EM iteration and their ratios to ``full``.  BLAS runs on one thread.  A second table
times what ``Mclust()`` does by default — every K = 1…9 on iris without a prior, each with the
default search (``bg.select_model``, one structure at a time, one run each).

    OPENBLAS_NUM_THREADS=1 python benchmarks/structures.py [--quick]

writes benchmarks/results/structures.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

import bayesgmm as bg  # noqa: E402
from bayesgmm.covariance import STRUCTURES  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import markdown_table, write_results  # noqa: E402


def data_sets(quick: bool):
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(loc=3 * k, size=(3000 if not quick else 600, 4))
                            for k in range(3)])
    return {"faithful K=3": (bg.load_dataset("faithful").to_numpy(), 3),
            "iris K=3": (bg.load_dataset("iris").to_numpy(), 3),
            "blobs 4-d K=3": (blobs, 3)}


def time_fit(X, K, covariance):
    start = time.perf_counter()
    fit = bg.fit_map(X, K, covariance, init="kmeans++", n_init=1, tol=1e-8, max_iter=2000,
                     random_state=0, warn_convergence=False)
    return time.perf_counter() - start, fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, smaller blobs")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    rows = []
    for name, (X, K) in data_sets(args.quick).items():
        for covariance in STRUCTURES:  # warm-up: Numba compiles each kernel family once
            time_fit(X, K, covariance)
        times = {c: [] for c in STRUCTURES}
        fits = {}
        for _ in range(repeats):
            for covariance in STRUCTURES:
                seconds, fits[covariance] = time_fit(X, K, covariance)
                times[covariance].append(seconds)
        base = np.median(times["full"])
        base_per_iter = base / max(fits["full"].n_iter, 1)
        for covariance in STRUCTURES:
            t = float(np.median(times[covariance]))
            per_iter = t / max(fits[covariance].n_iter, 1)
            rows.append({"data": name, "covariance": covariance, "median_s": t,
                         "iterations": fits[covariance].n_iter,
                         "per_iteration_ms": 1e3 * per_iter,
                         "ratio_to_full": t / base,
                         "per_iteration_ratio_to_full": per_iter / base_per_iter,
                         "log_posterior": fits[covariance].log_posterior})
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "n_cpus": os.cpu_count(),
                          "OPENBLAS_NUM_THREADS": os.environ["OPENBLAS_NUM_THREADS"]},
              "repeats": repeats, "rows": rows, "select": select_times(args.quick)}
    write_results("structures_quick" if args.quick else "structures", result, None,
                  table(result) + "\n\n" + select_table(result))


def select_times(quick: bool) -> list:
    """bg.select_model on iris, K = 1…9 (1…3 quick), no prior, per structure."""
    iris = bg.load_dataset("iris")
    ks = range(1, 4 if quick else 10)
    out = []
    for covariance in STRUCTURES:
        start = time.perf_counter()
        selection = bg.select_model(iris, ks, covariance, prior=None)
        out.append({"covariance": covariance, "K": f"1…{max(ks)}",
                    "seconds": time.perf_counter() - start,
                    "fitted": int(np.isfinite(selection.table["bic"]).sum())})
        print(json.dumps(out[-1]), flush=True)
    return out


def select_table(result: dict) -> str:
    rows = result["select"]
    return (f"bg.select_model(iris, K = {rows[0]['K']}, covariance, prior=None), one structure at a time "
            "(the fits mclust reports as NA — a covariance collapsing without a prior — are "
            "not counted in 'fitted'):\n\n" + markdown_table(
                ["structure", "seconds", "fitted K"], ["---"] * 3,
                [[r["covariance"], f"{r['seconds']:.1f}", str(r["fitted"])] for r in rows])
            + f"\nTotal: {sum(r['seconds'] for r in rows):.0f} s.\n")


def table(result: dict) -> str:
    """The Markdown table of a result."""
    return markdown_table(
        ["data", "structure", "median s", "iterations", "ms / iteration", "× full (time)",
         "× full (per iteration)"], ["---"] * 7,
        [[r["data"], r["covariance"], f"{r['median_s']:.4f}", str(r["iterations"]),
          f"{r['per_iteration_ms']:.3f}", f"{r['ratio_to_full']:.2f}",
          f"{r['per_iteration_ratio_to_full']:.2f}"] for r in result["rows"]])

if __name__ == "__main__":
    main()
