"""Every verb's error paths: one line on stderr, never a traceback, the documented exit code.

Issue 12 item 6: cron mails the first lines of stderr and reads the exit code (0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN or failed, 64 bad usage, 75 already running). Python's crash exit is 1, which
cron would read as a WARNING. Each case runs the real `ccops` in its own process with stdin not a
terminal, as cron does: bad settings files, a database on a closed port, a wrong password against the
real test cluster, missing files and unusable paths, bad arguments, changes without --yes, a held lock.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ccops import backup, cli
from ccops.cli import config as cli_config
from ccops.cli import reports as cli_reports
from ccops.runbook import runner

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "N0tTheRealPassw0rd"

VERBS = [
    ["run", "daily"], ["runbooks"], ["health"], ["demo", "status"], ["demo", "up"], ["demo", "down"],
    ["backup"], ["backup", "verify", "x.dump"], ["backup", "list"], ["backup", "prune"], ["backup", "test"],
    ["restore", "x.dump", "--target", "x"], ["logs", "summary"], ["alerts", "check"], ["alerts", "list"],
    ["schedule", "show"], ["schedule", "install"], ["schedule", "remove"],
    ["reports", "list"], ["reports", "index"], ["reports", "prune"], ["config", "show"],
]


def ccops(root: Path, *argv: str, timeout: float = 120, prelude: str = "", **env: str) -> tuple[int, str, str]:
    """`ccops ARGV` in its own process under root (state, archive, logs there), stdin not a terminal.

    `prelude`: Python run in that process before `ccops.cli.main` (e.g. a shorter wait for a lock).
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
    base.update({"CCOPS_HOME": str(root / "home"), "CCOPS_ARCHIVE_DIR": str(root / "outputs"),
                 "CCOPS_RUNBOOKS_DIR": str(REPO / "runbooks"), "CCOPS_LOG_DIR": str(root / "logs"),
                 "CCOPS_BACKUP_DIR": str(root / "backups"), "CCOPS_CRONTAB_CMD": str(root / "no-crontab")})
    base.update(env)
    code = f"import sys; {prelude}; from ccops.cli import main; sys.exit(main())" if prelude else \
        "import sys; from ccops.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, *argv],
                          cwd=root, env=base, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def assert_no_crash(out: str, err: str) -> None:
    for text in (out, err):
        assert "Traceback" not in text, err
        assert "internal error" not in err, err  # cli's last net: a path that relies on it is a bug


def assert_one_line(out: str, err: str) -> str:
    assert_no_crash(out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    return lines[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "logs").mkdir()
    return tmp_path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- bad settings: every verb, one line, exit 64 ---------------------------------------------

BAD_CONFIGS = {
    "not-utf8": (b"[backup]\n# r\xe9tention\nretention_days = 30\n", "not UTF-8 text (byte 0xe9 on line 2)"),
    "not-toml": (b"[thresholds\n", "not valid TOML"),
    "bad-value": (b"[backup]\nkeep_verified = 0\n", "backup.keep_verified: expected at least 1"),
    "missing": (None, "settings file not found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_a_bad_settings_file_is_one_line_exit_64_for_every_verb(root, kind):
    """Every verb with the file the issue found (not UTF-8); each other kind of bad file with a few verbs."""
    content, message = BAD_CONFIGS[kind]
    path = root / f"{kind}.toml"
    if content is not None:
        path.write_bytes(content)
    for argv in VERBS if kind == "not-utf8" else [["health"], ["backup"], ["run", "daily"], ["schedule", "install"]]:
        code, out, err = ccops(root, "--config", str(path), *argv)
        line = assert_one_line(out, err)
        assert code == 64, (argv, err)
        assert line.startswith(f"ccops: {path}") and message in line, (argv, line)
    # found through CCOPS_CONFIG instead of --config: the same
    code, out, err = ccops(root, "health", CCOPS_CONFIG=str(path))
    assert code == 64 and message.replace("settings file ", "") in assert_one_line(out, err)


def test_a_bad_environment_value_is_one_line_exit_64(root):
    for name, value in (("CCOPS_BACKUP_RETENTION_DAYS", "-1"), ("CCOPS_BACKEND", "kubernetes"),
                        ("CCOPS_RUN_TIMEOUT_SECONDS", "soon"), ("CCOPS_ARCHIVE_GROUP", "no-such-group-ccops")):
        code, out, err = ccops(root, "config", "show", **{name: value})
        assert code == 64 and name in assert_one_line(out, err)


def test_a_non_utf8_app_env_file_breaks_no_verb(root):
    env_file = root / "app.env"
    env_file.write_bytes(b"LOG_LEVEL=INFO\nDATABASE_URL=postgresql://app:pw\xff1234@127.0.0.1:9/cc\n")
    for argv in (["config", "show"], ["health"], ["backup"]):
        code, out, err = ccops(root, *argv, CCOPS_APP_ENV_FILE=str(env_file))
        assert_no_crash(out, err)
        assert code in (0, 2), (argv, err)
        assert "1234" not in out + err


# ---- the database cannot be reached, or refuses the login ---------------------------------------

@pytest.fixture
def junk_dump(root: Path) -> Path:
    path = root / "junk.dump"
    path.write_bytes(b"not a dump")
    return path


def _unreachable(root: Path, junk: Path) -> list[tuple[list[str], int, int, str]]:
    """(argv, exit code, stderr lines, a word the output must hold)."""
    return [
        (["backup"], 2, 1, "connect"),
        (["backup", "test"], 2, 1, "no verified backup"),
        (["backup", "test", str(junk)], 2, 1, "refused"),
        (["restore", str(junk), "--target", "content_creator", "--yes"], 2, 1, "junk.dump"),
        (["health"], 2, 0, "database"),
        (["alerts", "check"], 2, 0, "database"),
        (["config", "show"], 0, 0, "***"),
        (["backup", "list"], 0, 0, "no backups"),
    ]


def test_a_database_on_a_closed_port(root, junk_dump):
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port()}/content_creator"
    for argv, expected, lines, word in _unreachable(root, junk_dump):
        code, out, err = ccops(root, *argv, CCOPS_DATABASE_URL=url)
        assert_no_crash(out, err)
        assert code == expected, (argv, out, err)
        assert len(err.splitlines()) == lines, (argv, err)
        assert word in out + err, (argv, out, err)
        assert PASSWORD not in out + err, argv


def test_a_run_against_a_database_on_a_closed_port_is_critical(root):
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port()}/content_creator"
    code, out, err = ccops(root, "run", "health_check", CCOPS_DATABASE_URL=url)
    assert_no_crash(out, err)
    assert code == 2, (out, err)
    assert PASSWORD not in out + err


def test_a_wrong_password_against_the_real_cluster(root, make_database):
    parts = urlsplit(make_database("ccops"))
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD}@{parts.hostname}:{parts.port}"))
    wrong = wrong.replace("postgresql+psycopg://", "postgresql://")
    for argv, expected, lines, word in (
        (["backup"], 2, 1, "password authentication failed"),
        (["health"], 2, 0, "database"),
        (["alerts", "check"], 2, 0, "database"),
        (["backup", "test"], 2, 1, "no verified backup"),
    ):
        code, out, err = ccops(root, *argv, CCOPS_DATABASE_URL=wrong)
        assert_no_crash(out, err)
        assert code == expected, (argv, out, err)
        assert len(err.splitlines()) == lines, (argv, err)
        assert word in out + err, (argv, out, err)
        assert PASSWORD not in out + err, argv


# ---- missing files, unusable paths ---------------------------------------------------------------

def test_missing_files_and_unusable_paths(root):
    a_file = root / "a-file"
    a_file.write_text("not a directory\n")
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port()}/content_creator"
    cases = [
        (["backup", "verify", "nofile.dump"], {}, 2, None),
        (["restore", "nofile.dump", "--target", "content_creator", "--yes"], {"CCOPS_DATABASE_URL": url}, 2,
         "nofile.dump"),
        (["restore", "nofile.dump", "--target", "content_creator"], {"CCOPS_DATABASE_URL": url}, 2, "no such"),
        (["logs", "summary"], {"CCOPS_LOG_DIR": str(root / "no-logs")}, 3, "no-logs"),
        (["reports", "index"], {"CCOPS_ARCHIVE_DIR": str(a_file / "outputs")}, 3, "a-file"),
        (["alerts", "check"], {"CCOPS_HOME": str(a_file), "CCOPS_DATABASE_URL": url}, 3, "a-file"),
        (["runbooks"], {"CCOPS_RUNBOOKS_DIR": str(root / "no-runbooks")}, 64, "no-runbooks"),
        (["run", "daily"], {"CCOPS_RUNBOOKS_DIR": str(root / "no-runbooks")}, 64, "daily"),
        (["schedule", "install", "--yes"], {}, 3, "no-crontab"),
        (["schedule", "show"], {"CCOPS_HOME": str(a_file)}, 0, None),
    ]
    for argv, env, expected, word in cases:
        code, out, err = ccops(root, *argv, **env)
        assert_no_crash(out, err)
        assert code == expected, (argv, out, err)
        if word is not None:
            assert word in assert_one_line(out, err), (argv, err)


# ---- bad arguments ----------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    [], ["nosuch"], ["run"], ["run", "daily", "-p"], ["run", "daily", "-p", "nope", "1"],
    ["run", "daily", "-p", "error_limit", "-5"], ["run", "monthly", "-p", "log_keep_days", "-1"],
    ["run", "daily", "-p", "error_limit", "many"], ["run", "daily", "-p", "part", "noon"],
    ["run", "daily", "-p", "as_of", "yesterday-ish"], ["run", "daily", "--timeout", "0"],
    ["run", "../../etc/passwd"], ["run", "nosuch"], ["runbooks", "--bogus"],
    ["health", "--as-of", "garbage"], ["demo", "sideways"], ["demo", "up", "--days", "-1"],
    ["demo", "up", "--seed", "x"], ["backup", "verify"], ["backup", "nosuch"], ["restore", "x.dump"],
    ["restore", "--target", "x"], ["restore", "x.dump", "--target", "x", "--jobs", "many"],
    ["logs"], ["logs", "summary", "--since", "garbage"], ["alerts", "check", "--as-of", "xx"],
    ["alerts", "test", "--channel", "nosuch"], ["schedule", "show", "--after", "zz"], ["schedule", "nosuch"],
    ["reports", "prune", "--keep-days", "0"], ["reports", "prune", "--keep-days", "-1"], ["reports", "nosuch"],
    ["config"], ["config", "show", "--bogus"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=lambda a: " ".join(a) or "(nothing)")
def test_bad_arguments_are_one_line_exit_64(root, argv):
    code, out, err = ccops(root, *argv)
    assert_one_line(out, err)
    assert code == 64, err
    assert not (root / "outputs").exists() and not (root / "home" / "runs").exists()


def test_a_compression_level_out_of_range_is_bad_usage(root):
    code, out, err = ccops(root, "backup", "--compression", "42",
                           CCOPS_DATABASE_URL=f"postgresql://app:x@127.0.0.1:{closed_port()}/cc")
    assert code == 64 and "compression" in assert_one_line(out, err)


def archived_run(archive_dir: Path, runbook: str, start: datetime) -> None:
    """An old completed run's four files, laid out as the runner writes them."""
    stem = f"{runbook}/{start:%Y}/{start:%m}/{start:%Y%m%dT%H%M%SZ}-{runbook}"
    base = archive_dir / stem
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".ipynb", ".html", ".report.html"):
        base.with_name(base.name + suffix).write_text("x" * 100)
    record = {"runbook": runbook, "run_id": stem, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "ok",
              "duration_s": 1.0, "findings": [], "paths": {"ipynb": stem + ".ipynb", "html": stem + ".html",
                                                          "report_html": stem + ".report.html", "json": stem + ".json"}}
    base.with_name(base.name + ".json").write_text(json.dumps(record))


# ---- changes without --yes and without a terminal do nothing --------------------------------------

def test_changing_verbs_without_yes_and_without_a_terminal_change_nothing(root, junk_dump):
    old = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(days=400)
    archived_run(root / "outputs", "daily", old)
    archived_run(root / "outputs", "daily", old + timedelta(days=1))
    archived = sorted(p for p in (root / "outputs").rglob("*") if p.is_file())
    (root / "backups").mkdir()
    old_backup = root / "backups" / "contentcreator_20200101_020000.dump"
    old_backup.write_bytes(b"not verified")
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port()}/content_creator"
    for argv in (["schedule", "install"], ["schedule", "remove"], ["reports", "prune"], ["backup", "prune"],
                 ["restore", str(junk_dump), "--target", "content_creator"]):
        code, out, err = ccops(root, *argv, CCOPS_DATABASE_URL=url)
        line = assert_one_line(out, err)
        assert code == 64 and "not confirmed (pass --yes); nothing was changed" in line, (argv, out, err)
    assert sorted(p for p in (root / "outputs").rglob("*") if p.is_file()) == archived
    assert old_backup.exists()


# ---- already running ------------------------------------------------------------------------------

def test_a_second_run_of_a_runbook_is_75_already_running(root):
    with runner.runbook_lock(root / "home", "daily"):
        code, out, err = ccops(root, "run", "daily")
    assert code == 75 and "already running" in assert_one_line(out, err)
    assert not (root / "outputs").exists()


def test_a_backup_while_another_holds_the_backup_lock_is_75(root):
    """The backup waits for the lock (10 s), then gives up with 75 so cron tries again; it writes nothing.

    The process waits 1 s instead of take.BACKUP_LOCK_WAIT_S (set in it before the CLI starts): the
    same wait, give-up and exit path, without spending ten seconds of the suite on the clock.
    """
    from ccops.backup import take

    assert take.BACKUP_LOCK_WAIT_S == 10.0
    (root / "backups").mkdir()
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{closed_port()}/content_creator"
    with backup.backup_lock(root / "backups", 0):
        t0 = time.monotonic()
        code, out, err = ccops(root, "backup", CCOPS_DATABASE_URL=url,
                               prelude="import ccops.backup.take as take; take.BACKUP_LOCK_WAIT_S = 1.0")
        waited = time.monotonic() - t0
    assert code == 75 and "running" in assert_one_line(out, err)
    assert waited >= 1.0, f"gave up after {waited:.2f} s without waiting for the lock"
    assert [p.name for p in (root / "backups").iterdir()] == [backup.LOCK_NAME]


# ---- the nets in cli.main, and `config check` -------------------------------------------------------

def test_an_unexpected_error_is_one_masked_line_exit_3_and_the_traceback_on_request(ccops_env, monkeypatch, capsys):
    """A bug must not reach cron as Python's exit 1 (WARNING) with a traceback that may hold a password."""
    def boom(args):
        raise RuntimeError("cannot use postgresql://app:hunter2hunter2@db/cc\nsecond line of detail")

    monkeypatch.setattr(cli_config, "cmd_config_show", boom)
    assert cli.main(["config", "show"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hunter2hunter2" not in err
    assert err.startswith("ccops: internal error: RuntimeError: cannot use postgresql://app:***@db/cc ")
    monkeypatch.setenv("CCOPS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli.main(["config", "show"])


def test_a_disk_error_names_the_path_and_the_errno(ccops_env, monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ccops_env / "outputs" / "index.json"))

    monkeypatch.setattr(cli_reports, "cmd_reports_index", full)
    assert cli.main(["reports", "index"]) == 3
    assert capsys.readouterr().err == f"ccops: {ccops_env / 'outputs' / 'index.json'}: ENOSPC (No space left on device)\n"


@pytest.mark.parametrize(("content", "key"), [
    ('[schedule]\ntimezone = "Mars/Base"\n', "schedule.timezone"),
    ("[alerts]\nbogus = 1\n", "alerts.bogus"),
    ("[security]\ntls_targets = 3\n", "security.tls_targets"),
    ("[costs]\ninfrastructure_monthly = -5\n", "costs.infrastructure_monthly"),
    ("[analytics]\nconfidence = 1.5\n", "analytics.confidence"),
    ("[archive]\nkept_days = 3\n", "archive.kept_days"),
])
def test_config_check_finds_a_bad_module_section_now(root, content, key):
    path = root / "ccops.toml"
    path.write_text(content)
    code, out, err = ccops(root, "config", "show")
    assert code == 0  # sections owned by a module are checked when that module runs ...
    code, out, err = ccops(root, "config", "check")
    assert code == 64 and assert_one_line(out, err).startswith(f"ccops: {path}: {key}: ")  # ... or now


def test_config_check_passes_the_example_file(root):
    """The example's settings load; then the check proves them, and an example names no database."""
    (root / "ccops.toml").write_text((REPO / "ccops.toml.example").read_text())
    code, out, err = ccops(root, "config", "check")
    assert err == "" and out.startswith(f"settings OK: {root / 'ccops.toml'}\nchecking a deployment")
    assert code == 2 and "  FAIL     database: not configured: set database.url" in out
