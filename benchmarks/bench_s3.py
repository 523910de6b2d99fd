"""Issue 17.2: what mirroring a run to a bucket costs, against writing the same run to the local archive.

A real S3 API (moto's server on 127.0.0.1), a run of daily's size (1.5 MB in its four files) and a
changed index.json: the mirror (every object verified by size and ETag) against archive.write_files of
the same bytes, the same run. Also: finding the index files in an archive of 10,000 runs, against a full
walk of it (the mirror must not re-read the archive after every run).

    .venv/bin/python -m benchmarks.bench_s3        (standalone; or `run(env)` from benchmarks/__main__)
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks.harness import Result

SIZES = {".ipynb": 400_000, ".html": 600_000, ".report.html": 500_000, ".json": 20_000}
STEM = "daily/2026/12/20261202T000000Z-daily"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def run(env: Any = None, repeat: int = 5) -> list[Result]:
    from moto.server import ThreadedMotoServer

    from ccops import archive
    from ccops.archive import remote

    repeat = getattr(env, "repeat", repeat) or repeat
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="ccops-bench-s3-"))
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                          AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://{host}:{port}",
                          AWS_EC2_METADATA_DISABLED="true")
        import boto3

        boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket="ccops-bench")
        payload = {s: os.urandom(n) for s, n in SIZES.items()}
        mirror_runs, local_runs = [], []
        for i in range(repeat):
            local = tmp / f"archive-{i}"
            t = time.perf_counter()
            archive.write_files([(local / (STEM + s), data.hex()[: len(data)]) for s, data in payload.items()]
                                + [(local / "index.json", "[" + "1," * i + "1]")])
            local_runs.append(time.perf_counter() - t)
            settings = SimpleNamespace(archive_remote=f"s3://ccops-bench/run-{i}", archive_dir=local,
                                       home=tmp / "home")
            t = time.perf_counter()
            result = remote.sync(settings, runs=[STEM + ".json"])
            mirror_runs.append(time.perf_counter() - t)
            assert result.ok and len(result.uploaded) == 5, result.line()

        big = tmp / "big"
        for i in range(10_000):
            folder = big / f"rb{i % 10}" / "2026" / f"{i % 12 + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for s in SIZES:
                (folder / f"2026{i % 12 + 1:02d}01T000000Z-rb{i % 10}-{i}{s}").touch()
        (big / "index.json").write_text("[]")
        walk_runs, full_runs = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            found = remote._index_files(big)
            walk_runs.append(time.perf_counter() - t)
            t = time.perf_counter()
            sum(len(f) for _, _, f in os.walk(big))
            full_runs.append(time.perf_counter() - t)
        assert found == ["index.json"], found
    finally:
        server.stop()
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[k]
        os.environ.update(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        Result("17.2", "one run mirrored to a bucket (1.5 MB, 4 files + index.json, each verified)",
               _median(mirror_runs), "s", _median(local_runs), "the same files written to the local archive",
               command="python -m benchmarks.bench_s3", runs=mirror_runs, baseline_runs=local_runs,
               notes="moto's S3 server on 127.0.0.1: no network latency; a real bucket adds a round trip per PUT"),
        Result("17.2", "index files found in an archive of 10,000 runs", _median(walk_runs), "s",
               _median(full_runs), "a full walk of the same archive", command="python -m benchmarks.bench_s3",
               runs=walk_runs, baseline_runs=full_runs),
    ]


if __name__ == "__main__":
    for r in run():
        print(f"{r.figure}: {r.value * 1000:.1f} ms (median of {len(r.runs)}), {r.baseline_label}: "
              f"{(r.baseline or 0) * 1000:.1f} ms, ratio {r.ratio:.3g}")
