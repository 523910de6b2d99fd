"""Backups against a real database: verified, killed, corrupted, pruned, restored, on a full disk."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops import backup, cli
from ccops.backup.naming import backup_name, manifest_path
from ccops.backup.verify import run_pg_restore
from ccops.core.db import client_tool, libpq_env, normalize_url
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import PRODUCTION_SCHEMA
from tests.helpers import backup_source


@pytest.fixture
def demo_db(make_demo_database, ccops_env, monkeypatch):
    """A demo-filled database of our own, and a backup dir under tmp."""
    return backup_source(make_demo_database, ccops_env, monkeypatch, seed=3, days=6)


def query(url: str, sql: str):
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        cursor = conn.execute(text(sql))
        result = cursor.fetchall() if cursor.returns_rows else []
    engine.dispose()
    return result


def test_backup_is_verified_and_manifest_counts_are_exact(demo_db, capsys):
    assert cli.main(["backup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and "pg_restore --list" in out["reason"]
    manifest = out["manifest"]
    assert manifest["sha256"] == backup.sha256_of(Path(out["file"]))
    for table, count in manifest["row_counts"].items():
        assert query(demo_db, f'SELECT count(*) FROM "{table}"')[0][0] == count
    assert manifest["row_counts"]["agent_logs"] > 1000
    assert oct(Path(out["file"]).stat().st_mode)[-3:] == "600"


def test_killed_pg_dump_leaves_no_backup_and_earlier_ones_intact(demo_db, ccops_env):
    first = backup.create_backup(load_settings())
    query(demo_db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1500000) g")
    code = ("import sys; from ccops.core.settings import load_settings; from ccops import backup; "
            "backup.create_backup(load_settings(), compression=9)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    directory = ccops_env / "backups"
    deadline = time.monotonic() + 30
    killed = False
    while time.monotonic() < deadline and not killed:
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                try:
                    cmdline = (pid_dir / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                # pg_dump writes into zstd's pipe: it is found as the backup process's child
                if cmdline and cmdline[0].endswith(b"pg_dump") and _parent(pid_dir) == proc.pid:
                    running = list(directory.glob(".*.partial"))
                    if running:
                        # held still while the prune runs (on a loaded machine the dump could otherwise
                        # finish first and leave nothing to kill); SIGKILL ends a stopped process all the same
                        try:
                            os.kill(int(pid_dir.name), signal.SIGSTOP)
                        except ProcessLookupError:
                            continue
                        # a prune while the dump runs must leave its growing partial file alone
                        assert cli.main(["backup", "prune", "--yes"]) == 0
                        assert all(p.exists() for p in running), "prune deleted the running backup's partial file"
                        os.kill(int(pid_dir.name), signal.SIGKILL)
                        killed = True
                        break
        time.sleep(0.02)
    assert killed, "pg_dump was caught part-way"
    assert proc.wait(timeout=60) != 0
    names = sorted(p.name for p in directory.iterdir() if not p.name.startswith(".ccops-"))
    assert names == [first.path.name, first.path.name + ".manifest.json"], "no partial file left, nothing new"
    assert backup.verify_backup(first.path).ok


def _parent(pid_dir: Path) -> int:
    """The parent pid in /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        return int((pid_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_truncated_and_bit_flipped_backups_fail_and_do_not_count(demo_db, ccops_env):
    settings = load_settings()
    good = backup.create_backup(settings, now=datetime(2026, 11, 18, 2, 0))
    truncated = backup.create_backup(settings, now=datetime(2026, 11, 19, 2, 0))
    flipped = backup.create_backup(settings, now=datetime(2026, 11, 20, 2, 0))
    truncated.path.write_bytes(truncated.path.read_bytes()[:-5000])
    data = bytearray(flipped.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.path.write_bytes(bytes(data))
    assert not backup.verify_backup(truncated.path).ok
    assert "sha256" in backup.verify_backup(flipped.path).reason
    assert backup.latest_verified(settings.effective_backup_dir).path == good.path
    with pytest.raises(backup.BackupError, match="refusing to restore"):
        backup.restore_backup(settings, flipped.path, "content_creator_restored", confirm=True)


def copy_backup(taken: backup.BackupResult, moment: datetime) -> Path:
    """The backup `taken` again as if pg_dump had run at `moment`: its bytes under the name of that moment, and its
    manifest with that file name and time (size, sha256 and row counts are the bytes' own), as create_backup
    writes them. Retention and verification read only names, manifests and bytes (pg_restore --list included)."""
    name = backup_name(moment, 1, taken.path.name[taken.path.name.index(".dump"):])
    copy = taken.path.with_name(name)
    shutil.copy2(taken.path, copy)
    stamp = moment.isoformat() + "Z"
    manifest_path(copy).write_text(json.dumps({**taken.manifest, "file": name, "start": stamp, "end": stamp}, indent=2))
    os.chmod(copy, 0o600)
    os.chmod(manifest_path(copy), 0o600)
    return copy


def test_retention_keeps_newest_verified_when_last_ten_days_failed(tmp_path, demo_db, ccops_env):
    settings = load_settings()
    now = datetime(2026, 11, 28, 3, 0)
    # one real pg_dump, 40 days old; the other 19 are copies of it with manifests of their own (copy_backup)
    first = backup.create_backup(settings, now=now - timedelta(days=40))
    assert first.verified, first.reason
    for days_ago in range(37, 10, -3):  # verified backups 40..13 days old
        copy_backup(first, now - timedelta(days=days_ago))
    for days_ago in range(10, 0, -1):  # the last ten days: all broken
        copy_backup(first, now - timedelta(days=days_ago)).write_bytes(b"PGDMP broken")
    leftover = ccops_env / "backups" / ".contentcreator_20261128_020000.dump.partial"
    leftover.write_bytes(b"x")
    seven_hours_ago = time.time() - 7 * 3600
    os.utime(leftover, (seven_hours_ago, seven_hours_ago))
    (ccops_env / "backups" / ".contentcreator_20261128_030000.dump.partial").write_bytes(b"still being written")
    plan = backup.plan_retention(settings.effective_backup_dir, now, retention_days=30, keep_verified=7)
    kept = {p.name for p, _ in plan.keep}
    verified = [b for b in backup.list_backups(settings.effective_backup_dir) if b.verified]
    assert len(verified) == 10
    assert {b.path.name for b in verified[:7]} <= kept, "the newest 7 verified stay whatever their age"
    deleted = {p.name for p in plan.delete_paths()}
    assert ".contentcreator_20261128_020000.dump.partial" in deleted
    assert ".contentcreator_20261128_030000.dump.partial" in kept, "a partial file written lately may be a running dump"
    assert all(name not in deleted for name in kept)
    before = sorted(p.name for p in (ccops_env / "backups").iterdir())
    assert cli.main(["backup", "prune", "--dry-run"]) == 0
    assert sorted(p.name for p in (ccops_env / "backups").iterdir()) == before, "dry run deletes nothing"
    backup.apply_retention(plan)
    left = [b for b in backup.list_backups(settings.effective_backup_dir) if b.verified]
    assert len(left) >= 7


def test_full_backup_filesystem_is_a_clear_error_and_loses_nothing(demo_db, ccops_env, monkeypatch, tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        (mount / "old.txt").write_text("an earlier file that must survive")
        monkeypatch.setenv("CCOPS_BACKUP_DIR", str(mount))
        query(demo_db, "CREATE TABLE noise AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
        with pytest.raises(backup.BackupError, match="no backup was written"):
            backup.create_backup(load_settings(), compression=0)
        assert sorted(p.name for p in mount.iterdir() if p.name != backup.LOCK_NAME) == ["old.txt"]
        assert (mount / "old.txt").read_text() == "an earlier file that must survive"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_restore_into_a_database_with_data_takes_a_safety_dump_first(demo_db, ccops_env, make_database, monkeypatch):
    settings = load_settings()
    source = backup.create_backup(settings)
    target = make_database("ccops", name="restore_target")
    query(target, "INSERT INTO insights (timestamp, type, asset, confidence, details) VALUES (now(), 'BREAKOUT', 'ETH', 0.5, '{}')")
    assert cli.main(["restore", str(source.path), "--target", target]) == 64, "no --yes, no terminal: refused"
    assert query(target, "SELECT count(*) FROM insights")[0][0] == 1, "nothing changed without confirmation"

    result = backup.restore_backup(settings, source.path, target, confirm=True, run_health=False, jobs=2,
                                   app_stopped=True)  # backend none cannot stop the app: the operator did
    assert result.ok, result.summary()
    names = [s.name for s in result.steps]
    assert names.index("safety dump") < names.index("restore")
    # ccops' .dump.zst was written through a pipe: its decompressed copy gets the data offsets -j 2 needs
    detail = next(s.detail for s in result.steps if s.name == "restore")
    assert "with 2 parallel jobs" in detail and "data offsets of" in detail, detail
    assert "check row counts" in names
    assert query(target, "SELECT count(*) FROM insights")[0][0] == source.manifest["row_counts"]["insights"]
    # the safety dump lives in safety/, is itself verified, and never passes for a backup of the platform
    detail = next(s.detail for s in result.steps if s.name == "safety dump")
    safety = Path(detail)
    assert safety.parent == settings.effective_backup_dir / "safety" and safety.exists()
    assert backup.verify_backup(safety).ok and backup.manifest_path(safety).exists()
    assert backup.read_manifest(safety)["row_counts"]["insights"] == 1, "it holds what was replaced"
    assert [b.path for b in backup.list_backups(settings.effective_backup_dir)] == [source.path]
    assert backup.latest_verified(settings.effective_backup_dir).path == source.path
    plan = backup.plan_retention(settings.effective_backup_dir, datetime(2030, 1, 1), 0, 0)
    assert safety in [p for p, _ in plan.keep], "the newest safety dump stays, whatever its age"
    assert safety not in plan.delete_paths()


def test_retention_ages_out_safety_dumps_but_keeps_the_newest(tmp_path):
    safety = tmp_path / "backups" / backup.SAFETY_DIR
    safety.mkdir(parents=True)
    names = ["contentcreator_20261001_020000.dump", "contentcreator_20261020_020000.dump",
             "contentcreator_20261101_020000.dump"]
    for name in names:
        (safety / name).write_bytes(b"PGDMP" + b"x" * 100)
        backup.manifest_path(safety / name).write_text("{}")
    plan = backup.plan_retention(tmp_path / "backups", datetime(2026, 11, 2), 30, 7)
    deleted = sorted(p.name for p in plan.delete_paths())
    assert deleted == [names[0], names[0] + backup.MANIFEST_SUFFIX]
    assert {p.name for p, _ in plan.keep} == {names[1], names[2]}
    old = backup.plan_retention(tmp_path / "backups", datetime(2027, 6, 1), 30, 7)
    assert {p.name for p, _ in old.keep} == {names[2]}, "the newest stays even when every one is old"
    assert backup.apply_retention(old) > 0
    assert sorted(p.name for p in safety.iterdir()) == [names[2], names[2] + backup.MANIFEST_SUFFIX]


@pytest.mark.skipif(not PRODUCTION_SCHEMA.exists(), reason="production-schema.sql not beside the checkout")
def test_production_dump_from_postgres_17_restores_into_15(make_database, ccops_env, monkeypatch):
    url = make_database("none", name="from_pg17")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "b"))
    backup_file = ccops_env / "contentcreator_20251216_020000.sql"
    backup_file.write_text(PRODUCTION_SCHEMA.read_text())
    result = backup.restore_backup(load_settings(), backup_file, url, confirm=True, stop_app=False, run_health=False)
    assert result.ok, result.summary()
    assert len(query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")) == 16


def test_restore_jobs_default_to_one_per_core_at_most_four(ccops_env, monkeypatch):
    settings = load_settings()
    assert settings.backup.restore_jobs == 0
    assert backup.effective_jobs(settings) == max(1, min(4, os.cpu_count() or 1))
    assert backup.effective_jobs(settings, 3) == 3
    monkeypatch.setenv("CCOPS_BACKUP_RESTORE_JOBS", "5")
    configured = load_settings()
    assert backup.effective_jobs(configured) == 5 and backup.effective_jobs(configured, 0) == 5
    assert backup.effective_jobs(configured, 1) == 1


def test_restore_test_restores_compares_and_drops(demo_db, ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKUP_RESTORE_JOBS", "2")
    settings = load_settings()
    backup.create_backup(settings)
    result = backup.restore_test(settings)
    assert result.ok and result.counts and all(r["ok"] for r in result.counts)
    assert result.jobs == 2 and result.restored_text.endswith("(2 pg_restore jobs)")
    assert not query(demo_db, f"SELECT 1 FROM pg_database WHERE datname = '{result.scratch}'")


def test_backup_and_recovery_runbooks_headless(demo_db, ccops_env, make_database):
    settings = load_settings()
    record = runner.run_runbook(settings, "backup", [], timeout=300).record
    assert record["outcome"] == "ok", record
    assert any(f["check"] == "action.backup" and f["status"] == "OK" for f in record["findings"])
    target = make_database("ccops", name="recovery_target")
    dry = runner.run_runbook(settings, "recovery", [["target", target]], timeout=300).record
    assert {f["check"]: f for f in dry["findings"]}["action.restore"]["status"] == "INFO"
    real = runner.run_runbook(settings, "recovery", [["target", target], ["dry_run", "False"], ["confirm", "True"],
                                                     ["app_stopped", "True"]], timeout=300).record
    found = {f["check"]: f for f in real["findings"]}
    assert found["action.restore"]["status"] == "OK", found["action.restore"]["summary"]
    assert found["backup.restore_steps"]["status"] == "OK"
    assert query(target, "SELECT count(*) FROM agent_logs")[0][0] > 1000




# ---- restore into a scratch database, then swap -------------------------------------------

def databases(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT datname FROM pg_database")}


def marked_target(make_database) -> str:
    """A target holding one row the backup does not have: whether it survives shows whether it was touched."""
    target = make_database("ccops")
    query(target, "INSERT INTO insights (timestamp, type, asset, confidence, details) "
                  "VALUES (now(), 'BREAKOUT', 'MARK', 0.5, '{}')")
    return target


def test_failed_restore_leaves_the_target_untouched_and_drops_the_scratch(demo_db, ccops_env, make_database):
    settings = load_settings()
    target = marked_target(make_database)
    name = target.rsplit("/", 1)[1]
    # a plain dump that verifies (pg_dump's trailer is there) but fails half-way through loading
    env = {**os.environ, **libpq_env(demo_db)}
    plain = subprocess.run([client_tool("pg_dump")], env=env, check=True, capture_output=True).stdout
    cut = plain.index(b"\nCOPY public.insights")
    broken = ccops_env / "contentcreator_20261120_020000.sql"
    broken.write_bytes(plain[:cut] + b"\nSELECT 1/0;\n" + plain[cut:])
    assert backup.verify_backup(broken).ok

    result = backup.restore_backup(settings, broken, target, confirm=True, stop_app=False, safety_dump=False,
                                   run_health=False)
    assert not result.ok and "restore" in result.summary() and "division by zero" in result.summary()
    assert query(target, "SELECT asset FROM insights") == [("MARK",)], "the target was not touched"
    assert f"{name}_ccops_restore" not in databases(target), "the scratch database was dropped"
    assert not [d for d in databases(target) if "_ccops_old_" in d]
    assert [s.name for s in result.steps][-1] == "drop scratch database"


def test_row_count_mismatch_stops_before_the_swap(demo_db, ccops_env, make_database):
    settings = load_settings()
    source = backup.create_backup(settings)
    manifest = json.loads(backup.manifest_path(source.path).read_text())
    manifest["row_counts"]["agent_logs"] += 1  # the dump no longer restores what its manifest promises
    backup.manifest_path(source.path).write_text(json.dumps(manifest))
    target = marked_target(make_database)
    result = backup.restore_backup(settings, source.path, target, confirm=True, stop_app=False, run_health=False)
    assert not result.ok and "check row counts" in result.summary()
    assert "swap databases" not in [s.name for s in result.steps]
    assert query(target, "SELECT asset FROM insights") == [("MARK",)]
    assert not [d for d in databases(target) if "_ccops_" in d]


def test_successful_restore_swaps_in_the_scratch_and_drops_the_old(demo_db, ccops_env, make_database):
    import psycopg

    settings = load_settings()
    source = backup.create_backup(settings)
    target = marked_target(make_database)
    name = target.rsplit("/", 1)[1]
    idle = psycopg.connect(target.replace("postgresql+psycopg", "postgresql"))  # an app session left open
    try:
        result = backup.restore_backup(settings, source.path, target, confirm=True, stop_app=False, run_health=False)
    finally:
        idle.close()
    assert result.ok, result.summary()
    steps = [s.name for s in result.steps]
    assert steps.index("check row counts") < steps.index("swap databases") < steps.index("drop old database")
    swap = next(s.detail for s in result.steps if s.name == "swap databases")
    assert f"{name}_ccops_restore renamed to {name}" in swap and f"{name}_ccops_old_" in swap
    assert query(target, "SELECT count(*) FROM insights WHERE asset = 'MARK'") == [(0,)]
    assert query(target, "SELECT count(*) FROM agent_logs")[0][0] == source.manifest["row_counts"]["agent_logs"]
    assert not [d for d in databases(target) if "_ccops_" in d], "no scratch or old database is left"
    fresh = f"{name}_new"  # a target that does not exist yet: nothing to keep aside, nothing to drop
    result = backup.restore_backup(settings, source.path, fresh, confirm=True, stop_app=False, run_health=False)
    assert result.ok and "drop old database" not in [s.name for s in result.steps], result.summary()
    assert query(backup.target_url(settings, fresh), "SELECT count(*) FROM insights")[0][0] == \
        source.manifest["row_counts"]["insights"]


# ---- verification reads every data block ------------------------------------------------

def test_truncated_dump_without_manifest_fails_the_full_read(demo_db, ccops_env):
    query(demo_db, "CREATE TABLE noise AS SELECT g, md5(g::text) AS h FROM generate_series(1, 120000) g")
    made = backup.create_backup(load_settings())
    assert made.manifest["size"] > 3_000_000, "a dump with several MB of data"
    backup.manifest_path(made.path).unlink()
    assert backup.verify_backup(made.path).ok, "intact without its manifest: pg_restore reads it through"
    made.path.write_bytes(made.path.read_bytes()[: made.manifest["size"] * 2 // 3])
    listing = run_pg_restore(["--list"], made.path, read_all=False, timeout=60)
    assert listing.returncode == 0, "the table of contents alone still reads: --list cannot tell"
    result = backup.verify_backup(made.path)
    assert not result.ok and "full read failed" in result.reason
    assert result.checks == ["pg_restore --list"]


# ---- plain SQL: streamed, settings the target lacks dropped ---------------------------------

def test_plain_sql_is_streamed_and_unknown_settings_are_dropped(demo_db, ccops_env, make_database):
    query(demo_db, "CREATE TABLE noise AS SELECT g, md5(g::text) AS h FROM generate_series(1, 500000) g")
    env = {**os.environ, **libpq_env(demo_db)}
    plain = subprocess.run([client_tool("pg_dump")], env=env, check=True, capture_output=True).stdout
    plain = plain.replace(b"SET statement_timeout = 0;\n",
                          b"SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET ccops_future_knob = on;\n", 1)
    assert len(plain) > 20_000_000
    dump = ccops_env / "contentcreator_20261120_020000.sql.gz"
    dump.write_bytes(gzip.compress(plain, compresslevel=1))
    target = make_database("none")
    code = ("import json, resource, sys; from pathlib import Path; from ccops import backup; "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "detail = backup.load_dump(Path(sys.argv[1]), sys.argv[2]); "
            "print(json.dumps([detail, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))")
    proc = subprocess.run([sys.executable, "-c", code, str(dump), target], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    detail, base_kib, peak_kib = json.loads(proc.stdout)
    assert "SET ccops_future_knob" in detail and "SET transaction_timeout" in detail
    assert (peak_kib - base_kib) * 1024 < len(plain) / 4, "the dump was not held in memory"
    assert query(target, "SELECT count(*) FROM noise") == [(500000,)]


# ---- owners kept when the roles exist -------------------------------------------------------

@pytest.fixture
def owned_source(make_database, pg_cluster, ccops_env):
    """A database whose table belongs to a role of its own; returns (url, role, drop) where drop() removes both."""
    role = f"ccops_owner_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}"
    source = make_database("none")
    pg_cluster.psql(f"CREATE ROLE {role}")
    query(source, f"CREATE TABLE things (id int PRIMARY KEY, name text); ALTER TABLE things OWNER TO {role}; "
                  f"INSERT INTO things VALUES (1, 'one'), (2, 'two')")
    owned = [source]

    def drop(*also: str) -> None:
        for url in owned + list(also):
            pg_cluster.psql(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
        pg_cluster.psql(f"DROP ROLE IF EXISTS {role}")

    yield source, role, drop
    try:
        drop()
    except Exception:  # noqa: BLE001 - a role left behind in the test cluster harms nothing
        pass


def owner_of(url: str, table: str) -> str:
    return query(url, f"SELECT tableowner FROM pg_tables WHERE tablename = '{table}'")[0][0]


def test_owners_are_kept_when_the_roles_exist_and_reported_when_not(owned_source, ccops_env, make_database):
    source, role, drop = owned_source
    env = {**os.environ, **libpq_env(source)}
    custom = ccops_env / "contentcreator_20261120_020000.dump"
    subprocess.run([client_tool("pg_dump"), "-Fc", "-f", str(custom)], env=env, check=True)
    plain = ccops_env / "contentcreator_20261120_030000.sql"
    subprocess.run([client_tool("pg_dump"), "-f", str(plain)], env=env, check=True)

    kept = make_database("none")
    detail = backup.load_dump(custom, kept)
    assert owner_of(kept, "things") == role and f"owners kept ({role}" in detail

    drop(kept)  # the role is gone: the same dumps restore, without their owner, and say so
    for dump in (custom, plain):
        target = make_database("none")
        detail = backup.load_dump(dump, target)
        assert "ownership not kept" in detail and role in detail, detail
        assert owner_of(target, "things") == "postgres"
        assert query(target, "SELECT count(*) FROM things") == [(2,)]


# ---- the lock: prune during a backup, backups one at a time; the verification cache ----------

def test_prune_leaves_partial_files_alone_while_a_backup_holds_the_lock(demo_db, ccops_env, monkeypatch):
    settings = load_settings()
    directory = settings.effective_backup_dir
    old = backup.create_backup(settings, now=datetime(2026, 9, 1, 2, 0))
    backup.create_backup(settings, now=datetime(2026, 11, 19, 2, 0))
    leftover = directory / ".contentcreator_20261101_020000.dump.partial"
    leftover.write_bytes(b"left by a crash")
    stamp = time.time() - 7 * 3600
    os.utime(leftover, (stamp, stamp))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from ccops import backup\n"
         "with backup.backup_lock(Path(sys.argv[1]), 5):\n    print('locked', flush=True); time.sleep(60)",
         str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(backup.prune, "PRUNE_LOCK_WAIT_S", 0.5)
        monkeypatch.setattr(backup.take, "BACKUP_LOCK_WAIT_S", 0.5)
        with pytest.raises(backup.BackupBusy, match="a backup is running"):
            backup.create_backup(settings)
        plan = backup.plan_retention(directory, datetime(2026, 11, 20), retention_days=30, keep_verified=1)
        assert leftover in plan.delete_paths() and old.path in plan.delete_paths()
        backup.apply_retention(plan)
        assert leftover.exists(), "a partial file is never deleted while a backup holds the lock"
        assert not old.path.exists(), "old backups still go"
        assert any("a backup is running" in n for n in plan.notes)
    finally:
        holder.kill()
        holder.wait()
    plan = backup.plan_retention(directory, datetime(2026, 11, 20), retention_days=30, keep_verified=1)
    backup.apply_retention(plan)
    assert not leftover.exists() and not plan.notes


def test_verification_results_are_cached_by_size_and_mtime(demo_db, ccops_env):
    settings = load_settings()
    made = backup.create_backup(settings)
    cache = settings.effective_backup_dir / ".ccops-verified.json"
    entry = json.loads(cache.read_text())[made.path.name]
    stat = made.path.stat()
    assert (entry["size"], entry["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
    # same size, same mtime, different bytes: only a cache hit can still call it verified, so no re-hash happened
    data = bytearray(made.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    made.path.write_bytes(bytes(data))
    os.utime(made.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert backup.list_backups(settings.effective_backup_dir)[0].verified
    assert not backup.verify_backup(made.path).ok, "an explicit verify always reads the file"
    os.utime(made.path)  # a new mtime: the cached result no longer applies
    listed = backup.list_backups(settings.effective_backup_dir)[0]
    assert not listed.verified and "sha256" in listed.reason
    assert made.path.name not in json.loads(cache.read_text()), "failures are not cached"


# ---- docker compose route and the off-site copy -------------------------------------------

@pytest.fixture
def fake_docker(pg_cluster, ccops_env, monkeypatch):
    """A `docker` on PATH that runs `compose ... exec -T <service> <cmd>` here, as the container would."""
    bindir = ccops_env / "bin"
    bindir.mkdir()
    log = ccops_env / "docker.log"
    env = pg_cluster.libpq_env()
    script = bindir / "docker"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
while [ $# -gt 0 ] && [ "$1" != "exec" ]; do shift; done
shift; [ "$1" = "-T" ] && shift
service=$1; shift
if [ "$service" != "db" ]; then echo "service \\"$service\\" is not running" >&2; exit 1; fi
tool=$1; shift
PGHOST={env['PGHOST']} PGPORT={env['PGPORT']} PGPASSWORD={env['PGPASSWORD']} exec {Path(client_tool('pg_dump')).parent}/$tool "$@"
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def test_backup_via_compose(demo_db, fake_docker, monkeypatch, capsys):
    name = demo_db.rsplit("/", 1)[1]
    monkeypatch.setenv("CCOPS_COMPOSE_DB_USER", "postgres")
    monkeypatch.setenv("CCOPS_COMPOSE_DB_NAME", name)
    assert cli.main(["backup", "--via", "compose", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and "pg_restore full read" in out["reason"]
    assert fake_docker.read_text().split() == ["compose", "--project-directory", ".", "exec", "-T", "db", "pg_dump",
                                               "-U", "postgres", "-Fc", "-Z6", name]
    manifest = out["manifest"]
    assert manifest["via"] == "compose" and manifest["database"] == name and manifest["server_version"].startswith("15")
    assert manifest["row_counts"]["agent_logs"] == query(demo_db, "SELECT count(*) FROM agent_logs")[0][0]
    assert manifest["row_counts_exact"] is False and "not in its snapshot" in manifest["row_counts_note"]

    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")  # only the container reaches it
    assert cli.main(["backup", "--via", "compose", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    assert manifest["row_counts"] == {} and "not reachable" in manifest["row_counts_note"]

    monkeypatch.setenv("CCOPS_COMPOSE_DB_SERVICE", "postgres-main")
    assert cli.main(["backup", "--via", "compose"]) == 2
    assert 'service "postgres-main" is not running' in capsys.readouterr().err
    directory = Path(os.environ["CCOPS_BACKUP_DIR"])
    assert not list(directory.glob(".*.partial")) and len(backup.list_backups(directory)) == 2


def test_offsite_copy_to_a_directory_is_verified_and_pruned(demo_db, ccops_env, monkeypatch, capsys):
    offsite = ccops_env / "offsite"
    offsite.mkdir()
    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", str(offsite))
    monkeypatch.setenv("CCOPS_BACKUP_KEEP_VERIFIED", "2")
    seed = backup.create_backup(load_settings(), now=datetime(2020, 1, 1))  # copies of it, aged, fill the off-site dir
    for day in (1, 2, 3, 4):
        for src in (seed.path, backup.manifest_path(seed.path)):
            (offsite / src.name.replace("20200101", f"2020010{day}")).write_bytes(src.read_bytes())
    assert cli.main(["backup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    made = Path(out["file"])
    assert out["offsite"]["ok"], out["offsite"]
    copy = offsite / made.name
    assert backup.sha256_of(copy) == out["manifest"]["sha256"]
    assert backup.manifest_path(copy).read_text() == backup.manifest_path(made).read_text()
    names = sorted(p.name for p in offsite.iterdir() if not p.name.startswith(".ccops-"))
    # the new copy and the newest old one are the 2 verified kept; the three older copies are beyond 30 days
    kept_old = seed.path.name.replace("20200101", "20200104")  # .dump.zst: the off-site copy keeps the name
    assert names == sorted([made.name, made.name + ".manifest.json", kept_old, kept_old + ".manifest.json"])
    assert sorted(out["offsite"]["deleted"])[:1] == [seed.path.name]

    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", str(ccops_env / "not-mounted"))
    assert cli.main(["backup"]) == 1, "local backup good, off-site copy failed: a warning"
    assert "is the remote disk mounted" in capsys.readouterr().out


def test_offsite_url_without_fsspec_is_a_clear_error(demo_db, ccops_env, monkeypatch):
    # the test extras install fsspec and s3fs; a host without the extra ccops[s3] is made by hiding them
    for name in [m for m in sys.modules if m == "fsspec" or m.startswith(("fsspec.", "s3fs"))] + ["fsspec", "s3fs"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", "s3://backups/contentcreator")
    settings = load_settings()
    made = backup.create_backup(settings)
    with pytest.raises(backup.BackupError, match=r"pip install fsspec s3fs") as err:
        backup.offsite_copy(settings, made.path)
    assert "\n" not in str(err.value)


# ---- the app's own scripts/backup.sh backups, and counts on the compose route ------------------

from tests.conformance.test_app_backups import app_dir, backup_sh, setup_app_backups  # noqa: E402


def test_retention_never_deletes_the_newest_good_app_backup(make_database, pg_cluster, ccops_env, monkeypatch):
    """Only backup.sh's files, all beyond 30 days: the newest good dump (and .env, logs copy) stays."""
    made = setup_app_backups(make_database, pg_cluster, ccops_env, monkeypatch)
    directory, project = made["dir"], made["project"]
    for moment in (datetime(2026, 9, 1, 2, 0), datetime(2026, 9, 2, 2, 0), datetime(2026, 9, 3, 2, 0)):
        backup_sh(pg_cluster, directory, project, moment)
    newest = directory / "db_20260903_020000.sql"
    newest.write_bytes(newest.read_bytes()[:5000])  # the last run before the gap died half-way
    plan = backup.plan_retention(directory, datetime(2026, 12, 31), 30, keep_verified=1)
    kept = {p.name for p, _ in plan.keep}
    deleted = {p.name for p, _ in plan.delete}
    assert kept == {"db_20261128_020000.sql", "env_20261128_020000", "logs_20261128_020000.tar.gz"}
    made["files"]["db"].unlink()  # without November's dump, September's newest GOOD one is the floor
    for kind in ("env", "logs"):
        made["files"][kind].unlink()
    plan = backup.plan_retention(directory, datetime(2026, 12, 31), 30, keep_verified=1)
    kept = {p.name for p, _ in plan.keep}
    deleted = {p.name for p, _ in plan.delete}
    assert kept == {"db_20260902_020000.sql", "env_20260903_020000", "logs_20260903_020000.tar.gz"}, plan.rows()
    assert deleted == {"db_20260901_020000.sql", "db_20260903_020000.sql", "env_20260901_020000",
                       "env_20260902_020000", "logs_20260901_020000.tar.gz", "logs_20260902_020000.tar.gz"}
    assert "app backup.sh" in next(r for p, r in plan.keep if p.name == "db_20260902_020000.sql")
    with pytest.raises(backup.BackupError, match="db_20260902_020000.sql: it is the newest verified backup"):
        backup.refuse_newest_verified([directory / "db_20260902_020000.sql"])
    backup.apply_retention(plan)
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == sorted(kept)


def test_backup_saves_the_apps_env_and_logs_like_backup_sh(demo_db, ccops_env, monkeypatch, capsys):
    project = app_dir(ccops_env)  # .env 0644, as operators leave it
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(project / ".env"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(project / "logs"))
    monkeypatch.setenv("CCOPS_BACKUP_INCLUDE_ENV", "true")
    monkeypatch.setenv("CCOPS_BACKUP_INCLUDE_LOGS", "true")
    assert cli.main(["backup", "--json"]) == 0
    copies = {Path(c["file"]).name: c for c in json.loads(capsys.readouterr().out)["copies"]}
    env_name = next(n for n in copies if n.startswith("contentcreator_env_"))
    logs_name = next(n for n in copies if n.startswith("contentcreator_logs_"))
    assert all(c["verified"] for c in copies.values()), copies
    directory = ccops_env / "backups"
    assert (directory / env_name).read_bytes() == (project / ".env").read_bytes()
    assert oct((directory / env_name).stat().st_mode)[-3:] == "600" == oct((directory / logs_name).stat().st_mode)[-3:]
    assert backup.parse_name(env_name).origin == backup.ORIGIN_CCOPS, "never mistaken for backup.sh's env_*"
    assert "5 members" in copies[logs_name]["reason"]
    assert cli.main(["backup", "list", "--json"]) == 0
    kinds = sorted((r["kind"], r["origin"]) for r in json.loads(capsys.readouterr().out))
    assert kinds == [("db", "ccops"), ("env", "ccops"), ("logs", "ccops")]


@pytest.fixture
def docker_writing_during_dump(fake_docker, demo_db, ccops_env):
    """The fake container's pg_dump, preceded by 5 app writes: they land after ccops counted, before the dump."""
    script = ccops_env / "bin" / "docker"
    name = demo_db.rsplit("/", 1)[1]
    psql = Path(client_tool("psql"))
    write = (f'[ "$tool" = "pg_dump" ] && PGHOST=$PGHOST_ {psql} -X -q -d {name} -c "INSERT INTO agent_logs '
             "(agent_name, action, status, timestamp) SELECT 'PublishingAgent', 'execute', 'success', now() "
             'FROM generate_series(1, 5)"\n')
    text_ = script.read_text().replace("tool=$1; shift\n", "tool=$1; shift\n" + write)
    env = {k: v for k, v in libpq_env(demo_db).items() if k != "PGDATABASE"}
    exports = "".join(f"export {k}={v}\n" for k, v in env.items()) + f"PGHOST_={env['PGHOST']}\n"
    script.write_text(text_.replace("#!/bin/sh\n", "#!/bin/sh\n" + exports, 1))
    return name


def test_compose_route_restore_test_compares_the_dumps_own_rows(demo_db, docker_writing_during_dump, make_database,
                                                                monkeypatch):
    """Issue 14.11: with counts taken outside the snapshot, every row once read ok whatever was restored."""
    monkeypatch.setenv("CCOPS_COMPOSE_DB_USER", "postgres")
    monkeypatch.setenv("CCOPS_COMPOSE_DB_NAME", docker_writing_during_dump)
    settings = load_settings()
    made = backup.create_backup(settings, via="compose")
    manifest = made.manifest
    in_dump = query(demo_db, "SELECT count(*) FROM agent_logs")[0][0]
    assert manifest["row_counts_exact"] is False and manifest["row_counts"]["agent_logs"] == in_dump - 5

    result = backup.restore_test(settings, made.path)
    row = next(r for r in result.counts if r["table"] == "agent_logs")
    assert row == {"table": "agent_logs", "expected": in_dump, "restored": in_dump, "ok": True,
                   "live_before_dump": in_dump - 5, "live_differs": True}
    assert result.ok and result.counts_source.startswith("the dump's own data")
    assert "not provable" in result.live_note and "(agent_logs)" in result.live_note

    # the comparison has teeth now: a restore missing one row fails, the live counts notwithstanding
    target = make_database("none")
    backup.load_dump(made.path, target)
    expected = backup.expected_counts(made.path, manifest)
    assert all(r["ok"] for r in backup.compare_counts(target, expected.counts, expected.live_before))
    query(target, "DELETE FROM agent_logs WHERE id = (SELECT max(id) FROM agent_logs)")
    bad = [r for r in backup.compare_counts(target, expected.counts, expected.live_before) if not r["ok"]]
    assert [(r["table"], r["expected"] - r["restored"]) for r in bad] == [("agent_logs", 1)]
