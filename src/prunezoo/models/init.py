"""Weight initialisation schemes for Conv/Linear layers (the model-zoo conventions).

``init=None`` (or ``"default"``) keeps PyTorch's own initialisation. Any named scheme re-initialises
every Conv/Linear weight and sets biases to 0.01, as the model-zoo generation code does. Note that
``"uniform"`` is U(0, 1) and ``"normal"`` is N(0, 1) — the zoo's literal choices, not scaled
variants. Kaiming schemes use PyTorch's defaults (fan_in, leaky_relu gain with a=0, i.e. sqrt(2)).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from prunezoo.models.registry import option_error

INIT_SCHEMES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "uniform": nn.init.uniform_,  # U(0, 1)
    "normal": nn.init.normal_,  # N(0, 1)
}

INIT_BIAS = 0.01
M = TypeVar("M", bound=nn.Module)  # init_weights returns the model it was given

# Layers an init scheme touches (ConvTranspose included via _ConvNd).
INIT_LAYER_TYPES: tuple[type[nn.Linear], type[nn.modules.conv._ConvNd]] = (nn.Linear, nn.modules.conv._ConvNd)


def check_init(scheme: str | None, option: str = "init") -> str | None:
    """Validate an init option; returns ``None`` for the PyTorch default."""
    if scheme is None or scheme == "default":
        return None
    if scheme not in INIT_SCHEMES:
        raise option_error(option, f"unknown init {scheme!r}; known: {['default', *sorted(INIT_SCHEMES)]}")
    return scheme


@torch.no_grad()
def init_weights(model: M, scheme: str | None, *, bias: float = INIT_BIAS) -> M:
    """Re-initialise every Conv/Linear layer of ``model`` in place with ``scheme``; returns ``model``.

    Uses the global torch RNG, so seed it (``torch.manual_seed``) for reproducible models.
    """
    scheme = check_init(scheme)
    if scheme is None:
        return model
    fn = INIT_SCHEMES[scheme]
    for module in model.modules():
        if isinstance(module, INIT_LAYER_TYPES):
            fn(module.weight)
            if module.bias is not None:
                nn.init.constant_(module.bias, bias)
    return model
