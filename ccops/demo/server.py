"""The demo app's HTTP face: the two endpoints the runbooks probe.

Production's Flask API answers `GET /api/status`, and the maintenance guide
probes `GET /health`; the system-down and health runbooks need a real peer
that says "healthy" while the database answers and 503 when it does not. This
is that peer, stdlib only so it starts in a fraction of a second.

It reads DATABASE_URL from the app's `.env` on every /health request (as the
app would after a restart), so a database that came back on a new port is
seen without restarting the server. The password never leaves the process:
it is not on the command line, not in the access log, not in a response.

Run detached by ccops.demo.backend:
    python -m ccops.demo.server --port 0 --env-file APP_ENV --state-file server.json
The state file gets {"pid": ..., "port": ...} once the socket is bound.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccops.config import read_env_file

PROJECT = "Content Creator API"
DB_TIMEOUT_SECONDS = 2


def libpq_url(url: str) -> str:
    """The app's URL shapes (postgres://, postgresql+driver://) as libpq takes them."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def check_database(url: str, timeout: int = DB_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(reachable, reason): one connection and SELECT 1, bounded by timeout."""
    if not url:
        return False, "DATABASE_URL not set in the app's .env"
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
        return True, ""
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return False, scrub(_first_line(exc), url)


def scrub(text: str, url: str) -> str:
    password = urlsplit(url).password if "://" in url else None
    return text.replace(password, "***") if password else text


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


class Handler(BaseHTTPRequestHandler):
    server_version = "ContentCreator/1.0"
    env_file: Path = Path(".env")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/api/status":
            self._send(200, {"status": "running", "project": PROJECT})
        elif path == "/health":
            url = read_env_file(self.env_file).get("DATABASE_URL", "")
            ok, reason = check_database(url)
            if ok:
                self._send(200, {"status": "healthy", "database": "connected"})
            else:
                self._send(503, {"status": "unhealthy", "database": "unreachable", "error": reason})
        else:
            self._send(404, {"error": "not found", "path": path})

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        sys.stderr.write(f"{self.log_date_time_string()} {self.address_string()} {format % args}\n")
        sys.stderr.flush()


def write_state(path: Path, pid: int, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": pid, "port": port}))
    os.replace(tmp, path)


def serve(port: int, env_file: Path, state_file: Path | None) -> None:
    handler = type("BoundHandler", (Handler,), {"env_file": env_file})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    if state_file:
        write_state(state_file, os.getpid(), int(server.server_address[1]))
    print(f"serving on 127.0.0.1:{server.server_address[1]}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccops.demo.server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--env-file", required=True, help="the app's .env holding DATABASE_URL")
    parser.add_argument("--state-file", default=None, help="where to write {pid, port} once listening")
    args = parser.parse_args(argv)
    serve(args.port, Path(args.env_file), Path(args.state_file) if args.state_file else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
