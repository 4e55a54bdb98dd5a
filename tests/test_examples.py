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
def test_example_config_is_valid(path):
    cfg = load_config(path)
    assert plan_study(cfg)
    _preflight(cfg)
