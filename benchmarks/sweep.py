"""A 100-setting prior sweep, warm (bg.prior_sweep's default) against 100 independent fits.

Old Faithful, K = 3, full covariances (a multimodal, slow-converging case), a 10 × 10 grid over
the shrinkage κ0 (1e-3 … 1) and a multiplier on Ψ0 (0.1 … 10), tol = 1e-10, package defaults
otherwise.  Warm: the default search on a coarse lattice of the grid, a warm-started snake
path, then mode exchange between neighbours.  Cold: every setting an independent fit_map with
its default search.  Reports wall time (one BLAS thread) and, per setting, which of the two
found the higher mode.

    python benchmarks/sweep.py   ->  benchmarks/results/sweep.json
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import bayesgmm as bg

OUT = Path(__file__).parent / "results"


def main():
    X = bg.load_dataset("faithful")
    grid = {"shrinkage": np.geomspace(1e-3, 1.0, 10), "scale": np.geomspace(0.1, 10.0, 10)}
    runs = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, warm in (("warm", True), ("cold", False)):
            t = time.perf_counter()
            ds = bg.prior_sweep(X, 3, "full", grid=grid, warm_start=warm, tol=1e-10,
                                random_state=0, progress=False)
            runs[name] = (ds, time.perf_counter() - t)
    warm, cold = runs["warm"][0], runs["cold"][0]
    gap = (warm.log_posterior - cold.log_posterior).values
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "blas_threads": 1},
        "settings": int(warm.log_posterior.size),
        "seconds": {"warm": runs["warm"][1], "cold": runs["cold"][1]},
        "time_ratio_cold_over_warm": runs["cold"][1] / runs["warm"][1],
        "all_converged": {"warm": bool(warm.converged.all()), "cold": bool(cold.converged.all())},
        "settings_where_cold_found_a_lower_optimum": int((gap > 1e-6).sum()),
        "settings_where_cold_found_a_higher_optimum": int((gap < -1e-6).sum()),
        "largest_log_posterior_gap": float(np.abs(gap).max()),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "sweep.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
