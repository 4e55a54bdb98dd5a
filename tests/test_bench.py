"""Benchmark suites (fairness, baselines, operating points, CIs), published table, reproduce verdicts."""

import csv
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunezoo.bench import (
    aggregate,
    baseline_names,
    build_study,
    check_fairness,
    load_suite,
    published_results,
    run_bench,
)
from prunezoo.bench.reproduce import (
    FAILS,
    FINDINGS,
    HOLDS,
    INCONCLUSIVE,
    PLANNED,
    _iterative_judge,
    _mp_vd_judge,
    _random_judge,
    _underfit_judge,
    finding_config,
    overall,
    paired_verdict,
)
from prunezoo.bench.suites import BenchSuite
from prunezoo.cli import app
from prunezoo.errors import ConfigError
from prunezoo.experiments.plan import plan_study
from prunezoo.experiments.summary import summarize, t_interval

runner = CliRunner()
TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"steps": 6, "batch_size": 64, "lr": 0.1},
    "finetune": {"steps": 3, "batch_size": 64, "lr": 0.02},
}


def _suite(**extra) -> BenchSuite:
    return BenchSuite.model_validate({**TINY, **extra})


# -- suite → study ------------------------------------------------------------------------------------
def test_baselines_added_and_operating_points_filled():
    cfg = build_study(_suite(methods=[{"name": "gmp", "kind": "gmp"}, {"name": "imp", "kind": "imp"}]))
    by_name = {m.name: m for m in cfg.methods}
    assert {"random", "magnitude-global", "magnitude-layerwise"} <= set(by_name)
    assert (by_name["random"].criterion, by_name["random"].scheme) == ("random", "uniform")
    assert by_name["magnitude-layerwise"].scheme == "uniform" and by_name["magnitude-global"].scheme == "global"
    assert by_name["gmp"].sparsities == [0.5, 0.75, 0.875, 0.9375, 0.96875]  # 1 - 1/c for c = 2..32
    imp = by_name["imp"]
    assert imp.fraction == 0.5 and imp.levels == 5 and math.isclose(0.5**imp.levels, 1 / 32)
    assert cfg.replicates == 3


def test_equivalent_method_is_not_duplicated_and_name_clash_renames():
    methods = [
        {"name": "gm", "kind": "oneshot", "criterion": "magnitude", "scheme": "global"},
        {"name": "random", "kind": "oneshot", "criterion": "snip"},
    ]
    names = [m.name for m in build_study(_suite(methods=methods)).methods]
    assert "magnitude-global" not in names  # "gm" already is that baseline
    assert "baseline-random" in names and "magnitude-layerwise" in names
    assert baseline_names(_suite(methods=methods)) == {"gm", "baseline-random", "magnitude-layerwise"}


def test_structured_suite_gets_channel_baselines_and_channel_fractions():
    cfg = build_study(_suite(methods=[{"name": "fpgm", "kind": "structured", "criterion": "fpgm"}]))
    by_name = {m.name: m for m in cfg.methods}
    assert {"channels-random", "channels-l1-layerwise", "channels-l1-global"} <= set(by_name)
    assert by_name["channels-l1-global"].options == {"scope": "global"}
    # weights of a layer scale with (1 - r)^2: r = 1 - 1/sqrt(c)
    assert [round(1 / (1 - r) ** 2, 3) for r in by_name["fpgm"].sparsities] == [2, 4, 8, 16, 32]


def test_every_derived_job_shares_the_dense_checkpoint_and_finetune_budget():
    cfg = build_study(_suite(methods=[{"name": "snip", "kind": "at-init", "criterion": "snip"}]))
    jobs = plan_study(cfg)
    dense = {j.seed: j.id for j in jobs if j.kind == "dense"}
    assert len(dense) == 3
    oneshot = [j for j in jobs if j.kind == "oneshot"]
    assert oneshot and all(j.spec["parent"] == dense[j.seed] and j.deps == (dense[j.seed],) for j in oneshot)
    assert len({json.dumps(j.spec["finetune"], sort_keys=True) for j in oneshot}) == 1


def test_fairness_check_rejects_unequal_budgets(monkeypatch):
    import prunezoo.experiments.plan as plan

    cfg = build_study(_suite())
    real = plan.plan_study

    def skewed(c):
        jobs = real(c)
        j = next(j for j in jobs if j.kind == "oneshot")
        j.spec["finetune"] = {**j.spec["finetune"], "steps": 99}
        return jobs

    monkeypatch.setattr(plan, "plan_study", skewed)
    with pytest.raises(ConfigError, match="finetune"):
        check_fairness(cfg)


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"compressions": [2, 4, 8, 16]}, "compressions"),
        ({"compressions": [1, 2, 4, 8, 16]}, "compressions"),
        ({"seeds": 2}, "seeds"),
        ({"methods": [{"name": "x", "kind": "gmp", "sparsities": [0.9]}]}, "methods"),
        ({"methods": [{"name": "x", "kind": "vd", "options": {"epochs": 50}}]}, "methods"),
    ],
)
def test_bad_suites_name_the_field(tmp_path, extra, field):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**TINY, **extra}))
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert err.value.field.startswith(field)
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suite("no-such-suite")


def test_bundled_suites_validate_and_are_fair():
    for name in ("quick", "unstructured-mlp-digits", "structured-cnn"):
        cfg = build_study(load_suite(name))
        assert cfg.replicates >= 3 and len(cfg.methods) >= 4


# -- statistics ---------------------------------------------------------------------------------------
def test_t_interval_matches_student_t():
    lo, hi = t_interval([1.0, 2.0, 3.0])
    assert math.isclose(hi - 2.0, 4.302652729911275 / math.sqrt(3), rel_tol=1e-9) and math.isclose(lo + hi, 4.0)
    assert t_interval([1.0]) is None
    rows = [
        {"method": "m", "kind": "oneshot", "target_sparsity": 0.5, "test_acc": a, "seed": i}
        for i, a in enumerate([0.8, 0.9])
    ]
    (s,) = summarize(rows)
    assert s["test_acc_ci95_low"] < 0.85 < s["test_acc_ci95_high"]


def _row(method, kind, seed, acc, sparsity=0.0, target=None, **kw):
    return {
        "method": method,
        "kind": kind,
        "seed": seed,
        "test_acc": acc,
        "sparsity": sparsity,
        "target_sparsity": sparsity if target is None else target,
        "level": kw.pop("level", None),
        "point": kw.pop("point", ""),
        "nnz": 100 * (1 - sparsity),
        "compression": 1 / (1 - sparsity),
        "flop_speedup": 1 / (1 - sparsity),
        "train_flops": kw.pop("train_flops", 10.0),
        **kw,
    }


def test_aggregate_has_ci_delta_and_total_flops():
    rows = [_row("dense", "dense", s, 0.9 + 0.01 * s) for s in range(3)]
    rows += [_row("gm", "oneshot", s, 0.8 + 0.02 * s, 0.75, train_flops=1.0) for s in range(3)]
    dense, gm = aggregate(rows, frozenset({"gm"}))
    assert dense["kind"] == "dense" and dense["delta_vs_dense"] == 0
    assert gm["baseline"] and gm["target_compression"] == 4.0 and gm["n"] == 3
    assert math.isclose(gm["delta_vs_dense"], 0.82 - 0.91)
    assert gm["test_acc_ci95_low"] < gm["test_acc_mean"] < gm["test_acc_ci95_high"]
    assert gm["train_flops_total"] == 11.0  # its fine-tuning plus the shared dense training


# -- verdicts -------------------------------------------------------------------------------------------
def test_paired_verdict_three_ways():
    better = paired_verdict("a>b", {0: 0.9, 1: 0.91, 2: 0.92}, {0: 0.8, 1: 0.82, 2: 0.81}, a_label="a", b_label="b")
    assert better.status == HOLDS and better.numbers["ci95"][0] > 0 and "+" in better.measured
    worse = paired_verdict("a>b", {0: 0.7, 1: 0.71, 2: 0.72}, {0: 0.8, 1: 0.82, 2: 0.81}, a_label="a", b_label="b")
    assert worse.status == FAILS
    noisy = paired_verdict("a>b", {0: 0.9, 1: 0.7, 2: 0.85}, {0: 0.8, 1: 0.82, 2: 0.81}, a_label="a", b_label="b")
    assert noisy.status == INCONCLUSIVE
    one = paired_verdict("a>b", {0: 0.9}, {0: 0.1}, a_label="a", b_label="b")
    assert one.status == INCONCLUSIVE  # one seed gives no interval
    assert overall([better, better]) == HOLDS and overall([worse, noisy]) == FAILS
    assert overall([better, worse]) == INCONCLUSIVE


def test_judges_follow_synthetic_numbers():
    # one-shot better than iterative at high sparsity -> the iterative claim does not hold
    rows = [_row("oneshot", "oneshot", s, 0.8 + 0.01 * s, 0.9375) for s in range(3)]
    rows += [_row("iterative", "imp", s, 0.6 + 0.01 * s, 0.9375, level=4) for s in range(3)]
    rows += [_row("iterative", "imp", s, 0.99, 0.5, level=1) for s in range(3)]  # low sparsity: not counted
    (v,) = _iterative_judge(rows)
    assert v.status == FAILS and math.isclose(v.numbers["mean_diff"], -0.2)
    rows = [
        _row(m, "oneshot", s, acc + 0.005 * s, 0.95)
        for s in range(3)
        for m, acc in (("magnitude", 0.9), ("random", 0.3))
    ]
    rows += [
        _row(m, "at-init", s, acc + 0.004 * (s % 2), 0.95)
        for s in range(3)
        for m, acc in (("er-uniform", 0.5), ("er-erk", 0.7), ("er-balanced", 0.5))
    ]
    mag, erk, bal = _random_judge(rows)
    assert (mag.status, erk.status, bal.status) == (HOLDS, HOLDS, FAILS)
    short, long_ = "training.epochs=5", "training.epochs=20"
    rows = []
    for s in range(3):
        rows += [
            _row("dense", "dense", s, 0.90, point=short, train_loss=0.10 + 0.01 * s),
            _row("dense", "dense", s, 0.91, point=long_, train_loss=0.05),
            _row("gmp", "gmp", s, 0.70 + 0.01 * s, 0.95, point=short, train_loss=0.50 + 0.02 * s),
            _row("gmp", "gmp", s, 0.85 + 0.01 * s, 0.95, point=long_, train_loss=0.2),
        ]
    loss, gain = _underfit_judge(rows)
    assert loss.status == HOLDS and gain.status == HOLDS and math.isclose(gain.numbers["mean_diff"], 0.14)


def test_findings_build_valid_studies():
    for name, finding in FINDINGS.items():
        for quick in (True, False):
            if finding.study is not None:
                assert plan_study(finding_config(name, quick))
    with pytest.raises(ConfigError, match="unknown finding"):
        finding_config("nope")


def test_mp_vs_vd_judge_on_a_synthetic_zoo():
    rows = []
    for i in range(6):
        acc = 0.80 + 0.02 * i
        rows.append(
            {
                "group": "original",
                "method": "original",
                "level": None,
                "model": f"m{i}",
                "original": f"m{i}",
                "test_acc": acc,
                "sparsity": 0.0,
            }
        )
        for lv, drop in ((0.5, 0.01), (0.9, 0.30)):
            rows.append(
                {
                    "group": f"mp-{lv}",
                    "method": "mp",
                    "level": lv,
                    "model": f"m{i}",
                    "original": f"m{i}",
                    "test_acc": acc - drop - 0.001 * (i % 2),
                    "sparsity": lv,
                }
            )
        # VD lands at 70 %, where MP (interpolated: 0.5 -> 0.9) has lost 0.155; VD only 0.1
        rows.append(
            {
                "group": "vd",
                "method": "vd",
                "level": None,
                "model": f"m{i}",
                "original": f"m{i}",
                "test_acc": acc - 0.10 - 0.002 * (i % 3),
                "sparsity": 0.7,
            }
        )
    first, corr = _mp_vd_judge(rows)
    assert first.status == FAILS and first.numbers["n"] == 6  # VD beats MP below 80 %: the claim fails
    assert math.isclose(first.numbers["mean_diff"], -0.055 - 0.0005 + 0.002, abs_tol=1e-3)
    assert corr.status == HOLDS and corr.numbers["r"] > 0.99
    for r in rows:
        if r["method"] == "vd":
            r["sparsity"] = 0.85  # above 80 %: the claim becomes "VD beats MP"
    assert _mp_vd_judge(rows)[0].status == HOLDS


# -- published table ------------------------------------------------------------------------------------
REFERENCE = Path("/work/shared/reference")


def test_published_rows_are_complete_and_point_at_findings():
    rows = published_results()
    assert len(rows) >= 20
    for r in rows:
        assert r.paper and r.model and r.dataset and r.protocol and r.metric and r.source.endswith(".md")
        assert r.finding is None or r.finding in FINDINGS or r.finding in PLANNED
    assert {r.finding for r in published_results("random-baseline")} == {"random-baseline"}


def _states_number(text: str, value: float) -> bool:
    """``value`` appears in ``text`` as a whole number ("28" is not found in "128" or "28.5")."""
    forms = {format(value, "g"), format(value, ",g")}
    return any(re.search(rf"(?<![\d.,]){re.escape(f)}(?![\d]|[.,]\d)", text) for f in forms)


def test_states_number_matches_whole_numbers_only():
    assert _states_number("compression of 12x", 12) and _states_number("17,926 units", 17926)
    assert _states_number("(94.66%)", 94.66) and _states_number("error 0.159.", 0.159)
    for text in ("128 units", "28.5%", "1.28", "3,28"):
        assert not _states_number(text, 28), text


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference notes not on this machine")
def test_published_values_are_stated_in_the_reference_notes():
    for r in published_results():
        text = (REFERENCE / r.source).read_text()
        assert _states_number(text, r.value), (r.paper, r.value)


# -- end to end ---------------------------------------------------------------------------------------------
def test_bench_runs_and_writes_csv_and_html_with_separate_published_table(tmp_path):
    suite = _suite(name="tiny", compressions=[2, 4, 8, 16, 32])
    res = run_bench(suite, tmp_path / "runs", workers=1, progress=False)
    with res.csv.open() as fh:
        table = list(csv.DictReader(fh))
    assert {
        "test_acc_ci95_low",
        "test_acc_ci95_high",
        "test_acc_std",
        "compression",
        "nnz",
        "flop_speedup",
        "train_flops_total",
    } <= set(table[0])
    assert table[0]["method"] == "dense" and table[0]["n"] == "3"
    methods = {r["method"] for r in table}
    assert {"random", "magnitude-global", "magnitude-layerwise"} <= methods
    assert {float(r["target_compression"]) for r in table if r["method"] == "random"} == {2, 4, 8, 16, 32}
    html = res.html.read_text()
    measured, published = html.split("<h2>Published", 1)
    assert "Measured" in measured and "94.66%" in published and "94.66" not in measured
    # rerun reuses the finished study (no training) and rewrites the same report
    results = res.csv.parent.parent / "results.json"
    before = {p: p.stat().st_mtime_ns for p in [results, *res.csv.parent.parent.glob("runs/*/final.safetensors")]}
    res.csv.unlink()
    res.html.unlink()
    again = runner.invoke(
        app, ["bench", str(_write(tmp_path, suite)), "--out", str(tmp_path / "runs"), "--workers", "1"]
    )
    assert again.exit_code == 0, again.output
    assert "already complete" in again.stderr
    assert len(before) > 1 and {p: p.stat().st_mtime_ns for p in before} == before  # nothing retrained
    assert res.html.read_text() == html and list(csv.DictReader(res.csv.open())) == table


def _write(tmp_path, suite: BenchSuite) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite.model_dump(mode="json")))
    return path


def test_cli_errors_and_listings(tmp_path):
    res = runner.invoke(app, ["bench", "no-such-suite", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "suite" in res.output
    assert not any(tmp_path.iterdir())
    res = runner.invoke(app, ["bench", "quick", "--seeds", "2", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "seeds" in res.output
    res = runner.invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0 and all(name in res.output for name in FINDINGS)
    res = runner.invoke(app, ["reproduce", "no-such-finding", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown finding" in res.output
    res = runner.invoke(app, ["published"])
    assert res.exit_code == 0 and "94.66%" in res.output


def test_reproduce_quick_prints_claim_measured_and_computed_verdict(tmp_path):
    res = runner.invoke(app, ["reproduce", "iterative-vs-oneshot", "--quick", "--out", str(tmp_path), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "paper's claim" in res.output and "overall:" in res.output
    (saved,) = tmp_path.glob("reproduce-*/reproduce.json")
    data = json.loads(saved.read_text())
    v = data["verdicts"][0]
    assert v["status"] in (HOLDS, FAILS, INCONCLUSIVE) and v["numbers"]["n"] == 2
    assert data["overall"] == overall([type("V", (), {"status": x["status"]}) for x in data["verdicts"]])


@pytest.mark.slow
def test_reproduce_mp_vs_vd_quick_runs_a_zoo(tmp_path):
    from prunezoo.bench.reproduce import reproduce

    directory, verdicts = reproduce("mp-vs-vd", tmp_path, quick=True, workers=1, progress=False)
    assert len(verdicts) == 2 and all(v.status in (HOLDS, FAILS, INCONCLUSIVE) for v in verdicts)
    assert json.loads((directory / "reproduce.json").read_text())["verdicts"][0]["numbers"]["n"] == 4
    assert directory.name.startswith("reproduce-mp-vs-vd-quick-")
