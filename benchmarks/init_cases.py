"""The hard cases of the initialisation benchmark: data sets where EM's answer depends on its
start (overlapping components, K ≥ 3), with the model fitted to each.

    python benchmarks/init_cases.py    # writes the simulated data to benchmarks/data/*.csv

The CSV files and ``data/cases.json`` (the list of cases) are what
``benchmarks/mclust_hc_starts.R`` reads, so mclust's own starts are computed on exactly these
numbers and cases.
"""

from __future__ import annotations

import json
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
        # held out (added after the search was designed, never tuned on): ...
        # ... overlap150's generator with another seed
        "overlap150b": _mixture(12, 150, [0.5, 0.2, 0.3], [[0, 0], [1.8, 0.8], [0.6, 2.2]],
                                [r2(1.0, 0.45, 1.0), r2(0.5, -0.2, 0.6), r2(0.6, 0.0, 1.2)]),
        # ... four overlapping components in 3-D
        "four_3d": _mixture(21, 300, [0.35, 0.3, 0.2, 0.15],
                            np.random.default_rng(22).normal(scale=1.2, size=(4, 3)),
                            [np.eye(3) * s + 0.2 for s in (0.8, 0.5, 0.6, 0.4)]),
        # ... six components on a ring in 2-D, neighbours overlapping
        "ring6": _mixture(31, 500, np.full(6, 1 / 6),
                          2.2 * np.c_[np.cos(np.arange(6) * np.pi / 3),
                                      np.sin(np.arange(6) * np.pi / 3)],
                          [r2(0.5, 0.1 * (-1) ** k, 0.4) for k in range(6)]),
        # ... heavy tails: three Student-t (4 dof) components, so outliers seed spikes
        "t_tails": _student(41, 300, [0.4, 0.35, 0.25], [[0, 0], [3, 0.5], [1, 3]], 4),
    }


def _student(seed, n, weights, means, dof):
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(weights), size=n, p=weights)
    scale = np.sqrt(dof / rng.chisquare(dof, size=n))[:, None]
    return np.asarray(means)[labels] + scale * rng.standard_normal((n, len(means[0])))


def cases() -> list[dict]:
    """Every case: name, X, K, covariance structure ("full" unless named) and whether it was
    held out of the search's design (all under the default prior)."""
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
        # held out: never used to design or tune the search
        {"name": "overlap150b K=3", "data": "overlap150b", "X": sim["overlap150b"], "K": 3,
         "held_out": True},
        {"name": "four_3d K=4", "data": "four_3d", "X": sim["four_3d"], "K": 4,
         "held_out": True},
        {"name": "ring6 K=6", "data": "ring6", "X": sim["ring6"], "K": 6, "held_out": True},
        {"name": "t_tails K=3", "data": "t_tails", "X": sim["t_tails"], "K": 3,
         "held_out": True},
        {"name": "faithful K=5", "data": "faithful", "X": faithful, "K": 5, "held_out": True},
        {"name": "iris K=5", "data": "iris", "X": iris, "K": 5, "held_out": True},
        {"name": "iris K=3 diag", "data": "iris", "X": iris, "K": 3, "covariance": "diag",
         "held_out": True},
    ]


#: mclust's model names of the structures used here
MCLUST_MODEL = {"full": "VVV", "diag": "VVI"}


def main():
    DATA.mkdir(exist_ok=True)
    for name, X in simulated().items():
        np.savetxt(DATA / f"{name}.csv", X, delimiter=",", header="x1,x2" if X.shape[1] == 2
                   else ",".join(f"x{j + 1}" for j in range(X.shape[1])), comments="",
                   fmt="%.17g")
    index = [{"name": c["name"], "data": c["data"], "K": c["K"],
              "model": MCLUST_MODEL[c.get("covariance", "full")]} for c in cases()]
    (DATA / "cases.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
