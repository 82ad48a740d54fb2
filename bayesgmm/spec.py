"""Study specs: a TOML file that declares one study, parsed into a validated, typed object.

A spec names the data, the model (K, or candidate Ks chosen by BIC/ICL), the prior, the EM and
sampler settings and an optional sensitivity grid; ``models/*.toml`` are examples and
:func:`load_spec` reads them.  Every error names the file, the line and the key::

    models/iris.toml:12: [sampler] draws: expected an integer ≥ 1, got '1000' (a string)

Schema (every table but ``[data]`` and ``[model]`` is optional)::

    name = "old_faithful"          # default: the file's stem
    description = "..."
    seed = 0                       # EM restarts, sampler and sweep
    [data]       dataset = "faithful" | path = "x.csv" (relative to the spec), columns = [...],
                 header = true, standardize = false
    [model]      n_components = 2 | [1, 2, 3, 4], covariance = "full" | ["full", "tied"],
                 criterion = "bic" (several K or structures: bg.select_model chooses one)
    [prior]      style = "default" | "mclust" | "none", and overrides of shrinkage, dof,
                 scale (a multiplier on Ψ0), mean, concentration
    [em]         init, n_init, tol, max_iter, acceleration
    [sampler]    method = "auto" | "gibbs" | "nuts" | "nutpie", draws, tune, chains,
                 target_accept and noncentred_means (NUTS, nutpie), thin = "auto" | n
                 (Gibbs), relabel, hdi_prob
    [sensitivity] grid = {axis = [values], ...}, power_scaling = true
"""

from __future__ import annotations

import difflib
import json
import math
import numbers
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ._validation import check_probability, check_random_state, check_tolerance
from .covariance import STRUCTURE_NAMES
from .datasets import DATASETS
from .sampling import SAMPLERS, check_thin
from .priors import HYPERPARAMETERS
from .starts import START_METHODS

__all__ = ["SpecError", "StudySpec", "DataSpec", "ModelSpec", "PriorSpec", "EMSpec", "SamplerSpec",
           "SensitivitySpec", "load_spec", "parse_spec", "spec_from_dict"]


class SpecError(ValueError):
    """An invalid study spec; the message names the file, the line and the key."""


class _Invalid(Exception):
    """A value failed its check (the parser adds where)."""


# ---------------------------------------------------------------------- value checks
def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _got(value) -> str:
    return f"got {value!r} ({_kind(value)})"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(minimum: int):
    def check(value):
        if not _is_int(value) or value < minimum:
            raise _Invalid(f"expected an integer ≥ {minimum}, {_got(value)}")
        return int(value)
    return check


def _real(low: float = float("-inf"), high: float = float("inf"), *, open_low=False,
          open_high=False):
    def check(value):
        ok = _is_real(value) and math.isfinite(value) and (
            value > low if open_low else value >= low) and (
            value < high if open_high else value <= high)
        if not ok:
            bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
            raise _Invalid(f"expected a number in {bounds}, {_got(value)}")
        return float(value)
    return check


def _shared(check, name: str):
    """The API's own check of a value, as a spec check: a value is judged the same whether it
    comes from a spec, the command line or a Python call."""
    def run(value):
        try:
            return check(value, name)
        except (TypeError, ValueError) as exc:
            raise _Invalid(str(exc)) from None
    return run


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _study_name(value):
    """A study's name is a name (it becomes the default report folder), never a path."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise _Invalid(f"expected a plain name (letters, digits, '.', '_', '-'; not a path), "
                       f"{_got(value)}; choose the report's folder with --out instead")
    return value


def _distinct_columns(value):
    columns = _list_of(_text, "column names")(value)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise _Invalid(f"the columns repeat {repeated}; give each column once")
    return columns


def _boolean(value):
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, {_got(value)}")
    return value


def _text(value):
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, {_got(value)}")
    return value


def _choice(*options):
    def check(value):
        if value not in options:
            raise _Invalid(f"expected one of {', '.join(map(repr, options))}, {_got(value)}")
        return value
    return check


def _list_of(item, what: str, *, scalar_ok: bool = False):
    def check(value):
        if scalar_ok and not isinstance(value, list):
            value = [value]
        if not isinstance(value, list) or not value:
            raise _Invalid(f"expected a non-empty list of {what}, {_got(value)}")
        try:
            return tuple(item(v) for v in value)
        except _Invalid as exc:
            raise _Invalid(f"expected a non-empty list of {what} ({exc}), "
                           f"{_got(value)}") from None
    return check


def _number_or_numbers(value):
    """A scalar or a list of numbers (a length-K concentration, a (d,) mean)."""
    if isinstance(value, list):
        return _list_of(_real(), "numbers")(value)
    return _real()(value)


def _grid(value):
    if not isinstance(value, dict) or not value:
        raise _Invalid(f"expected a table of axis = [values] with axes from {HYPERPARAMETERS}, "
                       f"{_got(value)}")
    out = {}
    for axis, values in value.items():
        if axis not in HYPERPARAMETERS:
            raise _Invalid(f"unknown grid axis {axis!r}{_suggest(axis, HYPERPARAMETERS)}; "
                           f"use any of {', '.join(HYPERPARAMETERS)}")
        item = _list_of(_real(), "numbers") if axis == "mean" else _number_or_numbers
        out[axis] = _list_of(item, f"values for {axis}")(values)
    return out


def _suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check(check, default=None):
    """A dataclass field carrying the function that validates its TOML value."""
    return field(default=default, metadata={"check": check})


# ---------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DataSpec:
    """Where the data come from: a bundled data set or a CSV file, and which columns."""

    dataset: str | None = _check(_choice(*DATASETS))
    path: Path | None = _check(_text)
    columns: tuple[str, ...] | None = _check(_distinct_columns)
    header: bool = _check(_boolean, True)
    standardize: bool = _check(_boolean, False)


@dataclass(frozen=True)
class ModelSpec:
    """K and the covariance structure, or candidates of each (chosen by ``criterion`` with
    :func:`bayesgmm.select_model`)."""

    n_components: tuple[int, ...] = _check(_list_of(_integer(1), "integers ≥ 1", scalar_ok=True))
    covariance: tuple[str, ...] = _check(_list_of(_choice(*STRUCTURE_NAMES), "covariance structures",
                                                  scalar_ok=True), ("full",))
    criterion: str = _check(_choice("bic", "icl"), "bic")


@dataclass(frozen=True)
class PriorSpec:
    """The data-scaled default prior of ``style`` with optional overrides (``scale`` multiplies
    Ψ0); ``style = "none"`` is maximum likelihood (EM only)."""

    style: str = _check(_choice("default", "mclust", "none"), "default")
    shrinkage: float | None = _check(_real(0))
    dof: float | None = _check(_real(0, open_low=True))
    scale: float | None = _check(_real(0, open_low=True))
    mean: tuple[float, ...] | None = _check(_list_of(_real(), "numbers"))
    concentration: float | tuple[float, ...] | None = _check(_number_or_numbers)

    @property
    def overrides(self) -> dict:
        """The hyperparameters the spec sets (for :func:`bayesgmm.priors.adjust_prior`)."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS
                if getattr(self, name) is not None}


@dataclass(frozen=True)
class EMSpec:
    """Settings of :func:`bayesgmm.fit_map`."""

    init: str = _check(_choice(*START_METHODS), "auto")
    n_init: int | None = _check(_integer(1))
    tol: float = _check(_shared(check_tolerance, "tol"), 1e-10)
    max_iter: int = _check(_integer(1), 1000)
    acceleration: str = _check(_choice("squarem", "none"), "squarem")

    @property
    def fit_options(self) -> dict:
        """The keyword arguments of :func:`bayesgmm.fit_map` this table sets."""
        return {"init": self.init, "n_init": self.n_init, "tol": self.tol,
                "max_iter": self.max_iter,
                "acceleration": None if self.acceleration == "none" else self.acceleration}


@dataclass(frozen=True)
class SamplerSpec:
    """Settings of :func:`bayesgmm.sample_posterior` and :func:`bayesgmm.compare`
    (``method`` is its ``sampler``; ``target_accept`` and ``noncentred_means`` apply to NUTS and
    nutpie, ``thin`` to Gibbs)."""

    method: str = _check(_choice(*SAMPLERS), "auto")
    draws: int = _check(_integer(1), 1000)
    tune: int = _check(_integer(0), 1000)
    chains: int = _check(_integer(1), 4)
    target_accept: float = _check(_shared(check_probability, "target_accept"), 0.9)
    noncentred_means: bool = _check(_boolean, False)
    thin: int | str = _check(_shared(check_thin, "thin"), "auto")
    relabel: str = _check(_choice("pivot", "stephens"), "pivot")
    hdi_prob: float = _check(_shared(check_probability, "hdi_prob"), 0.94)


@dataclass(frozen=True)
class SensitivitySpec:
    """A prior-sensitivity study: an EM sweep over ``grid`` (axes as
    :func:`bayesgmm.prior_sweep`) and power-scaling (EM, and MCMC when sampled)."""

    grid: dict | None = _check(_grid)
    power_scaling: bool = _check(_boolean, True)


_SECTIONS = {"data": DataSpec, "model": ModelSpec, "prior": PriorSpec, "em": EMSpec,
             "sampler": SamplerSpec, "sensitivity": SensitivitySpec}
_TOP = {"name": _study_name, "description": _text,
        "seed": _shared(check_random_state, "seed")}


@dataclass(frozen=True)
class StudySpec:
    """A validated study (see the module docstring for the TOML schema).

    ``sampler`` and ``sensitivity`` are None when the spec has no such table (no posterior
    sampling, no sensitivity study).  ``source`` is the spec file and ``text`` its contents.
    """

    name: str
    data: DataSpec
    model: ModelSpec
    prior: PriorSpec = PriorSpec()
    em: EMSpec = EMSpec()
    sampler: SamplerSpec | None = None
    sensitivity: SensitivitySpec | None = None
    description: str = ""
    seed: int = 0
    source: Path | None = field(default=None, compare=False)
    text: str = field(default="", compare=False)

    def error(self, message: str, table: str, key: str | None = None) -> SpecError:
        """A :class:`SpecError` for a problem found after parsing (in the data, say), located at
        ``[table] key`` of the spec file as parse errors are."""
        if self.source is None:
            return SpecError(f"[{table}] {message}")
        return _Context(str(self.source), self.text).error(message, table, key)

    def to_toml(self) -> str:
        """The spec as TOML (every setting explicit, data path absolute); parses back equal."""
        lines = [f"{key} = {_toml_value(getattr(self, key))}" for key in _TOP]
        for table in _SECTIONS:
            section = getattr(self, table)
            if section is None:
                continue
            lines += ["", f"[{table}]"]
            for f in fields(section):
                value = getattr(section, f.name)
                if value is not None:
                    if f.name == "n_components" and len(value) == 1:
                        value = value[0]
                    lines.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


# ---------------------------------------------------------------------- parsing
def _line_of(text: str, table: str | None, key: str | None = None) -> int | None:
    """The line (1-based) of ``key`` in ``[table]`` (or of the table header when key is None)."""
    current = None
    header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
    assign = re.compile(r'^\s*"?([A-Za-z0-9_+\-]+)"?\s*=')
    for number, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            current = m.group(1)
            if current == (table if key is None else f"{table}.{key}"):
                return number  # the table's header, or a sub-table [table.key]
            continue
        m = assign.match(line)
        if key is not None and m and m.group(1) == key and current == table:
            return number
        if key is not None and m and current is None and table is not None and m.group(1) == table:
            return number  # an inline table: table = { key = ... }
    return None


def _about(key: str, exc: Exception) -> str:
    """``key: problem`` (shared checks already name the key)."""
    message = str(exc)
    return message if message.startswith(f"{key} ") else f"{key}: {message}"


class _Context:
    def __init__(self, source: str, text: str):
        self.source, self.text = source, text

    def error(self, message: str, table: str | None, key: str | None = None) -> SpecError:
        line = _line_of(self.text, table, key) or _line_of(self.text, table)
        where = f"{self.source}:{line}" if line else self.source
        section = f"[{table}] " if table else ""
        return SpecError(f"{where}: {section}{message}")

    def build(self, cls, raw, table: str):
        if not isinstance(raw, dict):
            raise self.error(f"expected a table [{table}], {_got(raw)}", None, table)
        allowed = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in raw.items():
            if key not in allowed:
                raise self.error(f"unknown key {key!r}{_suggest(key, allowed)}; allowed: "
                                 f"{', '.join(allowed)}", table, key)
            try:
                values[key] = allowed[key].metadata["check"](value)
            except _Invalid as exc:
                raise self.error(_about(key, exc), table, key) from None
        return cls(**values)


def _merged(raw: dict, overrides: dict) -> dict:
    out = dict(raw)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merged(out[key], value)
        out[key] = value
    return out


def parse_spec(text: str, source: str | Path = "<spec>", overrides: dict | None = None
               ) -> StudySpec:
    """Parse and validate the TOML text of a study spec.

    Parameters
    ----------
    text : str
    source : str or Path
        The file name used in error messages, and the folder a relative data ``path`` is
        resolved against.
    overrides : dict, optional
        Entries that replace the file's (nested by table, e.g. ``{"sampler": {"draws": 100}}``),
        validated like the file's own.

    Raises
    ------
    SpecError
        With ``file:line: [table] key: problem`` for malformed TOML, unknown keys, wrong types,
        out-of-range values or missing required entries.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{source}:{m.group(1)}" if m else str(source)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise SpecError(f"{where}: malformed TOML: {reason}") from None
    return spec_from_dict(_merged(raw, overrides or {}), source, text)


def spec_from_dict(raw: dict, source: str | Path = "<spec>", text: str = "") -> StudySpec:
    """Validate a spec given as nested dicts (the parsed TOML, or options from the command
    line); ``text`` is the TOML it came from, for line numbers in errors."""
    source_path = Path(source) if not str(source).startswith("<") else None
    ctx = _Context(str(source), text)
    top, sections = {}, {}
    for key, value in raw.items():
        if key in _SECTIONS:
            sections[key] = ctx.build(_SECTIONS[key], value, key)
        elif key in _TOP:
            try:
                top[key] = _TOP[key](value)
            except _Invalid as exc:
                raise ctx.error(_about(key, exc), None, key) from None
        else:
            raise ctx.error(f"unknown key {key!r}{_suggest(key, [*_TOP, *_SECTIONS])}; allowed: "
                            f"{', '.join([*_TOP, *(f'[{s}]' for s in _SECTIONS)])}", None, key)
    for required in ("data", "model"):
        if required not in sections:
            raise ctx.error(f"missing the [{required}] table", None)
    data, model = sections["data"], sections["model"]
    if (data.dataset is None) == (data.path is None):
        raise ctx.error("give exactly one of dataset (bundled: "
                        f"{', '.join(DATASETS)}) or path (a CSV file)", "data")
    if data.path is not None:
        path = Path(data.path).expanduser()
        if not path.is_absolute() and source_path is not None:
            path = source_path.parent / path
        data = replace(data, path=path)
    if model.n_components is None:
        raise ctx.error("n_components is required (an integer, or a list of candidates)",
                        "model")
    if len(set(model.n_components)) != len(model.n_components):
        raise ctx.error("n_components: the candidates repeat a value", "model", "n_components")
    prior = sections.get("prior", PriorSpec())
    needs_prior = [s for s in ("sampler", "sensitivity") if s in sections]
    if prior.style == "none" and (needs_prior or prior.overrides):
        what = (f"[{needs_prior[0]}] needs a proper prior" if needs_prior
                else "overrides need a prior to modify")
        raise ctx.error(f"style: 'none' (maximum likelihood) but {what}; use style = "
                        "'default' or 'mclust'", "prior", "style")
    return StudySpec(name=top.get("name", source_path.stem if source_path else "study"),
                     description=top.get("description", ""), seed=top.get("seed", 0),
                     data=data, model=model, prior=prior, em=sections.get("em", EMSpec()),
                     sampler=sections.get("sampler"), sensitivity=sections.get("sensitivity"),
                     source=source_path, text=text)


def load_spec(path, overrides: dict | None = None) -> StudySpec:
    """Read and validate a study spec file (see :func:`parse_spec`).

    Parameters
    ----------
    path : str or Path
        A TOML study spec (``models/*.toml``).
    overrides : dict, optional
        Entries that replace the file's, nested by table (``{"sampler": {"draws": 100}}``).

    Returns
    -------
    StudySpec
        Validated; a mistake raises a ValueError naming the file, line and key.

    Examples
    --------
    >>> import bayesgmm as bg
    >>> spec = bg.load_spec("models/old_faithful.toml")
    >>> spec.model.n_components, spec.sampler.method
    ((2,), 'gibbs')
    """
    path = Path(path)
    if path.is_dir() or not path.exists():
        raise FileNotFoundError(f"spec file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a study spec is TOML)") from None
    return parse_spec(text, path, overrides)
