"""EM-map evaluations and wall time to the fixed point: plain EM against SQUAREM.

From the same starting partitions (random starts, 10 seeds per case), both run to tol 1e-10
(the estimated distance to the fixed point); the cases are slow for plain EM.  Reported per
case: EM-map evaluations and seconds (medians and the ratio plain / SQUAREM per start), whether
both reach the same fixed point (largest difference of the unconstrained parameters
≤ 1e-8: both stop within ~1e-10 of it), and — where SQUAREM's extrapolation carried it to
another mode — the log-posterior difference.  One BLAS thread.

    python benchmarks/squarem.py [--quick]

writes benchmarks/results/squarem.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import bayesgmm as bg
from bayesgmm.starts import responsibility_starts
from init_cases import cases

OUT = Path(__file__).parent / "results"
SAME_POINT = 1e-8


def unconstrained(fit):
    """log π, means in units of the data's spread, log-Cholesky entries."""
    structure = bg.covariance.get_structure(fit.covariance_type)
    return np.concatenate([np.log(np.maximum(fit.weights, 1e-300)), np.ravel(fit.means),
                           structure.to_unconstrained(np.asarray(fit.covariances))])


def run(X, K, R, acceleration):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        fit = bg.fit_map(X, K, "full", init=R, tol=1e-10, max_iter=50000,
                         acceleration=acceleration, warn_convergence=False)
        return fit, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds = range(3 if args.quick else 10)
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for case in cases():
            X, K = case["X"], case["K"]
            spread = np.sqrt(np.var(X, axis=0).mean())
            starts = []
            for seed in seeds:
                R = next(responsibility_starts(X, K, "random", 1, np.random.default_rng(seed)))
                plain, t_plain = run(X, K, R, None)
                fast, t_fast = run(X, K, R, "squarem")
                scale = np.concatenate([np.zeros(K), np.full(K * X.shape[1], spread),
                                        np.zeros(len(unconstrained(plain)) - K * (1 + X.shape[1]))])
                diff = np.abs(unconstrained(plain) - unconstrained(fast)) / np.maximum(scale, 1)
                starts.append({
                    "seed": seed, "plain_evaluations": plain.n_iter,
                    "squarem_evaluations": fast.n_iter, "plain_seconds": t_plain,
                    "squarem_seconds": t_fast, "same_fixed_point": bool(diff.max() <= SAME_POINT),
                    "largest_difference": float(diff.max()),
                    "log_posterior_gain": fast.log_posterior - plain.log_posterior,
                    "squarem_monotone": bool(np.all(np.diff(fast.history)
                                                    >= -1e-12 * abs(fast.log_posterior)))})
            ratio = [s["plain_evaluations"] / s["squarem_evaluations"] for s in starts]
            row = {"case": case["name"], "n": len(X), "K": K, "starts": starts,
                   "median_plain_evaluations": float(np.median([s["plain_evaluations"]
                                                                for s in starts])),
                   "median_squarem_evaluations": float(np.median([s["squarem_evaluations"]
                                                                  for s in starts])),
                   "median_ratio": float(np.median(ratio)), "min_ratio": float(min(ratio)),
                   "median_time_ratio": float(np.median([s["plain_seconds"] / s["squarem_seconds"]
                                                         for s in starts]))}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "starts"}), flush=True)
    result = {"tol": 1e-10, "same_point": SAME_POINT, "cases": rows}
    suffix = "_quick" if args.quick else ""
    OUT.mkdir(exist_ok=True)
    (OUT / f"squarem{suffix}.json").write_text(json.dumps(result, indent=1))
    (OUT / f"squarem{suffix}.md").write_text(to_markdown(result))
    print(to_markdown(result))


def to_markdown(result) -> str:
    lines = ["Plain EM against SQUAREM from the same random starts, to tol 1e-10 "
             "(EM-map evaluations; medians over the starts):", "",
             "| case | N | plain | SQUAREM | ratio (median, smallest) | time ratio | "
             "same fixed point | elsewhere: log-posterior gain |", "|---|---|---|---|---|---|---|---|"]
    for row in result["cases"]:
        same = sum(s["same_fixed_point"] for s in row["starts"])
        gains = [s["log_posterior_gain"] for s in row["starts"] if not s["same_fixed_point"]]
        lines.append(f"| {row['case']} | {row['n']} | {row['median_plain_evaluations']:.0f} | "
                     f"{row['median_squarem_evaluations']:.0f} | {row['median_ratio']:.1f}× "
                     f"({row['min_ratio']:.1f}×) | {row['median_time_ratio']:.1f}× | "
                     f"{same}/{len(row['starts'])} | "
                     + (", ".join(f"{g:+.2f}" for g in gains) or "—") + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
