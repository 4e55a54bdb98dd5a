"""A small BERT-style encoder whose every projection is its own ``nn.Linear`` (so each is prunable as usual).

``model.embeddings`` (token + learned position embeddings, LayerNorm, dropout), ``model.blocks`` (an
``nn.ModuleList`` of encoder blocks: ``attention.query/key/value/output``, ``ffn_in``/``ffn_out``, two
LayerNorms; post-LN as BERT, or pre-LN) and ``model.head``: ``classify`` (the ``[CLS]`` position, or the mean
of the non-padding positions, through ``dense`` + tanh to ``out``: ``[B, num_classes]``) or ``mlm`` (per-token
logits over the vocabulary, ``[B, T, vocab_size]``). Inputs are int64 token ids ``[B, T]``; id 0 is padding
and is masked out of attention. The default prunable set (``prunezoo_prunable``) is the Linear weights of the
blocks, as in sparse BERT work: not the embeddings, not the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.models.registry import option_error, register_model

DEFAULT_VOCAB_SIZE = 40  # the synthetic grammar's vocabulary (prunezoo.data.text.GRAMMAR_VOCAB_SIZE)
PAD_ID = 0
HEADS = ("classify", "mlm")
POOLS = ("cls", "mean")


def check_token_ids(x: torch.Tensor, vocab_size: int, max_len: int | None) -> None:
    """ConfigError naming the model option at fault unless ``x`` is int64 ids ``[B, T]`` in ``[0, vocab_size)``
    with ``T <= max_len``."""
    if x.dtype != torch.long:
        raise ConfigError("model", f"a token model takes int64 token ids, got a {x.dtype} input")
    if x.dim() != 2 or (max_len is not None and x.shape[1] > max_len):
        raise ConfigError("model.options.max_len", f"input shape {tuple(x.shape)}: expected [B, T] with T <= {max_len}")
    if x.numel():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= vocab_size:
            bad = hi if hi >= vocab_size else lo
            raise ConfigError("model.options.vocab_size", f"token id {bad} outside [0, {vocab_size})")


class Embeddings(nn.Module):
    def __init__(self, vocab_size: int, dim: int, max_len: int, dropout: float):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.positions = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(x.shape[1], device=x.device)
        return self.dropout(self.norm(self.tokens(x) + self.positions(pos)))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        # keep: [B, 1, 1, T] True where a key may be attended to (not padding)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        return self.output(a.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, pre_ln: bool):
        super().__init__()
        self.pre_ln = pre_ln
        self.attention = SelfAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            h = h + self.dropout(self.attention(self.norm1(h), keep))
            return h + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.norm2(h)))))
        h = self.norm1(h + self.dropout(self.attention(h, keep)))
        return self.norm2(h + self.dropout(self.ffn_out(F.gelu(self.ffn_in(h)))))


class ClassifyHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, pool: str, dropout: float):
        super().__init__()
        self.pool = pool
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool == "cls":
            pooled = h[:, 0]
        else:
            w = (tokens != PAD_ID).unsqueeze(-1).to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.out(self.dropout(torch.tanh(self.dense(pooled))))


class MlmHead(nn.Module):
    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.decoder = nn.Linear(dim, vocab_size)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(h))))


class TransformerEncoder(nn.Module):
    """Embeddings -> ``blocks`` -> (final LayerNorm when pre-LN) -> ``head``; input ``[B, T]`` int64 ids."""

    prunezoo_input_dtype = torch.long  # FLOP counting feeds token ids, not floats
    prunezoo_prunable = ["blocks.*.weight"]  # Linear weights of the encoder blocks (norms are not Linear)

    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        max_len: int,
        dim: int,
        depth: int,
        heads: int,
        ffn_dim: int,
        dropout: float,
        head: str,
        pool: str,
        pre_ln: bool,
    ):
        super().__init__()
        self.vocab_size, self.max_len, self.head_kind = vocab_size, max_len, head
        self.embeddings = Embeddings(vocab_size, dim, max_len, dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn_dim, dropout, pre_ln) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim) if pre_ln else nn.Identity()
        self.head: nn.Module = (
            MlmHead(dim, vocab_size) if head == "mlm" else ClassifyHead(dim, num_classes, pool, dropout)
        )
        self.apply(_bert_init)

    def prunezoo_block_names(self) -> list[str]:
        """Module prefixes of the encoder blocks, first to last (``blocks.0``, ``blocks.1``, ...)."""
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def prunezoo_check_data(self, splits: Any) -> None:
        """Preflight: every split's token ids fit this model (the study calls it before any training)."""
        meta: Mapping[str, Any] = getattr(splits, "meta", {}) or {}
        for name in ("train", "val", "test"):
            ds = getattr(splits, name, None)
            if ds is None:
                continue
            try:
                check_token_ids(ds.x, self.vocab_size, self.max_len)
            except ConfigError as err:
                hint = f"; the dataset's vocab_size is {meta['vocab_size']}" if "vocab_size" in meta else ""
                raise ConfigError(err.field, f"{name} split: {err.message}{hint}") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = (x != PAD_ID)[:, None, None, :]
        try:
            h = self.embeddings(x)
        except (IndexError, RuntimeError):  # a bad id or dtype: say which option (no check, no sync, when all is well)
            check_token_ids(x, self.vocab_size, self.max_len)
            raise
        for block in self.blocks:
            h = block(h, keep)
        return self.head(self.final_norm(h), x)


def _bert_init(m: nn.Module) -> None:
    # BERT: N(0, 0.02) weights, zero biases, LayerNorm (1, 0); the padding embedding stays zero.
    if isinstance(m, nn.Linear | nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise option_error(name, f"must be a positive integer, got {value!r}")
    return value


@register_model("transformer")
def transformer(
    *,
    num_classes: int,
    input_shape: tuple[int, ...],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    ffn_dim: int | None = None,
    max_len: int | None = None,
    dropout: float = 0.1,
    head: str = "classify",
    pool: str = "cls",
    pre_ln: bool = False,
) -> nn.Module:
    """BERT-style encoder on token ids (input (T,)): separate Linear Q/K/V/output and FFN, learned positions.

    ``vocab_size`` must cover the dataset's token ids (default: the synthetic grammar's 40); ``ffn_dim``
    defaults to 4 * dim, ``max_len`` to T; ``head``: classify (num_classes) or mlm (vocab_size logits per
    token); ``pool``: cls or mean; ``pre_ln``: LayerNorm before each sub-layer (BERT is post-LN)."""
    if len(input_shape) != 1:
        raise ConfigError("input_shape", f"transformer takes token sequences (T,), got {tuple(input_shape)}")
    vocab_size, dim = _positive_int("vocab_size", vocab_size), _positive_int("dim", dim)
    depth, heads = _positive_int("depth", depth), _positive_int("heads", heads)
    if dim % heads:
        raise option_error("heads", f"dim={dim} is not divisible by heads={heads}")
    ffn = _positive_int("ffn_dim", ffn_dim) if ffn_dim is not None else 4 * dim
    length = _positive_int("max_len", max_len) if max_len is not None else input_shape[0]
    if length < input_shape[0]:
        raise option_error("max_len", f"{length} is shorter than the input length {input_shape[0]}")
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
        raise option_error("dropout", f"must be in [0, 1), got {dropout!r}")
    if head not in HEADS:
        raise option_error("head", f"unknown head {head!r}; known: {list(HEADS)}")
    if pool not in POOLS:
        raise option_error("pool", f"unknown pool {pool!r}; known: {list(POOLS)}")
    if head == "mlm" and num_classes != vocab_size:
        raise option_error(
            "vocab_size", f"the mlm head predicts tokens: vocab_size={vocab_size} but the dataset has {num_classes}"
        )
    return TransformerEncoder(
        vocab_size=vocab_size,
        num_classes=num_classes,
        max_len=length,
        dim=dim,
        depth=depth,
        heads=heads,
        ffn_dim=ffn,
        dropout=float(dropout),
        head=head,
        pool=pool,
        pre_ln=bool(pre_ln),
    )
