"""The HTTPS server: stdlib http.server, one thread per connection, TLS handshake per thread.

Owns `SimServer(app, bind, port, ssl_context)`: HTTP/1.1 with keep-alive, Content-Length and
chunked request bodies (at most MAX_BODY bytes; larger → 413), `Expect: 100-continue`, and an
idle timeout per connection. The TLS handshake happens in the connection's own thread (with a
deadline), so a stalled client cannot block the accept loop. Every request becomes a
simkit.app.Request for `app.dispatch`; its Response is written back as JSON (or raw bytes).
`start()` returns once listening; `stop()` stops accepting and closes the socket.
"""

import json
import socket
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import Headers, Request
from .spec.base import NO_BODY

MAX_BODY = 4 * 1024 * 1024
HANDSHAKE_TIMEOUT = 15.0
IDLE_TIMEOUT = 120.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "simkit"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        ctx = self.server.ssl_context
        if ctx is not None:
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            self.request = ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write(f"{self.server.app.name}: {fmt % args}\n")

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self):
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(400, {"error": "malformed request body"}, Headers(), None, None)
            return
        if raw is None:
            self.close_connection = True
            self._send(413, {"error": f"request body larger than {MAX_BODY} bytes"}, Headers(),
                       None, None)
            return
        parts = urllib.parse.urlsplit(self.path)
        req = Request(method=self.command, path=urllib.parse.unquote(parts.path) or "/",
                      query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                      headers=Headers(self.headers.items()), raw_body=raw,
                      client=self.client_address)
        resp = self.server.app.dispatch(req)
        self._send(resp.status, resp.body, resp.headers, resp.raw, resp.content_type)

    def _send(self, status, body, headers, raw, content_type):
        if raw is not None:
            data = raw
        elif body is NO_BODY or body is None and status == 204:
            data = b""
        else:
            data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        for k, v in headers.items():
            if k not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, str(v))
        if data and "content-type" not in headers:
            self.send_header("Content-Type", content_type or self.server.app.json_content_type)
        if status != 204 and status >= 200:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD" and status != 204:
            self.wfile.write(data)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout, TimeoutError,
                            BrokenPipeError)):
            return
        if self.verbose or not isinstance(exc, OSError):
            sys.stderr.write(f"{self.app.name}: connection from {client_address}: {exc!r}\n")


class SimServer:
    def __init__(self, app, bind="127.0.0.1", port=0, ssl_context=None, verbose=False):
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET

        class Server(_Server):
            address_family = family
        self.httpd = Server((bind, port), _Handler)
        self.httpd.app = app
        self.httpd.ssl_context = ssl_context
        self.httpd.verbose = verbose
        self.bind = bind
        self.port = self.httpd.server_address[1]
        host = "127.0.0.1" if bind in ("0.0.0.0", "") else ("::1" if bind == "::" else bind)
        host = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{self.port}"
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="simkit-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=10.0):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
