"""Data-free neuron merging for a fully connected Linear → ReLU → Linear pair.

Srinivas & Babu 2015 ("Data-free parameter pruning for Deep Neural Networks"): when two hidden
neurons have (nearly) equal incoming weights, one can be removed and its outgoing weights added to
the other's. RoyChowdhury et al. 2017 ("Reducing Duplicate Filters in Deep Neural Networks")
cluster by cosine similarity and merge a cluster into its mean. For a positively homogeneous
activation (ReLU: relu(c·z) = c·relu(z), c > 0) a neuron whose incoming vector is c× another's
outputs c× as much, so the merged neuron's outgoing weight is Σ_m (||w_m|| / ||w̄||) a_m, where
w̄ is the cluster mean — exact for scaled duplicates, and for exact duplicates with any activation.
"""

from __future__ import annotations

import torch
from torch import nn

from prunezoo.errors import ConfigError


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def cluster_neurons(incoming: torch.Tensor, keep: int) -> list[list[int]]:
    """Greedy agglomerative clustering of rows by cosine similarity of their cluster means."""
    clusters = [[i] for i in range(incoming.shape[0])]
    while len(clusters) > keep:
        reps = torch.stack([incoming[c].mean(0) for c in clusters])
        unit = reps / reps.norm(dim=1, keepdim=True).clamp_min(1e-12)
        sim = unit @ unit.T
        sim.fill_diagonal_(-float("inf"))
        i, j = divmod(int(sim.argmax()), sim.shape[1])
        i, j = min(i, j), max(i, j)
        clusters[i] = clusters[i] + clusters.pop(j)
    return clusters


@torch.no_grad()
def merge_neurons(model: nn.Module, layer_name: str, next_layer_name: str, keep: int) -> nn.Module:
    """Merge the hidden neurons between ``layer_name`` and ``next_layer_name`` (both Linear, a ReLU
    or identity in between) down to ``keep`` neurons; replaces both layers in place, returns model."""
    layer, nxt = model.get_submodule(layer_name), model.get_submodule(next_layer_name)
    if not (isinstance(layer, nn.Linear) and isinstance(nxt, nn.Linear)):
        raise ConfigError("layer", "merge_neurons needs two nn.Linear layers")
    n = layer.out_features
    if nxt.in_features != n:
        raise ConfigError("next_layer", f"{next_layer_name} takes {nxt.in_features} inputs, {layer_name} gives {n}")
    if not 1 <= keep <= n:
        raise ConfigError("keep", f"must be in [1, {n}], got {keep}")
    # The bias is part of the neuron's pre-activation, so it joins the incoming vector.
    incoming = layer.weight.detach()
    if layer.bias is not None:
        incoming = torch.cat([incoming, layer.bias.detach()[:, None]], dim=1)
    clusters = sorted(cluster_neurons(incoming, keep), key=min)
    new_in = torch.stack([incoming[c].mean(0) for c in clusters])
    out_w = nxt.weight.detach()
    new_out = torch.stack(
        [
            sum((incoming[m].norm() / new_in[k].norm().clamp_min(1e-12)) * out_w[:, m] for m in c)
            for k, c in enumerate(clusters)
        ],
        dim=1,
    )
    first = nn.Linear(
        layer.in_features, keep, bias=layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype
    )
    first.weight.copy_(new_in[:, : layer.in_features])
    if layer.bias is not None:
        first.bias.copy_(new_in[:, -1])
    second = nn.Linear(
        keep, nxt.out_features, bias=nxt.bias is not None, device=nxt.weight.device, dtype=nxt.weight.dtype
    )
    second.weight.copy_(new_out)
    if nxt.bias is not None:
        second.bias.copy_(nxt.bias)
    _set(model, layer_name, first)
    _set(model, next_layer_name, second)
    return model
