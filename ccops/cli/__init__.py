"""`ccops ...`: one entry point for operators and cron.

Every failure ccops anticipates becomes one line on stderr and a documented
exit code (errors.py); a traceback means a bug in ccops. Each verb group is a
module of its own (run, health, logs, reports, config, backup, alerts,
schedule) with a `register(sub)` that adds its verbs; verbs other packages
contribute (the demo's `ccops demo`) come from the `ccops.commands` entry
points, which are read only when the verb asked for is not a built-in one.
Handlers stay thin and import their module lazily so `ccops health` from
cron does not pay for papermill, matplotlib, or scanning installed packages.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ccops import __version__
from ccops.cli import alerts, backup, config, health, logs, reports, run, schedule
from ccops.cli.common import (
    Parser,
    fail,
    first_line,
    is_database_error,
    os_error_line,
    settings_for,
)
from ccops.core.errors import EXIT_UNKNOWN, CcopsError

Handler = Callable[[argparse.Namespace], int]
COMMANDS_GROUP = "ccops.commands"

# The built-in verb groups, in the order `ccops --help` lists them.
VERB_MODULES = (run, health, logs, reports, config, backup, alerts, schedule)

# What other installed packages contribute (entry points of COMMANDS_GROUP), once _load_extensions read them.
EXTENSIONS: list[Callable[[Any], None]] = []
_extensions_loaded = False


def _load_extensions() -> None:
    """Read the `ccops.commands` entry points once; one that cannot be imported is a warning, not a dead CLI."""
    global _extensions_loaded
    if _extensions_loaded:
        return
    from importlib.metadata import entry_points

    _extensions_loaded = True
    for point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda p: p.name):
        try:
            EXTENSIONS.append(point.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take `ccops health` down with it
            print(f"ccops: warning: the verbs of {point.name} ({point.value}) cannot be loaded: "
                  f"{type(exc).__name__}: {first_line(exc)}", file=sys.stderr)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; given a `verb` that is built in, the contributed verbs are not read at all."""
    parser = Parser(prog="ccops", description="Run the Content Creator maintenance guide as archived runbooks.")
    parser.add_argument("--version", action="version", version=f"ccops {__version__}")
    parser.add_argument("--config", help="settings file (default: $CCOPS_CONFIG, then ./ccops.toml)")
    parser.add_argument("--target", metavar="NAME", help=TARGET_HELP)
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    for module in VERB_MODULES:
        module.register(sub)
    if verb is None or verb not in sub.choices:
        _load_extensions()
        for extend in EXTENSIONS:
            try:
                extend(sub)
            except argparse.ArgumentError as exc:  # a contributed verb must not replace a built-in one
                print(f"ccops: warning: {exc}; the built-in verb stays", file=sys.stderr)
    _add_target_option(sub)
    return parser


TARGET_HELP = "the deployment ([targets.NAME] in ccops.toml; default: $CCOPS_TARGET, else the only target)"


def _add_target_option(sub: argparse._SubParsersAction) -> None:
    """`--target NAME` after any verb too (`ccops run daily --target staging`), not only before it.

    Added here, once, to every verb's parser and theirs below, so no verb can
    forget it; SUPPRESS keeps a verb without it from resetting the one given
    before the verb.
    """
    for verb_parser in {id(p): p for p in sub.choices.values()}.values():
        if "--target" not in verb_parser._option_string_actions:
            verb_parser.add_argument("--target", metavar="NAME", default=argparse.SUPPRESS, help=TARGET_HELP)
        for action in verb_parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_target_option(action)


def _verb(argv: Sequence[str]) -> str | None:
    """The verb argv names, found without parsing (None: only options, or an option argparse must judge)."""
    words = iter(argv)
    for word in words:
        if word in ("--config", "--target"):
            next(words, None)
        elif not word.startswith(("--config=", "--target=")):
            return None if word.startswith("-") else word
    return None


def entry() -> None:
    """The `ccops` command and `python -m ccops.cli`: main(), then leave without the interpreter's teardown.

    A `ccops run` ends holding about a million objects (the HTML renderer's), and freeing them
    one by one took 0.2 s after the report was archived (ccops.core.leave). main() itself
    returns its code, for the tests and anyone calling it in-process.
    """
    from ccops.core.leave import exit_at_once

    exit_at_once(main())


def main(argv: list[str] | None = None) -> int:
    """Run one verb; every failure is one line on stderr and a documented exit code.

    ccops' own errors carry their code (64 usage, 75 already running, ...). The
    rest are nets, so cron never reads Python's exit 1 (WARNING) off a crash:
    a file or disk error names the path and the errno (exit 3), a database
    that cannot be reached or refuses the login is one line with any password
    masked (exit 3; verbs that expect it say CRITICAL themselves), and
    anything else is an internal error, one line (exit 3) unless CCOPS_DEBUG
    asks for the traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_verb(argv))
    args = parser.parse_args(argv)
    os.environ.setdefault("CCOPS_APPLICATION_NAME", f"ccops/{args.verb}")  # ccops.core.db names its sessions so
    try:
        settings_for(args)  # a broken settings file is one line before anything else is imported or touched
        handler: Handler = args.handler
        return handler(args)
    except CcopsError as exc:
        return fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ccops ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except OSError as exc:
        return fail(os_error_line(exc), EXIT_UNKNOWN)
    except Exception as exc:  # noqa: BLE001 - the last net: one line for cron, the traceback on request
        if os.environ.get("CCOPS_DEBUG"):
            raise
        if is_database_error(exc):
            return fail(f"database error: {first_line(getattr(exc, 'orig', None) or exc)}", EXIT_UNKNOWN)
        return fail(f"internal error: {type(exc).__name__}: {first_line(exc)} "
                    "(a bug in ccops; CCOPS_DEBUG=1 shows the traceback)", EXIT_UNKNOWN)
