"""Write a runbook notebook from a compact description (used when authoring runbooks).

Why a builder: notebooks are JSON that is tedious to edit by hand and easy to
commit with outputs; building them from a list of (kind, source) pairs keeps
them clean (no outputs, no execution counts) and uniform (kernel, tags).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def build(cells: list[tuple[str, str]], path: str | Path) -> None:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        source = source.strip("\n")
        if kind == "md":
            cell = new_markdown_cell(source)
        elif kind == "params":
            cell = new_code_cell(source)
            cell.metadata["tags"] = ["parameters"]
        else:
            cell = new_code_cell(source)
        nb.cells.append(cell)
    nbformat.validator.normalize(nb)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


if __name__ == "__main__":  # pragma: no cover
    print(__doc__, file=sys.stderr)
