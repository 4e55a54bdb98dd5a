"""Replicate aggregation: one line per (sweep point, method, level/target) with mean ± std over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

MEAN_FIELDS = ("sparsity", "nnz", "compression", "flops_sparse", "flop_speedup", "test_acc", "val_acc", "train_loss")


def finite_or_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval for the mean of ``values`` (None below two values)."""
    if len(values) < 2:
        return None
    from scipy import stats

    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sem
    return mean - half, mean + half


def summarize(rows: Iterable[dict]) -> list[dict]:
    """Group rows by (point, method, kind, level, target_sparsity) in first-seen order.

    Each group has the mean of :data:`MEAN_FIELDS`, ``test_acc_std`` (sample std, 0 for one seed),
    the 95 % t-interval ``test_acc_ci95_low/high`` (None for one seed) and ``n`` (number of seeds).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (
            finite_or_none(r.get("point")) or "",
            r["method"],
            r["kind"],
            finite_or_none(r.get("level")),
            finite_or_none(r.get("target_sparsity")),
        )
        groups.setdefault(key, []).append(r)
    out = []
    for (point, method, kind, level, target), members in groups.items():
        agg = {
            "point": point,
            "method": method,
            "kind": kind,
            "level": level,
            "target_sparsity": target,
            "n": len(members),
        }
        for f in MEAN_FIELDS:
            vals = [v for v in (finite_or_none(m.get(f)) for m in members) if v is not None]
            agg[f] = statistics.fmean(vals) if vals else None
        accs = [m["test_acc"] for m in members if finite_or_none(m.get("test_acc")) is not None]
        agg["test_acc_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
        agg["test_acc_ci95_low"], agg["test_acc_ci95_high"] = t_interval(accs) or (None, None)
        out.append(agg)
    return out
