"""A real headless Chromium for the integration tests, driven over the DevTools protocol on
a pipe (``--remote-debugging-pipe``: no WebSocket client needed): navigate, read the page
and its accessibility tree, and click like a mouse does (no script runs in the page).

Debian's ``chromium`` package; tests skip with the reason when it is not installed, as the
HTML report's browser test does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb")


class Browser:
    """One Chromium process with one page (a tab)."""

    def __init__(self, profile: Path, *flags: str) -> None:
        assert CHROMIUM is not None
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def pipes() -> None:  # the protocol's fixed descriptors: 3 in, 4 out
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self._proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"], pass_fds=(3, 4), preexec_fn=pipes,  # noqa: PLW1509 - test only
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._id = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.page("Page.enable")
        self.page("DOM.enable")

    # -------------------------------------------------------------- the protocol ----------

    def _next(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout_s)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self._events.append(reply)

    def page(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call(method, params, self.session)

    def wait_for(self, event: str, timeout_s: float = 30.0) -> dict[str, Any]:
        for i, e in enumerate(self._events):
            if e.get("method") == event:
                return self._events.pop(i)
        while True:
            e = self._next(timeout_s)
            if e.get("method") == event:
                return e
            self._events.append(e)

    # -------------------------------------------------------------- what a test does ------

    def goto(self, url: str) -> None:
        """Navigate as a person typing or tapping a link would, and wait for the load."""
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        self.page("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def text(self) -> str:
        return str(self.page("Runtime.evaluate", {"expression": "document.body.innerText",
                                                   "returnByValue": True})["result"]["value"])

    def url(self) -> str:
        return str(self.page("Runtime.evaluate", {"expression": "location.href",
                                                   "returnByValue": True})["result"]["value"])

    def box(self, selector: str) -> tuple[float, float, float, float]:
        """``(x, y, width, height)`` of the first element matching ``selector``, in CSS px."""
        root = self.page("DOM.getDocument")["root"]["nodeId"]
        node = self.page("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise AssertionError(f"no element {selector!r} on {self.url()}")
        quad = self.page("DOM.getBoxModel", {"nodeId": node})["model"]["border"]
        xs, ys = quad[0::2], quad[1::2]
        return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)

    def click(self, selector: str) -> None:
        """A left mouse click in the middle of the element, and wait for the next page."""
        x, y, w, h = self.box(selector)
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        for kind in ("mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", {"type": kind, "x": x + w / 2, "y": y + h / 2,
                                                   "button": "left", "clickCount": 1})
        self.wait_for("Page.loadEventFired")

    def accessibility(self) -> list[dict[str, Any]]:
        """The page's accessibility tree as ``{role, name, pressed}`` of each named node."""
        out = []
        for node in self.page("Accessibility.getFullAXTree")["nodes"]:
            if node.get("ignored"):
                continue
            props = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}
            out.append({"role": node.get("role", {}).get("value"),
                        "name": node.get("name", {}).get("value"),
                        "pressed": props.get("pressed")})
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        os.close(self._write)
        os.close(self._read)
