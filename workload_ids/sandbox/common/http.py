"""The HTTP server base of the emulators: a threaded server on 127.0.0.1, plain or TLS.

Each protocol supplies a :class:`Handler` whose :meth:`Handler.answer` turns one request
into a status, headers (sent in the order given) and a body; the base reads the body,
writes the answer, keeps the connection alive and stays quiet. ``HEAD`` is served only
by handlers that set ``do_HEAD`` (its answer sends no body).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Reply = tuple[int, Sequence[tuple[str, str]], bytes]
"""A status, the headers in the order they are sent, and the body."""


class Handler(BaseHTTPRequestHandler):
    """One request on a kept-alive connection; :meth:`answer` says what to send back."""

    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection
    # Without this each answer waits for the client's delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True

    def answer(self, body: bytes) -> Reply:
        """The reply to ``self.command`` on ``self.path`` with ``self.headers`` and ``body``."""
        raise NotImplementedError

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.answer(body)
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the sandbox would otherwise print every request."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Clients keep connections open; waiting for their threads on close would hang stop().
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(address, handler)
        self._tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake in the connection's own thread, so one slow client cannot block accept()."""
        if self._tls is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self._tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_RDWR)
            tls.close()


class HttpServer:
    """Serves ``handler`` on 127.0.0.1 in a background thread; TLS when given ``tls``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, thread_name: str,
                 tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.thread_name = thread_name
        self.tls = tls
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); return ``http(s)://127.0.0.1:PORT``."""
        if self._server is not None:
            return self.url
        self._server = _Server(("127.0.0.1", port), self.handler, self.tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        scheme = "http" if self.tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None
