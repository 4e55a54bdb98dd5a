"""Wall-clock inference latency: structured results must report measured speed, not only FLOPs
(Blalock et al. 2020, "What is the State of Neural Network Pruning?")."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency(
    model: nn.Module, example_input: torch.Tensor, *, warmup: int = 10, repeats: int = 50, threads: int = 1
) -> dict[str, float]:
    """Median and 90th-percentile milliseconds of one forward pass on ``example_input``.

    Runs in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads (fixed so
    dense and pruned models are timed alike; the previous setting and the train flags are restored).
    ``cpu_ms``: median CPU time of the calling thread — with ``threads=1`` all the work runs there,
    so it is the compute cost without the time the OS gave other processes (shared machines).
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError("need repeats >= 1, warmup >= 0, threads >= 1")
    old_threads = torch.get_num_threads()
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    torch.set_num_threads(threads)
    times: list[float] = []
    cpu: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example_input)
            for _ in range(repeats):
                wall, thread = _timed(model, example_input)
                times.append(wall)
                cpu.append(thread)
    finally:
        torch.set_num_threads(old_threads)
        for m, t in modes:
            m.training = t
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    return {
        "median_ms": statistics.median(times),
        "p90_ms": p90,
        "min_ms": times[0],
        "cpu_ms": statistics.median(cpu),
        "repeats": float(repeats),
        "threads": float(threads),
    }


def _timed(model: nn.Module, x: torch.Tensor) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.thread_time()
    model(x)
    return (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3


def compare_latency(
    baseline: nn.Module,
    candidate: nn.Module,
    example_input: torch.Tensor,
    *,
    warmup: int = 3,
    repeats: int = 30,
    threads: int = 1,
) -> dict[str, float]:
    """Speed-up of ``candidate`` over ``baseline``, timed in alternating pairs.

    Each repeat times one forward of each back to back (order alternating) and takes their ratio;
    the median of those paired ratios cancels load drift from other processes far better than a
    ratio of two separately taken medians. Returns both medians (ms), ``speedup`` (wall clock) and
    ``cpu_speedup`` (thread CPU time, see :func:`measure_latency`).
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError("need repeats >= 1, warmup >= 0, threads >= 1")
    old_threads = torch.get_num_threads()
    modes = [(m, m.training) for net in (baseline, candidate) for m in net.modules()]
    baseline.eval()
    candidate.eval()
    torch.set_num_threads(threads)
    base, cand, wall_ratio, cpu_ratio = [], [], [], []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                baseline(example_input)
                candidate(example_input)
            for i in range(repeats):
                if i % 2:
                    c, b = _timed(candidate, example_input), _timed(baseline, example_input)
                else:
                    b, c = _timed(baseline, example_input), _timed(candidate, example_input)
                base.append(b[0])
                cand.append(c[0])
                wall_ratio.append(b[0] / c[0])
                cpu_ratio.append(b[1] / max(c[1], 1e-9))
    finally:
        torch.set_num_threads(old_threads)
        for m, t in modes:
            m.training = t
    return {
        "baseline_ms": statistics.median(base),
        "candidate_ms": statistics.median(cand),
        "speedup": statistics.median(wall_ratio),
        "cpu_speedup": statistics.median(cpu_ratio),
        "repeats": float(repeats),
        "threads": float(threads),
    }
