"""Does the start of a Dask fit reach the highest mode as often as the in-memory default?

``fit_map`` on a Dask array starts from the default search run in memory on at most
``SEARCH_ROWS`` (4 000) rows sampled uniformly from the array's blocks, under the full data's
prior, then runs EM on every row.  The in-memory default does the same on a sample of a NumPy
array, so the question is whether drawing the sample block by block loses anything, and what
both lose against a search over all rows.  Five of the start benchmark's hard generators
(``init_cases.py``) at N = 40 000, each fitted from 10 seeds three ways:

* ``dask``: ``fit_map(da.from_array(X, chunks=5 000), K, random_state=seed)`` (threaded
  scheduler);
* ``in memory``: ``fit_map(X, K, random_state=seed)``;
* ``all rows``: the in-memory default with the search on all 40 000 rows
  (``bayesgmm.search.SEARCH_ROWS`` raised for this run only).

A fit reaches the best-known mode (the highest log posterior of all 30 fits) when it is within
1e-3 nats of it.

    python benchmarks/dask_start.py [--quick]  ->  results/dask_start.{json,md}
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import bayesgmm as bg  # noqa: E402
from bayesgmm import search  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import markdown_table, write_results  # noqa: E402
from init_cases import _mixture, _student  # noqa: E402

N, CHUNK, REACHED = 40_000, 5_000, 1e-3


def cases(n: int) -> list[tuple[str, np.ndarray, int]]:
    """(name, X, K): the start benchmark's generators at n rows."""
    r2 = lambda s, c, t: np.array([[s, c], [c, t]])  # noqa: E731
    ring = 2.2 * np.c_[np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)]
    return [
        ("overlap K=3", _mixture(5, n, [0.4, 0.3, 0.3], [[0, 0], [1.5, 1], [0.5, 2.5]],
                                 [r2(1, 0.5, 1), r2(1, -0.3, 0.6), r2(0.5, 0, 1.2)]), 3),
        ("small_between K=3", _mixture(3, n, [0.45, 0.1, 0.45], [[-2, 0], [0, 0.3], [2, 0]],
                                       [r2(1, 0.3, 1), r2(0.15, 0, 0.15), r2(1, -0.3, 1)]), 3),
        ("four_3d K=4", _mixture(21, n, [0.35, 0.3, 0.2, 0.15],
                                 np.random.default_rng(22).normal(scale=1.2, size=(4, 3)),
                                 [np.eye(3) * s + 0.2 for s in (0.8, 0.5, 0.6, 0.4)]), 4),
        ("ring6 K=6", _mixture(31, n, np.full(6, 1 / 6), ring,
                               [r2(0.5, 0.1 * (-1) ** k, 0.4) for k in range(6)]), 6),
        ("t_tails K=3", _student(41, n, [0.4, 0.35, 0.25], [[0, 0], [3, 0.5], [1, 3]], 4), 3),
    ]


def _fit(way: str, X, K: int, seed: int):
    import dask

    if way == "dask":
        import dask.array as da

        with dask.config.set(scheduler="threads"):
            return bg.fit_map(da.from_array(X, chunks=(CHUNK, X.shape[1])), K,
                              random_state=seed)
    if way == "all rows":
        rows, search.SEARCH_ROWS = search.SEARCH_ROWS, len(X)
        try:
            return bg.fit_map(X, K, random_state=seed)
        finally:
            search.SEARCH_ROWS = rows
    return bg.fit_map(X, K, random_state=seed)


def main(quick: bool):
    n, seeds = (8_000, 3) if quick else (N, 10)
    ways = ("dask", "in memory", "all rows")
    rows = []
    for name, X, K in cases(n):
        values = {way: [] for way in ways}
        seconds = {way: [] for way in ways}
        for seed in range(seeds):
            for way in ways:  # interleaved
                t = time.perf_counter()
                values[way].append(_fit(way, X, K, seed).log_posterior)
                seconds[way].append(time.perf_counter() - t)
        best = max(max(v) for v in values.values())
        for way in ways:
            gaps = best - np.array(values[way])
            rows.append({"case": name, "N": n, "way": way, "seeds": seeds,
                         "reached": int((gaps <= REACHED).sum()),
                         "largest_gap_nats": float(gaps.max()),
                         "median_seconds": float(np.median(seconds[way]))})
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "blas_threads": 1},
              "search_rows": search.SEARCH_ROWS, "chunk_rows": CHUNK,
              "reached_within_nats": REACHED, "rows": rows}
    table = markdown_table(
        ["case", "N", "start", "seeds reaching the best-known mode", "largest gap (nats)",
         "median s per fit"], ["---", "---:", "---", "---:", "---:", "---:"],
        [[r["case"], f"{r['N']:,}", r["way"], f"{r['reached']} / {r['seeds']}",
          f"{r['largest_gap_nats']:.3g}", f"{r['median_seconds']:.2f}"] for r in rows])
    write_results("dask_start_quick" if quick else "dask_start", result,
                  f"Default search on ≤ {search.SEARCH_ROWS:,} sampled rows (Dask: sampled from "
                  f"blocks of {CHUNK:,} rows) vs the search on all rows; BLAS at one thread.",
                  table)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 8 000, 3 seeds")
    main(parser.parse_args().quick)
