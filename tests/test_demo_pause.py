"""Issue 13's promise on the demo: a confirmed rate-limit pause leaves an app that still starts.

The demo app validates its `.env` the way the real app's pydantic settings do (an unknown key and it
crashes at start), so this is the check that broke production: pause at a moment inside the demo's 429
burst, confirmed, then stop and start the app through its own scripts; it must come up. The resume
then gives the `.env` back byte for byte.
"""

from __future__ import annotations

import pytest

from ccops.core.settings import load_settings
from ccops.demo import backend
from ccops.runbook import runner

# the demo's last refused post is at 13:47:36 UTC on its as_of day; five minutes later the limit holds
DURING_THE_BURST = "2026-11-20T13:52:00Z"


def by_check(record: dict) -> dict[str, dict]:
    return {f["check"]: f for f in record["findings"]}


@pytest.mark.slow
def test_a_confirmed_pause_on_the_demo_leaves_an_app_that_starts(demo_env):
    settings = load_settings()
    env_file = settings.require("app_env_file")
    before = env_file.read_bytes()
    try:
        paused = runner.run_runbook(settings, "emergency/api_rate_limit",
                                    [["as_of", DURING_THE_BURST], ["dry_run", "False"], ["confirm", "True"]]).record
        found = by_check(paused)
        assert found["rate_limit.events"]["value"] > 0
        assert found["action.pause"]["status"] == "OK", found["action.pause"]["summary"]
        assert b"HUMAN_IN_THE_LOOP=true" in env_file.read_bytes() and b"ENABLE_" not in env_file.read_bytes()
        backend.stop_app(settings)
        assert backend.start_app(settings), "the app starts with the paused .env"
    finally:
        resumed = runner.run_runbook(settings, "emergency/api_rate_limit",
                                     [["as_of", DURING_THE_BURST], ["phase", "resume"], ["dry_run", "False"],
                                      ["confirm", "True"]]).record
        backend.stop_app(settings)
        backend.start_app(settings)
    assert by_check(resumed)["action.resume"]["status"] == "OK"
    assert env_file.read_bytes() == before, "the resume gives back every byte"
