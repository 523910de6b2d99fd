"""The schedule as a crontab block: exact next runs, a crontab with other entries kept, idempotent install.

The crontab program is a small script speaking `crontab -l` / `crontab -`
against a file (a real process exchanging the real crontab text), so the
tests never touch the machine's own crontab. The rendered commands are run
with /bin/sh after cron's own %-unescaping, with `date` and ccops replaced by
scripts, so the first-Sunday guard is tested as the shell sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ccops import schedule
from ccops.cli import main
from ccops.core.settings import ConfigError, load_settings

FAKE_CRONTAB = """#!/bin/sh
store="{store}"
case "$1" in
  -l) if [ -f "$store" ]; then cat "$store"; else echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$store.tmp" && mv "$store.tmp" "$store" ;;
  *) echo "usage: crontab [-l | -]" >&2; exit 1 ;;
esac
"""
USER_CRONTAB = """SHELL=/bin/bash
MAILTO=ops@example.org
# rotate the app's own files
15 3 * * * /usr/local/bin/rotate-things --keep 7
@reboot /usr/local/bin/start-tunnel
"""


@pytest.fixture
def crontab(ccops_env, monkeypatch) -> Path:
    store = ccops_env / "crontab.txt"
    script = ccops_env / "fake-crontab"
    script.write_text(FAKE_CRONTAB.format(store=store))
    script.chmod(0o755)
    monkeypatch.setenv(schedule.CRONTAB_ENV, str(script))
    return store


def configure(root: Path, text: str = "") -> None:
    (root / "ccops.toml").write_text(text)


def test_next_runs_of_every_entry_from_a_fixed_instant(ccops_env):
    configure(ccops_env, '[schedule]\ntimezone = "Europe/Amsterdam"\n')
    cfg = schedule.load(load_settings())
    after = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # Saturday 09:00 in Amsterdam
    got = {e.name: when.isoformat() for e, when in schedule.next_runs(cfg.entries, after, cfg.zone())}
    assert got == {
        "health": "2026-11-28T10:00:00+01:00",
        "alerts": "2026-11-28T09:05:00+01:00",
        "backup": "2026-11-29T02:00:00+01:00",
        "daily-morning": "2026-11-29T07:00:00+01:00",
        "daily-evening": "2026-11-28T19:00:00+01:00",
        "weekly": "2026-11-29T06:00:00+01:00",  # Sunday
        "monthly": "2026-12-06T05:00:00+01:00",  # December's first Sunday (the 1st is a Tuesday)
        "quarterly": "2027-01-04T04:00:00+01:00",  # January's first Monday (the 1st is a Friday)
        "digest": "2026-11-29T08:00:00+01:00",
    }


def test_next_runs_first_sunday_on_the_first_first_monday_and_dst(ccops_env):
    configure(ccops_env, '[schedule]\ntimezone = "UTC"\n')
    cfg = schedule.load(load_settings())
    runs = schedule.next_runs(cfg.entries, datetime(2026, 1, 31, 12, 0, tzinfo=UTC), cfg.zone())
    by_name = {e.name: when for e, when in runs}
    assert by_name["monthly"] == datetime(2026, 2, 1, 5, 0, tzinfo=ZoneInfo("UTC"))  # Sunday the 1st
    assert by_name["quarterly"] == datetime(2026, 4, 6, 4, 0, tzinfo=ZoneInfo("UTC"))  # the 1st is a Wednesday
    amsterdam = ZoneInfo("Europe/Amsterdam")
    morning = next(e for e in cfg.entries if e.name == "daily-morning")
    when = schedule.next_run(morning, datetime(2026, 3, 28, 12, 0, tzinfo=UTC), amsterdam)
    assert when.isoformat() == "2026-03-29T07:00:00+02:00", "07:00 local on the day summer time starts"


def test_install_keeps_other_entries_is_idempotent_and_remove_restores(ccops_env, crontab, capsys):
    configure(ccops_env, '[schedule]\ntimezone = "Europe/Amsterdam"\n')
    crontab.write_text(USER_CRONTAB)
    assert main(["schedule", "install", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"action": "installed", "entries": 9, "other_lines": 5}
    installed = crontab.read_text()
    assert installed.startswith(USER_CRONTAB + "\n" + schedule.BEGIN + "\n"), "other entries kept, block at the end"
    assert installed.endswith(schedule.END + "\n")
    assert "CRON_TZ=Europe/Amsterdam\n" in installed
    assert (ccops_env / "home" / "cron").is_dir(), "the log dir exists before cron appends to it"
    when = schedule.installed_at(load_settings())
    assert when and abs((datetime.now(UTC).replace(tzinfo=None) - when).total_seconds()) < 60, \
        "the dead man's switch counts from the install"
    lines = installed.splitlines()
    config = ccops_env / "ccops.toml"
    monthly = next(line for line in lines if line.startswith("0 5 1-7 * * "))
    assert monthly.startswith('0 5 1-7 * * [ "$(TZ=Europe/Amsterdam date +\\%u)" = 7 ] && cd ')
    assert f"--config {config} run monthly; }} >> {ccops_env}/home/cron/monthly.log 2>&1" in monthly
    assert "0 4 1-7 1,4,7,10 * " in installed and "*/5 * * * * " in installed
    assert not any("%" in line.replace("\\%", "") for line in lines), "every % escaped for cron"

    assert main(["schedule", "install", "--yes"]) == 0
    assert "already installed, unchanged" in capsys.readouterr().out
    assert crontab.read_text() == installed, "idempotent"

    configure(ccops_env, '[schedule]\ntimezone = "Europe/Amsterdam"\n[schedule.jobs.daily-morning]\ncron = "30 6 * * *"\n')
    assert main(["schedule", "install", "--yes"]) == 0
    changed = crontab.read_text()
    assert changed.count(schedule.BEGIN) == 1 and "\n30 6 * * * " in changed and "\n0 7 * * * " not in changed

    # the user adds an entry after our block: a reinstall moves the block below it, keeping it
    crontab.write_text(changed + "0 12 * * * /usr/local/bin/noon\n")
    assert main(["schedule", "install", "--yes"]) == 0
    assert crontab.read_text() == USER_CRONTAB + "\n0 12 * * * /usr/local/bin/noon\n\n" + \
        schedule.installed_block(changed)

    assert main(["schedule", "remove", "--yes"]) == 0
    assert crontab.read_text() == USER_CRONTAB + "\n0 12 * * * /usr/local/bin/noon\n"
    assert main(["schedule", "remove", "--yes"]) == 0
    assert "no ccops block to remove" in capsys.readouterr().out


def test_install_into_an_empty_crontab_and_without_yes(ccops_env, crontab, capsys):
    configure(ccops_env)
    assert main(["schedule", "install"]) == 64, "no terminal, no --yes: nothing changes"
    assert "not confirmed" in capsys.readouterr().err
    assert not crontab.exists()
    assert main(["schedule", "install", "--yes"]) == 0
    text = crontab.read_text()
    assert text.startswith(schedule.BEGIN) and "CRON_TZ" not in text
    assert main(["schedule", "remove", "--yes"]) == 0
    assert crontab.read_text() == ""


def test_show_tells_whether_the_crontab_matches(ccops_env, crontab, capsys):
    configure(ccops_env, '[schedule]\ntimezone = "Europe/Amsterdam"\n')
    assert main(["schedule", "show", "--after", "2026-11-28T08:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("schedule (Europe/Amsterdam): not installed")
    assert "monthly        next 2026-12-06T05:00:00+01:00  0 5 1-7 * * (Sundays only)" in out
    main(["schedule", "install", "--yes"])
    capsys.readouterr()
    main(["schedule", "show", "--json"])
    assert json.loads(capsys.readouterr().out)["status"] == "installed"
    configure(ccops_env, '[schedule]\ntimezone = "UTC"\n')
    main(["schedule", "show"])
    assert "installed but differs: run `ccops schedule install`" in capsys.readouterr().out


def test_a_half_removed_block_is_refused_not_guessed(ccops_env, crontab, capsys):
    configure(ccops_env)
    crontab.write_text(USER_CRONTAB + schedule.BEGIN + "\n0 * * * * something\n")
    assert main(["schedule", "install", "--yes"]) == 3
    assert "markers are not one BEGIN followed by one END" in capsys.readouterr().err
    assert crontab.read_text() == USER_CRONTAB + schedule.BEGIN + "\n0 * * * * something\n"


def test_rendered_commands_run_under_sh_and_the_guard_lets_only_sunday_through(ccops_env, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "date").write_text('#!/bin/sh\n[ "$1" = "+%u" ] && { echo "$FAKE_WEEKDAY"; exit 0; }\n'
                                  'echo 2026-12-06T04:00:00Z\n')
    fake_ccops = bin_dir / "ccops"
    fake_ccops.write_text('#!/bin/sh\necho "ccops called with: $*"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    configure(ccops_env, f'[schedule]\nccops = "{fake_ccops}"\ntimezone = "Europe/Amsterdam"\n')
    cfg = schedule.load(load_settings())
    block = schedule.render_block(cfg.entries, cfg.timezone)
    commands = {}
    for line in block.splitlines():
        if line and not line.startswith("#") and "=" not in line.split()[0]:
            fields = line.split(" ", 5)
            commands[fields[5]] = line
    assert len(commands) == 9
    cfg.log_dir.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def cron_runs(entry_name: str, weekday: str) -> str:
        line = next(v for k, v in commands.items() if f"/{entry_name}.log" in k)
        command = line.split(" ", 5)[5].replace("\\%", "%")  # what cron hands to /bin/sh
        subprocess.run(["/bin/sh", "-c", command], env={**env, "FAKE_WEEKDAY": weekday}, timeout=30)
        log = cfg.log_dir / f"{entry_name}.log"
        return log.read_text() if log.exists() else ""

    assert cron_runs("monthly", "3") == "", "a Wednesday among days 1-7: the guard stops it"
    assert cron_runs("monthly", "7") == ("--- 2026-12-06T04:00:00Z monthly\n"
                                         f"ccops called with: --config {ccops_env / 'ccops.toml'} run monthly\n")
    assert cron_runs("daily-morning", "3").endswith("run daily -p part morning\n")
    for command in commands:
        assert subprocess.run(["/bin/sh", "-n", "-c", command.replace("\\%", "%")]).returncode == 0


def test_jobs_can_move_stop_and_be_added(ccops_env):
    configure(ccops_env, """
[schedule.jobs.daily-evening]
enabled = false

[schedule.jobs.weekly]
cron = "0 5 * * 6"
description = "Saturday instead"

[schedule.jobs.logs-summary]
cron = "55 23 * * *"
args = ["logs", "summary", "--json"]
""")
    settings = load_settings()
    cfg = schedule.load(settings)
    names = [e.name for e in cfg.enabled_entries]
    assert "daily-evening" not in names and names[-1] == "logs-summary"
    block = schedule.render_block(cfg.entries, cfg.timezone)
    assert "\n0 5 * * 6 " in block and "run daily -p part evening" not in block
    assert "logs summary --json" in block
    watched = {e.job: e.cadence_hours for e in schedule.watched_jobs(settings)}
    assert watched == {"daily:morning": 24, "weekly": 168, "monthly": 840, "quarterly": 2352}


@pytest.mark.parametrize("text, expected", [
    ('[schedule]\ntimezone = "Mars/Olympus"', "schedule.timezone: expected an IANA time zone name such as Europe/Amsterdam, got 'Mars/Olympus'"),
    ('[schedule.jobs.weekly]\ncron = "0 6 * * 0 *"', "schedule.jobs.weekly.cron: expected five cron fields"),
    ('[schedule.jobs.weekly]\ncron = "61 6 * * 0"', "schedule.jobs.weekly.cron: expected five cron fields"),
    ('[schedule.jobs.monthly]\nweekday = 8', "schedule.jobs.monthly.weekday: expected 1 (Monday) to 7 (Sunday)"),
    ('[schedule.jobs.mine]\ncron = "0 1 * * *"', "schedule.jobs.mine: a job of your own needs cron and args"),
    ('[schedule.jobs.weekly]\nwhen = "sunday"', "schedule.jobs.weekly.when: unknown setting"),
    ('[schedule]\ncrontab = "x"', "schedule.crontab: unknown setting"),
])
def test_bad_schedule_settings_name_key_and_file(ccops_env, text, expected):
    configure(ccops_env, text)
    with pytest.raises(ConfigError) as err:
        schedule.load(load_settings())
    assert str(err.value).startswith(f"{ccops_env / 'ccops.toml'}: {expected}")
    assert "\n" not in str(err.value)


def test_merge_and_remove_are_pure_and_exact():
    block = f"{schedule.BEGIN}\n0 * * * * x\n{schedule.END}\n"
    assert schedule.merge_into("", block) == block
    assert schedule.merge_into("0 1 * * * a", block) == f"0 1 * * * a\n\n{block}"
    once = schedule.merge_into(USER_CRONTAB, block)
    assert schedule.merge_into(once, block) == once
    assert schedule.remove_from(once) == USER_CRONTAB
    assert schedule.remove_from(USER_CRONTAB) == USER_CRONTAB
    assert schedule.cron_escape('date +%u') == 'date +\\%u'
