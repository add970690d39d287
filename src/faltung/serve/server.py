"""The live page's HTTP server: the standard library's, because the page needs no more.

It serves three static files read once from this package at start-up, and four JSON
endpoints. No request names a file on disk: paths are looked up in a fixed table.
Bodies are limited (413), malformed input is a 400 with a message, and a failure in one
request never stops the server. Bound to 127.0.0.1 unless told otherwise; then it also
refuses requests whose Host header is not a loopback name (DNS rebinding).
"""

from __future__ import annotations

import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .engine import BadRequest, Engine

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def static_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (content, type) for every file shipped in faltung/serve/static."""
    table: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            table[f"/static/{entry.name}"] = (entry.read_bytes(), STATIC_TYPES[suffix])
    table["/"] = table["/static/index.html"]
    return table


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, max_body: int) -> None:
        self.engine, self.max_body = engine, max_body
        self.static = static_files()
        self.quiet = False
        super().__init__(address, Handler)
        host = address[0]
        self.check_host = host in LOOPBACK
        port = self.server_address[1]
        names = {*LOOPBACK, host}
        self.allowed_hosts = {f"{name}:{port}" for name in names}
        if port == 80:  # browsers leave the default port out of the Host header
            self.allowed_hosts |= names


class Handler(BaseHTTPRequestHandler):
    server: PageServer
    server_version = "faltung"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may stall (a short body, an idle keep-alive)
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for
    # the client's delayed ACK (about 40 ms on Linux) on every answer.
    disable_nagle_algorithm = True

    # -- routing -------------------------------------------------------------------------
    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        if url.path in self.server.static:
            content, kind = self.server.static[url.path]
            self._send(HTTPStatus.OK, content, kind)
        elif url.path == "/api/info":
            self._json(HTTPStatus.OK, self.server.engine.info())
        elif url.path == "/api/sample":
            kind = parse_qs(url.query).get("kind", ["random"])[0]
            self._answer(lambda: self.server.engine.sample(kind))
        elif url.path in ("/api/update", "/api/convolution"):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST", Allow="POST")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        routes = {
            "/api/update": self.server.engine.update,
            "/api/convolution": self.server.engine.convolution,
        }
        handler = routes.get(urlsplit(self.path).path)
        if handler is None:
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        payload = self._read_json()
        if payload is not None:
            self._answer(lambda: handler(payload))

    def do_HEAD(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET or POST", Allow="GET, POST")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD

    # -- helpers ---------------------------------------------------------------------------
    def _host_ok(self) -> bool:
        if self.server.check_host and self.headers.get("Host") not in self.server.allowed_hosts:
            self._discard_body()
            self._error(HTTPStatus.FORBIDDEN, "unexpected Host header")
            return False
        return True

    def _content_length(self) -> int | None:
        text = self.headers.get("Content-Length")
        try:
            length = int(text) if text is not None else None
        except ValueError:
            length = None
        return length if length is None or length >= 0 else None

    def _discard_body(self) -> None:
        length = self._content_length()
        if length and length <= self.server.max_body:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _read_json(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not chunks")
            return None
        length = self._content_length()
        if length is None:
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "a valid Content-Length is required")
            return None
        if length > self.server.max_body:
            # Not read: the connection closes instead.
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes exceeds the limit of {self.server.max_body}",
            )
            return None
        body = self.rfile.read(length)
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._error(HTTPStatus.BAD_REQUEST, f"malformed JSON: {error}")
            return None

    def _answer(self, compute) -> None:
        try:
            result = compute()
        except BadRequest as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
        except Exception as error:  # one request's failure must not stop the page
            self.log_error("internal error: %r", error)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {error}")
        else:
            self._json(HTTPStatus.OK, result)

    def _json(self, status: HTTPStatus, value: Any) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _error(self, status: HTTPStatus, message: str, **headers: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, "application/json", headers)

    def _send(
        self, status: HTTPStatus, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(
    engine: Engine, host: str = "127.0.0.1", port: int = 8000, max_body: int | None = None
) -> PageServer:
    """A server for ``engine`` (not yet serving: call ``serve_forever``). Port 0: any free."""
    limit = max_body or max(64 * 1024, 2 * engine.pixel_count() + 4096)
    return PageServer((host, port), engine, limit)
