"""Issue 18, target 2: `ccops health` on a year of production data, whole command <= 0.4 s.

Cron runs it every hour, so the floor is a Python start plus a few indexed
queries; most of what it could cost on top is imports (tests/test_health_imports.py
keeps pandas, SQLAlchemy and the runbook stack out of its path).

Three figures, each against the guide's own health check in the same run:
- the plans: EXPLAIN (FORMAT JSON) of ccops' two queries must hold no
  sequential scan of agent_logs or published_content; the guide's
  `created_at` filter is shown scanning published_content for contrast;
- the queries: ccops' two (ACTIVITY_SQL, CONTENT_SQL) against the guide's
  three ORM `count()` queries, warm, on one open connection: under 100 ms
  (issue 9's target, kept);
- the command: `ccops health` as cron starts it, against the guide's script
  (benchmarks/guide_health.py): at most 0.4 s (issue 18).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text

from benchmarks.harness import (
    REPO,
    BenchEnv,
    Result,
    ccops_command,
    interleaved_runs,
    median_call,
    median_seconds,
    seconds_of,
    shell_text,
)
from ccops.checks.health import ACTIVITY_SQL, CONTENT_SQL
from ccops.core import schema
from ccops.core.db import connect

WATCHED = ("agent_logs", "published_content")
COMMAND_TARGET_S = 0.4


def guide_statements(since: Any) -> dict[str, Any]:
    """The guide's three queries in the shape the ORM's Query.count() sends them."""
    logs, content = schema.agent_logs, schema.published_content

    def orm_count(table: Any, *where: Any) -> Any:
        return select(func.count()).select_from(select(table).where(*where).subquery())

    return {
        "activity": orm_count(logs, logs.c.timestamp > since),
        "content": orm_count(content, content.c.created_at > since),
        "errors": orm_count(logs, logs.c.timestamp > since, logs.c.status == "error"),
    }


def seq_scans(plan: Any) -> list[str]:
    """Relations of the watched tables read by a Seq Scan anywhere in an EXPLAIN (FORMAT JSON) plan."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in WATCHED:
                found.append(node["Relation Name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


def explain(conn: Any, sql: str, params: dict[str, Any]) -> Any:
    return conn.execute(text("EXPLAIN (FORMAT JSON) " + sql), params).scalar()


def explain_statement(conn: Any, stmt: Any) -> Any:
    compiled = stmt.compile(dialect=conn.dialect)
    return conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar()


def run(env: BenchEnv) -> list[Result]:
    until = env.as_of
    since = until - timedelta(hours=24)
    params = {"since": since, "until": until}
    guide = guide_statements(since)
    with connect(env.url, statement_timeout_ms=120_000) as conn:
        ours_plans = {"activity": explain(conn, ACTIVITY_SQL, params), "content": explain(conn, CONTENT_SQL, params)}
        guide_plans = {name: explain_statement(conn, stmt) for name, stmt in guide.items()}
        ours_scans = sorted({t for plan in ours_plans.values() for t in seq_scans(plan)})
        guide_scans = sorted({t for plan in guide_plans.values() for t in seq_scans(plan)})

        def ours() -> tuple:
            return (conn.execute(text(ACTIVITY_SQL), params).one(), conn.execute(text(CONTENT_SQL), params).one())

        def theirs() -> tuple:
            return tuple(conn.execute(stmt).scalar() for stmt in guide.values())

        repeat = max(7, 3 * env.repeat)
        ours_s, ours_rows = median_call(ours, repeat, warmup=2)
        guide_s, guide_rows = median_call(theirs, repeat, warmup=2)

    health_cmd = ccops_command() + ["health", "--as-of", env.as_of_text]
    guide_cmd = [sys.executable, str(REPO / "benchmarks" / "guide_health.py"), "--as-of", env.as_of_text]
    cmd_runs, guide_runs = interleaved_runs([health_cmd, guide_cmd], env.repeat, env.ccops_env())
    cmd_s, guide_cmd_s = median_seconds(cmd_runs), median_seconds(guide_runs)
    line = cmd_runs[-1].stdout.strip() or cmd_runs[-1].stderr.strip()
    command_ok = cmd_runs[-1].returncode in (0, 1, 2) and not line.startswith("UNKNOWN")
    return [
        Result("9.1", "health: Seq Scans of agent_logs/published_content in EXPLAIN", float(len(ours_scans)), "count",
               baseline=float(len(guide_scans)), baseline_label="guide: " + (", ".join(guide_scans) or "none"),
               target_text="0", met=not ours_scans, ratio=None,
               command="python -m benchmarks --only health  (EXPLAIN (FORMAT JSON) ACTIVITY_SQL, CONTENT_SQL)",
               extra={"ours": ours_plans, "guide": guide_plans}),
        Result("9.1", "health: its queries together (warm, median)", ours_s * 1000, "ms",
               baseline=guide_s * 1000, baseline_label="guide's 3 ORM count() queries",
               target_text="< 100 ms", met=ours_s < 0.100,
               command="python -m benchmarks --only health  (ACTIVITY_SQL + CONTENT_SQL on one connection)",
               extra={"ours": [list(map(str, r)) for r in ours_rows], "guide": list(guide_rows)}),
        Result("18.2", "health: whole command", cmd_s, "s", baseline=guide_cmd_s,
               baseline_label="guide's health_check.py", target_text=f"≤ {COMMAND_TARGET_S} s",
               met=cmd_s <= COMMAND_TARGET_S and command_ok, command=shell_text(health_cmd),
               runs=seconds_of(cmd_runs), baseline_runs=seconds_of(guide_runs),
               notes=f"ccops said: {line[:200]}; guide said: {guide_runs[-1].stdout.strip()[:200]}"),
    ]
