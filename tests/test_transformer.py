"""Transformer encoders (built-in and ``hf:``), token-sequence datasets, and pruning them by every mask-based kind."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
import torch

from prunezoo.data import load_dataset
from prunezoo.data import text as T
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.study import run_study
from prunezoo.models import build_model, dense_flops, get_model_spec
from prunezoo.pruning import prune
from prunezoo.sparsity import MaskSet, prunable_parameters
from prunezoo.training import Trainer, TrainingConfig

TINY = {"dim": 16, "depth": 2, "heads": 2, "ffn_dim": 32}
BLOCK_LINEARS = ("attention.query", "attention.key", "attention.value", "attention.output", "ffn_in", "ffn_out")


def tokens(n: int = 4, t: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(T.FIRST_WORD_ID, T.GRAMMAR_VOCAB_SIZE, (n, t), generator=g)
    x[:, 0] = T.CLS_ID
    x[0, t // 2 :] = T.PAD_ID
    return x


# -- the model -----------------------------------------------------------------------------------------
def test_heads_shapes_and_layout():
    cls = build_model("transformer", num_classes=3, input_shape=(16,), **TINY)
    mlm = build_model("transformer", num_classes=T.GRAMMAR_VOCAB_SIZE, input_shape=(16,), head="mlm", **TINY)
    x = tokens()
    assert cls(x).shape == (4, 3)
    assert mlm(x).shape == (4, 16, T.GRAMMAR_VOCAB_SIZE)
    assert isinstance(cls.blocks, torch.nn.ModuleList) and len(cls.blocks) == 2
    assert cls.prunezoo_block_names() == ["blocks.0", "blocks.1"]
    # same encoder, another head: the embeddings and blocks load across (what a transfer relies on)
    enc = {k: v for k, v in mlm.state_dict().items() if not k.startswith("head.")}
    assert set(enc) == {k for k in cls.state_dict() if not k.startswith("head.")}
    cls.load_state_dict(enc, strict=False)
    mean = build_model("transformer", num_classes=3, input_shape=(16,), pool="mean", pre_ln=True, **TINY)
    assert mean(x).shape == (4, 3)


def test_padding_is_masked_out():
    model = build_model("transformer", num_classes=2, input_shape=(16,), dropout=0.0, **TINY).eval()
    x = tokens()  # sequence 0: 8 tokens, then padding
    with torch.no_grad():
        assert torch.allclose(model(x[:1]), model(x[:1, :8]), atol=1e-6)  # padding changes nothing
        changed = x[:1].clone()
        changed[0, 5] = T.FIRST_WORD_ID if int(changed[0, 5]) != T.FIRST_WORD_ID else T.FIRST_WORD_ID + 1
        assert not torch.allclose(model(x[:1]), model(changed))  # a real token does


def test_default_prunable_set_is_the_blocks_linear_weights():
    model = build_model("transformer", num_classes=2, input_shape=(16,), **TINY)
    expected = [f"blocks.{b}.{name}.weight" for b in range(2) for name in BLOCK_LINEARS]
    assert list(prunable_parameters(model)) == expected
    assert "head.out.weight" in prunable_parameters(model, include=["head.*.weight"])  # include still replaces it
    masks = prune(model, 0.3, criterion="magnitude")
    assert set(masks) == set(expected)
    # models without the attribute keep the plain Linear/Conv default
    mlp = build_model("mlp", num_classes=2, input_shape=(4,), hidden=[8])
    assert list(prunable_parameters(mlp)) == ["fc1.weight", "fc2.weight"]


def test_token_flops_and_bad_inputs():
    model = build_model("transformer", num_classes=2, input_shape=(16,), **TINY)
    assert dense_flops(model, (16,)) > 0  # counted on int64 token ids
    with pytest.raises(ConfigError, match="token id 45 outside") as err:
        model(torch.full((2, 16), 45))
    assert err.value.field == "model.options.vocab_size"
    with pytest.raises(ConfigError) as err:
        model(torch.ones(2, 20, dtype=torch.long))
    assert err.value.field == "model.options.max_len"
    with pytest.raises(ConfigError, match="int64"):
        model(torch.ones(2, 16))
    for opt, value in (("heads", 3), ("head", "bogus"), ("pool", "max"), ("dropout", 1.5), ("max_len", 8)):
        with pytest.raises(ConfigError) as err:
            build_model("transformer", num_classes=2, input_shape=(16,), **{**TINY, opt: value})
        assert err.value.field == f"model.options.{opt}"
    with pytest.raises(ConfigError, match="mlm head predicts tokens") as err:
        build_model("transformer", num_classes=2, input_shape=(16,), head="mlm", **TINY)
    with pytest.raises(ConfigError) as err:
        build_model("transformer", num_classes=2, input_shape=(1, 16), **TINY)
    assert err.value.field == "input_shape"


# -- the data ------------------------------------------------------------------------------------------
def test_grammar_datasets_are_seeded_and_well_formed():
    a = load_dataset("grammar-cls", task="balanced", n_train=60, n_test=20, seed=3)
    b = load_dataset("grammar-cls", task="balanced", n_train=60, n_test=20, seed=3)
    c = load_dataset("grammar-cls", task="balanced", n_train=60, n_test=20, seed=4)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.train.x, c.train.x)
    assert a.train.x.dtype == torch.int64 and a.input_shape == (32,) and a.num_classes == 2
    assert a.meta["vocab_size"] == T.GRAMMAR_VOCAB_SIZE
    assert torch.bincount(a.train.y).tolist() == [30, 30]
    assert bool((a.train.x[:, 0] == T.CLS_ID).all()) and int(a.train.x.max()) < T.GRAMMAR_VOCAB_SIZE
    for x, y in zip(a.train.x.numpy(), a.train.y.tolist(), strict=True):  # the label is what the grammar says
        assert (T.bracket_depth(x) is not None) == bool(y)
    for task, (fn, k) in T.TASKS.items():
        d = load_dataset("grammar-cls", task=task, n_train=40, n_test=8)
        assert d.num_classes == k and torch.bincount(d.train.y, minlength=k).min() == 40 // k
        assert [fn(x) for x in d.train.x.numpy()] == d.train.y.tolist()
    with pytest.raises(ValueError, match="task: unknown grammar task 'bogus'"):
        load_dataset("grammar-cls", task="bogus")


def test_grammar_mlm_masks_bert_style():
    d = load_dataset("grammar-mlm", n_train=400, n_test=50, seed=1, val_fraction=0.1)
    x, y = d.train.x, d.train.y
    assert y.shape == x.shape and d.num_classes == T.GRAMMAR_VOCAB_SIZE and d.val is not None
    target = y != T.IGNORE_INDEX
    content = x >= 0
    assert bool((target.sum(1) >= 1).all())
    assert 0.1 < target.sum().item() / (content & (x != T.PAD_ID)).sum().item() < 0.2
    masked = (x == T.MASK_ID) & target
    assert 0.7 < masked.sum().item() / target.sum().item() < 0.9  # ~80 % [MASK]
    assert bool((y[target] >= len(T.SPECIAL_TOKENS)).all())  # targets are content tokens, never specials
    again = load_dataset("grammar-mlm", n_train=400, n_test=50, seed=1, val_fraction=0.1)
    assert torch.equal(again.train.x, x) and torch.equal(again.train.y, y)
    with pytest.raises(ValueError, match="per-token targets"):
        load_dataset("grammar-mlm", n_train=50, n_test=10, noise_rate=0.1)


def test_text_file_dataset(tmp_path):
    rows = [{"text": f"good movie {i} fine", "label": "pos"} for i in range(10)]
    rows += [{"text": f"bad film {i} awful", "label": "neg"} for i in range(10)]
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = load_dataset("text-file", path=str(jsonl), max_len=6, test_fraction=0.25)
    assert (len(d.train), len(d.test), d.num_classes, d.input_shape) == (15, 5, 2, (6,))
    assert d.meta["label_names"] == ["neg", "pos"] and d.train.x.dtype == torch.int64
    assert int(d.train.x.max()) < d.meta["vocab_size"] and bool((d.train.x[:, 0] == T.CLS_ID).all())
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("sentence,y\n" + "".join(f"{r['text']},{int(r['label'] == 'pos')}\n" for r in rows))
    c = load_dataset(
        "text-file", path="r.csv", root=tmp_path, text_column="sentence", label_column="y", tokenizer="char"
    )
    assert c.meta["label_names"] == ["0", "1"] and c.input_shape == (64,)
    with pytest.raises(ValueError, match="label_column: .* no column 'label'"):
        load_dataset("text-file", path=str(csv_file), text_column="sentence")
    with pytest.raises(FileNotFoundError):
        load_dataset("text-file", path=str(tmp_path / "missing.csv"))
    # a study on it: the model's vocab_size must cover the file's vocabulary, checked before training
    study = {
        "name": "txt",
        "dataset": {"name": "text-file", "options": {"path": str(jsonl), "max_len": 6}},
        "model": {"name": "transformer", "options": {**TINY, "vocab_size": 8}},
        "training": {"epochs": 1},
        "methods": [],
    }
    with pytest.raises(ConfigError, match="vocab_size is") as err:
        run_study(parse_config(study), tmp_path / "bad", workers=1)
    assert err.value.field == "model.options.vocab_size" and not (tmp_path / "bad").exists()
    study["model"]["options"]["vocab_size"] = d.meta["vocab_size"]
    rows_out = run_study(parse_config(study), tmp_path / "ok", workers=1).rows
    assert rows_out[0]["method"] == "dense"


def test_fortunes_dataset_reads_fortune_files(tmp_path):
    (tmp_path / "food").write_text("Eat your greens.\n%\nPie is\n  a food.\n%\nSoup.\n%\nBread\n%\n")
    (tmp_path / "love").write_text("All you need.\n%\nLove hurts.\n%\nHearts\n%\n")
    (tmp_path / "food.dat").write_bytes(b"\x00")  # strfile indexes are skipped
    assert T.read_fortunes(tmp_path / "food") == ["Eat your greens.", "Pie is a food.", "Soup.", "Bread"]
    d = load_dataset("fortunes", root=tmp_path, max_len=8, test_fraction=0.3)
    assert d.meta["label_names"] == ["food", "love"] and d.num_classes == 2 and d.input_shape == (8,)
    assert (len(d.train), len(d.test)) == (5, 2)
    assert sorted(d.train.y.tolist() + d.test.y.tolist()) == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="categories: \\['art'\\]"):
        load_dataset("fortunes", root=tmp_path, categories=["art", "food"])
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        load_dataset("fortunes", root=tmp_path / "none")


# -- studies -------------------------------------------------------------------------------------------
STUDY = {
    "name": "tf",
    "dataset": {"name": "grammar-cls", "options": {"task": "majority", "n_train": 192, "n_test": 64, "seq_len": 16}},
    "model": {"name": "transformer", "options": TINY},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.001, "optimizer": "adam"},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.001, "optimizer": "adam"},
}


def test_every_mask_based_kind_prunes_exactly_the_blocks(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    methods = [
        {"name": "magnitude", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.7]},
        {"name": "obs", "kind": "oneshot", "criterion": "obs", "sparsities": [0.7], "batches": 2},
        {"name": "gmp", "kind": "gmp", "sparsities": [0.7], "gmp_frequency": 1},
        {"name": "movement", "kind": "gmp", "criterion": "movement", "sparsities": [0.7], "gmp_frequency": 1},
        {"name": "imp", "kind": "imp", "levels": 2},
        {"name": "rigl", "kind": "dst", "sparsities": [0.7], "options": {"delta_t": 2}},
    ]
    res = run_study(parse_config({**STUDY, "methods": methods}), tmp_path, workers=1)
    model = build_model("transformer", num_classes=2, input_shape=(16,), **TINY)
    expected = set(prunable_parameters(model))
    assert all(n.startswith("blocks.") for n in expected) and len(expected) == 12
    seen = set()
    for row in res.rows:
        if row["method"] == "dense":
            continue
        seen.add(row["method"])
        run = res.directory / "runs" / row["run_id"].split("/")[0]  # IMP: one run, a folder per level
        masks = MaskSet.load((run / f"level_{row['level']:02d}" if row["level"] else run) / "masks.safetensors")
        assert set(masks) == expected, row["method"]
        target = 1 - 0.8 ** row["level"] if row["method"] == "imp" else 0.7
        assert row["sparsity"] == pytest.approx(target, abs=2e-3), row["method"]
        assert masks.sparsity() == pytest.approx(target, abs=2e-3)
    assert seen == {m["name"] for m in methods}


def test_mlm_training_reduces_the_loss():
    d = load_dataset("grammar-mlm", n_train=512, n_test=128, seq_len=16)
    torch.manual_seed(0)
    model = build_model("transformer", num_classes=d.num_classes, input_shape=d.input_shape, head="mlm", **TINY)
    cfg = TrainingConfig(epochs=4, batch_size=32, lr=0.01, optimizer="adam")
    history = Trainer(model, d.train, cfg, eval_sets={"test": d.test}, progress=False).fit(eval_initial=True)
    first, last = history[0]["test_loss"], history[-1]["test_loss"]
    assert first == pytest.approx(np.log(T.GRAMMAR_VOCAB_SIZE), abs=0.2)  # BERT init: near a uniform guess
    assert last < first - 0.2 and np.isfinite(history[-1]["train_loss"])  # learns at least the token frequencies


# -- hf: ----------------------------------------------------------------------------------------------
HF_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def test_hf_bert_builds_offline_and_prunes_only_encoder_linears():
    pytest.importorskip("transformers", reason="transformers not installed (pip install 'prunezoo[hf]')")
    model = build_model("hf:bert", num_classes=3, input_shape=(16,), vocab_size=T.GRAMMAR_VOCAB_SIZE, **HF_TINY)
    assert model(tokens()).shape == (4, 3)
    names = list(prunable_parameters(model))
    suffixes = (
        "attention.self.query.weight",
        "attention.self.key.weight",
        "attention.self.value.weight",
        "attention.output.dense.weight",
        "intermediate.dense.weight",
        "output.dense.weight",
    )
    assert names == [f"hf.bert.encoder.layer.{i}.{s}" for i in range(2) for s in suffixes]
    assert model.prunezoo_block_names() == ["hf.bert.encoder.layer.0", "hf.bert.encoder.layer.1"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masks = prune(model, 0.5, criterion="magnitude")
    masks.apply(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names) and masks.sparsity() == pytest.approx(0.5, abs=1e-3)
    assert dense_flops(model, (16,)) > 0
    with pytest.raises(ConfigError, match="token id 45") as err:
        model(torch.full((2, 16), 45))
    assert err.value.field == "model.options.vocab_size"
    with pytest.raises(ConfigError) as err:
        build_model("hf:bert", num_classes=3, input_shape=(16,), bogus_field=1, **HF_TINY)
    assert err.value.field == "model.options.bogus_field"
    with pytest.raises(ConfigError, match="pretrained: true") as err:
        get_model_spec("hf:no-such-type").build(3, (16,), {})
    assert err.value.field == "model.name"


def test_hf_in_a_study(tmp_path):
    pytest.importorskip("transformers", reason="transformers not installed (pip install 'prunezoo[hf]')")
    cfg = parse_config(
        {
            **STUDY,
            "model": {"name": "hf:bert", "options": {**HF_TINY, "vocab_size": T.GRAMMAR_VOCAB_SIZE}},
            "methods": [{"name": "magnitude", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.6]}],
        }
    )
    rows = {r["method"]: r for r in run_study(cfg, tmp_path, workers=1).rows}
    assert rows["magnitude"]["sparsity"] == pytest.approx(0.6, abs=2e-3)


def test_hf_without_transformers_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(ConfigError, match=r"prunezoo\[hf\]") as err:
        build_model("hf:bert", num_classes=2, input_shape=(16,))
    assert err.value.field == "model.name"


def _hf_tiny_config(**change):
    from transformers import BertConfig

    return BertConfig(**{**HF_TINY, "vocab_size": T.GRAMMAR_VOCAB_SIZE, "num_labels": 3, **change})


def test_hf_save_pretrained_dir_is_a_start_checkpoint(tmp_path):
    pytest.importorskip("transformers", reason="transformers not installed (pip install 'prunezoo[hf]')")
    from transformers import BertForSequenceClassification, BertModel

    from prunezoo.models.checkpoints import start_from

    torch.manual_seed(1)
    src = BertForSequenceClassification(_hf_tiny_config())
    src.save_pretrained(tmp_path / "cls")
    assert (tmp_path / "cls" / "config.json").is_file()
    opts = {**HF_TINY, "vocab_size": T.GRAMMAR_VOCAB_SIZE}
    model = build_model("hf:bert", num_classes=3, input_shape=(16,), **opts)
    assert start_from(model, tmp_path / "cls") is None  # no masks in a dense save
    want = src.state_dict()
    got = model.state_dict()
    assert {f"hf.{n}" for n in want} <= set(got)
    assert all(torch.equal(got[f"hf.{n}"], t) for n, t in want.items())  # the head too: same classes
    src.eval(), model.eval()
    assert torch.allclose(model(tokens()), src(input_ids=tokens(), attention_mask=(tokens() != 0).long()).logits)

    # the encoder alone (BertModel): the body is loaded, the 5-class head stays at its initialisation
    enc = BertModel(_hf_tiny_config())
    enc.save_pretrained(tmp_path / "enc")
    model5 = build_model("hf:bert", num_classes=5, input_shape=(16,), **opts)
    head0 = model5.hf.classifier.weight.detach().clone()
    start_from(model5, tmp_path / "enc")
    assert all(torch.equal(model5.state_dict()[f"hf.bert.{n}"], t) for n, t in enc.state_dict().items())
    assert torch.equal(model5.hf.classifier.weight, head0)

    # a wider FFN than the model's: ConfigError naming the parameter, exit 2 in a study writing nothing
    BertForSequenceClassification(_hf_tiny_config(intermediate_size=48)).save_pretrained(tmp_path / "wide")
    wide = r"'hf\.bert\.encoder\.layer\.0\.intermediate\.dense\.bias' has shape \(48,\)"
    with pytest.raises(ConfigError, match=wide) as err:
        start_from(model, tmp_path / "wide", field="model")
    assert err.value.field == "model.checkpoint"

    import yaml
    from typer.testing import CliRunner

    from prunezoo.cli import app

    study = {
        **STUDY,
        "model": {"name": "hf:bert", "options": opts, "checkpoint": str(tmp_path / "wide")},
        "methods": [{"name": "magnitude", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.5]}],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "intermediate.dense.bias" in res.output, res.output
    assert not (tmp_path / "out").exists()

    # a study starting every model from the save runs
    cfg = parse_config({**study, "model": {**study["model"], "checkpoint": str(tmp_path / "cls")}, "methods": []})
    rows = run_study(cfg, tmp_path / "ok", workers=1).rows
    assert len(rows) == 1 and rows[0]["kind"] == "dense"
