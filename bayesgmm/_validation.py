"""Input checks shared by every entry point (API, study specs, command line).

Each check raises a ``ValueError`` or ``TypeError`` whose message names the value, the problem and
the fix; the spec parser and the command line call the same functions, so a value is judged the
same way wherever it enters.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_data",
    "check_n_components",
    "check_sample_weight",
    "check_positive_int",
    "check_positive_number",
    "check_tolerance",
    "check_probability",
    "check_random_state",
    "check_spd",
    "check_symmetric",
    "check_magnitude",
    "column_moments",
    "power_of_two",
    "feature_names_of",
    "readonly_array",
]

#: rows per chunk of the helper passes below (keeps temporaries near 512 KiB)
_CHUNK_VALUES = 2**16
#: the spread of data (and of a prior's scale) must stay within 10^±150 of 1, so that squares
#: (covariances) and their products stay inside float64's normal range 2.2e-308 … 1.8e308
_MAGNITUDE_LIMIT = 150


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


def _is_sparse(X) -> bool:
    return hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse") or (
        getattr(getattr(X, "dtypes", None), "__iter__", None) is not None
        and any(str(t).startswith("Sparse") for t in X.dtypes))


def _from_frame(X, name: str):
    """A DataFrame's values, with pandas' missing values (NA, NaN) named as such."""
    missing = X.isna()
    if hasattr(missing, "to_numpy") and bool(missing.to_numpy().any()):
        counts = missing.sum()
        columns = [str(c) for c, n in counts.items() if n] if hasattr(counts, "items") else []
        rows = np.flatnonzero(missing.to_numpy().reshape(len(X), -1).any(axis=1))
        where = f" in column(s) {columns}" if columns else ""
        raise ValueError(f"{name} has {int(missing.to_numpy().sum())} missing value(s){where}, the "
                         f"first in row {int(rows[0])}; drop or impute them before fitting")
    try:
        return X.to_numpy(dtype=float)
    except (TypeError, ValueError):
        return X.to_numpy()


def check_data(X, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return X as a C-contiguous float64 (n, d) array, or raise a clear error.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        A numpy array, a pandas DataFrame (its missing values are named as such) or a masked
        array without masked entries.  Sparse matrices are not supported.
    n_features : int, optional
        Required number of columns (e.g. that of the fitted model).
    """
    if _is_sparse(X):
        raise TypeError(f"{name} is a sparse matrix, and sparse input is not supported (Gaussian "
                        "mixtures need dense data); convert it with X.toarray()")
    if isinstance(X, np.ma.MaskedArray):
        n_masked = int(np.ma.count_masked(X))
        if n_masked:
            raise ValueError(f"{name} is a masked array with {n_masked} masked value(s); the mask "
                             "cannot be honoured — drop or impute those rows first")
        X = X.data
    if hasattr(X, "isna") and hasattr(X, "to_numpy"):
        X = _from_frame(X, name)
    elif hasattr(X, "to_numpy"):
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has complex values (dtype "
                         f"{arr.dtype}); a Gaussian mixture needs real numbers")
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} has non-numeric entries (dtype object): each float() argument must be a "
                "string or a real number; convert or drop the non-numeric columns first"
            ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be numeric, got dtype {arr.dtype}; convert or drop non-numeric columns"
        )
    if arr.ndim != 2:
        hint = (" Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) "
                "for a single sample." if arr.ndim == 1 else "")
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_features); got {arr.ndim}-D array of "
            f"shape {arr.shape}.{hint}"
        )
    for axis, what in ((0, "sample"), (1, "feature")):
        if arr.shape[axis] == 0:
            raise ValueError(f"{name} is empty: 0 {what}(s) (shape={arr.shape}) while a minimum "
                             "of 1 is required.")
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


# ----------------------------------------------------------------------------- scalars
def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer ≥ ``minimum`` (and ≤ ``maximum``); bools and floats are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def check_positive_number(value, name: str, *, strict: bool = True) -> float:
    """A finite real number > 0 (≥ 0 with ``strict=False``)."""
    value = _real(value, name)
    if not math.isfinite(value) or (value <= 0 if strict else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if strict else '≥ 0'}, "
                         f"got {value}")
    return value


def check_tolerance(value, name: str = "tol") -> float:
    """A finite tolerance ≥ 0 (an infinite one would stop after the first iteration)."""
    value = _real(value, name)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number ≥ 0, got {value}; an infinite "
                         "tolerance would declare convergence at once")
    return value


def check_probability(value, name: str) -> float:
    """A probability strictly between 0 and 1."""
    value = _real(value, name)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {value}")
    return value


def check_random_state(value, name: str = "random_state"):
    """None, a non-negative integer seed, a numpy Generator or a SeedSequence."""
    if value is None or isinstance(value, (np.random.Generator, np.random.SeedSequence)):
        return value
    if isinstance(value, np.random.RandomState):
        return np.random.default_rng(value.randint(0, 2**31 - 1))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None, a non-negative integer or a numpy Generator, "
                        f"got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer seed, got {value}")
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
    try:
        w = np.asarray(sample_weight, dtype=float)
    except (TypeError, ValueError):
        raise TypeError("sample_weight must be numeric") from None
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not w.max() > 0:
        raise ValueError("sample_weight sums to zero; at least one sample needs positive weight")
    if not np.isfinite(w.sum()):
        raise ValueError(f"sample_weight sums to more than float64 holds (largest weight "
                         f"{w.max():.3g}); divide the weights by a common factor")
    return np.ascontiguousarray(w)


# ----------------------------------------------------------------------------- matrices
def check_symmetric(matrix: np.ndarray, name: str, rtol: float = 1e-8) -> None:
    """Raise unless every (…, d, d) matrix is symmetric to ``rtol`` of its diagonal's scale."""
    matrix = np.asarray(matrix, dtype=float)
    root = np.sqrt(np.abs(np.diagonal(matrix, axis1=-2, axis2=-1)))
    scale = root[..., :, None] * root[..., None, :]  # √(a_ii a_jj), without overflow
    gap = np.abs(matrix - np.swapaxes(matrix, -1, -2))
    bad = gap > rtol * scale + 1e-300
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        *batch, i, j = idx
        where = f"matrix {tuple(batch) if len(batch) > 1 else batch[0]}: " if batch else ""
        raise ValueError(
            f"{name} must be symmetric: {where}entry [{i}, {j}] is {matrix[idx]:.6g} but "
            f"[{j}, {i}] is {matrix[(*batch, j, i)]:.6g}")


def check_spd(matrix: np.ndarray, name: str) -> None:
    """Raise unless ``matrix`` is symmetric positive definite."""
    check_symmetric(matrix, name)
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"{name} must be positive definite (its Cholesky factorisation failed); "
            "add a multiple of the identity or use a data-scaled default"
        ) from None


# ----------------------------------------------------------------------------- magnitudes
def power_of_two(x: float) -> float:
    """The power of two nearest to x > 0 in log scale (multiplying by it is exact)."""
    return float(2.0 ** round(math.log2(x)))


def check_magnitude(value: float, what: str) -> None:
    """Raise when ``value`` (a spread, in data units) is too large or small for float64 to hold
    its square with room to spare, naming the magnitude and the fix."""
    if value == 0 or not math.isfinite(value):
        return
    exponent = math.log10(abs(value))
    if abs(exponent) > _MAGNITUDE_LIMIT:
        direction = "large" if exponent > 0 else "small"
        raise ValueError(
            f"{what} is {value:.3g}, too {direction} for float64: covariances scale with its "
            f"square (~1e{2 * exponent:+.0f}), beyond the 1e±{2 * _MAGNITUDE_LIMIT} this "
            f"package supports; rescale the data first (e.g. multiply by {10.0 ** -round(exponent):.0e})")


def column_moments(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Column means and the root mean column variance of X, safe from overflow at any finite
    magnitude (chunked passes over X scaled by a power of two; no (N, d) temporary)."""
    n, d = X.shape
    rows = max(1, _CHUNK_VALUES // d)
    chunks = range(0, n, rows)
    top = max(float(np.abs(X[a:a + rows]).max()) for a in chunks)
    if top == 0:
        return np.zeros(d), 0.0
    m = power_of_two(top)
    total = sum(((X[a:a + rows] / m).sum(axis=0) for a in chunks), np.zeros(d))
    center = total / n * m
    squares = sum(((((X[a:a + rows] - center) / m) ** 2).sum(axis=0) for a in chunks),
                  np.zeros(d))
    return center, float(m * math.sqrt(squares.mean() / n))
