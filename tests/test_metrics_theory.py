"""Calibration conventions, sharpness by HVP power iteration, interpolation, ER width theory."""

import math

import pytest
import torch
from torch import nn

from prunezoo.metrics import (
    calibration,
    classwise_reliability,
    confidence_histogram,
    expected_calibration_error,
    hessian_top_eigenvalue,
    interpolation_curve,
    maximum_calibration_error,
    reliability_bins,
)
from prunezoo.theory import coverage_probability, er_width_lower_bound, er_width_requirements


def test_ece_matches_hand_computation():
    conf = torch.tensor([0.95, 0.95, 0.65, 0.65, 0.65, 0.25])
    correct = torch.tensor([1, 0, 1, 1, 0, 0])
    bins = reliability_bins(conf, correct, n_bins=10)
    # bins: (0.9,1]: acc .5 conf .95 -> gap .45 (2/6); (0.6,.7]: acc 2/3 conf .65 -> gap 1/60 (3/6); (.2,.3]: gap .25
    expected = 2 / 6 * 0.45 + 3 / 6 * (2 / 3 - 0.65) + 1 / 6 * 0.25
    assert bins.ece == pytest.approx(expected)
    assert bins.mce == pytest.approx(0.45)
    assert int(bins.counts.sum()) == 6 and torch.isnan(bins.accuracy[0])


def test_bin_edge_conventions_differ_only_on_edges():
    # float64: in float32 "0.2" is 0.2000000030 and really lies above the edge
    conf = torch.tensor([0.2, 0.4, 1.0, 0.0, 0.33], dtype=torch.float64)
    correct = torch.ones(5)
    right = reliability_bins(conf, correct, n_bins=5, right_closed=True)  # Guo et al.: (lo, hi]
    left = reliability_bins(conf, correct, n_bins=5, right_closed=False)  # torchmetrics: [lo, hi)
    assert right.counts.tolist() == [2, 2, 0, 0, 1]  # 0.2 -> (0,.2]; 0.0 clipped to bin 0; 0.33, 0.4 -> (.2,.4]
    assert left.counts.tolist() == [1, 2, 1, 0, 1]  # 0.2 -> [.2,.4); 0.4 -> [.4,.6); 1.0 clipped to last
    off_edge = torch.tensor([0.13, 0.55, 0.91])
    assert torch.equal(
        reliability_bins(off_edge, torch.ones(3), 5).counts,
        reliability_bins(off_edge, torch.ones(3), 5, right_closed=False).counts,
    )


def test_perfectly_calibrated_and_overconfident():
    gen = torch.Generator().manual_seed(0)
    n, k = 20000, 4
    logits = torch.randn(n, k, generator=gen) * 2
    probs = logits.softmax(1)
    labels = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # labels drawn from the model itself
    assert expected_calibration_error(probs, labels) < 0.02
    sharp = (logits * 3).softmax(1)  # same ranking, over-confident
    assert expected_calibration_error(sharp, labels) > 0.1
    assert maximum_calibration_error(sharp, labels) >= expected_calibration_error(sharp, labels)
    assert calibration(sharp, labels).confidence[-1] > calibration(sharp, labels).accuracy[-1]


def test_classwise_band_and_histogram():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1, 1])
    cw = classwise_reliability(probs, labels, n_bins=2)
    assert cw["curves"].shape == (2, 2)
    # class 0: p0 in (0,.5]: [.2,.3] -> y=0? no,no -> 0 ; (.5,1]: [.9,.6] -> [1,0] -> .5
    assert cw["curves"][0].tolist() == pytest.approx([0.0, 0.5])
    assert cw["mean"][1] == pytest.approx((0.5 + 1.0) / 2)
    assert confidence_histogram(probs, 2).tolist() == pytest.approx([0.0, 1.0])


def test_hessian_top_eigenvalue_matches_exact_on_quadratic():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = torch.randn(64, 1)
    model = nn.Linear(5, 1, bias=False)
    mse = nn.functional.mse_loss
    eig = hessian_top_eigenvalue(model, [(x, y)], loss_fn=mse, iterations=200, tol=1e-10)
    exact = torch.linalg.eigvalsh(2 * x.T @ x / 64).max().item()  # Hessian of mean squared error
    assert eig == pytest.approx(exact, rel=1e-4)


def test_interpolation_curve_endpoints_and_bn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    a = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.data += 0.5 * torch.randn_like(p)
    b = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    curve = interpolation_curve(model, [a, b, a], [(x, y)], points=5)
    assert [c["position"] for c in curve] == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2])
    model.load_state_dict(a)
    model.eval()
    with torch.no_grad():
        assert curve[0]["loss"] == pytest.approx(float(nn.functional.cross_entropy(model(x), y)), rel=1e-5)
    assert curve[-1]["loss"] == pytest.approx(curve[0]["loss"], rel=1e-5)
    recomputed = interpolation_curve(model, [a, b], [(x, y)], points=3, bn_batches=[(x, y)])
    assert recomputed[1]["loss"] != pytest.approx(curve[2]["loss"])  # BN stats re-estimated mid-path
    assert torch.equal(model.state_dict()["0.weight"], a["0.weight"])  # model restored


@pytest.mark.parametrize("sparsity, width", [(0.5, 2725), (0.9, 17926), (0.95, 36822), (0.99, 187925)])
def test_er_width_fig2_fixture(sparsity, width):
    req = er_width_requirements([784, 128, 10], [1 - sparsity, 1 - sparsity], 0.001)
    assert req["n_source"][1] == width
    assert req["n_source_sufficient"][1] >= req["q"][1] * 128
    assert req["q"][1] == pytest.approx(math.log(2 * 1280 / 0.001) / math.log(1 / sparsity))


def test_er_lower_bound_below_requirement_and_monte_carlo():
    assert er_width_lower_bound(0.1, 0.001) < er_width_requirements([10, 10, 10], [0.1, 0.1], 0.001)["q"][1] * 10
    mc = coverage_probability(target_edges=50, copies=20, density=0.3, trials=4000)
    assert mc["estimate"] == pytest.approx(mc["exact"], abs=0.02)
    assert mc["union_bound"] <= mc["exact"] + 1e-12


def test_posterior_gap_zero_for_the_bayes_classifier_and_positive_for_an_overconfident_one():
    from prunezoo.data.gmm import true_posterior
    from prunezoo.metrics import posterior_gap

    class Bayes(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, x):
            p = true_posterior(x.double(), "linear", 0.2).clamp(1e-12, 1 - 1e-12)
            logit = torch.log(p) - torch.log1p(-p)
            return torch.stack([torch.zeros_like(logit), self.scale * logit], 1).float()

    exact = posterior_gap(Bayes(1.0), "linear", nu=0.2, n=4000)
    assert exact["mean_abs_gap"] < 1e-6 and abs(exact["overconfidence"]) < 1e-6
    assert exact["bayes_error"] == pytest.approx(0.159, abs=0.02)  # Φ(-ν√D/2) for ν=0.2, D=100
    over = posterior_gap(Bayes(3.0), "linear", nu=0.2, n=4000)
    assert over["overconfidence"] > 0.05 and over["model_error"] == pytest.approx(exact["model_error"])


def test_evaluate_reports_ece():
    from prunezoo.data import load_dataset
    from prunezoo.training import evaluate

    data = load_dataset("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    metrics = evaluate(model, data.test)
    assert 0.0 <= metrics["ece"] <= 1.0


def test_masked_sharpness_restricts_to_kept_weights():
    torch.manual_seed(0)
    x = torch.randn(64, 5) * torch.tensor([10.0, 1, 1, 1, 1])  # direction 0 dominates the Hessian
    y = torch.randn(64, 1)
    model = nn.Linear(5, 1, bias=False)
    mse = nn.functional.mse_loss
    keep = torch.tensor([[False, True, True, True, True]])
    eig = hessian_top_eigenvalue(model, [(x, y)], loss_fn=mse, iterations=300, tol=1e-12, masks={"weight": keep})
    sub = x[:, 1:]
    exact = torch.linalg.eigvalsh(2 * sub.T @ sub / 64).max().item()
    assert eig == pytest.approx(exact, rel=1e-4)
    assert hessian_top_eigenvalue(model, [(x, y)], loss_fn=mse, iterations=300, tol=1e-12) > 10 * exact


def test_er_width_cli_prints_fixture_and_plots(tmp_path):
    from typer.testing import CliRunner

    from prunezoo.cli import app

    res = CliRunner().invoke(app, ["er-width", "--sparsity", "0.9", "--plot", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert "17,926" in res.output
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(app, ["er-width", "--sparsity", "1.5"])
    assert bad.exit_code == 2


def test_diagnose_study_val_entropy_and_level_to_level_interpolation(tmp_path):
    from prunezoo.analysis.diagnostics import diagnose_study
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "d",
            "dataset": {"name": "digits", "val_fraction": 0.2},
            "model": {"name": "mlp", "options": {"hidden": [16]}},
            "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
            "methods": [{"name": "imp", "kind": "imp", "levels": 2}],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    recs = {(r["method"], r["level"]): r for r in diagnose_study(res.directory, sharpness=False)}
    assert all(r["val_entropy"] is not None and r["val_entropy"] > 0 for r in recs.values())
    assert "interpolation" not in recs[("imp", 1)]  # no earlier level to start from
    curve = recs[("imp", 2)]["interpolation"]
    assert [p["position"] for p in curve] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert curve[0]["loss"] != curve[-1]["loss"]  # different weights at the two ends
    assert recs[("imp", 2)]["interpolation_barrier"] >= 0.0  # endpoints lie on the reference line


def test_diagnose_reports_gap_to_the_closed_form_posterior_on_gmm_data(tmp_path):
    from prunezoo.analysis.diagnostics import diagnose_study
    from prunezoo.data.gmm import bayes_error
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": "g",
            "dataset": {"name": "gmm-linear", "options": {"n_train": 400, "n_test": 200}},
            "model": {"name": "gmm-mlp", "options": {"hidden": [8]}},
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.1},
            "methods": [{"name": "imp", "kind": "imp", "levels": 1}],
        }
    )
    res = run_study(cfg, tmp_path, workers=1)
    for rec in diagnose_study(res.directory, sharpness=False):
        gap = rec["posterior_gap"]
        assert 0 < gap["mean_abs_gap"] < 0.5 and gap["model_error"] >= gap["bayes_error"] - 0.02
        assert gap["bayes_error"] == pytest.approx(bayes_error("linear", 0.2, 100), abs=0.015)  # 5000 fresh samples
