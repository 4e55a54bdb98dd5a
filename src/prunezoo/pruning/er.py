"""Random Erdős–Rényi masks: s_ij ~ Bernoulli(p_l) per layer, p_l from any allocation scheme."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from prunezoo.allocation import allocate
from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.selection import prunable_parameters
from prunezoo.sparsity.topk import keep_count


def random_er_masks(
    model: nn.Module,
    density: float,
    scheme: str = "uniform",
    *,
    seed: int = 0,
    flow_preservation: bool = False,
    exact: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    **alloc_options,
) -> MaskSet:
    """An ER mask per prunable layer at the densities ``scheme`` allocates.

    ``exact=True`` keeps exactly round(p_l m_l) uniformly chosen entries instead of i.i.d. draws.
    ``flow_preservation`` gives every output unit with no incoming connection one random incoming
    edge and every input unit with no outgoing connection one random outgoing edge (for convs a
    unit pair is connected when any kernel entry is active), so no unit is cut off.
    """
    if scheme == "global":
        raise ValueError("random ER masks need per-layer densities; 'global' ranks scores instead")
    params = prunable_parameters(model, include=include, exclude=exclude)
    dens = allocate(model, density, scheme, include=include, exclude=exclude, **alloc_options).densities
    gen = torch.Generator().manual_seed(seed)
    # separate stream: the flow fix-ups only add edges to the same draws as without them
    flow_gen = torch.Generator().manual_seed(seed + 0x5EED)
    masks = {}
    for name, p in params.items():
        n = p.numel()
        if exact:
            flat = torch.zeros(n, dtype=torch.bool)
            flat[torch.randperm(n, generator=gen)[: keep_count(dens[name], n)]] = True
            mask = flat.reshape(p.shape)
        else:
            mask = torch.rand(p.shape, generator=gen) < dens[name]
        if flow_preservation and p.dim() >= 2:
            _preserve_flow(mask, flow_gen)
        masks[name] = mask.to(p.device)
    return MaskSet(masks)


def _preserve_flow(mask: torch.Tensor, gen: torch.Generator) -> None:
    out_units, in_units = mask.shape[0], mask.shape[1]
    view = mask.view(out_units, in_units, -1)  # in place on mask
    kernel = view.shape[2]
    connected = view.any(dim=2)
    for i in (~connected.any(dim=1)).nonzero().flatten().tolist():
        j = int(torch.randint(in_units, (1,), generator=gen))
        view[i, j, int(torch.randint(kernel, (1,), generator=gen))] = True
    connected = view.any(dim=2)
    for j in (~connected.any(dim=0)).nonzero().flatten().tolist():
        i = int(torch.randint(out_units, (1,), generator=gen))
        view[i, j, int(torch.randint(kernel, (1,), generator=gen))] = True
