"""Prune your own model on your own data with prunezoo's Python API (no registration, no YAML).

A model defined right here (a plain nn.Module), data in ordinary torch DataLoaders (here sklearn's 8x8
digits stand in for your tensors), and three pruning methods at 90 % sparsity:

1. one-shot global magnitude pruning of the trained dense model, then fine-tuning with the mask enforced
   (``Trainer(..., masks=masks)``);
2. gradual magnitude pruning (Zhu & Gupta) during training from scratch, as a trainer callback;
3. SNIP at initialisation (scores from one batch), then training with the mask fixed.

Runs in well under a minute on a CPU:  python examples/custom_model.py [--epochs 10] [--sparsity 0.9]
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunezoo.pruning import prune
from prunezoo.schedules import GradualMagnitudePruning
from prunezoo.sparsity import MaskSet
from prunezoo.training import Trainer, TrainingConfig, evaluate


class SmallCNN(nn.Module):
    """Any nn.Module works: prunezoo prunes the weights of its Conv/Linear layers (biases stay dense)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def your_data(batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    """Your tensors in DataLoaders; swap in your own Dataset (any map-style Dataset returning (x, y))."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:1400], perm[1400:]
    train_loader = DataLoader(
        TensorDataset(x[train], y[train]),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),  # a seeded order: the same run gives the same numbers
    )
    test_loader = DataLoader(TensorDataset(x[test], y[test]), batch_size=512)
    return train_loader, test_loader


def weight_sparsity(model: nn.Module) -> float:
    """The fraction of prunable weights that are exactly zero, read from the model itself."""
    return MaskSet.from_model(model).sparsity()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    density = 1.0 - args.sparsity
    train_loader, test_loader = your_data(batch_size=64, seed=args.seed)
    train_cfg = TrainingConfig(epochs=args.epochs, batch_size=64, lr=0.05, lr_schedule="cosine", seed=args.seed)
    finetune_cfg = TrainingConfig(epochs=max(1, args.epochs // 2), batch_size=64, lr=0.01, seed=args.seed)
    torch.manual_seed(args.seed)
    init = SmallCNN()
    results: list[tuple[str, nn.Module]] = []

    def fit(model, config, **kw) -> nn.Module:
        Trainer(model, train_loader, config, eval_sets={"test": test_loader}, progress=False, **kw).fit()
        return model

    # dense baseline
    dense = fit(copy.deepcopy(init), train_cfg)
    results.append(("dense", dense))

    # 1. one-shot global magnitude + fine-tuning under the mask
    oneshot = copy.deepcopy(dense)
    masks = prune(oneshot, density, criterion="magnitude", scheme="global")
    results.append(("oneshot-magnitude+finetune", fit(oneshot, finetune_cfg, masks=masks)))

    # 2. gradual magnitude pruning from scratch: the cubic ramp ends at 75 % of training, pruning every 10 steps
    gmp = GradualMagnitudePruning(args.sparsity, end_epoch=0.75 * args.epochs, frequency=10)
    results.append(("gmp", fit(copy.deepcopy(init), train_cfg, callbacks=[gmp])))

    # 3. SNIP at initialisation: |w * dL/dw| on one batch of your data, then train the sparse network
    snip = copy.deepcopy(init)
    masks = prune(snip, density, criterion="snip", batches=[next(iter(train_loader))])
    results.append(("snip-at-init", fit(snip, train_cfg, masks=masks)))

    print(f"{'method':<28} {'sparsity':>9} {'test acc':>9}")
    for name, model in results:
        acc = evaluate(model, test_loader)["acc"]
        print(f"{name:<28} {weight_sparsity(model):>9.4f} {acc:>9.4f}")


if __name__ == "__main__":
    main()
