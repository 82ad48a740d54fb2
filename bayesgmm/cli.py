"""Command-line interface: ``bayesgmm demo`` (more commands arrive with the study specs)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .datasets import load_dataset
from .em import fit_map

__all__ = ["main", "format_fit"]


def format_fit(fit, title: str = "") -> str:
    """A readable plain-text summary of a :class:`~bayesgmm.MixtureFit`."""
    names = fit.feature_names or tuple(f"x{j}" for j in range(fit.n_features))
    cov = fit.covariance_matrices
    prior = "none (maximum likelihood)" if fit.prior is None else (
        f"κ0={fit.prior.shrinkage:g}, ν0={fit.prior.dof:g}, α={fit.prior.concentration}")
    lines = [title] if title else []
    lines += [
        f"MAP-EM fit: K={fit.n_components}, covariance={fit.covariance!r}, prior: {prior}",
        f"  converged={fit.converged} after {fit.n_iter} iterations",
        f"  log posterior = {fit.log_posterior:.6f}   log likelihood = {fit.log_likelihood:.6f}",
    ]
    for k in range(fit.n_components):
        sd = np.sqrt(np.diag(cov[k]))
        corr = cov[k] / np.outer(sd, sd)
        mean = ", ".join(f"{n}={m:.4g}" for n, m in zip(names, fit.means[k]))
        lines.append(f"  component {k}: weight {fit.weights[k]:.4f}; mean {mean}")
        lines.append("    sd " + ", ".join(f"{n}={s:.4g}" for n, s in zip(names, sd))
                     + (f"; corr({names[0]}, {names[1]})={corr[0, 1]:.3f}"
                        if fit.n_features == 2 else ""))
    return "\n".join(lines)


def _demo(args) -> int:
    X = load_dataset("faithful")
    fit = fit_map(X, n_components=2, covariance="full", prior="default",
                  random_state=args.seed, tol=1e-10)
    print(format_fit(fit, "Old Faithful (272 eruptions), bundled with bayesgmm"))
    print(f"  BIC = {fit.bic(X):.3f}  (lower is better)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bayesgmm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the bundled Old Faithful data (K=2, full)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
