"""Editing the app's .env: one value changes, every other byte stays, atomically, with a backup.

The keys are the app's own (FACTS.md); the key check and the validation are pinned in
tests/conformance/test_app_env.py.
"""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from ccops.deploy import appenv

ENV = (
    "# Content Creator settings\r\n"
    "DATABASE_URL=postgresql://contentcreator:pw@db:5432/content_creator\r\n"
    "\r\n"
    "export ANTHROPIC_API_KEY='sk-ant-xyz'   # rotated 2026-10\r\n"
    "HUMAN_IN_THE_LOOP = true  # scanner on\r\n"
    'CONTENT_PERSONALITY="true"\r\n'
    "AB_TESTING_MAX_ACTIVE_TESTS=true"  # no final newline
)
NOW = datetime(2026, 11, 28, 3, 0, 0)


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(ENV.encode())
    path.chmod(0o600)
    return path


def test_pausing_changes_exactly_one_value(env_file):
    change = appenv.set_flag(env_file, "HUMAN_IN_THE_LOOP", "false", now=NOW)
    assert change.changed and change.old == "true"
    assert env_file.read_bytes() == ENV.replace("HUMAN_IN_THE_LOOP = true", "HUMAN_IN_THE_LOOP = false").encode()
    assert change.backup.read_bytes() == ENV.encode()
    assert oct(env_file.stat().st_mode)[-3:] == "600"


def test_quotes_and_missing_final_newline_are_kept(env_file):
    appenv.set_flag(env_file, "CONTENT_PERSONALITY", "false", now=NOW)
    appenv.set_flag(env_file, "AB_TESTING_MAX_ACTIVE_TESTS", "false", now=NOW)
    text = env_file.read_bytes().decode()
    assert len(list(env_file.parent.glob(".env.bak-*"))) == 2, "each edit keeps its own backup"
    assert 'CONTENT_PERSONALITY="false"\r\n' in text
    assert text.endswith("AB_TESTING_MAX_ACTIVE_TESTS=false")


def test_setting_the_same_value_twice_is_idempotent(env_file):
    appenv.set_flag(env_file, "HUMAN_IN_THE_LOOP", "false", now=NOW)
    once = env_file.read_bytes()
    again = appenv.set_flag(env_file, "HUMAN_IN_THE_LOOP", "false", now=NOW)
    assert not again.changed and again.backup is None
    assert env_file.read_bytes() == once
    assert appenv.read_flag(env_file, "HUMAN_IN_THE_LOOP") == "false"


def test_a_missing_flag_is_appended_with_the_files_line_ending(env_file):
    appenv.set_flag(env_file, "GOOGLE_API_KEY_BACKUP", "false", now=NOW)
    assert env_file.read_bytes() == (ENV + "\r\nGOOGLE_API_KEY_BACKUP=false\r\n").encode()


@pytest.mark.parametrize("bad", ["LOG_LEVEL=true\nthis is not a setting\n", "KEY='unterminated\n", "A=1\nA=2\n"])
def test_malformed_env_gives_one_line_and_stays_untouched(tmp_path, bad):
    path = tmp_path / ".env"
    path.write_text(bad)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    with pytest.raises(appenv.EnvFileError) as info:
        appenv.set_flag(path, "A", "3")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert [p.name for p in tmp_path.iterdir()] == [".env"], "no backup or temp file left behind"


def test_remove_key_gives_back_the_file_it_was_appended_to(env_file):
    change = appenv.set_flag(env_file, "GOOGLE_API_KEY_BACKUP", "x", now=NOW)
    assert change.added_separator, "the file had no final line ending"
    removed = appenv.remove_key(env_file, "GOOGLE_API_KEY_BACKUP", strip_final_newline=True, now=NOW)
    assert removed.changed and removed.old == "x" and env_file.read_bytes() == ENV.encode()
    assert not appenv.remove_key(env_file, "GOOGLE_API_KEY_BACKUP").changed


def test_keys_are_matched_as_the_app_matches_them_case_insensitively(env_file):
    assert appenv.read_flag(env_file, "human_in_the_loop") == "true"
    appenv.set_flag(env_file, "human_in_the_loop", "false", now=NOW)
    assert "HUMAN_IN_THE_LOOP = false  # scanner on" in env_file.read_text(), "the line keeps its own spelling"


def test_a_per_agent_key_comes_only_from_a_template():
    assert appenv.agent_key("ENABLE_{AGENT}", "MarketScannerAgent") == "ENABLE_MARKET_SCANNER"
    assert appenv.agent_key("PAUSE_{agent}", "FeedbackLoopCoordinator") == "PAUSE_FeedbackLoopCoordinator"


def test_a_byte_that_is_not_utf8_is_read_and_carried_through_an_edit(tmp_path):
    path = tmp_path / ".env"
    original = b"CONTENT_PERSONALITY=caf\xe9 cr\xe8me\nTELEGRAM_BOT_TOKEN=tok\xff\nAB_TESTING_MAX_ACTIVE_TESTS=true\n"
    path.write_bytes(original)
    assert appenv.read_flag(path, "AB_TESTING_MAX_ACTIVE_TESTS") == "true"
    change = appenv.set_flag(path, "AB_TESTING_MAX_ACTIVE_TESTS", "false", now=NOW)
    assert change.changed
    assert path.read_bytes() == original.replace(b"AB_TESTING_MAX_ACTIVE_TESTS=true", b"AB_TESTING_MAX_ACTIVE_TESTS=false")
    assert change.backup.read_bytes() == original
