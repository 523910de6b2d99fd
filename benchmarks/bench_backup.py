"""Issue 18, target 3: `ccops backup` at most 0.7x the guide's `pg_dump | gzip`, restore at most 0.7x one job.

The guide's backup is `pg_dump content_creator | gzip > backup.sql.gz`: one
dump, no checksum, nothing read back. `ccops backup` does more for its time
(custom format compressed by zstd on every core, row counts in the dump's
snapshot, sha256, a manifest, an fsync, and a full read back: zstd's
checksums and every block through pg_restore), and the figure says what that
costs on the bench database (a few GiB). It must also compress at least as
well: its file may be no larger than the guide's .sql.gz (both sizes and the
database's size over each are shown). The two are run in turn (guide, ccops,
guide, ...) so neither gets a page cache the other warmed; each figure is the
median.

Restore: `ccops restore FILE --target <scratch> --jobs N` from the backup
just taken, with one job against as many jobs as the machine has cores
(at least 2). The whole command is timed (verification, scratch database,
row-count check against the manifest, swap, health check), and the
pg_restore step alone is reported from its own step timing. One job reads
the .dump.zst through zstd's stream; N jobs first decompress it into a
temporary file (pg_restore -j reads only a seekable archive) and write into
it the data offsets a dump piped into zstd lacks (ccops.backup.toc), and that
time is counted in theirs.

Each round also times the floors no wrapper can beat: bare `pg_restore -j N`
and bare `pg_restore` with one job, both from that archive already
decompressed (offsets filled, decompression not timed), with no scratch
database, no counts and no swap. The first's ratio to ccops' single job shows
how much of a miss is ccops' own work and how much is the server's; the two
floors' own ratio is what the tool and the machine give before ccops adds
anything to either side: a wrapper that adds as much to the parallel side as
to the single one can only move its ratio from there towards 1.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BenchEnv,
    Measured,
    Result,
    ccops_command,
    interleaved_runs,
    median_seconds,
    seconds_of,
    shell_text,
)
from ccops.backup import manifest_path
from ccops.backup.files import read_manifest
from ccops.backup.restore import unpack_archive

RESTORE_TARGET = "bench_restore"
TIMEOUT_S = 3 * 3600
MAX_BACKUP_RATIO = 0.7  # ccops backup, verification included, over the guide's pg_dump | gzip
MAX_RESTORE_RATIO = 0.7  # restore with as many jobs as cores over the same with --jobs 1


def guide_command(env: BenchEnv, out: Path) -> list[str]:
    """The guide's backup line, with pipefail so a failed pg_dump is not timed as a success."""
    pg_dump = str(env.cluster.bindir / "pg_dump")
    return ["bash", "-o", "pipefail", "-c", f'"{pg_dump}" -d "$BENCH_URL" | gzip > "{out}"']


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _backup_path(measured: Measured) -> Path | None:
    try:
        path = json.loads(measured.stdout).get("file")
    except (ValueError, AttributeError):
        return None
    return Path(path) if path else None


def _drop_target(env: BenchEnv) -> None:
    """Drop the last restore's database, then CHECKPOINT and sync, so every restore starts with nothing to write.

    A restore leaves ~3.3 GB of data pages and as much WAL to be written back; without this,
    the checkpointer and the kernel's writeback do it during whichever restore runs next,
    and one run of the same command took 60 s, another 74 s.
    """
    env.cluster.psql(f'DROP DATABASE IF EXISTS "{RESTORE_TARGET}" WITH (FORCE)')
    env.cluster.psql("CHECKPOINT")
    os.sync()


def _restore_step_seconds(measured: Measured) -> float | None:
    try:
        record = json.loads(measured.stdout)
    except ValueError:
        return None
    for step in record.get("steps", []):
        if step.get("name") == "restore":
            return float(step.get("duration_s", 0.0))
    return None


def _compression_note(sizes: dict[str, Any]) -> str:
    """Each file's size and the database's size over it (its compression ratio), ccops' first."""
    database, ours, guide = sizes["database_bytes"], sizes["ccops_dump_bytes"], sizes["guide_gz_bytes"]

    def one(label: str, size: int | None) -> str:
        over = f" ({database / size:.2f}x the database's size)" if database and size else ""
        return f"{label} {size or 0:,} B{over}"

    guide_label = "guide's .sql.gz"
    sizes_text = f"{one('ccops backup', ours)} vs {one(guide_label, guide)}"
    if ours and guide:
        sizes_text += f": ccops' file is {ours / guide:.3f} of the guide's"
    return sizes_text


def _first_failed(runs: list[Measured]) -> Measured:
    return next((r for r in runs if r.returncode != 0), runs[-1])


def _fail_note(measured: Measured) -> str:
    tail = (measured.stderr.strip() or measured.stdout.strip())[-300:]
    return f"exit {measured.returncode}: {tail}"


def run(env: BenchEnv) -> list[Result]:
    work = env.root / "backup"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    backup_dir = work / "ccops"
    environment = env.ccops_env(CCOPS_BACKUP_DIR=str(backup_dir), BENCH_URL=_libpq_url(env.url),
                                PGPASSWORD=env.cluster.libpq_env().get("PGPASSWORD", ""))
    guide_out = work / "guide.sql.gz"
    guide_cmd = guide_command(env, guide_out)
    backup_cmd = ccops_command() + ["backup", "--json"]
    repeat = max(1, min(env.repeat, 3))

    env.log(f"  {repeat} rounds of the guide's pg_dump | gzip and ccops backup, in turn")
    guide_runs, backup_runs = interleaved_runs([guide_cmd, backup_cmd], repeat, environment, warmup=0,
                                               timeout=TIMEOUT_S)
    made = [p for p in map(_backup_path, backup_runs) if p is not None]
    kept = made[0] if made else None
    for extra in made[1:]:  # one backup is enough to restore from
        extra.unlink(missing_ok=True)
        manifest_path(extra).unlink(missing_ok=True)
    guide_ok = all(r.returncode == 0 for r in guide_runs)
    backup_ok = all(r.returncode == 0 for r in backup_runs) and kept is not None
    guide_s, backup_s = median_seconds(guide_runs), median_seconds(backup_runs)
    sizes = {"database_bytes": env.db_manifest.get("size_bytes"),
             "guide_gz_bytes": guide_out.stat().st_size if guide_out.exists() else None,
             "ccops_dump_bytes": kept.stat().st_size if kept and kept.exists() else None}
    notes = (f"database {sizes['database_bytes'] / 2**30:.2f} GiB; " if sizes["database_bytes"] else "")
    notes += _compression_note(sizes)
    smaller = bool(sizes["ccops_dump_bytes"] and sizes["guide_gz_bytes"]
                   and sizes["ccops_dump_bytes"] <= sizes["guide_gz_bytes"])
    if not backup_ok:
        notes += "; ccops backup failed: " + _fail_note(_first_failed(backup_runs))
    if not guide_ok:
        notes += "; the guide's pipeline failed: " + _fail_note(_first_failed(guide_runs))
    ratio = backup_s / guide_s if guide_s else None
    results = [Result("18.3", "ccops backup (dump, counts, sha256, manifest, verify)", backup_s, "s",
                      baseline=guide_s, baseline_label="guide's pg_dump | gzip",
                      target_text=f"ratio ≤ {MAX_BACKUP_RATIO}, file no larger than the guide's",
                      met=backup_ok and guide_ok and smaller and ratio is not None and ratio <= MAX_BACKUP_RATIO,
                      command=shell_text(backup_cmd), notes=notes,
                      runs=seconds_of(backup_runs), baseline_runs=seconds_of(guide_runs),
                      extra={**sizes, "runs": [r.seconds for r in backup_runs],
                             "guide_runs": [r.seconds for r in guide_runs],
                             "guide_command": "pg_dump content_creator | gzip > backup.sql.gz"})]
    guide_out.unlink(missing_ok=True)
    if kept is not None:
        results.append(_restore(env, kept, environment, repeat))
    shutil.rmtree(work, ignore_errors=True)
    return results


def _floor_command(env: BenchEnv, archive: Path, jobs: int) -> list[str]:
    """Bare pg_restore -j N into a new database: what the restore's own work costs, with nothing around it."""
    bindir = env.cluster.bindir
    return ["bash", "-c", f'"{bindir / "psql"}" -Xq -d "$BENCH_URL" -c \'CREATE DATABASE "{RESTORE_TARGET}"\' && '
            f'"{bindir / "pg_restore"}" -j {jobs} --exit-on-error -d "$BENCH_RESTORE_URL" "{archive}"']


def _restore(env: BenchEnv, backup: Path, environment: dict[str, str], repeat: int) -> Result:
    jobs = max(2, os.cpu_count() or 2)
    commands = {n: ccops_command() + ["restore", str(backup), "--target", RESTORE_TARGET, "--jobs", str(n),
                                      "--yes", "--app-stopped", "--json"] for n in (1, jobs)}
    # The floor's archive lies beside the backup, not in /dev/shm: held there through every round, it
    # would take the memory ccops' own restore decompresses into and change where that goes.
    dumped = backup.name.removesuffix(".zst")
    archive = backup.parent / f".bench-floor-{dumped}"
    environment = {**environment, "BENCH_RESTORE_URL": _libpq_url(env.cluster.url(RESTORE_TARGET))}
    env.log(f"  {repeat} rounds of ccops restore --jobs 1, --jobs {jobs}, bare pg_restore -j {jobs} and bare "
            "pg_restore with one job, in turn")
    try:
        unpack_archive(backup, archive, read_manifest(backup), backup.parent)
        single, parallel, floor, floor_single = interleaved_runs(
            [commands[1], commands[jobs], _floor_command(env, archive, jobs), _floor_command(env, archive, 1)],
            repeat, environment, warmup=0, before=lambda: _drop_target(env), timeout=TIMEOUT_S)
    finally:
        archive.unlink(missing_ok=True)
    _drop_target(env)
    runs = {1: single, jobs: parallel}
    ok = all(r.returncode == 0 for r in single + parallel)
    single_s, parallel_s = median_seconds(single), median_seconds(parallel)
    steps: dict[int, Any] = {n: [_restore_step_seconds(r) for r in runs[n]] for n in runs}
    step_medians = {n: statistics.median(s) if s and None not in s else None for n, s in steps.items()}
    notes = f"pg_restore step alone: {step_medians[jobs] or 0:.1f} s with {jobs} jobs vs {step_medians[1] or 0:.1f} s with 1"
    # The target compares medians, like every figure; each round's own ratio shows how far the host's load moved it.
    notes += "; each round's ratio: " + ", ".join(f"{p.seconds / s.seconds:.2f}" for s, p in zip(single, parallel, strict=True))
    notes += _floor_note(floor, floor_single, single_s, jobs)
    if not ok:
        notes += "; a restore failed: " + _fail_note(_first_failed(single + parallel))
    return Result("18.3", f"ccops restore --jobs {jobs} (whole command)", parallel_s, "s", baseline=single_s,
                  baseline_label="the same with --jobs 1", target_text=f"ratio ≤ {MAX_RESTORE_RATIO}",
                  met=ok and parallel_s <= MAX_RESTORE_RATIO * single_s,
                  command=shell_text(commands[jobs]), notes=notes,
                  runs=seconds_of(parallel), baseline_runs=seconds_of(single),
                  extra={"runs": [r.seconds for r in runs[jobs]], "single_runs": [r.seconds for r in runs[1]],
                         "restore_step_seconds": {str(n): s for n, s in steps.items()},
                         "floor_runs": seconds_of(floor), "floor_single_runs": seconds_of(floor_single),
                         "floor_command": f"pg_restore -j {jobs} --exit-on-error -d {RESTORE_TARGET} {dumped} "
                                          "(decompressed, offsets filled)",
                         "floor_single_command": f"pg_restore --exit-on-error -d {RESTORE_TARGET} {dumped} "
                                                 "(the same archive)"})


def _floor_note(floor: list[Measured], floor_single: list[Measured], single_s: float, jobs: int) -> str:
    """The floors beside the target: bare -j N over ccops' one job, and bare -j N over bare one job."""
    failed = [r for r in floor + floor_single if r.returncode != 0]
    if failed:
        return f"; a bare pg_restore floor failed: {_fail_note(failed[0])}"
    floor_s, floor_single_s = median_seconds(floor), median_seconds(floor_single)
    of_single = f", {floor_s / single_s:.2f} of --jobs 1" if single_s else ""  # ccops' own failure is noted apart
    return (f"; floor, bare pg_restore -j {jobs} from the archive already decompressed (no checks): "
            f"{floor_s:.1f} s{of_single}; bare pg_restore with one job from the same archive: "
            f"{floor_single_s:.1f} s, so the tool's own ratio is {floor_s / floor_single_s:.2f}")
