"""IMP wall time per level, as a ratio to level 0 (dense training), measured in one run.

Each level k > 0 = global magnitude prune of 20 % of the remaining weights + rewind to init +
retraining under the mask (masks re-applied after every optimizer step). Masked training runs the
dense kernels, so a level should cost about what level 0 costs (goal: every level <= 1.10x level 0);
the ratio exposes overhead of pruning, mask enforcement and per-level persistence.

Two set-ups, each repeated (median per level over repeats):
- ``memory``: ``run_iterative`` with no work directory;
- ``workdir``: with a work directory, as a study job runs it (per-epoch checkpoints, per-level masks,
  weights and history written).

Run: python benchmarks/bench_imp.py [--levels 5] [--epochs 2] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from prunezoo.data import load_dataset
from prunezoo.models import build_model
from prunezoo.pruning import prune
from prunezoo.schedules import IterativeSchedule, run_iterative
from prunezoo.training import Trainer, TrainingConfig, seed_everything


def level_times(levels: int, epochs: int, workdir: str | None) -> tuple[list[float], list[float]]:
    """Wall seconds of each level (prune + reset + train) and the density it trained at."""
    data = load_dataset("mnist5k")
    seed_everything(0)
    model = build_model("lenet-300-100", num_classes=data.num_classes, input_shape=data.input_shape)
    cfg = TrainingConfig(epochs=epochs, batch_size=64, lr=0.05, lr_schedule="cosine")
    make = lambda m, cbs, ft: Trainer(m, data.train, cfg, eval_sets={"test": data.test}, callbacks=cbs, progress=False)
    stamps = [time.perf_counter()]
    densities: list[float] = []

    def on_level(res) -> None:
        stamps.append(time.perf_counter())
        densities.append(res.density)

    run_iterative(model, make, IterativeSchedule(levels, 0.2), workdir=workdir, on_level=on_level)
    return [b - a for a, b in zip(stamps, stamps[1:])], densities


def prune_time(density: float, repeats: int = 5) -> float:
    """Median seconds of one global magnitude prune of LeNet-300-100 (part of every level > 0)."""
    model = build_model("lenet-300-100", num_classes=10, input_shape=(1, 28, 28))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prune(model, density)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_dataset("mnist5k")  # warm the data cache outside the timed region
    results = {}
    for mode in ("memory", "workdir"):
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                times, densities = level_times(args.levels, args.epochs, tmp if mode == "workdir" else None)
            runs.append(times)
        results[mode] = [statistics.median(r[i] for r in runs) for i in range(args.levels + 1)]
    print(
        f"IMP on LeNet-300-100 / mnist5k, {args.epochs} epochs per level, {args.threads} thread(s), "
        f"median of {args.repeats} runs"
    )
    print(f"{'level':>5} {'density':>8} {'memory s':>9} {'ratio':>6} {'workdir s':>10} {'ratio':>6}")
    for i in range(args.levels + 1):
        m, w = results["memory"][i], results["workdir"][i]
        print(
            f"{i:>5} {densities[i]:>8.3f} {m:>9.3f} {m / results['memory'][0]:>5.2f}x "
            f"{w:>10.3f} {w / results['workdir'][0]:>5.2f}x"
        )
    worst = max(results["memory"][i] / results["memory"][0] for i in range(1, args.levels + 1))
    print(
        f"worst level / level 0 (memory): {worst:.2f}x (goal <= 1.10x); "
        f"one global prune: {1000 * prune_time(0.5):.1f} ms"
    )


if __name__ == "__main__":
    main()
