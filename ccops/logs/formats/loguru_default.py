"""loguru's default format: what an app gets when it adds a file sink without a format.

    2025-11-23 15:23:43.123 | ERROR    | __main__:_error:42 - Missing package: Tweepy

Local time with milliseconds and no zone, the line number after the function. The files
are named as the app names them (the format changes what is in a file, not its name).
"""

from __future__ import annotations

from ccops.logs.files import APP_FILES
from ccops.logs.format import LogFormat
from ccops.logs.ratelimit import RULES

FORMAT = LogFormat(
    name="loguru_default",
    layouts=("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}",),
    files=APP_FILES,
    ratelimit=RULES,
    local_time=True,
    description="loguru's default format (milliseconds, name:function:line)",
)
