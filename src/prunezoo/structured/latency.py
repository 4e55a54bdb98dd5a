"""Wall-clock inference latency: structured results must report measured speed, not only FLOPs
(Blalock et al. 2020, "What is the State of Neural Network Pruning?")."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency(model: nn.Module, example_input: torch.Tensor, *, warmup: int = 10, repeats: int = 50,
                    threads: int = 1) -> dict[str, float]:
    """Median and 90th-percentile milliseconds of one forward pass on ``example_input``.

    Runs in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads (fixed so
    dense and pruned models are timed alike; the previous setting and the train flags are restored).
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError("need repeats >= 1, warmup >= 0, threads >= 1")
    old_threads = torch.get_num_threads()
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    torch.set_num_threads(threads)
    times: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example_input)
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(example_input)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        for m, t in modes:
            m.training = t
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return {"median_ms": statistics.median(times), "p90_ms": p90, "min_ms": times[0],
            "repeats": float(repeats), "threads": float(threads)}
