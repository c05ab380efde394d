"""Real servers on loopback for the owner directory tests.

:class:`ScimServer` runs the SCIM 2.0 service provider of the ``scim2-server`` package
(in-memory storage, RFC 7643 schemas with the enterprise extension, static bearer
tokens enforced by its ``BearerTokenApplication``) in a background thread, and seeds it
through its own HTTP API. The other helpers serve what a broken or misconfigured
directory answers: a canned HTTP answer, a socket that never answers, bytes that are
not HTTP, a server that ignores ``startIndex`` or leaves out ``totalResults``.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """A WSGI application served on 127.0.0.1 on a free port, in a background thread."""

    def __init__(self, app: WSGIApplication, tls: ssl.SSLContext | None = None) -> None:
        self._server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_port
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _BrokenStorage(InMemoryStorage):
    """The in-memory storage, with a switch that makes every search fail (a database
    outage): the server then answers 500 with a SCIM error, as it would in production."""

    broken = False

    def search(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise RuntimeError("storage is down")
        return super().search(*args, **kwargs)


class ScimServer:
    """scim2-server on loopback, requiring ``Authorization: Bearer <token>``."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        config = load_default_service_provider_config()
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]  # 401s carry WWW-Authenticate
        provider = ScimProvider.from_discovery(load_default_schemas().values(),
                                               load_default_resource_types().values(), config=config)
        self.storage = _BrokenStorage()
        self.app = BearerTokenApplication(self.storage, provider,
                                          service=ScimService(provider, secret=secrets.token_urlsafe(32)),
                                          bearer_tokens=[self.token])
        self._servers: list[LoopbackServer] = []
        self.url = self.serve(self.app)

    def serve(self, app: WSGIApplication, tls: ssl.SSLContext | None = None) -> str:
        """Serve ``app`` (this server's application, perhaps wrapped) on a new port; its
        SCIM base URL."""
        server = LoopbackServer(app, tls)
        self._servers.append(server)
        return f"{server.origin}/v2"

    def stop(self) -> None:
        for server in self._servers:
            server.stop()

    # --- seeding, through SCIM over HTTP --------------------------------------------------

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # nosec B310 - loopback
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode()}") from None
        answer: dict[str, Any] = json.loads(raw) if raw else {}
        return answer

    def user(self, user_name: str, active: bool | None = True, manager: str | None = None) -> str:
        """Create a user; ``manager`` is the manager's SCIM id. Returns the new id."""
        body: dict[str, Any] = {"schemas": [USER], "userName": user_name}
        if active is not None:
            body["active"] = active
        if manager is not None:
            body["schemas"].append(ENTERPRISE)
            body[ENTERPRISE] = {"manager": {"value": manager}}
        return str(self.call("POST", "/Users", body)["id"])

    def set_manager(self, user_id: str, manager: str) -> None:
        self.call("PATCH", f"/Users/{user_id}", {"schemas": [PATCH], "Operations": [
            {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": manager}}]})

    def group(self, display_name: str, members: Iterable[str] = ()) -> str:
        """Create a group whose members are these SCIM user ids. Returns the new id."""
        body = {"schemas": [GROUP], "displayName": display_name,
                "members": [{"value": m, "type": "User"} for m in members]}
        return str(self.call("POST", "/Groups", body)["id"])


# --- what broken or misconfigured directories answer --------------------------------------

def canned(status: str, body: bytes, content_type: str = "text/html",
           headers: Iterable[tuple[str, str]] = (), seen: list[WSGIEnvironment] | None = None,
           ) -> WSGIApplication:
    """A WSGI app that answers every request the same way (and records each request)."""
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if seen is not None:
            seen.append(dict(environ))
        start_response(status, [("Content-Type", content_type), *headers])
        return [body]
    return app


def rewrite_query(app: WSGIApplication, change: Callable[[dict[str, str]], object]) -> WSGIApplication:
    """``app`` behind a middleware that edits each request's query parameters."""
    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        change(query)
        environ["QUERY_STRING"] = urllib.parse.urlencode(query)
        return app(environ, start_response)
    return middleware


def rewrite_json(app: WSGIApplication, change: Callable[[dict[str, Any]], None]) -> WSGIApplication:
    """``app`` behind a middleware that edits each JSON object it answers."""
    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, headers))
            return lambda data: None
        body = json.loads(b"".join(app(environ, keep)) or b"null")
        if isinstance(body, dict):
            change(body)
        data = json.dumps(body).encode()
        status, headers = captured[0]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(data)))])
        return [data]
    return middleware


class RawTcpServer:
    """A TCP listener on loopback that accepts connections and, for each, sends ``reply``
    and closes; with ``reply=None`` it never answers (the client times out)."""

    def __init__(self, reply: bytes | None) -> None:
        self._reply = reply
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            if self._reply is None:
                self._held.append(conn)
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                    conn.sendall(self._reply)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def self_signed_tls(directory: str) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for 127.0.0.1 and the path of the PEM file that trusts it."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = os.path.join(directory, "ca.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
