"""The shape of the house (DESIGN §6): one-way layers, no import cycles, no branches on a
covariance structure's name outside its table."""

import ast
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import grimp

from bayesgmm.covariance import STRUCTURES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bayesgmm"


def test_import_contracts_hold():
    """The layers and the core's independence from PyMC/ArviZ (pyproject's import-linter
    contracts; imports inside functions count)."""
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_every_module_has_a_layer():
    """A new module must be placed in the layers contract, else it escapes the check."""
    text = (ROOT / "pyproject.toml").read_text()
    layers = text[text.index("layers = ["):text.index("]", text.index("layers = ["))]
    listed = set(re.findall(r"[\w]+", layers)) - {"layers"}
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules <= listed, sorted(modules - listed)


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("bayesgmm")
    modules = sorted(m for m in graph.modules if m.count(".") == 1)
    cycles = [(a, b) for a, b in combinations(modules, 2)
              if graph.chain_exists(a, b) and graph.chain_exists(b, a)]
    assert not cycles, cycles


def _name_comparisons(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                if isinstance(operand, ast.Constant) and operand.value in STRUCTURES:
                    yield f"{path.name}:{node.lineno}: compares with {operand.value!r}"


def test_no_branch_on_a_structure_name_outside_the_table():
    """Per-structure behaviour comes from the row of ``covariance.STRUCTURES``, never from
    comparing a structure's name (``if covariance == "tied"``)."""
    found = [hit for path in sorted(PACKAGE.glob("*.py")) if path.name != "covariance.py"
             for hit in _name_comparisons(path)]
    assert not found, found


def test_the_command_line_offers_exactly_the_tables_structures():
    """Every structure of the table, by its name and by mclust's, and nothing else."""
    from bayesgmm.cli import build_parser
    from bayesgmm.covariance import MCLUST_NAMES

    sub = build_parser()._subparsers._group_actions[0].choices["fit"]
    choices = next(a.choices for a in sub._actions if a.dest == "covariance")
    assert set(choices) == set(STRUCTURES) | set(MCLUST_NAMES.values())
    assert set(MCLUST_NAMES) == set(STRUCTURES)
