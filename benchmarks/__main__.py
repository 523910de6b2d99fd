"""`make bench`: issue 18's targets measured at production scale, each against a same-run baseline.

    python -m benchmarks [--scale 1.0] [--only health,daily,logs,backup,index,tests]
                         [--log-bytes 1e9] [--repeat 3]

The bench database (a private cluster under .ccops/bench/pg) and the bench
logs (.ccops/bench/logs) are built on first use and reused while their
manifest, row counts and indexes match (benchmarks/scale.py). The report is
a Markdown table on stdout (each timed figure with the min / median / max of
its repeats) and benchmarks/results.json (the machine's cores, memory and
versions; each figure with its runs, baseline, ratio, target and whether it
is met). A figure that misses its target, or a bench that cannot run, makes
the exit status 1.

A benchmark module is `benchmarks/bench_<name>.py` with `run(env: BenchEnv)
-> list[Result]` (benchmarks/harness.py). bench_backup.py (target 4) is
written separately and is run when present; it gets the same BenchEnv
(env.url, env.cluster, env.root, env.repeat, env.ccops_env()).

Targets (issue 18; "9.x" rows are issue 9's, kept): 18.1 daily whole run
<= 1.5x the empty-notebook floor; 18.2 `ccops health` whole command <= 0.4 s;
18.3 backup (dump, counts, sha256, verify) <= 0.7x the guide's `pg_dump | gzip`
and restore <= 0.7x a single-job restore; 18.4 logs summary throughput >= 2x
`grep -ci error`; 18.5 `make test` <= 6 min.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import re
import sys
import time
import traceback
from datetime import UTC, datetime

from benchmarks import scale
from benchmarks.harness import REPO, BenchEnv, Result, markdown_table

BENCHES = ("health", "daily", "logs", "backup", "index", "tests")
NEEDS_DB = {"health", "daily", "backup"}
NEEDS_LOGS = {"logs", "daily"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every table's rows (1.0: 10M agent_logs)")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHES))
    parser.add_argument("--log-bytes", type=float, default=1e9, help="uncompressed bytes of app logs (default 1 GB)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure (the median is reported)")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results.json"))
    args = parser.parse_args(argv)
    args.selected = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHES)
    unknown = set(args.selected) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = scale.bench_root()
    root.mkdir(parents=True, exist_ok=True)
    env = BenchEnv(root=root, as_of=scale.AS_OF, scale=args.scale, repeat=max(1, args.repeat), log=log)
    started = time.monotonic()
    if NEEDS_DB & set(args.selected):
        env.cluster, env.url, env.db_manifest = scale.ensure_database(root, args.scale, scale.AS_OF, log=log)
    if NEEDS_LOGS & set(args.selected):
        env.log_dir, env.log_manifest = scale.ensure_logs(root, int(args.log_bytes), scale.AS_OF, log=log)
    results: list[Result] = []
    failures: dict[str, str] = {}
    for name in args.selected:
        try:
            module = importlib.import_module(f"benchmarks.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.bench_{name}":
                log(f"{name}: benchmarks/bench_{name}.py not present, skipped")
                failures[name] = "module not present"
                continue
            raise
        log(f"running {name} ...")
        t0 = time.monotonic()
        try:
            results += module.run(env)
        except Exception as exc:  # noqa: BLE001 - one broken bench must not hide the others' figures
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(traceback.format_exc())
        log(f"  {name} done in {time.monotonic() - t0:.1f} s")
    table = markdown_table(results)
    print(table)
    for r in results:
        if r.notes:
            print(f"- {r.figure}: {r.notes}")
    for name, why in failures.items():
        print(f"- {name}: NOT MEASURED ({why})")
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(env),
        "scale": args.scale,
        "as_of": env.as_of_text,
        "database": {k: env.db_manifest.get(k) for k in ("counts", "size_bytes", "seconds")} if env.db_manifest else None,
        "logs": {k: env.log_manifest.get(k) for k in ("bytes", "records", "by_level", "seconds")} if env.log_manifest else None,
        "seconds": round(time.monotonic() - started, 1),
        "results": [r.to_dict() for r in results],
        "not_measured": failures,
        "table": table,
    }
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)
    missed = [r for r in results if r.met is False]
    return 1 if missed or failures else 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


VERSIONED = ("ccops", "psycopg", "sqlalchemy", "pandas", "papermill", "nbclient", "nbconvert", "matplotlib")


def _machine(env: BenchEnv) -> dict[str, object]:
    """What a ratio was measured on: cores, memory, and the versions of everything timed."""
    import os
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["postgresql"] = _server_version(env)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"cpus": _cpus(), "memory_bytes": memory, "platform": platform.platform(), "versions": versions}


def _server_version(env: BenchEnv) -> str | None:
    """The bench cluster's `postgres --version`, when a bench that needs the database ran."""
    import subprocess

    if env.cluster is None:
        return None
    try:
        out = subprocess.run([str(env.cluster.bindir / "postgres"), "--version"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\d+(\.\d+)+", out)  # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    return found.group(0) if found else (out.strip() or None)


if __name__ == "__main__":
    sys.exit(main())
