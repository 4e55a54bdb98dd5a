"""Top-k selection and the prune() primitive."""

import math

import pytest
import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.pruning import imp_keep_count, prune
from prunezoo.sparsity.topk import global_keep_masks, keep_top_k


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3))


def test_keep_top_k_exact_with_ties():
    s = torch.tensor([3.0, 1.0, 1.0, 1.0, 0.0, 2.0])
    keep = keep_top_k(s, 3)
    assert keep.tolist() == [True, True, False, False, False, True]
    assert int(keep_top_k(torch.zeros(10), 4).sum()) == 4
    assert keep_top_k(s, 0).sum() == 0 and keep_top_k(s, 6).all()
    with pytest.raises(ValueError):
        keep_top_k(s, 7)


def test_global_matches_brute_force_sort():
    g = torch.Generator().manual_seed(1)
    scores = {"a": torch.rand(5, 7, generator=g), "b": torch.rand(11, generator=g)}
    k = 20
    masks = global_keep_masks(scores, k)
    flat = torch.cat([scores["a"].flatten(), scores["b"].flatten()])
    thresh = flat.sort(descending=True).values[k - 1]
    assert sum(int(m.sum()) for m in masks.values()) == k
    assert torch.equal(masks["a"], scores["a"] >= thresh)


def test_global_magnitude_keeps_largest_weights():
    model = mlp()
    masks = prune(model, 0.25)
    weights = torch.cat([p.detach().abs().flatten() for n, p in model.named_parameters() if n.endswith("weight")])
    kept = torch.cat([(p.detach().abs() * masks[n]).flatten() for n, p in model.named_parameters() if n in masks])
    k = round(0.25 * weights.numel())
    assert masks.nnz() == k
    assert torch.allclose(kept.sort(descending=True).values[:k], weights.sort(descending=True).values[:k])


def test_uniform_scheme_gives_equal_layer_densities():
    masks = prune(mlp(), 0.5, scheme="uniform")
    assert all(d == pytest.approx(0.5, abs=0.01) for d in masks.layer_densities().values())


def test_subset_of_previous_masks_and_determinism():
    model = mlp()
    first = prune(model, 0.5, criterion="random", seed=0)
    second = prune(model, 0.2, criterion="random", seed=0, masks=first)
    assert second.is_subset_of(first)
    again = prune(model, 0.2, criterion="random", seed=0, masks=first)
    assert all(torch.equal(again[n], second[n]) for n in second)
    assert prune(model, 0.2, criterion="random", seed=1).iou(prune(model, 0.2, criterion="random", seed=2)) < 0.5


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_density_validation(bad):
    with pytest.raises(ConfigError, match="density"):
        prune(mlp(), bad)


def test_unknown_criterion():
    with pytest.raises(ConfigError, match="criterion"):
        prune(mlp(), 0.5, criterion="nope")


def test_imp_keep_count_openlth_rule():
    assert imp_keep_count(1000, 0.2) == 800
    assert imp_keep_count(801, 0.2) == 801 - math.ceil(160.2)
