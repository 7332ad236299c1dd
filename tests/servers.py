"""For the http and llm tests: real servers on 127.0.0.1 (threads, ports chosen by
the OS), and runs of a workflow in this process through the engine."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import threading

import trio
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

from conftest import write
from runner.engine.run import RunOptions, run_workflow
from runner.load.workflow import load_workflow


class Handler(BaseHTTPRequestHandler):
    """A handler with helpers; subclasses define `route(method, path, query, body)`."""

    protocol_version = "HTTP/1.1"
    server: "Server"

    def log_message(self, format, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections["opened"] += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.connections["closed"] += 1

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.server.lock:
            self.server.requests.append(
                {
                    "method": self.command, "path": parts.path, "query": parts.query, "headers": dict(self.headers),
                    "body": body, "client": self.client_address,
                }
            )
        self.server.arrived.set()
        try:
            self.route(self.command, parts.path, query, body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def route(self, method: str, path: str, query: dict, body: bytes) -> None:
        raise NotImplementedError

    def reply(self, status: int, body: bytes | str | Any = b"", content_type: str | None = None, headers: dict | None = None) -> None:
        if not isinstance(body, (bytes, str)):
            body, content_type = json.dumps(body), content_type or "application/json"
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type or "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: type[Handler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.state: dict[str, Any] = {}
        self.connections = {"opened": 0, "closed": 0}  # by clients: how many, and how many they closed
        self.arrived = threading.Event()
        self.scheme = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def serve(handler: type[Handler], tls: tuple[Path, Path] | None = None) -> Iterator[Server]:
    """`handler` served on a free port of 127.0.0.1 (with TLS given (cert, key)) while the block runs."""
    server = Server(handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, tls))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True,
    )
    return cert, key


class Run:
    """A finished run: its outcome, the `--output-json` document and the `--events` lines."""

    def __init__(self, outcome, summary, events):
        self.outcome = outcome
        self.summary = summary
        self.events = events

    def job(self, job_id):
        return self.summary["jobs"][job_id]

    def logs(self, node=None):
        return [e["line"] for e in self.events if e["type"] == "log" and (node is None or e["node"] == node)]


def run(tmp_path, text, monkeypatch=None, secrets=None, inputs=None) -> Run:
    """Run a workflow in this process through the engine, as `runner run` does."""
    for name, value in (secrets or {}).items():
        monkeypatch.setenv(name, value)
    workflow, _ = load_workflow(write(tmp_path, text))
    out, events = tmp_path / "out.json", tmp_path / "events.jsonl"
    options = RunOptions(
        inputs=inputs or {}, state_dir=str(tmp_path / "state"), events=str(events), output_json=str(out),
    )
    outcome = trio.run(run_workflow, workflow, options)
    return Run(outcome, json.loads(out.read_text()), [json.loads(line) for line in events.read_text().splitlines()])
