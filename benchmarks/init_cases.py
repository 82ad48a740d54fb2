"""The hard cases of the initialisation benchmark: data sets where EM's answer depends on its
start (overlapping components, K ≥ 3), with the model fitted to each.

    python benchmarks/init_cases.py    # writes the simulated data to benchmarks/data/*.csv

The CSV files are what ``benchmarks/mclust_hc_starts.R`` reads, so mclust's own starts are
computed on exactly these numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import bayesgmm as bg

DATA = Path(__file__).parent / "data"


def _mixture(seed, n, weights, means, covs):
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    return np.vstack([rng.multivariate_normal(means[k], covs[k]) for k in labels])


def simulated() -> dict:
    """name -> X for the simulated cases (fixed seeds)."""
    r2 = lambda s, c, t: np.array([[s, c], [c, t]])  # noqa: E731
    return {
        # three overlapping 2-D components, N = 150: k-means starts miss the best mode
        "overlap150": _mixture(11, 150, [0.5, 0.2, 0.3], [[0, 0], [1.8, 0.8], [0.6, 2.2]],
                               [r2(1.0, 0.45, 1.0), r2(0.5, -0.2, 0.6), r2(0.6, 0.0, 1.2)]),
        # the same shapes at N = 3000 (slow EM, a clearer optimum)
        "overlap3000": _mixture(5, 3000, [0.4, 0.3, 0.3], [[0, 0], [1.5, 1], [0.5, 2.5]],
                                [r2(1, 0.5, 1), r2(1, -0.3, 0.6), r2(0.5, 0, 1.2)]),
        # a small component between two large ones
        "small_between": _mixture(3, 400, [0.45, 0.1, 0.45], [[-2, 0], [0, 0.3], [2, 0]],
                                  [r2(1, 0.3, 1), r2(0.15, 0, 0.15), r2(1, -0.3, 1)]),
        # five overlapping components in 5-D
        "five_5d": _mixture(7, 600, [0.3, 0.25, 0.2, 0.15, 0.1],
                            np.random.default_rng(70).normal(scale=1.6, size=(5, 5)),
                            [np.eye(5) * s + 0.3 for s in (1.0, 0.6, 0.8, 0.5, 0.7)]),
    }


def cases() -> list[dict]:
    """Every case: name, X, K and covariance structure (all under the default prior)."""
    faithful = bg.load_dataset("faithful").to_numpy()
    iris = bg.load_dataset("iris").to_numpy()
    sim = simulated()
    return [
        {"name": "overlap150 K=3", "data": "overlap150", "X": sim["overlap150"], "K": 3},
        {"name": "overlap3000 K=3", "data": "overlap3000", "X": sim["overlap3000"], "K": 3},
        {"name": "small_between K=3", "data": "small_between", "X": sim["small_between"],
         "K": 3},
        {"name": "five_5d K=5", "data": "five_5d", "X": sim["five_5d"], "K": 5},
        {"name": "faithful K=3", "data": "faithful", "X": faithful, "K": 3},
        {"name": "faithful K=4", "data": "faithful", "X": faithful, "K": 4},
        {"name": "iris K=3", "data": "iris", "X": iris, "K": 3},
        {"name": "iris K=4", "data": "iris", "X": iris, "K": 4},
    ]


def main():
    DATA.mkdir(exist_ok=True)
    for name, X in simulated().items():
        np.savetxt(DATA / f"{name}.csv", X, delimiter=",", header="x1,x2" if X.shape[1] == 2
                   else ",".join(f"x{j + 1}" for j in range(X.shape[1])), comments="",
                   fmt="%.17g")


if __name__ == "__main__":
    main()
