"""One HTTPS server on loopback for the Azure emulators (ARM, Graph, Key Vault).

Bearer authentication in azure-core refuses plain HTTP, so each emulator speaks TLS with a
certificate from a throwaway ``trustme`` CA; clients trust it through
``connection_verify=server.ca_bundle_path``. An emulator supplies one function that
answers a request: ``(method, path with query, headers, body) -> (status, JSON or None)``,
or ``(status, JSON or None, extra headers)``. A :class:`RawBody` in place of the JSON is
sent as it is (Blob Storage answers in XML and in the blob's own bytes). Extra headers
replace the server's defaults of the same name (``Content-Type``, ``Content-Length``,
``x-ms-request-id``); a ``HEAD`` answer sends no body, so its ``Content-Length`` is the one
of the extra headers when they give one.
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import trustme

from ..common.http import Handler, HttpServer, Reply
from ..common.served import Served


@dataclass(frozen=True)
class RawBody:
    """An answer body that is not JSON: ``data`` sent as it is, labelled ``content_type``."""

    data: bytes
    content_type: str = "application/octet-stream"


Answer = tuple[int, Any] | tuple[int, Any, Mapping[str, str]]
Handle = Callable[[str, str, Mapping[str, str], bytes], Answer]


class HttpsJsonServer:
    """Serves ``handle`` over HTTPS on 127.0.0.1 in a background thread."""

    def __init__(self, handle: Handle, *, name: str = "azure-emulator") -> None:
        self.handle = handle
        self.name = name
        self.url = ""
        self.ca_bundle_path = ""
        self._http: HttpServer | None = None
        self._tmpdir: str | None = None

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); return ``https://127.0.0.1:PORT``."""
        if self._http is not None:
            return self.url
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._tmpdir = tempfile.mkdtemp(prefix=f"{self.name}-")
        bundle = Path(self._tmpdir) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self.ca_bundle_path = str(bundle)
        handler = type("Handler", (_Handler,), {"respond": staticmethod(self.handle)})
        self._http = HttpServer(handler, thread_name=f"{self.name}-https", tls=ctx)
        self.url = self._http.start(port)
        return self.url

    def stop(self) -> None:
        """Stop listening and remove the CA bundle (idempotent)."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class HttpsEmulator(Served):
    """Start, stop and ``with`` for an emulator whose :meth:`handle` answers requests;
    ``url`` and ``ca_bundle_path`` are set once it listens."""

    server_name: ClassVar[str] = "azure-emulator"
    url: str = ""
    ca_bundle_path: str = ""
    _server: HttpsJsonServer | None = None

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request (method, path, headers, body) with the emulator's response."""
        raise NotImplementedError

    def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1:``port`` (0: a free one); return ``https://127.0.0.1:PORT``."""
        if self._server is None:
            self._server = HttpsJsonServer(self.handle, name=self.server_name)
            self.url = self._server.start(port)
            self.ca_bundle_path = self._server.ca_bundle_path
        return self.url

    def stop(self) -> None:
        """Stop listening and remove the CA bundle (idempotent)."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class _Handler(Handler):
    respond: ClassVar[Handle]

    def answer(self, body: bytes) -> Reply:
        answer = type(self).respond(self.command, self.path, dict(self.headers.items()), body)
        status, payload = answer[0], answer[1]
        extra: Mapping[str, str] = answer[2] if len(answer) > 2 else {}
        defaults: dict[str, str] = {}
        if isinstance(payload, RawBody):
            data = payload.data
            defaults["Content-Type"] = payload.content_type
        elif payload is not None:
            data = json.dumps(payload).encode()
            defaults["Content-Type"] = "application/json; charset=utf-8"
        else:
            data = b""
        defaults["Content-Length"] = str(len(data))
        defaults["x-ms-request-id"] = str(uuid.uuid4())
        replaced = {key.lower() for key in extra}
        headers = [(key, value) for key, value in defaults.items() if key.lower() not in replaced]
        return status, [*headers, *extra.items()], data

    do_HEAD = Handler._dispatch
