"""A 100-setting prior sweep on 1 and 2 workers: serial, a process pool and a Dask LocalCluster.

The data: ``overlap3000`` of the start benchmark (three overlapping 2-D components, N = 3 000),
K = 3, full covariances, a 10 × 10 grid over the shrinkage κ0 (1e-3 … 1) and a multiplier on
Ψ0 (0.1 … 10), tol = 1e-10.  Both sweeps: warm (the default: searched lattice, warm segments,
mode exchange — every step a list of independent jobs) and cold (100 independent searches).
Each executor's answer is checked against the serial one (identical log posteriors).

Every worker runs one thread with BLAS at one thread (set in the environment before NumPy is
imported, so worker processes inherit it).  Repeats are interleaved; medians are reported.

    python benchmarks/parallel_sweep.py [--quick]  ->  results/parallel_sweep.{json,md}
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import bayesgmm as bg  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import markdown_table, write_results  # noqa: E402
from init_cases import simulated  # noqa: E402



def _executor(kind: str, workers: int):
    """A context manager yielding the executor (None for serial)."""
    from contextlib import contextmanager, nullcontext

    if kind == "serial":
        return nullcontext(None)
    if kind == "process pool":
        return ProcessPoolExecutor(workers)

    @contextmanager
    def cluster():
        import distributed

        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as c, \
                distributed.Client(c) as client:
            yield client

    return cluster()


def main(quick: bool = False):
    X = simulated()["overlap3000"]
    n = 4 if quick else 10
    grid = {"shrinkage": np.geomspace(1e-3, 1.0, n), "scale": np.geomspace(0.1, 10.0, n)}
    configs = [("serial", 1), ("process pool", 1), ("process pool", 2), ("dask", 1), ("dask", 2)]
    repeats = 1 if quick else 2
    times = {(kind, w, warm): [] for kind, w in configs for warm in (True, False)}
    reference, identical = {}, {}
    for _ in range(repeats):
        for kind, workers in configs:
            with _executor(kind, workers) as executor:
                for warm in (True, False):
                    t = time.perf_counter()
                    ds = bg.prior_sweep(X, 3, "full", grid=grid, warm_start=warm, tol=1e-10,
                                        random_state=0, progress=False, executor=executor)
                    times[kind, workers, warm].append(time.perf_counter() - t)
                    values = ds.log_posterior.values
                    reference.setdefault(warm, values)
                    identical[kind, workers, warm] = identical.get(
                        (kind, workers, warm), True) and bool(np.array_equal(values,
                                                                             reference[warm]))
                    print(kind, workers, "warm" if warm else "cold", f"{times[kind, workers, warm][-1]:.1f} s",
                          flush=True)
    rows = []
    for (kind, workers, warm), ts in times.items():
        serial = float(np.median(times["serial", 1, warm]))
        median = float(np.median(ts))
        rows.append({"executor": kind, "workers": workers, "sweep": "warm" if warm else "cold",
                     "seconds": median, "speedup_over_serial": serial / median,
                     "identical_to_serial": identical[kind, workers, warm]})
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "blas_threads": 1, "threads_per_worker": 1},
        "data": "overlap3000 (N = 3 000, d = 2), K = 3, full",
        "settings": n * n, "repeats": repeats, "rows": rows,
    }
    ordered = sorted(rows, key=lambda r: (r["sweep"] != "warm", r["executor"], r["workers"]))
    table = markdown_table(
        ["sweep", "executor", "workers", "seconds (median)", "speed-up over serial",
         "same answer as serial"], ["---", "---", "---:", "---:", "---:", "---"],
        [[r["sweep"], r["executor"], str(r["workers"]), f"{r['seconds']:.1f}",
          f"{r['speedup_over_serial']:.2f}×", "yes" if r["identical_to_serial"] else "NO"]
         for r in ordered])
    write_results("parallel_sweep_quick" if quick else "parallel_sweep", result,
                  f"{n * n}-setting prior sweep, {result['data']}; {repeats} interleaved "
                  f"repeat(s), {os.cpu_count()} CPUs, one thread and one BLAS thread per worker.",
                  table)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4 × 4 grid, one repeat")
    main(parser.parse_args().quick)
