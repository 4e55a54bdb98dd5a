"""`prunezoo reproduce`: power (MDE), the new findings' judges on synthetic paired data, --all with its
JSON + HTML report, --scale paper --dry-run, the README findings table, and every finding run --quick."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunezoo.bench.findings import double_descent, er_allocation, lottery_ticket, sparse_training
from prunezoo.bench.findings.base import Finding, Protocol, mean_verdict, min_detectable_effect, noninferiority_verdict
from prunezoo.bench.reproduce import (
    FAILS,
    FINDINGS,
    HOLDS,
    INCONCLUSIVE,
    SCALES,
    _layer_judge,
    paired_verdict,
    per_seed,
    plan_finding,
    reproduce,
    reproduce_all,
)
from prunezoo.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
NOISE = (0.004, -0.003, 0.002, -0.001, 0.0, 0.003)  # small per-seed jitter (fixed: no RNG in the data)


def _row(method, kind, seed, acc, sparsity=0.0, **kw) -> dict:
    return {
        "method": method,
        "kind": kind,
        "seed": seed,
        "test_acc": acc,
        "val_acc": kw.pop("val_acc", acc),
        "sparsity": sparsity,
        "point": kw.pop("point", ""),
        "level": kw.pop("level", None),
        "nnz": kw.pop("nnz", 100),
        "prunable": kw.pop("prunable", 1000),
        **kw,
    }


# -- power ----------------------------------------------------------------------------------------------
def test_mde_gives_power_08_under_scipys_noncentral_t():
    from scipy import stats

    for n, sd in ((5, 5.75), (10, 2.0), (15, 1.0)):
        mde = min_detectable_effect(n, sd)
        crit, nc = stats.t.ppf(0.975, n - 1), mde * math.sqrt(n) / sd
        power = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
        assert power == pytest.approx(0.8, abs=1e-6)
        # above the normal approximation (z_0.975 + z_0.8) sd / sqrt(n): the t-test pays for estimating sd
        assert mde > (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / math.sqrt(n)
    # v1 of iterative-vs-oneshot (n = 5, sd 5.75 pp): hand value from the same formula
    assert min_detectable_effect(5, 5.75) == pytest.approx(9.6715, abs=1e-3)
    assert min_detectable_effect(15, 5.75) < min_detectable_effect(5, 5.75)
    assert math.isnan(min_detectable_effect(1, 1.0))


def test_every_finding_has_a_protocol_with_power_and_a_paper_setting():
    assert len(FINDINGS) >= 9
    for name, f in FINDINGS.items():
        assert f.protocol is not None and f.protocol.n >= 5, name
        assert f.published, name
        assert math.isfinite(f.protocol.mde) and f.protocol.mde > 0, name
        assert "minimum detectable effect" in f.protocol.power_line()
        doc = (f.study or f.runner).__doc__ or ""
        if f.study is not None and f.study.__module__.startswith("prunezoo.bench.findings."):
            doc = sys.modules[f.study.__module__].__doc__
        assert f.paper_study is not None or f.runner is not None, name
        assert "protocol" in doc.lower(), f"{name}: protocol not pre-registered in a docstring"


# -- verdicts ---------------------------------------------------------------------------------------------
def test_decision_needs_every_claim_decided():
    from prunezoo.bench.findings.base import Verdict, decision

    v = lambda status: Verdict("c", status, "", "")
    assert decision([v(HOLDS), v(HOLDS)]) == HOLDS
    assert decision([v(HOLDS), v(FAILS)]) == FAILS  # decided, and the finding as stated does not hold
    assert decision([v(FAILS), v(INCONCLUSIVE)]) == INCONCLUSIVE and decision([]) == INCONCLUSIVE


def test_noninferiority_and_mean_verdicts_three_ways():
    base = {s: 0.9 + NOISE[s] for s in range(5)}
    shift = lambda d: {s: v + d + NOISE[s] / 4 for s, v in base.items()}
    assert noninferiority_verdict("a>=b", shift(-0.002), base, a_label="a", b_label="b").status == HOLDS
    assert noninferiority_verdict("a>=b", shift(-0.05), base, a_label="a", b_label="b").status == FAILS
    noisy = {s: v + (0.03 if s % 2 else -0.03) for s, v in base.items()}
    assert noninferiority_verdict("a>=b", noisy, base, a_label="a", b_label="b").status == INCONCLUSIVE
    v = noninferiority_verdict("a>=b", shift(-0.05), base, a_label="a", b_label="b")
    assert v.numbers["mean_diff"] == pytest.approx(-0.05, abs=2e-3) and v.numbers["ci95"][1] < -0.005
    assert mean_verdict("rho>0", [0.5, 0.6, 0.7, 0.55], label="rho").status == HOLDS
    assert mean_verdict("rho>0", [-0.5, -0.6, -0.7, -0.55], label="rho").status == FAILS
    assert mean_verdict("rho>0", [0.9, -0.8, 0.7, -0.9], label="rho").status == INCONCLUSIVE


def _lth_rows(ticket: float, reinit: float, randmask: float, spread: float = 0.0) -> list[dict]:
    rows = []
    for s in range(6):
        rows.append(_row("dense", "dense", s, 0.90 + NOISE[s]))
        for lv in range(1, 11):
            acc = ticket + NOISE[s] + (spread if s % 2 else -spread)
            rows.append(_row("lth", "imp", s, acc, 1 - 0.8**lv, level=lv, early_stop_step=100 + lv))
        for lv in (8, 9, 10):
            rows.append(_row("lth/reinit", "branch", s, reinit + NOISE[s], 1 - 0.8**lv, level=lv, early_stop_step=300))
            rows.append(_row("lth/randmask", "branch", s, randmask + NOISE[s], 1 - 0.8**lv, level=lv))
    return rows


def test_lottery_ticket_judge_three_ways():
    ok = lottery_ticket.judge(_lth_rows(0.91, 0.85, 0.84))
    assert [v.status for v in ok] == [HOLDS, HOLDS, HOLDS]
    assert ok[0].numbers["early_stop_steps"]["ticket"] and "early-stopping" in ok[0].claim
    bad = lottery_ticket.judge(_lth_rows(0.80, 0.95, 0.95))
    assert [v.status for v in bad] == [FAILS, FAILS, FAILS]
    noisy = lottery_ticket.judge(_lth_rows(0.90, 0.90, 0.90, spread=0.05))
    assert {v.status for v in noisy} == {INCONCLUSIVE}


def _er_rows(accs: dict[str, float], narrow_shift: float) -> list[dict]:
    """Allocation accuracies on the wide net (the one v3 judges them on); the narrow net is the same
    shifted by ``narrow_shift`` (negative: a larger gap to dense when narrow)."""
    rows = []
    for s in range(6):
        for point, prunable, shift in (("w=[100, 100]", 1000, narrow_shift), ("w=[400, 400]", 9000, 0.0)):
            rows.append(_row("dense", "dense", s, 0.95 + NOISE[s], point=point, prunable=prunable))
            for scheme, acc in accs.items():
                for sp in (0.9, 0.95):
                    a = acc + shift + NOISE[s] / 2
                    rows.append(_row(f"er-{scheme}", "at-init", s, a, sp, point=point, prunable=prunable))
    return rows


def test_er_allocation_judge_three_ways():
    good = er_allocation.judge(_er_rows({"uniform": 0.80, "erk": 0.85, "balanced": 0.86, "pyramidal": 0.85}, -0.08))
    assert [v.status for v in good] == [HOLDS] * 4
    assert "400" in good[0].claim  # v3: the allocations are compared on the wide net
    bad = er_allocation.judge(_er_rows({"uniform": 0.90, "erk": 0.85, "balanced": 0.70, "pyramidal": 0.70}, 0.1))
    assert [v.status for v in bad] == [FAILS] * 4
    # what the narrow net does to the allocations does not decide claims 1-3
    rows = [
        {**r, "test_acc": 0.1} if r["point"].endswith("100]") and r["method"] == "er-balanced" else r
        for r in _er_rows({"uniform": 0.80, "erk": 0.85, "balanced": 0.86, "pyramidal": 0.85}, -0.08)
    ]
    assert er_allocation.judge(rows)[0].status == HOLDS


def _st_rows(accs: dict[str, tuple[float, float]], spread: float = 0.0) -> list[dict]:
    rows = []
    for s in range(6):
        for i, point in enumerate(("training.epochs=10", "training.epochs=40")):
            rows.append(_row("dense", "dense", s, 0.97, point=point))
            for j, (m, pair) in enumerate(accs.items()):
                jitter = NOISE[s] + (spread if (s + i + j) % 2 else -spread)
                rows.append(_row(m, m, s, pair[i] + jitter, 0.95, point=point))
    return rows


def test_sparse_training_methods_judge_three_ways():
    good = sparse_training.judge(_st_rows({"acdc": (0.90, 0.94), "gmp": (0.88, 0.93), "rigl": (0.85, 0.91)}))
    assert [v.status for v in good] == [HOLDS] * 5
    bad = sparse_training.judge(_st_rows({"acdc": (0.80, 0.80), "gmp": (0.85, 0.85), "rigl": (0.90, 0.90)}))
    assert [v.status for v in bad] == [FAILS] * 5
    noisy = sparse_training.judge(_st_rows({"acdc": (0.9, 0.9), "gmp": (0.9, 0.9), "rigl": (0.9, 0.9)}, 0.05))
    assert {v.status for v in noisy} == {INCONCLUSIVE}


def _dd_rows(curve: list[float], small_dense: dict[int, float]) -> list[dict]:
    """Widest net (256) with IMP levels whose test/val accuracy follow ``curve`` (level 0 = dense); small
    dense nets with ``small_dense`` = {params: accuracy}."""
    rows = []
    for s in range(6):
        for lv, acc in enumerate(curve):
            kind = "dense" if lv == 0 else "imp"
            a = acc + NOISE[s] / 2
            rows.append(
                _row(
                    "dense" if lv == 0 else "imp",
                    kind,
                    s,
                    a,
                    1 - 0.7**lv,
                    point="h=[256]",
                    level=lv or None,
                    nnz=round(10240 * 0.7**lv),
                    prunable=10240,
                )
            )
        for params, acc in small_dense.items():
            rows.append(_row("dense", "dense", s, acc + NOISE[s] / 2, point=f"h={params}", nnz=params, prunable=params))
    return rows


def test_sparse_double_descent_judge_three_ways():
    descent = [0.80, 0.78, 0.74, 0.76, 0.83, 0.85, 0.70]  # rises (error), falls to level 5, collapses
    good = double_descent.judge(_dd_rows(descent, {320: 0.75, 640: 0.78}))
    assert [v.status for v in good] == [HOLDS, HOLDS, HOLDS]
    assert good[2].numbers["b_mean"] == round(10240 * 0.7**5)
    monotone = [0.86, 0.84, 0.82, 0.80, 0.78]  # pruning only hurts: the best level is the dense one
    bad = double_descent.judge(_dd_rows(monotone, {320: 0.90}))  # a small dense net beats every pruned one
    assert [v.status for v in bad] == [FAILS, FAILS, FAILS]
    assert bad[2].numbers["mean_diff"] == 320 - 10240


def test_layer_size_sparsity_judge_three_ways():
    sizes = [150, 2400, 4800, 1600, 100]

    def rows(sign: float, noisy: bool = False) -> list[dict]:
        out = []
        for i in range(8):
            flip = -1.0 if noisy and i % 2 else 1.0
            for method, level in (("mp", 0.9), ("mp", 0.5), ("vd", None)):
                for layer, size in enumerate(sizes):
                    sp = 0.5 + sign * flip * 0.4 * (size / 4800) + 0.001 * i
                    out.append(
                        {"method": method, "level": level, "model": f"m{i}", "layer": f"l{layer}", "size": size}
                        | {"group": f"{method}-{level}", "sparsity": sp}
                    )
        return out

    assert [v.status for v in _layer_judge(rows(+1))] == [HOLDS, HOLDS]
    assert [v.status for v in _layer_judge(rows(-1))] == [FAILS, FAILS]
    assert [v.status for v in _layer_judge(rows(+1, noisy=True))] == [INCONCLUSIVE, INCONCLUSIVE]


# -- --all with tiny findings -----------------------------------------------------------------------------
TINY_STUDY = {
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "replicates": 2,
    "training": {"steps": 4, "batch_size": 64, "lr": 0.1},
    "finetune": {"steps": 2, "batch_size": 64, "lr": 0.02},
    "methods": [{"name": "mag", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.5]}],
}


def _tiny_judge(rows):
    return [
        paired_verdict(
            "magnitude at 50 % vs dense",
            per_seed(rows, method="mag"),
            per_seed(rows, kind="dense"),
            a_label="mag",
            b_label="dense",
        )
    ]


def _tiny_findings() -> dict[str, Finding]:
    proto = Protocol("digits", "mlp-8", "4 steps", 2, "tiny", "0.5 pp", 1.0)
    return {
        f"tiny-{i}": Finding(
            f"tiny-{i}",
            "test paper",
            f"tiny claim {i}",
            lambda quick, i=i: {**TINY_STUDY, "seed": i},
            _tiny_judge,
            protocol=proto,
            paper_study=lambda: {**TINY_STUDY, "replicates": 3},
            published="12x",
        )
        for i in range(2)
    }


def _findings_table(run_json: Path) -> str:
    """What ``python scripts/findings_table.py <run_json>`` prints (the README table)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "findings_table.py"), str(run_json)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_all_quick_writes_json_and_html_and_reuses_finished_findings(tmp_path, monkeypatch):
    import prunezoo.bench.reproduce as rp

    monkeypatch.setattr(rp, "FINDINGS", _tiny_findings())
    logs: list[str] = []
    payload, json_path, html_path = reproduce_all(tmp_path, quick=True, workers=1, progress=False, log=logs.append)
    data = json.loads(json_path.read_text())
    assert [r["finding"] for r in data["findings"]] == ["tiny-0", "tiny-1"]
    for r in data["findings"]:
        assert r["overall"] in (HOLDS, FAILS, INCONCLUSIVE) and r["wall_s"] > 0 and r["protocol"]["mde"] > 0
        assert r["verdicts"][0]["numbers"]["n"] == 2 and r["published"] == "12x" and Path(r["directory"]).is_dir()
    assert data["total_wall_s"] == pytest.approx(sum(r["wall_s"] for r in data["findings"]))
    html = html_path.read_text()
    assert "data:image/png;base64," in html and "tiny claim 1" in html and "wall time" in html
    # resumable: a second run reuses both studies and keeps the wall time that produced them
    payload2, _, _ = reproduce_all(tmp_path, quick=True, workers=1, progress=False)
    assert [r["wall_s"] for r in payload2["findings"]] == [r["wall_s"] for r in data["findings"]]
    # the README table generated from that JSON
    out = _findings_table(json_path)
    assert out.startswith("| finding | paper's claim | published | measured") and "`tiny-1`" in out
    assert "2 findings, scale `quick`" in out
    decided = sum(r["decision"] != INCONCLUSIVE for r in data["findings"])
    assert f"{decided} of 2 decided (holds or does not hold)" in out
    for r in data["findings"]:
        assert (r["decision"] != HOLDS) == (f"- `{r['finding']}` {r['decision']}" in out)


def test_cli_all_prints_total_wall_time_and_dry_run_plans_every_finding(tmp_path, monkeypatch):
    import prunezoo.bench.reproduce as rp

    # the real findings at paper scale: validated and planned, nothing written, no data read
    res = runner.invoke(
        app, ["reproduce", "--all", "--scale", "paper", "--dry-run", "--format", "json", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    plans = json.loads(res.stdout)
    assert {p["finding"] for p in plans} == set(FINDINGS) and all(p["jobs"] > 0 for p in plans)
    assert not any(tmp_path.iterdir())
    res = runner.invoke(app, ["reproduce", "sparse-double-descent", "--dry-run", "--format", "json"])
    (plan,) = json.loads(res.stdout)  # the default scale counts the companion study's jobs too
    assert plan["jobs"] == plan_finding("sparse-double-descent")["jobs"] + 4 * double_descent.SDD_SEEDS
    monkeypatch.setattr(rp, "FINDINGS", _tiny_findings())
    res = runner.invoke(app, ["reproduce", "--all", "--quick", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "total wall time" in res.output and (tmp_path / "reproduction.html").exists()
    assert len(json.loads((tmp_path / "reproduction.json").read_text())["findings"]) == 2


def test_bad_scale_and_contradictions_exit_2_and_write_nothing(tmp_path):
    res = runner.invoke(app, ["reproduce", "--all", "--scale", "huge", "--dry-run", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "scale" in res.output
    res = runner.invoke(app, ["reproduce", "lottery-ticket", "--all", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--all" in res.output
    res = runner.invoke(app, ["reproduce", "lottery-ticket", "--quick", "--scale", "paper", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "scale" in res.output
    res = runner.invoke(app, ["reproduce", "--all", "--scale", "paper", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "dry-run" in res.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("scale", [s for s in SCALES if s != "paper"])  # paper: the CLI --dry-run test above
def test_plan_every_finding_at_every_scale(scale):
    for name in FINDINGS:
        plan = plan_finding(name, scale)
        assert plan["jobs"] > 0 and plan["n"] >= 2 and plan["protocol"]["mde"] > 0


# -- every finding, --quick ---------------------------------------------------------------------------------
# the zoo findings train a zoo and its twins (~6 s idle, ~50 s on a loaded machine): slow
SLOW_QUICK = {"mp-vs-vd", "layer-size-sparsity"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_QUICK else n for n in FINDINGS])
def test_every_finding_runs_quick(name, tmp_path):
    directory, verdicts = reproduce(name, tmp_path, quick=True, workers=1, progress=False)
    assert verdicts and all(v.status in (HOLDS, FAILS, INCONCLUSIVE) for v in verdicts)
    saved = json.loads((Path(directory) / "reproduce.json").read_text())
    assert saved["finding"] == name and saved["scale"] == "quick" and saved["wall_s"] > 0
    assert len(saved["verdicts"]) == len(verdicts)


def test_companion_study_rows_join_the_judged_rows(tmp_path):
    # sparse-double-descent prunes only the wide net; its small dense models come from a companion study
    assert FINDINGS["sparse-double-descent"].companion is not None
    directory, verdicts = reproduce("sparse-double-descent", tmp_path, quick=True, workers=1, progress=False)
    baselines = list(tmp_path.glob("reproduce-sparse-double-descent-baselines-quick-*"))
    assert len(baselines) == 1 and baselines[0] != Path(directory)
    small = json.loads((baselines[0] / "results.json").read_text())["rows"]
    assert {r["kind"] for r in small} == {"dense"} and len(small) == 2  # one width x 2 seeds, no pruning
    params = verdicts[2].numbers
    assert params["n"] == 2  # claim 3 saw a small dense model for every seed
    plan = plan_finding("sparse-double-descent", "default")
    assert plan["companion"]["jobs"] == 4 * double_descent.SDD_SEEDS


def test_readme_findings_table_is_generated_from_the_committed_run():
    # the README's table is scripts/findings_table.py's output for docs/reproduction/reproduction.json, verbatim
    run_json = ROOT / "docs" / "reproduction" / "reproduction.json"
    out = _findings_table(run_json)
    assert out in (ROOT / "README.md").read_text()
    payload = json.loads(run_json.read_text())
    assert payload["scale"] == "default" and len(payload["findings"]) == len(FINDINGS)
    assert all(r["wall_s"] <= 600 for r in payload["findings"])  # each default budget within 10 minutes
