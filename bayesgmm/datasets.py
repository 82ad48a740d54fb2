"""Bundled public data sets (see ``data/README.md`` for their sources)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

__all__ = ["load_dataset", "read_csv", "select_columns", "DATASETS"]

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

    Returns
    -------
    pandas.DataFrame
        One row per observation, the data set's column names.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> bg.load_dataset("faithful").shape, bg.load_dataset("iris").columns[0]
    ((272, 2), 'Sepal.Length')
    """
    try:
        filename, features = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; bundled: {sorted(DATASETS)}") from None
    with resources.files("bayesgmm.data").joinpath(filename).open("r") as fh:
        frame = pd.read_csv(fh)
    return frame[features] if features_only else frame


def _is_number(text) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return True


def read_csv(path, columns=None, *, header: bool = True) -> pd.DataFrame:
    """Read the numeric columns of a CSV file for fitting, with errors that name the problem.

    Parameters
    ----------
    path : str or Path
    columns : sequence of str, optional
        The feature columns (default: every column, which must then all be numeric).
    header : bool
        The first row names the columns (default).  A first row made of numbers only is data,
        not names, and is refused with a hint; with ``header=False`` the columns are named
        ``x0, x1, …``.

    Returns
    -------
    pandas.DataFrame, shape (n_samples, n_columns), float64
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} not found")
    try:
        frame = pd.read_csv(path, header=0 if header else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} could not be read as CSV: {reason}") from None
    if header and all(_is_number(c) for c in frame.columns):
        raise ValueError(f"{path}: the first row ({', '.join(map(str, frame.columns[:4]))}"
                         f"{', …' if len(frame.columns) > 4 else ''}) is numbers, not column "
                         "names; add a header row, or read the file without one (--no-header; "
                         "header = false in a spec), which names the columns x0, x1, …")
    if not header:
        frame.columns = [f"x{j}" for j in range(frame.shape[1])]
    return select_columns(frame, columns, str(path), first_line=2 if header else 1)


def select_columns(frame: pd.DataFrame, columns, source: str, first_line: int = 2
                   ) -> pd.DataFrame:
    """``frame[columns]`` as float64, or a clear error naming a repeated or missing column, a
    non-numeric entry or a missing value (by its line in the CSV file, whose first data row is
    ``first_line``)."""
    columns = list(frame.columns) if columns is None else list(columns)
    repeated = sorted({str(c) for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"the data columns repeat {repeated}; give each column once")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source} has no column(s) {missing}; its columns are "
                         f"{[str(c) for c in frame.columns]}")
    out = {}
    for c in columns:
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = values.isna() & frame[c].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValueError(f"{source}: column {c!r} has a non-numeric value "
                             f"{frame[c].iloc[row]!r} (line {row + first_line}); fix it or leave "
                             "the column out of the data columns")
        if values.isna().any():
            row = int(values.isna().to_numpy().argmax())
            raise ValueError(f"{source}: column {c!r} has {int(values.isna().sum())} missing "
                             f"value(s), the first on line {row + first_line}; drop or impute "
                             "those rows")
        out[c] = values.astype(float)
    return pd.DataFrame(out)
