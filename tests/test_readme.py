"""The README works as written: every `ccops ...` it shows parses, it leans on nothing outside the repository,
and it says how to get `ccops` on PATH.

Command lines (in code blocks and inline code) are parsed by ccops' own
argparse parser with `--help` appended; a `ccops run` line's runbook and
`-p NAME VALUE` pairs are checked against the notebook as `ccops run` checks
them. Synopsis lines of the command-line table (`demo up|down|status [--seed N]`)
are checked verb by verb: every alternative exists, every `--option` is
accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from ccops.cli import _load_extensions, build_parser
from ccops.core import runbooks
from ccops.runbook import runner

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RUNBOOKS = REPO / "runbooks"


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def readme_command_lines() -> list[str]:
    """Every `ccops ...` line of a code block and every inline `ccops ...` span, comments dropped."""
    text = README.read_text(encoding="utf-8")
    found = []
    for block in _code_blocks(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("ccops "):
                found.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found += [span for span in re.findall(r"`(ccops [^`]+)`", prose)]
    return list(dict.fromkeys(found))


def _is_synopsis(line: str) -> bool:
    return bool(re.search(r"[\[|]|\b[A-Z]{2,}\b|\.\.\.", line.split("  ")[0]))


def _split(line: str) -> tuple[list[str], str]:
    """(argv without `ccops`, kind): a synopsis keeps its first column only; a command drops its comment."""
    if _is_synopsis(line):
        return line.split("  ")[0].split()[1:], "synopsis"
    return shlex.split(line, comments=True)[1:], "command"


LINES = readme_command_lines()


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    _load_extensions()
    return build_parser()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _choices(parser: argparse.ArgumentParser) -> set[str]:
    return {str(c) for action in parser._actions if not action.option_strings and action.choices
            and not isinstance(action, argparse._SubParsersAction) for c in action.choices}


def test_the_readme_shows_ccops_commands():
    assert len(LINES) > 20, LINES


@pytest.mark.parametrize("line", [x for x in LINES if not _is_synopsis(x)])
def test_every_readme_command_parses(parser, line):
    argv, _ = _split(line)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            args = parser.parse_args([*argv, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, f"{line}: {out.getvalue()}"
            return
    assert args.verb == "run" and args.help, line  # only `run` takes --help as a flag (it prints the runbook's)
    name, path = runbooks.locate(RUNBOOKS, args.runbook)
    runner.check_parameters(name, path, args.param or [])  # unknown name or wrong type: UsageError


@pytest.mark.parametrize("line", [x for x in LINES if _is_synopsis(x)])
def test_every_readme_synopsis_names_verbs_and_options_that_exist(parser, line):
    words, _ = _split(line)
    current = parser
    for word in words:
        if word.startswith(("[", "-")) or word in ("|",):
            break
        alternatives = [w for w in word.split("|") if w]
        subs = _subparsers(current)
        if all(w in subs for w in alternatives):
            if len(alternatives) == 1:
                current = subs[alternatives[0]]
            continue
        if re.fullmatch(r"[A-Z_]+(\.\.\.)?", word):  # a positional placeholder (RUNBOOK, FILE)
            continue
        known = set(subs) | _choices(current)
        assert all(w in known for w in alternatives), f"{line}: {word!r} is not one of {sorted(known)}"
    options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", line.split("  ")[0]))
    accepted = _options(current) | {o for sub in _subparsers(current).values() for o in _options(sub)}
    assert options <= accepted, f"{line}: {sorted(options - accepted)} not accepted by `ccops {' '.join(words)}`"


def test_the_readme_refers_to_nothing_outside_the_repository():
    text = README.read_text(encoding="utf-8")
    assert "../" not in text, [line for line in text.splitlines() if "../" in line]
    for target in re.findall(r"\]\(([^)#]+)\)", text):  # markdown links to files of the repository
        if not target.startswith(("http://", "https://")):
            assert (REPO / target).exists(), target
    assert (REPO / "docs" / "design.md").is_file()


def test_the_readme_says_how_to_put_ccops_on_path_before_using_it():
    text = README.read_text(encoding="utf-8")
    path_at = text.find('export PATH="$PWD/.venv/bin:$PATH"')
    assert path_at > 0
    first_ccops = min(text.find(f"\n{line}") for line in LINES if text.find(f"\n{line}") >= 0)
    assert path_at < first_ccops


def test_the_readme_emergency_examples_show_the_dry_run_first():
    runs = [line for line in LINES if line.startswith("ccops run emergency/") or line.startswith("ccops run recovery")]
    seen_dry: set[str] = set()
    for line in runs:
        argv, _ = _split(line)
        name = argv[1]
        live = "dry_run" in argv and argv[argv.index("dry_run") + 1] == "False"
        assert not live or name in seen_dry, f"{line}: shown before its dry run"
        if not live:
            seen_dry.add(name)
    assert seen_dry


def test_the_readme_says_how_long_make_demo_and_make_test_take():
    text = README.read_text(encoding="utf-8")
    assert re.search(r"`make demo` takes about \d", text) and re.search(r"`make test` about \d+ minutes", text)
