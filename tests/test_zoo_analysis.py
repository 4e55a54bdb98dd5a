"""Zoo analyses: pure metrics against hand-computed values / sklearn / scipy, and analyze_zoo on a tiny
synthetic zoo written with the layout writers (3 MLPs on digits and three twin sets with known properties)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import cohen_kappa_score

from prunezoo.errors import ConfigError
from prunezoo.zoo import layout
from prunezoo.zoo.analysis import (
    ORIGINAL,
    accuracy_correlation,
    agreement,
    analyze_zoo,
    cohen_kappa,
    generalization_gap,
    js_divergence,
    linear_cka,
    size_sparsity_correlation,
)

# ------------------------------------------------------------------------------ pure metrics


def test_agreement_counts_identical_predictions_from_labels_or_logits():
    assert agreement([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    logits_a = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    logits_b = torch.tensor([[5.0, 1.0], [4.0, 3.0], [9.0, 0.0]])  # argmax 0, 0, 0
    assert agreement(logits_a, logits_b) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="length"):
        agreement([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="no predictions"):
        agreement([], [])


def test_cohen_kappa_hand_value_sklearn_and_edge_cases():
    # p_o = 3/4; marginals (1/2, 1/2) and (1/4, 3/4): p_e = 1/2 -> kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert cohen_kappa([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (300,), generator=g)
    b = torch.where(torch.rand(300, generator=g) < 0.6, a, torch.randint(0, 5, (300,), generator=g))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a.numpy(), b.numpy()), abs=1e-12)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa([3, 3, 3], [3, 3, 3]) == 1.0  # chance agreement 1: identical by convention
    # Both predict the majority class except once each, on different samples: agreement high, kappa < 0.
    assert agreement([0, 0, 0, 1], [0, 0, 1, 0]) == 0.5
    assert cohen_kappa([0, 0, 0, 1], [0, 0, 1, 0]) == pytest.approx(-1 / 3)


def test_js_divergence_matches_scipy_and_bounds():
    g = torch.Generator().manual_seed(1)
    la, lb = torch.randn(40, 6, generator=g), 3 * torch.randn(40, 6, generator=g)
    expected = np.mean(jensenshannon(la.softmax(1).numpy(), lb.softmax(1).numpy(), axis=1) ** 2)
    assert js_divergence(la, lb) == pytest.approx(expected, rel=1e-5)
    assert js_divergence(la, la) == pytest.approx(0.0, abs=1e-12)
    one_hot_a, one_hot_b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert js_divergence(one_hot_a, one_hot_b, from_logits=False) == pytest.approx(math.log(2))
    assert js_divergence(one_hot_a, one_hot_b, from_logits=False, base=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        js_divergence(la, lb[:, :3])


def test_linear_cka_invariances_and_hand_value():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 5.0 * x @ q + 2.0) == pytest.approx(1.0)  # orthogonal map, isotropic scale, shift
    assert linear_cka(x, torch.randn(100, 8, generator=g)) < 0.3
    assert linear_cka(x, x * torch.tensor([1.0] * 4 + [10.0] * 4)) < 0.99  # anisotropic scaling is not invariant
    # 1-D: centred X = (-1, 0, 1), Y = X^2 centred = (-11, -2, 13) / 3: (Y^T X)^2 = 64, X^T X = 2,
    # Y^T Y = 98 / 3 -> CKA = 64 / (2 * 98 / 3) = 192 / 196 (the squared Pearson correlation)
    x1 = torch.tensor([[1.0], [2.0], [3.0]])
    assert linear_cka(x1, x1**2) == pytest.approx(192 / 196)
    assert linear_cka(x1, x1**2) == pytest.approx(stats.pearsonr([1, 2, 3], [1, 4, 9]).statistic ** 2)
    # fewer samples than features (Gram form) agrees with the feature-space formula
    xs, ys = torch.randn(5, 20, generator=g).double(), torch.randn(5, 30, generator=g).double()
    xc, yc = xs - xs.mean(0), ys - ys.mean(0)
    direct = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(xs, ys) == pytest.approx(float(direct))
    assert math.isnan(linear_cka(torch.ones(4, 3), x[:4]))


def test_population_correlations_match_scipy():
    orig = [0.91, 0.85, 0.78, 0.95, 0.88]
    twin = [0.89, 0.80, 0.79, 0.93, 0.84]
    c = accuracy_correlation(orig, twin)
    r, tau = stats.pearsonr(orig, twin), stats.kendalltau(orig, twin)
    assert c.n == 5
    assert (c.pearson_r, c.pearson_p) == pytest.approx((r.statistic, r.pvalue))
    assert (c.kendall_tau, c.kendall_p) == pytest.approx((tau.statistic, tau.pvalue))
    assert math.isnan(accuracy_correlation([0.9, 0.8], [0.7, 0.6]).pearson_r)  # < 3 pairs
    assert math.isnan(accuracy_correlation([0.9, 0.8, 0.7], [0.5, 0.5, 0.5]).kendall_tau)  # constant twin
    assert accuracy_correlation([0.9, math.nan, 0.7, 0.6], [0.8, 0.1, 0.6, 0.5]).n == 3  # NaN pairs dropped
    rho, p = size_sparsity_correlation([1000, 10, 100], [0.9, 0.1, 0.5])
    assert rho == pytest.approx(1.0) and p == pytest.approx(0.0, abs=1e-6)
    assert size_sparsity_correlation([10, 100, 1000], [0.9, 0.5, 0.1])[0] == pytest.approx(-1.0)
    assert generalization_gap(0.97, 0.9) == pytest.approx(0.07)


# ------------------------------------------------------------------------------ a synthetic zoo

DATA = {"name": "digits", "max_train": 60, "max_test": 150}
HIDDEN = [12, 8]  # fc1 64x12 = 768, fc2 12x8 = 96, fc3 8x10 = 80 weights
LAYER_FRACTIONS = {"fc1.weight": 0.75, "fc2.weight": 0.5, "fc3.weight": 0.25}
ORIG_ACC = [0.80, 0.70, 0.90]


def _params(seed: int) -> dict:
    return {
        "model": "mlp",
        "model_options": {"hidden": HIDDEN},
        "num_classes": 10,
        "input_shape": [1, 8, 8],
        "dataset": DATA,
        "seed": seed,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "epochs": 1,
        "batch_size": 10,
    }


def _write_model(model_dir, params, states, accs, done=True):
    layout.write_params(model_dir, params)
    rows = []
    for epoch, (state, (train_acc, test_acc)) in enumerate(zip(states, accs)):
        layout.save_state(model_dir, epoch, state)
        rows.append({"epoch": epoch, "train_loss": 1.0, "train_acc": train_acc, "test_loss": 1.0, "test_acc": test_acc})
    layout.write_results(model_dir, rows)
    if done:
        layout.mark_done(model_dir, rows)


def _prune_layerwise(state: dict) -> dict:
    out = dict(state)
    for name, frac in LAYER_FRACTIONS.items():
        w = state[name].clone()
        k = round(frac * w.numel())
        idx = w.abs().flatten().argsort()[:k]
        w.view(-1)[idx] = 0.0
        out[name] = w
    return out


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    layout.write_zoo_config(root, {"kind": "zoo", "name": "tiny", "dataset": DATA})
    sets = {"mp-0.5": ("mp", 0.5), "same-0.1": ("same", 0.1), "vd": ("vd", None)}
    for name, (method, level) in sets.items():
        layout.write_zoo_config(
            layout.twin_set_dir(root, name), {"kind": "twins", "name": name, "method": {"name": method}, "level": level}
        )
    for i, acc in enumerate(ORIG_ACC):
        params = _params(i)
        torch.manual_seed(i)
        model = layout.build_member_model(params)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        final = {k: v + 0.1 * torch.randn_like(v) for k, v in init.items()}
        name = f"mlp-s{i}"
        _write_model(root / name, params, [init, final], [(0.1, 0.1), (acc + 0.05, acc)])
        twin_params = {**params, "original": name}
        # MP-like twin: layer-wise magnitude pruning with known fractions; accuracy = original - 0.1
        _write_model(
            layout.twin_set_dir(root, "mp-0.5") / name,
            twin_params,
            [_prune_layerwise(final)] * 2,
            [(acc, acc - 0.1), (acc - 0.02, acc - 0.1)],
        )
        # identical twin
        _write_model(layout.twin_set_dir(root, "same-0.1") / name, twin_params, [final], [(acc + 0.05, acc)])
        # logits scaled by 2 (positive): same argmax and penultimate layer, different softmax
        scaled = {**final, "fc3.weight": 2 * final["fc3.weight"], "fc3.bias": 2 * final["fc3.bias"]}
        _write_model(layout.twin_set_dir(root, "vd") / name, twin_params, [scaled], [(0.5, 0.4 + 0.1 * i)])
    # an unfinished model (no done.json) is ignored
    _write_model(root / "mlp-s9", _params(9), [init], [(0.1, 0.1)], done=False)
    return root


@pytest.fixture(scope="module")
def analysis(zoo):
    return analyze_zoo(zoo)


def test_groups_distributions_and_order(analysis):
    assert [g.group for g in analysis.groups] == [ORIGINAL, "mp-0.5", "same-0.1", "vd"]
    orig = analysis.group(ORIGINAL)
    assert orig.n == 3 and {r["model"] for r in analysis.rows(ORIGINAL)} == {"mlp-s0", "mlp-s1", "mlp-s2"}
    assert orig.test_acc["mean"] == pytest.approx(0.8) and orig.test_acc["std"] == pytest.approx(0.1)
    assert orig.gen_gap["mean"] == pytest.approx(0.05) and orig.sparsity["max"] == 0.0
    mp = analysis.group("mp-0.5")
    assert (mp.method, mp.level) == ("mp", 0.5) and analysis.group("vd").level is None
    assert mp.test_acc["mean"] == pytest.approx(0.7)
    assert mp.gen_gap["mean"] == pytest.approx(0.08)
    assert mp.sparsity["mean"] == pytest.approx((576 + 48 + 20) / 944)
    assert all(r["acc_drop"] == pytest.approx(0.1) for r in analysis.rows("mp-0.5"))


def test_identical_and_rescaled_twins(analysis):
    same = analysis.group("same-0.1")
    for metric, value in (("agreement", 1.0), ("kappa", 1.0), ("js", 0.0), ("cka", 1.0)):
        assert same.comparisons[metric]["mean"] == pytest.approx(value, abs=1e-9), metric
        assert same.comparisons[metric]["std"] == pytest.approx(0.0, abs=1e-9), metric
    vd = analysis.group("vd")  # logits x2: same classes and features, different probabilities
    assert vd.comparisons["agreement"]["min"] == 1.0 and vd.comparisons["kappa"]["min"] == 1.0
    assert vd.comparisons["cka"]["mean"] == pytest.approx(1.0)
    assert vd.comparisons["js"]["min"] > 1e-4


def test_pruned_twin_comparisons_match_direct_computation(zoo, analysis):
    from prunezoo.training.evaluate import predict

    test = layout.load_zoo_data(DATA).test
    for row in analysis.rows("mp-0.5"):
        orig_logits, _ = predict(layout.load_model(zoo / row["original"]), test)
        twin_logits, _ = predict(layout.load_model(layout.twin_set_dir(zoo, "mp-0.5") / row["model"]), test)
        pa, pb = orig_logits.argmax(1).numpy(), twin_logits.argmax(1).numpy()
        assert row["agreement"] == pytest.approx(float(np.mean(pa == pb)))
        assert row["kappa"] == pytest.approx(cohen_kappa_score(pa, pb))
        js = np.mean(
            jensenshannon(orig_logits.softmax(1).double().numpy(), twin_logits.softmax(1).double().numpy(), axis=1) ** 2
        )
        assert row["js"] == pytest.approx(js, rel=1e-4)
        assert 0.0 < row["cka"] < 1.0


def test_population_correlations_and_layer_sparsity(analysis):
    mp = analysis.group("mp-0.5")
    assert mp.correlation.n == 3
    assert mp.correlation.pearson_r == pytest.approx(1.0) and mp.correlation.kendall_tau == pytest.approx(1.0)
    assert math.isnan(analysis.group("same-0.1").agreement_accuracy.pearson_r)  # agreement constant at 1
    agree = [r["agreement"] for r in analysis.rows("mp-0.5")]
    expected = stats.pearsonr([r["original_test_acc"] for r in analysis.rows("mp-0.5")], agree).statistic
    assert mp.agreement_accuracy.pearson_r == pytest.approx(expected)
    vd = analysis.group("vd")  # twin acc 0.4, 0.5, 0.6 vs original 0.8, 0.7, 0.9
    r = stats.pearsonr(ORIG_ACC, [0.4, 0.5, 0.6])
    assert vd.correlation.pearson_r == pytest.approx(r.statistic)
    assert vd.correlation.pearson_p == pytest.approx(r.pvalue)
    assert {k: v["sparsity"] for k, v in mp.layers.items()} == pytest.approx(LAYER_FRACTIONS, abs=1e-3)
    assert {k: v["size"] for k, v in mp.layers.items()} == {"fc1.weight": 768, "fc2.weight": 96, "fc3.weight": 80}
    assert mp.size_sparsity_spearman == pytest.approx(1.0)  # larger layers pruned more
    assert math.isnan(analysis.group("same-0.1").size_sparsity_spearman)  # all layers dense: constant
    curves = analysis.curves()
    assert set(curves) == {"mp", "same", "vd"}
    assert curves["mp"][0]["test_acc"] == pytest.approx(0.7)


def test_write_tables_and_html_report(zoo, analysis, tmp_path):
    from prunezoo.zoo.report import write_zoo_report

    paths = analysis.write(tmp_path / "out")
    with open(paths["models"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and {r["group"] for r in rows} == {ORIGINAL, "mp-0.5", "same-0.1", "vd"}
    with open(paths["layers"]) as fh:
        assert len(list(csv.DictReader(fh))) == 12 * 3
    html = write_zoo_report(analysis, tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "mp-0.5" in html and "Cohen" in html
    assert (tmp_path / "out" / "zoo-curves.png").stat().st_size > 1000


def test_epoch_selection_and_errors(zoo, tmp_path):
    at_init = analyze_zoo(zoo, epoch=0, compare=False)
    assert at_init.group(ORIGINAL).test_acc["mean"] == pytest.approx(0.1)
    assert "agreement" not in at_init.group("mp-0.5").comparisons
    with pytest.raises(ConfigError, match="epoch"):
        analyze_zoo(zoo, epoch=7)
    with pytest.raises(ConfigError, match="zoo"):
        analyze_zoo(tmp_path)
    with pytest.raises(ConfigError, match="max_samples"):
        analyze_zoo(zoo, max_samples=1)


def test_cli_prints_summary_and_writes_report(zoo, tmp_path):
    from typer.testing import CliRunner

    from prunezoo.cli import app

    out = tmp_path / "cli"
    # the report itself is checked above; --no-report keeps this test fast
    result = CliRunner().invoke(
        app, ["zoo", "analyze", str(zoo), "--out", str(out), "--max-samples", "50", "-q", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    assert "mp-0.5" in result.output and "original" in result.output
    assert (out / "summary.csv").is_file() and (out / "analysis.json").is_file()
    assert not (out / "report.html").exists()
    with open(out / "models.csv") as fh:
        assert float(next(r for r in csv.DictReader(fh) if r["group"] == "same-0.1")["agreement"]) == 1.0
    bad = CliRunner().invoke(app, ["zoo", "analyze", str(tmp_path / "nope")])
    assert bad.exit_code == 2
