"""Issue 12, backup side: no false success, a retention floor in code, no spliced identifiers, one-line errors.

Every test drives the real cluster of tests/conftest.py (roles, grants, hostile table names, wrong
passwords) and would fail on the code before the fix: a restore that reported success without
restoring, retention that deleted every verified backup, a backup that ran a planted function,
tracebacks for a wrong password, a restore carrying on while nothing stopped the app, 0755 dirs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops import backup, cli
from ccops.backup.offsite import _prune_fsspec
from ccops.core.db import client_tool, libpq_env, normalize_url
from ccops.core.localpg import LocalPgError
from ccops.core.settings import load_settings

REPO = Path(__file__).resolve().parent.parent


def query(url: str, sql: str, params: dict | None = None) -> list:
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            cursor = conn.execute(text(sql), params or {})
            return cursor.fetchall() if cursor.returns_rows else []
    finally:
        engine.dispose()


def with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def source_db(make_demo_database, ccops_env, monkeypatch):
    """Demo data in a database of our own, without the extensions a non-superuser could not restore."""
    url = make_demo_database(5, 5)
    query(url, "DROP EXTENSION IF EXISTS pg_stat_statements; DROP EXTENSION IF EXISTS amcheck")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return url


@pytest.fixture
def restorer(pg_cluster, source_db):
    """A LOGIN CREATEDB role with pg_read_all_data (the hardened restore role of the issue), and a target it owns."""
    role = f"restorer_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    target = f"tgt_{uuid.uuid4().hex[:8]}"
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'; GRANT pg_read_all_data TO {role}")
    pg_cluster.psql(f"CREATE DATABASE {target} OWNER {role} TEMPLATE template0")
    url = with_db(source_db, target).replace(pg_cluster.url().split("@")[0].split("//")[1], f"{role}:{password}")
    query(url, "CREATE TABLE insights (id serial PRIMARY KEY, asset text)")
    query(url, "INSERT INTO insights (asset) VALUES ('MARK')")
    yield role, password, url
    for grant in ("GRANT CONNECT ON DATABASE postgres TO PUBLIC", "GRANT CONNECT ON DATABASE template1 TO PUBLIC"):
        pg_cluster.psql(grant, dbname="template1")
    for name in [r[0] for r in query(source_db, "SELECT datname FROM pg_database WHERE datname LIKE :p",
                                     {"p": f"{target}%"})]:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_cluster.psql(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")


def restore_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["restore", *argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ---- 1. no false success -----------------------------------------------------------------------

def test_restore_as_role_without_connect_on_postgres_really_restores(pg_cluster, source_db, restorer, capsys):
    role, password, target = restorer
    made = backup.create_backup(load_settings())
    pg_cluster.psql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    code, out = restore_cli(capsys, str(made.path), "--target", target, "--yes", "--app-stopped")
    assert code == 0, out
    assert password not in out
    assert query(target, "SELECT count(*) FROM insights WHERE asset = 'MARK'") == [(0,)], "the target was replaced"
    for table, count in made.manifest["row_counts"].items():
        assert query(target, f'SELECT count(*) FROM "{table}"') == [(count,)], table
    assert "verify target" in out and "match the manifest" in out
    assert "safety dump" in out and list((Path(os.environ["CCOPS_BACKUP_DIR"]) / "safety").glob("*.dump*"))


def test_restore_without_any_maintenance_database_fails_clearly(pg_cluster, source_db, restorer, capsys):
    role, password, target = restorer
    made = backup.create_backup(load_settings())
    pg_cluster.psql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; "
                    "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC")
    code, out = restore_cli(capsys, str(made.path), "--target", target, "--yes", "--app-stopped")
    assert code == 2, out
    last = out.strip().splitlines()[-1]
    assert "failed at check target" in last and "maintenance database" in last, last
    assert password not in out and "Traceback" not in out
    assert query(target, "SELECT asset FROM insights") == [("MARK",)], "nothing was changed"


def test_restore_as_role_that_does_not_own_the_target_stops_at_the_swap(pg_cluster, source_db, restorer, capsys):
    role, password, target = restorer
    made = backup.create_backup(load_settings())
    pg_cluster.psql(f"ALTER DATABASE {target.rsplit('/', 1)[1]} OWNER TO postgres")
    code, out = restore_cli(capsys, str(made.path), "--target", target, "--yes", "--app-stopped")
    assert code == 2, out
    last = out.strip().splitlines()[-1]
    assert "failed at swap databases" in last and "must be owner" in last, last
    assert query(target, "SELECT asset FROM insights") == [("MARK",)], "the target is as it was"
    assert "drop scratch database" in out and "was not touched" in out
    assert not query(source_db, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_ccops\\_%'")


def test_restore_of_a_plain_dump_without_manifest_proves_its_rows_from_the_dump(source_db, make_database, ccops_env):
    """No manifest: the expected rows are the dump's own COPY rows, so the restore is still proved row for row."""
    env = {**os.environ, **libpq_env(source_db)}
    plain = ccops_env / "contentcreator_20261120_020000.sql"
    subprocess.run([client_tool("pg_dump"), "-f", str(plain)], env=env, check=True)
    target = make_database("none")
    result = backup.restore_backup(load_settings(), plain, target, confirm=True, app_stopped=True, run_health=False)
    assert result.ok, result.summary()
    final = next(s for s in result.steps if s.name == "verify target")
    assert "row counts of 16 tables match the dump's own data" in final.detail, final.detail
    assert "match the dump's own data" in next(s for s in result.steps if s.name == "check row counts").detail
    assert query(target, "SELECT count(*) FROM agent_logs") == query(source_db, "SELECT count(*) FROM agent_logs")


def test_a_restore_result_without_its_final_proof_is_no_success():
    result = backup.RestoreResult("postgresql://x@h/db")
    assert not result.ok, "no steps at all: nothing was restored"
    result.steps.append(backup.RestoreStep("stop app", "app stopped", 0.1, True))
    assert not result.ok and "did not finish" in result.summary()


def test_restore_test_on_an_unreachable_server_is_one_line(source_db, ccops_env, monkeypatch):
    made = backup.create_backup(load_settings())
    bad = source_db.replace("@127.0.0.1:", "x@127.0.0.1:", 1)  # a wrong password
    env = {**os.environ, "CCOPS_DATABASE_URL": bad}
    proc = subprocess.run([sys.executable, "-m", "ccops.cli", "backup", "test", str(made.path)], capture_output=True,
                          text=True, env=env, cwd=ccops_env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "restore test failed at create scratch database" in proc.stderr
    assert bad.split("@")[0].split(":")[-1] not in proc.stderr, "the password is masked"


# ---- 2. the newest verified backup is never deleted ----------------------------------------------

def test_retention_keeps_the_newest_verified_even_when_asked_for_none(source_db, ccops_env):
    settings = load_settings()
    old = [backup.create_backup(settings, now=datetime(2026, 1, day, 2, 0)) for day in (1, 2, 3)]
    directory = settings.effective_backup_dir
    plan = backup.plan_retention(directory, datetime(2027, 1, 1), retention_days=30, keep_verified=0)
    assert old[-1].path not in plan.delete_paths(), "the newest verified backup stays, whatever keep_verified says"
    assert old[0].path in plan.delete_paths()
    assert any("newest verified" in note for note in plan.notes)
    backup.apply_retention(plan)
    assert old[-1].path.exists() and backup.latest_verified(directory).path == old[-1].path

    with pytest.raises(backup.BackupError, match="retention_days -1"):
        backup.plan_retention(directory, datetime(2027, 1, 1), retention_days=-1, keep_verified=7)

    forged = backup.RetentionPlan(directory=directory, delete=[(old[-1].path, "forged")])
    with pytest.raises(backup.BackupError, match="newest verified backup"):
        backup.apply_retention(forged)
    assert old[-1].path.exists()


def test_prune_from_the_cli_never_deletes_the_newest_verified(source_db, ccops_env, monkeypatch, capsys):
    settings = load_settings()
    made = [backup.create_backup(settings, now=datetime(2025, 1, day, 2, 0)) for day in (1, 2)]
    monkeypatch.setenv("CCOPS_BACKUP_KEEP_VERIFIED", "0")
    cli.main(["backup", "prune", "--yes"])  # refused by the settings (exit 64) or planned with the floor: either way
    capsys.readouterr()
    assert made[-1].path.exists() and backup.verify_backup(made[-1].path).ok


def test_safety_dumps_keep_the_newest_verified_when_the_newest_is_broken(source_db, ccops_env):
    settings = load_settings()
    safety = backup.safety_dir(settings)
    good = backup.create_backup(settings, now=datetime(2026, 1, 1, 2, 0), directory=safety)
    broken = backup.create_backup(settings, now=datetime(2026, 1, 2, 2, 0), directory=safety)
    broken.path.write_bytes(b"PGDMP broken")
    plan = backup.plan_retention(settings.effective_backup_dir, datetime(2027, 1, 1), 30, 7)
    assert good.path not in plan.delete_paths(), "the newest safety dump that verifies stays"
    assert broken.path not in plan.delete_paths(), "and so does the newest"


class DirFS:
    """The five fsspec calls _prune_fsspec makes, on a real directory (fsspec itself is optional)."""

    def ls(self, root: str, detail: bool = False) -> list:
        paths = list(Path(root).iterdir())
        if detail:  # fsspec's detail form: name, type and size of each entry
            return [{"name": str(p), "type": "directory" if p.is_dir() else "file", "size": p.stat().st_size}
                    for p in paths]
        return [str(p) for p in paths]

    def open(self, path: str, mode: str = "rb"):
        return open(path, mode)

    def size(self, path: str) -> int:
        return Path(path).stat().st_size

    def rm(self, path: str) -> None:
        Path(path).unlink()

    def rm_file(self, path: str) -> None:
        Path(path).unlink()


def test_offsite_object_store_prune_keeps_the_newest_verified(tmp_path):
    for day in (1, 2, 3):
        dump = tmp_path / f"contentcreator_202601{day:02}_020000.dump"
        dump.write_bytes(b"PGDMP" + b"x" * day)
        backup.manifest_path(dump).write_text(json.dumps({"size": dump.stat().st_size}))
    deleted, _notes = _prune_fsspec(DirFS(), str(tmp_path), datetime(2027, 1, 1), 30, 0)
    assert "contentcreator_20260103_020000.dump" not in deleted
    assert (tmp_path / "contentcreator_20260103_020000.dump").exists()
    assert "contentcreator_20260101_020000.dump" in deleted
    with pytest.raises(backup.BackupError, match="retention_days -1"):
        _prune_fsspec(DirFS(), str(tmp_path), datetime(2027, 1, 1), -1, 7)


# ---- 3. hostile identifiers -----------------------------------------------------------------------

HOSTILE = 'a",public.pwn()"b'


@pytest.fixture
def hostile_db(pg_cluster, source_db):
    """`odd"name`, and an unprivileged role's `a",public.pwn()"b` beside its function pwn(), which writes a file."""
    role = f"evil_{uuid.uuid4().hex[:8]}"
    marker = Path("/tmp") / f"ccops_pwned_{uuid.uuid4().hex}"
    password = secrets.token_urlsafe(12)
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    query(source_db, f"GRANT CREATE ON SCHEMA public TO {role}")
    query(source_db, 'CREATE TABLE "odd""name" (id int PRIMARY KEY, "we""ird col" text); '
                     "INSERT INTO \"odd\"\"name\" VALUES (1, 'x'), (2, 'y'), (3, 'z')")
    evil = source_db.replace(pg_cluster.url().split("@")[0].split("//")[1], f"{role}:{password}")
    query(evil, "CREATE FUNCTION public.pwn() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN "
                f"EXECUTE format('COPY (SELECT 1) TO %L', '{marker}'); RETURN 1; END $f$")
    query(evil, 'CREATE TABLE public.a (id int); INSERT INTO public.a VALUES (1); '
                f'CREATE TABLE public."{HOSTILE.replace(chr(34), chr(34) * 2)}" (id int); '
                f'INSERT INTO public."{HOSTILE.replace(chr(34), chr(34) * 2)}" VALUES (1), (2)')
    yield marker
    marker.unlink(missing_ok=True)
    query(source_db, f"DROP OWNED BY {role}")
    for name in [r[0] for r in query(source_db, "SELECT datname FROM pg_database d JOIN pg_roles r "
                                                "ON r.oid = d.datdba WHERE r.rolname = :r", {"r": role})]:
        pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        pg_cluster.psql(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")
    except LocalPgError:  # its tables live on in a restored target: a role left behind harms nothing
        pass


def test_hostile_table_names_back_up_verify_restore_and_never_run_code(hostile_db, source_db, make_database,
                                                                       capsys):
    marker = hostile_db
    assert cli.main(["backup", "--json"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    counts = out["manifest"]["row_counts"]
    assert counts['odd"name'] == 3 and counts[HOSTILE] == 2 and counts["a"] == 1
    assert not marker.exists(), "pwn() ran during the backup"
    assert cli.main(["backup", "verify", out["file"]]) == 0
    capsys.readouterr()
    assert cli.main(["backup", "test", out["file"], "--json"]) == 0
    tested = json.loads(capsys.readouterr().out)
    assert {r["table"] for r in tested["counts"] if r["ok"]} >= {'odd"name', HOSTILE}
    target = make_database("none")
    result = backup.restore_backup(load_settings(), Path(out["file"]), target, confirm=True, app_stopped=True,
                                   run_health=False)
    assert result.ok, result.summary()
    assert query(target, 'SELECT count(*) FROM "odd""name"') == [(3,)]
    assert not marker.exists(), "pwn() ran during verify, the restore test or the restore"


def test_hostile_database_name_restores(source_db, make_database, pg_cluster):
    made = backup.create_backup(load_settings())
    name = f'we"ird {uuid.uuid4().hex[:6]}'
    target = with_db(source_db, name.replace('"', "%22").replace(" ", "%20"))
    try:
        result = backup.restore_backup(load_settings(), made.path, target, confirm=True, app_stopped=True,
                                       run_health=False)
        assert result.ok, result.summary()
        assert query(target, "SELECT current_database()") == [(name,)]
        again = backup.restore_backup(load_settings(), made.path, target, confirm=True, app_stopped=True,
                                      run_health=False)
        assert again.ok and "drop old database" in [s.name for s in again.steps], again.summary()
    finally:
        for leftover in [r[0] for r in query(source_db, "SELECT datname FROM pg_database WHERE datname LIKE 'we\"ird%'")]:
            pg_cluster.psql(f'DROP DATABASE IF EXISTS "{leftover.replace(chr(34), chr(34) * 2)}" WITH (FORCE)')


# ---- 6. a wrong password or an unreachable server: one line, masked, exit 2 --------------------------

@pytest.mark.parametrize("how", ["wrong password", "unreachable"])
def test_backup_against_a_bad_database_is_one_masked_line(source_db, ccops_env, how):
    secret = "s3cr3t-" + uuid.uuid4().hex[:6]
    user_host = source_db.split("//")[1].split("@")[0].split(":")[0]
    if how == "wrong password":
        url = source_db.replace(source_db.split("//")[1].split("@")[0], f"{user_host}:{secret}")
    else:
        url = f"postgresql://{user_host}:{secret}@127.0.0.1:1/content_creator"
    env = {**os.environ, "CCOPS_DATABASE_URL": url}
    proc = subprocess.run([sys.executable, "-m", "ccops.cli", "backup"], capture_output=True, text=True, env=env,
                          cwd=ccops_env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert secret not in proc.stderr + proc.stdout and "***" in proc.stderr
    assert "backup failed at connect" in proc.stderr
    assert not list((ccops_env / "backups").glob("*.dump*")) if (ccops_env / "backups").exists() else True


# ---- 8. backend none: refuse unless the operator stopped the app ------------------------------------------

def test_restore_with_backend_none_refuses_without_app_stopped(source_db, make_database, capsys):
    made = backup.create_backup(load_settings())
    target = make_database("ccops")
    query(target, "INSERT INTO insights (timestamp, type, asset, confidence, details) "
                  "VALUES (now(), 'BREAKOUT', 'MARK', 0.5, '{}')")
    code, out = restore_cli(capsys, str(made.path), "--target", target, "--yes")
    assert code == 2, out
    assert "--app-stopped" in out.strip().splitlines()[-1] and "failed at stop app" in out
    assert query(target, "SELECT asset FROM insights") == [("MARK",)]
    assert not (Path(os.environ["CCOPS_BACKUP_DIR"]) / "safety").exists(), "not even a safety dump was begun"

    code, out = restore_cli(capsys, str(made.path), "--target", target, "--yes", "--app-stopped", "--json")
    assert code == 0, out
    steps = json.loads(out)["steps"]
    assert steps[0]["name"] == "stop app" and "--app-stopped" in steps[0]["detail"]
    assert query(target, "SELECT count(*) FROM insights WHERE asset = 'MARK'") == [(0,)]


# ---- 6 (item 8). dumps 0600 in 0700 directories ---------------------------------------------------------

def test_safety_dump_and_its_directories_are_private(source_db, make_database, ccops_env):
    made = backup.create_backup(load_settings(), directory=ccops_env / "elsewhere")
    target = make_database("ccops")
    old = os.umask(0o022)
    try:
        result = backup.restore_backup(load_settings(), made.path, target, confirm=True, app_stopped=True,
                                       run_health=False)
    finally:
        os.umask(old)
    assert result.ok, result.summary()
    safety = Path(next(s.detail for s in result.steps if s.name == "safety dump"))
    for directory in (ccops_env / "backups", safety.parent):
        assert oct(directory.stat().st_mode)[-3:] == "700", directory
    for path in (safety, backup.manifest_path(safety), made.path, backup.manifest_path(made.path)):
        assert oct(path.stat().st_mode)[-3:] == "600", path
    assert oct((ccops_env / "elsewhere").stat().st_mode)[-3:] == "700"


def test_keyword_connection_string_is_read_as_libpq_reads_it_not_as_a_database_name():
    """`recovery -p target 'host=... password=...'` once named a database after the whole string."""
    from ccops.backup.restore import keyword_dsn_url
    from ccops.core.errors import UsageError
    from ccops.core.settings import Settings

    url = keyword_dsn_url("host=127.0.0.1 port=5433 dbname=content_creator user=restorer password='p w@/x' sslmode=disable")
    assert url == "postgresql://restorer:p%20w%40%2Fx@127.0.0.1:5433/content_creator?sslmode=disable"
    assert backup.target_url(Settings(), "dbname=scratch host=/run/pg port=5433") == \
        "postgresql://:5433/scratch?host=%2Frun%2Fpg"
    with pytest.raises(UsageError, match="names no dbname"):
        keyword_dsn_url("host=127.0.0.1 password=x")
    with pytest.raises(UsageError, match="keyword string"):
        keyword_dsn_url("host=127.0.0.1 dbname='unterminated")


def test_a_reviewed_clean_up_never_deletes_the_newest_verified_backup(source_db, ccops_env):
    """Clean-up (monthly and the disk emergency) deletes through `apply_reviewed`: whatever plan a
    step hands it, reviewed or not, the newest verified backup is refused at deletion time."""
    from ccops.actions import cleanup
    from ccops.core.context import RunContext
    from ccops.core.findings import Status
    from ccops.deploy import diskspace

    settings = load_settings()
    older, newest = (backup.create_backup(settings, now=datetime(2025, 1, day, 2, 0)) for day in (1, 2))
    ctx = RunContext(runbook="monthly", settings=settings, as_of=datetime(2026, 1, 1))

    def plan() -> diskspace.CleanupPlan:
        made = diskspace.CleanupPlan()
        for info in (older, newest):
            made.add(diskspace.CleanupAction("delete", info.path, info.path.stat().st_size, "planned by hand"))
        return made

    cleanup.apply_reviewed(ctx, "by_hand", "delete two backups", plan(), dry_run=True, confirm=False)
    found = cleanup.apply_reviewed(ctx, "by_hand", "delete two backups", plan(), dry_run=False, confirm=True)
    assert newest.path.exists() and older.path.exists(), "nothing of a refused plan is deleted"
    assert any(f.status is Status.CRITICAL and "newest verified" in f.summary for f in found), [f.summary for f in found]
