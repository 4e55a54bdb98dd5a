"""Structured pruning: channel criteria, physical channel removal (via Torch-Pruning), network
slimming, neuron merging, ThiNet, compact export and latency measurement.

>>> model = build_model("resnet20", input_shape=(3, 32, 32))
>>> res = prune_channels(model, torch.zeros(1, 3, 32, 32), 0.5, criterion="l1")
>>> res.flops_after < res.flops_before
"""

from prunezoo.structured.deploy import ChannelsLast, count_batchnorm, deploy, fold_batchnorm
from prunezoo.structured.export import layer_shapes, load_compact, save_compact
from prunezoo.structured.importance import (
    CHANNEL_CRITERIA,
    ChannelContext,
    ChannelImportance,
    get_channel_criterion,
    register_channel_criterion,
)
from prunezoo.structured.latency import compare_latency, measure_latency
from prunezoo.structured.merge import cluster_neurons, merge_neurons
from prunezoo.structured.prune import (
    SensitivityScan,
    StructuredResult,
    allocate_from_sensitivity,
    compact_zero_channels,
    out_channels,
    prune_channels,
    sensitivity_scan,
)
from prunezoo.structured.slimming import BatchNormL1, slim
from prunezoo.structured.study import apply_structured, canonical_structured_criterion, structured_criterion_names
from prunezoo.structured.thinet import ThiNetResult, thinet_prune

__all__ = [
    "CHANNEL_CRITERIA",
    "BatchNormL1",
    "ChannelContext",
    "ChannelsLast",
    "compare_latency",
    "count_batchnorm",
    "deploy",
    "fold_batchnorm",
    "ChannelImportance",
    "SensitivityScan",
    "StructuredResult",
    "ThiNetResult",
    "allocate_from_sensitivity",
    "cluster_neurons",
    "get_channel_criterion",
    "layer_shapes",
    "load_compact",
    "measure_latency",
    "merge_neurons",
    "out_channels",
    "prune_channels",
    "register_channel_criterion",
    "save_compact",
    "apply_structured",
    "canonical_structured_criterion",
    "compact_zero_channels",
    "structured_criterion_names",
    "sensitivity_scan",
    "slim",
    "thinet_prune",
]
