"""Bundled public data sets (see ``data/README.md`` for their sources)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_dataset", "DATASETS"]

#: name -> (file, numeric feature columns)
DATASETS = {
    "faithful": ("faithful.csv", ["eruptions", "waiting"]),
    "iris": ("iris.csv", ["Sepal.Length", "Sepal.Width", "Petal.Length", "Petal.Width"]),
}


def load_dataset(name: str, *, features_only: bool = True) -> pd.DataFrame:
    """Load a bundled data set: ``"faithful"`` (272 × 2) or ``"iris"`` (150 × 4 + Species).

    Parameters
    ----------
    name : str
    features_only : bool
        Keep only the numeric feature columns (drops iris' ``Species``).
    """
    try:
        filename, features = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; bundled: {sorted(DATASETS)}") from None
    with resources.files("bayesgmm.data").joinpath(filename).open("r") as fh:
        frame = pd.read_csv(fh)
    return frame[features] if features_only else frame
