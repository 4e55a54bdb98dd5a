"""Print a study's accuracy-at-target table as Markdown, straight from its ``results.json``.

The README's "Quick comparison at 90 % sparsity" table is this script's output for
``examples/methods-90.yaml`` (no hand-typed numbers):

    prunezoo run examples/methods-90.yaml --out runs
    python scripts/methods_table.py runs/methods-90-*/ --target 0.9

One line per method (mean over seeds): methods with a sparsity target show the row at ``--target``;
IMP shows the level whose sparsity is closest to it; methods without a target (STR, VD) show what
their training reached. The dense control comes first.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def table(rows: list[dict], target: float) -> str:
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)

    def pick(members: list[dict]) -> list[dict]:
        # rows of one configuration (all seeds): the level/target nearest to ``target``
        def key(r: dict) -> tuple:
            return r.get("level"), r.get("target_sparsity")

        groups: dict[tuple, list[dict]] = {}
        for r in members:
            groups.setdefault(key(r), []).append(r)
        return min(groups.values(), key=lambda g: abs(statistics.fmean(r["sparsity"] for r in g) - target))

    lines = ["| method | kind | sparsity | test acc | seeds |", "| --- | --- | --- | --- | --- |"]
    order = sorted(by_method, key=lambda m: (m != "dense", list(by_method).index(m)))
    for method in order:
        chosen = pick(by_method[method])
        sparsity = statistics.fmean(r["sparsity"] for r in chosen)
        accs = [r["test_acc"] for r in chosen]
        acc = f"{statistics.fmean(accs):.1%}"
        if len(accs) > 1:
            acc += f" ± {statistics.stdev(accs):.1%}"
        level = chosen[0].get("level")
        name = method + (f" (level {int(level)})" if chosen[0]["kind"] == "imp" and level is not None else "")
        lines.append(f"| {name} | {chosen[0]['kind']} | {sparsity:.1%} | {acc} | {len(accs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="study directory (holds results.json)")
    parser.add_argument("--target", type=float, default=0.9, help="sparsity to report per method")
    args = parser.parse_args()
    rows = json.loads((args.study / "results.json").read_text())["rows"]
    print(table(rows, args.target))


if __name__ == "__main__":
    main()
