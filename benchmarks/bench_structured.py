"""Structured pruning: measured CPU speed-up vs theoretical FLOP ratio, dense and compacted in one run.

ResNet-20, ResNet-56 and VGG16-CIFAR, 50% of channels removed per layer (criterion l1, layer
scope, classifier outputs kept), batch 32x3x32x32, 1 thread. Reports params, FLOPs (batch 1,
FlopCounterMode), median latency, speed-up = dense/compact latency, FLOP ratio = dense/compact
FLOPs and efficiency = speed-up / FLOP ratio (goal >= 0.8).

Both models are timed in two exports, always the same one for dense and compact:
``eager`` (the nn.Module as trained: NCHW, BatchNorm as its own op) and ``deploy``
(:func:`prunezoo.structured.deploy`: BN folded into the conv, channels-last). The speed-up is the
median of per-pair ratios (dense and compact timed back to back, order alternating), on wall clock
and on the thread's CPU time (the latter is immune to the OS scheduling other processes in).

Run: python benchmarks/bench_structured.py [--threads 1] [--repeats 30] [--models resnet20,...]
"""

from __future__ import annotations

import argparse
import copy

import torch

from prunezoo.models import build_model
from prunezoo.structured import compare_latency, deploy, prune_channels

EXPORTS = {"eager": lambda m: copy.deepcopy(m).eval(), "deploy": deploy}


def bench(name: str, *, batch: int, threads: int, repeats: int, exports: list[str]) -> list[dict]:
    torch.manual_seed(0)
    dense = build_model(name, num_classes=10, input_shape=(3, 32, 32)).eval()
    compact = copy.deepcopy(dense)
    x = torch.randn(batch, 3, 32, 32)
    res = prune_channels(compact, x[:1], 0.5, criterion="l1", scope="layer")
    flop_ratio = res.flops_before / res.flops_after
    rows = []
    for export in exports:
        d, c = EXPORTS[export](dense), EXPORTS[export](compact)
        with torch.inference_mode():  # the export must not change the function
            ref_d, ref_c = dense(x), compact(x)
            err = max(
                float((d(x) - ref_d).abs().max() / ref_d.abs().max()),
                float((c(x) - ref_c).abs().max() / ref_c.abs().max()),
            )
        t = compare_latency(d, c, x, warmup=3, repeats=repeats, threads=threads)
        rows.append(
            {
                "model": name,
                "export": export,
                "params": (res.params_before, res.params_after),
                "flops": (res.flops_before, res.flops_after),
                "ms": (t["baseline_ms"], t["candidate_ms"]),
                "speedup": t["speedup"],
                "cpu_speedup": t["cpu_speedup"],
                "flop_ratio": flop_ratio,
                "efficiency": t["speedup"] / flop_ratio,
                "cpu_efficiency": t["cpu_speedup"] / flop_ratio,
                "max_rel_err": err,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--models", default="resnet20,resnet56,vgg16-cifar")
    ap.add_argument("--exports", default="eager,deploy")
    args = ap.parse_args()
    exports = args.exports.split(",")
    print(
        f"torch {torch.__version__}, threads={args.threads}, batch={args.batch}, {args.repeats} paired repeats, "
        f"50% channels, l1, layer scope"
    )
    print(
        f"{'model':<12} {'export':<7} {'params dense→compact':>22} {'MFLOPs dense→compact':>22} "
        f"{'ms dense→compact':>18} {'speedup':>7} {'cpu':>5} {'FLOPx':>6} {'eff':>5} {'cpu eff':>7}"
    )
    for name in args.models.split(","):
        for r in bench(name, batch=args.batch, threads=args.threads, repeats=args.repeats, exports=exports):
            p, f, t = r["params"], r["flops"], r["ms"]
            print(
                f"{name:<12} {r['export']:<7} {p[0]:>10,}→{p[1]:<11,} {f[0] / 1e6:>10.1f}→{f[1] / 1e6:<11.1f} "
                f"{t[0]:>8.1f}→{t[1]:<9.1f} {r['speedup']:>7.2f} {r['cpu_speedup']:>5.2f} {r['flop_ratio']:>6.2f} "
                f"{r['efficiency']:>5.2f} {r['cpu_efficiency']:>7.2f}  "
                f"{'ok' if r['efficiency'] >= 0.8 else 'below goal 0.8'}  (export rel. err {r['max_rel_err']:.0e})",
                flush=True,
            )


if __name__ == "__main__":
    main()
