"""A piped custom archive's data offsets, written in as pg_dump writes them into a file (ccops.backup.toc).

The inputs are real pg_dump 15 archives of the production schema (its tables
empty, agent_logs with rows) and of tables chosen for the format's edge cases:
a row of exactly 65,536 bytes (its length field holds three zero bytes), an
empty table, and a table ten times larger than the rest. The reference is
pg_dump itself: the same database dumped into a file, where pg_dump goes back
and writes each table's offset.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ccops.backup.toc import OFFSET_NOT_SET, OFFSET_SET, StreamScanner, fill_data_offsets, read_toc
from ccops.core.db import client_tool, libpq_env
from tests.test_backup import query


@pytest.fixture(scope="module")
def dumps(make_database, tmp_path_factory):
    """(url, the archive pg_dump wrote into a file, the same written into a pipe) of one unchanging database."""
    url = make_database("production")
    query(url, "INSERT INTO agent_logs (id, timestamp, agent_name, action, status, details) "
               "SELECT g, now(), 'market_analyzer', 'analyze', 'success', '{\"k\": 1}' FROM generate_series(1, 3000) g")
    query(url, "CREATE TABLE wide AS SELECT repeat('x', 65535) AS body")  # COPY line + newline: 65,536 bytes
    query(url, "CREATE TABLE nothing (id int)")
    query(url, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 60000) g")
    env = {**os.environ, **libpq_env(url)}
    where = tmp_path_factory.mktemp("toc")
    to_file = where / "file.dump"
    subprocess.run([client_tool("pg_dump"), "-Fc", "-Z0", "-f", str(to_file)], env=env, check=True)
    piped = through_a_pipe([client_tool("pg_dump"), "-Fc", "-Z0"], env, where / "pipe.dump")
    return url, to_file, piped


def through_a_pipe(command: list[str], env: dict[str, str], path: Path) -> Path:
    """`command | cat > path`: pg_dump sees a pipe it cannot seek back in, as in `ccops backup`."""
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE) as dump, open(path, "wb") as out:
        shutil.copyfileobj(dump.stdout, out)
    assert dump.returncode == 0
    return path


def test_the_toc_reads_as_pg_restore_lists_it(dumps):
    _, to_file, _ = dumps
    toc = read_toc(to_file.read_bytes())
    listed = subprocess.run([client_tool("pg_restore"), "--list", str(to_file)], capture_output=True, text=True,
                            check=True).stdout
    # "3412; 0 16541 TABLE DATA public agent_logs postgres": dump id; ... desc schema tag owner
    ids = [int(m.group(1)) for m in re.finditer(r"^(\d+); ", listed, re.MULTILINE)]
    special = {"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE"}  # read by pg_restore, never listed
    assert sorted(e.dump_id for e in toc.entries if e.desc not in special) == sorted(ids)
    assert {e.desc for e in toc.entries if e.desc in special} == special
    data = {e.tag: e for e in toc.entries if e.desc == "TABLE DATA"}
    assert {"agent_logs", "wide", "nothing", "big", "insights"} <= set(data)
    assert all(e.offset_state == OFFSET_SET for e in data.values()), "pg_dump wrote them into its file"
    assert toc.version == (1, 14, 0) and not toc.compressed and toc.int_size == 4 and toc.off_size == 8


def test_a_piped_archive_gets_the_offsets_pg_dump_writes_into_a_file(dumps, tmp_path):
    _, to_file, piped = dumps
    reference, before = to_file.read_bytes(), piped.read_bytes()
    toc = read_toc(before)
    assert {e.offset_state for e in toc.data_entries()} == {OFFSET_NOT_SET}, "a pipe cannot be rewritten"
    assert len(before) == len(reference) and before[toc.start:] != reference[toc.start:]

    copy = tmp_path / "copy.dump"
    copy.write_bytes(before)
    said = fill_data_offsets(copy)
    assert said.startswith(f"data offsets of {len(toc.data_entries())} tables written"), said
    after = copy.read_bytes()
    # byte for byte what pg_dump wrote into a file; only the header's creation time may differ
    assert after[toc.start:] == reference[toc.start:]
    assert fill_data_offsets(copy) == "data offsets already set by pg_dump" and copy.read_bytes() == after


def streamed(content: bytes, sizes: list[int]) -> dict[int, int] | str:
    """What a StreamScanner says about `content` fed in chunks of the given sizes, in turn (as a relay reads)."""
    scanner = StreamScanner()
    at, turn = 0, 0
    while at < len(content):
        size = sizes[turn % len(sizes)]
        scanner.feed(memoryview(content)[at:at + size])
        at, turn = at + size, turn + 1
    return scanner.offsets()


def test_a_stream_scanner_finds_the_offsets_pg_dump_writes_into_a_file(dumps):
    _, to_file, piped = dumps
    reference = {e.dump_id: e.offset for e in read_toc(to_file.read_bytes()).data_entries()}
    body = piped.read_bytes()
    # 1 MiB is the relay's own chunk, which holds the whole table of contents; uneven ones drift across the rest
    for sizes in ([len(body)], [1 << 20], [4093, 7], [65536, 1, 3, 11]):
        assert streamed(body, sizes) == reference, sizes
    # a cut at every byte around every block start: each header and each end-of-block run split every way
    for offset in reference.values():
        for cut in range(offset - 12, offset + 12):
            assert streamed(body, [cut, len(body)]) == reference, cut
    assert streamed(body[:300], [64]) == "the table of contents ends early"
    assert streamed(b"", [1]) == "the archive is empty"
    assert streamed(to_file.read_bytes(), [1 << 20]) == "data offsets already set by pg_dump"


def test_offsets_the_backup_found_are_written_after_a_check_and_wrong_ones_are_scanned_for(dumps, tmp_path):
    _, to_file, piped = dumps
    reference, body = to_file.read_bytes(), piped.read_bytes()
    toc = read_toc(body)
    found = streamed(body, [1 << 20])
    assert isinstance(found, dict)
    first, second = toc.data_entries()[0].dump_id, toc.data_entries()[1].dump_id
    wrong = {
        "one byte on": {**found, second: found[second] + 1},
        "one missing": {k: v for k, v in found.items() if k != second},
        "swapped": {**found, first: found[second], second: found[first]},
        "first moved": {**found, first: found[first] - 1},
    }
    copy = tmp_path / "copy.dump"
    copy.write_bytes(body)
    assert fill_data_offsets(copy, found).endswith("(as the backup found them, each checked where it points)")
    assert copy.read_bytes()[toc.start:] == reference[toc.start:]
    for name, offsets in wrong.items():
        copy.write_bytes(body)
        said = fill_data_offsets(copy, offsets)
        assert said.endswith("(found by a scan: the manifest's did not check out)"), (name, said)
        assert copy.read_bytes()[toc.start:] == reference[toc.start:], name


def test_with_its_offsets_a_parallel_restore_starts_with_the_largest_table(dumps, make_database, tmp_path):
    url, _, piped = dumps
    filled = tmp_path / "filled.dump"
    filled.write_bytes(piped.read_bytes())
    fill_data_offsets(filled)

    def first_tables(archive: Path) -> tuple[str, list[str]]:
        target = make_database(None)
        env = {**os.environ, **libpq_env(target)}
        done = subprocess.run([client_tool("pg_restore"), "-v", "-j", "2", "-d", env["PGDATABASE"], str(archive)],
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return target, re.findall(r"launching item \d+ TABLE DATA (\w+)", done.stderr)

    _, in_dump_order = first_tables(piped)  # no sizes known: pg_restore goes by dump id
    assert in_dump_order[0] != "big" and "big" in in_dump_order, in_dump_order
    target, launched = first_tables(filled)
    assert launched[0] == "big", launched
    for table in ("agent_logs", "wide", "nothing", "big"):
        assert query(target, f"SELECT count(*) FROM {table}") == query(url, f"SELECT count(*) FROM {table}")
    assert query(target, "SELECT length(body) FROM wide") == [(65535,)]


def test_what_cannot_be_proven_is_left_untouched(dumps, make_database, tmp_path):
    url, _, piped = dumps
    body = piped.read_bytes()
    toc = read_toc(body)
    cases = {
        "cut": body[: len(body) - 7],  # the last block's end is missing
        "block": body.replace(b"\x00" * 5 + b"\x01\x00" + toc.data_entries()[-1].dump_id.to_bytes(4, "little"),
                              b"\x00" * 5 + b"\x01\x00" + (9999).to_bytes(4, "little")),  # another id than the TOC's
    }
    compressed = through_a_pipe([client_tool("pg_dump"), "-Fc", "-Z1"], {**os.environ, **libpq_env(url)},
                                tmp_path / "z.dump")
    cases["compressed"] = compressed.read_bytes()
    cases["not a dump"] = b"-- PostgreSQL database dump\nSELECT 1;\n"
    reasons = {}
    for name, content in cases.items():
        path = tmp_path / f"{name}.dump"
        path.write_bytes(content)
        reasons[name] = fill_data_offsets(path)
        assert path.read_bytes() == content, f"{name}: {reasons[name]}"
        # a backup's relay cannot prove them either, and says the same
        assert "data offsets not filled: " + str(streamed(content, [4096])) == reasons[name], name
    assert "does not end with the end of a data block" in reasons["cut"]
    assert "was not found in dump order" in reasons["block"]
    assert "compressed" in reasons["compressed"]
    assert "no PGDMP magic" in reasons["not a dump"]
    assert all(r.startswith("data offsets not filled: ") for r in reasons.values())


def test_an_empty_file_is_left_as_it_is(tmp_path: Path):
    empty = tmp_path / "empty.dump"
    empty.touch()
    assert fill_data_offsets(empty) == "data offsets not filled: the archive is empty"
