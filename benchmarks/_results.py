"""Writing a benchmark's result files: the JSON record and a Markdown table beside it."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "results"


def markdown_table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: ``align`` holds each column's separator ("---", "---:")."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_results(stem: str, result: dict, intro: str | None, table: str) -> None:
    """``results/<stem>.json`` and ``results/<stem>.md`` (the intro and a blank line, if any,
    then the table); the table is printed too.  ``--quick`` runs pass a ``*_quick`` stem (not
    committed)."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (OUT / f"{stem}.md").write_text(("" if intro is None else f"{intro}\n\n") + f"{table}\n")
    print(table)
