#!/usr/bin/env python
"""Screenshot a whole HTML report with headless Chromium: ``render_report.py REPORT_HTML OUT_PNG [--width PX]``.

The page is laid out at ``--width`` CSS pixels (default 1400) and captured at its full height, however
long; elements that stick out of the report's column (wide tables, figures) are listed on stderr.
Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``): no network port, no extra package.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1400
# Offline and reproducible: no GPU, sandbox, first-run UI or background network traffic.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Runs in the page after load: size of the document and every table/figure/pre wider than its column.
_MEASURE = """(() => {
  const main = document.querySelector('main') || document.body;
  const right = main.getBoundingClientRect().right;
  const over = [...document.querySelectorAll('table, figure, img, pre')]
    .filter(e => e.getBoundingClientRect().right > right + 0.5 || e.scrollWidth > e.clientWidth + 0.5)
    .map(e => e.tagName.toLowerCase() + ': ' + (e.innerText || e.getAttribute('alt') || '').slice(0, 60));
  const el = document.documentElement;
  return JSON.stringify({width: el.scrollWidth, height: el.scrollHeight, overflow: over,
                         tables: document.querySelectorAll('table').length,
                         figures: document.querySelectorAll('figure img').length});
})()"""


def find_chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    """Minimal DevTools client: NUL-terminated JSON messages over fds 3 (to Chromium) and 4 (from it)."""

    def __init__(self, exe: str, profile: str, timeout: float) -> None:
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec; pass_fds keeps 3 and 4 open
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(3, 4),
            preexec_fn=child_fds,
        )
        os.close(to_r)
        os.close(from_w)
        self.deadline = time.monotonic() + timeout
        self._buf = b""
        self._next = 0
        self._events: list[str] = []

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > self.deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:  # an event that arrived before the reply: keep it for wait_event
                self._events.append(reply["method"])

    def wait_event(self, method: str) -> None:
        while method not in self._events:
            reply = self._read()
            if "method" in reply:
                self._events.append(reply["method"])
        self._events.remove(method)

    def close(self) -> str:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        os.close(self._to_w)
        os.close(self._from_r)
        return err.decode(errors="replace")


def render(html: Path, png: Path, width: int = WIDTH, timeout: float = 120.0) -> dict:
    """Write the full-page screenshot to ``png``; return the page metrics (width, height, overflow, ...)."""
    exe = find_chromium()
    if exe is None:
        raise SystemExit(
            f"error: chromium not found at {CHROMIUM} or on PATH (install it: apt-get install -y chromium)"
        )
    if not html.is_file():
        raise SystemExit(f"error: no such report: {html}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    # A throwaway profile keeps runs independent and avoids touching the user's Chromium profile.
    with tempfile.TemporaryDirectory(prefix="prunezoo-chromium-") as profile:
        pipe = _Pipe(exe, profile, timeout)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            pipe.call("Page.enable", session)
            pipe.call("Page.navigate", session, url=html.resolve().as_uri())
            pipe.wait_event("Page.loadEventFired")
            metrics = json.loads(
                pipe.call("Runtime.evaluate", session, expression=_MEASURE, returnByValue=True)["result"]["value"]
            )
            # Lay the whole page out in one viewport so nothing below the fold is cut or re-flowed.
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=metrics["height"],
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = pipe.call(
                "Page.captureScreenshot",
                session,
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": width, "height": metrics["height"], "scale": 1},
            )
        except (RuntimeError, TimeoutError, OSError, KeyError) as err:
            stderr = pipe.close()
            raise SystemExit(f"error: chromium failed: {err}\n{stderr[-2000:]}") from None
        pipe.close()
    png.write_bytes(base64.b64decode(shot["data"]))
    return metrics


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=WIDTH, help="window width in CSS pixels (default 1400)")
    args = parser.parse_args(argv)
    metrics = render(args.html, args.png, args.width)
    for item in metrics["overflow"]:
        print(f"warning: wider than the page at {args.width} px: {item}", file=sys.stderr)
    print(f"{args.png} ({args.width}x{metrics['height']} px, {metrics['tables']} tables, {metrics['figures']} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
