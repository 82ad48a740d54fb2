"""Compiled kernels of MAP-EM (Numba, compiled on first use and cached on disk).

Two kernel families serve every covariance structure (the table's ``kernel`` field):

* ``dense``: per-component inverse Cholesky factors U_k = L_k⁻¹ (K, d, d).  Whitening a chunk is
  a GEMM, y = (z − μ_k) U_kᵀ (DESIGN §3 allows the triangular inverse; never Σ⁻¹ itself), and the
  moments Σ r y yᵀ are another GEMM on √r-scaled rows of the same block.
* ``diagonal``: per-component variances (K, d); whitening is elementwise.

Each E-pass reads X in row chunks (the working set stays near the cache), maps every chunk to
working coordinates z = (x − c) · (1/s) as it goes, and returns the log-likelihood and the
whitened sufficient statistics (eq. 3.1–3.3) — no (N, K) array.  The M-step of the
inverse-Wishart-block structures (eq. 4.1–4.4), the factorisation of the new covariances and the
log prior (4.0) are compiled too, so a small fit spends its time in arithmetic, not in Python.
Floating-point semantics are IEEE (no ``fastmath``).  Equations are numbered as in
``docs/derivation.md``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["estep_dense", "estep_diagonal", "mstep_dense", "mstep_diagonal", "factor_dense",
           "factor_diagonal", "log_prior_dense", "log_prior_diagonal"]

_LOG_2PI = math.log(2.0 * math.pi)
_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")


# ============================================================================ linear algebra
@njit(**_JIT)
def _cholesky(A, L):
    """Lower Cholesky factor of the d × d matrix A into L; False if A is not positive definite."""
    d = A.shape[0]
    for j in range(d):
        s = A[j, j]
        for p in range(j):
            s -= L[j, p] * L[j, p]
        if not s > 0.0:
            return False
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, d):
            t = A[i, j]
            for p in range(j):
                t -= L[i, p] * L[j, p]
            L[i, j] = t / L[j, j]
        for i in range(j):
            L[i, j] = 0.0
    return True


@njit(**_JIT)
def _lower_inverse(L, U):
    """U = L⁻¹ for lower-triangular L, by forward substitution (backward stable)."""
    d = L.shape[0]
    for j in range(d):
        for i in range(j):
            U[i, j] = 0.0
        U[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, d):
            s = 0.0
            for p in range(j, i):
                s -= L[i, p] * U[p, j]
            U[i, j] = s / L[i, i]


@njit(**_JIT)
def factor_dense(covs):
    """Cholesky factors L (K, d, d), their inverses U and log det Σ_k (K,); ``bad`` is the first
    component that is not positive definite (−1 when all are)."""
    K, d = covs.shape[0], covs.shape[1]
    L = np.zeros((K, d, d))
    U = np.zeros((K, d, d))
    log_det = np.zeros(K)
    for k in range(K):
        if not _cholesky(covs[k], L[k]):
            return L, U, log_det, k
        _lower_inverse(L[k], U[k])
        s = 0.0
        for j in range(d):
            s += math.log(L[k, j, j])
        log_det[k] = 2.0 * s
    return L, U, log_det, -1


@njit(**_JIT)
def factor_diagonal(variances):
    """Standard deviations (K, d), their inverses and log det Σ_k; ``bad`` as :func:`factor_dense`."""
    K, d = variances.shape
    sd = np.zeros((K, d))
    inv_sd = np.zeros((K, d))
    log_det = np.zeros(K)
    for k in range(K):
        s = 0.0
        for j in range(d):
            v = variances[k, j]
            if not (v > 0.0 and v < np.inf):
                return sd, inv_sd, log_det, k
            sd[k, j] = math.sqrt(v)
            inv_sd[k, j] = 1.0 / sd[k, j]
            s += math.log(v)
        log_det[k] = s
    return sd, inv_sd, log_det, -1


# ============================================================================ the E-pass
@njit(**_JIT)
def _responsibilities(LP, n, w, row0, has_w):
    """Rows 0:n of LP (n, K) hold log π_k N(z | μ_k, Σ_k) (eq. 1.3); overwrite them with w_n r_nk
    (eq. 3.0) and return Σ_n w_n log p(z_n) (eq. 1.2, log-sum-exp)."""
    K = LP.shape[1]
    ll = 0.0
    for r in range(n):
        top = LP[r, 0]
        for k in range(1, K):
            if LP[r, k] > top:
                top = LP[r, k]
        total = 0.0
        for k in range(K):
            e = math.exp(LP[r, k] - top)
            LP[r, k] = e
            total += e
        wr = w[row0 + r] if has_w else 1.0
        ll += wr * (top + math.log(total))
        scale = wr / total
        for k in range(K):
            LP[r, k] *= scale
    return ll


@njit(**_JIT)
def _given_responsibilities(LP, n, w, row0, has_w, resp):
    """Rows 0:n of LP ← w_n r_nk from given responsibilities (the M-step-first start)."""
    K = LP.shape[1]
    for r in range(n):
        wr = w[row0 + r] if has_w else 1.0
        for k in range(K):
            LP[r, k] = wr * resp[row0 + r, k]
    return 0.0


@njit(**_JIT)
def _working_chunk(X, i, n, center, inv_scale, Z):
    d = X.shape[1]
    for r in range(n):
        for j in range(d):
            Z[r, j] = (X[i + r, j] - center[j]) * inv_scale


@njit(**_JIT)
def estep_dense(X, a, b, center, inv_scale, w, means, U, offset, rows, log_prob_out, resp):
    """One fused E-pass over rows a:b of X for dense factors (working coordinates).

    Parameters
    ----------
    X : (N, d) data;  center (d,), inv_scale: the working coordinates z = (x − c)·inv_scale
    w : (N,) sample weights divided by the weight scale, or an empty array (no weights)
    means : (K, d);  U : (K, d, d) lower inverse Cholesky factors;  offset : (K,)
        log π_k − ½ (d log 2π + log det Σ_k)
    rows : rows per chunk
    log_prob_out : (b − a, K) to receive log π_k N(z_n | μ_k, Σ_k), or an empty (0, K) array
    resp : (N, K) responsibilities to use instead of the E-step's (then ll = 0), or empty

    Returns
    -------
    ll, n_k (K,), s1 (K, d) = Σ w r y, M (K, d, d) = Σ w r y yᵀ with y = U_k (z − μ_k)
    """
    d, K = X.shape[1], means.shape[0]
    has_w = w.shape[0] > 0
    want_stats = log_prob_out.shape[0] == 0
    given = resp.shape[0] > 0
    rows = max(1, min(rows, b - a))
    Z = np.empty((rows, d))
    Y = np.empty((K, rows, d))
    LP = np.empty((rows, K))
    UT = np.empty((K, d, d))
    shift = np.zeros((K, d))
    for k in range(K):
        UT[k] = U[k].T
        for i in range(d):
            for j in range(d):
                shift[k, i] += U[k, i, j] * means[k, j]  # U_k μ_k
    tmp = np.empty((d, d))
    ll = 0.0
    n_k = np.zeros(K)
    s1 = np.zeros((K, d))
    M = np.zeros((K, d, d))
    for i in range(a, b, rows):
        n = min(rows, b - i)
        _working_chunk(X, i, n, center, inv_scale, Z)
        for k in range(K):
            Yk = Y[k, :n]
            np.dot(Z[:n], UT[k], Yk)  # y = U_k z − U_k μ_k: one GEMM per component
            for r in range(n):
                q = 0.0
                for j in range(d):
                    y = Yk[r, j] - shift[k, j]
                    Yk[r, j] = y
                    q += y * y
                LP[r, k] = offset[k] - 0.5 * q
        if not want_stats:
            for r in range(n):
                for k in range(K):
                    log_prob_out[i - a + r, k] = LP[r, k]
            continue
        if given:
            _given_responsibilities(LP, n, w, i, has_w, resp)
        else:
            ll += _responsibilities(LP, n, w, i, has_w)
        for k in range(K):
            Yk = Y[k, :n]
            nk = 0.0
            for r in range(n):
                wr = LP[r, k]
                nk += wr
                root = math.sqrt(wr)
                for j in range(d):
                    s1[k, j] += wr * Yk[r, j]
                    Yk[r, j] *= root
            n_k[k] += nk
            np.dot(Yk.T, Yk, tmp)  # Σ w r y yᵀ as a GEMM on √(w r)-scaled rows (eq. 3.3)
            M[k] += tmp
    return ll, n_k, s1, M


@njit(**_JIT)
def estep_diagonal(X, a, b, center, inv_scale, w, means, inv_sd, offset, rows, log_prob_out,
                   resp):
    """:func:`estep_dense` for diagonal covariances: ``inv_sd`` (K, d) are 1/σ_kj.

    Returns
    -------
    ll, n_k (K,), s1 (K, d) = Σ w r y, m2 (K, d) = Σ w r y² with y_j = (z_j − μ_kj) / σ_kj
    """
    d, K = X.shape[1], means.shape[0]
    has_w = w.shape[0] > 0
    want_stats = log_prob_out.shape[0] == 0
    given = resp.shape[0] > 0
    rows = max(1, min(rows, b - a))
    Z = np.empty((rows, d))
    LP = np.empty((rows, K))
    ll = 0.0
    n_k = np.zeros(K)
    s1 = np.zeros((K, d))
    m2 = np.zeros((K, d))
    for i in range(a, b, rows):
        n = min(rows, b - i)
        _working_chunk(X, i, n, center, inv_scale, Z)
        for r in range(n):
            for k in range(K):
                q = 0.0
                for j in range(d):
                    y = (Z[r, j] - means[k, j]) * inv_sd[k, j]
                    q += y * y
                LP[r, k] = offset[k] - 0.5 * q
        if not want_stats:
            for r in range(n):
                for k in range(K):
                    log_prob_out[i - a + r, k] = LP[r, k]
            continue
        if given:
            _given_responsibilities(LP, n, w, i, has_w, resp)
        else:
            ll += _responsibilities(LP, n, w, i, has_w)
        for r in range(n):
            for k in range(K):
                wr = LP[r, k]
                n_k[k] += wr
                for j in range(d):
                    y = (Z[r, j] - means[k, j]) * inv_sd[k, j]
                    s1[k, j] += wr * y
                    m2[k, j] += wr * y * y
    return ll, n_k, s1, m2


# ============================================================================ the M-step
@njit(**_JIT)
def _weights_and_means(n_k, xbar, means_old, has_prior, alpha, kappa, m0):
    """π_k (eq. 2.6 / 4.1) and μ_k (eq. 2.7 / 4.2); the prior's constants grouped first."""
    K, d = xbar.shape
    total = n_k.sum()
    weights = np.empty(K)
    means = np.empty((K, d))
    if has_prior:
        denom = total + (alpha.sum() - K)
        for k in range(K):
            weights[k] = (n_k[k] + (alpha[k] - 1.0)) / denom
    else:
        for k in range(K):
            weights[k] = n_k[k] / total
    for k in range(K):
        for j in range(d):
            if has_prior and kappa > 0.0:
                means[k, j] = (n_k[k] * xbar[k, j] + kappa * m0[j]) / (n_k[k] + kappa)
            elif n_k[k] > 0.0:
                means[k, j] = xbar[k, j]
            else:  # a flat prior keeps an emptied component's mean
                means[k, j] = means_old[k, j]
    return weights, means


@njit(**_JIT)
def mstep_dense(n_k, s1, M, omega, means_old, L, has_prior, alpha, kappa, m0, nu, psi,
                shared):
    """The joint posterior mode (or ML estimate) for dense covariances (derivation §3–§4).

    ``n_k``, ``s1``, ``M`` are a pass's statistics with weights divided by ``omega``; ``L`` the
    Cholesky factors of the pass (K, d, d); ``psi`` (K, d, d) the prior scale per component
    (only ``psi[0]`` is read when ``shared``).  Returns weights (K,), means (K, d) and
    covariances (K, d, d) — all equal when ``shared``.
    """
    K, d = s1.shape
    xbar = np.empty((K, d))
    W = np.zeros((K, d, d))
    C = np.empty((d, d))
    LC = np.empty((d, d))
    ybar = np.zeros(d)
    for k in range(K):
        nk = n_k[k]
        for j in range(d):  # ȳ = s1 / N_k stays bounded even when N_k is subnormal
            ybar[j] = s1[k, j] / nk if nk > 0.0 else 0.0
        for i in range(d):
            t = 0.0
            for j in range(i + 1):
                t += L[k, i, j] * ybar[j]
            xbar[k, i] = means_old[k, i] + t  # x̄_k = μ_k + L_k s1_k / N_k         (eq. 3.2)
        for i in range(d):
            for j in range(d):
                C[i, j] = M[k, i, j] - s1[k, i] * ybar[j]
        # W_k = ω L_k (M_k − s1 s1ᵀ / N_k) L_kᵀ                                       (eq. 3.3)
        for i in range(d):
            for j in range(d):
                t = 0.0
                for p in range(i + 1):
                    t += L[k, i, p] * C[p, j]
                LC[i, j] = t
        for i in range(d):
            for j in range(i + 1):
                t = 0.0
                for p in range(j + 1):
                    t += LC[i, p] * L[k, j, p]
                W[k, i, j] = omega * t
                W[k, j, i] = omega * t
    n_w = omega * n_k
    weights, means = _weights_and_means(n_w, xbar, means_old, has_prior, alpha, kappa, m0)
    covs = np.empty((K, d, d))
    if has_prior and kappa > 0.0:  # B_k = W_k + κ N_k/(κ + N_k) (x̄_k − m0)(x̄_k − m0)ᵀ (eq. 4.3)
        for k in range(K):
            shrink = kappa * n_w[k] / (kappa + n_w[k])
            for i in range(d):
                for j in range(d):
                    W[k, i, j] += shrink * (xbar[k, i] - m0[i]) * (xbar[k, j] - m0[j])
    delta = 1.0 if (has_prior and kappa > 0.0) else 0.0
    if shared:
        total = np.zeros((d, d))
        for k in range(K):
            total += W[k]
        count = n_w.sum()
        if has_prior:  # Σ = (Ψ0 + Σ_k B_k) / (ν0 + N + d + 1 + K δ)            (eq. 4.4 tied)
            cov = (psi[0] + total) / (nu + count + d + 1 + K * delta)
        else:
            cov = total / count
        for k in range(K):
            covs[k] = cov
    else:
        for k in range(K):
            if has_prior:  # Σ_k = (Ψ0 + B_k) / (ν0 + N_k + d + 1 + δ)              (eq. 4.4 full)
                covs[k] = (psi[k] + W[k]) / (nu + n_w[k] + d + 1 + delta)
            else:
                covs[k] = W[k] / n_w[k]
    return weights, means, covs


@njit(**_JIT)
def mstep_diagonal(n_k, s1, m2, omega, means_old, sd, has_prior, alpha, kappa, m0, nu, psi,
                   shared, isotropic):
    """The mode for diagonal covariances (eq. 4.4 diag and spherical), in kernel layout (K, d).

    ``isotropic``: one variance per block over the d coordinates (spherical); ``shared``: one
    set of variances for all components.  ``psi`` (K, d) is the prior scale per variance.
    """
    K, d = s1.shape
    xbar = np.empty((K, d))
    W = np.empty((K, d))
    for k in range(K):
        nk = n_k[k]
        for j in range(d):
            ybar = s1[k, j] / nk if nk > 0.0 else 0.0  # bounded even for a subnormal N_k
            xbar[k, j] = means_old[k, j] + sd[k, j] * ybar
            W[k, j] = omega * sd[k, j] * sd[k, j] * (m2[k, j] - s1[k, j] * ybar)
    n_w = omega * n_k
    weights, means = _weights_and_means(n_w, xbar, means_old, has_prior, alpha, kappa, m0)
    if has_prior and kappa > 0.0:
        for k in range(K):
            shrink = kappa * n_w[k] / (kappa + n_w[k])
            for j in range(d):
                W[k, j] += shrink * (xbar[k, j] - m0[j]) ** 2
    delta = 1.0 if (has_prior and kappa > 0.0) else 0.0
    reps = d if isotropic else 1  # coordinates sharing one variance
    groups = K if shared else 1  # components sharing one variance
    variances = np.empty((K, d))
    for k in range(K):
        for j in range(d):
            B = 0.0
            count = 0.0
            for kk in range(K):
                if not (shared or kk == k):
                    continue
                count += n_w[kk] * reps
                for jj in range(d):
                    if isotropic or jj == j:
                        B += W[kk, jj]
            if has_prior:  # (ψ0 + B) / (ν0 + count + 2 + δ m)            (eq. 4.4 diag/sph.)
                variances[k, j] = (psi[k, j] + B) / (nu + count + 2 + delta * groups * reps)
            else:
                variances[k, j] = B / count
    return weights, means, variances


# ============================================================================ the log prior
@njit(**_JIT)
def _log_dirichlet(weights, alpha):
    K = weights.shape[0]
    total = 0.0
    lp = math.lgamma(alpha.sum())
    for k in range(K):
        lp -= math.lgamma(alpha[k])
        if alpha[k] != 1.0:
            if not weights[k] > 0.0:
                return -np.inf
            lp += (alpha[k] - 1.0) * math.log(weights[k])
        total += weights[k]
    if abs(total - 1.0) > 1e-10:
        return -np.inf
    return lp


@njit(**_JIT)
def _log_multigamma(a, b):
    out = b * (b - 1) / 4.0 * math.log(math.pi)
    for j in range(1, b + 1):
        out += math.lgamma(a + 0.5 * (1 - j))
    return out


@njit(**_JIT)
def log_prior_dense(weights, means, U, log_det, alpha, kappa, m0, nu, psi_chol, psi_log_det,
                    shared):
    """log p(θ) (eq. 4.0) from the inverse factors U_k: Dirichlet, inverse-Wishart blocks
    (tr(Ψ Σ⁻¹) = ‖U Lψ‖²_F) and the mean priors (κ0 (μ − m0)ᵀ Σ⁻¹ (μ − m0) = κ0 ‖U (μ − m0)‖²)."""
    K, d = means.shape
    lp = _log_dirichlet(weights, alpha)
    blocks = 1 if shared else K
    for k in range(blocks):
        trace = 0.0
        for i in range(d):
            for j in range(d):
                t = 0.0
                for p in range(j, i + 1):
                    t += U[k, i, p] * psi_chol[k, p, j]
                trace += t * t
        lp += (0.5 * nu * psi_log_det[k] - 0.5 * nu * d * math.log(2.0)
               - _log_multigamma(0.5 * nu, d) - 0.5 * (nu + d + 1) * log_det[k] - 0.5 * trace)
    if kappa > 0.0:
        for k in range(K):
            q = 0.0
            for i in range(d):
                t = 0.0
                for j in range(i + 1):
                    t += U[k, i, j] * (m0[j] - means[k, j])
                q += t * t
            lp += 0.5 * d * (math.log(kappa) - _LOG_2PI) - 0.5 * log_det[k] - 0.5 * kappa * q
    return lp


@njit(**_JIT)
def log_prior_diagonal(weights, means, variances, alpha, kappa, m0, nu, psi, shared,
                       isotropic):
    """log p(θ) for diagonal covariances in kernel layout: inverse-gamma IG(ν0/2, ψ/2) on each
    distinct variance, and the mean priors."""
    K, d = means.shape
    lp = _log_dirichlet(weights, alpha)
    a = 0.5 * nu
    for k in range(1 if shared else K):
        for j in range(1 if isotropic else d):
            v, beta = variances[k, j], 0.5 * psi[k, j]
            lp += a * math.log(beta) - math.lgamma(a) - (a + 1.0) * math.log(v) - beta / v
    if kappa > 0.0:
        for k in range(K):
            for j in range(d):
                v = variances[k, j] / kappa
                lp += -0.5 * (_LOG_2PI + math.log(v)) - 0.5 * (means[k, j] - m0[j]) ** 2 / v
    return lp


# ============================================================================ parametrisation
_LOG_TINY = -700.0  # log of an emptied component's weight, kept finite for extrapolation


@njit(**_JIT)
def pack_dense(weights, means, L):
    """θ ↦ u: log π_k, μ_k, and the lower Cholesky entries row by row with the diagonal on the
    log scale — an unconstrained vector in which SQUAREM extrapolates and steps are measured."""
    K, d = means.shape
    p = d * (d + 1) // 2
    u = np.empty(K + K * d + K * p)
    for k in range(K):
        u[k] = math.log(weights[k]) if weights[k] > 0.0 else _LOG_TINY
        u[k] = max(u[k], _LOG_TINY)
        for j in range(d):
            u[K + k * d + j] = means[k, j]
        pos = K + K * d + k * p
        for i in range(d):
            for j in range(i + 1):
                u[pos] = math.log(L[k, i, i]) if i == j else L[k, i, j]
                pos += 1
    return u


@njit(**_JIT)
def unpack_dense(u, K, d):
    """u ↦ (weights, means, covariances (K, d, d)); weights by softmax."""
    p = d * (d + 1) // 2
    top = u[:K].max()
    weights = np.exp(u[:K] - top)
    weights /= weights.sum()
    means = u[K:K + K * d].copy().reshape(K, d)
    covs = np.zeros((K, d, d))
    L = np.zeros((d, d))
    for k in range(K):
        pos = K + K * d + k * p
        for i in range(d):
            for j in range(i + 1):
                L[i, j] = math.exp(u[pos]) if i == j else u[pos]
                pos += 1
        for i in range(d):
            for j in range(i + 1):
                t = 0.0
                for q in range(j + 1):
                    t += L[i, q] * L[j, q]
                covs[k, i, j] = t
                covs[k, j, i] = t
    return weights, means, covs


@njit(**_JIT)
def pack_diagonal(weights, means, variances):
    """θ ↦ u for diagonal covariances: log π_k, μ_k, log σ²_kj."""
    K, d = means.shape
    u = np.empty(K + 2 * K * d)
    for k in range(K):
        u[k] = max(math.log(weights[k]) if weights[k] > 0.0 else _LOG_TINY, _LOG_TINY)
        for j in range(d):
            u[K + k * d + j] = means[k, j]
            u[K + K * d + k * d + j] = math.log(variances[k, j])
    return u


@njit(**_JIT)
def unpack_diagonal(u, K, d):
    top = u[:K].max()
    weights = np.exp(u[:K] - top)
    weights /= weights.sum()
    means = u[K:K + K * d].copy().reshape(K, d)
    variances = np.exp(u[K + K * d:]).reshape(K, d)
    return weights, means, variances
