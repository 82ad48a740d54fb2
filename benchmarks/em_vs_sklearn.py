"""Per-iteration time and peak memory of bayesgmm.fit_map against scikit-learn's GaussianMixture.

Same data, same start (weights, means, covariances), same number of iterations (tol=0), BLAS
limited to one thread for both (threadpoolctl); bayesgmm is timed with its row-chunk thread pool
at 1 and at 2 threads.  Repeats are interleaved (sklearn, ours×1, ours×2, sklearn, ...) and the
median is reported.  Per-iteration time = fit time / iterations; both fits include one final
E-step and their input checks.  Peak memory beyond X is measured with tracemalloc (numpy reports
its buffers to it) in separate runs.

    python benchmarks/em_vs_sklearn.py [--quick]

writes benchmarks/results/em_vs_sklearn.json and benchmarks/results/em_vs_sklearn.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import bayesgmm as bg

OUT = Path(__file__).parent / "results"


def make_data(n, d, K, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(K, d))
    labels = rng.integers(0, K, size=n)
    X = centres[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(K, d))[labels]
    return np.ascontiguousarray(X)


def starting_point(X, K, covariance):
    sub = X[np.random.default_rng(1).choice(len(X), size=min(len(X), 5000), replace=False)]
    return bg.fit_map(sub, K, covariance, max_iter=2, random_state=0, warn_convergence=False)


def run_sklearn(X, K, covariance, start, n_iter):
    prec = (np.linalg.inv(start.covariances) if covariance in ("full", "tied")
            else 1.0 / np.asarray(start.covariances))
    gm = GaussianMixture(K, covariance_type=covariance, tol=0.0, max_iter=n_iter,
                         weights_init=start.weights, means_init=start.means, precisions_init=prec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return gm


def run_ours(X, K, covariance, start, n_iter, n_threads):
    return bg.fit_map(X, K, covariance, prior=start.prior, init=start, tol=0, max_iter=n_iter,
                      n_threads=n_threads, warn_convergence=False)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [{k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads",
                                                   "threading_layer", "architecture")}
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "n_cpus": __import__("os").cpu_count(), "numpy": np.__version__,
            "sklearn": sklearn.__version__, "bayesgmm": bg.__version__, "blas": blas,
            "blas_threads_used": 1}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid, for a smoke run")
    parser.add_argument("--memory-only", action="store_true",
                        help="re-measure peak memory only, keeping the committed timings")
    args = parser.parse_args()
    suffix = "_quick" if args.quick else ""
    if args.memory_only:
        result = json.loads((OUT / f"em_vs_sklearn{suffix}.json").read_text())
        result["memory"] = measure_memory(1_000 if args.quick else 1_000_000)
        result["machine_memory_run"] = machine()
        write(result, suffix)
        return
    sizes = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    dims = [2, 10] if args.quick else [2, 10, 50]
    repeats = 3
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for covariance in ("full", "diag"):
            for n in sizes:
                for d in dims:
                    for K in (3, 16):
                        X = make_data(n, d, K)
                        start = starting_point(X, K, covariance)
                        n_iter = 3 if n >= 1_000_000 else 5
                        runs = {"sklearn": [], "ours_1thread": [], "ours_2threads": []}
                        for _ in range(repeats):
                            runs["sklearn"].append(timed(lambda: run_sklearn(
                                X, K, covariance, start, n_iter)))
                            runs["ours_1thread"].append(timed(lambda: run_ours(
                                X, K, covariance, start, n_iter, 1)))
                            runs["ours_2threads"].append(timed(lambda: run_ours(
                                X, K, covariance, start, n_iter, 2)))
                        med = {k: float(np.median(v)) / n_iter for k, v in runs.items()}
                        row = {"covariance": covariance, "n": n, "d": d, "K": K,
                               "iterations": n_iter, "repeats": repeats,
                               "sec_per_iter": med,
                               "speedup_1thread": med["sklearn"] / med["ours_1thread"],
                               "speedup_2threads": med["sklearn"] / med["ours_2threads"]}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    result = {"machine": machine(), "timings": rows, "memory": measure_memory(sizes[-1]),
              "median_speedup_1thread": float(np.median([r["speedup_1thread"] for r in rows])),
              "median_speedup_2threads": float(np.median([r["speedup_2threads"] for r in rows])),
              "min_speedup_1thread": float(min(r["speedup_1thread"] for r in rows)),
              "min_speedup_2threads": float(min(r["speedup_2threads"] for r in rows))}
    write(result, suffix)


def write(result, suffix):
    OUT.mkdir(exist_ok=True)
    (OUT / f"em_vs_sklearn{suffix}.json").write_text(json.dumps(result, indent=2))
    (OUT / f"em_vs_sklearn{suffix}.md").write_text(to_markdown(result))
    print(to_markdown(result))


def measure_memory(n):
    """Peak memory beyond X during a 2-iteration fit, at N = n."""
    memory = []
    for covariance in ("full", "diag"):
        for d, K in [(10, 16), (50, 3)]:
            X = make_data(n, d, K)
            start = starting_point(X, K, covariance)
            with threadpool_limits(limits=1, user_api="blas"):
                sk = peak_bytes(lambda: run_sklearn(X, K, covariance, start, 2))
                ours = peak_bytes(lambda: run_ours(X, K, covariance, start, 2, 1))
            entry = {"covariance": covariance, "n": n, "d": d, "K": K,
                     "X_bytes": X.nbytes, "peak_extra_bytes": {"sklearn": sk, "ours": ours}}
            memory.append(entry)
            print(json.dumps(entry), flush=True)
    return memory


def to_markdown(result):
    lines = ["| covariance | N | d | K | sklearn ms/iter | ours ms/iter (1 thr) | ours (2 thr) "
             "| speed-up 1 thr | speed-up 2 thr |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["timings"]:
        s = r["sec_per_iter"]
        lines.append(f"| {r['covariance']} | {r['n']:.0e} | {r['d']} | {r['K']} | "
                     f"{s['sklearn'] * 1e3:.1f} | {s['ours_1thread'] * 1e3:.1f} | "
                     f"{s['ours_2threads'] * 1e3:.1f} | {r['speedup_1thread']:.2f}× | "
                     f"{r['speedup_2threads']:.2f}× |")
    lines += ["", f"Median speed-up: {result['median_speedup_1thread']:.2f}× (1 thread), "
              f"{result['median_speedup_2threads']:.2f}× (2 threads); minimum "
              f"{result['min_speedup_1thread']:.2f}× / {result['min_speedup_2threads']:.2f}×.",
              "", "| covariance | N | d | K | X (MiB) | sklearn extra peak (MiB) | ours extra peak "
              "(MiB) |", "|---|---|---|---|---|---|---|"]
    for m in result["memory"]:
        p = m["peak_extra_bytes"]
        lines.append(f"| {m['covariance']} | {m['n']:.0e} | {m['d']} | {m['K']} | "
                     f"{m['X_bytes'] / 2**20:.0f} | {p['sklearn'] / 2**20:.1f} | "
                     f"{p['ours'] / 2**20:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
