"""Core performance ratios, measured side by side in one run (no absolute timings are asserted).

1. Masked vs dense training step, LeNet-300-100 (goal: masked/dense <= 1.05).
2. Global magnitude pruning of a ~25M-parameter model: prunezoo.prune vs
   torch.nn.utils.prune.global_unstructured (goal: torch/prunezoo >= 2).

Run: python benchmarks/bench_core.py [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from prunezoo.pruning import prune


def lenet_300_100() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_masked_step(
    steps: int = 100, rounds: int = 21, batch: int = 128, mask_gradients: bool = False
) -> tuple[float, float, float]:
    torch.manual_seed(0)
    dense = lenet_300_100()
    masked = copy.deepcopy(dense)
    opt_d = torch.optim.SGD(dense.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    opt_m = torch.optim.SGD(masked.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    prune(masked, 0.1).attach(masked, opt_m, mask_gradients=mask_gradients)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def loop(model, opt):
        def run():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

        return run

    loop(dense, opt_d)()  # warm-up
    loop(masked, opt_m)()
    # Interleave short rounds so drift in machine load hits both equally; the ratio is the median of
    # per-round ratios (robust to a round disturbed by another process).
    td, tm = [], []
    for r in range(rounds):
        pair = [(loop(dense, opt_d), td), (loop(masked, opt_m), tm)]
        for fn, acc in pair if r % 2 == 0 else pair[::-1]:
            acc.append(_median_time(fn, 1))
    ratio = statistics.median(m / d for d, m in zip(td, tm))
    return statistics.median(td) / steps, statistics.median(tm) / steps, ratio


def big_model() -> nn.Module:
    # ~25.2M prunable weights in layers of realistic size.
    return nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 2048), nn.ReLU(), nn.Linear(2048, 512))


def bench_global_prune(density: float = 0.1, repeats: int = 3) -> tuple[float, float, int]:
    torch.manual_seed(0)
    base = big_model()
    n = sum(m.weight.numel() for m in base if isinstance(m, nn.Linear))

    def ours():
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        prune(model, density).apply(model)
        return time.perf_counter() - t0

    def theirs():
        model = copy.deepcopy(base)
        params = [(m, "weight") for m in model if isinstance(m, nn.Linear)]
        t0 = time.perf_counter()
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=1 - density)
        return time.perf_counter() - t0

    ours(), theirs()  # warm-up
    t_ours = statistics.median(ours() for _ in range(repeats))
    t_theirs = statistics.median(theirs() for _ in range(repeats))
    return t_ours, t_theirs, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    for grads, label in ((False, "masked"), (True, "masked + gradient masking")):
        td, tm, ratio = bench_masked_step(mask_gradients=grads)
        print(
            f"[step] LeNet-300-100 SGD step: dense {td * 1e3:.3f} ms, {label} (10% density) {tm * 1e3:.3f} ms,"
            f" ratio = {ratio:.3f}" + (" (goal <= 1.05)" if not grads else "")
        )
    t_ours, t_theirs, n = bench_global_prune()
    print(
        f"[prune] global magnitude, {n / 1e6:.1f}M weights: prunezoo {t_ours:.3f} s, "
        f"torch.nn.utils.prune {t_theirs:.3f} s, speed-up = {t_theirs / t_ours:.2f}x (goal >= 2)"
    )


if __name__ == "__main__":
    main()
