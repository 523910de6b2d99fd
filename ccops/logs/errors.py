"""The one error of the log reader, in a module of its own so every part can raise it."""

from __future__ import annotations

from ccops.core.errors import CcopsError


class LogSourceError(CcopsError):
    """The logs cannot be read at all (no log dir, no docker, an unknown setting); the message is one line."""
