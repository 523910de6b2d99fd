"""The report archive mirrored to a bucket: real runbook runs, a real S3 API on 127.0.0.1 (tests/s3server.py).

CCOPS_ARCHIVE_DIR=s3://bucket/prefix: each run is archived locally under the home first, then its files,
its record last and the index go to the bucket. A link cut in the middle of that leaves the run archived
locally, says so in its record and on stderr, and the next run (or `ccops reports sync`) uploads it.
Retention deletes from the bucket what it deletes locally. No AWS secret reaches either copy.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from ccops.cli import main
from ccops.core.settings import load_settings
from tests.s3server import SECRET_KEY, cut_proxy_fixture, s3_fixture, s3_server_fixture  # noqa: F401 - fixtures

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
PREFIX = "ccops/reports"
SESSION_TOKEN = "ccops-test-session-token-Hf83kQ0wZ"
RUN_SUFFIXES = (".ipynb", ".html", ".report.html", ".json")


@pytest.fixture
def bucket_env(ccops_env: Path, s3, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CCOPS_RUNBOOKS_DIR", str(NOTEBOOKS))
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", s3.url(PREFIX))
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://app:x@127.0.0.1:1/x")  # the ok notebook reads none
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    return s3


def run(capsys: pytest.CaptureFixture, runbook: str = "ok") -> tuple[int, dict, str]:
    code = main(["run", runbook, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def local_archive() -> Path:
    settings = load_settings()
    assert settings.archive_remote and settings.archive_dir == Path(os.environ["CCOPS_HOME"]) / "archive"
    return settings.archive_dir


def bucket_index(s3) -> list[dict]:
    return json.loads(s3.get(f"{PREFIX}/index.json"))


def test_a_run_lands_in_the_bucket_with_its_record_and_index(bucket_env, capsys, monkeypatch):
    s3 = bucket_env
    code, record, err = run(capsys)
    assert code == 1, err  # the notebook's own WARNING: the mirror does not change a run's outcome
    assert "mirror" not in record and "WARNING: ok" not in err, err
    stem = record["paths"]["json"].removesuffix(".json")
    keys = s3.keys(PREFIX)
    for suffix in RUN_SUFFIXES:
        assert f"{PREFIX}/{stem}{suffix}" in keys, keys
    assert {f"{PREFIX}/index.json", f"{PREFIX}/index.html"} <= set(keys)
    local = local_archive()
    for suffix in RUN_SUFFIXES:  # byte for byte the local copy
        assert s3.get(f"{PREFIX}/{stem}{suffix}") == (local / f"{stem}{suffix}").read_bytes()
    assert [r["run_id"] for r in bucket_index(s3)] == [record["run_id"]]
    assert s3.get(f"{PREFIX}/index.html") == (local / "index.html").read_bytes()
    state = json.loads((Path(os.environ["CCOPS_HOME"]) / "archive-mirror.json").read_text())
    assert state["pending_runs"] == [] and state["remote"] == s3.url(PREFIX)

    assert main(["reports", "sync", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == f"{s3.url(PREFIX)}: in sync"

    with socket.socket() as probe:  # a port nothing listens on: the bucket unreachable
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    assert main(["reports", "sync", "--yes"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "mirror FAILED" in out and "Could not connect" in out, out
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(local))
    assert main(["reports", "sync", "--yes"]) == 64
    assert "is not an s3://bucket/prefix URL" in capsys.readouterr().err


def test_a_link_cut_mid_upload_leaves_the_run_local_and_the_next_run_uploads_it(bucket_env, cut_proxy, capsys,
                                                                               monkeypatch):
    s3 = bucket_env
    cut_proxy.cut_after(4000)  # a notebook's upload is larger: the link dies inside the run's first file
    code, first, err = run(capsys)
    assert code == 1, err  # the run's own outcome: archived locally, the mirror's failure is a warning
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ok: archived locally")]
    assert len(warnings) == 1 and "pending for the next run" in warnings[0], err
    assert cut_proxy.forwarded >= 4000, "cut during the upload, not before it"
    assert first["mirror"]["status"] == "failed" and first["mirror"]["error"]
    local = local_archive()
    on_disk = json.loads((local / first["paths"]["json"]).read_text())
    assert on_disk["mirror"] == first["mirror"], "the local record says the mirror failed"
    assert f"{PREFIX}/{first['paths']['json']}" not in s3.keys(PREFIX), "no record: nothing there counts as a run"

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the link is back
    code, second, err = run(capsys)
    assert code == 1 and "WARNING: ok" not in err, err
    keys = s3.keys(PREFIX)
    for record in (first, second):
        stem = record["paths"]["json"].removesuffix(".json")
        assert all(f"{PREFIX}/{stem}{s}" in keys for s in RUN_SUFFIXES), keys
    assert {r["run_id"] for r in bucket_index(s3)} == {first["run_id"], second["run_id"]}
    assert json.loads(s3.get(f"{PREFIX}/{first['paths']['json']}"))["mirror"]["status"] == "failed"

    # an acknowledgement added afterwards reaches the bucket with `reports sync`
    assert main(["reports", "ack", f"ok/{second['run_id']}", "--note", "seen", "--yes"]) == 0
    capsys.readouterr()
    assert main(["reports", "sync", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert f"{second['paths']['json'].removesuffix('.json')}.ack.json" not in str(s3.keys(PREFIX))
    assert "upload" in dry and "(dry run)" in dry, dry
    assert main(["reports", "sync", "--yes"]) == 0, capsys.readouterr()
    capsys.readouterr()
    ack = f"{PREFIX}/{second['paths']['json'].removesuffix('.json')}.ack.json"
    assert ack in s3.keys(PREFIX)
    assert s3.get(f"{PREFIX}/index.json") == (local / "index.json").read_bytes(), "the index rebuilt by the ack"

    # retention: a run from 2020 (copied from the first, its record dated back) goes from both copies
    old_stem = _backdate(local, first, "2020-01-05T06:00:00Z")
    assert main(["reports", "sync", "--yes"]) == 0
    capsys.readouterr()
    assert f"{PREFIX}/{old_stem}.json" in s3.keys(PREFIX)
    assert main(["reports", "prune", "--keep-days", "30", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "nothing pending" in out, out
    keys = s3.keys(PREFIX)
    assert not [k for k in keys if old_stem in k], keys
    assert {r["run_id"] for r in bucket_index(s3)} == {first["run_id"], second["run_id"]}

    # the index state in the bucket is the local one: every current file, no shard the local index replaced
    state_files = {p.relative_to(local).as_posix() for p in (local / ".index").rglob("*")
                   if p.is_file() and not p.name.endswith((".tmp", ".lock"))}
    assert state_files, "the incremental index keeps state beside index.json"
    assert {k[len(PREFIX) + 1:] for k in keys if k.startswith(f"{PREFIX}/.index/")} == state_files
    assert s3.get(f"{PREFIX}/index.json") == (local / "index.json").read_bytes()

    # no AWS secret anywhere: the local archive, the home's mirror state, every object in the bucket
    home = Path(os.environ["CCOPS_HOME"])
    files = [p for p in home.rglob("*") if p.is_file()]
    for path in files:
        text = path.read_bytes()
        assert SECRET_KEY.encode() not in text and SESSION_TOKEN.encode() not in text, path
    for key in s3.keys(PREFIX):
        body = s3.get(key)
        assert SECRET_KEY.encode() not in body and SESSION_TOKEN.encode() not in body, key


def _backdate(local: Path, record: dict, start: str) -> str:
    """A copy of a run's files under a 2020 stamp, its record's start moved back: an old run for retention."""
    stem = record["paths"]["json"].removesuffix(".json")
    name = Path(stem).name
    old_name = "20200105T060000Z" + name[16:]
    old_folder = local / "ok" / "2020" / "01"
    old_folder.mkdir(parents=True, exist_ok=True)
    for suffix in RUN_SUFFIXES:
        shutil.copy(local / f"{stem}{suffix}", old_folder / f"{old_name}{suffix}")
    data = json.loads((old_folder / f"{old_name}.json").read_text())
    data.update(start=start, end=start, run_id="20200105T060000Z-0ld0ld00",
                paths={k: f"ok/2020/01/{old_name}{s}" for k, s in zip(("ipynb", "html", "report_html", "json"),
                                                                        RUN_SUFFIXES, strict=True)})
    (old_folder / f"{old_name}.json").write_text(json.dumps(data))
    assert main(["reports", "index"]) == 0
    return f"ok/2020/01/{old_name}"


def test_a_notebook_printing_the_aws_secret_leaves_it_in_neither_copy(bucket_env, tmp_path, monkeypatch, capsys):
    s3 = bucket_env
    books = tmp_path / "books"
    books.mkdir()
    nb = json.loads((NOTEBOOKS / "ok.ipynb").read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": "print(os.environ['AWS_SECRET_ACCESS_KEY'], os.environ['AWS_SESSION_TOKEN'])"})
    (books / "ok.ipynb").write_text(json.dumps(nb))
    monkeypatch.setenv("CCOPS_RUNBOOKS_DIR", str(books))
    code, _, err = run(capsys)
    assert code == 1, err
    for path in [p for p in local_archive().rglob("*") if p.is_file()]:
        assert SECRET_KEY.encode() not in path.read_bytes(), path
    for key in s3.keys(PREFIX):
        assert SECRET_KEY.encode() not in s3.get(key), key
