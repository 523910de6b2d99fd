"""Editing the app's .env: one value changes, every other byte stays, atomically, with a backup."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from ccops import appenv

ENV = (
    "# Content Creator settings\r\n"
    "DATABASE_URL=postgresql://contentcreator:pw@db:5432/content_creator\r\n"
    "\r\n"
    "export ANTHROPIC_API_KEY='sk-ant-xyz'   # rotated 2026-10\r\n"
    "ENABLE_MARKET_SCANNER = true  # scanner on\r\n"
    'ENABLE_PUBLISHING="true"\r\n'
    "ENABLE_ANALYTICS=true"  # no final newline
)
NOW = datetime(2026, 11, 28, 3, 0, 0)


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(ENV.encode())
    path.chmod(0o600)
    return path


def test_pausing_changes_exactly_one_value(env_file):
    change = appenv.set_flag(env_file, "ENABLE_MARKET_SCANNER", "false", now=NOW)
    assert change.changed and change.old == "true"
    assert env_file.read_bytes() == ENV.replace("ENABLE_MARKET_SCANNER = true", "ENABLE_MARKET_SCANNER = false").encode()
    assert change.backup.read_bytes() == ENV.encode()
    assert oct(env_file.stat().st_mode)[-3:] == "600"


def test_quotes_and_missing_final_newline_are_kept(env_file):
    appenv.set_flag(env_file, "ENABLE_PUBLISHING", "false", now=NOW)
    appenv.set_flag(env_file, "ENABLE_ANALYTICS", "false", now=NOW)
    text = env_file.read_bytes().decode()
    assert len(list(env_file.parent.glob(".env.bak-*"))) == 2, "each edit keeps its own backup"
    assert 'ENABLE_PUBLISHING="false"\r\n' in text
    assert text.endswith("ENABLE_ANALYTICS=false")


def test_setting_the_same_value_twice_is_idempotent(env_file):
    appenv.set_flag(env_file, "ENABLE_MARKET_SCANNER", "false", now=NOW)
    once = env_file.read_bytes()
    again = appenv.set_flag(env_file, "ENABLE_MARKET_SCANNER", "false", now=NOW)
    assert not again.changed and again.backup is None
    assert env_file.read_bytes() == once
    assert appenv.read_flag(env_file, "ENABLE_MARKET_SCANNER") == "false"


def test_a_missing_flag_is_appended_with_the_files_line_ending(env_file):
    appenv.set_flag(env_file, "ENABLE_IMAGE_GENERATION", "false", now=NOW)
    assert env_file.read_bytes() == (ENV + "\r\nENABLE_IMAGE_GENERATION=false\r\n").encode()


@pytest.mark.parametrize("bad", ["ENABLE_X=true\nthis is not a setting\n", "KEY='unterminated\n", "A=1\nA=2\n"])
def test_malformed_env_gives_one_line_and_stays_untouched(tmp_path, bad):
    path = tmp_path / ".env"
    path.write_text(bad)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    with pytest.raises(appenv.EnvFileError) as info:
        appenv.set_flag(path, "A", "3")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == [".env"], "no backup or temp file left behind"


def test_agent_names_map_to_their_flags():
    assert appenv.flag_for_agent("MarketScannerAgent") == "ENABLE_MARKET_SCANNER"
    assert appenv.flag_for_agent("PublishingAgent") == "ENABLE_PUBLISHING"
    assert appenv.flag_for_agent("NewsDigestAgent") == "ENABLE_NEWS_DIGEST"
    assert appenv.flag_for_agent("ENABLE_X") == "ENABLE_X"


def test_a_byte_that_is_not_utf8_is_read_and_carried_through_an_edit(tmp_path):
    path = tmp_path / ".env"
    original = b"CONTENT_PERSONALITY=caf\xe9 cr\xe8me\nTELEGRAM_BOT_TOKEN=tok\xff\nENABLE_ANALYTICS=true\n"
    path.write_bytes(original)
    assert appenv.read_flag(path, "ENABLE_ANALYTICS") == "true"
    change = appenv.set_flag(path, "ENABLE_ANALYTICS", "false", now=NOW)
    assert change.changed
    assert path.read_bytes() == original.replace(b"ENABLE_ANALYTICS=true", b"ENABLE_ANALYTICS=false")
    assert change.backup.read_bytes() == original
