"""``hf:<model_type>``: a Hugging Face sequence classifier as a prunezoo model (optional extra ``prunezoo[hf]``).

``hf:bert`` builds ``AutoModelForSequenceClassification.from_config(AutoConfig.for_model("bert", **options,
num_labels=num_classes))`` from the config alone (offline, random init); the options are config fields
(``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``vocab_size``, ...),
an unknown one is an error. ``hf:<hub name>`` with ``options: {pretrained: true}`` loads published weights
with ``from_pretrained`` (transformers downloads them: the network use is the user's choice).

The wrapper takes int64 token ids ``[B, T]`` (prunezoo's token datasets pad with id 0, masked out of
attention) and returns the logits. Its default prunable set is the Linear weights of the encoder layers
(BERT: query/key/value/attention.output.dense/intermediate.dense/output.dense), not the embeddings, the
pooler or the classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.registry import ModelSpec, option_error, register_model_prefix
from prunezoo.models.transformer import PAD_ID, check_token_ids

EXTRA_HINT = "pip install 'prunezoo[hf]'"


class HFSequenceClassifier(nn.Module):
    """``forward(x: LongTensor[B, T]) -> logits[B, num_labels]`` of a transformers model held as ``hf``."""

    prunezoo_input_dtype = torch.long  # FLOP counting feeds token ids, not floats

    def __init__(self, model: nn.Module):
        super().__init__()
        self.hf = model
        config: Any = model.config  # a transformers PreTrainedModel's config
        self.vocab_size = int(config.vocab_size)
        self.max_len = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        layers = encoder_layers(model)
        self.layers_path = f"hf.{layers}" if layers else None
        # The encoder layers' Linear weights (the selection keeps only Linear/Conv weights among the matches).
        self.prunezoo_prunable = [f"{self.layers_path}.*.weight"] if self.layers_path else ["hf.*"]

    def prunezoo_block_names(self) -> list[str]:
        """Module prefixes of the encoder layers, first to last (``hf.bert.encoder.layer.0``, ...)."""
        if self.layers_path is None:
            return []
        layers = self.get_submodule(self.layers_path)
        assert isinstance(layers, nn.ModuleList)  # found as one by encoder_layers
        return [f"{self.layers_path}.{i}" for i in range(len(layers))]

    def prunezoo_check_data(self, splits: Any) -> None:
        """Preflight: every split's token ids fit the model's vocabulary and positions."""
        for name in ("train", "val", "test"):
            ds = getattr(splits, name, None)
            if ds is not None:
                try:
                    check_token_ids(ds.x, self.vocab_size, self.max_len)
                except ConfigError as err:
                    raise ConfigError(err.field, f"{name} split: {err.message}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.hf(input_ids=x, attention_mask=(x != PAD_ID).long()).logits
        except (IndexError, RuntimeError):  # a bad id or dtype: say which option (no check, no sync, when all is well)
            check_token_ids(x, self.vocab_size, self.max_len)
            raise


def encoder_layers(model: nn.Module) -> str | None:
    """Path of the model's stack of transformer layers: its ``nn.ModuleList`` holding the most parameters."""
    best, size = None, 0
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 0:
            n = sum(p.numel() for p in m.parameters())
            if n > size:
                best, size = name, n
    return best


def hf_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``hf:<name>``; ConfigError (``model.name``) without transformers."""
    try:
        from transformers import AutoConfig, AutoModelForSequenceClassification
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:
        raise ConfigError("model.name", f"'hf:{name}' needs transformers: {EXTRA_HINT}") from None
    if not name:
        raise ConfigError("model.name", "give a model type or hub name after 'hf:' (e.g. 'hf:bert')")
    from_config = name in CONFIG_MAPPING

    def builder(*, num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, **options: Any):
        if len(input_shape) != 1:
            raise ConfigError("input_shape", f"hf:{name} takes token sequences (T,), got {tuple(input_shape)}")
        if not isinstance(pretrained, bool):
            raise option_error("pretrained", f"must be true or false, got {pretrained!r}")
        if pretrained:
            model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_classes, **options)
            return HFSequenceClassifier(model)
        if not from_config:
            raise ConfigError(
                "model.name",
                f"{name!r} is not a transformers model type (e.g. 'bert', 'distilbert', 'roberta'); "
                "for a hub checkpoint set model.options.pretrained: true",
            )
        defaults = AutoConfig.for_model(name)
        for key in options:
            if key == "num_labels":
                raise option_error(key, "set by the dataset's number of classes")
            if not hasattr(defaults, key):
                raise option_error(key, f"{name} configs have no field {key!r}")
        try:
            config = AutoConfig.for_model(name, **options, num_labels=num_classes)
            model = AutoModelForSequenceClassification.from_config(config)
        except ValueError as err:  # e.g. hidden_size not a multiple of num_attention_heads
            raise ConfigError("model.options", f"hf:{name}: {err}") from None
        wrapped = HFSequenceClassifier(model)
        if wrapped.max_len is not None and input_shape[0] > wrapped.max_len:
            raise option_error(
                "max_position_embeddings", f"{wrapped.max_len} is shorter than the input length {input_shape[0]}"
            )
        return wrapped

    return ModelSpec(f"hf:{name}", builder, f"transformers {name} for sequence classification")


register_model_prefix("hf", hf_spec)
