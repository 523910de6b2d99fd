"""What every verb module shares: the parser class, the invocation's settings, output, confirmation, errors.

Verb modules import from here, never from the `ccops.cli` package, so the
package can import them to assemble the parser without a cycle. Nothing here
imports more than the standard library and ccops.core at module level:
`ccops health` from cron must not pay for what other verbs need.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from typing import TYPE_CHECKING, Any

from ccops.core.errors import EXIT_USAGE, NotConfirmed

if TYPE_CHECKING:
    from ccops.core.settings import Settings


class Parser(argparse.ArgumentParser):
    """argparse that exits 64 (EX_USAGE) on bad usage instead of 2, which means CRITICAL here.

    The error is one line, like every other failure (a cron mail's first line
    says it all); `--help` has the usage.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def settings_for(args: argparse.Namespace) -> Settings:
    """The invocation's settings, loaded once (main loads them before any verb imports its modules)."""
    from ccops.core.settings import load_settings

    cached = getattr(args, "_settings", None)
    if cached is None:
        cached = load_settings(getattr(args, "config", None), target=getattr(args, "target", None))
        args._settings = cached
    return cached


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def require_yes(args: argparse.Namespace, what: str) -> None:
    """A changing verb needs --yes without a terminal; with one, it asks."""
    if getattr(args, "yes", False):
        return
    if sys.stdin.isatty():
        answer = input(f"{what}? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return
    raise NotConfirmed(f"{what}: not confirmed (pass --yes); nothing was changed")


def readable(value: Any) -> str:
    """A setting or status value as an operator reads it, never a Python repr.

    Lists become comma-separated (`/, /var`), nothing becomes `(none)` or
    `(not set)`, booleans `yes`/`no`; `--json` keeps the exact values.
    """
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(readable(item) for item in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{key}={readable(item)}" for key, item in value.items()) if value else "(none)"
    text = str(value)
    return text if text else "(not set)"


def format_info(info: dict[str, Any]) -> str:
    """`key: value` lines; a list of records (e.g. services) as one indented line per record."""
    lines = []
    for key, value in info.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            lines.append(f"{key}:")
            for item in value:
                head = item.get("service") or item.get("name") or ""
                rest = ", ".join(f"{k} {readable(v)}" for k, v in item.items()
                                 if k not in ("service", "name") and v not in (None, "", [], {}))
                lines.append(f"  {head}: {rest}" if head else f"  {rest}")
        else:
            lines.append(f"{key}: {readable(value)}")
    return "\n".join(lines)


# ---- error mapping: every failure one line on stderr ----------------------------------------

def fail(message: str, code: int) -> int:
    """One line on stderr, passwords masked, whatever the message held."""
    try:
        from ccops.core.scrub import mask_patterns

        message = mask_patterns(message)
    except Exception:  # noqa: BLE001 - the error path itself must not fail; the URL masks still apply
        from ccops.core.settings import mask_url

        message = " ".join(mask_url(word) for word in message.split())
    line = " ".join(message.split()) or "failed"
    print(f"ccops: {line}", file=sys.stderr)
    return code


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def os_error_line(exc: OSError) -> str:
    """`<path>: <ERRNO> (<text>)`, e.g. `outputs/index.json: ENOSPC (No space left on device)`."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or first_line(exc)
    where = ": ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = f"{name} ({text})" if name else text
    return f"{where}: {what}" if where else what


def is_database_error(exc: BaseException) -> bool:
    """sqlalchemy's and psycopg's errors, told by their module so neither is imported here."""
    return any(cls.__module__.split(".")[0] in ("sqlalchemy", "psycopg", "psycopg2") for cls in type(exc).__mro__)
