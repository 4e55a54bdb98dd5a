"""Best pruned model selection, effective parameters, best small dense model."""

import pytest

from prunezoo.analysis.sdd import best_pruned, sdd_figure, sdd_summary, trajectories


def _rows():
    rows = []
    for point, width, base in (("w=10", 1000, 0.80), ("w=100", 10000, 0.70)):
        for seed in (0, 1):
            rows.append(
                {
                    "point": point,
                    "seed": seed,
                    "method": "dense",
                    "kind": "dense",
                    "level": None,
                    "sparsity": 0.0,
                    "nnz": width,
                    "prunable": width,
                    "test_acc": base + 0.01 * seed,
                    "val_acc": base,
                    "test_ece": 0.1,
                }
            )
            for level in range(1, 5):
                # accuracy peaks at level 2 on val, level 3 on test (for w=100)
                val = base + {1: 0.02, 2: 0.06, 3: 0.05, 4: -0.1}[level]
                test = base + {1: 0.02, 2: 0.05, 3: 0.07, 4: -0.1}[level]
                rows.append(
                    {
                        "point": point,
                        "seed": seed,
                        "method": "imp",
                        "kind": "imp",
                        "level": level,
                        "sparsity": 1 - 0.8**level,
                        "nnz": int(width * 0.8**level),
                        "prunable": width,
                        "test_acc": test,
                        "val_acc": val,
                        "test_ece": 0.05,
                    }
                )
    return rows


def test_trajectories_include_dense_as_level_zero():
    t = trajectories(_rows())
    assert set(t) == {("w=10", 0, "imp"), ("w=10", 1, "imp"), ("w=100", 0, "imp"), ("w=100", 1, "imp")}
    assert [r["level"] for r in t[("w=10", 0, "imp")]] == [0, 1, 2, 3, 4]


def test_best_pruned_selects_on_validation_and_reports_test_selection():
    best = {(b["point"], b["seed"]): b for b in best_pruned(_rows())}
    b = best[("w=100", 0)]
    assert b["selected_on"] == "val" and b["level"] == 2 and b["test_selected_level"] == 3
    assert b["effective_params"] == int(10000 * 0.8**2)
    assert b["test_acc"] == pytest.approx(0.75) and b["test_selected_acc"] == pytest.approx(0.77)


def test_summary_best_small_dense_and_effective_params():
    summary = {s["point"]: s for s in sdd_summary(_rows())}
    assert summary["w=100"]["best_acc"] == pytest.approx(0.75)
    assert summary["w=100"]["effective_params"] == pytest.approx(6400)
    # the small dense model (0.805 mean) beats the pruned large one (0.75): it is the best small dense
    assert summary["w=100"]["best_small_dense"] == "w=10"
    assert summary["w=10"]["best_small_dense"] is None  # nothing dense reaches 0.85
    fig = sdd_figure(_rows())
    assert len(fig.axes) == 2


def test_memorization_carried_into_summary():
    rows = _rows()
    for r in rows:
        r["memorization"] = 0.9 if r["kind"] == "dense" else 0.2
    s = sdd_summary(rows)[0]
    assert s["dense_memorization"] == pytest.approx(0.9) and s["memorization"] == pytest.approx(0.2)
    import math

    assert math.isnan(sdd_summary(_rows())[0]["memorization"])


def test_noisy_train_and_test_errors_come_from_the_selected_level():
    rows = _rows()
    for r in rows:
        r["train_eval_acc"] = 0.9 if r["level"] == 2 else 0.5
        r["test_noisy_acc"] = 0.6 if r["level"] == 2 else 0.1
    s = {x["point"]: x for x in sdd_summary(rows)}["w=100"]  # val selects level 2
    assert s["train_error_noisy"] == pytest.approx(0.1) and s["test_error_noisy"] == pytest.approx(0.4)


def test_noisy_test_labels_option_adds_a_noisy_test_evaluation(tmp_path):
    from prunezoo.errors import ConfigError
    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    base = {
        "name": "n",
        "dataset": {"name": "digits", "noise_rate": 0.3, "noisy_test": True},
        "model": {"name": "mlp", "options": {"hidden": [16]}},
        "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
        "methods": [{"name": "imp", "kind": "imp", "levels": 1}],
    }
    rows = run_study(parse_config(base), tmp_path, workers=1).rows
    for r in rows:
        # 30 % of the test labels are redrawn: accuracy on them is clearly below the clean one
        assert 0 <= r["test_noisy_acc"] < r["test_acc"]
    with pytest.raises(ConfigError, match="noisy_test"):
        parse_config({**base, "dataset": {"name": "digits", "noisy_test": True}})


def test_figure_without_sweep_or_second_point_has_no_sweep_curve_or_box_panel():
    # one model size under label noise: the trajectory alone, no "dense (sweep)" line, no one-box panel
    rows = [r for r in _rows() if r["point"] == "w=100"]
    for r in rows:
        r["memorization"] = 0.5
    fig = sdd_figure(rows)
    assert len(fig.axes) == 1
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert labels == ["w=100"] and not any("sweep" in lbl for lbl in labels)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test error"
    fig.canvas.draw()
    assert all(t.get_text().endswith("%") for t in ax.get_yticklabels() if t.get_text())
    # two sizes: the dense sweep curve is drawn and labelled as such
    labels = [t.get_text() for legend in sdd_figure(_rows()).legends for t in legend.get_texts()]
    assert labels[0] == "dense models of the sweep"
