"""The EM iteration: plain EM and SQUAREM from a start, to a fixed point.

Each EM-map evaluation F(θ) is one fused E-pass and one closed-form M-step
(:meth:`bayesgmm.estep.Engine.em_map`).  SQUAREM (Varadhan & Roland 2008, scheme S3)
extrapolates from two EM steps in unconstrained coordinates, only in EM's linear regime and
with a capped step, and keeps the extrapolation only if the log posterior does not fall — so
the sequence is monotone and stays in plain EM's basin of attraction.  EM stops when the
estimated distance to the fixed point (the last plain step divided by one minus its observed
contraction rate) falls below ``tol`` (derivation §8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .covariance import SingularCovarianceError
from .estep import Engine, State

__all__ = ["Run", "RUNS", "ACCELERATIONS", "run_plain", "run_squarem"]

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


class Run(NamedTuple):
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


def run_plain(engine: Engine, state: State, tol: float, max_iter: int) -> Run:
    history, n_iter, previous = [], 0, None
    while True:
        new, log_post, log_lik = engine.em_map(state)
        history.append(log_post)
        if n_iter >= max_iter:
            return Run(state, log_lik, history, n_iter, False)
        step = engine.step(new, state)
        if _converged(step, previous, tol):
            return Run(state, log_lik, history, n_iter, True)
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


def run_squarem(engine: Engine, state: State, tol: float, max_iter: int) -> Run:
    """SQUAREM (S3) kept in plain EM's basin and monotone: extrapolate only in the linear
    regime (:func:`_linear_regime`) with a capped step; keep the extrapolated point θ' (after one
    stabilising EM step) only if :func:`_accept` allows, else the plain iterate F(F(θ0)), and
    shrink the cap.  A cycle costs two or three EM-map evaluations."""
    history, n_iter, step_max, previous_rate = [], 0, 1.0, np.inf
    while True:
        first, log_post0, log_lik0 = engine.em_map(state)
        history.append(log_post0)
        if n_iter >= max_iter:
            return Run(state, log_lik0, history, n_iter, False)
        second, log_post1, log_lik1 = engine.em_map(first)
        n_iter += 2
        u0, u1, u2 = engine.pack(state), engine.pack(first), engine.pack(second)
        r, step = u1 - u0, u2 - u1
        v = step - r
        converged = _converged(float(np.max(np.abs(step))), float(np.max(np.abs(r))), tol)
        if converged or n_iter >= max_iter:  # F(θ1) was evaluated for log p(θ1) and the step
            history.append(log_post1)
            return Run(first, log_lik1, history, n_iter - 1, converged)
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


#: the EM iteration by its acceleration
RUNS = {"squarem": run_squarem, None: run_plain}
