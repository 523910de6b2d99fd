"""The scrubber: secrets it is told about, and secrets it recognises by their form alone."""

from __future__ import annotations

import html
import json

import pytest

from ccops.core.scrub import MASK, Scrubber, mask_patterns, read_env_secrets, scrub_query, scrub_text
from ccops.core.settings import load_settings

SECRET = "plantedS3cret"


def spellings(text: str) -> list[str]:
    """text as a notebook cell holds it, as its JSON file holds it, and as its HTML shows it."""
    return [text, json.dumps(text), json.dumps({"text/plain": [text]}), html.escape(text), html.escape(text, quote=False)]


@pytest.mark.parametrize("text", [
    # keyword connection strings, as `ccops run recovery -p target '...'` receives them
    f"host=127.0.0.1 port=5432 dbname=content_creator user=app password={SECRET} sslmode=require",
    f"host=db password='{SECRET} with space' user=app",
    f"host=db password = \"{SECRET}\"",
    f"dbname=x password={SECRET}",
    f"export PGPASSWORD={SECRET}",
    # ... and the same string URL-encoded into a URL's path (how `target_url` once spliced it)
    f"postgresql://u:***@h:5432/host%3Dh%20password%3D{SECRET}%20sslmode%3Ddisable",
    # SQL, as pg_stat_statements / pg_stat_activity keep it
    f"ALTER ROLE app PASSWORD '{SECRET}'",
    f"alter user app with encrypted password '{SECRET}' valid until 'infinity'",
    f"CREATE ROLE app LOGIN UNENCRYPTED PASSWORD '{SECRET}''s'",
    f"CREATE ROLE app PASSWORD $pw${SECRET}$pw$",
    f"ALTER ROLE app PASSWORD E'{SECRET}\\'x'",
    # headers and bearer tokens
    f"Authorization: Bearer {SECRET}",
    f"authorization: Basic {SECRET}==",
    f"{{'Authorization': 'Bearer {SECRET}'}}",
    json.dumps({"headers": {"Authorization": f"Bearer {SECRET}"}}),
    f"request failed (Bearer {SECRET}.xyz)",
    f"curl -H 'x-api-key: {SECRET}' https://api.anthropic.com/v1/messages",
    # webhook URLs: the path is the credential
    f"POST https://hooks.slack.com/services/T0ABCDEF/B0ABCDEF/{SECRET} -> 404",
    f"https://discord.com/api/webhooks/1234567890/{SECRET}-x_y",
    f"https://discordapp.com/api/v10/webhooks/1234567890/{SECRET}",
    f"https://api.telegram.org/bot123456789:{SECRET}/sendMessage",
    # NAME=value where NAME ends like a secret (env files, logs, query strings)
    f"TWITTER_BEARER_TOKEN={SECRET}",
    f"STRIPE_WEBHOOK_SECRET='{SECRET}'",
    f"GOOGLE_API_KEY_BACKUP={SECRET} LOG_LEVEL=INFO",
    f"https://example.com/callback?token={SECRET}&user=bob",
    json.dumps({"api_key": SECRET, "password": SECRET}),
    # URL passwords (as before)
    f"postgresql://app:{SECRET}@db:5432/content_creator",
])
def test_a_secret_is_masked_by_its_form_in_every_spelling(text):
    for spelled in spellings(text):
        cleaned = mask_patterns(spelled)
        assert SECRET not in cleaned, (spelled, cleaned)
        assert MASK in cleaned


def test_well_known_token_formats_are_masked_wherever_they_stand():
    tokens = ["xoxb-1234567890-abcdefghijkl", "sk_live_51Habcdefghijklmnop", "whsec_abcdefghijklmnop1234",
              "sk-ant-api03-abcdefghijklmnop", "ghp_abcdefghijklmnopqrstuvwxyz0123",
              "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"]
    cleaned = mask_patterns(" ".join(f"saw {t} here" for t in tokens))
    assert not [t for t in tokens if t in cleaned], cleaned


def test_structure_and_harmless_text_survive():
    keep = ("max_tokens=1024 primary_key=id tokens=5 x_token_env=X_BEARER_TOKEN the bearer token is not set "
            "ALTER ROLE app PASSWORD NULL; authorization failed; password_env=SMTP_PASSWORD LOG_LEVEL=INFO")
    assert mask_patterns(keep) == keep
    data = json.loads(mask_patterns(json.dumps({"target": "host=h password=x1 dbname=d", "password": "p",
                                                "password_env": "SMTP_PASSWORD"})))
    assert data == {"target": "host=h password=*** dbname=d", "password": "***", "password_env": "SMTP_PASSWORD"}
    sql = mask_patterns("ALTER ROLE app PASSWORD 'a''b' VALID UNTIL 'infinity'")
    assert sql == "ALTER ROLE app PASSWORD '***' VALID UNTIL 'infinity'"
    assert mask_patterns("<td>host=h password=pw1 dbname=d</td>") == "<td>host=h password=*** dbname=d</td>"


def test_a_query_text_is_masked_before_it_is_cut():
    long_sql = "SELECT 1 /*" + "x" * 190 + f"*/; ALTER ROLE app PASSWORD '{SECRET}'"
    for limit in (200, 205, 215, 230):
        shown = scrub_query(long_sql, limit)
        assert len(shown) <= limit and "planted" not in shown, shown  # not even the head of the secret
    assert scrub_query("SELECT\n   1,\t2") == "SELECT 1, 2"
    assert scrub_query(None) is None
    # a text already cut by the server in the middle of the literal
    assert SECRET[:6] not in mask_patterns(f"ALTER ROLE app PASSWORD '{SECRET[:6]}")


def test_secret_named_env_values_are_read_tolerantly_and_masked(tmp_path):
    env = tmp_path / "app.env"
    env.write_bytes(b"# caf\xe9 settings\n"
                    b"CONTENT_PERSONALITY=caf\xe9 cr\xe8me\n"
                    b"TELEGRAM_BOT_TOKEN=tg-planted-0001\n"
                    b"STRIPE_WEBHOOK_SECRET=whsec-plantedpart\xffrest-of-it\n"
                    b"export OPENAI_API_KEY='sk-planted-0002'  # rotated\n"
                    b"LOG_LEVEL=INFO\n")
    values = read_env_secrets(env)
    assert "tg-planted-0001" in values and "sk-planted-0002" in values
    assert all("caf" not in v for v in values)
    assert read_env_secrets(tmp_path / "missing.env") == [] and read_env_secrets(tmp_path) == []
    cleaned = scrub_text("tg-planted-0001 sk-planted-0002 whsec-plantedpart rest-of-it INFO", values)
    assert cleaned == "*** *** *** *** INFO"


def test_the_scrubber_survives_a_non_utf8_env_and_odd_secrets(ccops_env, monkeypatch):
    env = ccops_env / "app.env"
    env.write_bytes(b"ANTHROPIC_API_KEY=planted-anthropic-1\nCONTENT_PERSONALITY=\xff\xfe bold\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env))
    monkeypatch.setenv("ODD_SECRET", "odd-\udcff-secret-value")  # an environment value that was not UTF-8
    monkeypatch.setenv("CCOPS_SECRET_ENVS", "ODD_SECRET")
    scrub = Scrubber(load_settings())
    assert scrub.text("key planted-anthropic-1 odd -secret-value") == "key *** odd ***"
    assert scrub.data({"a": ["planted-anthropic-1"]}) == {"a": ["***"]}


def test_a_configured_webhook_url_is_masked_whole_and_by_its_path_token(ccops_env, monkeypatch):
    monkeypatch.setenv("MY_HOOK", "http://127.0.0.1:9/hooks/T0PLANTED/pLaNtEdPathToken9")
    monkeypatch.setenv("CCOPS_SECRET_ENVS", "MY_HOOK")
    scrub = Scrubber(load_settings())
    cleaned = scrub.text("sent to http://127.0.0.1:9/hooks/T0PLANTED/pLaNtEdPathToken9; "
                         "404 Not Found for /hooks/T0PLANTED/pLaNtEdPathToken9")
    assert "pLaNtEdPathToken9" not in cleaned and "T0PLANTED" not in cleaned
    assert "/hooks/" in cleaned, "words of the path stay readable"


def test_a_database_name_is_not_taken_for_a_secret(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://app:DbPassw0rd9@127.0.0.1:5432/content_creator")
    scrub = Scrubber(load_settings())
    assert scrub.text("restored content_creator with DbPassw0rd9") == "restored content_creator with ***"


def test_scrubber_api_is_unchanged_for_its_callers(ccops_env):
    scrub = Scrubber(load_settings(), extra=["param-secret-1", "", "ab"])
    assert scrub.text("x param-secret-1 y") == "x *** y"
    out = scrub.json_dumps({"k": "password=abc123 dbname=x"}, indent=1)
    assert json.loads(out) == {"k": "password=*** dbname=x"}
    assert scrub.leaks("param-secret-1") == ["param-secret-1"]
    assert Scrubber().text("Bearer abcdef123456") == "Bearer ***"


def test_a_large_notebook_is_scanned_line_by_line_around_embedded_images():
    image = "data:image/png;base64," + "iVBORw0KGgo" * 20_000
    text = "\n".join([
        "<p>token counts per hour</p>" * 10,
        f'<img src="{image}"/> host=h password={SECRET}',
        "x" * 10_000,
        f"<td>ALTER ROLE app PASSWORD '{SECRET}'</td>",
        f"Authorization: Bearer {SECRET}",
    ])
    cleaned = mask_patterns(text)
    assert SECRET not in cleaned
    assert image in cleaned and cleaned.count(MASK) == 3


def test_dotenv_reader_takes_empty_and_quoted_values(tmp_path):
    """One reader for settings and scrubber: an empty value (KEY=) is a key with no value, not a crash."""
    from ccops.core.settings import env_pairs, read_env_file

    text = 'EMPTY=\nQUOTED="a b" # note\nPLAIN=x # note\nexport TOKEN_SECRET=\'s3cr3t\'\n'
    assert list(env_pairs(text)) == [("EMPTY", ""), ("QUOTED", "a b"), ("PLAIN", "x"), ("TOKEN_SECRET", "s3cr3t")]
    path = tmp_path / ".env"
    path.write_text(text)
    assert read_env_file(path)["EMPTY"] == ""
