#!/usr/bin/env python
"""Screenshot an HTML report with headless Chromium: ``render_report.py REPORT_HTML OUT_PNG``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WINDOW = "1400,4000"


def find_chromium() -> str | None:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(html: Path, png: Path, timeout: float = 120.0) -> None:
    exe = find_chromium()
    if exe is None:
        raise SystemExit(f"error: chromium not found at {CHROMIUM} or on PATH "
                         "(install it: apt-get install -y chromium)")
    if not html.is_file():
        raise SystemExit(f"error: no such report: {html}")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    # A throwaway profile keeps runs independent and avoids touching the user's Chromium profile.
    with tempfile.TemporaryDirectory(prefix="prunezoo-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
               f"--window-size={WINDOW}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png.exists():
        raise SystemExit(f"error: chromium failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    render(Path(argv[0]), Path(argv[1]))
    print(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
