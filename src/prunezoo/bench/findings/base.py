"""Verdicts, power and the finding registry shared by every ``prunezoo reproduce`` finding.

A claim "A beats B" is tested on the per-seed paired differences d = A − B: it **holds** when the 95 %
t-interval of mean(d) lies above 0, it **does not hold** when the interval's upper end is below the
practical margin (any advantage of A is smaller than the margin, or B is better), and is
**inconclusive** otherwise. Nothing is hard-coded: the verdict follows from the numbers of a run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from prunezoo.experiments.summary import t_interval

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
CRITERION = (
    "each claim 'A beats B' is tested on paired differences d = A − B per seed (per model for a zoo): "
    "holds if the 95% "
    "t-interval of mean d is above 0; does not hold if its upper end is below the margin (0.5 pp for "
    "accuracy, 0 for training loss); otherwise inconclusive"
)
ACC_MARGIN = 0.005  # 0.5 percentage points: smaller accuracy gaps are not a practical advantage
SCALES = ("quick", "default", "paper")


@dataclass(frozen=True)
class Verdict:
    claim: str
    status: str
    measured: str
    criterion: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def min_detectable_effect(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test on ``n`` pairs with difference sd ``sd``
    detects with probability ``power`` at level ``alpha`` (noncentral t; nan below 2 pairs)."""
    if n < 2 or not sd > 0:
        return math.nan
    from scipy import integrate, optimize, stats

    df, crit = n - 1, float(stats.t.ppf(1 - alpha / 2, n - 1))

    # the chi2 mass (quad over [0, inf) misses the narrow peak of a large df)
    lo, hi_v = float(stats.chi2.ppf(1e-12, df)), float(stats.chi2.isf(1e-12, df))

    def achieved(delta: float) -> float:
        # P(|T| > crit) for T = (Z + nc) / sqrt(V / df), V ~ chi2(df): integrated over V (scipy's nct returns
        # nan for small df and large noncentralities)
        nc = delta * math.sqrt(n) / sd
        tail = lambda v: (
            (stats.norm.sf(crit * math.sqrt(v / df) - nc) + stats.norm.cdf(-crit * math.sqrt(v / df) - nc))
            * stats.chi2.pdf(v, df)
        )
        return integrate.quad(tail, lo, hi_v, limit=200)[0] - power

    hi = (crit + 4) * sd / math.sqrt(n)  # power ~1 there
    return float(optimize.brentq(achieved, 0.0, hi, xtol=1e-9 * sd))


@dataclass(frozen=True)
class Protocol:
    """A finding's pre-registered protocol: fixed before the run, printed with its power."""

    data: str
    model: str
    budget: str
    n: int  # paired units (seeds, or models of a zoo)
    claim: str
    margin: str
    expected_sd: float  # sd of the paired difference (or of rho across models), from a pilot or the last run
    unit: str = "pp"  # of expected_sd and the MDE
    sd_source: str = ""

    @property
    def mde(self) -> float:
        return min_detectable_effect(self.n, self.expected_sd)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mde": self.mde}

    def power_line(self) -> str:
        return (
            f"n = {self.n}, expected sd of the difference {self.expected_sd:g} {self.unit}: minimum detectable "
            f"effect {self.mde:.2f} {self.unit} (paired t-test, alpha 0.05 two-sided, power 0.8)"
        )


@dataclass(frozen=True)
class Finding:
    name: str
    paper: str
    claim: str
    study: Callable[[bool], dict] | None
    judge: Callable[[list[dict]], list[Verdict]]
    # findings that are not one study (e.g. a model zoo): (name, quick, out_root, run_options) -> (dir, rows)
    runner: Callable[..., tuple[Any, list[dict]]] | None = None
    protocol: Protocol | None = None
    # --scale paper: the papers' own setting as a study config (validated and planned by --dry-run)
    paper_study: Callable[[], dict] | None = None
    published: str = ""  # the paper's headline number(s), shown beside the measured ones
    # a second study (quick) -> config whose rows join the main study's for the judge: baselines that need
    # no pruning (e.g. small dense models of a width sweep) without running every method on them too
    companion: Callable[[bool], dict] | None = None


FINDINGS: dict[str, Finding] = {}


def register_finding(finding: Finding) -> Finding:
    if finding.name in FINDINGS:
        raise ValueError(f"finding {finding.name!r} registered twice")
    FINDINGS[finding.name] = finding
    return finding


def _paired(
    claim: str,
    a: dict[int, float],
    b: dict[int, float],
    *,
    a_label: str,
    b_label: str,
    above: float,
    below: float,
    criterion: str,
    scale: float,
    unit: str,
    over: str,
) -> Verdict:
    """Paired differences d = a − b (seeds in both): holds if the 95 % t-interval of mean d lies above
    ``above``, does not hold if its upper end is below ``below``, otherwise inconclusive."""
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    if not diffs:
        return Verdict(claim, INCONCLUSIVE, "no measurements", criterion, {"n": 0})
    mean = statistics.fmean(diffs)
    ci = t_interval(diffs)
    numbers = {
        "n": len(diffs),
        "mean_diff": mean,
        "ci95": ci,
        "a_mean": statistics.fmean(a[s] for s in seeds),
        "b_mean": statistics.fmean(b[s] for s in seeds),
        "diffs": diffs,
        "scale": scale,
        "unit": unit,
    }
    ci_text = f", 95% CI [{ci[0] * scale:+.2f}, {ci[1] * scale:+.2f}]" if ci else " (one seed: no interval)"
    measured = (
        f"{a_label} {numbers['a_mean'] * scale:.2f} vs {b_label} {numbers['b_mean'] * scale:.2f}: "
        f"d = {mean * scale:+.2f} {unit}{ci_text}, n = {len(diffs)} {over}"
    )
    if ci is not None and ci[0] > above:
        status = HOLDS
    elif ci is not None and ci[1] < below:
        status = FAILS
    else:
        status = INCONCLUSIVE
    return Verdict(claim, status, measured, criterion, numbers)


def paired_verdict(
    claim: str,
    a: dict[int, float],
    b: dict[int, float],
    *,
    a_label: str,
    b_label: str,
    margin: float = ACC_MARGIN,
    scale: float = 100.0,
    unit: str = "pp",
    over: str = "seeds",
) -> Verdict:
    """Verdict on "A > B" from per-seed values ``a``, ``b`` (paired by seed; unmatched seeds ignored)."""
    criterion = (
        f"paired over {over}, d = {a_label} − {b_label}: holds if the 95% t-interval of mean d is above 0; "
        f"does not hold if its upper end is below {margin * scale:g} {unit}; otherwise inconclusive"
    )
    return _paired(
        claim,
        a,
        b,
        a_label=a_label,
        b_label=b_label,
        above=0.0,
        below=margin,
        criterion=criterion,
        scale=scale,
        unit=unit,
        over=over,
    )


def noninferiority_verdict(
    claim: str,
    a: dict[int, float],
    b: dict[int, float],
    *,
    a_label: str,
    b_label: str,
    margin: float = ACC_MARGIN,
    scale: float = 100.0,
    unit: str = "pp",
    over: str = "seeds",
) -> Verdict:
    """Verdict on "A matches or beats B" (A >= B): holds if the 95 % interval of mean(A − B) is above
    −margin, does not hold if it is below −margin, otherwise inconclusive."""
    criterion = (
        f"paired over {over}, d = {a_label} − {b_label}: holds if the 95% t-interval of mean d is above "
        f"−{margin * scale:g} {unit} (non-inferiority); does not hold if its upper end is below "
        f"−{margin * scale:g} {unit}; otherwise inconclusive"
    )
    v = _paired(
        claim,
        a,
        b,
        a_label=a_label,
        b_label=b_label,
        above=-margin,
        below=-margin,
        criterion=criterion,
        scale=scale,
        unit=unit,
        over=over,
    )
    if v.numbers.get("n"):
        v.numbers["margin"] = -margin
    return v


def mean_verdict(claim: str, values: list[float], *, label: str, margin: float = 0.0, over: str = "models") -> Verdict:
    """Verdict on "mean of ``values`` > 0" (e.g. a per-model correlation): the t-interval decides as in
    :func:`paired_verdict`."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    zero = dict.fromkeys(range(len(vals)), 0.0)
    return paired_verdict(
        claim, dict(enumerate(vals)), zero, a_label=label, b_label="0", margin=margin, scale=1.0, unit="", over=over
    )


def overall(verdicts: list[Verdict]) -> str:
    """holds if every sub-claim holds; does not hold if none holds and one fails; else inconclusive."""
    statuses = {v.status for v in verdicts}
    if statuses == {HOLDS}:
        return HOLDS
    if FAILS in statuses and HOLDS not in statuses:
        return FAILS
    return INCONCLUSIVE


def decision(verdicts: list[Verdict]) -> str:
    """The finding as a whole: holds if every claim holds; does not hold if every claim is decided and one
    does not hold; inconclusive while any claim is undecided (unlike :func:`overall`, a decided mix of
    holding and failing claims is a decision: the finding as stated does not hold)."""
    statuses = {v.status for v in verdicts}
    if not statuses or INCONCLUSIVE in statuses:
        return INCONCLUSIVE
    return HOLDS if statuses == {HOLDS} else FAILS


def per_seed(rows: list[dict], field_: str = "test_acc", **match: Any) -> dict[int, float]:
    """Per seed: the mean of ``field_`` over rows matching every ``key=value`` (``sparsity_min`` compares)."""
    smin = match.pop("sparsity_min", None)
    out: dict[int, list[float]] = {}
    for r in rows:
        if any((r.get(k) or "") != v if k == "point" else r.get(k) != v for k, v in match.items()):
            continue
        if smin is not None and r["sparsity"] < smin - 1e-6:
            continue
        if r.get(field_) is not None:
            out.setdefault(r["seed"], []).append(float(r[field_]))
    return {s: statistics.fmean(v) for s, v in out.items()}


def correlation_verdict(claim: str, x: list[float], y: list[float], *, threshold: float = 0.9) -> Verdict:
    """Verdict on "Pearson r(x, y) > threshold" across a population, with a Fisher-z 95 % interval."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    criterion = (
        f"Pearson r over the population with a Fisher-z 95% interval: holds if r >= {threshold:g} and the "
        f"interval excludes 0; does not hold if its upper end is below {threshold:g}; otherwise inconclusive"
    )
    n = len(pairs)
    if n < 4 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return Verdict(claim, INCONCLUSIVE, f"{n} usable pairs (need >= 4, not constant)", criterion, {"n": n})
    r = float(stats.pearsonr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    z, half = math.atanh(max(min(r, 0.999999), -0.999999)), 1.959963984540054 / math.sqrt(n - 3)
    lo, hi = math.tanh(z - half), math.tanh(z + half)
    status = HOLDS if r >= threshold and lo > 0 else FAILS if hi < threshold else INCONCLUSIVE
    return Verdict(
        claim,
        status,
        f"r = {r:.3f}, 95% CI [{lo:.3f}, {hi:.3f}], n = {n} models",
        criterion,
        {"n": n, "r": r, "ci95": (lo, hi)},
    )


HIGH = 0.9  # "high sparsity" for the findings
