"""Interop with torch.nn.utils.prune: a torch-pruned model is never silently skipped, masks convert both ways."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunezoo.errors import ConfigError
from prunezoo.models import build_model
from prunezoo.pruning import prune
from prunezoo.sparsity import MaskSet, prunable_parameters
from prunezoo.sparsity.torch_prune import torch_pruned_tensors


def lenet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("lenet-300-100", num_classes=10, input_shape=(1, 28, 28))


def torch_global(model: nn.Module, amount: float) -> list[tuple[nn.Module, str]]:
    pairs = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    torch_prune.global_unstructured(pairs, pruning_method=torch_prune.L1Unstructured, amount=amount)
    return pairs


def test_prune_on_a_torch_pruned_model_names_the_layers_and_the_fix():
    model = lenet()
    torch_global(model, 0.5)
    names = torch_pruned_tensors(model)
    assert names == list(prunable_parameters(lenet()))  # every prunable layer, same names
    with pytest.raises(ConfigError) as err:
        prune(model, 0.2)
    assert err.value.field == "model"
    assert all(n in str(err.value) for n in names) and "MaskSet.from_torch_prune(model)" in str(err.value)
    for call in (lambda: MaskSet.from_model(model), lambda: prunable_parameters(model, include=["*.weight"])):
        with pytest.raises(ConfigError, match="from_torch_prune"):
            call()
    # a layer excluded from selection is not skipped silently, so it is not an error
    model2 = lenet()
    torch_prune.l1_unstructured(model2.get_submodule(names[0].rpartition(".")[0]), "weight", amount=0.5)
    assert names[0] not in prunable_parameters(model2, exclude=[names[0]])


def test_applying_prunezoo_masks_to_a_torch_pruned_model_explains_why_the_weight_is_missing():
    model = lenet()
    masks = MaskSet.dense(prunable_parameters(model))
    torch_global(model, 0.5)
    with pytest.raises(KeyError, match="from_torch_prune"):
        masks.apply(model)


def test_torch_global_unstructured_converts_to_the_same_masks_and_sparsity():
    model = lenet()
    pairs = torch_global(model, 0.9)
    torch_masks = {f"{n}.weight": m.weight_mask.clone() for n, m in model.named_modules() if hasattr(m, "weight_mask")}
    zeros, total = sum(int((m == 0).sum()) for m in torch_masks.values()), sum(m.numel() for m in torch_masks.values())
    torch_sparsity = zeros / total
    x = torch.randn(5, 1, 28, 28)
    expected = model(x)
    masks = MaskSet.from_torch_prune(model)
    assert not torch_prune.is_pruned(model) and all(not torch_prune.is_pruned(m) for m, _ in pairs)
    assert set(masks) == set(torch_masks)
    for n, m in torch_masks.items():
        assert torch.equal(masks[n], m.bool())
    assert masks.sparsity() == pytest.approx(torch_sparsity)
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-4)
    # the zeros stay in plain weights: same function, prunezoo sees the same sparsity in the model
    assert torch.equal(model(x), expected)
    assert MaskSet.from_model(model).sparsity() == pytest.approx(torch_sparsity)
    # and prunezoo prunes further from there without resurrecting torch's zeros
    further = prune(model, 0.05, masks=masks)
    assert further.is_subset_of(masks) and further.density() == pytest.approx(0.05, abs=1e-4)


def test_prunezoo_masks_round_trip_through_torch_prune():
    model = lenet()
    masks = prune(model, 0.2, scheme="erk")
    x = torch.randn(3, 1, 28, 28)
    masked = lenet()
    masks.apply(masked)
    assert masks.to_torch_prune(model) is model
    assert torch_pruned_tensors(model) == list(masks)
    # torch's forward pre-hook enforces them: the reparametrised model computes the masked one
    torch.testing.assert_close(model(x), masked(x))
    back = MaskSet.from_torch_prune(model)
    assert set(back) == set(masks) and all(torch.equal(back[n], masks[n]) for n in masks)
    torch.testing.assert_close(model(x), masked(x))
    assert MaskSet.from_model(model).iou(masks) == 1.0


def test_from_torch_prune_without_remove_leaves_torch_in_charge():
    model = lenet()
    torch_global(model, 0.5)
    masks = MaskSet.from_torch_prune(model, remove=False)
    assert torch_prune.is_pruned(model) and masks.sparsity() == pytest.approx(0.5, abs=1e-4)
    # installing on top of torch's masks intersects them (torch's rule for repeated pruning)
    gen = torch.Generator().manual_seed(1)
    other = MaskSet({n: torch.rand(m.shape, generator=gen) < 0.5 for n, m in masks.items()})
    other.to_torch_prune(model)
    both = MaskSet.from_torch_prune(model)
    assert all(torch.equal(both[n], masks[n] & other[n]) for n in masks)


def test_to_torch_prune_checks_every_mask_before_changing_anything():
    model = lenet()
    names = list(prunable_parameters(model))
    first = prunable_parameters(model)[names[0]]
    bad = {names[0]: torch.ones(first.shape, dtype=torch.bool), "nope.weight": torch.ones(2)}
    with pytest.raises(KeyError, match="nope.weight"):
        MaskSet(bad).to_torch_prune(model)
    wrong_shape = MaskSet({names[0]: torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        wrong_shape.to_torch_prune(model)
    assert not torch_prune.is_pruned(model)
