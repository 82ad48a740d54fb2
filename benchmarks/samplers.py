"""The conjugate Gibbs sampler against NUTS, both through bg.sample_posterior.

Old Faithful K = 2 and K = 3 and iris K = 3, full covariances, the default prior, 4 chains ×
(1000 tune/burn-in + 1000 draws), every chain started at the same MAP-EM estimate, one BLAS
thread, seeds 0–2, runs interleaved (Gibbs, NUTS, Gibbs, ...).  Reported per run: wall and
process-CPU time of the whole call (start-up included: NUTS compiles its model, warm caches
after the first run), sampling time, min bulk and tail ESS and max R-hat over every parameter
after the draws are relabelled to the MAP (bg.relabel), the share of draws relabelled,
divergences, and ESS per second and per CPU-second of the whole call.  Gibbs runs with its
defaults, so it thins by the autocorrelation time of its burn-in (``thin`` column); nutpie is
measured in posterior_vs_handbuilt.py.  ``--long`` adds (to the committed file) unthinned Gibbs
runs of 10 000 draws per chain on the K = 3 cases, 3 seeds, for comparison.

    python benchmarks/samplers.py [--quick | --long]  ->  benchmarks/results/samplers.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

import bayesgmm as bg
from bayesgmm.health import convergence_summary

OUT = Path(__file__).parent / "results"
CASES = [("faithful", 2), ("faithful", 3), ("iris", 3)]


def run(X, K, fit, sampler, seed, draws, tune, **options):
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = bg.sample_posterior(X, K, "full", fit.prior, sampler=sampler, init=fit,
                                    draws=draws, tune=tune, chains=4, random_seed=seed,
                                    progressbar=False, **options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    relabelled = bg.relabel(idata, fit)
    conv = convergence_summary(relabelled.posterior, idata.sample_stats)
    sampling = float(idata.posterior.attrs.get("sampling_time", np.nan))
    return {"sampler": sampler, "seed": seed, "thin": idata.posterior.attrs.get("thin", 1),
            "wall_s": wall, "cpu_s": cpu,
            "sampling_s": sampling, "startup_s": wall - sampling,
            "min_ess_bulk": conv["min_ess_bulk"], "min_ess_tail": conv["min_ess_tail"],
            "max_rhat": conv["max_rhat"], "divergences": conv["divergences"],
            "relabelled_share": relabelled.n_permuted / relabelled.permutations[..., 0].size,
            "ess_per_s": conv["min_ess_bulk"] / wall, "ess_per_cpu_s": conv["min_ess_bulk"] / cpu}


def to_markdown(result) -> str:
    lines = ["Old Faithful and iris, full covariances, default prior, 4 chains × "
             f"({result['tune']} + {result['draws']}), started at the MAP-EM estimate, one BLAS "
             "thread. ESS and R-hat over every parameter after relabelling to the MAP; ESS/s "
             "and ESS per CPU-second over the whole call (NUTS's compilation included).", "",
             "| case | sampler | seed | thin | wall s | start-up s | min bulk ESS | "
             "min tail ESS | max R-hat | divergences | relabelled | ESS/s | ESS/CPU-s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        thin = r["thin"] if r["sampler"] == "gibbs" else "–"
        lines.append(f"| {r['case']} | {r['sampler']} | {r['seed']} | {thin} | {r['wall_s']:.1f} | "
                     f"{r['startup_s']:.1f} | {r['min_ess_bulk']:.0f} | {r['min_ess_tail']:.0f} | "
                     f"{r['max_rhat']:.3f} | {r['divergences']} | {r['relabelled_share']:.1%} | "
                     f"{r['ess_per_s']:.1f} | {r['ess_per_cpu_s']:.1f} |")
    lines += ["", "Medians over seeds, Gibbs ÷ NUTS:", "",
              "| case | ESS/s ratio | ESS/CPU-s ratio |", "|---|---|---|"]
    for case, s in result["summary"].items():
        lines.append(f"| {case} | {s['ess_per_s_ratio']:.1f}× | {s['ess_per_cpu_s_ratio']:.1f}× |")
    if result.get("long"):
        lines += ["", f"Unthinned Gibbs with 4 × ({LONG_TUNE} + {LONG_DRAWS}) draws on the K = 3 cases "
                  f"(measured at {result.get('long_measured_at', '?')}):", "",
                  "| case | seed | wall s | min bulk ESS | min tail ESS | max R-hat | relabelled |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["long"]:
            lines.append(f"| {r['case']} | {r['seed']} | {r['wall_s']:.1f} | "
                         f"{r['min_ess_bulk']:.0f} | {r['min_ess_tail']:.0f} | "
                         f"{r['max_rhat']:.3f} | {r['relabelled_share']:.1%} |")
    return "\n".join(lines) + "\n"


LONG_DRAWS, LONG_TUNE = 10_000, 1000


def long_gibbs() -> list:
    runs = []
    for name, K in CASES[1:]:
        X = bg.load_dataset(name)
        fit = bg.fit_map(X, K, "full", random_state=0, tol=1e-10)
        for seed in (0, 1, 2):
            runs.append({"case": f"{name} K={K}",
                         **run(X, K, fit, "gibbs", seed, LONG_DRAWS, LONG_TUNE, thin=1)})
            print(json.dumps(runs[-1]), flush=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--long", action="store_true", help="add the long Gibbs runs only")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    if args.long:
        path = OUT / "samplers.json"
        result = json.loads(path.read_text())
        result["long"], result["long_measured_at"] = long_gibbs(), commit
        path.write_text(json.dumps(result, indent=1))
        (OUT / "samplers.md").write_text(to_markdown(result))
        print(to_markdown(result))
        return
    draws = tune = 200 if args.quick else 1000
    seeds = [0] if args.quick else [0, 1, 2]
    runs = []
    for name, K in CASES:
        X = bg.load_dataset(name)
        fit = bg.fit_map(X, K, "full", random_state=0, tol=1e-10)
        for seed in seeds:
            for sampler in ("gibbs", "nuts"):
                r = {"case": f"{name} K={K}", **run(X, K, fit, sampler, seed, draws, tune)}
                runs.append(r)
                print(json.dumps(r), flush=True)
    summary = {}
    for name, K in CASES:
        case = f"{name} K={K}"
        med = {s: {m: float(np.median([r[m] for r in runs if r["case"] == case
                                       and r["sampler"] == s]))
                   for m in ("ess_per_s", "ess_per_cpu_s")} for s in ("gibbs", "nuts")}
        summary[case] = {f"{m}_ratio": med["gibbs"][m] / med["nuts"][m]
                         for m in ("ess_per_s", "ess_per_cpu_s")}
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "blas_threads": 1}, "measured_at": commit, "draws": draws,
              "tune": tune, "runs": runs, "summary": summary}
    suffix = "_quick" if args.quick else ""
    OUT.mkdir(exist_ok=True)
    (OUT / f"samplers{suffix}.json").write_text(json.dumps(result, indent=1))
    (OUT / f"samplers{suffix}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
