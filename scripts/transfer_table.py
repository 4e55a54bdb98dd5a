"""Print a sparse-transfer study's table as Markdown, straight from its ``results.json``.

The README's sparse-transfer table is this script's output for ``examples/sparse-transfer.yaml``
(no hand-typed numbers):

    prunezoo run examples/sparse-transfer.yaml --out runs
    python scripts/transfer_table.py runs/sparse-transfer-*/ --dense-ref dense-ref

One row per downstream task (sweep point), one column per transfer method: test accuracy at the
best-validation epoch, mean ± sample std over seeds; the study's dense row (trained from scratch on
the task) comes first. Then, per task, whether the paper's ordering for sparse models
(gradual-unfreeze >= extended >= dense recipe) held on the means, and each sparse recipe's gap to the
dense transfer (``--dense-ref``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ORDER = ("gradual-unfreeze", "extended", "dense")  # the paper's ranking of recipes for sparse models


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def tables(rows: list[dict], dense_ref: str) -> str:
    tasks = list(dict.fromkeys(r.get("point") or "" for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    methods.sort(key=lambda m: m != "dense")  # the from-scratch dense row first
    acc: dict[tuple[str, str], list[float]] = {}
    recipe: dict[str, str] = {}
    sparsity: dict[str, list[float]] = {}
    for r in rows:
        if r.get("test_acc") is None:
            continue
        acc.setdefault((r.get("point") or "", r["method"]), []).append(r["test_acc"])
        sparsity.setdefault(r["method"], []).append(r["sparsity"])
        if r.get("recipe"):
            recipe[r["method"]] = r["recipe"]

    def head(m: str) -> str:
        if m == "dense":
            return "dense (from scratch)"
        return f"{m} ({statistics.fmean(sparsity[m]):.0%} sparse)"

    lines = ["| task | " + " | ".join(head(m) for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
    verdicts = []
    for t in tasks:
        cells = []
        for m in methods:
            vals = acc.get((t, m), [])
            if not vals:
                cells.append("–")
                continue
            mean, std = _stats(vals)
            cells.append(f"{mean:.1%} ± {std:.1%} (n={len(vals)})")
        lines.append(f"| {t or '–'} | " + " | ".join(cells) + " |")
        # the paper's ordering, on the sparse methods of each recipe
        sparse = {recipe[m]: m for m in methods if m in recipe and m != dense_ref}
        means = {rc: statistics.fmean(acc[(t, m)]) for rc, m in sparse.items() if (t, m) in acc}
        if all(rc in means for rc in ORDER):
            held = means[ORDER[0]] >= means[ORDER[1]] >= means[ORDER[2]]
            ranking = " > ".join(sorted(means, key=means.get, reverse=True))
            ref = acc.get((t, dense_ref))
            gaps = ""
            if ref:
                base = statistics.fmean(ref)
                gaps = "; gap to dense transfer: " + ", ".join(
                    f"{rc} {(means[rc] - base) * 100:+.1f} pp" for rc in ORDER
                )
            verdicts.append(
                f"- {t}: gradual-unfreeze ≥ extended ≥ dense {'held' if held else 'did not hold'} "
                f"(measured order: {ranking}){gaps}"
            )
    return "\n".join(lines) + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="study directory (holds results.json)")
    parser.add_argument("--dense-ref", default="dense-ref", help="method name of the dense transfer baseline")
    args = parser.parse_args()
    rows = json.loads((args.study / "results.json").read_text())["rows"]
    print(tables(rows, args.dense_ref))


if __name__ == "__main__":
    main()
