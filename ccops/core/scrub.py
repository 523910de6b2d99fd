"""Secret scrubbing for everything the archive keeps.

An executed notebook is a transcript: whatever a cell printed (a connection
string in a traceback, a token in a request log, a slow `ALTER ROLE ... PASSWORD`
from pg_stat_statements) ends up in the .ipynb, its HTML and possibly the run
record. Reviewers read these files and they may be copied around, so every
secret is replaced by `***` before any of them is written. Two kinds:

- secrets ccops knows (database URL passwords, API keys and webhook URLs named
  in the settings, the values of secret-named keys in the app's `.env`). One can
  appear in several spellings (raw, URL-encoded inside a URL, JSON- or
  HTML-escaped), so each is searched for in all of them; a known webhook URL's
  path tokens are searched for on their own too.
- secrets recognised by their form, whatever their value: the password of
  `scheme://user:password@`, keyword connection strings (`password=...`,
  quoted or not), SQL `[ENCRYPTED] PASSWORD '...'`, `Authorization:` headers and
  bearer tokens, webhook URLs (Slack, Discord, Telegram bot URLs), well-known
  token prefixes, and `NAME=value` where NAME ends like a secret.

Nothing here raises on odd input: a value with bytes that are not UTF-8 is
searched for by its readable pieces, and a broken `.env` is read tolerantly.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

from ccops.core.objectstore import CREDENTIAL_ENVS

MASK = "***"
QUERY_TEXT_LIMIT = 200  # characters of a query text (pg_stat_statements, pg_stat_activity) a report shows
MIN_SECRET = 4  # shorter values are not searched for: masking "abc" everywhere would hide the report
MIN_FRAGMENT = 6  # readable pieces of a value that is not valid UTF-8

# scheme://user:password@ -- the password part is masked whatever it is.
# Quotes, angle brackets and backslashes end a match so JSON/HTML structure is never cut.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"'<>\\]*:)(?P<pw>[^\s@/\"'<>\\]+)(?=@)")

# A quoted value in any of the spellings a notebook, its JSON or its HTML gives it. A literal cut
# short (a query text truncated mid-password) still counts: it runs to the end of the line or tag.
_QUOTED = (
    r"(?:E?(?:'(?:[^'\\\n]|\\.|'')*'"  # SQL / libpq single quotes ('' and \' inside)
    r"|\"(?:[^\"\\\n]|\\.)*\""  # double quotes
    r"|\\\"(?:(?!\\\")[^\n])*\\\""  # JSON-escaped double quotes
    r"|\\'(?:(?!\\')[^\n])*\\'"  # backslash-escaped single quotes
    r"|&(?:#39|#x27|quot|#34|#x22|apos);(?:(?!&(?:#39|#x27|quot|#34|#x22|apos);)[^\n<])*&(?:#39|#x27|quot|#34|#x22|apos);"
    r"|(?P<dollar>\$[A-Za-z_0-9]*\$)(?:(?!(?P=dollar))[\s\S])*(?P=dollar)"  # $$...$$, $tag$...$tag$
    r"|'[^'\n<]*"  # unterminated (truncated) single-quoted literal
    r"|&(?:#39|#x27);[^\n<]*))"
)
# An unquoted value: up to white space, a quote, a tag or backslash; `&` ends it only where a next
# `key=` or an HTML entity other than &amp; starts.
_BARE = r"(?:[^\s'\"<>\\&]|&amp;(?![A-Za-z_][\w.-]*=)|&(?![A-Za-z_][\w.-]*=|#?\w+;))+"

# Names that hold a secret when they end a `NAME=value` (env files, keyword DSNs, query strings, logs).
_SECRET_KEY = (
    r"(?:(?:pg|db|client|access|refresh|auth|api|bot|session|private|secret|webhook)?"
    r"(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"client[_-]?secret|auth[_-]?key|webhook[_-]?url)(?:_backup|_old|_new|_\d+)?)"
)
_ASSIGNMENT = re.compile(
    rf"(?i)(?P<head>(?<![A-Za-z0-9]){_SECRET_KEY}\s*=\s*)(?P<value>{_QUOTED}|{_BARE})"
)
# the same inside a URL (a keyword DSN that went through quote(): password%3Dvalue%20user%3D...)
_ENCODED_ASSIGNMENT = re.compile(
    rf"(?i)(?P<head>(?:(?<![A-Za-z0-9])|(?<=%[0-9A-Fa-f]{{2}})){_SECRET_KEY}(?:%3D|%253D))"
    r"(?P<value>(?:[^\s'\"<>\\&%/?#]|%(?!20|26|2520|2526|3B)[0-9A-Fa-f]{2})+)"
)
# "password": "...", 'api_key': '...'  (JSON, Python reprs, YAML with quoted keys)
_QUOTED_KEY = re.compile(
    rf"(?i)(?P<head>(?P<q>\\?[\"']|&(?:quot|#39|#x27|#34);)(?:[\w.-]*?[_-])?{_SECRET_KEY}(?P=q)\s*:\s*)"
    rf"(?P<value>{_QUOTED})"
)
# SQL: CREATE/ALTER ROLE|USER ... [ENCRYPTED|UNENCRYPTED] PASSWORD 'literal'
_SQL_PASSWORD = re.compile(rf"(?i)(?P<head>\bPASSWORD\s+)(?P<value>{_QUOTED})")
# Authorization / Proxy-Authorization and API-key headers: everything after the scheme word
_AUTH_HEADER = re.compile(
    r"(?i)(?P<head>\b(?:proxy-)?authorization(?:\\?[\"']|&(?:quot|#39|#x27);)?\s*[:=]\s*(?:\\?[\"']|&(?:quot|#39|#x27);)?"
    r"(?:(?:bearer|basic|token|digest|bot|apikey|key)\s+)?)(?P<value>(?!\*\*\*)[^\s\"'<>\\,;&]+)"
)
_KEY_HEADER = re.compile(
    r"(?i)(?P<head>\b(?:x-api-key|api-key|x-auth-token|x-access-token|private-token|x-goog-api-key)"
    r"(?:\\?[\"']|&(?:quot|#39|#x27);)?\s*:\s*(?:\\?[\"']|&(?:quot|#39|#x27);)?)(?P<value>(?!\*\*\*)[^\s\"'<>\\,;&]+)"
)
# "Bearer <token>" anywhere: a token has a digit or is long, so prose ("the bearer token") stays.
_BEARER = re.compile(
    r"(?P<head>\b[Bb]earer\s+)(?P<value>(?=[A-Za-z0-9\-._~+/]*[0-9])[A-Za-z0-9\-._~+/]{8,}=*|[A-Za-z0-9\-._~+/]{20,}=*)"
)
# Webhook URLs whose path is the credential.
_WEBHOOK_PATHS = re.compile(
    r"(?i)(?P<head>\bhttps?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/"
    r"|(?:[\w-]+\.)?discord(?:app)?\.com/api(?:/v\d+)?/webhooks/"
    r"|api\.telegram\.org/(?:file/)?bot"
    r"|outlook\.office(?:365)?\.com/webhook/|[\w-]+\.webhook\.office\.com/webhookb2/"
    r"|chat\.googleapis\.com/v1/spaces/))"
    r"(?P<value>(?!\*\*\*)[^\s\"'<>\\]+)"
)
# Well-known token formats, masked wherever they stand.
_TOKEN_FORMS = re.compile(
    r"\b(?:xox[abposrce]-[A-Za-z0-9-]{10,}"  # Slack
    r"|xapp-[A-Za-z0-9-]{10,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}"  # Stripe
    r"|whsec_[A-Za-z0-9]{10,}"  # Stripe webhook secret
    r"|sk-ant-[A-Za-z0-9_-]{10,}"  # Anthropic
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{20,}"  # OpenAI
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|AIza[0-9A-Za-z_-]{30,}"  # Google API key
    r"|\d{8,10}:AA[A-Za-z0-9_-]{30,})"  # Telegram bot token
)


def _mask_value(match: re.Match[str]) -> str:
    head, value = match.group("head"), match.group("value")
    if value[:1] == "E" and value[1:2] in ("'", "&", "\\"):  # E'...' escape string literal
        head, value = head + "E", value[1:]
    # keep the quotes a quoted value had, so SQL, JSON and HTML stay well-formed
    for opener in ("'", '\\"', "\\'", '"', "&#39;", "&#x27;", "&quot;", "&#34;", "&#x22;", "&apos;"):
        if value.startswith(opener):
            end = opener if len(value) > len(opener) and value.endswith(opener) else ""
            return head + opener + MASK + end
    dollar = re.match(r"\$[A-Za-z_0-9]*\$", value)
    if dollar and len(value) > len(dollar.group(0)):
        return head + dollar.group(0) + MASK + dollar.group(0)
    return head + MASK


def variants(secret: str) -> set[str]:
    """The spellings under which a secret may show up in a notebook, its HTML or a JSON file."""
    forms = {secret}
    for encode in (lambda s: quote(s, safe="", errors="surrogateescape"),
                   lambda s: quote_plus(s, errors="surrogateescape"),
                   lambda s: quote(s, errors="surrogateescape")):
        try:
            forms.add(encode(secret))
        except (UnicodeError, TypeError):  # never a reason to stop scrubbing
            pass
    forms |= {json.dumps(f, ensure_ascii=False)[1:-1] for f in list(forms)}
    forms |= {json.dumps(f)[1:-1] for f in list(forms)}
    forms |= {html.escape(f, quote=True) for f in list(forms)} | {html.escape(f, quote=False) for f in list(forms)}
    return {f for f in forms if f}


def mask_url_passwords(text: str) -> str:
    """Mask the password of every `scheme://user:password@host` in text."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK if m.group("pw") != MASK else m.group(0), text)


_SECRET_WORDS = ("pass", "secret", "token", "key", "webhook")
# (words one of which a line must hold, in lower case; pattern): the words are a fast
# filter, so a notebook of megabytes (plots, tables) is scanned in C, not by the regexes.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (("://",), _URL_PASSWORD),
    (("hooks.slack", "discord", "telegram.org", "office", "googleapis"), _WEBHOOK_PATHS),
    (("authorization",), _AUTH_HEADER),
    (("api-key", "-token"), _KEY_HEADER),
    (("earer",), _BEARER),
    (("password",), _SQL_PASSWORD),
    (_SECRET_WORDS, _QUOTED_KEY),
    (_SECRET_WORDS, _ASSIGNMENT),
    (("%3d", "%253d"), _ENCODED_ASSIGNMENT),
    (("xox", "xapp-", "_live_", "_test_", "whsec_", "sk-", "gh", "github_pat_", "aiza", ":aa"), _TOKEN_FORMS),
)
_DATA_URI = re.compile(r"(data:[\w/+.-]+;base64,[A-Za-z0-9+/=]{64,})")
_WHOLE_TEXT = 8192  # shorter texts are matched whole (a dollar-quoted literal may span lines)


def _apply(pattern: re.Pattern[str], text: str) -> str:
    if pattern is _URL_PASSWORD:
        return mask_url_passwords(text)
    if pattern is _TOKEN_FORMS:
        return pattern.sub(MASK, text)
    return pattern.sub(_mask_value, text)


def mask_patterns(text: str) -> str:
    """text with every secret that is recognisable by its form replaced by ***, values unknown."""
    if not text:
        return text
    lower = text.lower()
    rules = [(words, pattern) for words, pattern in _RULES if any(w in lower for w in words)]
    if not rules:
        return text
    if len(text) <= _WHOLE_TEXT:
        for _, pattern in rules:
            text = _apply(pattern, text)
        return text
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if len(line) > _WHOLE_TEXT and "base64," in line:
            # an embedded image (megabytes of base64 on one line) holds no secret: mask around it
            parts = _DATA_URI.split(line)
            lines[index] = "".join(p if i % 2 else _mask_line(p, rules) for i, p in enumerate(parts))
        else:
            lines[index] = _mask_line(line, rules)
    return "".join(lines)


def _mask_line(line: str, rules: list[tuple[tuple[str, ...], re.Pattern[str]]]) -> str:
    low = line.lower()
    for words, pattern in rules:
        if any(w in low for w in words):
            line = _apply(pattern, line)
            low = line.lower()
    return line


def scrub_query(text: Any, limit: int = QUERY_TEXT_LIMIT) -> Any:
    """A SQL text as a report may show it: one line, secrets masked, then cut to `limit` characters.

    Masking comes first, so a cut never leaves the start of a password behind. Non-strings
    (None, NaN) are returned as they are.
    """
    if not isinstance(text, str):
        return text
    line = mask_patterns(" ".join(text.split()))
    return line if len(line) <= limit else line[: max(limit - 1, 0)] + "…"


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """text with every known secret (in every spelling) and every secret recognised by form replaced by ***."""
    forms: set[str] = set()
    for secret in _expand(secrets):
        forms |= variants(secret)
    # longest first, so a secret containing another is replaced whole
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return mask_patterns(text)


# ---- the secrets ccops knows ------------------------------------------------------------------

def read_env_secrets(path: Path | str | None) -> list[str]:
    """Values of the secret-named keys of a dotenv file, read tolerantly (never raises).

    Bytes that are not UTF-8 become U+FFFD; such a value is also searched for by its readable
    pieces, since only those can show up in a report.
    """
    if not path:
        return []
    try:
        raw = Path(path).read_bytes()
    except (OSError, ValueError):
        return []
    from ccops.core.settings import env_pairs, is_secret_name

    return [value for key, value in env_pairs(raw.decode("utf-8", errors="replace")) if value and is_secret_name(key)]


def _expand(secrets: Iterable[str]) -> list[str]:
    """Each secret plus what of it can appear on its own: a URL's password and path tokens, readable pieces."""
    out: list[str] = []
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            continue
        out.append(secret)
        bad = re.compile("[\ufffd\udc80-\udcff]")
        if bad.search(secret):
            out += [piece for piece in bad.split(secret) if len(piece) >= MIN_FRAGMENT]
        if "://" in secret:
            out += _url_parts(secret)
    return out


def _url_parts(url: str) -> list[str]:
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return []
    found = [password] if password and len(password) >= MIN_SECRET else []
    if parts.scheme.lower() not in ("http", "https"):
        return found  # a database URL's path is the database name, not a secret
    for segment in re.split(r"[/?&=;]", f"{parts.path}?{parts.query}"):
        # a webhook's path tokens (hooks/T.../B.../<token>): mixed case or digits, or long;
        # words like 'services' or 'webhooks' stay readable
        if len(segment) >= 8 and (re.search(r"[0-9A-Z]", segment) or len(segment) >= 24):
            found.append(segment)
    return found


def known_secrets(settings: Any) -> list[str]:
    """Every secret value the settings name. Never raises: what cannot be read is skipped."""
    values: list[str] = []
    try:
        values += list(settings.secret_values())
    except Exception:  # noqa: BLE001 - e.g. an unreadable .env: gather what can be read without it
        values += _fallback_secrets(settings)
    try:
        values += read_env_secrets(settings.optional("app_env_file"))
    except Exception:  # noqa: BLE001 - a settings object without the property
        pass
    return values


def _fallback_secrets(settings: Any) -> list[str]:
    values: list[str] = []
    urls = [getattr(settings, "database_url", ""), os.environ.get("DATABASE_URL", "")]
    env_names = set(getattr(settings, "secret_envs", None) or [])
    env_names.add(getattr(settings, "database_url_env", "") or "")
    apis = getattr(settings, "apis", None)
    env_names |= {getattr(apis, "x_token_env", ""), getattr(apis, "anthropic_key_env", "")}
    env_names |= set(CREDENTIAL_ENVS)  # a bucket's credentials, from the standard AWS environment
    try:
        channels = settings.section("alerts").get("channels") or []
    except Exception:  # noqa: BLE001
        channels = []
    for channel in channels:
        if isinstance(channel, dict):
            env_names |= {v for k, v in channel.items() if k.endswith("_env") and isinstance(v, str)}
    values += [os.environ[name] for name in env_names if name and os.environ.get(name)]
    for url in urls:
        if url and "://" in url:
            values += _url_parts(url)
    return values


def excerpt(text: str, limit: int, scrubber: Scrubber | None = None) -> str:
    """The start of a text as a summary quotes it: masked first (known secrets too when a scrubber is
    given), then cut, so the cut never leaves the first characters of a secret for the archive pass
    to miss."""
    masked = scrubber.text(text) if scrubber is not None else mask_patterns(text)
    return masked if len(masked) <= limit else masked[: max(limit - 1, 0)] + "…"


class Scrubber:
    """The secrets of one run, applied to text, to JSON-like data and to notebooks."""

    def __init__(self, settings: Any = None, extra: Iterable[str] = ()) -> None:
        secrets = known_secrets(settings) if settings is not None else []
        secrets += [s for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET]
        self.secrets = sorted(set(_expand(secrets)), key=len, reverse=True)
        forms: set[str] = set()
        for secret in self.secrets:
            forms |= variants(secret)
        self._forms = sorted(forms, key=len, reverse=True)

    def text(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return mask_patterns(text)

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
