"""GPU check: a short ResNet-20 study on CIFAR-shaped random data on the GPU (fp32 and bf16), CPU-vs-GPU
pruning masks for the same weights, and the train-step time on both.

    python benchmarks/gpu_check.py [--steps 20] [--samples 512] [--out DIR]

Checks (exit 1 if one fails): every study row reaches its sparsity and the saved final weights are
exactly 0 wherever the saved masks prune them; global magnitude top-k, ERK allocation (densities and
magnitude-ranked masks) and seeded random ERK masks are identical on CPU and GPU; SNIP (data-dependent,
float reductions in another order on the GPU) is reported as agreement and IoU of the kept weights.
Timing: median train-step time (forward, backward, SGD step) of ResNet-20 at batch 128 on the CPU and
on the GPU, fp32 and bf16 autocast, side by side. Takes about a minute on an H200; on a machine
without CUDA it prints "CUDA not available: nothing to check" and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _random_cifar(n_train: int, n_test: int):
    """A CIFAR-shaped dataset of seeded random images and labels (3x32x32, 10 classes): no download."""
    from prunezoo.data.datasets import ArrayDataset, DataSplits
    from prunezoo.data.registry import register_dataset

    def build(*, root=None, download=False, seed: int = 0) -> DataSplits:
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n_train + n_test,), generator=g)
        return DataSplits(
            name="random-cifar",
            train=ArrayDataset(x[:n_train], y[:n_train]),
            test=ArrayDataset(x[n_train:], y[n_train:]),
            num_classes=10,
            input_shape=(3, 32, 32),
            meta={"source": "torch.randint (gpu_check)"},
        )

    register_dataset("random-cifar", build, overwrite=True)


def _study(precision: str, out: Path) -> tuple[bool, list[str]]:
    from safetensors.torch import load_file

    from prunezoo.experiments.config import parse_config
    from prunezoo.experiments.study import run_study

    cfg = parse_config(
        {
            "name": f"gpu-check-{precision}",
            "dataset": {"name": "random-cifar"},
            "model": {"name": "resnet-cifar", "options": {"depth": 20}},
            "training": {"epochs": 1, "batch_size": 128, "lr": 0.05},
            "finetune": {"epochs": 1, "batch_size": 128, "lr": 0.01},
            "device": "cuda",
            "precision": precision,
            "methods": [
                {"name": "magnitude", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.9]},
                {"name": "gmp", "kind": "gmp", "criterion": "magnitude", "sparsities": [0.9], "gmp_frequency": 1},
            ],
        }
    )
    t0 = time.perf_counter()
    result = run_study(cfg, out, workers=1)
    seconds = time.perf_counter() - t0
    ok, lines = True, []
    for row in result.rows:
        job = result.directory / "runs" / row["run_id"]
        masked_nonzero = 0
        if (job / "masks.safetensors").exists():
            masks, final = load_file(str(job / "masks.safetensors")), load_file(str(job / "final.safetensors"))
            masked_nonzero = sum(int((final[n][masks[n] == 0] != 0).sum()) for n in masks)
        target = row["target_sparsity"] or 0.0
        good = masked_nonzero == 0 and abs(row["sparsity"] - target) < 0.01
        ok &= good
        lines.append(
            f"  {precision:5} {row['method']:10} sparsity {row['sparsity']:.4f} (target {target:.2f})  "
            f"test acc {row['test_acc']:.3f}  masked weights != 0: {masked_nonzero}  {'ok' if good else 'FAIL'}"
        )
    lines.append(f"  {precision:5} study wall time {seconds:.1f} s ({len(result.rows)} rows)")
    return ok, lines


def _same_masks(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[n].cpu(), b[n].cpu()) for n in a)


def _agreement(a, b) -> tuple[float, float]:
    """(fraction of weights with the same keep/prune decision, IoU of the kept sets)."""
    same = sum(int((a[n].cpu() == b[n].cpu()).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    inter = sum(int((a[n].cpu() & b[n].cpu()).sum()) for n in a)
    union = sum(int((a[n].cpu() | b[n].cpu()).sum()) for n in a)
    return same / total, inter / max(union, 1)


def _masks_cpu_vs_gpu() -> tuple[bool, list[str]]:
    from prunezoo.allocation import layer_densities
    from prunezoo.models import build_model
    from prunezoo.pruning import prune, random_er_masks
    from prunezoo.training import seed_everything

    seed_everything(0)
    cpu = build_model("resnet-cifar", num_classes=10, input_shape=(3, 32, 32), depth=20)
    gpu = build_model("resnet-cifar", num_classes=10, input_shape=(3, 32, 32), depth=20)
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g))]
    ok, lines = True, []

    checks = {
        "magnitude global top-k": lambda m: prune(m, 0.1, criterion="magnitude", scheme="global"),
        "magnitude erk": lambda m: prune(m, 0.1, criterion="magnitude", scheme="erk"),
        "random erk (seeded)": lambda m: random_er_masks(m, 0.1, "erk", seed=0),
        "random criterion": lambda m: prune(m, 0.1, criterion="random", scheme="uniform", seed=3),
    }
    for name, make in checks.items():
        same = _same_masks(make(cpu), make(gpu))
        ok &= same
        lines.append(f"  {name:24} identical on CPU and GPU: {same}  {'ok' if same else 'FAIL'}")
    dens_cpu, dens_gpu = layer_densities(cpu, 0.1, "erk"), layer_densities(gpu, 0.1, "erk")
    same = dens_cpu == dens_gpu
    ok &= same
    lines.append(f"  {'erk allocation':24} identical densities: {same}  {'ok' if same else 'FAIL'}")
    for criterion in ("snip", "grasp", "synflow"):
        a = prune(cpu, 0.1, criterion=criterion, batches=batches)
        b = prune(gpu, 0.1, criterion=criterion, batches=batches)
        agree, iou = _agreement(a, b)
        lines.append(f"  {criterion:24} agreement {agree:.4%}, IoU of kept weights {iou:.4f}  (reported)")
    return ok, lines


def _step_time(device: str, precision: str, steps: int) -> float:
    """Median seconds of one ResNet-20 training step (batch 128) on ``device``."""
    from prunezoo.models import build_model
    from prunezoo.training.evaluate import autocast_context

    torch.manual_seed(0)
    model = build_model("resnet-cifar", num_classes=10, input_shape=(3, 32, 32), depth=20).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    dev = torch.device(device)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps (cuDNN autotuning, allocator)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast_context(dev, precision):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed train steps per setting (median)")
    parser.add_argument("--samples", type=int, default=512, help="training samples of the random dataset")
    parser.add_argument("--out", type=Path, default=None, help="study directory (default: a temporary one)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("CUDA not available: nothing to check")
        return 0
    print(
        f"machine: {torch.cuda.get_device_name()} ({torch.cuda.device_count()} GPU(s)), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, {torch.get_num_threads()} CPU threads"
    )
    _random_cifar(args.samples, 256)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        print(f"\nstudy: ResNet-20, random CIFAR-shaped data ({args.samples} train / 256 test), 1 epoch + 1 fine-tune")
        for precision in ("fp32", "bf16"):
            good, lines = _study(precision, out)
            ok &= good
            print("\n".join(lines))
    print("\nmasks for the same weights, CPU vs GPU (ResNet-20 at init, density 0.1):")
    good, lines = _masks_cpu_vs_gpu()
    ok &= good
    print("\n".join(lines))
    print(f"\ntrain step, ResNet-20, batch 128 (median of {args.steps} steps):")
    cpu = _step_time("cpu", "fp32", max(3, args.steps // 4))
    print(f"  {'setting':14} {'ms/step':>9} {'vs CPU fp32':>12}")
    print(f"  {'cpu fp32':14} {1000 * cpu:9.2f} {1.0:11.1f}x")
    for precision in ("fp32", "bf16"):
        t = _step_time("cuda", precision, args.steps)
        print(f"  {'cuda ' + precision:14} {1000 * t:9.2f} {cpu / t:11.1f}x")
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
