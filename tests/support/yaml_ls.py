"""Red Hat's yaml-language-server, driven over LSP (JSON-RPC on stdio) as an editor drives it.

It is installed from the npm registry at the version ``tools/yaml-language-server/package-lock.json``
pins (``.ci/run`` runs ``npm ci`` there). Without it the tests that need it are skipped,
except where ``WORKLOAD_IDS_REQUIRE_YAML_LS`` is set (CI sets it): there a missing server
fails them.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess  # nosec B404 - starts the pinned local language server, no shell
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SERVER = REPO / "tools" / "yaml-language-server" / "node_modules" / "yaml-language-server" / "bin" \
    / "yaml-language-server"
REQUIRE = "WORKLOAD_IDS_REQUIRE_YAML_LS"
TIMEOUT = 30.0


def available() -> bool:
    return SERVER.is_file() and shutil.which("node") is not None


def require() -> None:
    """Skip (or, with WORKLOAD_IDS_REQUIRE_YAML_LS set, fail) when the server is not installed."""
    from support.tools import wait_for_install
    wait_for_install()
    if available():
        return
    message = (f"yaml-language-server is not installed at {SERVER}: run `npm ci --ignore-scripts` "
               "in tools/yaml-language-server (node 20+ and npm)")
    if os.environ.get(REQUIRE):
        pytest.fail(message)
    pytest.skip(message)


class LanguageServer:
    """One running server: requests wait for their answer; notifications are queued."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._next = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.notifications: queue.Queue[dict[str, Any]] = queue.Queue()
        self.settings: dict[str, Any] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _write(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stdin.flush()

    def _read(self) -> None:
        stdout: IO[bytes] | None = self.process.stdout
        assert stdout is not None
        while True:
            length = 0
            while True:
                line = stdout.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            message = json.loads(stdout.read(length))
            if "id" in message and "method" in message:
                self._answer_server(message)
            elif "id" in message:
                with self._lock:
                    waiting = self._answers.get(message["id"])
                if waiting is not None:
                    waiting.put(message)
            else:
                self.notifications.put(message)

    def _answer_server(self, message: dict[str, Any]) -> None:
        """Requests from the server: the settings it asks for; null for the rest (progress
        tokens, capability registration)."""
        result: Any = None
        if message["method"] == "workspace/configuration":
            result = [self.settings.get(item.get("section", ""), None)
                      for item in message["params"]["items"]]
        self._write({"id": message["id"], "result": result})

    def request(self, method: str, params: dict[str, Any]) -> Any:
        with self._lock:
            self._next += 1
            ident = self._next
            answer: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[ident] = answer
        self._write({"id": ident, "method": method, "params": params})
        try:
            reply = answer.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"yaml-language-server did not answer {method} in {TIMEOUT}s") from None
        assert "error" not in reply, reply
        return reply.get("result")

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._write({"method": method, "params": params})

    def configure(self, schema: str, glob: str) -> None:
        """Map ``schema`` (a URL, or a path from the workspace root) to documents matching
        ``glob``, as ``yaml.schemas`` does in VS Code's settings."""
        self.settings = {"yaml": {"schemas": {schema: glob}, "validate": True,
                                  "hover": True, "completion": True,
                                  "schemaStore": {"enable": False}}}
        self.notify("workspace/didChangeConfiguration", {"settings": self.settings})

    def open(self, path: Path, text: str) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": path.as_uri(), "languageId": "yaml", "version": 1, "text": text}})

    def diagnostics(self, path: Path, settle: float = 0.5,
                    until: Callable[[list[dict[str, Any]]], bool] | None = None
                    ) -> list[dict[str, Any]]:
        """The diagnostics last published for ``path`` (the server may publish more than
        once: wait until it is quiet for ``settle`` seconds, or until ``until`` holds)."""
        uri = path.as_uri()
        found: list[dict[str, Any]] | None = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            waiting = found is not None and until is None
            try:
                message = self.notifications.get(timeout=settle if waiting else 1.0)
            except queue.Empty:
                if waiting:
                    return found or []
                continue
            if message.get("method") == "textDocument/publishDiagnostics" \
                    and message["params"]["uri"] == uri:
                found = message["params"]["diagnostics"]
                if until is not None and until(found):
                    return found
        raise AssertionError(f"no diagnostics for {uri} in {TIMEOUT}s (last: {found})")

    def configure_and_wait(self, schema: str, glob: str, probe: Path, text: str) -> None:
        """:meth:`configure`, then open ``probe`` (``text`` must draw a diagnostic from the
        schema) and wait until the server reports it: from then on, the schema is loaded and
        the settings applied, so an empty list of diagnostics means a clean document."""
        self.configure(schema, glob)
        self.open(probe, text)
        self.diagnostics(probe, until=bool)

    def completion(self, path: Path, line: int, character: int) -> list[dict[str, Any]]:
        result = self.request("textDocument/completion", {
            "textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": character}})
        items: list[dict[str, Any]] = result["items"] if isinstance(result, dict) else (result or [])
        return items

    def hover(self, path: Path, line: int, character: int) -> str:
        result = self.request("textDocument/hover", {
            "textDocument": {"uri": path.as_uri()}, "position": {"line": line, "character": character}})
        if not result:
            return ""
        contents = result["contents"]
        return str(contents["value"] if isinstance(contents, dict) else contents)


@contextmanager
def running(root: Path) -> Iterator[LanguageServer]:
    """A fresh server, initialized with ``root`` as its workspace, for the block."""
    require()
    node = shutil.which("node")
    assert node is not None
    process = subprocess.Popen(  # nosec B603 - a fixed local script, fixed arguments
        [node, str(SERVER), "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, cwd=root)
    server = LanguageServer(process)
    try:
        server.request("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(),
            "workspaceFolders": [{"uri": root.as_uri(), "name": "manifests"}],
            "capabilities": {
                "workspace": {"configuration": True, "didChangeConfiguration": {"dynamicRegistration": True}},
                "textDocument": {
                    "publishDiagnostics": {},
                    "hover": {"contentFormat": ["markdown", "plaintext"]},
                    "completion": {"completionItem": {"snippetSupport": False}}}}})
        server.notify("initialized", {})
        yield server
    finally:
        try:
            server.request("shutdown", {})
            server.notify("exit", {})
            process.wait(5)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(5)
