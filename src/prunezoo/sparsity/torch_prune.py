"""Interop with ``torch.nn.utils.prune``: read its masks, remove its reparametrisation, or install ours.

``torch.nn.utils.prune`` replaces a pruned ``weight`` parameter by ``weight_orig`` (a parameter),
``weight_mask`` (a buffer) and a forward pre-hook that recomputes ``weight`` as a plain attribute.
prunezoo masks plain parameters in place instead, so a torch-pruned layer would be invisible to it:
:func:`prunezoo.sparsity.prunable_parameters` (and through it ``prune()``) raises on such a model
(:func:`torch_pruned_tensors`), and :meth:`MaskSet.from_torch_prune` converts it.

Nothing here builds a ``MaskSet`` (that would close an import cycle with :mod:`prunezoo.sparsity.masks`):
these functions return plain ``{name: bool tensor}`` dicts, which the ``MaskSet`` wrappers wrap.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


def pruned_tensor_names(module: nn.Module) -> list[str]:
    """Names of ``module``'s own tensors reparametrised by ``torch.nn.utils.prune`` (e.g. ``["weight"]``)."""
    return [
        hook._tensor_name
        for hook in module._forward_pre_hooks.values()
        if isinstance(hook, torch_prune.BasePruningMethod)
    ]


def torch_pruned_tensors(model: nn.Module) -> list[str]:
    """Full names (``"fc1.weight"``) of every tensor of ``model`` that ``torch.nn.utils.prune`` reparametrised."""
    return [
        f"{mod_name}.{t}" if mod_name else t
        for mod_name, module in model.named_modules()
        for t in pruned_tensor_names(module)
    ]


def torch_prune_hint(names: list[str]) -> str:
    """What to do about torch-pruned tensors ``names``: the sentence errors end with."""
    return (
        f"{names} are reparametrised by torch.nn.utils.prune ('<name>_orig' parameter + '<name>_mask' "
        "buffer), which prunezoo does not see as weights; convert the model first with "
        "masks = MaskSet.from_torch_prune(model) (keeps torch's masks, leaves their zeros in the weights) "
        "or call torch.nn.utils.prune.remove(module, 'weight') on each"
    )


@torch.no_grad()
def masks_from_torch_prune(model: nn.Module, *, remove: bool = True) -> dict[str, torch.Tensor]:
    """Boolean keep-masks (``True`` = kept) of every tensor ``torch.nn.utils.prune`` pruned in ``model``.

    Several prunings of one tensor are already combined by torch in its ``<name>_mask`` buffer.
    ``remove=True`` also removes the reparametrisation in place (``torch.nn.utils.prune.remove``): the
    tensor is a plain parameter again, holding ``<name>_orig * <name>_mask`` (zeros where pruned), so
    the masks apply to it as prunezoo masks. ``remove=False`` leaves the model as it is (torch's hooks
    keep enforcing the masks; the names are then not parameters of the model).
    """
    masks: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        for t in pruned_tensor_names(module):
            masks[f"{mod_name}.{t}" if mod_name else t] = getattr(module, f"{t}_mask").detach() != 0
            if remove:
                torch_prune.remove(module, t)
    return masks


def apply_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Reparametrise ``model`` with ``torch.nn.utils.prune.custom_from_mask`` for each of ``masks``.

    Torch's forward pre-hook then enforces them (``weight = weight_orig * weight_mask`` on every
    forward). A tensor torch already pruned gets the intersection (torch's own rule for repeated
    pruning). Returns ``model``, modified in place. Every name is checked before anything changes.
    """
    params, modules = dict(model.named_parameters()), dict(model.named_modules())
    targets = []
    for name, mask in masks.items():
        mod_name, _, t = name.rpartition(".")
        module = modules.get(mod_name)
        if name in params:
            shape, device = params[name].shape, params[name].device
        elif module is not None and t in pruned_tensor_names(module):
            orig = getattr(module, f"{t}_orig")
            shape, device = orig.shape, orig.device
        else:
            raise KeyError(f"model has no parameter {name!r}")
        if tuple(mask.shape) != tuple(shape):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, weight {tuple(shape)}")
        targets.append((module, t, mask.to(device=device, dtype=torch.bool)))
    for module, t, mask in targets:
        torch_prune.custom_from_mask(module, name=t, mask=mask)
    return model
