"""The contract every row of the covariance table must honour (``bayesgmm.covariance``).

Each test is parametrised over :data:`STRUCTURES` and uses only the row's own functions plus
independent references (numpy's linear algebra, scipy's densities, scipy's optimiser), so a new
structure is verified by adding its row — nothing here names a structure.
"""

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize

import bayesgmm as bg
from bayesgmm.covariance import STRUCTURES, SingularCovarianceError
from bayesgmm.estep import Coordinates, Engine, MixtureParams
from tests.conftest import blobs
from tests.reference import component_log_densities, dense_covariances, log_prior

ROWS = sorted(STRUCTURES)
K, D = 3, 3


@pytest.fixture(params=ROWS)
def row(request):
    return STRUCTURES[request.param]


def random_covariances(row, K, d, seed=0, spread=0.6):
    z = np.random.default_rng(seed).normal(scale=spread, size=row.n_parameters(K, d))
    return row.from_unconstrained(z, K, d)


def dense(row, covs, K, d):
    return np.asarray(row.expand(covs, K, d), dtype=float)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("K, d", [(1, 1), (2, 1), (3, 2), (2, 4)])
def test_shapes_dims_and_parametrisation(row, K, d):
    covs = random_covariances(row, K, d)
    assert covs.shape == row.shape(K, d) == row.identity(K, d).shape
    assert len(row.dims) == covs.ndim
    assert row.per_component == ("component" in row.dims)
    assert row.matrix_valued == ("feature_bis" in row.dims)
    full = dense(row, covs, K, d)
    np.testing.assert_array_equal(full, dense_covariances(covs, row.name, K, d))
    np.testing.assert_array_equal(full, np.swapaxes(full, -1, -2))
    assert np.all(np.linalg.eigvalsh(full) > 0)
    np.testing.assert_array_equal(dense(row, row.identity(K, d), K, d),
                                  np.broadcast_to(np.eye(d), (K, d, d)))
    z = row.to_unconstrained(covs)
    assert z.shape == (row.n_parameters(K, d),)
    np.testing.assert_allclose(row.from_unconstrained(z, K, d), covs, rtol=1e-12)
    blocks = row.blocks(covs)
    b = row.block_size(d)
    assert blocks.shape[1:] == (b, b)
    np.testing.assert_array_equal(row.from_blocks(blocks, K, d), covs)
    assert row.min_dof(d) == b - 1
    cov = np.cov(blobs(seed=1, n=60, d=d).T).reshape(d, d)
    for style in ("default", "mclust"):
        assert np.shape(row.default_scale(cov, style)) in row.scale_shapes(d)
    if row.conjugate:
        assert row.pymc_distribution in ("InverseWishart", "InverseGamma")
        assert (row.pymc_distribution == "InverseWishart") == (b > 1 or row.matrix_valued)
    elif row.matrix_valued:  # a constrained orientation: the samplers refuse it
        assert row.pymc_distribution is None  # (tests/test_gibbs.py)
    else:  # VEI, EVI: NUTS in the free log coordinates (tests/test_posterior.py)
        assert row.pymc_distribution == "RestrictedInverseGamma"


@pytest.mark.parametrize("K, d", [(1, 1), (3, 2), (2, 4)])
def test_pool_is_the_adjoint_of_expand(row, K, d):
    """⟨c, pool(B)⟩ = Σ_k tr(expand(c)_k B_k) for every covariance c and symmetric B: pooling a
    per-component statistic is exactly how the structure's parameters meet it in the
    likelihood, so the conjugate update adds pool(B) to each block's scale."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(K, d, d))
    B = A + np.swapaxes(A, -1, -2)
    for seed in range(3):
        covs = random_covariances(row, K, d, seed=seed)
        pooled = np.asarray(row.pool(B))
        assert pooled.shape == covs.shape
        np.testing.assert_allclose(np.sum(covs * pooled),
                                   np.einsum("kij,kji->", dense(row, covs, K, d), B),
                                   rtol=1e-12)
    counts = row.blocks(np.asarray(row.pool(np.arange(1.0, K + 1)[:, None, None] * np.eye(d))))
    assert np.all(np.trace(counts, axis1=-2, axis2=-1) / row.block_size(d) >= 1)


def test_kernel_layout_round_trips_and_factors(row):
    covs = random_covariances(row, K, D, seed=2)
    full = dense(row, covs, K, D)
    kc = np.asarray(row.to_kernel(covs, K, D))
    assert kc.shape == ((K, D, D) if row.kernel == "dense" else (K, D))
    np.testing.assert_array_equal(row.from_kernel(kc, K, D), covs)
    expected = full if row.kernel == "dense" else np.diagonal(full, axis1=-2, axis2=-1)
    np.testing.assert_array_equal(kc, expected)
    engine = Engine(np.zeros((4, D)), None, row, K, Coordinates(np.zeros(D), 1.0))
    state = engine.from_params(MixtureParams(np.full(K, 1 / K), np.zeros((K, D)), covs))
    np.testing.assert_allclose(state.log_det, np.linalg.slogdet(full)[1], rtol=1e-12)
    if row.kernel == "dense":  # U_k = L_k⁻¹ with L_k L_kᵀ = Σ_k
        np.testing.assert_allclose(state.factor @ np.swapaxes(state.factor, -1, -2), full,
                                   rtol=1e-12)
        np.testing.assert_allclose(state.inv_factor @ state.factor,
                                   np.broadcast_to(np.eye(D), (K, D, D)), atol=1e-12)
    np.testing.assert_allclose(engine.unpack(engine.pack(state)).covs, state.covs, rtol=1e-12)
    assert np.shape(row.factor(covs)) == np.shape(covs)


def test_a_singular_covariance_is_named(row):
    covs = np.array(random_covariances(row, K, D))
    covs.reshape(-1)[0] = -1.0  # first variance negative: no longer positive definite
    with pytest.raises(SingularCovarianceError):
        row.factor(covs)
    engine = Engine(np.zeros((4, D)), None, row, K, Coordinates(np.zeros(D), 1.0))
    with pytest.raises(SingularCovarianceError, match="singular or not positive definite"):
        engine.from_params(MixtureParams(np.full(K, 1 / K), np.zeros((K, D)), covs))


@pytest.mark.parametrize("weighted", [False, True])
def test_pass_statistics_equal_direct_sums(row, weighted):
    """The compiled fused pass gives the log-likelihood, N_k, x̄_k and the scatter W_k of the
    responsibilities it computes (here in 37-row chunks, with an offset and a power-of-two
    scale), as direct sums over scipy's densities do."""
    rng = np.random.default_rng(3)
    X = blobs(seed=4, n=200, d=D)
    w = rng.uniform(0.2, 3.0, len(X)) if weighted else None
    params = MixtureParams(rng.dirichlet(np.ones(K)), X[rng.choice(200, K)],
                           random_covariances(row, K, D, seed=5))
    coords = Coordinates(X.mean(0), 4.0)
    engine = Engine(X, w, row, K, coords, chunk_rows=37)
    state = engine.from_params(coords.to_working(params))
    stats_ = engine.estep(state)
    full = dense(row, params.covariances, K, D)
    log_joint = np.log(params.weights) + np.column_stack(
        [stats.multivariate_normal.logpdf(X, m, S) for m, S in zip(params.means, full)])
    w_ = np.ones(len(X)) if w is None else w
    R = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True)) * w_[:, None]
    n_k = R.sum(0)
    xbar = R.T @ X / n_k[:, None]
    W = np.einsum("nk,knd,kne->kde", R, X[None] - xbar[:, None], X[None] - xbar[:, None])
    ll = w_ @ np.logaddexp.reduce(log_joint, axis=1) + w_.sum() * D * np.log(4.0)
    np.testing.assert_allclose(stats_.n_k, n_k, rtol=1e-12)
    assert stats_.log_likelihood == pytest.approx(ll, rel=1e-12)
    L = state.factor if row.kernel == "dense" else state.factor[..., None] * np.eye(D)
    s1 = np.einsum("kij,kj->ki", L, stats_.s1)  # back to data units: x̄ − μ = L s1 / N
    moment = stats_.moment if row.kernel == "dense" else stats_.moment[..., None] * np.eye(D)
    centred = moment - np.einsum("ki,kj->kij", stats_.s1, stats_.s1) / n_k[:, None, None]
    scatter = 16.0 * L @ centred @ np.swapaxes(L, -1, -2)  # × scale²: data units
    np.testing.assert_allclose(coords.center + 4.0 * (state.means + s1 / n_k[:, None]), xbar,
                               rtol=1e-11)
    if row.kernel == "dense" and not row.per_component:  # a shared factor: the sum over k
        np.testing.assert_allclose(scatter.sum(0), W.sum(0), rtol=1e-9)
    elif row.kernel == "dense":
        np.testing.assert_allclose(scatter, W, rtol=1e-9)
    else:  # diagonal kernels accumulate the diagonal of the scatter only
        np.testing.assert_allclose(np.diagonal(scatter, axis1=-2, axis2=-1),
                                   np.diagonal(W, axis1=-2, axis2=-1), rtol=1e-9)


# ----------------------------------------------------------------------------- the prior
def test_prior_density_is_the_normalised_product_of_its_blocks(row):
    """log p(Σ) equals the sum of scipy's inverse-Wishart (b > 1) or inverse-gamma (b = 1)
    log densities over the row's blocks; with κ0 > 0, plus scipy's normal densities of μ_k."""
    rng = np.random.default_rng(6)
    X = blobs(seed=7, n=90, d=D)
    base = bg.default_prior(X, K, row.name)
    covs = random_covariances(row, K, D, seed=8)
    means = rng.normal(size=(K, D))
    weights = np.full(K, 1.0 / K)
    b = row.block_size(D)
    blocks = row.blocks(covs)
    scales = base.block_scales(K)
    if b > 1:
        expected = sum(stats.invwishart.logpdf(S, df=base.dof, scale=P)
                       for S, P in zip(blocks, scales))
    else:
        expected = stats.invgamma.logpdf(blocks.ravel(), a=base.dof / 2,
                                         scale=scales.ravel() / 2).sum()
    expected += stats.dirichlet.logpdf(weights, np.ones(K))
    flat = bg.adjust_prior(base, {"shrinkage": 0.0})
    assert flat.logpdf(weights, means, covs) == pytest.approx(expected, rel=1e-12)
    full = dense(row, covs, K, D)
    mean_part = sum(stats.multivariate_normal.logpdf(m, base.mean, S / base.shrinkage)
                    for m, S in zip(means, full))
    assert base.logpdf(weights, means, covs) == pytest.approx(expected + mean_part, rel=1e-12)
    # the compiled copy that EM evaluates equals the definition
    for prior in (base, flat):
        engine = Engine(X, None, row, K, Coordinates(np.zeros(D), 1.0), prior)
        state = engine.from_params(MixtureParams(weights, means, covs))
        assert engine.log_prior(state) == pytest.approx(prior.logpdf(weights, means, covs),
                                                        rel=1e-12)


# ----------------------------------------------------------------------------- the M-step
def _unpack(z, row, K, d):
    a = np.append(z[: K - 1], 0.0)
    weights = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
    means = z[K - 1: K - 1 + K * d].reshape(K, d)
    return weights, means, row.from_unconstrained(z[K - 1 + K * d:], K, d)


def _pack(weights, means, covs, row):
    a = np.log(weights)[: -1] - np.log(weights[-1])
    return np.concatenate([a, np.ravel(means), row.to_unconstrained(np.asarray(covs))])


@pytest.mark.parametrize("with_prior, shrinkage", [(True, 0.0), (True, 0.7), (False, None)])
def test_the_m_step_is_the_numerical_maximiser(row, with_prior, shrinkage):
    """The closed-form update maximises the expected complete-data log posterior Q + log p,
    built from scipy's densities and maximised by BFGS on the row's unconstrained
    parametrisation (DESIGN §3: the gradient of Q + log p vanishes there)."""
    k, d = 2, D
    rng = np.random.default_rng(0)
    X = blobs(seed=1, n=60, d=d, K=k)
    w = rng.uniform(0.5, 2.0, size=len(X))
    R = rng.dirichlet(np.ones(k), size=len(X))
    base = bg.default_prior(X, k, row.name)
    prior = bg.GMMPrior(mean=rng.normal(size=d), shrinkage=shrinkage, dof=base.dof + 1.3,
                        scale=base.scale * 2, concentration=[1.5, 3.0],
                        covariance=row.name) if with_prior else None
    closed = bg.fit_map(X, k, row.name, prior=prior, init=R, sample_weight=w, max_iter=0,
                        warn_convergence=False)

    def neg_q(z):  # from tests/reference.py: scipy's densities, written case by case
        weights, means, covs = _unpack(z, row, k, d)
        log_dens = component_log_densities(X, means, covs, row.name)
        q = np.sum(w[:, None] * R * (np.log(weights) + log_dens))
        return -(q + (log_prior(prior, weights, means, covs, row.name) if prior else 0.0))

    z_hat = _pack(closed.weights, closed.means, closed.covariances, row)
    start = z_hat + rng.normal(scale=0.3, size=z_hat.size)
    opt = minimize(neg_q, start, method="BFGS", options={"gtol": 1e-7, "maxiter": 5000})
    # the closed form is at least as good as the optimiser's answer (to rounding of Q) ...
    assert -neg_q(z_hat) >= -opt.fun - 1e-9 * abs(opt.fun)
    # ... and it is the same point: with gtol 1e-7 and curvature O(N) the optimiser's
    # parameters are within ~1e-7 / N of the maximiser; 1e-5 leaves room for BFGS's line search
    np.testing.assert_allclose(_pack(*_unpack(opt.x, row, k, d), row), z_hat, atol=1e-5)
