"""MAP-EM on data larger than the memory its workers may use: Zarr on disk, a Dask LocalCluster.

Writes a simulated three-component 4-D mixture to Zarr (float64, chunks of 250 000 rows = 8 MB;
the largest size 1e8 rows = 3.2 GB, written block by block), then on a
``distributed.LocalCluster`` with 512 MiB per worker (one thread each, BLAS at one thread) fits
it with ``bg.fit_map``:

* the start as the default does it (the search on 4 000 rows sampled from the array), timed
  apart;
* then at most 10 EM-map evaluations from that start (``tol=0``; ``n_iter`` counts them),
  timed: rows per second per worker = N × evaluations / seconds / workers;
* each worker's peak resident memory during the fit (sampled every 20 ms; a fresh cluster per
  run) beside its resident memory before it, with Python, NumPy, Dask and bayesgmm's compiled
  kernels loaded.

Beside it, at the size that fits in memory, the in-memory path (a NumPy array, 1 and 2 of its
own threads) and the Dask path on the same Zarr data.  The fits of one size from one start
agree (checked: the log posteriors after the same iterations).  The Zarr store is read each
iteration (whether from disk or the OS page cache depends on the machine's free memory; the
workers' own memory is what the limit bounds).

    python benchmarks/out_of_core.py [--quick] [--store DIR]
        ->  results/out_of_core.{json,md}
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import bayesgmm as bg  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import markdown_table, write_results  # noqa: E402

D, K, CHUNK = 4, 3, 250_000
MEANS = np.array([[0.0, 0, 0, 0], [2.5, 1, 0, -1], [0, 2.5, 1.5, 1]])
ITERATIONS = 10


def _block(block_id, rows: int, seed: int) -> np.ndarray:
    """One chunk of the mixture (its own seed: the data do not depend on the chunking)."""
    rng = np.random.default_rng([seed, block_id[0]])
    labels = rng.choice(K, size=rows, p=[0.5, 0.3, 0.2])
    return rng.normal(size=(rows, D)) * np.array([1.0, 0.8, 1.2, 1.0]) + MEANS[labels]


def write_store(path: Path, n: int, seed: int = 0) -> float:
    """Write n rows to a Zarr store chunk by chunk; returns the seconds taken."""
    import dask
    import dask.array as da

    chunks = ((CHUNK,) * (n // CHUNK) + ((n % CHUNK,) if n % CHUNK else ()), (D,))
    X = da.map_blocks(lambda block_id=None: _block(block_id, chunks[0][block_id[0]], seed),
                      chunks=chunks, dtype=float, meta=np.empty((0, D)))
    t = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        X.to_zarr(str(path), overwrite=True)
    return time.perf_counter() - t


def _load(dask_worker) -> float:
    """Load bayesgmm's compiled kernels in a worker (a small fit); its resident MiB after."""
    import psutil

    bg.fit_map(np.random.default_rng(0).normal(size=(200, D)), K, random_state=0)
    return psutil.Process().memory_info().rss / 2**20


def _watch(dask_worker, interval: float = 0.02) -> None:
    """Sample this worker's resident memory every ``interval`` seconds until :func:`_peak`.
    (``ru_maxrss`` would not do: a worker inherits its parent's high-water mark.)"""
    import threading

    import psutil

    process, stop = psutil.Process(), threading.Event()
    state = {"peak": process.memory_info().rss, "stop": stop}

    def sample():
        while not stop.wait(interval):
            state["peak"] = max(state["peak"], process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    dask_worker.bayesgmm_memory = state


def _peak(dask_worker) -> float:
    """The peak resident MiB since :func:`_watch`, which stops sampling."""
    state = dask_worker.bayesgmm_memory
    state["stop"].set()
    return state["peak"] / 2**20


def on_cluster(path: Path, workers: int, memory_limit: str) -> dict:
    """Start and timed EM iterations on a fresh LocalCluster reading the store."""
    import dask.array as da
    import distributed

    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  memory_limit=memory_limit, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        X = da.from_zarr(str(path))
        before = client.run(_load)
        client.run(_watch)
        t = time.perf_counter()
        start = bg.fit_map(X, K, random_state=0, max_iter=1, tol=0, warn_convergence=False)
        start_seconds = time.perf_counter() - t
        warmup = bg.fit_map(X, K, init=start, max_iter=1, tol=0, warn_convergence=False)
        t = time.perf_counter()
        fit = bg.fit_map(X, K, init=warmup, max_iter=ITERATIONS, tol=0, warn_convergence=False)
        seconds = time.perf_counter() - t
        peak = client.run(_peak)
    n = X.shape[0]
    return {"path": "dask", "rows": n, "workers": workers, "memory_limit": memory_limit,
            "start_seconds": start_seconds, "em_seconds": seconds, "iterations": fit.n_iter,
            "rows_per_second_per_worker": n * fit.n_iter / seconds / workers,
            "worker_rss_loaded_mib": max(before.values()),
            "worker_peak_rss_mib": max(peak.values()),
            "log_posterior": fit.log_posterior, "start": warmup}


def in_memory(path: Path, threads: int, start) -> dict:
    """The NumPy path on the same data, from the same start."""
    import zarr

    X = np.asarray(zarr.open_array(str(path), mode="r")[:])
    t = time.perf_counter()
    fit = bg.fit_map(X, K, init=start, max_iter=ITERATIONS, tol=0, warn_convergence=False,
                     n_threads=threads)
    seconds = time.perf_counter() - t
    return {"path": "in memory", "rows": len(X), "workers": threads, "memory_limit": None,
            "em_seconds": seconds, "iterations": fit.n_iter,
            "rows_per_second_per_worker": len(X) * fit.n_iter / seconds / threads,
            "data_mib": X.nbytes / 2**20, "log_posterior": fit.log_posterior}


def main(quick: bool, store: Path | None):
    sizes = [1_000_000, 4_000_000] if quick else [10_000_000, 100_000_000]
    limit = "512MiB"
    root = Path(tempfile.mkdtemp(prefix="bayesgmm-ooc-", dir=store))
    rows, written = [], {}
    try:
        for n in sizes:
            path = root / f"mixture_{n}.zarr"
            written[n] = write_store(path, n)
            print(f"wrote {n:,} rows ({n * D * 8 / 2**30:.2f} GiB) in {written[n]:.0f} s",
                  flush=True)
            runs = [on_cluster(path, w, limit) for w in (1, 2)]
            if n == sizes[0]:  # fits in memory: the NumPy path from the same start
                runs += [in_memory(path, t, runs[0]["start"]) for t in (1, 2)]
            for r in runs:
                r.pop("start", None)
                print(json.dumps(r), flush=True)
            agree = max(abs(r["log_posterior"] - runs[0]["log_posterior"])
                        / abs(runs[0]["log_posterior"]) for r in runs)
            for r in runs:
                r["relative_log_posterior_difference_max"] = agree
            rows += runs
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    import dask
    import distributed
    import zarr

    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "memory_gib": _total_memory_gib(),
                    "blas_threads": 1, "threads_per_worker": 1},
        "versions": {"dask": dask.__version__, "distributed": distributed.__version__,
                     "zarr": zarr.__version__},
        "model": f"K = {K}, full covariances, d = {D}, default prior; at most {ITERATIONS} EM-map "
                 "evaluations timed after one warm-up evaluation",
        "chunk_rows": CHUNK, "write_seconds": {str(n): s for n, s in written.items()},
        "runs": rows,
    }
    cells = []
    for r in rows:
        on_dask = r["path"] == "dask"
        cells.append([f"{r['rows']:.0e}", f"{r['rows'] * D * 8 / 2**30:.2f}", r["path"],
                      str(r["workers"]), r["memory_limit"] or "—",
                      f"{r['start_seconds']:.1f}" if on_dask else "—",
                      f"{r['em_seconds'] / r['iterations']:.2f}",
                      f"{r['rows_per_second_per_worker'] / 1e6:.1f} M",
                      f"{r['worker_rss_loaded_mib']:.0f} → {r['worker_peak_rss_mib']:.0f}"
                      if on_dask else f"(the data: {r['data_mib']:.0f} in the process)"])
    table = markdown_table(
        ["rows", "data (GiB)", "path", "workers", "memory limit per worker", "start (s)",
         "s per EM-map evaluation", "rows/s per worker",
         "worker RSS loaded → peak during the fit (MiB)"],
        ["---:", "---:", "---", "---:", "---", "---:", "---:", "---:", "---"], cells)
    write_results("out_of_core_quick" if quick else "out_of_core", result,
                  f"{result['model']}; {os.cpu_count()} CPUs, one thread and one BLAS thread per "
                  f"worker; Zarr chunks of {CHUNK:,} rows.", table)


def _total_memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e6 and 4e6 rows")
    parser.add_argument("--store", type=Path, default=None,
                        help="directory for the temporary Zarr stores (default: the system's)")
    args = parser.parse_args()
    main(args.quick, args.store)
