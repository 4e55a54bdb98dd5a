"""Every example config parses, plans and passes the pre-flight checks (datasets build offline)."""

from pathlib import Path

import pytest

from prunezoo.experiments.config import load_config
from prunezoo.experiments.plan import plan_study
from prunezoo.experiments.study import _preflight

# zoo-*.yaml are zoo configs, not studies: tests/test_zoo.py validates them.
EXAMPLES = sorted(
    p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.yaml") if not p.name.startswith("zoo-")
)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_is_valid(path, tmp_path):
    cfg = load_config(path)
    if cfg.dataset.name == "cifar10":  # reads files: a tiny CIFAR-10 in the real on-disk format stands in
        from cifar_fixture import write_cifar10

        cfg = load_config(path, [f"dataset.root={write_cifar10(tmp_path, n_train=50, n_test=10)}"])
    assert plan_study(cfg)
    _preflight(cfg)
