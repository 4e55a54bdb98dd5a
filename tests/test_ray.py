"""The Ray executor on a real local Ray instance (2 CPUs), not mocked."""

import pytest

ray = pytest.importorskip("ray", reason="install the ray extra: pip install -e '.[ray]'")

from prunezoo.experiments.config import parse_config  # noqa: E402
from prunezoo.experiments.study import run_study  # noqa: E402

CFG = {
    "name": "ray",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [32]}},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [
        {"name": "gm", "kind": "oneshot", "sparsities": [0.5, 0.9]},
        {"name": "imp", "kind": "imp", "levels": 1},
    ],
}


def test_ray_executor_matches_local(tmp_path):
    cfg = parse_config(CFG)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_study(cfg, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()
    local = run_study(cfg, tmp_path / "local", workers=1)
    assert on_ray.rows == local.rows
    assert len(on_ray.rows) == 4
