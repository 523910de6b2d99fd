"""Plain SQL as pg_dump writes it, read as psql would: statements, COPY blocks, rows per table.

Used to verify a plain dump (the app's backup.sh writes `pg_dump > db_*.sql`)
and to count the rows a restore of any dump must hold, without a manifest.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DUMP_HEADER = b"-- PostgreSQL database dump"
DUMP_TRAILER = b"-- PostgreSQL database dump complete"
COPY_HEADER = re.compile(
    rb'^COPY\s+(?:("(?:[^"]|"")*"|[^\s."]+)\.)?("(?:[^"]|"")*"|[^\s."(]+)\s*(?:\((.*)\))?\s+FROM\s+stdin;\s*$')
SQL_TOKEN = re.compile(rb"--|/\*|\*/|'|\"|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$|;")
IDENTIFIER = re.compile(rb'"(?:[^"]|"")*"|[^,\s]+')


def _unquote(name: bytes) -> str:
    text_ = name.decode("utf-8", "replace")
    return text_[1:-1].replace('""', '"') if text_.startswith('"') else text_


@dataclass
class SqlScan:
    """What a plain dump holds, read as psql would: statements, COPY blocks and their rows, and what is wrong."""

    statements: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # public tables: rows in their COPY block
    header: bool = False
    trailer: bool = False
    problems: list[str] = field(default_factory=list)
    mode: bytes = b""  # inside a quote, identifier, comment or $tag$ body
    open: bool = False  # a statement has begun and not yet met its ';'
    copy: tuple[str, str, int] | None = None  # (schema, table, expected fields) while in a COPY block
    other_copies: int = 0  # COPY blocks of tables outside public (checked, not counted)
    line_no: int = 0

    def problem(self, text_: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(text_)


def scan_sql_file(path: Path) -> SqlScan:
    """Scan a plain dump file (gzip by its name); gzip's CRC is checked by reading it to the end."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return scan_sql_lines(handle)


def scan_sql_lines(lines: Any) -> SqlScan:
    r"""A statement-level parse of pg_dump's plain output, streamed (never the whole file in memory).

    Checked: pg_dump's header and completion trailer; every statement ends with ';'
    outside quotes, identifiers, comments and dollar-quoted bodies; every COPY block
    ends with `\.` and each of its rows has as many fields as the COPY names columns
    (a cut or spliced line shows there). Rows are counted per public table, so a restore
    of the dump can be proved row for row without a manifest.
    """
    scan = SqlScan()
    for line in lines:
        scan.line_no += 1
        if scan.copy is not None:
            _copy_row(scan, line)
        else:
            _sql_line(scan, line)
    if scan.copy is not None:
        scan.problem(f"the COPY block of {scan.copy[0]}.{scan.copy[1]} never ends (no \\. line)")
    elif scan.mode:
        scan.problem(f"ends inside {scan.mode.decode('utf-8', 'replace')} ... (an unterminated quote or body)")
    elif scan.open:
        scan.problem("the last statement has no ';' (cut short)")
    if not scan.header:
        scan.problem("no pg_dump header ('-- PostgreSQL database dump')")
    return scan


def _copy_row(scan: SqlScan, line: bytes) -> None:
    schema, table, fields_ = scan.copy  # type: ignore[misc]
    row = line.rstrip(b"\r\n")
    if row == b"\\.":
        scan.copy = None
        return
    found = row.count(b"\t") + 1
    if fields_ and found != fields_:
        scan.problem(f"line {scan.line_no}: a row of {schema}.{table} has {found} fields, its COPY names {fields_}")
    if schema == "public":
        scan.tables[table] += 1


def _sql_line(scan: SqlScan, line: bytes) -> None:
    stripped = line.strip()
    if not scan.mode and stripped == DUMP_TRAILER:
        scan.trailer = True  # even after an open statement: then the parse says what is wrong
    if not scan.mode and not scan.open:
        if stripped.startswith(DUMP_HEADER) and not scan.header:
            scan.header = True
        if stripped.startswith(b"\\"):
            return  # a psql meta-command (\restrict / \unrestrict of current pg_dump, \connect)
        match = COPY_HEADER.match(stripped)
        if match:
            schema = _unquote(match.group(1)) if match.group(1) else "public"
            table = _unquote(match.group(2))
            columns = len(IDENTIFIER.findall(match.group(3))) if match.group(3) else 0
            if schema == "public":  # as exact_row_counts counts: the public schema's tables
                scan.tables.setdefault(table, 0)
            else:
                scan.other_copies += 1
            scan.copy = (schema, table, columns)
            scan.statements += 1
            return
    _lex(scan, line)


def _lex(scan: SqlScan, line: bytes) -> None:
    """Advance the quote/comment state over one line of SQL, counting statements at their top-level ';'."""
    pos = 0
    for token in SQL_TOKEN.finditer(line):
        if not scan.mode and line[pos:token.start()].strip():
            scan.open = True
        pos = token.end()
        value = token.group()
        if scan.mode:
            closes = {b"'": b"'", b'"': b'"', b"/*": b"*/"}.get(scan.mode, scan.mode)
            if value == closes:
                scan.mode = b""
        elif value == b"--":
            return
        elif value == b";":
            scan.statements += 1
            scan.open = False
        elif value != b"*/":
            scan.mode = value
            if value != b"/*":
                scan.open = True
    if not scan.mode and line[pos:].strip():
        scan.open = True
