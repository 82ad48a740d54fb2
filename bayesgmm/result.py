"""The immutable result of a MAP-EM fit, its predictions, criteria, labelled form and storage."""

from __future__ import annotations

import io
import json
import math
import numbers
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from ._io import DamagedFileError, atomic_write, netcdf_bytes, seal, unseal
from ._validation import check_data, check_positive_int, readonly_array
from .covariance import STRUCTURES, check_covariances, get_structure
from .dask_em import is_dask_array
from .estep import MixtureParams, joint_log_density
from .priors import GMMPrior

__all__ = ["MixtureFit", "load", "parameter_entries", "FIT_SUFFIXES"]

_FORMAT_NAME = "bayesgmm.MixtureFit"
_FORMAT_VERSION = "1"
_FORMAT = f"{_FORMAT_NAME}/{_FORMAT_VERSION}"
_ARRAYS = ("weights", "means", "covariances", "history")
_PRIOR_FIELDS = ("mean", "shrinkage", "dof", "scale", "concentration")
#: what :meth:`MixtureFit.save` writes and :func:`load` reads, by file extension
FIT_SUFFIXES = (".nc", ".npz", ".json")


@dataclass(frozen=True, eq=False)
class MixtureFit:
    """A fitted Gaussian mixture (MAP-EM, or maximum likelihood when ``prior`` is None).

    Attributes
    ----------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    covariance_type : str
        The covariance structure (scikit-learn's ``covariance_type``).
    prior : GMMPrior or None
    log_likelihood : float
        log p(X | θ̂) (sample-weighted if weights were given).
    log_posterior : float
        log p(X | θ̂) + log p(θ̂), both normalised; equals ``log_likelihood`` without a prior.
    history : ndarray, shape (≤ n_iter + 1,)
        The log posterior of every accepted iterate, from the start (one entry per M-step for
        plain EM; one per SQUAREM cycle); never decreasing.
    n_iter : int
        EM-map evaluations (E-pass and M-step) taken.
    converged : bool
    n_samples : float
        N (or the sum of sample weights).
    feature_names : tuple of str or None

    Examples
    --------
    >>> import bayesgmm as bg
    >>> X = bg.load_dataset("faithful")
    >>> fit = bg.fit_map(X, 2, random_state=0)
    >>> fit.predict(X)[:5], round(fit.bic(X), 1)
    (array([1, 0, 1, 0, 1]), 2322.7)
    >>> fit.to_xarray()["covariances"].dims
    ('component', 'feature', 'feature_bis')
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    prior: GMMPrior | None
    log_likelihood: float
    log_posterior: float
    history: np.ndarray
    n_iter: int
    converged: bool
    n_samples: float
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in _ARRAYS:
            object.__setattr__(self, name, readonly_array(getattr(self, name)))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(self.feature_names))

    # ------------------------------------------------------------------ shape
    @property
    def covariance(self) -> str:
        """Deprecated alias of :attr:`covariance_type` (easily confused with ``covariances``)."""
        import warnings

        warnings.warn("MixtureFit.covariance is deprecated; use covariance_type",
                      DeprecationWarning, stacklevel=2)
        return self.covariance_type

    @property
    def n_components(self) -> int:
        return self.weights.size

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def params(self) -> MixtureParams:
        return MixtureParams(self.weights, self.means, self.covariances)

    @property
    def covariance_matrices(self) -> np.ndarray:
        """Dense covariance matrices, shape (K, d, d), whatever the structure."""
        return np.array(get_structure(self.covariance_type).expand(
            self.covariances, self.n_components, self.n_features))

    def n_parameters(self) -> int:
        """Free parameters: (K − 1) weights, K·d means and the structure's covariance entries."""
        K, d = self.n_components, self.n_features
        return K - 1 + K * d + get_structure(self.covariance_type).n_parameters(K, d)

    # ------------------------------------------------------------------ prediction
    def _log_prob_blocks(self, X):
        """log π_k N(x_n | μ_k, Σ_k) in (rows, K) blocks of X (checked first), raising for rows
        whose density float64 cannot represent (rather than returning label 0 or NaN
        probabilities for them).  Memory: one block at a time."""
        X = check_data(X, n_features=self.n_features)
        for a, log_prob in joint_log_density(X, self.params, self.covariance_type):
            bad = np.flatnonzero(~np.isfinite(log_prob.max(axis=1)))
            if bad.size:
                row = a + int(bad[0])
                raise ValueError(
                    f"row {row} of X (largest |x| {np.abs(X[row]).max():.3g}) lies so far from "
                    f"every component (means of size up to {np.abs(self.means).max():.3g}) "
                    "that its density is below what float64 can represent; check its units or "
                    "leave it out")
            yield log_prob

    def _per_row(self, X, method: str):
        """A per-row method on X: in blocks for arrays; for a Dask array, lazily per block
        (a Dask array of the result, the data never gathered)."""
        if is_dask_array(X):
            X = X.rechunk({1: -1})
            if method == "predict_proba":
                return X.map_blocks(self.predict_proba, dtype=float,
                                    chunks=(X.chunks[0], (self.n_components,)))
            return X.map_blocks(lambda block: self._per_row(block, method), drop_axis=1,
                                dtype=int if method == "predict" else float)
        reduce = _ROW_REDUCTIONS[method]
        return np.concatenate([reduce(block) for block in self._log_prob_blocks(X)])

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n | θ̂) per row, shape (n_samples,) (a Dask array for a Dask array)."""
        return self._per_row(X, "score_samples")

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities r_nk, shape (n_samples, K) (a Dask array for a Dask array)."""
        return self._per_row(X, "predict_proba")

    def predict(self, X) -> np.ndarray:
        """Most probable component per row, shape (n_samples,) (a Dask array for a Dask
        array)."""
        return self._per_row(X, "predict")

    def sample(self, n_samples: int = 1, random_state=None):
        """Draw from the fitted mixture.

        Returns
        -------
        X : ndarray, shape (n_samples, d)
        labels : ndarray of int, shape (n_samples,)
        """
        n_samples = check_positive_int(n_samples, "n_samples")
        rng = np.random.default_rng(random_state)
        labels = rng.choice(self.n_components, size=n_samples, p=self.weights)
        chol = np.linalg.cholesky(self.covariance_matrices)
        z = rng.standard_normal((n_samples, self.n_features))
        X = self.means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
        return X, labels

    # ------------------------------------------------------------------ criteria
    def _total(self, X, method: str) -> float:
        """Σ_n of a per-row quantity (one pass; computed for a Dask array)."""
        if not is_dask_array(X):
            X = check_data(X, n_features=self.n_features)
        total = self._per_row(X, method).sum()
        return float(total.compute() if hasattr(total, "compute") else total)

    def bic(self, X) -> float:
        """Bayesian information criterion −2 log L + p log N (lower is better, as scikit-learn;
        mclust reports the negative).  X may be a Dask array."""
        return float(-2.0 * self._total(X, "score_samples")
                     + self.n_parameters() * math.log(len(X)))

    def aic(self, X) -> float:
        """Akaike information criterion −2 log L + 2p (lower is better)."""
        return float(-2.0 * self._total(X, "score_samples") + 2.0 * self.n_parameters())

    def icl(self, X) -> float:
        """Integrated completed likelihood (Biernacki et al. 2000) on the BIC scale:
        BIC − 2 Σ_n log r_{n,ẑ_n} with ẑ_n the MAP labels (lower is better)."""
        return self.bic(X) - 2.0 * self._total(X, "max_log_responsibility")

    def summary(self, title: str = "") -> str:
        """A readable plain-text summary: the prior, convergence, and per component its weight,
        mean, standard deviations (and the correlation when d = 2)."""
        names = self.feature_names or tuple(f"x{j}" for j in range(self.n_features))
        cov = self.covariance_matrices
        prior = "none (maximum likelihood)" if self.prior is None else (
            f"κ0={self.prior.shrinkage:g}, ν0={self.prior.dof:g}, "
            f"α={np.round(self.prior.concentration, 4).tolist()}")
        lines = [title] if title else []
        lines += [
            f"MAP-EM fit: K={self.n_components}, covariance_type={self.covariance_type!r}, "
            f"prior: {prior}",
            f"  converged={self.converged} after {self.n_iter} iterations",
            f"  log posterior = {self.log_posterior:.6f}   "
            f"log likelihood = {self.log_likelihood:.6f}",
        ]
        for k in range(self.n_components):
            sd = np.sqrt(np.diag(cov[k]))
            mean = ", ".join(f"{n}={m:.4g}" for n, m in zip(names, self.means[k]))
            lines.append(f"  component {k}: weight {self.weights[k]:.4f}; mean {mean}")
            corr = (f"; corr({names[0]}, {names[1]})={cov[k][0, 1] / (sd[0] * sd[1]):.3f}"
                    if self.n_features == 2 else "")
            lines.append("    sd " + ", ".join(f"{n}={s:.4g}" for n, s in zip(names, sd)) + corr)
        return "\n".join(lines)

    # ------------------------------------------------------------------ labelled form
    def to_xarray(self):
        """The parameters as an xarray Dataset with dims ``component``, ``feature`` and
        ``feature_bis`` (the second feature dim of covariance matrices)."""
        import xarray as xr

        K, d = self.n_components, self.n_features
        features = list(self.feature_names) if self.feature_names else [f"x{j}" for j in range(d)]
        cov_dims = get_structure(self.covariance_type).dims
        return xr.Dataset(
            {"weights": (("component",), np.array(self.weights)),
             "means": (("component", "feature"), np.array(self.means)),
             "covariances": (cov_dims, np.array(self.covariances))},
            coords={"component": np.arange(K), "feature": features, "feature_bis": features},
            attrs={"covariance_type": self.covariance_type, "log_posterior": self.log_posterior,
                   "log_likelihood": self.log_likelihood, "n_iter": self.n_iter,
                   "converged": int(self.converged)},
        )

    def to_dataset(self):
        """Everything :meth:`save` stores, as one xarray Dataset: :meth:`to_xarray`'s parameters
        plus ``history`` and the prior (``prior_mean``, ``prior_scale``, …) as variables, and the
        metadata as JSON in ``attrs["bayesgmm"]`` (:func:`load` reads it back)."""
        ds = self.to_xarray()
        meta, arrays = self._record()
        scale_dims = ("feature", "feature_bis")
        dims = {"history": ("iteration",), "prior_mean": ("feature",),
                "prior_scale": scale_dims[:np.ndim(arrays.get("prior_scale"))],
                "prior_concentration": ("component",)[:np.ndim(arrays.get("prior_concentration"))]}
        for name, value in arrays.items():
            if name not in ds:
                ds[name] = (dims.get(name, ()), value)
        ds.attrs["bayesgmm"] = json.dumps(meta)
        return ds

    # ------------------------------------------------------------------ storage
    def _record(self) -> tuple[dict, dict]:
        """(metadata, arrays): the fit in the two parts every storage format holds."""
        meta = {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _ARRAYS and f.name not in ("prior", "covariance_type")}
        meta["covariance"] = self.covariance_type  # the file format's key (version 1)
        meta["format"] = _FORMAT
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        if self.prior is not None:
            meta["prior_covariance"] = self.prior.covariance
            arrays.update({f"prior_{k}": np.asarray(getattr(self.prior, k), dtype=float)
                           for k in _PRIOR_FIELDS})
        return meta, arrays

    def to_dict(self) -> dict:
        """:meth:`to_dataset` in xarray's dict form, JSON-ready (``xarray.Dataset.from_dict``
        reads it back; so does :func:`load` from a ``.json`` file)."""
        return _jsonable(self.to_dataset().to_dict(data="list"))

    def save(self, path) -> Path:
        """Write the fit to ``path``, atomically, in the format its extension names.

        ``.nc`` (netCDF, :meth:`to_dataset`), ``.npz`` (numpy arrays plus JSON metadata) or
        ``.json`` (:meth:`to_dict`).  The file is written beside the target and renamed into
        place, so a failure (a full disk, an interrupt) leaves any earlier file intact.  A
        ``.nc`` file carries a SHA-256 of its contents after its end (netCDF readers ignore it)
        and ``.npz`` members their zip CRC-32, so :func:`load` names a damaged file as such.
        :func:`load` reads all three; none is pickled.

        Returns
        -------
        Path
        """
        path = Path(path)
        encode = _ENCODERS.get(path.suffix.lower())
        if encode is None:
            raise ValueError(f"cannot save a fit as {str(path)!r}: unknown extension "
                             f"{path.suffix!r}; use one of {', '.join(FIT_SUFFIXES)}")
        return atomic_write(path, encode(self))


#: per-row reductions of the joint log densities log π_k N(x_n | μ_k, Σ_k), (rows, K)
_ROW_REDUCTIONS = {
    "score_samples": lambda lp: logsumexp(lp, axis=1),
    "predict_proba": lambda lp: np.exp(lp - logsumexp(lp, axis=1, keepdims=True)),
    "predict": lambda lp: np.argmax(lp, axis=1),
    "max_log_responsibility": lambda lp: (lp - logsumexp(lp, axis=1, keepdims=True)).max(axis=1),
}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _npz_bytes(fit: MixtureFit) -> bytes:
    meta, arrays = fit._record()
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    return buffer.getvalue()


_ENCODERS = {".nc": lambda fit: seal(netcdf_bytes(fit.to_dataset())), ".npz": _npz_bytes,
             ".json": lambda fit: json.dumps(fit.to_dict(), indent=1) + "\n"}


# ----------------------------------------------------------------------------- reading
def _from_dataset(ds) -> tuple[dict, dict]:
    meta = json.loads(ds.attrs["bayesgmm"])
    return meta, {name: ds[name].values for name in ds.data_vars}


def _decode_nc(raw: bytes):
    import xarray as xr

    with xr.open_dataset(io.BytesIO(unseal(raw)), engine="h5netcdf") as ds:
        return _from_dataset(ds.load())


def _decode_json(raw: bytes):
    import xarray as xr

    return _from_dataset(xr.Dataset.from_dict(json.loads(raw.decode("utf-8"))))


def _decode_npz(raw: bytes):
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays


_DECODERS = {".nc": _decode_nc, ".npz": _decode_npz, ".json": _decode_json}
_META = {"covariance", "log_likelihood", "log_posterior", "n_iter", "converged", "n_samples",
         "feature_names"}


def _real_number(meta: dict, key: str, positive: bool = False) -> float:
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{key} must be positive, got {value!r}")
    return float(value)


def _numeric(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or infinite entries")
    return arr


def _fit_from_record(meta: dict, arrays: dict) -> MixtureFit:
    """Validate a stored record completely, then build the fit from it."""
    if not isinstance(meta, dict):
        raise ValueError("its metadata is not a JSON object")
    meta = dict(meta)
    fmt = meta.pop("format", None)
    if not isinstance(fmt, str) or not fmt.startswith(_FORMAT_NAME + "/"):
        raise ValueError("it is not a saved bayesgmm MixtureFit (no format marker)")
    version = fmt.rpartition("/")[2]
    if version != _FORMAT_VERSION:
        raise ValueError(f"it has format version {version!r}, and this bayesgmm reads version "
                         f"{_FORMAT_VERSION}")
    has_prior = "prior_covariance" in meta
    expected_meta = _META | ({"prior_covariance"} if has_prior else set())
    expected_arrays = set(_ARRAYS) | ({f"prior_{k}" for k in _PRIOR_FIELDS} if has_prior
                                      else set())
    for what, got, expected in (("metadata", set(meta), expected_meta),
                                ("arrays", set(arrays), expected_arrays)):
        missing, unknown = sorted(expected - got), sorted(got - expected)
        if missing or unknown:
            raise ValueError(f"its {what} do not match the format: missing {missing}, "
                             f"unexpected {unknown}")
    covariance = meta["covariance"]
    if covariance not in STRUCTURES:
        raise ValueError(f"covariance {covariance!r} is not a covariance structure")
    n_iter, converged = meta["n_iter"], meta["converged"]
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ValueError(f"n_iter must be an integer ≥ 0, got {n_iter!r}")
    if not isinstance(converged, bool):
        raise ValueError(f"converged must be true or false, got {converged!r}")
    log_likelihood = _real_number(meta, "log_likelihood")
    log_posterior = _real_number(meta, "log_posterior")
    n_samples = _real_number(meta, "n_samples", positive=True)
    values = {name: _numeric(name, arrays[name]) for name in _ARRAYS}
    weights, means, history = values["weights"], values["means"], values["history"]
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {weights.shape}")
    K = weights.size
    if means.ndim != 2 or means.shape[0] != K or means.shape[1] == 0:
        raise ValueError(f"means must have shape (K, d) = ({K}, d), got {means.shape}")
    d = means.shape[1]
    if np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-9:
        raise ValueError(f"weights must be non-negative and sum to 1, got sum {weights.sum():.6g}")
    check_covariances(get_structure(covariance), values["covariances"], K, d, "covariances")
    if history.ndim != 1 or not 1 <= history.size <= n_iter + 1:
        raise ValueError(f"history must have between 1 and n_iter + 1 = {n_iter + 1} entries, "
                         f"got shape {history.shape}")
    if history[-1] != log_posterior:
        raise ValueError(f"log_posterior {log_posterior!r} is not the last history entry "
                         f"{history[-1]!r}")
    names = meta["feature_names"]
    if names is not None and (not isinstance(names, list) or len(names) != d
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError(f"feature_names must be null or a list of {d} strings, got {names!r}")
    prior = None
    if has_prior:
        fields_ = {k: _numeric(f"prior_{k}", arrays[f"prior_{k}"]) for k in _PRIOR_FIELDS}
        fields_ = {k: (float(v) if v.ndim == 0 and k != "scale" else v) for k, v in fields_.items()}
        try:
            prior = GMMPrior(**fields_, covariance=meta["prior_covariance"])
            prior.check_compatible(K, d, covariance)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"its prior is invalid: {exc}") from None
    return MixtureFit(**values, covariance_type=covariance, prior=prior,
                      log_likelihood=log_likelihood, log_posterior=log_posterior,
                      n_iter=n_iter, converged=converged, n_samples=n_samples,
                      feature_names=names)


def parameter_entries(name: str, da):
    """(label, coords) for each scalar entry of a labelled parameter, e.g.
    ("means[0, waiting]", {"component": 0, "feature": 1}); covariance matrices give their upper
    triangle only.  Dims ``chain``, ``draw`` and ``stat`` are not entries."""
    dims = [d for d in da.dims if d not in ("chain", "draw", "stat")]
    for idx in np.ndindex(*[da.sizes[d] for d in dims]):
        coords = dict(zip(dims, idx))
        if "feature_bis" in coords and coords["feature_bis"] < coords["feature"]:
            continue
        parts = ", ".join(str(da[d].values[i]) for d, i in coords.items())
        yield (f"{name}[{parts}]" if dims else name), coords  # a scalar (EII) as ArviZ names it


def load(path) -> MixtureFit:
    """Read a fit written by :meth:`MixtureFit.save` (``.nc``, ``.npz`` or ``.json``).

    Everything is validated before the fit is built — the format and its version, the keys,
    shapes, dtypes and finiteness of every array, weights on the simplex, positive-definite
    covariances, a valid prior — and nothing is unpickled.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    MixtureFit

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        For any other problem, naming the file and the problem.

    Examples
    --------
    >>> import tempfile, pathlib, bayesgmm as bg
    >>> fit = bg.fit_map(bg.load_dataset("faithful"), 2, random_state=0)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.nc"
    >>> same = bg.load(fit.save(path))
    >>> bool((same.means == fit.means).all())
    True
    """
    path = Path(path)
    decode = _DECODERS.get(path.suffix.lower())
    if decode is None:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; bayesgmm fit files end in "
                         f"{', '.join(FIT_SUFFIXES)}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"fit file {str(path)!r} not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        meta, arrays = decode(raw)
    except DamagedFileError as exc:
        raise ValueError(f"{path} {exc}") from None
    except Exception as exc:  # every reader's own error: truncated, foreign, corrupted
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ValueError(f"{path} is not a readable bayesgmm fit file ({type(exc).__name__}: "
                         f"{reason})") from None
    try:
        return _fit_from_record(meta, arrays)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path} is not a valid bayesgmm fit: {exc}") from None
