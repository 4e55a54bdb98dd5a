"""Replicate aggregation: one line per (sweep point, method, level/target) with mean ± std over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

MEAN_FIELDS = ("sparsity", "nnz", "compression", "flops_sparse", "flop_speedup", "test_acc", "val_acc", "train_loss")


def _clean(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def summarize(rows: Iterable[dict]) -> list[dict]:
    """Group rows by (point, method, kind, level, target_sparsity) in first-seen order.

    Each group has the mean of :data:`MEAN_FIELDS`, ``test_acc_std`` (sample std, 0 for one seed)
    and ``n`` (number of seeds).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (_clean(r.get("point")) or "", r["method"], r["kind"], _clean(r.get("level")),
               _clean(r.get("target_sparsity")))
        groups.setdefault(key, []).append(r)
    out = []
    for (point, method, kind, level, target), members in groups.items():
        agg = {"point": point, "method": method, "kind": kind, "level": level, "target_sparsity": target,
               "n": len(members)}
        for f in MEAN_FIELDS:
            vals = [v for v in (_clean(m.get(f)) for m in members) if v is not None]
            agg[f] = statistics.fmean(vals) if vals else None
        accs = [m["test_acc"] for m in members if _clean(m.get("test_acc")) is not None]
        agg["test_acc_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
        out.append(agg)
    return out
