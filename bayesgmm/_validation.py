"""Input checks shared by every entry point: each failure names the problem and the fix."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_data",
    "check_n_components",
    "check_sample_weight",
    "check_positive_int",
    "check_spd",
    "feature_names_of",
    "readonly_array",
]


def readonly_array(a) -> np.ndarray:
    """A float64 copy of ``a`` with writing disabled (for immutable results and priors)."""
    a = np.array(a, dtype=float)
    a.setflags(write=False)
    return a


def feature_names_of(X) -> tuple[str, ...] | None:
    """Column names of a pandas DataFrame (or any object with ``columns``), else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    return tuple(str(c) for c in columns)


def check_data(X, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return X as a C-contiguous float64 (n, d) array, or raise a clear error.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
    n_features : int, optional
        Required number of columns (e.g. that of the fitted model).
    """
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} has non-numeric entries (dtype object); convert or drop the non-numeric "
                "columns first"
            ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric, got dtype {arr.dtype}; convert or drop non-numeric columns"
        )
    if arr.ndim != 2:
        hint = " Use X.reshape(-1, 1) for a single feature." if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_features); got {arr.ndim}-D array of "
            f"shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one row and column")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    # a finite total proves every entry finite without an (N, d) mask; only when it is not
    # (a NaN/inf, or an overflowing sum) are the entries checked one by one
    with np.errstate(over="ignore", invalid="ignore"):
        total_is_finite = np.isfinite(arr.sum())
    if not total_is_finite and not np.isfinite(arr).all():
        finite = np.isfinite(arr)
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or infinite value(s) in {bad_rows.size} "
            f"row(s), the first in row {int(bad_rows[0])}; drop or impute them before fitting"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features but the model was fitted with {n_features}"
        )
    return arr


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_n_components(n_components, n_samples: int) -> int:
    """K ≥ 1 and K ≤ N."""
    K = check_positive_int(n_components, "n_components")
    if K > n_samples:
        raise ValueError(
            f"n_components={K} exceeds the number of samples ({n_samples}); use at most "
            f"{n_samples} components or more data"
        )
    return K


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """None, or a finite, non-negative (N,) float array with a positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to zero; at least one sample needs positive weight")
    return np.ascontiguousarray(w)


def check_spd(matrix: np.ndarray, name: str) -> None:
    """Raise unless ``matrix`` is symmetric positive definite."""
    if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12 * np.abs(matrix).max()):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{name} must be positive definite (its Cholesky factorisation failed); "
            "add a multiple of the identity or use a data-scaled default"
        ) from None
