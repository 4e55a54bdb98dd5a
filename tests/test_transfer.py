"""Sparse transfer: gradual unfreezing (frozen = untouched, masks exact, LR rewound per stage), start
checkpoints that keep their masks, and the errors for mismatched checkpoints, masks and blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.data import load_dataset
from prunezoo.data.datasets import ArrayDataset
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.study import run_study
from prunezoo.methods.transfer import best_epoch
from prunezoo.models.checkpoints import head_prefix, load_start, read_masks
from prunezoo.schedules.unfreeze import GradualUnfreeze, find_blocks, unfreeze_stages
from prunezoo.sparsity import MaskSet
from prunezoo.training import Trainer, TrainingConfig
from prunezoo.training.callbacks import Callback, EnforceMasks

runner = CliRunner()


class TinyEncoder(nn.Module):
    """embeddings -> blocks (Linear + LayerNorm) -> head, the layout gradual unfreezing expects."""

    def __init__(self, d_in: int = 6, d: int = 8, n_blocks: int = 3, classes: int = 3):
        super().__init__()
        self.embeddings = nn.Linear(d_in, d, bias=False)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.ReLU()) for _ in range(n_blocks))
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        h = self.embeddings(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


class Recorder(Callback):
    """Per step: the LR used, the stage, and the parameters after the update."""

    def __init__(self, unfreeze: GradualUnfreeze):
        self.unfreeze, self.lrs, self.stages, self.after = unfreeze, [], [], []

    def on_train_begin(self, trainer):
        self.before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    def on_step_end(self, trainer, step, loss):
        self.lrs.append(trainer.optimizer.param_groups[0]["lr"])
        self.stages.append(self.unfreeze.stage)
        self.after.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})


def _toy_data(n: int = 48) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return ArrayDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_gradual_unfreeze_frozen_untouched_masks_exact_lr_rewound(optimizer):
    torch.manual_seed(0)
    model = TinyEncoder()
    blocks = find_blocks(model, None)
    assert blocks == ["blocks.0", "blocks.1", "blocks.2"]
    head = head_prefix(model)
    stages = unfreeze_stages(model, blocks, head)
    names = [n for n, _ in model.named_parameters()]
    # stage 0: head + biases + LayerNorms; then blocks.2, blocks.1, blocks.0; then everything
    assert stages[0] == {n for n in names if n.startswith("head.") or n.endswith(".bias") or n.endswith(".1.weight")}
    added = [sorted(b - a) for a, b in zip(stages, stages[1:])]
    assert added == [["blocks.2.0.weight"], ["blocks.1.0.weight"], ["blocks.0.0.weight"], ["embeddings.weight"]]

    masks = MaskSet(
        {f"blocks.{i}.0.weight": torch.rand(8, 8, generator=torch.Generator().manual_seed(i)) > 0.5 for i in range(3)}
    )
    cfg = TrainingConfig(
        epochs=len(stages),
        batch_size=16,
        optimizer=optimizer,
        lr=0.05,
        momentum=0.9,
        weight_decay=0.1,
        lr_schedule="cosine",  # overridden by the stages' own linear decay
    )
    unfreeze = GradualUnfreeze(stages, lr=cfg.lr, stage_epochs=1)
    rec = Recorder(unfreeze)
    trainer = Trainer(model, _toy_data(), cfg, callbacks=[EnforceMasks(masks), unfreeze, rec], progress=False)
    trainer.fit()
    spe = trainer.steps_per_epoch
    assert spe == 3 and len(rec.after) == spe * len(stages)
    assert rec.stages == [s // spe for s in range(len(rec.after))]  # stage order: one per epoch, in plan order
    prev = rec.before
    for step, (after, stage) in enumerate(zip(rec.after, rec.stages)):
        for n in names:
            if n not in stages[stage]:
                assert torch.equal(after[n], prev[n]), (step, n)  # bit-exact despite weight decay and momentum
        for n, m in masks.items():
            assert not after[n][~m].any(), (step, n)
        prev = after
    for n in stages[0]:  # trainable ones did train
        assert not torch.equal(rec.after[-1][n], rec.before[n]), n
    for stage in range(len(stages)):
        lrs = rec.lrs[stage * spe : (stage + 1) * spe]
        assert lrs[0] == cfg.lr  # rewound at every stage
        assert all(a > b for a, b in zip(lrs, lrs[1:]))  # linear decay inside it
        assert lrs == pytest.approx([cfg.lr * (1 - i / spe) for i in range(spe)])
    assert all(p.requires_grad for p in model.parameters())  # handed back fully trainable


def test_find_blocks_errors():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="options.blocks"):
        find_blocks(model, None, "options.blocks")
    with pytest.raises(ConfigError, match="no module 'x'"):
        find_blocks(model, ["0", "x"])
    with pytest.raises(ConfigError, match="no parameters"):
        find_blocks(model, ["1"])
    assert find_blocks(model, ["0", "2"]) == ["0", "2"]
    assert head_prefix(model) == "2"


def test_best_epoch_is_the_best_validation_epoch():
    hist = [{"val_acc": 0.5, "val_loss": 1.0}, {"val_acc": 0.7, "val_loss": 0.9}, {"val_acc": 0.7, "val_loss": 0.8}]
    assert best_epoch(hist, "val_acc") == 1
    assert best_epoch(hist, "val_loss") == 2
    assert best_epoch(hist, "last") == 2
    assert best_epoch([{"test_acc": 0.1}, {"test_acc": 0.2}], "val_acc") == 1  # no validation split


def test_load_start_checks_shapes_and_names_but_allows_a_new_head():
    src, dst = TinyEncoder(classes=5), TinyEncoder(classes=3)
    kept = load_start(dst, src.state_dict(), head="head", field="model.checkpoint")
    assert kept == ["head.weight", "head.bias"]
    assert torch.equal(dst.embeddings.weight, src.embeddings.weight)
    with pytest.raises(ConfigError, match="'embeddings.weight' has shape \\(4, 6\\) in the checkpoint"):
        load_start(TinyEncoder(d=8), TinyEncoder(d=4).state_dict(), head="head")
    with pytest.raises(ConfigError, match="lacks parameter 'blocks.3"):
        load_start(TinyEncoder(n_blocks=4), src.state_dict(), head="head")


def test_vision_pair_classes_relabelled():
    a = load_dataset("digits", classes=[0, 1, 2, 3, 4])
    b = load_dataset("digits", classes=[5, 6, 7, 8, 9])
    full = load_dataset("digits")
    assert a.num_classes == b.num_classes == 5
    assert sorted(b.train.y.unique().tolist()) == [0, 1, 2, 3, 4]
    assert len(a.train) + len(b.train) == len(full.train)
    assert torch.equal(b.test.x, full.test.x[full.test.y >= 5])
    with pytest.raises(ValueError, match="classes"):
        load_dataset("digits", classes=[3, 3])


# -- studies -------------------------------------------------------------------------------------
PRE = {
    "dataset": {"name": "digits", "options": {"classes": [0, 1, 2, 3, 4]}},
    "sparsity": 0.8,
    "gmp_frequency": 2,
    "training": {"epochs": 2, "lr": 0.05, "batch_size": 64},
}


PRE_ = {"pretrain": PRE}


def _study(methods, **extra):
    return {
        "name": "tr",
        "dataset": {"name": "digits", "val_fraction": 0.2, "options": {"classes": [5, 6, 7, 8, 9]}},
        "model": {"name": "mlp", "options": {"hidden": [24, 16]}},
        "training": {"epochs": 1, "lr": 0.05, "batch_size": 64},
        "methods": methods,
        **extra,
    }


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_three_recipes_share_one_pretraining_and_keep_its_masks(tmp_path):
    methods = [
        {"name": r, "kind": "transfer", "options": {"recipe": r, "blocks": ["fc1", "fc2"], "pretrain": PRE}}
        for r in ("dense", "extended", "gradual-unfreeze")
    ]
    config = _write(tmp_path / "study.yaml", _study(methods))
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out"), "-q", "--workers", "1"])
    assert res.exit_code == 0, res.output
    study = next((tmp_path / "out").glob("tr-*"))
    pre_dirs = list((study / "runs").glob("transfer-pretrain-*")) or list(study.rglob("transfer-pretrain-*"))
    assert len(pre_dirs) == 1  # one pretraining for the three recipes
    source = MaskSet.load(pre_dirs[0] / "masks.safetensors")
    assert "fc3.weight" not in source  # the head stays dense
    rows = json.loads((study / "results.json").read_text())["rows"]
    assert sorted(r["recipe"] for r in rows if r["kind"] == "transfer") == ["dense", "extended", "gradual-unfreeze"]
    for r in ("dense", "extended", "gradual-unfreeze"):
        row = next(x for x in rows if x["recipe"] == r)
        assert row["kind"] == "transfer" and row["sparsity"] == pytest.approx(source.sparsity(), abs=1e-6)
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01) and 1 <= row["best_epoch"]
        run = study.rglob(f"{row['run_id']}/masks.safetensors")
        after = MaskSet.load(next(run))
        assert all(torch.equal(after[n], source[n]) for n in source)  # same positions after transfer
        from safetensors.torch import load_file

        final = load_file(str(next(study.rglob(f"{row['run_id']}/final.safetensors"))))
        assert all(not final[n][~source[n]].any() for n in source)  # masked weights are still exactly 0
    gu = next(x for x in rows if x["recipe"] == "gradual-unfreeze")
    hist = json.loads((study / "histories.json").read_text())[gu["run_id"]]
    assert len(hist) == 4 and all("val_loss" in h and "train_loss" in h for h in hist)  # head, fc2, fc1, all

    from prunezoo.analysis.report import transfer_section

    html = transfer_section(rows, json.loads((study / "histories.json").read_text()))
    assert "Sparse transfer" in html and "gradual-unfreeze" in html and "scratch" in html
    assert "<th>epoch 4</th>" in html and "epoch 5" not in html  # gradual-unfreeze: 4 epochs of train / val loss


def test_start_from_a_run_dir_and_a_state_dict_file(tmp_path):
    # a finished tiny GMP run: its job directory holds final weights + masks
    src = parse_config(
        {
            **_study([{"name": "g", "kind": "gmp", "sparsities": [0.7], "gmp_frequency": 2}]),
            "dataset": {"name": "digits", "options": {"classes": [0, 1, 2, 3, 4]}},
        }
    )
    out = run_study(src, tmp_path / "src", workers=1)
    job = out.directory / "runs" / next(r["run_id"] for r in out.rows if r["method"] == "g")
    if not job.exists():
        job = next(out.directory.rglob(next(r["run_id"] for r in out.rows if r["method"] == "g")))
    gmp_masks = MaskSet.load(job / "masks.safetensors")
    body = {n: m for n, m in gmp_masks.items() if not n.startswith("fc3.")}

    cfg = parse_config(_study([{"name": "t", "kind": "transfer", "options": {"checkpoint": str(job)}}]))
    row = next(r for r in run_study(cfg, tmp_path / "a", workers=1).rows if r["method"] == "t")
    assert row["sparsity"] == pytest.approx(MaskSet(body).sparsity(), abs=1e-6)

    # a plain state-dict file: its zeros are the masks; model.checkpoint keeps them for any job (dense here)
    from safetensors.torch import load_file

    state = load_file(str(job / "final.safetensors"))
    torch.save(state, tmp_path / "plain.pt")
    model = {"name": "mlp", "options": {"hidden": [24, 16]}, "checkpoint": str(tmp_path / "plain.pt")}
    cfg = parse_config({**_study([]), "model": {**model, "masks": str(job / "masks.safetensors")}})
    res = run_study(cfg, tmp_path / "b", workers=1)
    dense_dir = next(res.directory.rglob(f"{res.rows[0]['run_id']}/final.safetensors"))
    final = load_file(str(dense_dir))
    for n, m in gmp_masks.items():  # the head too: same task size, so its masks are kept as well
        assert torch.equal(final[n] != 0, m)  # mask positions identical after training
    plain = {"name": "t", "kind": "transfer", "options": {"checkpoint": str(tmp_path / "plain.pt")}}
    cfg = parse_config(_study([plain]))
    row = next(r for r in run_study(cfg, tmp_path / "c", workers=1).rows if r["method"] == "t")
    assert row["sparsity"] == pytest.approx(MaskSet(body).sparsity(), abs=1e-6)


def _rejected(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)


def test_bad_checkpoint_masks_and_blocks_exit_2_writing_nothing(tmp_path):
    from safetensors.torch import save_file

    from prunezoo.models import build_model

    small = build_model("mlp", num_classes=5, input_shape=(1, 8, 8), hidden=[12, 16])  # fc1 narrower
    torch.save(small.state_dict(), tmp_path / "small.pt")
    save_file({"blocks.0.0.weight": torch.ones(8, 8, dtype=torch.uint8)}, str(tmp_path / "other.safetensors"))
    out = tmp_path / "out"
    cases = [
        (
            {"model": {"name": "mlp", "options": {"hidden": [24, 16]}, "checkpoint": str(tmp_path / "small.pt")}},
            ["model.checkpoint", "fc1.weight"],
        ),
        (
            {"model": {"name": "mlp", "options": {"hidden": [24, 16]}, "masks": str(tmp_path / "other.safetensors")}},
            ["model.masks", "another model", "blocks.0.0.weight"],
        ),
        (
            {"methods": [{"name": "t", "kind": "transfer", "options": {"recipe": "gradual-unfreeze", **PRE_}}]},
            ["methods[0].options.blocks"],
        ),
        (
            {"methods": [{"name": "t", "kind": "transfer", "options": {"checkpoint": str(tmp_path / "small.pt")}}]},
            ["methods[0].options.checkpoint", "fc1.weight"],
        ),
        (
            {"methods": [{"name": "t", "kind": "transfer", "options": {"recipe": "dense"}}]},
            ["'pretrain'", "'checkpoint'"],
        ),
        (
            {
                "methods": [
                    {
                        "name": "t",
                        "kind": "transfer",
                        "options": {"pretrain": {**PRE, "dataset": {"name": "digits", "options": {"bogus": 1}}}},
                    }
                ]
            },
            ["methods[0].options.pretrain.dataset", "bogus"],
        ),
    ]
    for i, (change, needles) in enumerate(cases):
        config = _write(tmp_path / f"s{i}.yaml", {**_study([]), **change})
        _rejected(runner.invoke(app, ["run", str(config), "--out", str(out), "-q"]), *needles)
        assert not out.exists()  # nothing written


def test_read_masks_rejects_shape_mismatch(tmp_path):
    MaskSet({"blocks.0.0.weight": torch.ones(4, 4, dtype=torch.bool)}).save(tmp_path / "m.safetensors")
    with pytest.raises(ConfigError, match="another model.*shape"):
        read_masks(TinyEncoder(), tmp_path / "m.safetensors")


def test_gradual_unfreeze_on_the_transformer():
    from prunezoo.models import build_model

    data = load_dataset("grammar-cls", task="majority", n_train=64, n_test=32, seq_len=12)
    torch.manual_seed(0)
    model = build_model(
        "transformer", num_classes=data.num_classes, input_shape=data.input_shape, dim=8, depth=2, heads=2
    )
    blocks = find_blocks(model, None)
    assert blocks == ["blocks.0", "blocks.1"] and head_prefix(model) == "head"
    stages = unfreeze_stages(model, blocks, "head")
    names = dict(model.named_parameters())
    linear = {n for n in names if n.startswith("blocks.") and n.endswith(".weight") and names[n].dim() == 2}
    assert not stages[0] & linear and stages[1] & linear == {n for n in linear if n.startswith("blocks.1.")}
    assert not any(n.startswith("embeddings.") and names[n].dim() == 2 for n in stages[-2])  # embeddings: last
    masks = MaskSet({n: torch.rand(names[n].shape, generator=torch.Generator().manual_seed(1)) > 0.8 for n in linear})
    cfg = TrainingConfig(epochs=len(stages), batch_size=16, optimizer="adamw", lr=1e-3, weight_decay=0.01)
    unfreeze = GradualUnfreeze(stages, lr=cfg.lr)
    rec = Recorder(unfreeze)
    Trainer(model, data.train, cfg, callbacks=[EnforceMasks(masks), unfreeze, rec], progress=False).fit()
    prev = rec.before
    for after, stage in zip(rec.after, rec.stages):
        assert all(torch.equal(after[n], prev[n]) for n in names if n not in stages[stage])
        assert all(not after[n][~m].any() for n, m in masks.items())
        prev = after


# -- early stopping ----------------------------------------------------------------------------------
def test_early_stopping_callback_reads_the_history_so_resume_stops_again():
    from types import SimpleNamespace

    from prunezoo.methods.transfer import EarlyStopping

    hist = [{"val_acc": 0.5}, {"val_acc": 0.6}, {"val_acc": 0.6}]
    t = SimpleNamespace(history=hist[:2], stop_requested=False)
    es = EarlyStopping(1, "val_acc")
    es.on_epoch_end(t, 1, hist[1])
    assert not t.stop_requested and not es.stopped  # epoch 2 improved
    t.history = hist
    es.on_epoch_end(t, 2, hist[2])
    assert t.stop_requested and es.stopped  # a tie is no improvement
    resumed = SimpleNamespace(history=list(hist), stop_requested=False)  # a checkpoint written after the stop
    again = EarlyStopping(1, "val_acc")
    again.on_train_begin(resumed)
    assert resumed.stop_requested and again.stopped
    t2 = SimpleNamespace(history=list(hist), stop_requested=False)
    EarlyStopping(2, "val_acc").on_train_begin(t2)
    assert not t2.stop_requested


def test_patience_stops_transfer_early_and_none_runs_full_length(tmp_path):
    from prunezoo.models import build_model

    torch.manual_seed(0)
    start = build_model("mlp", num_classes=5, input_shape=(1, 8, 8), hidden=[24, 16])
    torch.save(start.state_dict(), tmp_path / "start.pt")
    opts = {"checkpoint": str(tmp_path / "start.pt")}
    methods = [
        {"name": "full", "kind": "transfer", "options": opts},
        {"name": "es", "kind": "transfer", "options": {**opts, "patience": 1}},
    ]
    # an LR so small that validation accuracy cannot move: epoch 1 stays the best, epoch 2 does not improve
    study = _study(methods, training={"epochs": 4, "lr": 1e-7, "batch_size": 64})
    res = run_study(parse_config(study), tmp_path / "out", workers=1)
    rows = {r["method"]: r for r in res.rows}
    hists = json.loads((res.directory / "histories.json").read_text())
    full, es = hists[rows["full"]["run_id"]], hists[rows["es"]["run_id"]]
    assert len(full) == 4 and rows["full"]["stopped_epoch"] is None
    assert len(es) == 2 and rows["es"]["stopped_epoch"] == 2 and rows["es"]["best_epoch"] == 1
    assert [h["val_acc"] for h in es] == [h["val_acc"] for h in full[:2]]  # same LR schedule: same epochs
    assert rows["es"]["test_acc"] == full[0]["test_acc"]  # the row is the best epoch's
    with pytest.raises(ConfigError, match="patience"):
        parse_config(_study([{"name": "t", "kind": "transfer", "options": {**opts, "patience": 1, "select": "last"}}]))


# -- a compacted (channel-removed) start -------------------------------------------------------------
def test_transfer_from_a_structured_runs_compacted_model(tmp_path):
    from safetensors.torch import load_file

    from prunezoo.methods.transfer import compact_source, compact_start
    from prunezoo.models import build_model
    from prunezoo.sparsity import prunable_parameters
    from prunezoo.structured import load_compact

    src = {
        **_study([{"name": "s", "kind": "structured", "criterion": "l1-filter", "sparsities": [0.5]}]),
        "dataset": {"name": "digits", "options": {"classes": [0, 1, 2, 3, 4]}},
        "finetune": {"epochs": 1, "lr": 0.05, "batch_size": 64},
    }
    out = run_study(parse_config(src), tmp_path / "src", workers=1)
    run = out.directory / "runs" / next(r["run_id"] for r in out.rows if r["method"] == "s")
    assert compact_source(str(run)) == run / "compact" == compact_source(str(run / "compact"))
    assert compact_source(str(tmp_path)) is None
    saved = load_compact(run / "compact")
    model, spec = compact_start(run / "compact", 3, None, seed=0)
    assert spec["model"] == "mlp" and model.fc3.out_features == 3
    assert model.fc3.in_features == saved.fc3.in_features < 16  # the compact's own, smaller shapes
    want, got = saved.state_dict(), model.state_dict()
    assert all(torch.equal(got[n], t) for n, t in want.items() if not n.startswith("fc3."))

    # the transfer task has 3 classes: the head is new, the body keeps the compact shapes
    task = {"name": "digits", "val_fraction": 0.2, "options": {"classes": [5, 6, 7]}}
    cfg = parse_config(
        {**_study([{"name": "t", "kind": "transfer", "options": {"checkpoint": str(run)}}]), "dataset": task}
    )
    res = run_study(cfg, tmp_path / "t", workers=1)
    row = next(r for r in res.rows if r["method"] == "t")
    final = load_file(str(next(res.directory.rglob(f"{row['run_id']}/final.safetensors"))))
    assert final["fc3.weight"].shape == (3, saved.fc3.in_features)
    assert all(final[n].shape == t.shape for n, t in want.items() if not n.startswith("fc3."))
    dense = build_model("mlp", num_classes=3, input_shape=(1, 8, 8), hidden=[24, 16])
    prunable = sum(p.numel() for p in prunable_parameters(dense, exclude=["fc3.*"]).values())
    nnz = sum(int((t != 0).sum()) for n, t in final.items() if n in ("fc1.weight", "fc2.weight"))
    assert row["prunable"] == prunable and row["nnz"] == nnz and row["sparsity"] > 0.4
    assert row["flops_sparse"] < row["flops_dense"] == next(r for r in res.rows if r["kind"] == "dense")["flops_dense"]

    # a damaged compact folder is rejected before any training (exit 2, nothing written)
    import shutil

    shutil.copytree(run / "compact", tmp_path / "bad")
    (tmp_path / "bad" / "architecture.json").write_text('{"format": "other/1"}')
    config = _write(
        tmp_path / "bad.yaml",
        {
            **_study([{"name": "t", "kind": "transfer", "options": {"checkpoint": str(tmp_path / "bad")}}]),
            "dataset": task,
        },
    )
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "none"), "-q"])
    _rejected(res, "methods[0].options.checkpoint", "other/1")
    assert not (tmp_path / "none").exists()
