"""Shared fixtures: one real private PostgreSQL cluster for the whole session.

Tests create their own databases in it: from the real production dump (when
../shared is beside the checkout) or from ccops.core.schema, and from the demo
generator. Nothing is mocked: the cluster is started by ccops.core.localpg exactly
as the embedded default is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ccops.core import db, localpg, schema
from ccops.runbook.papermill_entry import skip_unused_format_checkers

# As ccops' runner does (ccops.runbook.papermill_entry, the one list): nbformat's jsonschema would
# import its optional format checkers, rfc3987_syntax among them, which compiles dozens of grammars (about 1 s per process) for a URI format the
# notebook schema never uses. Each worker imports nbformat while collecting; the main pytest
# process no longer loads the nbval plugin (pyproject: -p no:nbval; tests/test_nbval.py starts
# its own pytest with nbval).
skip_unused_format_checkers()
# pytest keeps each test module with its asserts rewritten in __pycache__ (a hash-checked pyc), but
# not under PYTHONDONTWRITEBYTECODE, as set in this container: then every worker rewrote all hundred
# test modules again on every run (6 of its 8 s of collection, three workers on two cores). The
# variable is left as it is for the processes the tests start; only the test processes write.
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parent.parent


def stored_runbooks(root: Path = REPO / "runbooks") -> list[Path]:
    """The runbook files ccops lists (`ccops runbooks`): JupyterLab's .ipynb_checkpoints and other hidden dirs left out."""
    from ccops.core.runbooks import available

    return [root / f"{name}.ipynb" for name in available(root)]
PRODUCTION_SCHEMA = Path(
    os.environ.get("CCOPS_PRODUCTION_SCHEMA", REPO.parent / "shared" / "content-creator" / "production-schema.sql")
)
PRODUCTION_ROLE = "content_creator_user"


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> localpg.Cluster:
    cluster = localpg.Cluster(tmp_path_factory.mktemp("cluster") / "pg")
    cluster.start()
    cluster.psql(f"DO $$ BEGIN CREATE ROLE {PRODUCTION_ROLE}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    yield cluster
    db.dispose_all()
    cluster.destroy(detach=True)


def restore_production_schema(cluster: localpg.Cluster, dbname: str) -> None:
    """Load the real dump the way ccops' restore does: psql, skipping settings PG15 lacks."""
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": dbname}
    sql = PRODUCTION_SCHEMA.read_text().replace("SET transaction_timeout = 0;", "")
    proc = subprocess.run(
        [str(cluster.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"],
        input=sql, capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


# How a test database is copied from its template: file by file, not page by page through the WAL
# (PostgreSQL 15's default, WAL_LOG). Measured on this cluster (fsync off), ten copies each, warm:
# template1 34 -> 13 ms of server CPU per database, the 30-day demo (37 MB) 85 -> 30 ms. FILE_COPY's two
# checkpoints cost next to nothing on a test cluster; the copy is the same database either way.
COPY_STRATEGY = "STRATEGY FILE_COPY"


@pytest.fixture(scope="session")
def make_database(pg_cluster: localpg.Cluster):
    """Factory: a fresh database, empty (`source='ccops'` or `'production'`) with the app's tables.

    The tables are loaded once per session into a template database (the dump replayed by
    psql, or ccops.core.schema) and each database is a `CREATE DATABASE ... TEMPLATE` copy
    of it: the same catalog, in a tenth of the time of loading it again for every test.
    """
    import psycopg
    from psycopg import sql

    templates: dict[str, str] = {}

    def _template(kind: str) -> str:
        if kind not in templates:
            name = f"ccops_test_template_{kind}"
            url = pg_cluster.create_database(name, drop_existing=True)
            if kind == "production":
                restore_production_schema(pg_cluster, name)
            else:
                schema.create_all(url)
            templates[kind] = name
        return templates[kind]

    def _make(source: str = "ccops", name: str | None = None) -> str:
        dbname = name or f"t_{uuid.uuid4().hex[:10]}"
        if source == "production" and PRODUCTION_SCHEMA.exists():
            kind: str | None = "production"
        elif source in ("ccops", "production"):
            kind = "ccops"
        else:
            kind = None
        if kind is None:
            return pg_cluster.create_database(dbname, drop_existing=True)
        template = _template(kind)
        with psycopg.connect(pg_cluster.url(driver="postgresql"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} " + COPY_STRATEGY).format(
                sql.Identifier(dbname), sql.Identifier(template)))
        return pg_cluster.url(dbname)

    return _make


@pytest.fixture(scope="session")
def make_demo_database(pg_cluster: localpg.Cluster, make_database):
    """Factory: a database of the test's own holding the demo generator's data for (seed, days) at DEMO_AS_OF.

    The generator runs once per (seed, days) and session, into a template database made like any
    `make_database("ccops")`; each database handed out is a `CREATE DATABASE ... TEMPLATE` copy of it:
    the same rows and sequences in about a tenth of the time of generating them again (30 days: 3.4 s
    generated, 0.2 s copied).
    """
    import psycopg
    from psycopg import sql

    from ccops.core.context import parse_as_of
    from ccops.demo import generate

    templates: dict[tuple[int, int], str] = {}

    def _make(seed: int, days: int) -> str:
        if (seed, days) not in templates:
            name = f"ccops_test_template_demo_{seed}_{days}"
            generate(make_database("ccops", name=name), seed=seed, days=days, as_of=parse_as_of(DEMO_AS_OF))
            templates[seed, days] = name
        dbname = f"t_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_cluster.url(driver="postgresql"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} " + COPY_STRATEGY).format(
                sql.Identifier(dbname), sql.Identifier(templates[seed, days])))
        return pg_cluster.url(dbname)

    return _make


@pytest.fixture
def ccops_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean ccops environment: state, archive, logs and backups under tmp_path."""
    for name in list(os.environ):
        if name.startswith("CCOPS_") or name == "DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CCOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("CCOPS_RUNBOOKS_DIR", str(REPO / "runbooks"))
    return tmp_path


DEMO_AS_OF = "2026-11-20T18:00:00Z"
DEMO_SEED = 42
# the demo's clean day (ccops.demo.DEFAULT_CLEAN_AS_OF): daily and weekly find nothing to warn about
DEMO_CLEAN_AS_OF = "2026-11-08T18:00:00Z"


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory):
    """One demo deployment for the session (cluster, data, app process, logs, status server), as `ccops demo up` makes it."""
    from ccops import demo
    from ccops.core.settings import load_settings

    home = tmp_path_factory.mktemp("demo") / "home"
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CCOPS_") or name == "DATABASE_URL":
                patch.delenv(name)
        patch.setenv("CCOPS_HOME", str(home))
        settings = load_settings()
        info = demo.up(settings, seed=DEMO_SEED, days=30, as_of=DEMO_AS_OF)
    yield home, info
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CCOPS_HOME", str(home))
        demo.down(load_settings())


@pytest.fixture
def demo_env(demo_home, ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ccops_env pointed at the session's demo deployment (its home, logs, app .env)."""
    home, _ = demo_home
    monkeypatch.setenv("CCOPS_HOME", str(home))
    return ccops_env


SHARED_SCOPES = ("module", "class", "package")
# Every test on the session demo runs on one worker: the demo (a cluster, 30 days of data, the app
# process, its logs) is then built once per `make test` instead of once per worker, and the tests
# that change it for a moment (pausing the app, alert state) never overlap another demo test.
DEMO_GROUP = "session-demo"
DEMO_FIXTURE = "demo_home"
# How long the longer tests take (tests/durations.json: node id -> seconds, every test of 2 s or more
# in a whole `make test` on the shared 2-core machine, setup included); any other test counts as
# DEFAULT_SECONDS. Only the order of the queue comes from these figures: longest first, so neither
# core is left with a long test at the end. A stale or missing figure costs some balance at the end
# of the run, never a result.
DURATIONS_FILE = Path(__file__).with_name("durations.json")
DEFAULT_SECONDS = 0.5


def _expected_durations() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS_FILE.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}


# Tests that need their worker process to have one thread: ccops forks log-counting workers only from
# such a process (ccops.logs.parallel.can_fork), and a test that used s3fs leaves fsspec's IO thread
# (and its asyncio loop) running in its worker for good. These files go first, as one group, so they
# run before any other test on their worker.
SINGLE_THREADED_GROUP = "single-threaded-process"
SINGLE_THREADED_FILES = ("tests/test_logs_parallel.py",)


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture set up once for its file (or class): it must run beside its siblings."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in SHARED_SCOPES for defs in info.name2fixturedefs.values())


def _uses_the_demo(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and DEMO_FIXTURE in info.name2fixturedefs


def expected_seconds(item: pytest.Item, durations: dict[str, float]) -> float:
    """The test's figure in tests/durations.json, by node id (without an xdist group suffix)."""
    return durations.get(item.nodeid.split("@", 1)[0], DEFAULT_SECONDS)


def pytest_configure(config: pytest.Config) -> None:
    """Keep the queue in the order pytest_collection_modifyitems makes (longest first).

    Without this, xdist's loadgroup scheduler re-sorts the work by the number of tests per
    group, which puts a group of twenty 0.1 s tests before a lone 100 s one.
    """
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        config.pluginmanager.register(GroupIds(), "ccops-group-ids")
    if not hasattr(config, "workerinput"):  # once, in the process that starts the workers
        compile_ccops()


def compile_ccops() -> None:
    """Write ccops' bytecode (the gitignored __pycache__ beside each module) once, before any test starts.

    With PYTHONDONTWRITEBYTECODE set (as in this container) no process writes it, so in a fresh clone
    every process the suite starts - hundreds: `ccops` verbs, papermill, kernels, demo apps - compiled
    the ccops modules it imports again (about 0.3 s for all of them). Python reads bytecode that is there
    whatever that variable says, and checks it against the source's mtime and size as usual. Only
    ccops' own modules are compiled: the files tests write and import are left as they were.
    """
    import compileall

    compileall.compile_dir(str(REPO / "ccops"), quiet=1, workers=1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Spread the suite over the workers test by test (`make test` runs `--dist loadgroup`).

    Whole files on one worker (`--dist loadfile`) left one core idle for minutes while the
    other finished the backup tests. Now a file whose tests share a module- or class-scoped
    fixture (a demo built once, one runbook run read by several tests) stays on one worker
    as an xdist group, so that fixture is still set up once; every test on the session demo
    goes to one worker (DEMO_GROUP), and that file group with it when one of its tests is on
    the demo; every other test goes to whichever worker is free. The queue is ordered longest
    first (a group counts as the sum of its tests, marked `slow` as at least 20 s), so the
    last tests to start are short ones and all workers finish together; only the tests that
    need a one-thread process (SINGLE_THREADED_FILES) come before everything.
    """
    groups: dict[int, str] = {}
    for index, item in enumerate(items):
        if _shares_a_fixture(item):
            groups[index] = item.nodeid.split("::", 1)[0]
    demo_files = {groups[i] for i, item in enumerate(items) if i in groups and _uses_the_demo(item)}
    for index, item in enumerate(items):
        if _uses_the_demo(item) or groups.get(index) in demo_files:
            groups[index] = DEMO_GROUP
        if item.nodeid.split("::", 1)[0] in SINGLE_THREADED_FILES:
            groups[index] = SINGLE_THREADED_GROUP
        if index in groups:
            item.add_marker(pytest.mark.xdist_group(groups[index]))

    durations = _expected_durations()

    def seconds(item: pytest.Item) -> float:
        floor = 20.0 if item.get_closest_marker("slow") is not None else 0.0
        return max(expected_seconds(item, durations), floor)

    units: dict[str, list[int]] = {}
    for index in range(len(items)):
        units.setdefault(groups.get(index, f"item {index}"), []).append(index)
    cost = {unit: sum(seconds(items[i]) for i in members) for unit, members in units.items()}
    # stable: equal costs keep the collection order; the single-threaded group before everything
    order = sorted(units, key=lambda unit: (unit != SINGLE_THREADED_GROUP, -cost[unit]))
    items[:] = [items[i] for unit in order for i in units[unit]]


class GroupIds:
    """xdist's loadgroup reads an item's group from a `@group` suffix of its node id.

    xdist 3.8 appends it by assigning `item._nodeid`, which pytest 9.2 no longer reads (its node
    ids are structured: pytest-dev/pytest-xdist#1386), so every group was silently ignored: the
    tests of a module-scoped fixture ran on both workers, each building it. This runs after
    xdist's own hook and appends the suffix where it is missing, the way xdist means it to be.
    """

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not getattr(config.option, "loadgroup", False):
            return
        for item in items:
            names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                            for mark in item.iter_markers("xdist_group")})
            suffix = "@" + "_".join(names)
            if not names or item.nodeid.endswith(suffix):
                continue
            if hasattr(item, "_id"):
                from _pytest.nodeid import NodeId

                item._id = NodeId.parse(item.nodeid + suffix)
            else:  # an older pytest, should xdist not have done it
                setattr(item, "_nodeid", item.nodeid + suffix)  # noqa: B010 - the attribute xdist writes


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the clusters this process's tests started under /var/tmp (as root, localpg puts data dirs there).

    A test's cluster root lives in its tmp dir, but as root its data dir lives under /var/tmp
    (localpg: the server user must traverse every folder above it), where nothing removed it: a
    whole run left about 70 clusters of 70 MB each, some still running. Only clusters whose root
    lies in this process's own base temp dir are touched, so a session running beside this one
    keeps its own. A server still up gets SIGQUIT (PostgreSQL's immediate shutdown) straight from
    its postmaster.pid, all at once: a pg_ctl per cluster cost 0.3-0.5 s each.
    """
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or factory._basetemp is None:  # no test asked for a tmp dir: none was started
        return
    base = factory.getbasetemp().resolve()
    mine, running = [], []
    for owner in localpg.ROOT_DATA_PARENT.glob(f"ccops-pg-*/{localpg.OWNER_FILE}"):
        try:
            if not Path(owner.read_text(encoding="utf-8").strip()).is_relative_to(base):
                continue
        except OSError:
            continue
        mine.append(owner.parent)
        datadir = owner.parent / "data"
        try:
            pid = int((datadir / "postmaster.pid").read_text().split()[0])
            # pids wrap within a run here (pid_max 32768): a stale pid file's number may now be another
            # worker's process. A postmaster works in its data dir, so that is what is checked first.
            if Path(f"/proc/{pid}/cwd").resolve() != datadir.resolve():
                continue
            os.kill(pid, signal.SIGQUIT)
            running.append(pid)
        except (OSError, ValueError, IndexError):  # no pid file, or its server has gone
            pass
    deadline = time.monotonic() + 10
    while running and time.monotonic() < deadline:
        running = [pid for pid in running if _alive(pid)]
        time.sleep(0.05)
    localpg.remove_detached(mine)  # unlinking a session's clusters took seconds; nothing waits for it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
