"""Dense vs sparse-exported inference, measured side by side in one run.

Models: a 4096-4096-4096-1000 MLP (three Linear layers, input 4096) and a ResNet-style CNN
(``resnet20``, CIFAR-shaped 3x32x32 input; ``--cnn-width`` widens it). Masks: magnitude pruning of
the initial weights with the ``uniform`` scheme (every layer at the target sparsity), at 80/90/95/
98/99 % by default. Per grid point (model x sparsity x batch x threads):

1. ``sparse_export`` of the masked model with that thread count and batch — each layer is
   micro-benchmarked dense vs CSR (BSR only for block-shaped masks) on its real input and kept
   dense when the sparse kernel is not faster by ``--min-speedup`` (the fallback);
2. the masked model on dense kernels and the export are timed in alternating pairs (order
   swapped every pair), ``--repeats`` pairs after warm-up; speed-up = median of the paired ratios,
   which cancels drift in machine load. Both sides get the deployment treatment structured rows
   get (BatchNorm folded, channels-last CNN; ``prunezoo.structured.deploy``).

Printed per point: median dense and sparse latency (ms), speed-up (wall clock), the CPU-time
speed-up (calling thread's CPU time; 1-thread points only: it leaves out time the OS gave other
processes on a shared machine), the FLOP ratio (dense / sparse FLOPs, RigL convention: each
layer's FLOPs scale with its density), speed-up / FLOP ratio, and how many layers the export put on
sparse kernels. Where CUDA is available the script also times 2:4 semi-structured
(``to_sparse_semi_structured``, fp16) vs dense for the MLP; elsewhere it says so.

Run: ``python benchmarks/bench_sparse_inference.py`` (full grid, a few minutes on 2 cores);
``--quick`` for a reduced grid (MLP, 95 %, batch 1, 1 thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch import nn

from prunezoo.deploy import paired_speedup, semi_structured_available, sparse_export, sparse_layer_count
from prunezoo.models import build_model
from prunezoo.models.flops import dense_flops, sparse_flops
from prunezoo.pruning import prune
from prunezoo.structured import deploy


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


def cnn(width: int) -> nn.Module:
    return build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), width=width)


def masked(model: nn.Module, sparsity: float, seed: int = 0) -> nn.Module:
    masks = prune(model, 1.0 - sparsity, criterion="magnitude", scheme="uniform", seed=seed)
    masks.apply(model)
    return model.eval()


def time_pairs(dense: nn.Module, sparse: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    return paired_speedup(dense, sparse, x, repeats=repeats, warmup=3)


def semi_structured_rows(repeats: int) -> list[str]:
    why = semi_structured_available("cuda")
    if why is not None:
        return [
            f"2:4 semi-structured vs dense: not measured — {why} (this machine: "
            f"{'no CUDA' if not torch.cuda.is_available() else torch.cuda.get_device_name()})."
        ]
    lines = [
        "| model | pattern | batch | dense ms | 2:4 ms | speed-up | sparse layers |",
        "|---|---|---|---|---|---|---|",
    ]
    for batch in (1, 32, 256):
        torch.manual_seed(0)
        model = mlp().half().cuda().eval()
        masks = prune(model, 0.5, pattern="2:4")
        masks.apply(model)
        x = torch.randn(batch, 4096, device="cuda", dtype=torch.half)
        exported = sparse_export(model, example_input=x, threads=None)
        t = time_pairs(model, exported, x, repeats)
        lines.append(
            f"| mlp 4096-4096-4096-1000 fp16 | 2:4 | {batch} | {t['dense_ms']:.3f} | {t['sparse_ms']:.3f} | "
            f"{t['speedup']:.2f}x | {sparse_layer_count(exported)}/3 |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mlp,cnn", help="comma list of mlp, cnn")
    ap.add_argument("--sparsities", default="0.8,0.9,0.95,0.98,0.99")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=30, help="timed dense/sparse pairs per point")
    ap.add_argument("--min-speedup", type=float, default=1.1, help="export: keep a layer dense unless faster by this")
    ap.add_argument("--cnn-width", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="reduced grid: mlp, 95 %%, batch 1, 1 thread, 10 pairs")
    args = ap.parse_args()
    if args.quick:
        args.models, args.sparsities, args.batches, args.threads, args.repeats = "mlp", "0.95", "1", "1", 10
    models = [m.strip() for m in args.models.split(",")]
    if bad := sorted(set(models) - {"mlp", "cnn"}):
        ap.error(f"--models: unknown {bad}; choose from mlp, cnn")
    sparsities = [float(s) for s in args.sparsities.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    cpu = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs ({cpu}), MKL {torch.backends.mkl.is_available()}, "
        f"{args.repeats} alternating pairs per point, export min_speedup {args.min_speedup}"
    )
    print()
    print(
        "| model | sparsity | batch | threads | dense ms | sparse ms | speed-up | CPU-time speed-up | FLOP ratio "
        "| speed-up / FLOP ratio | sparse layers |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    t_start = time.perf_counter()
    for name in models:
        for s in sparsities:
            torch.manual_seed(0)
            model = masked(mlp() if name == "mlp" else cnn(args.cnn_width), s)
            in_shape = (4096,) if name == "mlp" else (3, 32, 32)
            flop_ratio = dense_flops(model, in_shape) / sparse_flops(model, in_shape)
            base = deploy(model)  # BN folded, channels-last for the CNN; the dense side of every pair
            layers = sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in base.modules())
            label = "mlp 4096-4096-4096-1000" if name == "mlp" else f"resnet20 (width {args.cnn_width})"
            for batch in batches:
                x = torch.randn(batch, *in_shape, generator=torch.Generator().manual_seed(1))
                for t in threads:
                    torch.set_num_threads(t)
                    exported = sparse_export(deploy(model), example_input=x, threads=t, min_speedup=args.min_speedup)
                    r = time_pairs(base, exported, x, args.repeats)
                    cpu = f"{r['cpu_speedup']:.2f}x" if t == 1 else "—"  # other threads' CPU time is not seen
                    print(
                        f"| {label} | {s:.0%} | {batch} | {t} | {r['dense_ms']:.3f} | {r['sparse_ms']:.3f} | "
                        f"{r['speedup']:.2f}x | {cpu} | {flop_ratio:.1f}x | {r['speedup'] / flop_ratio:.3f} | "
                        f"{sparse_layer_count(exported)}/{layers} |",
                        flush=True,
                    )
    print()
    for line in semi_structured_rows(args.repeats):
        print(line)
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s; median-of-ratios over {args.repeats} pairs per point "
        f"(threads fixed per point with torch.set_num_threads)"
    )


if __name__ == "__main__":
    main()
