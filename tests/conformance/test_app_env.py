"""FACTS.md, "Settings": the app's `.env` keys, and settings that reject any other key.

The app reads `.env` through a pydantic-settings class (env_file=".env",
case-insensitive) that rejects keys it does not define: one unknown key and the
app cannot start ("Extra inputs are not permitted"). The stand-in below is a
tiny settings module that behaves that way (python-dotenv reads the file as
UTF-8; a bool field accepts pydantic's true/false words only), placed where the
app keeps it (src/config/settings.py) so ccops' default validation - `python -c
"import src.config.settings"` in the app's folder - runs it exactly as it would
run the app's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ccops.core.settings import load_settings
from ccops.deploy import appenv

# FACTS.md: "The complete list of keys it defines (from its .env.example)", plus GOOGLE_API_KEY_BACKUP.
FACTS_KEYS = """DATABASE_URL, ANTHROPIC_API_KEY,
  GOOGLE_API_KEY, OPENAI_API_KEY, TWITTER_API_KEY, TWITTER_API_SECRET, TWITTER_ACCESS_TOKEN,
  TWITTER_ACCESS_TOKEN_SECRET, TWITTER_BEARER_TOKEN, TELEGRAM_BOT_TOKEN, TELEGRAM_CHANNEL_ID,
  BINANCE_API_KEY, BINANCE_API_SECRET, HUMAN_IN_THE_LOOP, CONTENT_PERSONALITY, LOG_LEVEL,
  STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET, STRIPE_PRICE_ID_BASIC, STRIPE_PRICE_ID_PREMIUM,
  STRIPE_PRICE_ID_VIP, DISCORD_BOT_TOKEN, DISCORD_GUILD_ID, DISCORD_ROLE_ID_BASIC,
  DISCORD_ROLE_ID_PREMIUM, DISCORD_ROLE_ID_VIP, CONVERSION_MIN_ENGAGEMENT_SCORE,
  CONVERSION_DISCOUNT_PERCENTAGE, CONVERSION_DM_COOLDOWN_DAYS, AB_TESTING_MIN_SAMPLE_SIZE,
  AB_TESTING_CONFIDENCE_THRESHOLD, AB_TESTING_MAX_ACTIVE_TESTS, AB_TESTING_TEST_DURATION_DAYS,
  STRATEGY_TUNING_MIN_DATA_POINTS, STRATEGY_TUNING_CONFIDENCE_LEVEL,
  STRATEGY_TUNING_MAX_ADJUSTMENTS_PER_RUN, PERFORMANCE_ANALYTICS_SNAPSHOT_RETENTION_DAYS,
  FEEDBACK_LOOP_OPTIMIZATION_CYCLE_HOURS, FEEDBACK_LOOP_MIN_CONFIDENCE_FOR_CHANGES"""
EXAMPLE_KEYS = [k.strip() for k in FACTS_KEYS.replace("\n", " ").split(",")]
ALL_KEYS = [*EXAMPLE_KEYS, "GOOGLE_API_KEY_BACKUP"]

# A stand-in for the app's src/config/settings.py: pydantic-settings' behaviour, standard library only.
SETTINGS_MODULE = textwrap.dedent('''
    import sys
    from pathlib import Path

    FIELDS = {FIELDS!r}
    BOOLS = {{"human_in_the_loop"}}
    TRUE, FALSE = {{"1", "true", "t", "yes", "y", "on"}}, {{"0", "false", "f", "no", "n", "off"}}

    def load():
        path = Path(".env")
        if not path.exists():
            return {{}}
        text = path.read_bytes().decode("utf-8")  # python-dotenv under a UTF-8 locale: a latin-1 byte fails
        values, errors = {{}}, []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().removeprefix("export ").strip()
            value = value.strip()
            if value[:1] in ("'", '"') and value[0] in value[1:]:  # python-dotenv: quoted, then a comment
                value = value[1:value.index(value[0], 1)]
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            name = key.lower()
            if name not in FIELDS:
                errors.append(f"{{name}}\\n  Extra inputs are not permitted [type=extra_forbidden, "
                              f"input_value={{value!r}}, input_type=str]")
            elif name in BOOLS and value.lower() not in TRUE | FALSE:
                errors.append(f"{{name}}\\n  Input should be a valid boolean, unable to interpret input "
                              f"[type=bool_parsing, input_value={{value!r}}, input_type=str]")
            values[name] = value
        if errors:
            count = len(errors)
            raise SystemExit("pydantic_core._pydantic_core.ValidationError: "
                             f"{{count}} validation error{{'s' if count > 1 else ''}} for Settings\\n" + "\\n".join(errors))
        return values

    settings = load()
''').format(FIELDS=sorted(k.lower() for k in ALL_KEYS))

ENV_CRLF = (
    b"# Content Creator\r\n"
    b"DATABASE_URL=postgresql://content_creator_user:pw@localhost:5432/content_creator\r\n"
    b"TWITTER_BEARER_TOKEN=AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid\r\n"
    b"\r\n"
    b"export ANTHROPIC_API_KEY='sk-ant-api03-abc'   # rotated 2026-10\r\n"
    b"LOG_LEVEL=INFO"  # no final line ending
)


@pytest.fixture
def app(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's folder as FACTS describes it: src/config/settings.py, and .env beside main.py."""
    folder = ccops_env / "content-creator"
    (folder / "src" / "config").mkdir(parents=True)
    (folder / "src" / "__init__.py").write_text("")
    (folder / "src" / "config" / "__init__.py").write_text("")
    (folder / "src" / "config" / "settings.py").write_text(SETTINGS_MODULE)
    env = folder / ".env"
    env.write_bytes(ENV_CRLF)
    env.chmod(0o600)
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return folder


def app_starts(folder: Path) -> subprocess.CompletedProcess[str]:
    """What the app's own start does first: import its settings in its folder."""
    return subprocess.run([sys.executable, "-c", "import src.config.settings"], cwd=folder,
                          capture_output=True, text=True, errors="replace")


def snapshot(path: Path) -> tuple[bytes, int, int]:
    stat = path.stat()
    return path.read_bytes(), stat.st_mode, stat.st_mtime_ns


def test_the_stand_in_rejects_an_unknown_key_as_the_app_does(app):
    assert app_starts(app).returncode == 0
    (app / ".env").write_bytes(ENV_CRLF + b"\r\nENABLE_PUBLISHING=false\r\n")
    failed = app_starts(app)
    assert failed.returncode != 0 and "Extra inputs are not permitted" in failed.stderr


def test_the_key_list_is_facts_complete_list_when_the_app_has_no_example(app):
    keys, source = appenv.known_keys(load_settings())
    assert keys == frozenset(ALL_KEYS) and len(ALL_KEYS) == 40
    assert "FACTS.md" in source
    assert not [k for k in keys if k.startswith("ENABLE_")], "FACTS: there is no per-agent switch"
    assert "X_BEARER_TOKEN" not in keys and "STRIPE_SECRET_KEY" not in keys


def test_the_key_list_comes_from_the_apps_env_example_then_the_setting(app, monkeypatch):
    (app / ".env.example").write_text("# Content Creator\n" + "".join(f"{k}=\n" for k in EXAMPLE_KEYS[:5]))
    keys, source = appenv.known_keys(load_settings())
    assert keys == frozenset(EXAMPLE_KEYS[:5]) and source == str(app / ".env.example")
    monkeypatch.setenv("CCOPS_APP_ENV_KEYS", "HUMAN_IN_THE_LOOP,LOG_LEVEL")
    keys, source = appenv.known_keys(load_settings())
    assert keys == {"HUMAN_IN_THE_LOOP", "LOG_LEVEL"} and source == "setting app.env_keys"


@pytest.mark.parametrize("key", ["ENABLE_PUBLISHING", "ENABLE_MARKET_SCANNER", "X_BEARER_TOKEN"])
def test_a_key_the_app_does_not_define_is_refused_and_nothing_is_written(app, key):
    before = snapshot(app / ".env")
    with pytest.raises(appenv.UnknownKeyError) as info:
        appenv.edit_validated(load_settings(), key, "false")
    message = str(info.value)
    assert message.startswith(f"refused: the app does not define {key}")
    assert "HUMAN_IN_THE_LOOP=true" in message and "stopping the whole app" in message
    assert snapshot(app / ".env") == before
    assert sorted(p.name for p in app.iterdir()) == [".env", "src"], "no backup, no temp file"
    assert app_starts(app).returncode == 0


def test_hold_and_restore_of_an_absent_key_gives_back_every_byte(app):
    settings = load_settings()
    hold = appenv.edit_validated(settings, "HUMAN_IN_THE_LOOP", "true")
    assert hold.changed and hold.old is None and hold.added_separator
    assert (app / ".env").read_bytes() == ENV_CRLF + b"\r\nHUMAN_IN_THE_LOOP=true\r\n"
    assert hold.validated.endswith("-c 'import src.config.settings'")
    assert app_starts(app).returncode == 0
    back = appenv.edit_validated(settings, "HUMAN_IN_THE_LOOP", None, strip_final_newline=hold.added_separator)
    assert back.changed and back.new is None
    assert (app / ".env").read_bytes() == ENV_CRLF


def test_hold_and_restore_of_a_previous_value_keeps_its_quotes_and_line_ending(app):
    env = app / ".env"
    original = ENV_CRLF.replace(b"LOG_LEVEL=INFO", b'human_in_the_loop="false"  # reviewed by hand\r\nLOG_LEVEL=INFO')
    env.write_bytes(original)
    settings = load_settings()
    hold = appenv.edit_validated(settings, "HUMAN_IN_THE_LOOP", "true")
    assert hold.old == "false", "the app reads keys case-insensitively, so does ccops"
    assert env.read_bytes() == original.replace(b'"false"', b'"true"')
    appenv.edit_validated(settings, "HUMAN_IN_THE_LOOP", hold.old)
    assert env.read_bytes() == original


def test_a_failed_validation_puts_a_crlf_non_utf8_env_back_byte_for_byte(app):
    """A latin-1 byte the app cannot read: the edit is checked, fails, and every byte comes back."""
    env = app / ".env"
    original = ENV_CRLF.replace(b"LOG_LEVEL=INFO", b"CONTENT_PERSONALITY=caf\xe9 cr\xe8me\r\nLOG_LEVEL=INFO")
    env.write_bytes(original)
    env.chmod(0o640)
    with pytest.raises(appenv.ValidationFailed) as info:
        appenv.edit_validated(load_settings(), "HUMAN_IN_THE_LOOP", "true")
    assert "UnicodeDecodeError" in str(info.value) and "put back byte for byte" in str(info.value)
    assert env.read_bytes() == original
    assert oct(env.stat().st_mode)[-3:] == "640"


def test_a_key_list_wider_than_the_app_is_caught_by_the_apps_own_settings_and_rolled_back(app, monkeypatch):
    """A wrong app.env_keys lets ccops write ENABLE_PUBLISHING; the app's settings refuse it; nothing stays."""
    monkeypatch.setenv("CCOPS_APP_ENV_KEYS", ",".join([*ALL_KEYS, "ENABLE_PUBLISHING"]))
    env = app / ".env"
    before = env.read_bytes()
    with pytest.raises(appenv.ValidationFailed) as info:
        appenv.edit_validated(load_settings(), "ENABLE_PUBLISHING", "false")
    assert "Extra inputs are not permitted" in str(info.value)
    assert env.read_bytes() == before
    assert app_starts(app).returncode == 0, "the app still starts"


def test_a_value_the_app_refuses_is_rolled_back(app):
    with pytest.raises(appenv.ValidationFailed) as info:
        appenv.edit_validated(load_settings(), "HUMAN_IN_THE_LOOP", "paused")
    assert "valid boolean" in str(info.value)
    assert (app / ".env").read_bytes() == ENV_CRLF


def test_the_validation_command_is_a_setting_run_in_the_apps_folder(app, monkeypatch):
    marker = app / "validated-in"
    monkeypatch.setenv("CCOPS_APP_VALIDATE_COMMAND", f"pwd > {marker} && grep -q HUMAN_IN_THE_LOOP=true .env")
    change = appenv.edit_validated(load_settings(), "HUMAN_IN_THE_LOOP", "true")
    assert marker.read_text().strip() == str(app) and change.validated.startswith("/bin/sh -c")
    monkeypatch.setenv("CCOPS_APP_VALIDATE_COMMAND", "exit 3")
    with pytest.raises(appenv.ValidationFailed):
        appenv.edit_validated(load_settings(), "HUMAN_IN_THE_LOOP", None, strip_final_newline=True)
    assert b"HUMAN_IN_THE_LOOP=true" in (app / ".env").read_bytes()


def test_no_way_to_validate_means_no_edit(app):
    (app / "src" / "config" / "settings.py").unlink()
    before = snapshot(app / ".env")
    with pytest.raises(appenv.EnvFileError) as info:
        appenv.edit_validated(load_settings(), "HUMAN_IN_THE_LOOP", "true")
    assert "set app.validate_command" in str(info.value)
    assert snapshot(app / ".env") == before


def test_compose_validates_through_docker_compose_run(app, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("CCOPS_COMPOSE_APP_SERVICE", "app")
    monkeypatch.setenv("CCOPS_COMPOSE_PROJECT_DIR", str(app))
    command, cwd = appenv.validate_command(load_settings())
    assert command[:2] == ["docker", "compose"] and cwd == app
    assert command[command.index("run"):] == ["run", "--rm", "--no-deps", "app", "python", "-c",
                                               "import src.config.settings"]


def test_the_apps_python_is_its_virtualenvs(app):
    venv_python = app / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    os.symlink(sys.executable, venv_python)
    command, cwd = appenv.validate_command(load_settings())
    assert command == [str(venv_python), "-c", "import src.config.settings"] and cwd == app
