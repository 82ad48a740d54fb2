"""The immutable result of a MAP-EM fit, its predictions, criteria, labelled form and storage."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from ._validation import check_data, check_positive_int, readonly_array
from .covariance import get_structure
from .em import MixtureParams, log_prob_chunks
from .priors import GMMPrior

__all__ = ["MixtureFit", "load", "parameter_entries"]

_FORMAT = "bayesgmm.MixtureFit/1"
_ARRAYS = ("weights", "means", "covariances", "history")
_PRIOR_FIELDS = ("mean", "shrinkage", "dof", "scale", "concentration")


@dataclass(frozen=True, eq=False)
class MixtureFit:
    """A fitted Gaussian mixture (MAP-EM, or maximum likelihood when ``prior`` is None).

    Attributes
    ----------
    weights : ndarray, shape (K,)
    means : ndarray, shape (K, d)
    covariances : ndarray
        (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical.
    covariance : str
        The structure.
    prior : GMMPrior or None
    log_likelihood : float
        log p(X | θ̂) (sample-weighted if weights were given).
    log_posterior : float
        log p(X | θ̂) + log p(θ̂), both normalised; equals ``log_likelihood`` without a prior.
    history : ndarray, shape (n_iter + 1,)
        The log posterior at the start and after every M-step; never decreasing.
    n_iter : int
        M-steps taken.
    converged : bool
    n_samples : float
        N (or the sum of sample weights).
    feature_names : tuple of str or None
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance: str
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
        return np.array(get_structure(self.covariance).expand(
            self.covariances, self.n_components, self.n_features))

    def n_parameters(self) -> int:
        """Free parameters: (K − 1) weights, K·d means and the structure's covariance entries."""
        K, d = self.n_components, self.n_features
        return K - 1 + K * d + get_structure(self.covariance).n_parameters(K, d)

    # ------------------------------------------------------------------ prediction
    def _log_prob(self, X) -> np.ndarray:
        X = check_data(X, n_features=self.n_features)
        return log_prob_chunks(X, self.params, self.covariance)

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n | θ̂) per row, shape (n_samples,)."""
        return logsumexp(self._log_prob(X), axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities r_nk, shape (n_samples, K)."""
        log_prob = self._log_prob(X)
        return np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))

    def predict(self, X) -> np.ndarray:
        """Most probable component per row, shape (n_samples,)."""
        return np.argmax(self._log_prob(X), axis=1)

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
    def bic(self, X) -> float:
        """Bayesian information criterion −2 log L + p log N (lower is better, as scikit-learn;
        mclust reports the negative)."""
        X = check_data(X, n_features=self.n_features)
        return float(-2.0 * self.score_samples(X).sum() + self.n_parameters() * np.log(len(X)))

    def aic(self, X) -> float:
        """Akaike information criterion −2 log L + 2p (lower is better)."""
        return float(-2.0 * self.score_samples(X).sum() + 2.0 * self.n_parameters())

    def icl(self, X) -> float:
        """Integrated completed likelihood (Biernacki et al. 2000) on the BIC scale:
        BIC − 2 Σ_n log r_{n,ẑ_n} with ẑ_n the MAP labels (lower is better)."""
        log_prob = self._log_prob(X)
        log_resp = log_prob - logsumexp(log_prob, axis=1, keepdims=True)
        return self.bic(X) - 2.0 * float(log_resp.max(axis=1).sum())

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
            f"MAP-EM fit: K={self.n_components}, covariance={self.covariance!r}, prior: {prior}",
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
        cov_dims = get_structure(self.covariance).dims
        return xr.Dataset(
            {"weights": (("component",), np.array(self.weights)),
             "means": (("component", "feature"), np.array(self.means)),
             "covariances": (cov_dims, np.array(self.covariances))},
            coords={"component": np.arange(K), "feature": features, "feature_bis": features},
            attrs={"covariance": self.covariance, "log_posterior": self.log_posterior,
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
                if f.name not in _ARRAYS and f.name != "prior"}
        meta["format"] = _FORMAT
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        if self.prior is not None:
            meta["prior_covariance"] = self.prior.covariance
            arrays.update({f"prior_{k}": np.asarray(getattr(self.prior, k), dtype=float)
                           for k in _PRIOR_FIELDS})
        return meta, arrays

    def save(self, path) -> Path:
        """Write to ``path``: a netCDF file (``.nc``, :meth:`to_dataset`) or else ``.npz``
        (arrays plus JSON metadata).  :func:`load` reads both; neither unpickles."""
        path = Path(path)
        if path.suffix == ".nc":
            self.to_dataset().to_netcdf(path)
            return path
        meta, arrays = self._record()
        with open(path, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return path


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
        yield f"{name}[{parts}]", coords


def load(path) -> MixtureFit:
    """Read a :class:`MixtureFit` written by :meth:`MixtureFit.save` (``.npz`` or ``.nc``)."""
    path = Path(path)
    if path.suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path) as ds:
            meta = json.loads(ds.attrs.get("bayesgmm", "{}"))
            arrays = {name: ds[name].values for name in ds.data_vars}
    else:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            arrays = {name: data[name] for name in data.files}
    if meta.pop("format", None) != _FORMAT:
        raise ValueError(f"{path} is not a saved bayesgmm MixtureFit")
    prior = None
    if "prior_covariance" in meta:
        values = {k: arrays[f"prior_{k}"] for k in _PRIOR_FIELDS}
        values = {k: (float(v) if v.ndim == 0 and k != "scale" else v) for k, v in values.items()}
        prior = GMMPrior(**values, covariance=meta.pop("prior_covariance"))
    return MixtureFit(**{name: arrays[name] for name in _ARRAYS}, **meta, prior=prior)
