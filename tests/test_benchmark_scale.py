"""The benchmark generators at a tiny scale: exact rows, production indexes, true log counts.

The benchmarks trust these generators for their baselines and correctness
checks (target 3 compares the analyser with build_logs' counts), so the
generators are checked here against independent counts. No timing: speed is
measured by `make bench`, as ratios within one run.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from datetime import datetime, timedelta

import psycopg
import pytest

from benchmarks import scale
from ccops.core.db import libpq_url

SCALE = 0.0005
AS_OF = datetime(2026, 3, 10, 9, 30, 0)
LEVEL_RE = re.compile(rb"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \| (\w+)\s* \| ")
FOREIGN_KEYS = (  # (table, column, referenced table)
    ("content_plans", "insight_id", "insights"),
    ("published_content", "content_plan_id", "content_plans"),
    ("published_content", "ab_test_variant_id", "ab_test_variants"),
    ("user_interactions", "user_id", "community_users"),
    ("user_interactions", "content_id", "published_content"),
    ("subscriptions", "user_id", "community_users"),
    ("conversion_attempts", "user_id", "community_users"),
    ("exclusive_content", "insight_id", "insights"),
    ("moderation_actions", "user_id", "community_users"),
    ("ab_tests", "insight_id", "insights"),
    ("ab_tests", "winning_variant_id", "ab_test_variants"),
    ("ab_test_variants", "test_id", "ab_tests"),
)


@pytest.fixture(scope="module")
def built(pg_cluster):
    url = pg_cluster.create_database("bench_scale_smoke", drop_existing=True)
    manifest = scale.build_database(url, SCALE, AS_OF, log=lambda _m: None)
    reference = pg_cluster.create_database("bench_scale_reference", drop_existing=True)
    from ccops.core import schema

    schema.create_all(reference)
    return url, reference, manifest


def test_row_counts_are_exact_and_scaled(built):
    url, _, manifest = built
    expected = scale.row_counts(SCALE)
    assert expected["agent_logs"] == 5000 and expected["published_content"] == 200
    assert expected["user_interactions"] == 5000 and expected["community_users"] == 50
    assert scale.table_counts(url) == expected == manifest["counts"]


def test_exactly_the_production_indexes_exist(built):
    url, reference, _ = built
    ours, theirs = scale.index_definitions(url), scale.index_definitions(reference)
    assert ours == theirs
    assert "ix_agent_logs_timestamp" in ours and "ix_published_content_published_at" in ours
    assert not any("created_at" in d and "published_content" in d for d in ours.values())


def test_data_is_shaped_like_the_app(built):
    url, _, _ = built
    with psycopg.connect(libpq_url(url)) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM agent_logs GROUP BY 1").fetchall())
        first, last = conn.execute("SELECT min(timestamp), max(timestamp) FROM agent_logs").fetchone()
        agents = dict(conn.execute("SELECT agent_name, count(*) FROM agent_logs GROUP BY 1").fetchall())
        orphans = {
            (t, c): conn.execute(f"SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS "
                                 f"(SELECT 1 FROM {r} y WHERE y.id = x.{c})").fetchone()[0]
            for t, c, r in FOREIGN_KEYS
        }
        dupes = conn.execute("SELECT count(*) - count(DISTINCT email) FROM community_users WHERE email IS NOT NULL").fetchone()[0]
        stale = conn.execute("SELECT count(*) FROM user_interactions u JOIN published_content p ON p.id = u.content_id "
                             "WHERE p.published_at > u.timestamp").fetchone()[0]
    assert set(statuses) == {"success", "warning", "error"}
    assert 0.93 < statuses["success"] / 5000 < 0.97 and 0.005 < statuses["error"] / 5000 < 0.02
    assert AS_OF - timedelta(days=366) < first and last < AS_OF
    assert agents["MarketScannerAgent"] > 5 * agents["FeedbackLoopCoordinator"]  # every 5 min vs every 4 h
    assert orphans == {(t, c): 0 for t, c, _ in FOREIGN_KEYS}
    assert dupes == 0
    assert stale == 0  # nobody interacts with a post published later


def test_build_logs_counts_match_an_independent_count(tmp_path):
    manifest = scale.build_logs(tmp_path, 3_000_000, AS_OF, days=4, log=lambda _m: None)
    files = sorted(tmp_path.glob("content_creator_*"))
    assert [f.name for f in files][-1] == "content_creator_2026-03-10.log"
    assert all(f.name.endswith(".log.zip") for f in files[:-1]) and len(files) == 4
    levels: Counter[str] = Counter()
    grep_lines = 0
    size = 0
    latest = datetime.min
    for path in files:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                data = archive.read(archive.namelist()[0])
        else:
            data = path.read_bytes()
        size += len(data)
        for line in data.split(b"\n"):
            match = LEVEL_RE.match(line)
            if match:
                levels[match.group(1).decode()] += 1
                latest = max(latest, datetime.fromisoformat(line[:19].decode()))
            grep_lines += b"error" in line.lower()
    assert {k: v for k, v in manifest["by_level"].items() if v} == dict(levels)
    assert manifest["grep_error_lines"] == grep_lines
    assert manifest["bytes"] == size and 2_500_000 < size < 3_500_000
    assert latest < AS_OF
    errors = levels["ERROR"] + levels["CRITICAL"]
    assert errors > 0 and grep_lines > errors  # INFO lines and tracebacks mention errors: grep over-counts
    assert levels["INFO"] > levels["WARNING"] > levels["ERROR"] > 0
    quarter = scale.window_truth(manifest, datetime(2026, 3, 9))
    assert sum(quarter["by_level"].values()) < sum(levels.values()) and len(quarter["files"]) == 2
