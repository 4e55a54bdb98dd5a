"""A criterion and a dataset defined outside the package (here, in a test module), registered with the
public registry functions and then used BY NAME in a study: nothing inside ``prunezoo`` changes.

The registrations are undone after each test so other test modules see the registries they expect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunezoo.criteria import CRITERIA, ScoringContext, register_criterion
from prunezoo.data import DATASETS, ArrayDataset, DataSplits, register_dataset
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.study import run_study
from prunezoo.sparsity import MaskSet
from prunezoo.training.checkpoint import load_state

CRITERION = "test-smallest-magnitude"
DATASET = "test-blobs"


def smallest_magnitude(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """Higher = more important, so ``-|w|`` keeps the SMALLEST weights (the opposite of magnitude)."""
    return {name: -p.detach().abs() for name, p in ctx.params.items()}


def blobs(
    *, root: Path | None = None, download: bool = False, seed: int = 0, n: int = 240, separation: float = 3.0
) -> DataSplits:
    """Two Gaussian blobs in 16 dimensions (input (1, 4, 4)), half train, half test."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 4, 4, generator=g) + separation * (2.0 * y - 1.0).view(-1, 1, 1, 1) / 4.0
    half = n // 2
    return DataSplits(
        name=DATASET,
        train=ArrayDataset(x[:half], y[:half]),
        test=ArrayDataset(x[half:], y[half:]),
        num_classes=2,
        input_shape=(1, 4, 4),
        meta={"source": "tests/test_plugins_in_tests.py"},
    )


@pytest.fixture
def plugins():
    register_criterion(CRITERION)(smallest_magnitude)
    register_dataset(DATASET, blobs)
    try:
        yield
    finally:
        CRITERIA.pop(CRITERION, None)
        DATASETS.pop(DATASET, None)


def _study(**dataset) -> dict:
    return {
        "name": "plugins",
        "dataset": {"name": DATASET, **dataset},
        "model": {"name": "mlp", "options": {"hidden": [12]}},
        "training": {"epochs": 3, "batch_size": 20, "lr": 0.1},
        "finetune": {"epochs": 1, "batch_size": 20, "lr": 0.01},
        "methods": [
            {"name": "smallest", "kind": "oneshot", "criterion": CRITERION, "scheme": "global", "sparsities": [0.5]},
            {"name": "gm", "kind": "oneshot", "criterion": "magnitude", "scheme": "global", "sparsities": [0.5]},
        ],
    }


def test_unregistered_names_are_config_errors():
    # The names are checked against the registries when the config is validated: without the
    # registrations above, both are unknown.
    with pytest.raises(ConfigError) as err:
        parse_config({**_study(), "methods": []})
    assert err.value.field.startswith("dataset") and DATASET in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({**_study(), "dataset": {"name": "digits"}})
    assert err.value.field.startswith("methods.0") and CRITERION in str(err.value)


def test_criterion_and_dataset_from_a_test_module_run_in_a_study(plugins, tmp_path):
    res = run_study(parse_config(_study(options={"n": 200})), tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    assert set(rows) == {"dense", "smallest", "gm"}
    assert rows["dense"]["test_acc"] > 0.8  # the blobs are separable: the data reached the model
    assert rows["smallest"]["sparsity"] == pytest.approx(0.5, abs=1e-2)
    assert rows["smallest"]["prunable"] == 16 * 12 + 12 * 2
    runs = res.directory / "runs"
    dense = load_state(runs / rows["dense"]["run_id"] / "final.safetensors")
    keep = MaskSet.load(runs / rows["smallest"]["run_id"] / "masks.safetensors")
    magnitude = MaskSet.load(runs / rows["gm"]["run_id"] / "masks.safetensors")
    # The test criterion chose the mask: every kept weight of the trained dense model is no larger
    # than every pruned one (global scheme), the mirror image of magnitude pruning.
    kept = torch.cat([dense[n][keep[n]].abs() for n in keep])
    pruned = torch.cat([dense[n][~keep[n]].abs() for n in keep])
    assert kept.max() <= pruned.min()
    assert keep.iou(magnitude) < 0.1
    # The dataset's option reached the builder: 100 training samples instead of 60 cost 5/3 the FLOPs.
    fewer = run_study(parse_config({**_study(options={"n": 120}), "methods": []}), tmp_path, workers=1).rows
    assert rows["dense"]["train_flops"] / fewer[0]["train_flops"] == pytest.approx(100 / 60, rel=1e-6)
    again = run_study(parse_config(_study(options={"n": 200})), tmp_path / "again", workers=1)
    assert again.rows == res.rows  # same seed, same masks and metrics


def test_a_bad_option_of_the_test_dataset_is_a_config_error(plugins, tmp_path):
    # Options are read from the builder's signature, so a typo is caught before anything trains.
    with pytest.raises(ConfigError) as err:
        run_study(parse_config(_study(options={"bogus": 1})), tmp_path / "out", workers=1)
    assert err.value.field.startswith("dataset.options") and "bogus" in str(err.value)
    assert not (tmp_path / "out").exists()
