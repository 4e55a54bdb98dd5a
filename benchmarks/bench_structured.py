"""Structured pruning: measured CPU speed-up vs theoretical FLOP ratio, dense and compacted in one run.

ResNet-20, ResNet-56 and VGG16-CIFAR, 50% of channels removed per layer (criterion l1, layer
scope, classifier outputs kept), batch 32x3x32x32. Reports params, FLOPs (batch 1, FlopCounterMode),
median latency, speed-up = dense/compact latency, FLOP ratio = dense/compact FLOPs and
efficiency = speed-up / FLOP ratio (goal >= 0.8). Dense and compact timings alternate over
``--rounds`` rounds (median of the round medians) so load from other processes hits both alike.

Run: python benchmarks/bench_structured.py [--threads 1] [--repeats 20] [--models resnet20,...]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

from prunezoo.models import build_model
from prunezoo.structured import measure_latency, prune_channels


def bench(name: str, *, batch: int, threads: int, repeats: int, rounds: int) -> dict:
    torch.manual_seed(0)
    dense = build_model(name, num_classes=10, input_shape=(3, 32, 32)).eval()
    compact = copy.deepcopy(dense)
    x = torch.randn(batch, 3, 32, 32)
    res = prune_channels(compact, x[:1], 0.5, criterion="l1", scope="layer")
    t_dense, t_comp = [], []
    for _ in range(rounds):
        t_dense.append(measure_latency(dense, x, warmup=3, repeats=repeats, threads=threads)["median_ms"])
        t_comp.append(measure_latency(compact, x, warmup=3, repeats=repeats, threads=threads)["median_ms"])
    md, mc = statistics.median(t_dense), statistics.median(t_comp)
    speedup, flop_ratio = md / mc, res.flops_before / res.flops_after
    return {"model": name, "params": (res.params_before, res.params_after),
            "flops": (res.flops_before, res.flops_after), "ms": (md, mc), "speedup": speedup,
            "flop_ratio": flop_ratio, "efficiency": speedup / flop_ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="resnet20,resnet56,vgg16-cifar")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads={args.threads}, batch={args.batch}, "
          f"repeats={args.repeats} x rounds={args.rounds}, 50% channels, l1, layer scope")
    print(f"{'model':<12} {'params dense→compact':>22} {'MFLOPs dense→compact':>22} "
          f"{'ms dense→compact':>20} {'speedup':>8} {'FLOPx':>6} {'eff':>5}")
    for name in args.models.split(","):
        r = bench(name, batch=args.batch, threads=args.threads, repeats=args.repeats, rounds=args.rounds)
        p, f, t = r["params"], r["flops"], r["ms"]
        print(f"{name:<12} {p[0]:>10,}→{p[1]:<11,} {f[0] / 1e6:>10.1f}→{f[1] / 1e6:<11.1f} "
              f"{t[0]:>9.1f}→{t[1]:<10.1f} {r['speedup']:>8.2f} {r['flop_ratio']:>6.2f} {r['efficiency']:>5.2f}"
              f"  {'ok' if r['efficiency'] >= 0.8 else 'below goal 0.8'}")


if __name__ == "__main__":
    main()
