"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

The protocol runs over a pair of pipes (``--remote-debugging-pipe``: commands on the
browser's fd 3, answers and events on its fd 4, each message JSON ended by a NUL byte), so
the driver needs nothing beyond the standard library: no browser download, no websocket
client, no listening port.

Tests skip when Chromium is missing, except where ``WORKLOAD_IDS_REQUIRE_CHROMIUM=1`` is set
(CI sets it): there a missing browser fails them.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REQUIRE = "WORKLOAD_IDS_REQUIRE_CHROMIUM"
# The flags python.md lists as known to work here, plus the pipe.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe")


def chromium() -> str:
    """The browser's path; skip (or, with WORKLOAD_IDS_REQUIRE_CHROMIUM=1, fail) without it."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get(REQUIRE) == "1":
        pytest.fail("chromium is not installed and WORKLOAD_IDS_REQUIRE_CHROMIUM=1: "
                    "apt-get install -y chromium (.ci/run does)")
    pytest.skip("chromium is not installed (.ci/run installs it and requires these tests)")


class Browser:
    """One Chromium process with a fresh profile, spoken to over its DevTools pipe."""

    def __init__(self, profile: Path, timeout: float = 30) -> None:
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next = 0
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser's ends are moved above 9 first, so the shell's `3<&N 4>&M` can never
        # overwrite one end with the other (a pipe end may itself be fd 3 or 4 here).
        to_browser_r, from_browser_w = (self._high(to_browser_r), self._high(from_browser_w))
        self.log = profile.parent / f"{profile.name}.log"
        # bash (dash takes single-digit fds only) moves the two pipe ends to the fd numbers
        # Chromium expects, then becomes it.
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", script, chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
        os.close(to_browser_r)
        os.close(from_browser_w)

    @staticmethod
    def _high(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return moved

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one protocol command and return its result (an error fails the test)."""
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == ident:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_event(self, method: str, match: Callable[[dict[str, Any]], bool] = lambda _: True,
                   timeout: float | None = None) -> dict[str, Any]:
        """The first unconsumed event named ``method`` that ``match`` accepts (it is consumed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for n, event in enumerate(self.events):
                if event.get("method") == method and match(event):
                    del self.events[n]
                    return event
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"Chromium did not answer in time; its log: {self.log}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium closed the pipe; its log: {self.log}\n"
                                     + self.log.read_text(errors="replace")[-2000:])
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def new_page(self, width: int = 1400, height: int = 1000) -> Page:
        """A new tab with the Page, Runtime and Network domains on (every request recorded)."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Network", "Log"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        return page

    def close(self) -> None:
        """Ask the browser to quit; kill it if it does not."""
        try:
            if self.process.poll() is None:
                self.send("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)


class Page:
    """One tab: navigate, evaluate, click and type as a person would, take screenshots."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """A protocol command in this tab's session."""
        return self.browser.send(method, self.session, **params)

    def events(self, method: str) -> list[dict[str, Any]]:
        """The params of every event of this tab named ``method`` received so far (kept)."""
        return [e["params"] for e in self.browser.events
                if e.get("method") == method and e.get("sessionId") == self.session]

    def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.send("Page.navigate", url=url)
        self.browser.wait_event("Page.loadEventFired", lambda e: e.get("sessionId") == self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a thrown error fails the test)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element's first box
        (a link that wraps has one box per line, and the gap between them is not the link)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getClientRects()[0];"
            " return [r.x + r.width / 2, r.y + r.height / 2, r.width * r.height]; })()")
        assert box[2] > 0, f"{selector} is not visible"
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click into the field, select what it holds and type ``text`` over it."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
        if text:
            self.send("Input.insertText", text=text)
        else:
            for kind in ("keyDown", "keyUp"):
                self.send("Input.dispatchKeyEvent", type=kind, key="Backspace", code="Backspace",
                          windowsVirtualKeyCode=8)

    def choose(self, selector: str, value: str) -> None:
        """Pick an option of a ``<select>`` (its popup is not drawn headless): the events a pick fires."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      f" e.value = {json.dumps(value)};"
                      " e.dispatchEvent(new Event('input', {bubbles: true}));"
                      " e.dispatchEvent(new Event('change', {bubbles: true})); })()")

    def close(self) -> None:
        """Close the tab."""
        target = self.send("Target.getTargetInfo")["targetInfo"]["targetId"]
        self.browser.send("Target.closeTarget", targetId=target)

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG."""
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def running_browser(profile: Path) -> Iterator[Browser]:
    """A headless Chromium with its profile in ``profile`` (skips or fails as :func:`chromium`
    says when there is none), closed at the end."""
    chromium()
    running = Browser(profile)
    try:
        yield running
    finally:
        running.close()
