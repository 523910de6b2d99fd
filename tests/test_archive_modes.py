"""Reports are private: archive files 0600 and folders 0700, ccops' home 0700 (issue 12, item 4).

With a reviewers' group (`archive.group`, Settings.archive_group) the archive
is 0640 / 0750 and owned by that group. The run is real (papermill, a kernel)
and runs under umask 000, so every mode checked is one ccops set, not one the
umask happened to give.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from ccops import archive
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.test_runner import NOTEBOOKS, _env


def modes(root: Path) -> dict[str, str]:
    """Every file and folder under root (root included) -> its mode, e.g. '0o600'."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[path.relative_to(root).as_posix()] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def kinds(root: Path, file_mode: str, dir_mode: str) -> dict[str, str]:
    return {rel: (dir_mode if (root / rel).is_dir() else file_mode) for rel in modes(root)}


@pytest.fixture
def loose_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def reviewers_group() -> grp.struct_group:
    mine = os.getegid()
    for group in grp.getgrall():
        if group.gr_gid not in (0, mine):
            return group
    pytest.skip("no second group on this host to hand the archive to")


def test_every_file_a_run_writes_is_private(ccops_env, monkeypatch, loose_umask):
    _env(monkeypatch, ccops_env)
    result = runner.run_runbook(load_settings(), "ok", [], timeout=120, runbooks_dir=NOTEBOOKS)
    outputs, home = ccops_env / "outputs", ccops_env / "home"
    written = modes(outputs)
    assert {"index.json", "index.html", result.record["paths"]["json"], result.record["paths"]["ipynb"],
            result.record["paths"]["html"], result.record["paths"]["report_html"]} <= set(written)
    assert written == kinds(outputs, "0o600", "0o700")
    state = modes(home)
    assert "alerts/state.json" in state and "locks/ok.lock" in state
    assert state == kinds(home, "0o600", "0o700"), "ccops' home is 0700 and all in it private"


def test_an_old_world_readable_archive_turns_private_where_it_is_written(tmp_path):
    root = tmp_path / "outputs"
    folder = root / "daily" / "2026" / "11"
    folder.mkdir(parents=True)
    for path in (root, root / "daily", root / "daily" / "2026", folder):
        path.chmod(0o755)
    archive.write_files([(folder / "a.json", "{}"), (folder / "a.html", "<p>")], archive.Permissions(), top=root)
    archive.rebuild_index(root)
    assert modes(root) == kinds(root, "0o600", "0o700")


def test_a_reviewers_group_gets_0640_and_0750_and_keeps_them_on_later_index_rebuilds(tmp_path, loose_umask):
    group = reviewers_group()
    perms = archive.Permissions(0o640, 0o750, group.gr_gid)
    root = tmp_path / "outputs"
    stem = root / "daily" / "2026" / "11" / "20261120T180000Z-daily"
    archive.write_files([(stem.with_suffix(".ipynb"), "{}"),
                         (stem.with_suffix(".json"), '{"runbook": "daily", "start": "2026-11-20T18:00:00Z"}')],
                        perms, top=root)
    archive.rebuild_index(root, perms)
    assert modes(root) == kinds(root, "0o640", "0o750")
    assert {p.stat().st_gid for p in [root, *root.rglob("*")]} == {group.gr_gid}
    # `ccops reports index` and retention know no settings: the archive keeps its group
    (root / "index.json").unlink()
    archive.rebuild_index(root)
    assert modes(root) == kinds(root, "0o640", "0o750")
    assert (root / "index.json").stat().st_gid == group.gr_gid


def test_the_group_setting_is_resolved_before_anything_runs(monkeypatch):
    class Settings:
        archive_group = "no-such-group-ccops"

    with pytest.raises(Exception, match="archive.group: no group named 'no-such-group-ccops'"):
        archive.Permissions.for_settings(Settings())
    Settings.archive_group = reviewers_group().gr_name
    assert archive.Permissions.for_settings(Settings()) == archive.Permissions(0o640, 0o750,
                                                                               reviewers_group().gr_gid)
    assert archive.Permissions.for_settings(object()) == archive.Permissions(0o600, 0o700, None)


def test_a_run_with_archive_group_set_in_the_environment(ccops_env, monkeypatch, loose_umask):
    group = reviewers_group()
    _env(monkeypatch, ccops_env)
    monkeypatch.setenv("CCOPS_ARCHIVE_GROUP", group.gr_name)
    settings = load_settings()
    if not hasattr(settings, "archive_group"):
        pytest.skip("Settings.archive_group (CCOPS_ARCHIVE_GROUP) is not in ccops.core.settings yet")
    runner.run_runbook(settings, "ok", [], timeout=120, runbooks_dir=NOTEBOOKS)
    outputs = ccops_env / "outputs"
    assert modes(outputs) == kinds(outputs, "0o640", "0o750")
    assert {p.stat().st_gid for p in [outputs, *outputs.rglob("*")]} == {group.gr_gid}
    assert modes(ccops_env / "home")["."] == "0o700", "the home stays private whatever the archive's group"
