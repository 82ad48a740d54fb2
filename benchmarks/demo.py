"""How long `bayesgmm demo` (what `make demo` runs) takes: cold and warm.

Cold: empty PyTensor and Numba caches (fresh temporary folders), as on a new machine once the
virtualenv exists; warm: the same caches reused by a second run.  Each run is a separate
process; the wall time covers everything from the interpreter's start to the written report,
and the per-stage times come from the report's provenance.json.  BLAS runs at one thread inside
the sampler (bayesgmm sets it); the machine has 2 vCPUs.

    python benchmarks/demo.py   ->  benchmarks/results/demo.json
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).parent / "results"


def run_demo(env: dict, folder: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bayesgmm", "demo", "--quiet", "--out", str(folder)],
                   env=env, check=True)
    wall = time.perf_counter() - start
    provenance = json.loads((folder / "provenance.json").read_text())
    return {"wall_seconds": round(wall, 1), "stage_seconds": provenance["timings_s"]}


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={tmp / 'pytensor'}",
                   NUMBA_CACHE_DIR=str(tmp / "numba"))
        runs = {name: run_demo(env, tmp / f"report_{name}") for name in ("cold", "warm")}
        versions = json.loads((tmp / "report_warm" / "provenance.json").read_text())["versions"]
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "blas_threads_in_sampler": 1},
              "versions": versions, "demo": "Gibbs, 4 chains × (1000 burn-in + 1000 draws), K = 2 full, "
              "12-setting sweep, power-scaling (the bundled spec's sampler)", **runs}
    OUT.mkdir(exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
