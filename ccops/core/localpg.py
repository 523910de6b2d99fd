"""A private PostgreSQL cluster in the state dir: the embedded default and the test fixture.

Why our own cluster rather than a system one: a newcomer gets a working
deployment without touching their machine's databases, and tests get a real
server they can stop, fill and corrupt. initdb refuses to run as root, so when
ccops runs as root the server runs as the `postgres` system user and the data
directory belongs to it. The cluster listens on 127.0.0.1 only, on a free
port picked at each start, with a random password (scram) kept in a mode-600
state file; there is no Unix socket, so nothing depends on socket paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ccops.core import fs
from ccops.core.errors import CcopsError

SUPERUSER = "postgres"
SERVER_USER = "postgres"
ROOT_DATA_PARENT = Path("/var/tmp")  # as root: where data dirs and the initdb template live (see _choose_datadir)
OWNER_FILE = "root"  # beside a data dir under /var/tmp: the cluster root it belongs to
DEMO_DATABASE = "content_creator"
INSTALL_HINT = (
    "PostgreSQL server binaries not found: install them (Debian/Ubuntu: "
    "apt-get install postgresql postgresql-contrib) or set CCOPS_PG_BINDIR"
)


# initdb's options besides the data dir and password: the template's folder name hashes them
INITDB_OPTIONS = ["-U", SUPERUSER, "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                  "-E", "UTF8", "--locale=C.UTF-8"]
TEMPLATE_FORMAT = 1  # raise when what a template holds changes: older templates are then left unused
TEMPLATE_READY = "ready"  # written last into a template's folder, before it is renamed into place


class LocalPgError(CcopsError):
    """The private cluster could not be set up, started or stopped."""


def find_bindir() -> Path:
    """Where initdb/pg_ctl live: CCOPS_PG_BINDIR, pg_config --bindir, newest /usr/lib/postgresql."""
    explicit = os.environ.get("CCOPS_PG_BINDIR")
    if explicit:
        path = Path(explicit)
        if (path / "initdb").exists():
            return path
        raise LocalPgError(f"CCOPS_PG_BINDIR={explicit} holds no initdb. {INSTALL_HINT}")
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out and (Path(out) / "initdb").exists():
                return Path(out)
        except (subprocess.SubprocessError, OSError):
            pass
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: _version_key(p.parent.parent.name),
    )
    if candidates:
        return candidates[-1].parent
    raise LocalPgError(INSTALL_HINT)


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Free for a server like PostgreSQL, which sets SO_REUSEADDR (TIME_WAIT does not block it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class ClusterStatus:
    running: bool
    port: int | None
    datadir: str
    bindir: str
    pid: int | None

    def line(self) -> str:
        if self.running:
            return f"running on 127.0.0.1:{self.port} (pid {self.pid}), data in {self.datadir}"
        return f"stopped, data in {self.datadir}"


class Cluster:
    """One private cluster rooted at a directory (state file, data dir, server log)."""

    def __init__(self, root: Path | str, bindir: Path | None = None, fast: bool = True) -> None:
        self.root = Path(root).resolve()
        self._bindir = bindir
        self.fast = fast  # fsync off: a throwaway cluster trades durability for speed

    # ---- paths and state ----------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fs.write_atomic(self.state_file, json.dumps(state))

    @property
    def datadir(self) -> Path:
        state = self._state()
        if state.get("datadir"):
            return Path(state["datadir"])
        return self._choose_datadir()

    def _choose_datadir(self) -> Path:
        """Inside the root when ccops runs as the server's own user; as root, under /var/tmp.

        As root the server runs as `postgres`, which must traverse every folder above its data.
        ccops' home is private (0700, it holds locks, alert state and unscrubbed work dirs), so a
        cluster inside it would lose its data dir the moment the home is tightened: the demo's
        server stopped shortly after the first `ccops run` did exactly that.
        """
        inside = self.root / "data"
        if not _as_root():
            return inside
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return ROOT_DATA_PARENT / f"ccops-pg-{digest}" / "data"

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / "server.log"

    # ---- commands -------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return self._run_as_server_user([str(self.bindir / args[0]), *args[1:]], timeout=timeout, check=check)

    def _run_as_server_user(self, cmd: list[str], timeout: float = 120, check: bool = True,
                            stdin: str | None = None) -> subprocess.CompletedProcess:
        name = Path(cmd[0]).name
        if _as_root():
            # cron's PATH (/usr/bin:/bin) lacks sbin, where runuser lives
            runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin") or "runuser"
            cmd = [runuser, "-u", SERVER_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=stdin)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise LocalPgError(f"{name} failed: {detail[-1] if detail else proc.returncode}")
        return proc

    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        """A data dir once, with scram auth on 127.0.0.1 and the extensions preloaded.

        The data dir is a copy of this PostgreSQL's initdb template (see `_initdb_template`) with a
        password of its own, else initdb's own.
        """
        if self.initialized():
            return
        datadir = self._choose_datadir()
        password = secrets.token_urlsafe(18)
        datadir.parent.mkdir(parents=True, exist_ok=True)
        if datadir.parent != self.root:  # under /var/tmp: say whose it is, so it can be found and removed with its root
            (datadir.parent / OWNER_FILE).write_text(str(self.root) + "\n", encoding="utf-8")
        if _as_root():
            _chown_server_user(datadir.parent)
        if not self._copy_template(datadir, password):
            self._initdb(datadir, password)
        conf = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "shared_preload_libraries = 'pg_stat_statements'",
            "pg_stat_statements.track = all",
            "max_connections = 50",
            "log_min_messages = warning",
        ]
        if self.fast:
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf_path = datadir / "postgresql.conf"
        self._append_as_server_user(conf_path, "\n# ccops.core.localpg\n" + "\n".join(conf) + "\n")
        self._write_state({"datadir": str(datadir), "password": password, "bindir": str(self.bindir)})

    def _initdb(self, datadir: Path, password: str) -> None:
        pwfile = datadir.parent / f".pwfile-{secrets.token_hex(4)}"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        if _as_root():
            _chown_server_user(pwfile)
        try:
            self._run(["initdb", "-D", str(datadir), "--pwfile", str(pwfile), *INITDB_OPTIONS], timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)

    def _copy_template(self, datadir: Path, password: str) -> bool:
        """Make datadir a copy of the initdb template with `password` for the superuser; False when there is none.

        Why: initdb costs 1.1-1.2 s of CPU here (its trial starts of the server to size shared
        memory, then the catalog's bootstrap), the test suite starts twenty-odd clusters, and
        every one of them got the same catalog. A copy and a single-user ALTER ROLE cost 0.1 s.
        The password is set as a SCRAM verifier, so the plain text reaches no process's input.
        Clusters made this way share their system identifier (pg_control), which only physical
        replication and WAL archives read; ccops' backups are logical.
        """
        template = self._initdb_template()
        if template is None:
            return False
        try:
            self._run_as_server_user(["cp", "-a", "--", str(template), str(datadir)])
            self._run_as_server_user(
                [str(self.bindir / "postgres"), "--single", "-D", str(datadir), "-j", "-c", "exit_on_error=on",
                 "postgres"],
                stdin=f"ALTER ROLE {SUPERUSER} PASSWORD '{scram_verifier(password)}';\n",
            )
        except (LocalPgError, OSError, subprocess.TimeoutExpired):
            shutil.rmtree(datadir, ignore_errors=True)  # initdb then starts from an empty folder
            return False
        return True

    def _initdb_template(self) -> Path | None:
        """This PostgreSQL's initdb'd data dir that clusters copy (made on first use); None if it cannot be had.

        One per server binary and initdb options (its folder's name hashes them), kept beside the
        clusters' data dirs: /var/tmp as root, else the user's cache dir. It is made in a folder of
        its own and renamed into place when complete, so a process never copies a half-made one
        and two processes making it at once both end with the same complete template.
        """
        try:
            binary = (self.bindir / "postgres").stat()
            key = json.dumps([str(self.bindir), binary.st_size, binary.st_mtime_ns, INITDB_OPTIONS, TEMPLATE_FORMAT])
            folder = _template_parent() / f"ccops-pgtemplate-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
            if (folder / TEMPLATE_READY).exists():
                return folder / "data"
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
        except (OSError, LocalPgError):
            return None
        try:
            if _as_root():
                _chown_server_user(staging)
            self._initdb(staging / "data", secrets.token_urlsafe(18))  # a password nobody keeps: each copy sets its own
            (staging / TEMPLATE_READY).write_text(key + "\n", encoding="utf-8")
            staging.rename(folder)  # fails if another process's template got there first: that one is used
        except (OSError, LocalPgError, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder / "data" if (folder / TEMPLATE_READY).exists() else None

    def _append_as_server_user(self, path: Path, text: str) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)

    def start(self, timeout: float = 60) -> str:
        """Start (initialising first if needed); idempotent. Returns the superuser URL."""
        self.init()
        status = self.status()
        if status.running:
            return self.url()
        port = self._state().get("port")
        if not port or not port_is_free(int(port)):
            port = free_port()  # keep the old port when we can: URLs handed out stay valid
        self._run(
            ["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
             "-t", str(int(timeout)), "-o", f"-p {port}", "start"],
            timeout=timeout + 10,
        )
        state = self._state()
        state["port"] = port
        self._write_state(state)
        self._wait_ready(timeout)
        self._ensure_extensions()
        return self.url()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self._run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(self._state()["port"])], check=False
            )
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LocalPgError(f"server did not accept connections; see {self.logfile}")
            time.sleep(0.2)

    def _ensure_extensions(self) -> None:
        for db in ("template1", "postgres"):
            self.psql(
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; CREATE EXTENSION IF NOT EXISTS amcheck;",
                dbname=db,
            )

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop cleanly; stopping a stopped cluster is not an error."""
        if not self.initialized() or not self.status().running:
            return
        self._run(["pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                  timeout=timeout + 10)

    def status(self) -> ClusterStatus:
        datadir = self.datadir
        state = self._state()
        running, pid = False, None
        if self.initialized():
            proc = self._run(["pg_ctl", "-D", str(datadir), "status"], check=False)
            running = proc.returncode == 0
            if running:
                pid_file = datadir / "postmaster.pid"
                try:
                    pid = int(pid_file.read_text().splitlines()[0])
                except (OSError, ValueError, IndexError):
                    pid = None
        return ClusterStatus(
            running=running,
            port=state.get("port") if running else None,
            datadir=str(datadir),
            bindir=str(self._bindir or state.get("bindir") or ""),
            pid=pid,
        )

    def destroy(self, detach: bool = False) -> None:
        """Stop and delete everything, data dir included.

        With detach, the server is stopped here and the files are unlinked by an
        `rm -rf` in a session of its own that outlives the caller: a test
        session's cluster ends holding hundreds of databases, whose unlinking took
        about 5 s at the end of each test worker.
        """
        self.stop(mode="immediate")
        datadir = self.datadir
        folders = [datadir.parent if datadir.parent != self.root else datadir, self.root]
        if detach:
            remove_detached(folders)
            return
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- connecting -----------------------------------------------------------
    def url(self, dbname: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        state = self._state()
        if "port" not in state or "password" not in state:
            raise LocalPgError(f"cluster at {self.root} has not been started")
        return f"{driver}://{SUPERUSER}:{state['password']}@127.0.0.1:{state['port']}/{dbname}"

    def libpq_env(self) -> dict[str, str]:
        """PG* variables for client tools (pg_dump, psql) so no password sits on a command line."""
        state = self._state()
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(state["port"]),
            "PGUSER": SUPERUSER,
            "PGPASSWORD": state["password"],
        }

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 120) -> str:
        """Run SQL with psql as the superuser (client side, as the current user)."""
        env = {**os.environ, **self.libpq_env(), "PGDATABASE": dbname}
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
        if proc.returncode != 0:
            raise LocalPgError(f"psql on {dbname} failed: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str, drop_existing: bool = False) -> str:
        """Create database `name` (any name: it is composed as an identifier, never spliced)."""
        import psycopg
        from psycopg import sql

        database = sql.Identifier(name)
        with psycopg.connect(self.url(driver="postgresql"), autocommit=True, connect_timeout=10) as conn:
            if drop_existing:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
        return self.url(name)


def demo_cluster(home: Path) -> Cluster:
    return Cluster(Path(home) / "pg")


def demo_database_url(home: Path) -> str:
    """URL of the demo database, or a one-line error saying how to get one."""
    cluster = demo_cluster(home)
    state = cluster._state()
    if not state.get("port"):
        raise LocalPgError(
            "no database configured (CCOPS_DATABASE_URL or DATABASE_URL) and no demo cluster: "
            "run `ccops demo up`"
        )
    return cluster.url(DEMO_DATABASE)


def _as_root() -> bool:
    return os.geteuid() == 0


def _chown_server_user(path: Path) -> None:
    entry = pwd.getpwnam(SERVER_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _template_parent() -> Path:
    """Where initdb templates live: beside the clusters' data dirs as root, else in the user's cache dir."""
    if _as_root():
        return ROOT_DATA_PARENT
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ccops"


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for `password` (RFC 5802/7677, as its own `PASSWORD 'x'` does).

    ALTER ROLE ... PASSWORD takes it as it is, so the plain text never reaches the server. The password
    is ASCII (secrets.token_urlsafe), which PostgreSQL's SASLprep leaves unchanged.
    """
    import base64
    import hmac

    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
            f"${b64(hashlib.sha256(client_key).digest()).decode()}:{b64(server_key).decode()}")


def remove_detached(folders: list[Path]) -> None:
    """`rm -rf` the folders in the background: the caller neither waits for it nor has to reap it.

    A shell starts the rm in the background and exits at once, so the rm is an
    orphan in a session of its own, and no child of the caller is left running.
    """
    if folders:
        subprocess.run(["sh", "-c", 'rm -rf -- "$@" </dev/null >/dev/null 2>&1 &', "sh", *map(str, folders)],
                       check=False, start_new_session=True)
