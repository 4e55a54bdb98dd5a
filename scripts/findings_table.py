"""Markdown findings table for the README from a ``prunezoo reproduce --all`` run's ``reproduction.json``.

    python scripts/findings_table.py runs/reproduction.json > table.md

One row per finding: paper claim, published number, measured effect(s) with 95 % intervals, verdict and
wall time; below the table, every finding that does not hold (or is inconclusive) with its evidence.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def findings_table(payload: dict) -> str:
    """The markdown table (and the notes on findings that do not hold) of one reproduction payload."""
    lines = [
        "| finding | paper's claim | published | measured (this run) | verdict | wall time |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for rec in payload["findings"]:
        verdict = rec.get("decision", rec["overall"])  # every claim decided: holds / does not hold
        measured = "; ".join(f"{v['measured']} ({v['status']})" for v in rec["verdicts"])
        lines.append(
            f"| `{rec['finding']}` | {_cell(rec['claim'])} | {_cell(rec.get('published') or '–')} | "
            f"{_cell(measured)} | **{verdict}** | {_wall(rec.get('wall_s'))} |"
        )
        if verdict != "holds":
            failing = [v for v in rec["verdicts"] if v["status"] != "holds"]
            why = "; ".join(f"{_cell(v['claim'])}: {_cell(v['measured'])} → {v['status']}" for v in failing)
            notes.append(f"- `{rec['finding']}` {verdict}: {why}")
    total = payload.get("total_wall_s")
    machine = payload.get("machine") or {}
    lines.append("")
    decided = sum(rec.get("decision", rec["overall"]) != "inconclusive" for rec in payload["findings"])
    slowest = max((rec.get("wall_s") or 0 for rec in payload["findings"]), default=0)
    lines.append(
        f"{len(payload['findings'])} findings, scale `{payload.get('scale', '?')}`, total wall time {_wall(total)}"
        + (f" on {machine['cpus']} CPUs" if machine.get("cpus") else "")
        + f"; {decided} of {len(payload['findings'])} decided (holds or does not hold); slowest finding "
        + f"{_wall(slowest)}."
    )
    if notes:
        lines += ["", "Findings that do not hold (or are not decided) in this run, and why:", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="reproduction.json of a `prunezoo reproduce --all` run")
    args = parser.parse_args(argv)
    try:
        payload = json.loads(args.json.read_text())
        sys.stdout.write(findings_table(payload))
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {args.json}: {err!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
