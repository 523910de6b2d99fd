"""`ccops run RUNBOOK` and `ccops runbooks`: run a runbook under papermill, and list the runbooks with their parameters."""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import print_json, settings_for
from ccops.core.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a runbook with papermill and archive the report", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help and the runbook's parameters")
    p.add_argument("runbook", nargs="?", help="runbook name, e.g. daily or emergency/system_down")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a parameter")
    p.add_argument("--timeout", type=int, default=None, help="wall-clock limit in seconds")
    p.add_argument("--json", action="store_true", help="print the run record as JSON")
    p.set_defaults(handler=cmd_run, run_parser=p)

    p = sub.add_parser("runbooks", help="the runbooks `ccops run` knows, with their purpose and parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runbooks)


def cmd_run(args: argparse.Namespace) -> int:
    from ccops.runbook import runner

    settings = settings_for(args)
    if args.help:
        print(run_help(args, settings))
        return 0
    if not args.runbook:
        args.run_parser.error("the following arguments are required: runbook")
    result = runner.run_runbook(settings, args.runbook, args.param or [], timeout=args.timeout)
    if args.json:
        print_json(result.record)
    else:
        print(result.line())
    return result.exit_code


def run_help(args: argparse.Namespace, settings: Any) -> str:
    """`ccops run [RUNBOOK] --help`: the verb's usage, then the runbook's purpose and parameters.

    The parameters (type, default, the comment of the parameters cell) are read
    from the notebook itself, so the help is always the runbook's own.
    """
    from ccops.core import runbooks
    from ccops.runbook.parameters import describe_parameters, runbook_purpose

    text = args.run_parser.format_help()
    root = settings.effective_runbooks_dir
    if not args.runbook:
        return text + "\nrunbooks: " + ", ".join(runbooks.available(root)) + "\n(`ccops run RUNBOOK --help` lists its parameters)"
    name, path = runbooks.locate(root, args.runbook)
    lines = describe_parameters(path)
    table = "\n".join(f"  {line}" for line in lines) if lines else "  (none)"
    return (f"{text}\nrunbook {name}: {runbook_purpose(path)}\n\n"
            f"parameters (set with -p NAME VALUE; name, type, default, meaning):\n{table}")


def cmd_runbooks(args: argparse.Namespace) -> int:
    """The runbooks `ccops run` knows: each one's purpose (its first heading and sentence) and parameters."""
    from ccops.core import runbooks
    from ccops.runbook.parameters import declared_parameters, parameter_type, runbook_purpose

    settings = settings_for(args)
    root = settings.effective_runbooks_dir
    names = runbooks.available(root)
    if not names:
        raise UsageError(f"{root}: no runbooks there (set paths.runbooks_dir or CCOPS_RUNBOOKS_DIR)")
    rows: list[dict[str, Any]] = []
    for name in names:
        path = root / f"{name}.ipynb"
        params = declared_parameters(path)
        rows.append({"runbook": name, "purpose": runbook_purpose(path),
                     "parameters": {k: {"type": getattr(parameter_type(v), "__name__", "str"),
                                        "default": v["default"], "help": v["help"]} for k, v in params.items()}})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['runbook']}\n  {row['purpose']}")
            shown = " ".join(f"{k}={v['default']}" for k, v in row["parameters"].items() if k != "config")
            if shown:
                print(f"  parameters: {shown}")
        print("\n`ccops run RUNBOOK --help` explains each parameter.")
    return 0
