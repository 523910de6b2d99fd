"""The demo app's API face: what the Content Creator's API mode answers, nothing more.

In API mode the real app's Flask server listens on port 5001 with `/` and
`/api/status` (`{"status": "running", ...}`) among its routes; in --scheduled
mode (the demo's default, like production) the app itself serves no HTTP.
There is no `/health` in the app (the maintenance guide's `localhost:8000/health`
does not exist), so this server answers it 404 like any unknown path. It is
started and stopped with the demo's app process by ccops.demo.backend, stdlib
only so it starts in a fraction of a second, on a free port (several demos may
run on one machine) written to a state file.

    python -m ccops.demo.server --port 0 --state-file server.json
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

from ccops.core import fs

PROJECT = "Content Creator API"


class Handler(BaseHTTPRequestHandler):
    server_version = "ccops-demo/1.0"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/api/status":
            self._send(200, {"status": "running", "project": PROJECT})
        elif path == "/":
            self._send(200, {"message": PROJECT, "endpoints": ["/api/status", "/api/content/pending",
                                                               "/api/content/approve/<id>", "/api/content/reject/<id>",
                                                               "/api/run_pipeline"]})
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
    fs.write_atomic(path, json.dumps({"pid": pid, "port": port}), None)


def serve(port: int, state_file: Path | None) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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
    parser.add_argument("--state-file", default=None, help="where to write {pid, port} once listening")
    args = parser.parse_args(argv)
    serve(args.port, Path(args.state_file) if args.state_file else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
