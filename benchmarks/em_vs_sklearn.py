"""MAP-EM per iteration, small fits and memory: bayesgmm.fit_map against scikit-learn.

* **Per iteration** over N ∈ {300, 1e4, 1e5, 1e6} × d ∈ {2, 10, 50} × K ∈ {3, 16} × the four
  structures: same data, same start, same iterations (plain EM, ``tol=0``), BLAS at one thread
  for both (threadpoolctl).  The time per iteration is the difference of two fits' times
  divided by the difference of their iteration counts, so fixed costs (input checks, the first
  E-step) cancel.  Repeats are interleaved (scikit-learn, ours on 1 thread, ours on 2 threads,
  ...) and medians are reported.  GFLOP/s of the dense kernels count the floating-point
  operations performed per iteration — N K d² for the whitening (a triangular multiply by the
  inverse Cholesky factor) and N K (d + 1)² for the moments (a rank-N update of [y; 1]), with
  one factor instead of K for tied — against this machine's single-thread dgemm peak measured in
  the same run.
* **Small fits**: complete fits (input checks, 200 EM iterations from the same start) per
  second, bayesgmm against scikit-learn.
* **Memory**: peak resident memory beyond X of a 2-iteration fit, each in a fresh process
  (the resident set sampled every 0.2 ms; Numba's allocations are invisible to tracemalloc).

    python benchmarks/em_vs_sklearn.py [--quick] [--section per_iteration|small_fits|memory]
                                       [--covariance full|tied|diag|spherical]

``--section``/``--covariance`` rerun only those parts and keep the rest of the committed file;
each part records the commit it was measured at (``measured_at``).

writes benchmarks/results/em_vs_sklearn.json and .md (``--quick``: *_quick.*, not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import bayesgmm as bg

OUT = Path(__file__).parent / "results"
STRUCTURES = ("full", "tied", "diag", "spherical")


def make_data(n, d, K, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(K, d))
    labels = rng.integers(0, K, size=n)
    X = centres[labels] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(K, d))[labels]
    return np.ascontiguousarray(X)


def starting_point(X, K, covariance):
    sub = X[np.random.default_rng(1).choice(len(X), size=min(len(X), 5000), replace=False)]
    return bg.fit_map(sub, K, covariance, init="kmeans++", max_iter=2, random_state=0,
                      warn_convergence=False)


def precisions(start):
    c = np.asarray(start.covariances)
    return np.linalg.inv(c) if start.covariance_type in ("full", "tied") else 1.0 / c


def run_sklearn(X, start, n_iter):
    gm = GaussianMixture(start.n_components, covariance_type=start.covariance_type, tol=0.0,
                         max_iter=n_iter, weights_init=start.weights, means_init=start.means,
                         precisions_init=precisions(start))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return gm


def run_ours(X, start, n_iter, n_threads=1):
    return bg.fit_map(X, start.n_components, start.covariance_type, prior=start.prior,
                      init=start, tol=0, max_iter=n_iter, n_threads=n_threads,
                      acceleration=None, warn_convergence=False)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def gemm_peak_gflops():
    """Single-thread dgemm on the E-step's shape (4096 × 50 by 50 × 50), best of 20."""
    a, b = np.random.default_rng(0).normal(size=(2, 4096, 50))[0], np.eye(50)
    out = np.empty((4096, 50))
    best = min(timed(lambda: np.dot(a, b, out=out)) for _ in range(20))
    return 2 * 4096 * 50 * 50 / best / 1e9


def machine():
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = [{k: v for k, v in lib.items() if k in ("internal_api", "version", "num_threads",
                                                   "architecture", "filepath")}
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    import numba

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "n_cpus": os.cpu_count(), "numpy": np.__version__, "numba": numba.__version__,
            "sklearn": sklearn.__version__, "bayesgmm": bg.__version__, "blas": blas,
            "blas_threads_used": 1}


# ----------------------------------------------------------------------------- per iteration
def per_iteration(quick: bool, structures=STRUCTURES) -> list:
    sizes = [300, 10_000] if quick else [300, 10_000, 100_000, 1_000_000]
    dims = [2, 10] if quick else [2, 10, 50]
    rows = []
    for covariance in structures:
        for n in sizes:
            for d in dims:
                for K in (3, 16):
                    if K * 5 > n:
                        continue
                    rows.append(per_iteration_case(covariance, n, d, K))
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def per_iteration_case(covariance, n, d, K):
    X = make_data(n, d, K)
    start = starting_point(X, K, covariance)
    few, many = (1, 3) if n >= 1_000_000 else (2, 8)
    repeats = 2 if n >= 1_000_000 else 3
    runs = {name: {few: [], many: []} for name in ("sklearn", "ours", "ours_2threads")}
    run_ours(X, start, 1)  # compile outside the timings
    for _ in range(repeats):
        for m in (few, many):
            runs["sklearn"][m].append(timed(lambda: run_sklearn(X, start, m)))
            runs["ours"][m].append(timed(lambda: run_ours(X, start, m)))
            runs["ours_2threads"][m].append(timed(lambda: run_ours(X, start, m, 2)))
    per_iter = {name: (float(np.median(t[many])) - float(np.median(t[few]))) / (many - few)
                for name, t in runs.items()}
    structure = bg.covariance.get_structure(covariance)
    factors = K if structure.per_component else 1  # tied: one whitening, one rank-n update
    flops = (n * factors * (d * d + (d + 1) ** 2) if structure.kernel == "dense" else None)
    return {"covariance": covariance, "n": n, "d": d, "K": K, "iterations": [few, many],
            "repeats": repeats, "sec_per_iter": per_iter,
            "speedup": per_iter["sklearn"] / per_iter["ours"],
            "speedup_2threads": per_iter["sklearn"] / per_iter["ours_2threads"],
            "ours_gflops": flops / per_iter["ours"] / 1e9 if flops else None}


# ----------------------------------------------------------------------------- small fits
SMALL = [("faithful", 2), ("faithful", 3), ("iris", 3), ("simulated 1000 × 5", 4),
         ("simulated 10000 × 2", 3)]


def small_data(name):
    if name in ("faithful", "iris"):
        return bg.load_dataset(name).to_numpy()
    n, d = (int(v) for v in name.split()[1::2])
    return make_data(n, d, 4, seed=3)


def small_fits(quick: bool) -> list:
    rows = []
    for name, K in SMALL[:2] if quick else SMALL:
        X = small_data(name)
        for covariance in STRUCTURES:
            start = starting_point(X, K, covariance)
            n_iter, repeats = 200, 5 if quick else 15
            run_ours(X, start, n_iter)
            sk, ours = [], []
            for _ in range(repeats):
                sk.append(timed(lambda: run_sklearn(X, start, n_iter)))
                ours.append(timed(lambda: run_ours(X, start, n_iter)))
            row = {"data": name, "n": len(X), "d": X.shape[1], "K": K,
                   "covariance": covariance, "iterations": n_iter, "repeats": repeats,
                   "sklearn_fits_per_s": 1 / float(np.median(sk)),
                   "ours_fits_per_s": 1 / float(np.median(ours)),
                   "ours_us_per_iter": float(np.median(ours)) / n_iter * 1e6}
            row["ratio"] = row["ours_fits_per_s"] / row["sklearn_fits_per_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ----------------------------------------------------------------------------- memory
_MEMORY_CHILD = """
import os, sys, threading, time
import numpy as np
sys.path.insert(0, {bench!r})
from em_vs_sklearn import make_data, starting_point, run_sklearn, run_ours
from threadpoolctl import threadpool_limits
which, cov, n, d, K = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
page = os.sysconf("SC_PAGE_SIZE")
def resident():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * page
X = make_data(n, d, K)
start = starting_point(X, K, cov)
with threadpool_limits(1, "blas"):
    run_ours(X[:1000], start, 1)  # load and compile everything first
    run_sklearn(X[:1000], start, 1)
    base, peak, done = resident(), [0], threading.Event()
    def sample():  # the resident set, every 0.2 ms, while the fit runs
        while not done.is_set():
            peak[0] = max(peak[0], resident())
            time.sleep(0.0002)
    sampler = threading.Thread(target=sample)
    sampler.start()
    (run_sklearn if which == "sklearn" else run_ours)(X, start, 2)
    done.set()
    sampler.join()
print(max(peak[0] - base, 0))
"""


def memory(quick: bool) -> list:
    n = 100_000 if quick else 1_000_000
    rows = []
    for covariance in STRUCTURES:
        for d, K in [(10, 16), (50, 3)]:
            peaks = {}
            for which in ("sklearn", "ours"):
                code = _MEMORY_CHILD.format(bench=str(Path(__file__).parent))
                out = subprocess.run([sys.executable, "-c", code, which, covariance, str(n),
                                      str(d), str(K)], capture_output=True, text=True,
                                     check=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
                peaks[which] = int(out.stdout.split()[-1])
            rows.append({"covariance": covariance, "n": n, "d": d, "K": K,
                         "X_bytes": n * d * 8, "peak_extra_bytes": peaks})
            print(json.dumps(rows[-1]), flush=True)
    return rows


# ----------------------------------------------------------------------------- report
def summary(result: dict) -> dict:
    out = {}
    rows = [r for r in result.get("per_iteration", []) if r["n"] >= 10_000]
    if rows:
        speed = [r["speedup"] for r in rows]
        out.update(median_speedup_n_ge_1e4=float(np.median(speed)), min_speedup=min(
            r["speedup"] for r in result["per_iteration"]),
            max_speedup=max(speed), median_speedup_2threads=float(np.median(
                [r["speedup_2threads"] for r in rows])),
            share_2threads_faster=float(np.mean([r["speedup_2threads"] > r["speedup"]
                                                 for r in rows])))
        for cov in STRUCTURES:
            out[f"median_speedup_{cov}"] = float(np.median(
                [r["speedup"] for r in rows if r["covariance"] == cov]))
    if result.get("small_fits"):
        ratios = [r["ratio"] for r in result["small_fits"]]
        out.update(small_fit_median_ratio=float(np.median(ratios)),
                   small_fit_min_ratio=min(ratios))
    return out


def to_markdown(result: dict) -> str:
    s = result["summary"]
    lines = [f"Machine: {result['machine']['cpu']}, BLAS {result['machine']['blas'][0]['internal_api']}"
             f" at one thread; single-thread dgemm peak {result['gemm_peak_gflops']:.1f} GFLOP/s.",
             ""]
    if result.get("measured_at"):
        lines += ["Measured at commits: " + ", ".join(
            f"{part} {commit}" for part, commit in sorted(result["measured_at"].items())) + ".",
            ""]
    if result.get("per_iteration"):
        lines += [f"Per iteration, N ≥ 1e4: median speed-up **{s['median_speedup_n_ge_1e4']:.2f}×**"
                  f" (largest {s['max_speedup']:.1f}×); smallest anywhere "
                  f"{s['min_speedup']:.2f}×; by structure " + ", ".join(
                      f"{c} {s[f'median_speedup_{c}']:.2f}×" for c in STRUCTURES) +
                  f". With 2 threads: median {s['median_speedup_2threads']:.2f}×, faster than "
                  f"1 thread in {s['share_2threads_faster']:.0%} of cases.", "",
                  "| covariance | N | d | K | sklearn ms/iter | ours ms/iter | speed-up | "
                  "ours, 2 threads | ours GFLOP/s (% of dgemm peak) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in result["per_iteration"]:
            t = r["sec_per_iter"]
            gf = (f"{r['ours_gflops']:.1f} ({r['ours_gflops'] / result['gemm_peak_gflops']:.0%})"
                  if r["ours_gflops"] else "")
            lines.append(f"| {r['covariance']} | {r['n']:.0e} | {r['d']} | {r['K']} | "
                         f"{t['sklearn'] * 1e3:.3g} | {t['ours'] * 1e3:.3g} | "
                         f"{r['speedup']:.2f}× | {r['speedup_2threads']:.2f}× | {gf} |")
    if result.get("small_fits"):
        lines += ["", f"Complete small fits (200 iterations from the same start): median "
                  f"**{s['small_fit_median_ratio']:.1f}×** scikit-learn's fits per second, "
                  f"smallest {s['small_fit_min_ratio']:.1f}×.", "",
                  "| data | K | covariance | sklearn fits/s | ours fits/s | ratio | ours µs/iter |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["small_fits"]:
            lines.append(f"| {r['data']} | {r['K']} | {r['covariance']} | "
                         f"{r['sklearn_fits_per_s']:.1f} | {r['ours_fits_per_s']:.0f} | "
                         f"{r['ratio']:.1f}× | {r['ours_us_per_iter']:.1f} |")
    if result.get("memory"):
        lines += ["", "Peak resident memory beyond X (2 iterations, fresh process each):", "",
                  "| covariance | N | d | K | X (MiB) | sklearn (MiB) | ours (MiB) |",
                  "|---|---|---|---|---|---|---|"]
        for m in result["memory"]:
            p = m["peak_extra_bytes"]
            lines.append(f"| {m['covariance']} | {m['n']:.0e} | {m['d']} | {m['K']} | "
                         f"{m['X_bytes'] / 2**20:.0f} | {p['sklearn'] / 2**20:.1f} | "
                         f"{p['ours'] / 2**20:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid, for a smoke run")
    parser.add_argument("--section", choices=("per_iteration", "small_fits", "memory"),
                        action="append", help="run only these sections (keep the others)")
    parser.add_argument("--covariance", choices=STRUCTURES, action="append",
                        help="per-iteration section: rerun only these structures")
    args = parser.parse_args()
    suffix = "_quick" if args.quick else ""
    path = OUT / f"em_vs_sklearn{suffix}.json"
    partial = args.section or args.covariance
    result = json.loads(path.read_text()) if partial and path.exists() else {}
    sections = args.section or (["per_iteration"] if args.covariance else
                                ["per_iteration", "small_fits", "memory"])
    measured_at = result.setdefault("measured_at", {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    with threadpool_limits(limits=1, user_api="blas"):
        result["machine"] = machine()
        result["gemm_peak_gflops"] = gemm_peak_gflops()
        if "per_iteration" in sections:
            structures = tuple(args.covariance or STRUCTURES)
            kept = [r for r in result.get("per_iteration", [])
                    if r["covariance"] not in structures]
            fresh = per_iteration(args.quick, structures)
            result["per_iteration"] = sorted(kept + fresh, key=lambda r: (
                STRUCTURES.index(r["covariance"]), r["n"], r["d"], r["K"]))
            measured_at.update({f"per_iteration/{c}": commit for c in structures})
        if "small_fits" in sections:
            result["small_fits"] = small_fits(args.quick)
            measured_at["small_fits"] = commit
    if "memory" in sections:
        result["memory"] = memory(args.quick)
        measured_at["memory"] = commit
    result["summary"] = summary(result)
    OUT.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    (OUT / f"em_vs_sklearn{suffix}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
