"""The ``bayesgmm`` command: MAP-EM fits, posteriors, comparisons and prior-sensitivity studies
from a study spec (``models/*.toml``), a CSV file or a bundled data set.

Every command takes ``--seed``, ``--quiet``, ``--json`` and ``--debug``; bad input exits with
status 2 and one line naming the problem (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from importlib import resources
from pathlib import Path

from ._io import atomic_write, check_output_folder
from .covariance import STRUCTURE_NAMES, STRUCTURES
from .datasets import DATASETS
from .result import FIT_SUFFIXES
from .sampling import SAMPLERS
from .spec import load_spec, spec_from_dict
from .study import run_study, stages_of

__all__ = ["main", "build_parser"]

_PACKAGE_DIR = Path(__file__).resolve().parent
#: the bundled spec `bayesgmm demo` runs (a link to models/old_faithful.toml in the repository)
DEMO_SPEC = "old_faithful.toml"
#: sampler settings of `bayesgmm demo --quick`
QUICK_SAMPLER = {"draws": 200, "tune": 200, "chains": 2}


class _Output:
    """Where a command's words go: stage messages to stderr, results to stdout, nothing but
    JSON on stdout with --json, nothing at all with --quiet."""

    def __init__(self, args):
        self.quiet, self.json = args.quiet, args.json
        self.progress = not (args.quiet or args.json)

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"bayesgmm: {message}", file=sys.stderr, flush=True)

    def result(self, text: str, data: dict) -> None:
        if self.json:
            print(json.dumps(data, indent=1, default=float))
        elif not self.quiet:
            print(text)


# ---------------------------------------------------------------------- building the spec
def _grid_option(text: str) -> tuple[str, list[float]]:
    axis, sep, values = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return axis.strip(), [float(v) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not AXIS=v1,v2,... (e.g. shrinkage=0.01,0.1,1)") from None


def _components(text: str) -> list[int]:
    """K or a range "a-b" of K, for -k."""
    low, sep, high = text.partition("-")
    try:
        values = list(range(int(low), int(high) + 1)) if sep else [int(low)]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is not K or a range a-b (e.g. 3 or 1-9)")
    return values


def _overrides(args) -> dict:
    """The spec entries set on the command line."""
    out: dict = {}

    def put(table, key, value):
        if value is not None:
            (out.setdefault(table, {}) if table else out)[key] = value

    put(None, "seed", args.seed)
    ks = getattr(args, "n_components", None)
    put("model", "n_components", sorted({k for group in ks for k in group}) if ks else None)
    put("model", "covariance", getattr(args, "covariance", None))
    put("prior", "style", getattr(args, "prior", None))
    columns = getattr(args, "columns", None)
    put("data", "columns", columns.split(",") if columns else None)
    put("data", "standardize", True if getattr(args, "standardize", False) else None)
    put("data", "header", False if getattr(args, "no_header", False) else None)
    for key in ("draws", "tune", "chains", "target_accept", "thin"):
        put("sampler", key, getattr(args, key, None))
    put("sampler", "method", getattr(args, "sampler", None))
    grid = getattr(args, "grid", None)
    put("sensitivity", "grid", dict(grid) if grid else None)
    return out


def _spec(args):
    """The study: a spec file with the command line's overrides, or a spec built from a data
    file / bundled data set and the options."""
    overrides = _overrides(args)
    source = args.source
    if source.endswith(".toml"):
        return load_spec(source, overrides)
    if "n_components" not in overrides.get("model", {}):
        raise ValueError(f"-k/--n-components is required when the source ({source!r}) is data, "
                         "not a study spec")
    data = {"dataset": source} if source in DATASETS else {"path": source}
    if "path" in data and not Path(source).is_file():
        raise FileNotFoundError(f"data file {source!r} not found (nor is it a bundled data set: "
                                f"{', '.join(DATASETS)}, or a .toml spec)")
    raw = {"name": Path(source).stem, **overrides}
    raw["data"] = {**data, **overrides.get("data", {})}
    return spec_from_dict(raw, "<command line>")


def _spec_file(args):
    if not args.source.endswith(".toml"):
        raise ValueError(f"SPEC must be a study spec file (.toml), got {args.source!r}; for a "
                         "CSV file use `bayesgmm compare` or `bayesgmm fit`")
    return _spec(args)


def _bundled_spec(overrides: dict):
    with resources.as_file(resources.files("bayesgmm.data").joinpath(DEMO_SPEC)) as path:
        return load_spec(path, overrides)


# ---------------------------------------------------------------------- commands
def _check_suffix(path, allowed) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.suffix not in allowed:
        raise ValueError(f"--out {str(path)!r} must end in {' or '.join(allowed)}")
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder; give a file name")
    return path


def _cmd_fit(args, out: _Output) -> int:
    target = _check_suffix(args.out, FIT_SUFFIXES)
    spec = _spec(args)
    result = run_study(spec, ("fit",), progress=out.progress, log=out.log)
    fit, X = result.fit, result.data
    as_json, bic = fit.to_dict(), fit.bic(X)
    if target is not None:
        fit.save(target)
    text = fit.summary(f"{spec.name}: {len(X)} rows × {X.shape[1]} columns")
    text += f"\n  BIC = {bic:.3f}  (lower is better)"
    if result.selection is not None:
        text += "\n\n" + result.selection.summary() + "\n" + \
            result.selection.marked_table.to_string(index=False)
    if target is not None:
        text += f"\nwrote {target}"
    data = {"fit": as_json, "bic": bic, "output": str(target) if target else None,
            "selection": None if result.selection is None
            else result.selection.marked_table.to_dict(orient="records")}
    out.result(text, data)
    return 0


def _cmd_select(args, out: _Output) -> int:
    plot = _check_suffix(args.plot, (".png", ".pdf", ".svg"))
    if args.covariance is None and not args.source.endswith(".toml"):
        args.covariance = list(STRUCTURES)  # as mclust: every structure
    spec = _spec(args)
    result = run_study(spec, ("fit",), progress=out.progress, log=out.log)
    selection = result.selection
    if selection is None:
        raise ValueError("one candidate only: give several K (e.g. -k 1-9) or structures")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        ax = selection.plot()
        atomic_write(plot, _figure_bytes(ax.figure, plot.suffix[1:]))
    text = selection.summary() + "\n\n" + selection.marked_table.to_string(index=False)
    out.result(text + (f"\nwrote {plot}" if plot else ""), {
        "summary": selection.summary(), "table": selection.marked_table.to_dict(orient="records"),
        "best": selection.best.to_dict(), "plot": str(plot) if plot else None})
    return 0


def _figure_bytes(fig, fmt: str) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _cmd_sample(args, out: _Output) -> int:
    target = _check_suffix(args.out, (".nc",))
    spec = _spec(args)
    result = run_study(spec, ("fit", "sample"), progress=out.progress, log=out.log)
    if target is not None:
        from ._compat import inference_data_bytes

        atomic_write(target, inference_data_bytes(result.idata))
    from ._compat import summary as posterior_summary
    from .scales import SUMMARY_VARIABLES

    summary = posterior_summary(result.idata, [v for v in SUMMARY_VARIABLES
                                               if v in result.idata.posterior])
    health = json.loads(result.idata.posterior.attrs["sampler_health"])
    text = summary.to_string() + (f"\nwrote {target}" if target else
                                  "\n(no file written; pass --out posterior.nc to keep the draws)")
    out.result(text, {"summary": summary.reset_index().to_dict(orient="records"),
                      "sampler_health": health, "output": str(target) if target else None})
    return 0


def _report_command(stages):
    """`compare`, `sweep`, `run` and `demo`: run the stages, write the report folder."""

    def command(args, out: _Output) -> int:
        spec = args.make_spec(args)
        from .report import write_report

        folder = check_output_folder(args.out or f"{spec.name}_report")
        result = run_study(spec, stages(spec) if callable(stages) else stages,
                           progress=out.progress, log=out.log)
        out.log(f"writing the report to {folder}/")
        written = write_report(result, folder, command=["bayesgmm", *args.argv])
        summary = [f"Report: {written / 'README.md'}"]
        if result.report is not None:
            summary.append(result.report.summary())
        out.result("\n".join(summary), {
            "report": str(written), "files": sorted(str(p.relative_to(written))
                                                    for p in written.rglob("*") if p.is_file()),
            "log_posterior": result.fit.log_posterior,
            "summary": result.report.summary() if result.report is not None else None})
        return 0

    return command


def _sweep_stages(spec):
    if spec.sensitivity is None or spec.sensitivity.grid is None:
        raise ValueError("no sensitivity grid: give --grid AXIS=v1,v2,... (e.g. "
                         "--grid shrinkage=0.01,0.1,1) or a spec with a [sensitivity] grid")
    return ("fit", "sensitivity")


def _demo_spec(args):
    overrides = _overrides(args)
    if args.quick:
        overrides["sampler"] = {**QUICK_SAMPLER, **overrides.get("sampler", {})}
    return _bundled_spec(overrides)


# ---------------------------------------------------------------------- parser
def _common(parser) -> None:
    group = parser.add_argument_group("output and reproducibility")
    group.add_argument("--seed", type=int, help="random seed of EM restarts, the sampler and the "
                       "sweep (default: the spec's, else 0)")
    group.add_argument("--quiet", action="store_true", help="print nothing but errors")
    group.add_argument("--json", action="store_true",
                       help="print the result as JSON on stdout (for scripts)")
    group.add_argument("--debug", action="store_true", help="show tracebacks and all warnings")


def _source(parser) -> None:
    parser.add_argument("source", help="a study spec (.toml), a CSV file, or a bundled data set "
                        f"({', '.join(DATASETS)})")
    group = parser.add_argument_group("model (override the spec's)")
    group.add_argument("-k", "--n-components", type=_components, nargs="+", metavar="K",
                       help="number of components, or a range such as 1-9; several values "
                            "choose one by BIC (bg.select_model)")
    group.add_argument("--covariance", choices=STRUCTURE_NAMES, nargs="+",
                       help="covariance structure(s); several are compared by BIC")
    group.add_argument("--prior", choices=["default", "mclust", "none"],
                       help="style of the data-scaled prior; 'none' = maximum likelihood")
    group.add_argument("--columns", help="comma-separated data columns (default: all)")
    group.add_argument("--no-header", action="store_true",
                       help="the CSV file has no header row (columns are named x0, x1, …)")
    group.add_argument("--standardize", action="store_true", help="z-score every column")


def _auto_or_int(text: str):
    """``--thin``'s value: "auto" or an integer (the spec's check judges it)."""
    try:
        return int(text)
    except ValueError:
        return text


def _sampler(parser) -> None:
    group = parser.add_argument_group("sampler (override the spec's)")
    group.add_argument("--sampler", choices=SAMPLERS,
                       help="the conjugate Gibbs sampler (no compilation; needs prior "
                            "shrinkage > 0), NUTS in PyMC, or auto (default: Gibbs when the "
                            "shrinkage is > 0 and the structure allows, else NUTS)")
    group.add_argument("--draws", type=int, help="kept draws per chain")
    group.add_argument("--tune", type=int, help="tuning steps per chain")
    group.add_argument("--chains", type=int, help="number of chains")
    group.add_argument("--target-accept", type=float, metavar="P",
                       help="NUTS target acceptance in (0, 1); raise it if there are divergences")
    group.add_argument("--thin", type=_auto_or_int, metavar="N",
                       help="Gibbs: sweeps per kept draw, or auto (default: the burn-in's "
                            "autocorrelation time)")


def _folder(parser, default: str) -> None:
    parser.add_argument("--out", help=f"report folder (default: {default}); an earlier report "
                        "there is replaced, any other non-empty folder is refused")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesgmm",
        description="Bayesian Gaussian mixtures: MAP-EM fits, posteriors, their comparison and "
                    "prior-sensitivity studies, from a study spec (models/*.toml), a CSV file or "
                    "a bundled data set.",
        epilog="`bayesgmm COMMAND --help` describes each command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, run, *, make_spec=_spec):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run, make_spec=make_spec)
        return p

    p = command("fit", "MAP-EM fit: print the estimate, optionally write it as JSON or netCDF",
                _cmd_fit)
    _source(p)
    p.add_argument("--out", help="write the fit to FILE.nc, FILE.npz or FILE.json "
                   "(bg.load reads each)")
    _common(p)

    p = command("select", "model selection: every K and covariance structure by BIC (or the "
                "spec's criterion), as mclust's Mclust()", _cmd_select)
    _source(p)
    p.add_argument("--plot", help="write the BIC plot to FILE.png (or .pdf, .svg)")
    _common(p)

    p = command("sample", "sample the full posterior from the MAP-EM estimate (NUTS or Gibbs)",
                _cmd_sample)
    _source(p)
    _sampler(p)
    p.add_argument("--out", help="write the posterior (ArviZ InferenceData) to FILE.nc")
    _common(p)

    p = command("compare", "MAP-EM and the posterior side by side: a report folder",
                _report_command(("fit", "sample", "compare")))
    _source(p)
    _sampler(p)
    _folder(p, "<name>_report")
    _common(p)

    p = command("sweep", "prior-sensitivity study on the EM path: a sweep over a grid of "
                "hyperparameters and power-scaling, as a report folder",
                _report_command(_sweep_stages))
    _source(p)
    p.add_argument("--grid", type=_grid_option, action="append", metavar="AXIS=v1,v2,...",
                   help="a grid axis (shrinkage, dof, scale (a multiplier on Ψ0), "
                        "concentration); repeat for more axes; replaces the spec's grid")
    _folder(p, "<name>_report")
    _common(p)

    p = command("run", "run everything a study spec asks for into a report folder",
                _report_command(stages_of), make_spec=_spec_file)
    p.add_argument("source", metavar="SPEC", help="a study spec (.toml), e.g. models/iris.toml")
    _sampler(p)
    _folder(p, "<name>_report")
    _common(p)

    p = command("demo", "the bundled Old Faithful study (models/old_faithful.toml): fit, "
                "posterior, comparison and prior sensitivity, into a report folder",
                _report_command(stages_of), make_spec=_demo_spec)
    p.add_argument("--quick", action="store_true",
                   help=f"a short run ({QUICK_SAMPLER['chains']} chains × "
                        f"{QUICK_SAMPLER['draws']} draws) to try things out")
    _sampler(p)
    p.add_argument("--out", default="demo_output",
                   help="report folder (default: demo_output); an earlier report is replaced")
    _common(p)
    return parser


# ---------------------------------------------------------------------- main
def _show_warning(debug: bool, quiet: bool):
    """One line per warning; without --debug only bayesgmm's own (not its libraries')."""

    def show(message, category, filename, lineno, file=None, line=None):
        from_us = str(filename).startswith(str(_PACKAGE_DIR)) or category.__module__.startswith(
            "bayesgmm")
        if quiet or not (debug or from_us):
            return
        text = " ".join(str(message).split())
        print(f"bayesgmm: warning: {text}", file=sys.stderr)

    return show


def main(argv=None) -> int:
    """Entry point of ``bayesgmm`` and ``python -m bayesgmm``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    out = _Output(args)
    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning(args.debug, args.quiet)
    if args.quiet or args.json:
        logging.getLogger("pymc").setLevel(logging.ERROR)
    handler = _log_handler(out)
    try:
        return args.run(args, out)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        if _caused_by_interrupt(exc):  # Ctrl-C surfacing through compiled code
            return _interrupted()
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (ValueError, TypeError, OSError)):
            print(f"bayesgmm: error: {message}", file=sys.stderr)
            return 2
        print(f"bayesgmm: unexpected {type(exc).__name__}: {message} (rerun with --debug for "
              "the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = previous_show
        logging.getLogger("bayesgmm").removeHandler(handler)


def _interrupted() -> int:
    print("bayesgmm: interrupted; nothing was written (an earlier report or file is unchanged)",
          file=sys.stderr)
    return 130


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _StageHandler(logging.Handler):
    """The library's progress messages (logger "bayesgmm") as the command's stage messages."""

    def __init__(self, out: _Output):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record):
        self.out.log(record.getMessage())


def _log_handler(out: _Output) -> logging.Handler:
    logger = logging.getLogger("bayesgmm")
    logger.setLevel(logging.INFO)
    handler = _StageHandler(out)
    logger.addHandler(handler)
    return handler


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
