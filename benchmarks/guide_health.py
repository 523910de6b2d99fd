"""The maintenance guide's scripts/health_check.py, as written, for the baseline of target 1.

The same ORM calls on the same tables (`db.query(Model).filter(...).count()`,
content by `created_at`, windows open-ended at the top), mapped onto
ccops.core.schema's tables so it runs against the bench database. Only `now` is
replaced by `--as-of`, so both checks look at the same 24 hours.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timedelta

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, registry

from ccops.core import schema
from ccops.core.db import normalize_url


class AgentLog:
    pass


class PublishedContent:
    pass


_registry = registry()
_registry.map_imperatively(AgentLog, schema.agent_logs)
_registry.map_imperatively(PublishedContent, schema.published_content)


def health_check(url: str, now: datetime) -> int:
    """Comprehensive health check (the guide's code, line for line)."""
    issues = []
    engine = create_engine(normalize_url(url))
    with Session(engine) as db:
        last_24h = now - timedelta(hours=24)
        recent_logs = db.query(AgentLog).filter(AgentLog.timestamp > last_24h).count()
        if recent_logs == 0:
            issues.append("No agent activity in last 24 hours")
        recent_content = db.query(PublishedContent).filter(PublishedContent.created_at > last_24h).count()
        if recent_content == 0:
            issues.append("No content published in last 24 hours")
        error_logs = (db.query(AgentLog).filter(AgentLog.timestamp > last_24h)
                      .filter(AgentLog.status == "error").count())
        if error_logs > 10:
            issues.append(f"High error count: {error_logs} in last 24h")
    engine.dispose()
    if issues:
        print("UNHEALTHY:", "; ".join(issues))
        return 1
    print("HEALTHY")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--as-of", required=True)
    args = parser.parse_args()
    return health_check(os.environ["CCOPS_DATABASE_URL"], datetime.fromisoformat(args.as_of))


if __name__ == "__main__":
    sys.exit(main())
