"""MAP-EM for Gaussian mixtures under the conjugate prior of :mod:`bayesgmm.priors`.

Each EM-map evaluation F(θ) is one fused E-pass and one closed-form M-step
(:class:`~bayesgmm.estep.Engine`).  The iteration is accelerated by SQUAREM (Varadhan & Roland
2008, scheme S3): two EM steps define an extrapolation in an unconstrained parametrisation, which
is stabilised by one more EM step and accepted only if the log posterior does not fall, so the
sequence stays monotone and reaches the same fixed point as plain EM.  EM stops when the
estimated distance to that fixed point — the last plain step divided by one minus its observed
contraction rate — falls below ``tol``.  EM runs in working coordinates
(:class:`~bayesgmm.estep.Coordinates`); the fit is equivariant under that change of units.
Equations are numbered as in ``docs/derivation.md``.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, NamedTuple

import numpy as np
from threadpoolctl import ThreadpoolController

from ._validation import (
    check_data,
    check_n_components,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    check_tolerance,
    feature_names_of,
)
from .covariance import (
    CovarianceStructure,
    SingularCovarianceError,
    check_covariances,
    get_structure,
)
from .estep import Engine, MixtureParams, State, working_coordinates
from .priors import resolve_prior
from .result import MixtureFit
from . import starts as start_methods

__all__ = ["fit_map", "ConvergenceWarning", "ACCELERATIONS"]

#: the accelerations of the EM iteration: SQUAREM (default) or none (plain EM)
ACCELERATIONS = ("squarem", None)
#: SQUAREM's step-length cap starts at 1 and is multiplied or divided by this (Varadhan &
#: Roland 2008; shrunk after any rejected extrapolation, not only a capped one) ...
_STEP_FACTOR = 4.0
#: ... up to this.  S3's step is ≈ 1/(1 − ρ): longer steps are taken only where EM drifts
#: with ρ ≈ 1, far from any fixed point, and there they carried EM into other basins
#: (benchmarks/results/squarem.md: with a cap of 256, 10 of 80 starts ended elsewhere)
_MAX_STEP = 8.0
#: extrapolate only in EM's linear regime: the last two plain steps point the same way
#: (cosine at least this) and shrink, in this cycle and the one before
_COLLINEAR = 0.99


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before its estimated distance to the fixed point fell below
    tol."""


class _Run(NamedTuple):
    """One EM run, in working coordinates."""

    state: State
    log_likelihood: float  # with the user's sample weights, working coordinates
    history: list  # log posterior of every accepted iterate, never decreasing
    n_iter: int  # EM-map evaluations (E-pass + M-step)
    converged: bool

    @property
    def log_posterior(self) -> float:
        return float(self.history[-1])


#: a plain EM step this small (in working unconstrained coordinates) is rounding: the fixed
#: point is reached as closely as float64 allows, whatever the contraction rate looks like
_ROUNDING_STEP = 64 * np.finfo(float).eps


def _converged(step: float, previous: float | None, tol: float) -> bool:
    """The estimated distance to the fixed point, step / (1 − ρ̂) with ρ̂ = step / previous,
    is below tol (a contraction: ρ̂ < 1), or the step is at the rounding floor."""
    if tol == 0.0:
        return False  # run every iteration asked for
    if step <= _ROUNDING_STEP:
        return True
    if previous is None or not previous > 0:
        return False
    rate = step / previous
    return rate < 1.0 and step / (1.0 - rate) < tol


def _run_plain(engine: Engine, state: State, tol: float, max_iter: int) -> _Run:
    history, n_iter, previous = [], 0, None
    while True:
        new, log_post, log_lik = engine.em_map(state)
        history.append(log_post)
        if n_iter >= max_iter:
            return _Run(state, log_lik, history, n_iter, False)
        step = engine.step(new, state)
        if _converged(step, previous, tol):
            return _Run(state, log_lik, history, n_iter, True)
        state, previous, n_iter = new, step, n_iter + 1


def _accept(log_post: float, log_post0: float, residual: float, step0: float) -> bool:
    """Keep an extrapolated point θ' if it raises the log posterior by more than rounding; if
    the change is within rounding (near the fixed point, where log p is flat), only if it also
    brings EM closer to its fixed point: ‖F(θ') − θ'‖ ≤ ‖F(θ0) − θ0‖.  (Comparing log
    posteriors alone lets the iterate wander ~√ε around the fixed point.)"""
    rounding = 1e-12 * (1.0 + abs(log_post0))
    if log_post > log_post0 + rounding:
        return True
    return log_post >= log_post0 - rounding and residual <= step0


def _linear_regime(r: np.ndarray, step: np.ndarray, previous_rate: float) -> tuple[bool, float]:
    """Whether two plain EM steps r and then ``step`` look like EM's linear (geometrically
    contracting) regime near a fixed point — where SQUAREM's extrapolation is justified — and
    their rate ‖step‖/‖r‖."""
    rr, ss = float(r @ r), float(step @ step)
    if not rr > 0:
        return False, 0.0
    rate = math.sqrt(ss / rr)
    cosine = float(r @ step) / math.sqrt(rr * ss) if ss > 0 else 1.0
    return cosine >= _COLLINEAR and rate < 1.0 and previous_rate < 1.0, rate


def _run_squarem(engine: Engine, state: State, tol: float, max_iter: int) -> _Run:
    """SQUAREM (S3) kept in plain EM's basin and monotone: extrapolate only in the linear
    regime (:func:`_linear_regime`) with a capped step; keep the extrapolated point θ' (after one
    stabilising EM step) only if :func:`_accept` allows, else the plain iterate F(F(θ0)), and
    shrink the cap.  A cycle costs two or three EM-map evaluations."""
    history, n_iter, step_max, previous_rate = [], 0, 1.0, np.inf
    while True:
        first, log_post0, log_lik0 = engine.em_map(state)
        history.append(log_post0)
        if n_iter >= max_iter:
            return _Run(state, log_lik0, history, n_iter, False)
        second, log_post1, log_lik1 = engine.em_map(first)
        n_iter += 2
        u0, u1, u2 = engine.pack(state), engine.pack(first), engine.pack(second)
        r, step = u1 - u0, u2 - u1
        v = step - r
        converged = _converged(float(np.max(np.abs(step))), float(np.max(np.abs(r))), tol)
        if converged or n_iter >= max_iter:  # F(θ1) was evaluated for log p(θ1) and the step
            history.append(log_post1)
            return _Run(first, log_lik1, history, n_iter - 1, converged)
        linear, previous_rate = _linear_regime(r, step, previous_rate)
        if not linear:
            state = second
            continue
        vv = float(v @ v)
        alpha = min(step_max, max(1.0, math.sqrt(float(r @ r) / vv))) if vv > 0 else step_max
        accepted = False
        try:
            extrapolated = engine.unpack(u0 + 2.0 * alpha * r + alpha * alpha * v)
            stabilised, log_post_x, _ = engine.em_map(extrapolated)
            n_iter += 1
            residual = engine.step(stabilised, extrapolated)
            accepted = _accept(log_post_x, log_post0, residual, float(np.max(np.abs(r))))
        except SingularCovarianceError:
            pass
        if accepted:
            state = stabilised
            if alpha == step_max:
                step_max = min(step_max * _STEP_FACTOR, _MAX_STEP)
        else:
            state = second
            step_max = max(1.0, step_max / _STEP_FACTOR)


_RUNS = {"squarem": _run_squarem, None: _run_plain}
#: emEM (Biernacki, Celeux & Govaert 2003): short runs from many starts, the best continued.
#: EM-map evaluations of each short run, and how many short runs are continued to convergence
_SHORT_RUN = 10
_CONTINUED = 3
#: starts of the random methods when n_init is not given: restarts of "kmeans++"/"random", or
#: random short runs of "emem"/"auto"
_DEFAULT_N_INIT = {"kmeans++": 1, "random": 1, "hc": 1, "emem": 20, "auto": 20}
_BLAS = []


def _one_blas_thread():
    """BLAS limited to one thread while EM runs (DESIGN §7).  The controller scans the loaded
    libraries once per process (a scan per fit cost ~2 ms on small fits)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _short_runs(engine: Engine, X, K: int, init: str, n_init: int, rng, w, run_em):
    """emEM's candidates: ``n_init`` random starts and one k-means++ start (and, for "auto",
    the deterministic "hc" start), each run for a few EM steps; the best few end states, by
    log posterior, to be continued.  A start that breaks down (maximum likelihood with an
    emptied component) is dropped."""
    sources = [("hc", 1)] if init == "auto" else []
    sources += [("kmeans++", 1), ("random", n_init)]
    runs = []
    for method, count in sources:
        for R in start_methods.responsibility_starts(X, K, method, count, rng, w):
            try:
                runs.append(run_em(engine, engine.start_from_responsibilities(R), 0.0,
                                   _SHORT_RUN))
            except SingularCovarianceError:
                continue
    if not runs:
        raise SingularCovarianceError(None, "every start broke down in its first EM steps")
    runs.sort(key=lambda run: run.log_posterior, reverse=True)
    return [run.state for run in runs[:_CONTINUED]]


def _starting_states(init, engine: Engine, X, K: int, n_init: int, rng, w, run_em, coords,
                     structure):
    """The states EM runs from, each to convergence (made lazily)."""
    n, d = X.shape
    if isinstance(init, str):
        if init not in start_methods.START_METHODS:
            raise ValueError(f"init={init!r} is not a method; use one of "
                             f"{start_methods.START_METHODS}, an (n_samples, K) responsibility "
                             "matrix, or initial parameters")
        if init in ("emem", "auto"):
            yield from _short_runs(engine, X, K, init, n_init, rng, w, run_em)
            return
        for R in start_methods.responsibility_starts(X, K, init, n_init, rng, w):
            yield engine.start_from_responsibilities(R)
    elif isinstance(init, (np.ndarray, list, tuple)):
        yield engine.start_from_responsibilities(start_methods.check_responsibilities(init, n,
                                                                                      K))
    else:
        yield engine.from_params(coords.to_working(_check_params(init, K, d, structure)))


def _singular_error(exc: SingularCovarianceError, K: int, covariance: str) -> ValueError:
    return ValueError(
        f"maximum-likelihood EM (prior=None) broke down: {exc}, so the likelihood is unbounded "
        f"there. Fit with a prior instead, e.g. prior='default' (bg.default_prior(X, {K}, "
        f"covariance={covariance!r})), which keeps every covariance positive definite."
    )


def _check_params(init, K: int, d: int, structure: CovarianceStructure) -> MixtureParams:
    get = (lambda k: getattr(init, k)) if not isinstance(init, Mapping) else init.__getitem__
    try:
        weights, means, covs = (np.array(get(k), dtype=float)
                                for k in ("weights", "means", "covariances"))
    except (KeyError, AttributeError):
        raise ValueError("init parameters need 'weights', 'means' and 'covariances'") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"init parameters must be numeric arrays: {exc}") from None
    for name, arr, shape in (("weights", weights, (K,)), ("means", means, (K, d))):
        if arr.shape != shape:
            raise ValueError(f"init {name} must have shape {shape} for {structure.name!r}, "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"init {name} must be finite")
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError("init weights must be non-negative and sum to 1")
    check_covariances(structure, covs, K, d, "init covariances")
    return MixtureParams(weights, means, covs)


def fit_map(X, n_components: int, covariance: str = "full", prior="default", *,
            init="kmeans++", n_init: int | None = None, tol: float = 1e-8,
            max_iter: int = 1000,
            sample_weight=None, random_state=None, n_threads: int = 1,
            acceleration: str | None = "squarem", warn_convergence: bool = True):
    """Fit a Gaussian mixture by MAP-EM (maximum a posteriori under the conjugate prior).

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Data; a pandas DataFrame's column names are kept as feature names.
    n_components : int
        K, the number of components.
    covariance : {"full", "tied", "diag", "spherical"}
    prior : GMMPrior, "default", "mclust" or None
        The prior; a string builds :func:`default_prior` with that style from X.  ``None`` runs
        plain maximum-likelihood EM, which stops with an error if a covariance becomes singular.
    init : str, array (n_samples, K), or parameters
        A start method: ``"kmeans++"``, ``"random"``, ``"hc"`` (deterministic model-based
        hierarchical agglomeration, as mclust), ``"emem"`` (short EM runs from many starts, the
        best few continued; Biernacki, Celeux & Govaert 2003) or ``"auto"`` (emEM with the
        "hc" start among the candidates); see :mod:`bayesgmm.starts`.  Or a responsibility
        matrix (EM then starts with an M-step, as mclust's ``me(z=)``), or parameters (a
        mapping or object with ``weights``, ``means``, ``covariances``, e.g. another fit),
        which start with an E-step.
    n_init : int, optional
        For "kmeans++" and "random", the starts, each run to convergence (default 1); for
        "emem" and "auto", the random short runs (default 20).  The fit with the highest log
        posterior is kept.
    tol : float
        EM stops when its estimated distance to the fixed point — the last plain EM step,
        divided by one minus the contraction rate of the last two — falls below ``tol``.  The
        step is measured in the largest entry of the change of (log π_k, μ_k in units of the
        data's spread, log-Cholesky factors / log variances): ``tol`` bounds, roughly, the
        relative error of every parameter with respect to EM's fixed point.  ``tol=0`` runs
        exactly ``max_iter`` EM-map evaluations.
    max_iter : int
        Maximum number of EM-map evaluations (E-pass and M-step) per start.
    sample_weight : array-like, shape (n_samples,), optional
        Non-negative observation weights (the likelihood term of row n is multiplied by w_n).
    random_state : int, numpy Generator or None
        Seeds every random choice; the same seed reproduces the fit bit for bit.
    n_threads : int
        Blocks of rows are processed on this many threads (BLAS itself is kept at one thread).
    acceleration : {"squarem", None}
        SQUAREM (default: 3–10 times fewer EM-map evaluations on slow problems, the same fixed
        point, a monotone log posterior) or None for plain EM.
    warn_convergence : bool
        Warn with :class:`ConvergenceWarning` when ``max_iter`` is reached first.

    Returns
    -------
    MixtureFit
        ``n_iter`` counts EM-map evaluations; ``history`` holds the log posterior of every
        accepted iterate (never decreasing).
    """
    feature_names = feature_names_of(X)
    X = check_data(X)
    n, d = X.shape
    K = check_n_components(n_components, n)
    structure = get_structure(covariance)
    w = check_sample_weight(sample_weight, n)
    n_init = None if n_init is None else check_positive_int(n_init, "n_init")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    n_threads = check_positive_int(n_threads, "n_threads")
    tol = check_tolerance(tol)
    if acceleration not in _RUNS:
        raise ValueError(f"acceleration must be 'squarem' or None (plain EM), got "
                         f"{acceleration!r}")
    rng = np.random.default_rng(check_random_state(random_state))
    coords = working_coordinates(X, w)
    prior = resolve_prior(prior, X, K, structure.name, sample_weight=w)
    if prior is not None and np.any(prior.concentration_for(K) < 1):
        raise ValueError(
            "MAP-EM needs concentration α_k ≥ 1 (for α_k < 1 the posterior mode of π lies on "
            "the boundary of the simplex); use α ≥ 1 or the full posterior"
        )
    working_prior = None if prior is None else prior.rescaled(coords.center, coords.scale)
    engine = Engine(X, w, structure, K, coords, working_prior, n_threads=n_threads)

    run_em = _RUNS[acceleration]
    if n_init is None:
        n_init = _DEFAULT_N_INIT.get(init, 1) if isinstance(init, str) else 1
    best = None
    with _one_blas_thread():
        try:
            for start in _starting_states(init, engine, X, K, n_init, rng, w, run_em, coords,
                                          structure):
                run = run_em(engine, start, tol, max_iter)
                if best is None or run.log_posterior > best.log_posterior:
                    best = run
        except SingularCovarianceError as exc:
            if prior is None:
                raise _singular_error(exc, K, structure.name) from None
            raise
    if warn_convergence and not best.converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} EM steps (estimated distance to the "
            f"fixed point above tol={tol}); raise max_iter or check the fit", ConvergenceWarning,
            stacklevel=2)
    total_weight = float(n if w is None else w.sum())
    ll_offset = total_weight * coords.log_density_offset(d)
    lp_offset = ll_offset + (0.0 if prior is None
                             else coords.log_prior_offset(structure, K, d, prior))
    params = coords.to_data(engine.params(best.state))
    return MixtureFit(
        weights=params.weights, means=params.means, covariances=params.covariances,
        covariance_type=structure.name, prior=prior,
        log_likelihood=best.log_likelihood + ll_offset,
        log_posterior=best.log_posterior + lp_offset,
        history=np.array(best.history) + lp_offset, n_iter=best.n_iter,
        converged=best.converged, n_samples=total_weight, feature_names=feature_names,
    )
