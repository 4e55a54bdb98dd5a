"""Model zoo: a registry of architectures built by name, plus FLOP and parameter counting.

>>> model = build_model("mlp", num_classes=10, input_shape=(1, 28, 28), hidden=[300, 100])
>>> sorted(MODELS)  # every registered name, aliases included

Parameter names are stable (``fc1.weight``, ``conv1.weight``, ``layer2.0.shortcut.conv.weight``),
so masks, densities and FLOP tables keyed by them survive rebuilding a model.
"""

from prunezoo.models.registry import MODELS, ModelSpec, build_model, get_model_spec, register_alias, register_model

# Importing the architecture modules registers them (order = order in MODELS).
from prunezoo.models import mlp, lenet, zoo, conv1d, resnet, vgg  # noqa: F401  isort: skip
from prunezoo.models.flops import (
    count_nonzero,
    count_parameters,
    dense_flops,
    layer_flops,
    sparse_flops,
    weight_densities,
)
from prunezoo.models.init import INIT_SCHEMES, init_weights
from prunezoo.models.layers import ACTIVATIONS
from prunezoo.utils.plugins import import_submodules

# a new built-in module registers itself: no import line to add here
import_submodules(__name__, __path__)

__all__ = [
    "ACTIVATIONS",
    "INIT_SCHEMES",
    "MODELS",
    "ModelSpec",
    "build_model",
    "count_nonzero",
    "count_parameters",
    "dense_flops",
    "get_model_spec",
    "init_weights",
    "layer_flops",
    "register_alias",
    "register_model",
    "sparse_flops",
    "weight_densities",
]
