"""The Content Creator's own loguru format (FACTS.md, Logs).

    2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy

Local time of the host with no zone, files `content_creator_YYYY-MM-DD.log` rotated at
midnight into `.log.zip`. Lines in loguru's default layout (milliseconds, the line number)
are read too: they are what a sink the app adds without a format writes into the same
files, and the two layouts differ at position 19 (" " against "."), so no line is both.
"""

from __future__ import annotations

from ccops.logs.files import APP_FILES
from ccops.logs.format import LogFormat
from ccops.logs.ratelimit import RULES

FORMAT = LogFormat(
    name="contentcreator",
    layouts=(
        "{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function} - {message}",
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}",
    ),
    files=APP_FILES,
    ratelimit=RULES,
    local_time=True,
    description="the app's loguru format (seconds, name:function), loguru's default layout read too",
)
