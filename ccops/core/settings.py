"""Settings: ccops.toml plus CCOPS_* environment, the environment winning.

Two audiences shape this module. Cron needs every setting to come from a file
or the environment with no prompt; operators need one line that names the bad
key and the file when something is wrong (exit 64), never a traceback. Secrets
are never values here: the file names the environment variable that holds
each one, so a settings dump or an archived notebook cannot leak them.
"""

from __future__ import annotations

import copy
import dataclasses
import grp
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ccops.core.errors import NotConfigured
from ccops.core.objectstore import CREDENTIAL_ENVS  # the AWS secrets a bucket is reached with: scrubbed too
from ccops.core.objectstore import is_url as names_object_store
from ccops.core.reader import ENVIRONMENT, ConfigError, SectionReader, config_error, settings_source
from ccops.core.reader import bound_problem as bound_problem  # the floor rule lives with the reader
from ccops.core.reader import least_value as least_value
from ccops.core.thresholds import Thresholds  # the one home of every threshold; [thresholds] is read there

CONFIG_ENV = "CCOPS_CONFIG"
CONFIG_NAME = "ccops.toml"
DEPLOYMENT_NAME = "deployment.toml"  # the home's default deployment, written by whatever set one up
# The backends ccops.deploy ships; any other name must be registered under the entry point group
# (the demo's `local`, a third party's), which is read only when a name is not one of these.
BUILTIN_BACKENDS = ("compose", "systemd", "process", "none")
BACKENDS_ENTRY_POINTS = "ccops.backends"

# The settings a deployment must name itself (nothing falls back to a default place), as
# name -> (dotted key, environment variable, what it is, optional). An optional one is a probe
# the real app may not have at all: FACTS.md - with --scheduled no HTTP server runs, and there
# is no /health in any mode.
REQUIRED_SETTINGS: dict[str, tuple[str, str, str, bool]] = {
    "database_url": ("database.url", "CCOPS_DATABASE_URL or the app's DATABASE_URL", "the app's database", False),
    "log_dir": ("paths.log_dir", "CCOPS_LOG_DIR", "the app's logs/, where content_creator_YYYY-MM-DD.log are", False),
    "backup_dir": ("paths.backup_dir", "CCOPS_BACKUP_DIR", "where the backups are kept", False),
    "app_env_file": ("paths.app_env_file", "CCOPS_APP_ENV_FILE", "the app's .env", False),
    "backend": ("service.backend", "CCOPS_BACKEND", "process, compose, systemd or none", False),
    "status_url": ("http.status_url", "CCOPS_STATUS_URL",
                   "optional: the app serves /api/status only in API mode; with --scheduled it runs no HTTP server",
                   True),
    "health_url": ("http.health_url", "CCOPS_HEALTH_URL",
                   "optional: the app has no /health; set it only if your deployment serves a health probe", True),
}


@dataclass
class ComposeSettings:
    project_dir: str = "."
    file: str = ""
    app_service: str = "app"
    db_service: str = "db"
    db_user: str = "contentcreator"
    db_name: str = "content_creator"
    # container names (FACTS: contentcreator-db/-app or content-creator-db); "": as compose names them
    app_container: str = ""
    db_container: str = ""


@dataclass
class SystemdSettings:
    app_unit: str = "content-creator.service"
    db_unit: str = "postgresql.service"


@dataclass
class ProcessSettings:
    """The plain-process deployment (FACTS: production ran so): start/stop scripts, a process match, pg_ctl."""

    workdir: str = ""  # the app's project dir, e.g. ~/projects/content-creator
    start_command: str = ""  # shell, run in workdir, e.g. scripts/start_content_creator.sh
    stop_command: str = ""  # "": SIGTERM to the matched process, SIGKILL after 2 s (stop_content_creator.sh)
    match: str = "python main.py --scheduled"  # the app's command line, matched against /proc/*/cmdline
    pid_file: str = ""  # wins over match when set
    settle_seconds: float = 5.0  # a start is UP only if the process still runs after this
    error_log: str = ""  # "": <workdir>/logs/error.log
    output_log: str = ""  # "": <workdir>/logs/output.log
    db_start_command: str = ""  # e.g. pg_ctl -D $PREFIX/var/lib/postgresql -l logfile start
    db_stop_command: str = ""  # e.g. pg_ctl -D $PREFIX/var/lib/postgresql stop -m fast
    db_log: str = ""  # the server's log file (pg_ctl -l), for the logs step


@dataclass
class ApiSettings:
    """Live rate-limit probes; base URLs configurable so tests can point them at 127.0.0.1."""

    x_base_url: str = "https://api.twitter.com"
    x_token_env: str = "TWITTER_BEARER_TOKEN"  # the app's own key, read from the environment, else the app's .env
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_key_env: str = "ANTHROPIC_API_KEY"
    stripe_key_env: str = "STRIPE_API_KEY"
    remaining_warning_share: float = 0.1
    timeout_seconds: float = 5.0
    # the probes may take a key from the app's .env; false where that .env holds keys that must never be
    # sent anywhere (a demo's fake ones)
    app_env_credentials: bool = True


@dataclass
class AppSettings:
    """The app itself (ccops.deploy.appenv): where it lives, the .env keys it defines, how to prove its .env loads."""

    dir: str = ""  # the app's project dir; "": process.workdir, else the folder of the app's .env
    env_keys: list[str] = field(default_factory=list)  # []: <dir>/.env.example, else the list in FACTS.md
    validate_command: str = ""  # shell, run in dir after every .env edit; "": the app's settings import


@dataclass
class RateLimitSettings:
    """ccops.logs.ratelimit: who uses which API client, and how long a limit lasts when nothing says."""

    client_agents: list[str] = field(default_factory=lambda: [
        "twitter_api=PublishingAgent EngagementAgent", "exchange_api=MarketScannerAgent"])
    window_minutes: float = 15.0  # X's documented window; the reset when no probe answers
    agent_key_template: str = ""  # e.g. "ENABLE_{AGENT}": a per-agent switch, only if the app defines it


@dataclass
class BackupSettings:
    min_size_bytes: int = 1_000_000
    retention_days: int = 30
    keep_verified: int = 7
    compression: int = 6
    offsite: str = ""
    restore_jobs: int = 0  # parallel pg_restore jobs; 0: one per core, at most 4
    include_env: bool = False  # `ccops backup` also saves the app's .env (0600), as its backup.sh does
    include_logs: bool = False  # `ccops backup` also saves the app's log dir as a .tar.gz (0600)


@dataclass
class Settings:
    """The effective settings of one ccops invocation."""

    config_file: Path | None = None
    # <home>/deployment.toml when it applied: no ccops.toml, and the environment names no other database
    deployment_file: Path | None = None
    database_url: str = ""
    database_url_env: str = ""
    home: Path = Path(".ccops")
    archive_dir: Path = Path("outputs")
    # paths.archive_dir given as an fsspec URL (s3://bucket/prefix): the archive's home in object storage;
    # archive_dir is then the local copy each run is written to first (<home>/archive), mirrored there
    archive_remote: str = ""
    # [targets.<name>]: the deployment this invocation serves (--target, CCOPS_TARGET, else the only one),
    # every target's name, and the project's archive, under which each target's own lives (targets/<name>)
    target: str = ""
    targets: list[str] = field(default_factory=list)
    fleet_archive_dir: Path | None = None
    log_dir: Path | None = None
    # [logs] timezone: the IANA zone of the app's log times (loguru writes local time, no zone);
    # default: this machine's zone (TZ, else /etc/localtime). CCOPS_LOGS_TIMEZONE.
    logs_timezone: str = field(default_factory=lambda: machine_timezone())
    # [logs] format: the log format the app writes (a module of ccops/logs/formats). CCOPS_LOGS_FORMAT.
    logs_format: str = "contentcreator"
    backup_dir: Path | None = None
    app_env_file: Path | None = None
    # [paths] data_dir: the database's data directory, when it is on this host: its disk is watched too
    data_dir: Path | None = None
    runbooks_dir: Path | None = None
    backend: str = ""
    status_url: str = ""
    health_url: str = ""
    disk_paths: list[str] = field(default_factory=lambda: ["/", "/var"])
    secret_envs: list[str] = field(default_factory=list)
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 5_000
    run_timeout_seconds: int = 1800
    thresholds: Thresholds = field(default_factory=Thresholds)
    compose: ComposeSettings = field(default_factory=ComposeSettings)
    systemd: SystemdSettings = field(default_factory=SystemdSettings)
    process: ProcessSettings = field(default_factory=ProcessSettings)
    apis: ApiSettings = field(default_factory=ApiSettings)
    app: AppSettings = field(default_factory=AppSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    # [archive] group: the reviewers' group that may read the archive (files 0640, folders 0750,
    # chgrp to it); None: archive files 0600 and folders 0700, readable by the owner alone.
    archive_group: str | None = None
    # Sections whose shape belongs to one module (alerts, schedule, costs, security, archive):
    # kept raw here and validated by that module, which names the key and file on error.
    extra: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A module-owned section of the settings file ({} when absent)."""
        return self.extra.get(name, {})

    # ---- derived values -------------------------------------------------
    @property
    def source(self) -> str:
        """The file these settings came from (ccops.toml, else the home's deployment file), for error lines."""
        return settings_source(self)

    def require(self, name: str) -> Any:
        """The value of a deployment setting, or NotConfigured naming the key to set.

        The one way a check reads the deployment's paths and URLs (log_dir,
        backup_dir, app_env_file, status_url, health_url, backend, database_url):
        only what ccops.toml, the home's deployment file or the environment set,
        never a default place (a default made `logs summary` count another
        deployment's records). The check decorator turns NotConfigured into an
        UNKNOWN "not configured: set <key>" finding, listed in the run's summary.
        """
        value = self.optional(name)
        if value is None:
            key, env, what, optional = REQUIRED_SETTINGS[name]
            raise NotConfigured(key, f"or {env}: {what}", optional=optional)
        return value

    def optional(self, name: str) -> Any:
        """The setting's value, else None (for steps that can go on without)."""
        if name not in REQUIRED_SETTINGS:
            raise KeyError(f"{name}: not a deployment setting ({', '.join(REQUIRED_SETTINGS)})")
        if name == "database_url":
            return self.configured_database_url() or None
        return getattr(self, name) or None

    def not_configured(self) -> list[str]:
        """The deployment settings that are not set ('paths.log_dir', ...), in REQUIRED_SETTINGS' order."""
        return [key for name, (key, *_) in REQUIRED_SETTINGS.items() if self.optional(name) is None]

    def configured_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.database_url_env and os.environ.get(self.database_url_env):
            return os.environ[self.database_url_env]
        if os.environ.get("DATABASE_URL"):
            return os.environ["DATABASE_URL"]
        return read_env_file(self.app_env_file).get("DATABASE_URL", "") if self.app_env_file else ""

    def resolved_database_url(self) -> str:
        """The URL checks connect to; NotConfigured naming database.url when none is set."""
        return self.require("database_url")

    @property
    def default_deployment_file(self) -> Path:
        """Where `ccops demo up` (or any tool setting up a deployment) writes the home's default deployment."""
        return self.home / DEPLOYMENT_NAME

    @property
    def effective_backend(self) -> str:
        """The backend to use: "none" on a deployment that names none (a check wanting one says so)."""
        return self.optional("backend") or "none"

    # The effective_* accessors below go through require(): on a deployment an unset path or URL
    # raises NotConfigured instead of quietly pointing at a default place.
    @property
    def effective_log_dir(self) -> Path:
        return self.require("log_dir")

    def app_log_dir(self) -> Path | None:
        """The app's log dir; None under compose when none is set (then `docker compose logs app` is read)."""
        if self.effective_backend == "compose" and self.optional("log_dir") is None:
            return None
        return Path(self.require("log_dir"))

    @property
    def effective_backup_dir(self) -> Path:
        return self.require("backup_dir")

    @property
    def effective_app_env_file(self) -> Path:
        return self.require("app_env_file")

    @property
    def effective_runbooks_dir(self) -> Path:
        return self.runbooks_dir or Path(__file__).resolve().parents[2] / "runbooks"

    def effective_status_url(self) -> str:
        return self.require("status_url")

    def effective_health_url(self) -> str:
        return self.require("health_url")

    def secret_values(self) -> list[str]:
        """Every secret ccops knows of, for scrubbing anything it archives."""
        values: list[str] = []
        urls = [self.configured_database_url()]
        for url in urls:
            password = urlsplit(url).password if url else None
            if password:
                values.append(password)
        names = set(self.secret_envs) | {self.apis.x_token_env, self.apis.anthropic_key_env} | set(CREDENTIAL_ENVS)
        for channel in self.section("alerts").get("channels") or []:  # webhook URLs, SMTP passwords
            if isinstance(channel, dict):
                names |= {v for k, v in channel.items() if k.endswith("_env") and isinstance(v, str)}
        for name in names:
            if name and os.environ.get(name):
                values.append(os.environ[name])
        for key, value in read_env_file(self.optional("app_env_file")).items():
            if value and is_secret_name(key):
                password = urlsplit(value).password if "://" in value else None
                values.append(password or value)
        return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)

    def to_display(self) -> dict[str, Any]:
        """The settings as `ccops config show` prints them: effective values, secrets masked."""
        shown = _as_plain(self)
        shown["config_file"] = str(self.config_file) if self.config_file else None
        shown["database_url"] = mask_url(self.resolved_database_url_or_blank())
        shown["backend"] = self.effective_backend
        for name in ("log_dir", "backup_dir", "app_env_file", "status_url", "health_url"):
            value = self.optional(name)
            shown[name] = NOT_SET if value is None else str(value)
        shown["runbooks_dir"] = str(self.effective_runbooks_dir)
        shown["deployment_file"] = str(self.deployment_file) if self.deployment_file else None
        shown["not_configured"] = self.not_configured()
        return shown

    def resolved_database_url_or_blank(self) -> str:
        try:
            return self.resolved_database_url()
        except Exception:
            return ""


NOT_SET = "(not configured)"
SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "DATABASE_URL", "WEBHOOK")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def mask_url(url: str) -> str:
    """A URL with its password replaced by ***."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_env_file(path: Path | None) -> dict[str, str]:
    """KEY=VALUE pairs of a dotenv file; a missing or unreadable file is empty.

    The file is the app's, not ccops', so a byte that is not UTF-8 must not stop
    a run (the scrubber reads it after the notebook ran). It is decoded with
    errors="replace", the same way the runner decodes the notebook's output
    before scrubbing, so a secret value holding such a byte reads as the same
    text in both places and is still masked.
    """
    if not path:
        return {}
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return {}
    return dict(env_pairs(text))


def env_pairs(text: str) -> Iterator[tuple[str, str]]:
    """(key, value) of each assignment in dotenv text, read the way python-dotenv reads them.

    `export KEY=...` is allowed, a quoted value ends at its closing quote, an unquoted one at
    ` #` (an inline comment); comment and blank lines are skipped. One reader for the settings
    and the scrubber, so a secret is masked exactly as the app will read it.
    """
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if value and value[0] in "\"'" and value.count(value[0]) >= 2:
            value = value[1 : value.index(value[0], 1)]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        yield key, value


def _as_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _as_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, list):
        return [_as_plain(v) for v in obj]
    return obj


# ---- loading --------------------------------------------------------------

ENV_KEYS = {
    "CCOPS_DATABASE_URL": "database_url",
    "CCOPS_HOME": "home",
    "CCOPS_ARCHIVE_DIR": "archive_dir",
    "CCOPS_LOG_DIR": "log_dir",
    "CCOPS_LOGS_TIMEZONE": "logs_timezone",
    "CCOPS_LOGS_FORMAT": "logs_format",
    "CCOPS_BACKUP_DIR": "backup_dir",
    "CCOPS_APP_ENV_FILE": "app_env_file",
    "CCOPS_DATA_DIR": "data_dir",
    "CCOPS_RUNBOOKS_DIR": "runbooks_dir",
    "CCOPS_BACKEND": "backend",
    "CCOPS_STATUS_URL": "status_url",
    "CCOPS_HEALTH_URL": "health_url",
    "CCOPS_SECRET_ENVS": "secret_envs",
    "CCOPS_DISK_PATHS": "disk_paths",
    "CCOPS_RUN_TIMEOUT_SECONDS": "run_timeout_seconds",
}
SECTIONS = {
    "compose": ComposeSettings,
    "systemd": SystemdSettings,
    "process": ProcessSettings,
    "apis": ApiSettings,
    "app": AppSettings,
    "ratelimit": RateLimitSettings,
    "backup": BackupSettings,
}
TOP_LEVEL_TABLES = {"database", "paths", "service", "http", "run", "logs"}
MODULE_SECTIONS = {"alerts", "schedule", "costs", "security", "archive", "analytics"}


HOME_NAME = ".ccops"  # the project's state folder, under the project root
ARCHIVE_NAME = "outputs"  # the project's archive, under the project root
RUNBOOKS_NAME = "runbooks"


def project_root(cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The ccops project this invocation belongs to, wherever it was started from.

    Why: a JupyterLab kernel runs in runbooks/, cron in $HOME, an operator
    anywhere; resolving home, archive and ccops.toml from the working directory
    made each of them see a different (mostly empty) deployment. The order:
    walk up from the working directory to the folder holding ccops.toml or
    ccops' runbooks/; else walk up from CCOPS_HOME; else the checkout this ccops
    is installed from (an editable install); else the working directory.
    """
    env = os.environ if env is None else env
    start = Path.cwd() if cwd is None else Path(cwd)
    found = _walk_up(start)
    if found is None and env.get("CCOPS_HOME"):
        home = Path(env["CCOPS_HOME"]).expanduser()
        found = _walk_up(home if home.is_absolute() else start / home)
    return found or installed_checkout() or start


def _walk_up(start: Path) -> Path | None:
    """The nearest folder from `start` upwards that holds ccops.toml or ccops' runbooks."""
    for directory in (start, *start.parents):
        if (directory / CONFIG_NAME).is_file() or holds_runbooks(directory / RUNBOOKS_NAME):
            return directory
    return None


def holds_runbooks(path: Path) -> bool:
    """Whether `path` holds ccops' runbooks (a notebook that uses ccops), not just any folder of that name."""
    try:
        notebooks = sorted(path.glob("*.ipynb"))[:5]
        return any(b"ccops" in nb.read_bytes() for nb in notebooks)
    except OSError:
        return False


def installed_checkout() -> Path | None:
    """The source checkout ccops runs from (editable install), when it holds the runbooks; None from site-packages."""
    checkout = Path(__file__).resolve().parents[2]  # ccops/core/settings.py -> the checkout
    return checkout if holds_runbooks(checkout / RUNBOOKS_NAME) else None


def find_config_file(explicit: str | os.PathLike[str] | None = None, root: Path | None = None) -> Path | None:
    """The settings file: --config, then CCOPS_CONFIG, then ccops.toml in the project root (project_root())."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: settings file not found")
        return path
    if os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
        if not path.is_file():
            raise ConfigError(f"{path}: settings file named by {CONFIG_ENV} not found")
        return path
    local = (project_root() if root is None else root) / CONFIG_NAME
    return local if local.is_file() else None


def load_settings(
    config_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
    target: str | None = None,
) -> Settings:
    """Settings from the file (if any) overlaid by the environment; ConfigError on bad input.

    Without a ccops.toml, the home's deployment file (<home>/deployment.toml, what
    `ccops demo up` writes) stands in for it, unless the environment names a
    database of its own: then the environment is the deployment, and nothing
    from the home's file applies to it.

    With `[targets.<name>]` tables, one ccops serves several deployments: the
    top-level tables are what they share, the chosen target's table (same
    shape as the file) goes over them, and the target gets a home and an
    archive of its own (`<home>/targets/<name>`, `<archive_dir>/targets/<name>`)
    unless its table names them: its own locks, alert state, work dirs and
    reports, so staging can never take production's lock or silence its alerts.
    """
    env = os.environ if env is None else env
    root = project_root(env=env)
    settings = project_defaults(Settings(), root)
    path = find_config_file(config_file, root)
    if path:
        settings.config_file = path.resolve()
        data = _read_toml(path)
        tables = _target_tables(data, path)
        _apply_file(settings, data, path)
        if tables:
            _refuse_shared_places(data, path)
            _apply_target(settings, tables, path, target or env.get(TARGET_ENV, "").strip())
        elif target or env.get(TARGET_ENV, "").strip():
            named = target or env[TARGET_ENV].strip()
            raise ConfigError(f"{path}: targets: no target {named!r}: the file has no [targets.<name>] tables "
                              f"(drop --target / {TARGET_ENV}, or add [targets.{named}])")
    elif target or env.get(TARGET_ENV, "").strip():
        raise ConfigError(f"no settings file: --target / {TARGET_ENV} needs a ccops.toml with [targets.<name>] tables")
    _apply_env(settings, env)
    if not path:
        _apply_default_deployment(settings, env)
    _split_remote_archive(settings)
    source = path or settings.deployment_file
    _archive_group(settings, env, source)
    _validate(settings, str(source) if source else ENVIRONMENT, env)
    return settings


TARGET_ENV = "CCOPS_TARGET"
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
TARGETS_DIR = "targets"  # under the home and the archive: one folder per target


def _target_tables(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """The file's [targets.<name>] tables, taken out of `data`; names that cannot be a folder are refused."""
    raw = data.pop("targets", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise config_error(str(path), "targets", "expected one table per target ([targets.production], "
                           "[targets.staging], ...)")
    for name in raw:
        if not TARGET_NAME.fullmatch(name):
            raise config_error(str(path), f"targets.{name}", "a target's name must be letters, digits, - and _ "
                               "(at most 63, starting with a letter or digit): it names folders")
    return raw


# A deployment's own places: with targets they go in each target's table, never shared (a shared log dir
# would count one deployment's errors as another's; a shared backup dir would prune one with the other's).
OWN_PLACES = {"database": ("url", "url_env"), "paths": ("log_dir", "backup_dir", "app_env_file", "data_dir"),
              "http": ("status_url", "health_url")}


def _refuse_shared_places(data: dict[str, Any], path: Path) -> None:
    for table, keys in OWN_PLACES.items():
        section = data.get(table)
        for key in keys:
            if isinstance(section, dict) and key in section:
                raise config_error(str(path), f"{table}.{key}", "with [targets.<name>] tables, a deployment's own "
                                   f"places go in each target's table ([targets.<name>.{table}] {key} = ...)")


def _apply_target(settings: Settings, tables: dict[str, dict[str, Any]], path: Path, named: str) -> None:
    """The chosen target's table over the shared settings, with a home and an archive of its own."""
    names = sorted(tables)
    if not named:
        if len(names) > 1:
            raise ConfigError(f"{path}: targets: {len(names)} targets ({', '.join(names)}): "
                              f"pass --target NAME or set {TARGET_ENV}")
        named = names[0]
    if named not in tables:
        raise ConfigError(f"{path}: targets: no target {named!r} (the file has {', '.join(names)})")
    table = tables[named]
    settings.target, settings.targets = named, names
    remote = str(settings.archive_dir) == REMOTE_PLACEHOLDER
    settings.fleet_archive_dir = settings.home / "archive" if remote else settings.archive_dir
    paths: dict[str, Any] = table["paths"] if isinstance(table.get("paths"), dict) else {}
    if "home" not in paths:
        settings.home = settings.home / TARGETS_DIR / named
    if "archive_dir" not in paths and not settings.archive_remote:
        settings.archive_dir = settings.archive_dir / TARGETS_DIR / named
    elif "archive_dir" not in paths:
        settings.archive_remote = f"{settings.archive_remote.rstrip('/')}/{TARGETS_DIR}/{named}"
    database: dict[str, Any] = table["database"] if isinstance(table.get("database"), dict) else {}
    _apply_file(settings, table, path, prefix=f"targets.{named}.")
    if not database.get("url") and not database.get("url_env") and _apply_target_deployment(settings):
        _apply_file(settings, table, path, prefix=f"targets.{named}.")  # the target's own table still wins


def fleet_archives(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Every target's archive dir, for the fleet overview; a target whose settings fail is left out.

    Read from the same file as `settings`, one target at a time, as `--target`
    would; its local archive dir (the local copy when the archive is in a bucket).
    """
    if not settings.targets or settings.config_file is None:
        return {}
    env = {k: v for k, v in (os.environ if env is None else env).items()
           if k not in ("CCOPS_HOME", "CCOPS_ARCHIVE_DIR", TARGET_ENV)}  # this run's own, not the others'
    found: dict[str, Path] = {}
    for name in settings.targets:
        if name == settings.target:
            found[name] = Path(settings.archive_dir)
            continue
        try:
            found[name] = Path(load_settings(settings.config_file, env=env, target=name).archive_dir)
        except ConfigError:
            continue
    return found


def _apply_target_deployment(settings: Settings) -> bool:
    """A target that names no database takes the one its home's deployment file names (`ccops demo up --target`)."""
    file = settings.default_deployment_file
    if not file.is_file():
        return False
    _apply_deployment_file(settings, file, _read_toml(file))
    return True


def _apply_deployment_file(settings: Settings, file: Path, data: dict[str, Any]) -> None:
    """A home's deployment file onto the settings; it cannot move the home it lives in."""
    paths = data.get("paths")
    if isinstance(paths, dict) and "home" in paths:
        raise config_error(str(file), "paths.home", "cannot be set in the home's own deployment file")
    settings.deployment_file = file
    _apply_file(settings, data, file)


def _split_remote_archive(settings: Settings) -> None:
    """An archive in object storage keeps a local copy under the home, where each run is written first."""
    if settings.archive_remote and str(settings.archive_dir) == REMOTE_PLACEHOLDER:
        settings.archive_dir = settings.home / "archive"


REMOTE_PLACEHOLDER = "\0remote"  # archive_dir until the home is known, when archive_dir named a URL


def _apply_env(settings: Settings, env: Mapping[str, str]) -> None:
    """The CCOPS_* variables over whatever the files said (each variable named in its own error line)."""
    reader = SectionReader(ENVIRONMENT, env, base=Path.cwd(), text=True)
    for name, attr in ENV_KEYS.items():
        if env.get(name):
            _set(settings, attr, reader, name)
    for section, cls in SECTIONS.items():
        target = getattr(settings, section)
        for f in fields(cls):
            name = f"CCOPS_{section.upper()}_{f.name.upper()}"
            if env.get(name):
                _set(target, f.name, reader, name)
    settings.thresholds.apply_env(env)  # CCOPS_THRESHOLDS_<KEY>, flat keys of before and dotted ones


def _apply_default_deployment(settings: Settings, env: Mapping[str, str]) -> None:
    if use_default_deployment(settings):
        _apply_env(settings, env)  # the environment still wins over the file


def use_default_deployment(settings: Settings) -> bool:
    """Apply <home>/deployment.toml to settings that have no ccops.toml; True when it applied.

    The rule that keeps a real deployment from reading another one's places: a
    database URL named by the environment (CCOPS_DATABASE_URL, DATABASE_URL, the
    app's .env named by CCOPS_APP_ENV_FILE) on another server than the file's
    makes the environment the deployment, and the file does not apply. Whoever
    writes the file calls this too, so the settings it holds become that deployment.
    """
    file = settings.default_deployment_file
    if (settings.config_file is not None and not settings.target) or not file.is_file():
        return False
    data = _read_toml(file)
    database = data.get("database")
    file_url = database.get("url", "") if isinstance(database, dict) else ""
    named = "" if settings.deployment_file else settings.configured_database_url()
    if named and not same_server(named, file_url if isinstance(file_url, str) else ""):
        return False
    _apply_deployment_file(settings, file, data)
    return True


def same_server(url: str, other: str) -> bool:
    """Whether two database URLs name the same server (host and port); a URL that does not parse names none."""
    try:
        a, b = urlsplit(url), urlsplit(other)
        return "://" in url and "://" in other and (a.hostname, a.port) == (b.hostname, b.port)
    except ValueError:
        return False


def project_defaults(settings: Settings, root: Path) -> Settings:
    """Home, archive and runbooks under the project root: what applies unless the file or environment says else."""
    settings.home = root / HOME_NAME
    settings.archive_dir = root / ARCHIVE_NAME
    if holds_runbooks(root / RUNBOOKS_NAME):
        settings.runbooks_dir = root / RUNBOOKS_NAME
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed file, or one line naming it: unreadable, not UTF-8 (TOML must be), or not TOML."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); "
                          "save the file as UTF-8") from None
    cached = _PARSED.get(str(path))
    if cached is not None and cached[0] == raw:
        return copy.deepcopy(cached[1])  # callers may change what they get; the cached parse stays as read
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _PARSED[str(path)] = (raw, parsed)
    return copy.deepcopy(parsed)


# Each file's last parse, by path, kept while its bytes stay the same: the fleet page loads every target's
# settings from one file, and parsing it once per target made that quadratic in the number of targets.
_PARSED: dict[str, tuple[bytes, dict[str, Any]]] = {}


def _archive_group(settings: Settings, env: Mapping[str, str], path: Path | None) -> None:
    """[archive] group (or CCOPS_ARCHIVE_GROUP): the reviewers' group, which must exist and be ours to give.

    The key is read here, not by the archive, because every run needs it and a
    group that does not exist must fail before a run starts, not when the
    report is written. It is taken out of the raw section, which the archive
    module checks for unknown keys.
    """
    section = settings.extra.get("archive")
    source, key = str(path), "archive.group"
    if isinstance(section, dict) and "group" in section:
        raw = section["group"]
        settings.extra["archive"] = {k: v for k, v in section.items() if k != "group"}
        if not isinstance(raw, str) or not raw.strip():
            raise config_error(source, key, f"expected the name of a group, got {raw!r}")
        settings.archive_group = raw.strip()
    if env.get("CCOPS_ARCHIVE_GROUP"):
        source, key = ENVIRONMENT, "CCOPS_ARCHIVE_GROUP"
        settings.archive_group = env["CCOPS_ARCHIVE_GROUP"].strip()
    if settings.archive_group is None:
        return
    name = settings.archive_group
    try:
        group = grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
    except (KeyError, OverflowError):
        raise config_error(source, key, f"no group {name!r} on this host") from None
    if os.geteuid() != 0 and group.gr_gid not in os.getgroups() and group.gr_gid != os.getegid():
        raise config_error(source, key, f"this user is not a member of group {group.gr_name!r}, so the archive "
                           "cannot be given to it (add the user to the group, or unset the key)")
    settings.archive_group = group.gr_name


def _apply_file(settings: Settings, data: dict[str, Any], path: Path, prefix: str = "") -> None:
    """A settings file's tables onto the settings: core sections typed now, module sections kept for their module.

    `prefix` names where the tables sit in the file (`targets.staging.`), so an error names the right key.
    """
    file = SectionReader(str(path), data, prefix, base=path.resolve().parent, text=True)
    flat: dict[str, tuple[str, SectionReader, str]] = {}
    for key in data:
        if key == "thresholds":
            settings.thresholds.apply_file(file.section(key))
        elif key in SECTIONS:
            table = file.section(key)
            target = getattr(settings, key)
            table.unknown({f.name for f in fields(target)})
            for sub in table.table:
                _set(target, sub, table, sub)
        elif key in MODULE_SECTIONS:
            settings.extra[key] = {**settings.extra.get(key, {}), **file.section(key).table}
        elif key in TOP_LEVEL_TABLES:
            table = file.section(key)
            for sub in table.table:
                flat[FILE_KEYS.get(f"{key}.{sub}", f"{key}.{sub}")] = (f"{key}.{sub}", table, sub)
        else:
            raise file.fail(key, "unknown setting")
    known = {f.name for f in fields(Settings)}
    for attr, (label, table, sub) in flat.items():
        if attr not in known:
            raise file.fail(label, "unknown setting")
        _set(settings, attr, table, sub)


FILE_KEYS = {
    "database.url": "database_url",
    "database.url_env": "database_url_env",
    "database.statement_timeout_ms": "statement_timeout_ms",
    "database.lock_timeout_ms": "lock_timeout_ms",
    "paths.home": "home",
    "paths.archive_dir": "archive_dir",
    "paths.log_dir": "log_dir",
    "logs.timezone": "logs_timezone",
    "logs.format": "logs_format",
    "paths.backup_dir": "backup_dir",
    "paths.app_env_file": "app_env_file",
    "paths.data_dir": "data_dir",
    "paths.runbooks_dir": "runbooks_dir",
    "paths.disk_paths": "disk_paths",
    "service.backend": "backend",
    "http.status_url": "status_url",
    "http.health_url": "health_url",
    "run.timeout_seconds": "run_timeout_seconds",
    "run.secret_envs": "secret_envs",
}


def _set(target: Any, attr: str, reader: SectionReader, key: str) -> None:
    """The reader's value at `key`, typed as the dataclass field `attr` is, onto `target`."""
    if attr == "archive_dir" and isinstance(target, Settings) and isinstance(reader.get(key), str) \
            and names_object_store(reader.get(key).strip()):
        target.archive_remote = reader.string(key).rstrip("/")
        target.archive_dir = Path(REMOTE_PLACEHOLDER)  # the local copy: <home>/archive, once the home is known
        return
    ftype = str({f.name: f.type for f in fields(target)}[attr])
    kind = ("path" if "Path" in ftype else "list" if ftype.startswith("list")
            else ftype if ftype in ("int", "float", "bool") else "str")
    setattr(target, attr, reader.typed(key, kind))


def _origin(key: str, env: Mapping[str, str], source: str) -> tuple[str, str]:
    """Where a dotted setting came from, as (source, key): the variable when set there, else the file and key."""
    section, _, attr = key.rpartition(".")
    if section in SECTIONS:
        name = f"CCOPS_{section.upper()}_{attr.upper()}"
    else:
        attr = FILE_KEYS.get(key, key)
        name = next((n for n, a in ENV_KEYS.items() if a == attr), "")
    if name and env.get(name):
        return ENVIRONMENT, name
    return source, key


def _bounded_settings(settings: Settings) -> list[tuple[str, Any]]:
    """Every number of the settings with its dotted key (module sections walked as written)."""
    found: list[tuple[str, Any]] = []
    labels = {attr: label for label, attr in FILE_KEYS.items()}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.name in SECTIONS:
            found += [(f"{f.name}.{sub.name}", getattr(value, sub.name)) for sub in fields(value)]
        elif isinstance(value, (int, float)):
            found.append((labels.get(f.name, f.name), value))

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}", sub)
        elif isinstance(value, list):
            for index, sub in enumerate(value, start=1):
                if isinstance(sub, dict):
                    walk(f"{prefix}[{index}]", sub)
        else:
            found.append((prefix, value))

    for section, table in settings.extra.items():
        walk(section, table)
    return found


def _validate(settings: Settings, source: str, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env

    def fail(key: str, problem: str) -> ConfigError:
        return config_error(*_origin(key, env, source), problem)

    for key, value in _bounded_settings(settings):
        problem = bound_problem(key, value)
        if problem:
            raise fail(key, problem)
    if settings.backend and settings.backend not in BUILTIN_BACKENDS:
        valid = valid_backends()
        if settings.backend not in valid:
            raise fail("service.backend", f"expected one of {', '.join(valid)}, got {settings.backend!r}")
    threshold_problem = settings.thresholds.problem(source)
    if threshold_problem:
        raise threshold_problem
    if not valid_timezone(settings.logs_timezone):
        raise fail("logs.timezone", f"expected an IANA time zone name such as Europe/Amsterdam, got {settings.logs_timezone!r}")
    if settings.run_timeout_seconds <= 0:
        raise fail("run.timeout_seconds", "expected a positive number")


def valid_backends() -> list[str]:
    """Every name service.backend may take: the built-in ones and those installed packages register, "none" last.

    Reading the entry points scans the installed packages, so it is done only for a
    name that is not built in: cron's `ccops health` on a compose host never pays for it.
    """
    from importlib.metadata import entry_points

    contributed = sorted({ep.name for ep in entry_points(group=BACKENDS_ENTRY_POINTS)} - set(BUILTIN_BACKENDS))
    return [*(name for name in BUILTIN_BACKENDS if name != "none"), *contributed, "none"]


# ---- the zone of the app's log times --------------------------------------------------------

def valid_timezone(name: str) -> bool:
    """Whether zoneinfo knows `name` (an IANA key such as Europe/Amsterdam or Etc/GMT-1)."""
    import zoneinfo

    if not name or name != name.strip():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def machine_timezone(env: Mapping[str, str] | None = None, localtime: Path = Path("/etc/localtime")) -> str:
    """This machine's IANA zone: TZ when it names one, else /etc/localtime's target, else /etc/timezone, else UTC.

    Why: the app writes its log times in its host's local time, and ccops usually runs
    on that host, so the machine's zone is the right default for `logs.timezone`.
    """
    env = os.environ if env is None else env
    candidates = [env.get("TZ", "").lstrip(":")]
    try:
        target = os.readlink(localtime)  # the name the admin chose, e.g. /usr/share/zoneinfo/Europe/Amsterdam
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    try:
        candidates.append((localtime.parent / "timezone").read_text().strip())
    except OSError:
        pass
    return next((name for name in candidates if valid_timezone(name)), "UTC")
