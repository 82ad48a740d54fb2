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

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address

__all__ = ["estep_dense", "estep_diagonal", "mstep_dense", "mstep_diagonal", "factor_dense",
           "factor_diagonal", "log_prior_dense", "log_prior_diagonal"]

_LOG_2PI = math.log(2.0 * math.pi)
_JIT = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

# BLAS's symmetric rank-k update (half a GEMM's flops), which Numba does not wrap: SciPy's
# Cython BLAS symbol, registered with LLVM by name so the cached kernels link to it in every
# process (a ctypes pointer would make them uncacheable).
for _name in ("dsyrk", "dtrmm"):
    llvm.add_symbol(f"bayesgmm_{_name}",
                    get_cython_function_address("scipy.linalg.cython_blas", _name))
_VOID = types.voidptr
_dsyrk = types.ExternalFunction("bayesgmm_dsyrk", types.void(*[_VOID] * 10))
_dtrmm = types.ExternalFunction("bayesgmm_dtrmm", types.void(*[_VOID] * 11))
#: below this size (d + 1) the BLAS calls' overhead outweighs the halved flops: plain GEMM
_TRIANGULAR_BLAS_FROM = 8


@njit(**_JIT)
def _blas_arguments(needed):
    """The by-reference arguments of dsyrk/dtrmm (made per call: global arrays would be
    unpickled on every call of a cached kernel; empty when the kernel will not call them)."""
    ints = np.zeros(4 if needed else 0, dtype=np.int32)
    syrk_flags = np.empty(2 if needed else 0, dtype=np.uint8)
    trmm_flags = np.empty(4 if needed else 0, dtype=np.uint8)
    one_zero = np.empty(2 if needed else 0)
    if needed:
        syrk_flags[0], syrk_flags[1] = 85, 84  # "U", "T"
        trmm_flags[0], trmm_flags[1], trmm_flags[2], trmm_flags[3] = 82, 85, 78, 78  # "RUNN"
        one_zero[0], one_zero[1] = 1.0, 0.0
    return ints, syrk_flags, trmm_flags, one_zero


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
def factor_dense(covs, shared=False):
    """Cholesky factors L (K, d, d), their inverses U and log det Σ_k (K,); ``bad`` is the first
    component that is not positive definite (−1 when all are).  ``shared``: every Σ_k is the
    same matrix, factored once."""
    K, d = covs.shape[0], covs.shape[1]
    L = np.zeros((K, d, d))
    U = np.zeros((K, d, d))
    log_det = np.zeros(K)
    for k in range(K):
        if shared and k > 0:
            L[k], U[k], log_det[k] = L[0], U[0], log_det[0]
            continue
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


@njit(**_JIT)
def _gram_into(A, C, ints, uplo_trans, one_zero):
    """C = A Aᵀ for a C-ordered (m, n) block A, by dsyrk (A is Fortran's (n, m) with lda = n),
    then symmetrised."""
    m, n = A.shape
    ints[0], ints[1], ints[2], ints[3] = m, n, n, m
    _dsyrk(uplo_trans[0:].ctypes, uplo_trans[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
           one_zero[0:].ctypes, A.ctypes, ints[2:].ctypes, one_zero[1:].ctypes, C.ctypes,
           ints[3:].ctypes)
    for i in range(m):  # Fortran's upper triangle is C's lower one
        for j in range(i):
            C[j, i] = C[i, j]


@njit(**_JIT)
def _lower_times_into(U, Z, Y, ints, flags, one_zero):
    """Y = U Z for lower-triangular U (d, d) and C-ordered Z, Y (d, n), by dtrmm (half a GEMM's
    flops): in Fortran's terms Yᵀ = Zᵀ Uᵀ, a right multiply by the upper-triangular Uᵀ."""
    d, n = Z.shape
    for j in range(d):
        for r in range(n):
            Y[j, r] = Z[j, r]
    ints[0], ints[1], ints[2], ints[3] = n, d, d, n
    _dtrmm(flags[0:].ctypes, flags[1:].ctypes, flags[2:].ctypes, flags[3:].ctypes,
           ints[0:].ctypes, ints[1:].ctypes, one_zero[0:].ctypes, U.ctypes, ints[2:].ctypes,
           Y.ctypes, ints[3:].ctypes)


# ============================================================================ the E-pass
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (fdlibm): k·ln2 exact in the first part
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -708.0  # exp below e^-708 is flushed to 0 (terms that small vanish in a sum)


@njit(**_JIT)
def _exp_into(x, out, bits):
    """out = exp(x) for x ≤ 0, to ~1.5 ulp, in two loops LLVM vectorises (libm's exp is a scalar
    call): x = k ln 2 + r with |r| ≤ ln2/2, e^r by its Taylor polynomial to r¹²/12!
    (truncation < 1e-16 relatively), 2^k from the exponent bits."""
    n = x.shape[0]
    for i in range(n):
        xi = max(x[i], _EXP_FLOOR)
        k = math.floor(xi * _LOG2E + 0.5)
        r = (xi - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        out[i] = p * r + 1.0
        bits[i] = (np.int64(k) + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(n):
        out[i] = out[i] * scale[i] if x[i] > _EXP_FLOOR else 0.0


@njit(**_JIT)
def _working_chunk(X, i, n, center, inv_scale, Zt):
    """Zt[:, :n] = (x − c)ᵀ · inv_scale for rows i:i+n: the working chunk, feature-major, so
    that every later loop runs over contiguous rows."""
    d = X.shape[1]
    for r in range(n):
        for j in range(d):
            Zt[j, r] = (X[i + r, j] - center[j]) * inv_scale


@njit(**_JIT)
def _normalise(LP, w, row0, has_w, E, top, bits):
    """LP (K, n) holds log π_k N(z | μ_k, Σ_k) (eq. 1.3) for n rows; overwrite it with w_n r_nk
    (eq. 3.0) and return Σ_n w_n log p(z_n) (eq. 1.2) by log-sum-exp."""
    K, n = LP.shape
    for r in range(n):
        top[r] = LP[0, r]
    for k in range(1, K):
        for r in range(n):
            top[r] = max(top[r], LP[k, r])
    total = E[K]
    for r in range(n):
        total[r] = 0.0
    for k in range(K):
        Lk, Ek = LP[k], E[k]
        for r in range(n):
            Lk[r] -= top[r]
        _exp_into(Lk, Ek, bits)
        for r in range(n):
            total[r] += Ek[r]
    ll = 0.0
    for r in range(n):
        wr = w[row0 + r] if has_w else 1.0
        ll += wr * (top[r] + math.log(total[r]))
        total[r] = wr / total[r]
    for k in range(K):
        Lk, Ek = LP[k], E[k]
        for r in range(n):
            Lk[r] = Ek[r] * total[r]
    return ll


@njit(**_JIT)
def _given(LP, w, row0, has_w, resp):
    """LP (K, n) ← w_n r_nk from given responsibilities (the M-step-first start)."""
    K, n = LP.shape
    for k in range(K):
        for r in range(n):
            LP[k, r] = (w[row0 + r] if has_w else 1.0) * resp[row0 + r, k]


@njit(**_JIT)
def _write_log_prob(LP, n, out, offset_row):
    K = LP.shape[0]
    for r in range(n):
        for k in range(K):
            out[offset_row + r, k] = LP[k, r]


@njit(**_JIT)
def _dense_chunk(X, i, n, center, inv_scale, w, has_w, U, shift, shared, offset, log_prob_out,
                 out_row, resp, given, Zt, Yt, LP, E, top, q, root, bits, tmp, blas, n_k, s1,
                 M):
    """One chunk of :func:`estep_dense`; every buffer has exactly n columns (contiguous, as
    BLAS through ``np.dot`` needs).  Yt[k] is (d + 1, n): the whitened rows and a row of ones,
    so that one rank-n update on √(w r)-scaled columns gives M_k, s1_k and N_k together."""
    K, d = shift.shape
    ints, syrk_flags, trmm_flags, one_zero = blas
    _working_chunk(X, i, n, center, inv_scale, Zt)
    for k in range(K if not shared else 1):  # yᵀ = U_k zᵀ: one triangular multiply per factor
        if d + 1 >= _TRIANGULAR_BLAS_FROM:
            _lower_times_into(U[k], Zt, Yt[k, :d], ints, trmm_flags, one_zero)
        else:
            np.dot(U[k], Zt, Yt[k, :d])
        for r in range(n):
            Yt[k, d, r] = 1.0
    for k in range(K):
        Yk = Yt[0 if shared else k]
        for r in range(n):
            q[r] = 0.0
        for j in range(d):
            sj, Ykj = shift[k, j], Yk[j]
            for r in range(n):
                y = Ykj[r] - sj
                q[r] += y * y
                if not shared:
                    Ykj[r] = y
        for r in range(n):
            LP[k, r] = offset[k] - 0.5 * q[r]
    if log_prob_out.shape[0] > 0:
        _write_log_prob(LP, n, log_prob_out, out_row)
        return 0.0
    ll = 0.0
    if given:
        _given(LP, w, i, has_w, resp)
    else:
        ll = _normalise(LP, w, i, has_w, E, top, bits)
    if shared:
        _shared_moments(Yt[0], LP, w, i, has_w, shift, root, tmp, blas, n_k, s1, M)
        return ll
    for k in range(K):
        Yk = Yt[k]
        wr = LP[k]
        for r in range(n):
            root[r] = math.sqrt(wr[r])
        for j in range(d + 1):
            for r in range(n):
                Yk[j, r] *= root[r]
        # [Σ w r y yᵀ, Σ w r y; ·, Σ w r] as one rank-n update on √(w r)-scaled columns
        _gram(Yk, tmp, blas)  # (eq. 3.1–3.3)
        n_k[k] += tmp[d, d]
        for p in range(d):
            s1[k, p] += tmp[p, d]
            for j in range(d):
                M[k, p, j] += tmp[p, j]
    return ll


@njit(**_JIT)
def _gram(A, C, blas):
    """C = A Aᵀ: dsyrk from size 8 (half a GEMM's flops), a GEMM below (call overhead)."""
    if A.shape[0] >= _TRIANGULAR_BLAS_FROM:
        ints, syrk_flags, trmm_flags, one_zero = blas
        _gram_into(A, C, ints, syrk_flags, one_zero)
    else:
        np.dot(A, A.T, C)


@njit(**_JIT)
def _shared_moments(Y0, WR, w, row0, has_w, c, root, tmp, blas, n_k, s1, M):
    """The statistics of one shared factor (tied covariances) with one rank-n update per chunk
    instead of K: with y₀ = U z and c_k = U μ_k,

        Σ_k Σ_n w r (y₀ − c_k)(y₀ − c_k)ᵀ = Σ_n w y₀ y₀ᵀ − Σ_k (ŝ_k c_kᵀ + c_k ŝ_kᵀ) + Σ_k N_k c_k c_kᵀ,

    ŝ_k = Σ_n w r y₀ (responsibilities sum to 1 over k).  Only the sum over components is kept
    (in M[0]) — all the tied M-step reads — with s1_k = ŝ_k − N_k c_k and N_k per component."""
    K, n = WR.shape
    d = Y0.shape[0] - 1
    S = np.dot(WR, Y0.T)  # [ŝ_k, N_k] for every k: one GEMM (K, n) × (n, d + 1)
    for r in range(n):
        root[r] = math.sqrt(w[row0 + r]) if has_w else 1.0
    for j in range(d + 1):
        for r in range(n):
            Y0[j, r] *= root[r]
    _gram(Y0, tmp, blas)  # Σ w y₀ y₀ᵀ
    for p in range(d):
        for j in range(d):
            M[0, p, j] += tmp[p, j]
    for k in range(K):
        nk = S[k, d]
        n_k[k] += nk
        for p in range(d):
            s1[k, p] += S[k, p] - nk * c[k, p]
            for j in range(d):
                M[0, p, j] += nk * c[k, p] * c[k, j] - S[k, p] * c[k, j] - c[k, p] * S[k, j]


@njit(**_JIT)
def work_size(kernel_dense, d, K, shared, n):
    """Floats of scratch an E-pass needs for chunks of ``n`` rows (:func:`estep_dense` /
    :func:`estep_diagonal`); the caller's workspace of this size is reused across calls."""
    if kernel_dense:
        return (d + (1 if shared else K) * (d + 1) + 2 * K + 4) * n
    return (2 * d + 2 * K + 4) * n


@njit(**_JIT)
def _carve(work, start, shape):
    """A C-contiguous view of ``work[start:]`` with ``shape`` (rows, n)."""
    return work[start:start + shape[0] * shape[1]].reshape(shape)


@njit(**_JIT)
def estep_dense(X, a, b, center, inv_scale, w, means, U, offset, rows, log_prob_out, resp,
                shared, work, ibits):
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
    shared : every U_k is the same factor (tied): one whitening per chunk, and M[0] holds the
        sum over components of M_k (the others are zero) — all the tied M-step needs
    work, ibits : float and int64 workspaces of at least :func:`work_size` and ``rows``
        entries, reused across calls (no allocation per pass: with a low malloc trim
        threshold, as Dask sets in its workers, freed buffers go back to the OS and every
        allocation faults its pages in again); smaller ones are replaced by fresh buffers

    Returns
    -------
    ll, n_k (K,), s1 (K, d) = Σ w r y, M (K, d, d) = Σ w r y yᵀ with y = U_k (z − μ_k)
    """
    d, K = X.shape[1], means.shape[0]
    has_w = w.shape[0] > 0
    given = resp.shape[0] > 0
    shift = np.zeros((K, d))
    for k in range(K):
        for i in range(d):
            for j in range(d):
                shift[k, i] += U[k, i, j] * means[k, j]  # U_k μ_k
    tmp = np.empty((d + 1, d + 1))
    blas = _blas_arguments(d + 1 >= _TRIANGULAR_BLAS_FROM)
    ll = 0.0
    n_k = np.zeros(K)
    s1 = np.zeros((K, d))
    M = np.zeros((K, d, d))
    rows = max(1, min(rows, b - a))
    for i in range(a, b, rows):
        n = min(rows, b - i)
        if i == a or n < rows:  # contiguous buffers of exactly n columns
            F = 1 if shared else K
            if work.shape[0] < work_size(True, d, K, shared, n) or ibits.shape[0] < n:
                work, ibits = np.empty(work_size(True, d, K, shared, n)), \
                    np.empty(n, dtype=np.int64)
            Zt = _carve(work, 0, (d, n))
            Yt = work[d * n:(d + F * (d + 1)) * n].reshape((F, d + 1, n))
            o = (d + F * (d + 1)) * n
            LP, E = _carve(work, o, (K, n)), _carve(work, o + K * n, (K + 1, n))
            o += (2 * K + 1) * n
            top, q, root = work[o:o + n], work[o + n:o + 2 * n], work[o + 2 * n:o + 3 * n]
            bits = ibits[:n]
        ll += _dense_chunk(X, i, n, center, inv_scale, w, has_w, U, shift, shared, offset,
                           log_prob_out, i - a, resp, given, Zt, Yt, LP, E, top, q, root,
                           bits, tmp, blas, n_k, s1, M)
    return ll, n_k, s1, M


@njit(**_JIT)
def _diagonal_chunk(X, i, n, center, inv_scale, w, has_w, means, inv_sd, offset,
                    log_prob_out, out_row, resp, given, Zt, Yk, LP, E, top, q, bits, acc, n_k,
                    s1, m2):
    """One chunk of :func:`estep_diagonal` (buffers of exactly n columns).  Yk (d + 1, n)
    holds one component's whitened rows and a row of ones, so one GEMV gives (s1_k, N_k)."""
    K, d = means.shape
    _working_chunk(X, i, n, center, inv_scale, Zt)
    for k in range(K):
        for r in range(n):
            q[r] = 0.0
        for j in range(d):
            mu, inv = means[k, j], inv_sd[k, j]
            for r in range(n):
                t = (Zt[j, r] - mu) * inv
                q[r] += t * t
        for r in range(n):
            LP[k, r] = offset[k] - 0.5 * q[r]
    if log_prob_out.shape[0] > 0:
        _write_log_prob(LP, n, log_prob_out, out_row)
        return 0.0
    ll = 0.0
    if given:
        _given(LP, w, i, has_w, resp)
    else:
        ll = _normalise(LP, w, i, has_w, E, top, bits)
    for r in range(n):
        Yk[d, r] = 1.0
    for k in range(K):
        wr = LP[k]
        for j in range(d):
            mu, inv = means[k, j], inv_sd[k, j]
            for r in range(n):
                Yk[j, r] = (Zt[j, r] - mu) * inv
        np.dot(Yk, wr, acc)  # (Σ w r y, Σ w r): one GEMV
        n_k[k] += acc[d]
        for j in range(d):
            s1[k, j] += acc[j]
            for r in range(n):
                Yk[j, r] *= Yk[j, r]
        np.dot(Yk, wr, acc)  # Σ w r y²
        for j in range(d):
            m2[k, j] += acc[j]
    return ll


@njit(**_JIT)
def estep_diagonal(X, a, b, center, inv_scale, w, means, inv_sd, offset, rows, log_prob_out,
                   resp, work, ibits):
    """:func:`estep_dense` for diagonal covariances: ``inv_sd`` (K, d) are 1/σ_kj.

    Returns
    -------
    ll, n_k (K,), s1 (K, d) = Σ w r y, m2 (K, d) = Σ w r y² with y_j = (z_j − μ_kj) / σ_kj
    """
    d, K = X.shape[1], means.shape[0]
    has_w = w.shape[0] > 0
    given = resp.shape[0] > 0
    ll = 0.0
    n_k = np.zeros(K)
    s1 = np.zeros((K, d))
    m2 = np.zeros((K, d))
    acc = np.empty(d + 1)
    rows = max(1, min(rows, b - a))
    for i in range(a, b, rows):
        n = min(rows, b - i)
        if i == a or n < rows:  # views of the workspace (see estep_dense)
            if work.shape[0] < work_size(False, d, K, False, n) or ibits.shape[0] < n:
                work, ibits = np.empty(work_size(False, d, K, False, n)), \
                    np.empty(n, dtype=np.int64)
            Zt, Yk = _carve(work, 0, (d, n)), _carve(work, d * n, (d + 1, n))
            o = (2 * d + 1) * n
            LP, E = _carve(work, o, (K, n)), _carve(work, o + K * n, (K + 1, n))
            o += (2 * K + 1) * n
            top, q = work[o:o + n], work[o + n:o + 2 * n]
            bits = ibits[:n]
        ll += _diagonal_chunk(X, i, n, center, inv_scale, w, has_w, means, inv_sd, offset,
                              log_prob_out, i - a, resp, given, Zt, Yk, LP, E, top, q, bits,
                              acc, n_k, s1, m2)
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
def _sandwich(L, C, out):
    """out = L C Lᵀ for lower-triangular L (BLAS from size 8; loops below)."""
    d = L.shape[0]
    if d >= _TRIANGULAR_BLAS_FROM:
        np.dot(np.dot(L, C), L.T, out)
        return
    for i in range(d):
        for j in range(i + 1):
            t = 0.0
            for p in range(i + 1):
                lc = 0.0
                for q in range(j + 1):
                    lc += C[p, q] * L[j, q]
                t += L[i, p] * lc
            out[i, j] = out[j, i] = t


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
    C = np.zeros((K, d, d)) if not shared else np.zeros((1, d, d))
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
        c = 0 if shared else k  # tied: the statistics' sum over k is all that is needed
        for i in range(d):
            for j in range(d):
                C[c, i, j] += M[k, i, j] - s1[k, i] * ybar[j]
    # W_k = ω L_k (M_k − s1 s1ᵀ / N_k) L_kᵀ                                           (eq. 3.3)
    W = np.empty(C.shape)
    for c in range(C.shape[0]):
        _sandwich(L[c], C[c], W[c])
    W *= omega
    n_w = omega * n_k
    weights, means = _weights_and_means(n_w, xbar, means_old, has_prior, alpha, kappa, m0)
    if has_prior and kappa > 0.0:  # B_k = W_k + κ N_k/(κ + N_k) (x̄_k − m0)(x̄_k − m0)ᵀ (eq. 4.3)
        for k in range(K):
            c = 0 if shared else k
            shrink = kappa * n_w[k] / (kappa + n_w[k])
            for i in range(d):
                for j in range(d):
                    W[c, i, j] += shrink * (xbar[k, i] - m0[i]) * (xbar[k, j] - m0[j])
    delta = 1.0 if (has_prior and kappa > 0.0) else 0.0
    covs = np.empty((K, d, d))
    for k in range(K):
        if shared and k > 0:
            covs[k] = covs[0]
        elif shared:  # Σ = (Ψ0 + Σ_k B_k) / (ν0 + N + d + 1 + K δ)                  (eq. 4.4 tied)
            covs[0] = ((psi[0] + W[0]) / (nu + n_w.sum() + d + 1 + K * delta) if has_prior
                       else W[0] / n_w.sum())
        elif has_prior:  # Σ_k = (Ψ0 + B_k) / (ν0 + N_k + d + 1 + δ)                  (eq. 4.4 full)
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


# ============================================================================ one EM-map evaluation
@njit(**_JIT)
def log_offsets(weights, log_det, d):
    """log π_k − ½ (d log 2π + log det Σ_k); −inf for an emptied component."""
    K = weights.shape[0]
    out = np.empty(K)
    for k in range(K):
        out[k] = (math.log(weights[k]) if weights[k] > 0.0 else -np.inf) \
            - 0.5 * (d * _LOG_2PI + log_det[k])
    return out


@njit(**_JIT)
def em_map_dense(X, center, inv_scale, w, rows, work, ibits, weights, means, L, U, log_det,
                 shared, omega, has_prior, alpha, kappa, m0, nu, psi, psi_chol, psi_log_det):
    """F(θ) for dense covariances in one call: the E-pass, the log posterior at θ, the M-step
    and the factorisation of the new covariances.

    Returns (log_post, log_lik (× omega), n_k, weights, means, covs, L, U, log_det, bad,
    packed): ``packed`` is :func:`pack_dense` of the new parameters.
    """
    K, d = means.shape
    offset = log_offsets(weights, log_det, d)
    ll, n_k, s1, M = estep_dense(X, 0, X.shape[0], center, inv_scale, w, means, U, offset,
                                 rows, np.empty((0, K)), np.empty((0, K)), shared, work, ibits)
    log_post = omega * ll
    if has_prior:
        log_post += log_prior_dense(weights, means, U, log_det, alpha, kappa, m0, nu,
                                    psi_chol, psi_log_det, shared)
    new_w, new_m, new_c = mstep_dense(n_k, s1, M, omega, means, L, has_prior, alpha, kappa,
                                      m0, nu, psi, shared)
    new_L, new_U, new_ld, bad = factor_dense(new_c, shared)
    packed = pack_dense(new_w, new_m, new_L) if bad < 0 else np.empty(0)
    return log_post, omega * ll, n_k, new_w, new_m, new_c, new_L, new_U, new_ld, bad, packed


@njit(**_JIT)
def em_map_diagonal(X, center, inv_scale, w, rows, work, ibits, weights, means, sd, inv_sd,
                    variances, log_det, shared, isotropic, omega, has_prior, alpha, kappa, m0,
                    nu, psi):
    """:func:`em_map_dense` for diagonal covariances (``variances`` (K, d))."""
    K, d = means.shape
    offset = log_offsets(weights, log_det, d)
    ll, n_k, s1, m2 = estep_diagonal(X, 0, X.shape[0], center, inv_scale, w, means, inv_sd,
                                     offset, rows, np.empty((0, K)), np.empty((0, K)), work,
                                     ibits)
    log_post = omega * ll
    if has_prior:
        log_post += log_prior_diagonal(weights, means, variances, alpha, kappa, m0, nu, psi,
                                       shared, isotropic)
    new_w, new_m, new_v = mstep_diagonal(n_k, s1, m2, omega, means, sd, has_prior, alpha,
                                         kappa, m0, nu, psi, shared, isotropic)
    new_sd, new_inv, new_ld, bad = factor_diagonal(new_v)
    packed = pack_diagonal(new_w, new_m, new_v) if bad < 0 else np.empty(0)
    return log_post, omega * ll, n_k, new_w, new_m, new_v, new_sd, new_inv, new_ld, bad, packed


@njit(**_JIT)
def max_abs_difference(a, b):
    """max_i |a_i − b_i| (the size of an EM step in the unconstrained coordinates)."""
    out = 0.0
    for i in range(a.shape[0]):
        out = max(out, abs(a[i] - b[i]))
    return out


# ============================================================================ Ward agglomeration
@njit(**_JIT)
def _ward_nearest(a, centroids, masses, active, avoid):
    """The active cluster b ≠ a minimising the Ward cost m_a m_b/(m_a + m_b)‖c_a − c_b‖²; ties
    go to ``avoid`` (the chain's previous element, which guarantees termination), then to the
    lowest index."""
    n, d = centroids.shape
    best, best_cost = -1, np.inf
    for b in range(n):
        if not active[b] or b == a:
            continue
        dist = 0.0
        for j in range(d):
            t = centroids[a, j] - centroids[b, j]
            dist += t * t
        cost = dist / (1.0 / masses[a] + 1.0 / masses[b])  # m_a m_b/(m_a + m_b), no overflow
        if best < 0 or cost < best_cost or (cost == best_cost and b == avoid):
            best, best_cost = b, cost
    return best


@njit(**_JIT)
def ward_chain(Y, masses, K):
    """Ward agglomeration of the rows of Y (initial masses > 0), cut at K clusters.

    The nearest-neighbour chain (Murtagh 1983) builds the whole Ward hierarchy in O(n² d) time
    and O(n d) memory, but merges out of height order; the K-cluster cut is the partition made
    by the n − K lowest merges, replayed in height order.  Returns one cluster id (a
    representative row) per row.
    """
    n, d = Y.shape
    centroids = Y.copy()
    mass = masses.copy()
    active = np.ones(n, dtype=np.bool_)
    chain = np.empty(n, dtype=np.int64)
    merged = np.empty((max(n - 1, 0), 2), dtype=np.int64)
    height = np.empty(max(n - 1, 0))
    top, done = 0, 0
    while done < n - 1:
        if top == 0:
            for a in range(n):
                if active[a]:
                    chain[0] = a
                    top = 1
                    break
        a = chain[top - 1]
        previous = chain[top - 2] if top >= 2 else -1
        b = _ward_nearest(a, centroids, mass, active, previous)
        if b == previous:  # reciprocal nearest neighbours: merge b into a
            dist = 0.0
            for j in range(d):
                t = centroids[a, j] - centroids[b, j]
                dist += t * t
            height[done] = dist / (1.0 / mass[a] + 1.0 / mass[b])
            merged[done, 0], merged[done, 1] = a, b
            share = mass[b] / (mass[a] + mass[b])
            for j in range(d):
                centroids[a, j] += share * (centroids[b, j] - centroids[a, j])
            mass[a] += mass[b]
            active[b] = False
            done += 1
            top -= 2
        else:
            chain[top] = b
            top += 1
    parent = np.arange(n)
    for m in np.argsort(height, kind="mergesort")[:n - K]:  # the n − K lowest merges
        ra, rb = merged[m, 0], merged[m, 1]
        while parent[ra] != ra:
            ra = parent[ra]
        while parent[rb] != rb:
            rb = parent[rb]
        parent[rb] = ra
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        root = i
        while parent[root] != root:
            root = parent[root]
        labels[i] = root
    return labels


# ============================================================================ Gibbs sampler
@njit(**_JIT)
def label_statistics(X, z, K):
    """n_k, x̄_k and the scatter W_k = Σ_{z_n = k} (x_n − x̄_k)(x_n − x̄_k)ᵀ of labelled rows
    (two passes: means, then centred products), for the Gibbs sampler's conjugate step."""
    n, d = X.shape
    counts = np.zeros(K, dtype=np.int64)
    means = np.zeros((K, d))
    scatter = np.zeros((K, d, d))
    for i in range(n):
        k = z[i]
        counts[k] += 1
        for j in range(d):
            means[k, j] += X[i, j]
    for k in range(K):
        if counts[k] > 0:
            for j in range(d):
                means[k, j] /= counts[k]
    y = np.empty(d)
    for i in range(n):
        k = z[i]
        for j in range(d):
            y[j] = X[i, j] - means[k, j]
        for a in range(d):
            for b in range(a + 1):
                scatter[k, a, b] += y[a] * y[b]
    for k in range(K):
        for a in range(d):
            for b in range(a):
                scatter[k, b, a] = scatter[k, a, b]
    return counts, means, scatter


@njit(**_JIT)
def bartlett_inverse_wishart(scale, A):
    """Σ_b = M_b M_bᵀ with M_b = L_b A_b⁻ᵀ and Ψ_b = L_b L_bᵀ, per block: an IW(ν_b, Ψ_b) draw
    when A_b is a Bartlett factor of ν_b degrees of freedom (derivation §10).  Returns Σ
    (exactly symmetric) and the factor M; NaN blocks if a Ψ_b is not positive definite."""
    B, b = scale.shape[0], scale.shape[1]
    out = np.empty((B, b, b))
    M = np.empty((B, b, b))
    L = np.empty((b, b))
    Ainv = np.empty((b, b))
    for s in range(B):
        if not _cholesky(scale[s], L):
            out[s] = np.nan
            M[s] = np.nan
            continue
        _lower_inverse(A[s], Ainv)
        for i in range(b):            # M = L A⁻ᵀ: lower × upper
            for j in range(b):
                t = 0.0
                for p in range(min(i, j) + 1):
                    t += L[i, p] * Ainv[j, p]
                M[s, i, j] = t
        for i in range(b):
            for j in range(i + 1):
                t = 0.0
                for p in range(b):
                    t += M[s, i, p] * M[s, j, p]
                out[s, i, j] = t
                out[s, j, i] = t
    return out, M


@njit(**_JIT)
def _shared_shape(w, lam, shape):
    """A ∝ Σ_k w_k / λ_k with det A = 1 (derivation §4b), into ``shape``."""
    K, d = w.shape
    log_mean = 0.0
    for j in range(d):
        s = 0.0
        for k in range(K):
            s += w[k, j] / lam[k]
        shape[j] = s
        log_mean += math.log(s)
    g = math.exp(log_mean / d)
    for j in range(d):
        shape[j] /= g


@njit(**_JIT)
def shared_shape_volumes(w, c, lam, tol, max_iter):
    """The volumes λ_k and shared shape A of VEI and VEV by block-coordinate descent on (4b.1)
    (``decomposition._volumes`` for a shared diagonal shape): A ∝ Σ_k w_k / λ_k, then
    λ_k = Σ_j w_kj / A_j / (d c_k), until no λ_k moves by more than ``tol`` (relative).

    Parameters
    ----------
    w : (K, d) diagonal statistics;  c : (K,) counts;  lam : (K,) the warm start

    Returns
    -------
    (lam (K,), shape (d,))
    """
    K, d = w.shape
    lam = lam.copy()
    shape = np.empty(d)
    new = np.empty(K)
    for _ in range(max_iter):
        _shared_shape(w, lam, shape)
        worst = 0.0
        for k in range(K):
            t = 0.0
            for j in range(d):
                t += w[k, j] / shape[j]
            new[k] = t / (d * c[k])
            worst = max(worst, abs(new[k] - lam[k]) / max(abs(lam[k]), 1e-300))
        lam[:] = new
        if worst <= tol:
            break
    _shared_shape(w, lam, shape)
    return lam, shape


@njit(**_JIT)
def _shared_matrix(M, lam, S, L, U):
    """S = Σ_k M_k / λ_k, its factors L (Cholesky) and U = L⁻¹, and det(S)^(1/d); NaN if S is
    not positive definite."""
    K, d = M.shape[0], M.shape[1]
    for i in range(d):
        for j in range(d):
            t = 0.0
            for k in range(K):
                t += M[k, i, j] / lam[k]
            S[i, j] = t
    if not _cholesky(S, L):
        return np.nan
    _lower_inverse(L, U)
    log_det = 0.0
    for i in range(d):
        log_det += 2.0 * math.log(L[i, i])
    return math.exp(log_det / d)


@njit(**_JIT)
def shared_matrix_volumes(M, c, lam, tol, max_iter):
    """The volumes λ_k and shared C (det C = 1) of VEE by block-coordinate descent on (4b.1)
    (``decomposition._volumes``): C = S / det(S)^(1/d) with S = Σ_k M_k / λ_k, then
    λ_k = tr(M_k C⁻¹) / (d c_k), until no λ_k moves by more than ``tol`` (relative).

    Parameters
    ----------
    M : (K, d, d) scatter matrices;  c : (K,) counts;  lam : (K,) the warm start

    Returns
    -------
    (lam (K,), C (d, d)); NaN where a shared matrix is not positive definite
    """
    K, d = M.shape[0], M.shape[1]
    lam = lam.copy()
    S, L, U = np.empty((d, d)), np.empty((d, d)), np.empty((d, d))
    new = np.empty(K)
    for _ in range(max_iter):
        g = _shared_matrix(M, lam, S, L, U)
        if not np.isfinite(g):
            break
        worst = 0.0
        for k in range(K):
            t = 0.0  # tr(M_k S⁻¹) = tr(U M_k Uᵀ) = Σ_p u_pᵀ M_k u_p, u_p row p of U (lower)
            for p in range(d):
                for i in range(p + 1):
                    for j in range(p + 1):
                        t += U[p, i] * M[k, i, j] * U[p, j]
            new[k] = g * t / (d * c[k])   # tr(M_k C⁻¹) = det(S)^(1/d) tr(M_k S⁻¹)
            worst = max(worst, abs(new[k] - lam[k]) / max(abs(lam[k]), 1e-300))
        lam[:] = new
        if worst <= tol:
            break
    g = _shared_matrix(M, lam, S, L, U)
    return lam, S / g


@njit(**_JIT)
def _projected_diagonals(M, D, c, equal_volume, out):
    """The closed-form diagonals given the orientation D (derivation §4b), into ``out``:
    p_kj = d_jᵀ M_k d_j, then EVE (equal volume) λ A_k with A_k = p_k / g(p_k) and
    λ = Σ_k g(p_k) / Σ_k c_k, or VVE p_k / c_k."""
    K, d = M.shape[0], M.shape[1]
    for k in range(K):
        for j in range(d):
            t = 0.0
            for a in range(d):
                for b in range(d):
                    t += D[a, j] * M[k, a, b] * D[b, j]
            out[k, j] = t
    if equal_volume:
        total_g, total_c = 0.0, 0.0
        for k in range(K):
            log_mean = 0.0
            for j in range(d):
                log_mean += math.log(out[k, j])
            g = math.exp(log_mean / d)
            total_g += g
            total_c += c[k]
            for j in range(d):
                out[k, j] /= g
        for k in range(K):
            for j in range(d):
                out[k, j] *= total_g / total_c
    else:
        for k in range(K):
            for j in range(d):
                out[k, j] /= c[k]


@njit(**_JIT)
def _rotation_sweep(M, D, diagonals):
    """One Jacobi sweep of the shared orientation D in place (``decomposition`` §4b: for each
    pair of columns the plane rotation minimising Σ_k tr(M_k D Λ_k⁻¹ Dᵀ), at
    2θ = atan2(−Q, −P)); returns the largest |θ|."""
    K, d = M.shape[0], M.shape[1]
    largest = 0.0
    for i in range(d - 1):
        for j in range(i + 1, d):
            P, Q = 0.0, 0.0
            for k in range(K):
                a, b, e = 0.0, 0.0, 0.0
                for p in range(d):
                    mi, mj = 0.0, 0.0
                    for q in range(d):
                        mi += M[k, p, q] * D[q, i]
                        mj += M[k, p, q] * D[q, j]
                    a += mi * D[p, i]
                    b += mj * D[p, j]
                    e += mi * D[p, j]
                w = 1.0 / diagonals[k, i] - 1.0 / diagonals[k, j]
                P += 0.5 * w * (a - b)
                Q += w * e
            if P * P + Q * Q == 0.0:
                continue
            theta = 0.5 * math.atan2(-Q, -P)
            cos, sin = math.cos(theta), math.sin(theta)
            for p in range(d):
                di, dj = D[p, i], D[p, j]
                D[p, i] = cos * di + sin * dj
                D[p, j] = cos * dj - sin * di
            largest = max(largest, abs(theta))
    return largest


@njit(**_JIT)
def shared_orientation(M, c, D, equal_volume, tol, max_iter):
    """The shared orientation D and the diagonals of EVE (``equal_volume``) or VVE: Jacobi
    sweeps of D alternated with the closed-form diagonals, from D, until no rotation exceeds
    ``tol`` and no diagonal moves by more than ``tol`` (relative).

    Parameters
    ----------
    M : (K, d, d) scatter matrices;  c : (K,) counts;  D : (d, d) the warm-start orientation

    Returns
    -------
    (D (d, d), diagonals (K, d))
    """
    K, d = M.shape[0], M.shape[1]
    D = D.copy()
    diagonals, new = np.empty((K, d)), np.empty((K, d))
    _projected_diagonals(M, D, c, equal_volume, diagonals)
    for _ in range(max_iter):
        turned = _rotation_sweep(M, D, diagonals)
        _projected_diagonals(M, D, c, equal_volume, new)
        worst = 0.0
        for k in range(K):
            for j in range(d):
                worst = max(worst, abs(new[k, j] - diagonals[k, j])
                            / max(abs(diagonals[k, j]), 1e-300))
        diagonals[:] = new
        if turned <= tol and worst <= tol:
            break
    return D, diagonals
