"""A runbook's parameters: what its `parameters` cell declares, and turning CLI strings into those types.

DESIGN: `ccops run` checks parameters against the notebook before any kernel
starts (unknown name or wrong type: exit 64). A number is also checked against
its name, by the rule settings use (config.least_value): no `*_days`,
`*_limit`, `*_hours`, `*_seconds`, `*_lines`, `jobs` ... below 0, no `keep_*`
count below 1. `monthly -p log_keep_days -1` would otherwise put the cut-off
in the future and delete every app log, the live one included.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ccops.core.errors import UsageError
from ccops.core.settings import bound_problem

_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str}
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def declared_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The parameters cell as papermill's inspect_notebook reports it (name -> name, inferred_type_name, default, help).

    Read here rather than through papermill: importing papermill costs about a
    second, and `ccops run` checks parameters before it starts anything. The
    cell is parsed with `ast` (papermill uses a regular expression per line):
    every top-level `name = value` or `name: type = value`, its default as
    written, and the comment on its last line as help.
    """
    notebook = _read_notebook(path)
    cell = next((c for c in notebook.get("cells", []) if c.get("cell_type") == "code"
                 and "parameters" in (c.get("metadata", {}).get("tags") or [])), None)
    if cell is None:
        return {}
    source = _source(cell)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise UsageError(f"{path}: the parameters cell is not valid Python ({exc.msg}, line {exc.lineno})") from None
    lines = source.splitlines()
    found: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation = node.targets[0].id, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation = node.target.id, ast.get_source_segment(source, node.annotation)
        else:
            continue
        value = node.value
        if value is None:
            continue
        default = ast.get_source_segment(source, value) or ""
        found[name] = {"name": name, "inferred_type_name": str(annotation).strip("\"' ") if annotation else "None",
                       "default": default.strip(), "help": _line_comment(lines[(node.end_lineno or node.lineno) - 1],
                                                                         value.end_col_offset or 0)}
    return found


def runbook_sections(path: Path) -> list[str]:
    """The parts a runbook has: the names of its `ctx.section("...")` calls, in order.

    The `part` parameter selects one of them (or "all"); a name that matches none
    would run nothing and still report OK, so the runner refuses it up front.
    """
    found: list[str] = []
    for cell in _read_notebook(path).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "section"
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                    and node.args[0].value not in found):
                found.append(node.args[0].value)
    return found


def _read_notebook(path: Path) -> dict[str, Any]:
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable notebook ({exc})") from None
    return notebook if isinstance(notebook, dict) else {}


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _line_comment(line: str, after: int) -> str:
    """The `# comment` text after byte column `after` of a source line ("" without one).

    `ast` counts columns in UTF-8 bytes, so a default like "café" must not shift the cut.
    """
    tail = line.encode("utf-8")[after:].decode("utf-8", "replace")
    return tail.split("#", 1)[1].strip() if "#" in tail else ""


def parameter_type(spec: dict[str, Any]) -> type | None:
    """The Python type a parameter expects: from its annotation, else from its default; None = any string.

    papermill only infers a type from an annotation (`days: int = 7`); the
    runbooks write `days = 7  # comment`, so the default's literal decides.
    """
    name = str(spec.get("inferred_type_name") or "None").strip()
    if name.startswith("Optional[") and name.endswith("]"):
        name = name[len("Optional["):-1]
    if name in _TYPE_NAMES:
        return _TYPE_NAMES[name]
    try:
        default = ast.literal_eval(str(spec.get("default", "None")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if default is None:
        return None
    return type(default) if isinstance(default, (bool, int, float, str, list, dict)) else None


def convert(runbook: str, name: str, raw: str, expected: type | None) -> Any:
    """One CLI string as the parameter's type and within its bounds; UsageError naming runbook and parameter otherwise."""
    try:
        value = _convert(name, raw, expected)
    except UsageError as exc:
        raise UsageError(f"runbook {runbook}: {exc}") from None
    problem = bound_problem(name, value)
    if problem:
        raise UsageError(f"runbook {runbook}: parameter {name!r}: {problem}")
    return value


def _convert(name: str, raw: str, expected: type | None) -> Any:
    def bad() -> UsageError:
        return UsageError(f"parameter {name!r}: expected {expected.__name__ if expected else 'str'}, got {raw!r}")

    if expected is None or expected is str:
        return raw
    text = raw.strip()
    if expected is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise bad()
    if expected is int:
        try:
            return int(text)
        except ValueError:
            raise bad() from None
    if expected is float:
        try:
            return float(text)
        except ValueError:
            raise bad() from None
    try:  # list / dict: a Python or JSON literal of that type
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            value = json.loads(text)
        except ValueError:
            raise bad() from None
    if not isinstance(value, expected):
        raise bad()
    return value


def runbook_purpose(path: Path) -> str:
    """What a runbook is for, in one line: its first markdown heading and the first sentence after it.

    `ccops runbooks` shows this beside each name so an operator picks the
    right runbook without opening it; the notebook's own text is the one
    place it is written, so it cannot drift from the runbook.
    """
    cell = next((c for c in _read_notebook(path).get("cells", []) if c.get("cell_type") == "markdown"), None)
    if cell is None:
        return ""
    title, body = "", []
    for line in _source(cell).splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not title:
            title = stripped.lstrip("#").strip()
        elif stripped and not stripped.startswith("#"):
            body.append(stripped)
        elif body:  # the first paragraph ends at a blank line
            break
    sentence = _first_sentence(" ".join(body))
    return f"{title}: {sentence}" if title and sentence else title or sentence


def _first_sentence(text: str) -> str:
    """Up to the first '. ' (or the text's end); a full stop inside `code` or a number does not end it."""
    for index, char in enumerate(text):
        if char == "." and (index + 1 == len(text) or text[index + 1] == " ") and text[:index].count("`") % 2 == 0:
            return text[: index + 1]
    return text


def describe_parameters(path: Path) -> list[str]:
    """One line per parameter, `name  type  default  comment`, as `ccops run RUNBOOK --help` prints them.

    The type is the one `ccops run -p` converts to (parameter_type), so what
    the help says is what the command line accepts.
    """
    specs = declared_parameters(path)
    if not specs:
        return []
    rows = []
    for name, spec in specs.items():
        kind = parameter_type(spec)
        rows.append((name, kind.__name__ if kind else "str", str(spec.get("default", "")), str(spec.get("help", ""))))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    return [f"{n:{width[0]}}  {t:{width[1]}}  {d:{width[2]}}  {h}".rstrip() for n, t, d, h in rows]


def step_titles(notebook: dict[str, Any]) -> list[str]:
    """The title of every code cell, in order: the nearest markdown heading above it ("" before the first).

    `ccops run` shows "step k of n: <title>" on a terminal; the runbooks'
    markdown follows the guide step by step, so its headings are the steps.
    """
    titles, current = [], ""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "markdown":
            heading = next((line.strip().lstrip("#").strip() for line in _source(cell).splitlines()
                            if line.strip().startswith("#")), None)
            current = heading or current
        elif cell.get("cell_type") == "code":
            titles.append(current)
    return titles
