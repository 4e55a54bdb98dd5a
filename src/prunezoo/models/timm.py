"""``timm:<name>``: any timm architecture as a prunezoo model (optional extra ``prunezoo[timm]``).

``timm:resnet18`` builds ``timm.create_model("resnet18", pretrained=False, num_classes=..., in_chans=...)``
from the config alone (no network); ``options: {pretrained: true}`` asks timm for the published weights
(timm downloads them: the network use is the user's choice). Other options go to ``create_model``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.registry import ModelSpec, option_error, register_model_prefix


def timm_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of timm architecture ``name``; ConfigError (``model.name``) without timm."""
    try:
        import timm
    except ImportError:
        raise ConfigError("model.name", f"'timm:{name}' needs timm: pip install 'prunezoo[timm]'") from None
    if not name or not timm.is_model(name):
        raise ConfigError("model.name", f"timm has no architecture {name!r} (see timm.list_models())")

    def builder(
        *, num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, **options: Any
    ) -> nn.Module:
        if len(input_shape) != 3:
            raise ConfigError("input_shape", f"timm:{name} takes images (channels, height, width), got {input_shape}")
        try:
            return timm.create_model(
                name, pretrained=bool(pretrained), num_classes=num_classes, in_chans=input_shape[0], **options
            )
        except TypeError as err:  # an option the architecture does not take
            bad = next((k for k in options if repr(k) in str(err)), None)
            if bad is None:
                raise
            raise option_error(bad, f"timm:{name} does not take option {bad!r} ({err})") from None

    return ModelSpec(f"timm:{name}", builder, f"timm architecture {name}")


register_model_prefix("timm", timm_spec)
