"""Every example config parses, plans and passes the pre-flight checks (datasets build offline)."""

from pathlib import Path

import pytest

from prunezoo.experiments.config import load_config
from prunezoo.experiments.plan import plan_study
from prunezoo.experiments.study import _preflight

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_is_valid(path):
    cfg = load_config(path)
    assert plan_study(cfg)
    _preflight(cfg)
