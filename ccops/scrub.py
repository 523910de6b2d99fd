"""Secret scrubbing for everything the archive keeps.

An executed notebook is a transcript: whatever a cell printed (a connection
string in a traceback, a token in a request log) ends up in the .ipynb, its
HTML and possibly the run record. Reviewers read these files and they may be
copied around, so every secret ccops knows is replaced by `***` before any of
them is written. A secret can appear in several spellings (raw, URL-encoded
inside a URL, JSON- or HTML-escaped), so each is searched for in all of them;
a generic `scheme://user:password@` mask catches passwords ccops was never
told about.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"

# scheme://user:password@ -- the password part is masked whatever it is.
# Quotes, angle brackets and backslashes end a match so JSON/HTML structure is never cut.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>\\]*:)(?P<pw>[^\s@/\"'<>\\]+)(?=@)")


def variants(secret: str) -> set[str]:
    """The spellings under which a secret may show up in a notebook, its HTML or a JSON file."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms |= {json.dumps(f, ensure_ascii=False)[1:-1] for f in list(forms)}
    forms |= {json.dumps(f)[1:-1] for f in list(forms)}
    forms |= {html.escape(f, quote=True) for f in list(forms)} | {html.escape(f, quote=False) for f in list(forms)}
    return {f for f in forms if f}


def mask_url_passwords(text: str) -> str:
    """Mask the password of every `scheme://user:password@host` in text."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK if m.group("pw") != MASK else m.group(0), text)


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """text with every known secret (in every spelling) and every URL password replaced by ***."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= variants(secret)
    # longest first, so a secret containing another is replaced whole
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return mask_url_passwords(text)


class Scrubber:
    """The secrets of one run, applied to text, to JSON-like data and to notebooks."""

    def __init__(self, settings: Any = None, extra: Iterable[str] = ()) -> None:
        secrets = list(settings.secret_values()) if settings is not None else []
        secrets += [s for s in extra if s and len(s) >= 4]
        self.secrets = sorted(set(secrets), key=len, reverse=True)
        forms: set[str] = set()
        for secret in self.secrets:
            forms |= variants(secret)
        self._forms = sorted(forms, key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return mask_url_passwords(text)

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data (dicts, lists, strings) with every string scrubbed, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def json_dumps(self, value: Any, **kwargs: Any) -> str:
        """Serialise scrubbed data; the text pass afterwards catches a secret split across escapes."""
        kwargs.setdefault("ensure_ascii", False)
        return self.text(json.dumps(self.data(value), **kwargs))

    def leaks(self, text: str) -> list[str]:
        """Which known secrets still occur in text (for tests and a last check before writing)."""
        return [s for s in self.secrets if s in text]
