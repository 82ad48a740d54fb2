"""Covariances constrained by volume, shape and orientation (Celeux & Govaert 1995).

mclust writes Σ_k = λ_k D_k A_k D_kᵀ — volume λ_k = det(Σ_k)^(1/d), shape A_k diagonal with
det A_k = 1, orientation D_k orthogonal — and names a model by three letters saying whether each
is Equal across components, Variable, or the Identity.  The models whose constraints couple the
components beyond what the compiled kernels pool are here: VEI and EVI (diagonal, D = I) and EEV,
VEV, EVV, VEE, EVE, VVE.

Their M-step (``docs/derivation.md`` §4b) minimises, over the constrained set,

    Σ_k [ c_k log det Σ_k + tr(M_k Σ_k⁻¹) ]                                               (4b.1)

with M_k = Ψ0 + B_k and c_k = ω N_k + ν0 + b + 1 + δ under the prior (the unconstrained
per-component M-step Σ_k = M_k / c_k of the ``full`` or ``diag`` kernel, eq. 4.4), or M_k = W_k and
c_k = N_k without it — so one routine per model serves ML and MAP.  Closed forms where they exist
(EVI, EEV, EVV); block-coordinate alternations otherwise — volumes and shape (VEI, VEV, VEE),
or a shared orientation by exact Jacobi plane rotations and its diagonals (EVE, VVE; mclust uses
the slower MM update of Browne & McNicholas 2014) — each decreasing (4b.1) monotonically and
stopped on the change of the parameters, not of the (flat) objective.  The alternations take
hundreds of cheap steps per M-step, so they run compiled (:mod:`bayesgmm._kernels`).

Covariances are stored as the structure's matrices Σ_k (K, d, d) — or variances (K, d) when
D = I — so every other part of the package treats them like ``full`` or ``diag``;
:func:`to_unconstrained` gives the model's own free parameters (their count is mclust's
``nMclustParams``).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm, logm

__all__ = ["MODELS", "DIAGONAL_MODELS", "n_covariance_parameters", "constrained_mstep",
           "to_unconstrained", "from_unconstrained", "INNER_TOL", "INNER_MAX_ITER"]

#: models stored as variances (K, d) (orientation I) and as matrices (K, d, d)
DIAGONAL_MODELS = ("VEI", "EVI")
MODELS = DIAGONAL_MODELS + ("EEV", "VEV", "EVV", "VEE", "EVE", "VVE")
#: inner iterations stop when no parameter moves by more than this (relative) …
INNER_TOL = 1e-13
#: … or after this many steps (never reached on the test problems; the outer EM continues
#: from where the inner loop stopped, so the objective still never decreases)
INNER_MAX_ITER = 10_000


def n_covariance_parameters(model: str, K: int, d: int) -> int:
    """Free covariance parameters, as mclust's ``nMclustParams`` counts them."""
    volume, shape, orientation = model
    count = {"E": 1, "V": K}[volume]
    count += {"E": d - 1, "V": K * (d - 1), "I": 0}[shape]
    count += {"E": 1, "V": K, "I": 0}[orientation] * (d * (d - 1) // 2)
    return count


def _geometric_mean(values: np.ndarray) -> np.ndarray:
    return np.exp(np.mean(np.log(values), axis=-1))


def _volume(S: np.ndarray) -> np.ndarray:
    """det(S)^(1/d) of each matrix: λ_k of covariances, g(·) of scatters."""
    return np.exp(np.linalg.slogdet(S)[1] / S.shape[-1])


def _projected(D: np.ndarray, M: np.ndarray) -> np.ndarray:
    """diag(Dᵀ M_k D) for every k, shape (K, d)."""
    return np.einsum("ji,kjl,li->ki", D, M, D)


# ----------------------------------------------------------------------------- the M-steps
def constrained_mstep(model: str, M: np.ndarray, c: np.ndarray, previous: np.ndarray):
    """Minimise (4b.1) over the model's set.

    Parameters
    ----------
    model : one of :data:`MODELS`
    M : (K, d) diagonal scatters (VEI, EVI) or (K, d, d) scatter matrices, prior included
    c : (K,) counts c_k > 0
    previous : covariances in the same layout, the iteration's warm start

    Returns
    -------
    covariances : the layout of ``M``
    """
    return _symmetric(_MSTEPS[model](np.asarray(M, dtype=float), np.asarray(c, dtype=float),
                                     np.asarray(previous, dtype=float)))


def _symmetric(covariances: np.ndarray) -> np.ndarray:
    """Matrices exactly symmetric (products D Λ Dᵀ are so only to rounding); variances as is."""
    if covariances.ndim < 3:
        return covariances
    return 0.5 * (covariances + np.swapaxes(covariances, -1, -2))


def _evi(m, c, previous):
    """λ A_k:  A_k = m_k / g(m_k),  λ = Σ_k g(m_k) / Σ_k c_k  (g: geometric mean)."""
    g = _geometric_mean(m)
    return (g.sum() / c.sum()) * (m / g[:, None])


def _volumes(kernel, statistics, c, lam):
    """The volumes λ_k of the λ_k·(shared part) models by block-coordinate descent on (4b.1):
    given λ the shared part's minimiser — a shape A ∝ Σ_k w_k / λ_k of diagonal statistics
    (VEI, VEV) or C ∝ Σ_k M_k / λ_k (VEE), of determinant 1 — and given it
    λ_k = tr(M_k · shared part⁻¹) / (d c_k).  Each half-step minimises (4b.1) exactly, so it
    never rises; stopped when no λ_k moves by more than :data:`INNER_TOL`.  Compiled
    (``_kernels.shared_shape_volumes`` / ``shared_matrix_volumes``): the loop takes hundreds of
    cheap steps per M-step, ~25–40 µs each in NumPy.  Returns (λ, the shared part)."""
    from . import _kernels

    return getattr(_kernels, kernel)(np.ascontiguousarray(statistics), np.ascontiguousarray(c),
                                     np.ascontiguousarray(lam), INNER_TOL, INNER_MAX_ITER)


def _vei(m, c, previous):
    """λ_k A: volumes and A ∝ Σ_k m_k / λ_k alternated (:func:`_volumes`)."""
    lam, shape = _volumes("shared_shape_volumes", m, c, _geometric_mean(previous))
    return lam[:, None] * shape


def _eigh_descending(S):
    values, vectors = np.linalg.eigh(S)
    return values[..., ::-1], vectors[..., ::-1]


def _evv(M, c, previous):
    """λ C_k:  C_k = M_k / det(M_k)^(1/d),  λ = Σ_k det(M_k)^(1/d) / Σ_k c_k."""
    g = _volume(M)
    return (g.sum() / c.sum()) * M / g[:, None, None]


def _with_orientations(Q, diagonals):
    """Q_k diag(diagonals_k) Q_kᵀ for every k, shape (K, d, d)."""
    return np.einsum("kij,kj,klj->kil", Q, diagonals, Q)


def _eev(M, c, previous):
    """λ D_k A D_kᵀ:  D_k the eigenvectors of M_k, Ω = Σ_k eigenvalues (descending),
    A = Ω / g(Ω), λ = g(Ω) / Σ_k c_k."""
    omega, Q = _eigh_descending(M)
    total = omega.sum(0)
    g = _geometric_mean(total)
    return _with_orientations(Q, np.broadcast_to(total / g, omega.shape)) * (g / c.sum())


def _vev(M, c, previous):
    """λ_k D_k A D_kᵀ:  D_k the eigenvectors of M_k; volumes and A as VEI on the eigenvalues."""
    omega, Q = _eigh_descending(M)
    lam, shape = _volumes("shared_shape_volumes", omega, c, _volume(previous))
    return _with_orientations(Q, lam[:, None] * shape)


def _vee(M, c, previous):
    """λ_k C (det C = 1): volumes by :func:`_volumes`, C ∝ Σ_k M_k / λ_k."""
    lam, C = _volumes("shared_matrix_volumes", M, c, _volume(previous))
    return lam[:, None, None] * C


def _shared_orientation(M, c, previous, equal_volume: bool):
    """EVE (``equal_volume``) and VVE: Jacobi sweeps of the shared orientation alternated with
    its closed-form diagonals, from the previous orientation, until neither moves — compiled
    (``_kernels.shared_orientation``).  For a pair of columns (i, j) the rotation by θ that
    minimises Σ_k tr(M_k D Λ_k⁻¹ Dᵀ) is exact: in θ that sum is const + P cos 2θ + Q sin 2θ
    with P = Σ_k (u_k − v_k)(a_k − b_k)/2 and Q = Σ_k (u_k − v_k) e_k (u, v: Λ_k⁻¹'s entries
    i, j; a, b, e: d_iᵀM_k d_i, d_jᵀM_k d_j, d_iᵀM_k d_j), least at 2θ = atan2(−Q, −P)
    (Flury & Gautschi 1986).  Given D the diagonals are EVE's λ A_k (as EVI on
    diag(Dᵀ M_k D)) or VVE's diag(Dᵀ M_k D) / c_k."""
    from ._kernels import shared_orientation

    _, D = _eigh_descending(previous[0])
    D, diagonals = shared_orientation(np.ascontiguousarray(M), np.ascontiguousarray(c),
                                      np.ascontiguousarray(D), equal_volume, INNER_TOL,
                                      INNER_MAX_ITER)
    return _with_orientations(np.broadcast_to(D, M.shape), diagonals)


_MSTEPS = {
    "EVI": _evi, "VEI": _vei, "EVV": _evv, "EEV": _eev, "VEV": _vev, "VEE": _vee,
    "EVE": lambda M, c, prev: _shared_orientation(M, c, prev, equal_volume=True),
    "VVE": lambda M, c, prev: _shared_orientation(M, c, prev, equal_volume=False),
}


# ----------------------------------------------------------------------------- parametrisation
def _canonical_orientation(Q: np.ndarray) -> np.ndarray:
    """Eigenvector signs fixed: each column's largest entry positive, then the last column
    flipped if needed so that det = +1 (a rotation, the image of exp on skew matrices)."""
    Q = np.array(Q, dtype=float)
    rows = np.argmax(np.abs(Q), axis=-2)
    signs = np.sign(np.take_along_axis(Q, rows[..., None, :], axis=-2))
    Q = Q * signs
    flip = np.linalg.det(Q) < 0
    Q[flip, :, -1] *= -1
    return Q


def _skew_entries(D: np.ndarray) -> np.ndarray:
    d = D.shape[-1]
    rows, cols = np.tril_indices(d, k=-1)
    return np.real(logm(D))[rows, cols]


def _rotation(entries: np.ndarray, d: int) -> np.ndarray:
    rows, cols = np.tril_indices(d, k=-1)
    S = np.zeros((d, d))
    S[rows, cols] = entries
    return expm(S - S.T)


def _split(model, K, d, matrices):
    """(λ (K,), shapes (K, d), orientations (K, d, d)) of covariances, canonically."""
    if model in DIAGONAL_MODELS:
        lam = _geometric_mean(matrices)
        return lam, matrices / lam[:, None], np.broadcast_to(np.eye(d), (K, d, d))
    values, vectors = _eigh_descending(matrices)
    lam = _geometric_mean(values)
    if model[2] == "E":  # one orientation: component 0's eigenvectors, in its order
        D = _canonical_orientation(vectors[0])
        values = _projected(D, matrices)
        return lam, values / lam[:, None], np.broadcast_to(D, (K, d, d))
    return lam, values / lam[:, None], _canonical_orientation(vectors)


def to_unconstrained(model: str, covariances: np.ndarray) -> np.ndarray:
    """The model's free parameters: log volumes, log shapes (the last of each shape is implied
    by det A = 1) and the lower entries of log D (a skew matrix), Equal ones once."""
    covariances = np.asarray(covariances, dtype=float)
    K, d = covariances.shape[0], covariances.shape[-1]
    lam, shapes, D = _split(model, K, d, covariances)
    volume, shape, orientation = model
    parts = [np.log(lam[:1] if volume == "E" else lam)]
    if shape != "I":
        parts.append(np.log(shapes[:1] if shape == "E" else shapes)[:, :-1].ravel())
    if orientation != "I":
        parts += [_skew_entries(D[k]) for k in range(1 if orientation == "E" else K)]
    return np.concatenate(parts)


def from_unconstrained(model: str, z: np.ndarray, K: int, d: int) -> np.ndarray:
    """Covariances in the model's layout from :func:`to_unconstrained`'s vector."""
    z = np.asarray(z, dtype=float)
    volume, shape, orientation = model
    n_vol = 1 if volume == "E" else K
    lam = np.broadcast_to(np.exp(z[:n_vol]), (K,))
    at = n_vol
    n_shape = {"E": 1, "V": K, "I": 0}[shape]
    log_shapes = z[at:at + n_shape * (d - 1)].reshape(n_shape, d - 1)
    at += n_shape * (d - 1)
    full = np.concatenate([log_shapes, -log_shapes.sum(1, keepdims=True)], axis=1)
    shapes = np.broadcast_to(np.exp(full), (K, d)) if n_shape else np.ones((K, d))
    diagonals = lam[:, None] * shapes
    if orientation == "I":
        return np.array(diagonals)
    per = d * (d - 1) // 2
    n_orient = 1 if orientation == "E" else K
    D = np.stack([_rotation(z[at + i * per: at + (i + 1) * per], d) for i in range(n_orient)])
    D = np.broadcast_to(D, (K, d, d))
    return _symmetric(_with_orientations(D, diagonals))
