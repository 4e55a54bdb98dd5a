"""Model zoos: generate (resume, executors, batched), twins (MP, VD, any criterion), import, config errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from prunezoo.errors import ConfigError
from prunezoo.zoo import layout
from prunezoo.zoo.generate import generate_zoo, member_id, parse_zoo_config
from prunezoo.zoo.twins import make_twins, parse_twin_method

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "max_train": 200, "max_test": 100},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "epochs": 2,
    "batch_size": 10,
    "seeds": [1, 2],
    "lr": [1e-2, 3e-3],
    "init": "kaiming_uniform",
}


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo") / "tiny"
    summary = generate_zoo(parse_zoo_config(TINY), root, workers=1, progress=False)
    assert summary["models"] == summary["done"] == summary["trained"] == 4
    return root


def test_generate_stores_every_epoch_and_init(zoo):
    models = layout.list_models(zoo)
    assert len(models) == 4
    cfg = layout.read_zoo_config(zoo)
    assert cfg["kind"] == "zoo" and sorted(cfg["members"]) == [m.name for m in models]
    for m in models:
        params = layout.read_params(m)
        assert layout.list_epochs(m) == [0, 1, 2]
        rows = layout.read_results(m)
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= rows[0].keys()
        # epoch 0 is the seeded init: seed_everything(seed) then build_model.
        from prunezoo.training import seed_everything

        seed_everything(params["seed"])
        fresh = layout.build_member_model(params)
        assert _states_equal(layout.load_state(m, 0), fresh.state_dict())
        assert not _states_equal(layout.load_state(m, 0), layout.load_state(m, 2))  # it trained
        assert layout.read_done(m)["final"] == rows[-1]
        assert rows[-1]["test_acc"] > rows[0]["test_acc"] + 0.1  # digits, 2 epochs: clearly above chance (0.1)
    grid = {(layout.read_params(m)["seed"], layout.read_params(m)["lr"]) for m in models}
    assert grid == {(1, 1e-2), (2, 1e-2), (1, 3e-3), (2, 3e-3)}


def test_resume_redoes_only_unfinished_models(zoo, tmp_path):
    # A partial zoo (only one model trained, as after a kill) completes on re-run with identical models.
    partial = tmp_path / "partial"
    cfg = parse_zoo_config(TINY)
    first = generate_zoo(cfg, partial, workers=1, progress=False, limit=1)
    assert first["trained"] == 1 and first["done"] == 1
    victim = layout.list_models(partial)[0]
    (victim / layout.DONE_FILE).unlink()  # "killed" before its final marker
    stamp = {m.name: (m / layout.DONE_FILE).stat().st_mtime_ns for m in layout.list_models(partial)}
    assert stamp == {}
    second = generate_zoo(cfg, partial, workers=1, progress=False)
    assert second["trained"] == 4 and second["done"] == 4
    # Deleting one marker re-runs exactly that model; others' markers untouched.
    stamps = {m.name: (m / layout.DONE_FILE).stat().st_mtime_ns for m in layout.list_models(partial)}
    (layout.list_models(partial)[2] / layout.DONE_FILE).unlink()
    third = generate_zoo(cfg, partial, workers=1, progress=False)
    assert third["trained"] == 1 and third["skipped"] == 3
    after = {m.name: (m / layout.DONE_FILE).stat().st_mtime_ns for m in layout.list_models(partial)}
    assert [n for n in stamps if stamps[n] != after[n]] == [layout.list_models(partial)[2].name]
    # Same seed => same models (determinism across runs and the resume path).
    for m in layout.list_models(zoo):
        assert _states_equal(layout.load_state(m), layout.load_state(partial / m.name))


@pytest.mark.slow  # spawning workers that import torch takes ~30 s on a loaded 2-core machine
def test_process_pool_matches_inline(zoo, tmp_path):
    cfg = parse_zoo_config(TINY | {"lr": 1e-2})
    out = generate_zoo(cfg, tmp_path / "pool", workers=2, progress=False)
    assert out["done"] == 2
    for m in layout.list_models(tmp_path / "pool"):
        assert _states_equal(layout.load_state(m), layout.load_state(zoo / m.name))


def test_mp_twins_have_level_sparsity_and_frozen_zeros(zoo):
    method = parse_twin_method("mp", levels="0.5,0.8", epochs=2)
    summary = make_twins(zoo, method, workers=1, progress=False)
    assert set(summary["sets"]) == {"mp-0.5", "mp-0.8"} and summary["trained"] == 8
    for set_name, level in (("mp-0.5", 0.5), ("mp-0.8", 0.8)):
        twins = layout.list_models(layout.twin_set_dir(zoo, set_name))
        assert len(twins) == 4
        for t in twins:
            params = layout.read_params(t)
            assert params["original"] == t.name and params["level"] == level
            assert layout.original_dir(t) == zoo / t.name
            rows = layout.read_results(t)
            assert [r["epoch"] for r in rows] == [0, 1, 2]
            weights = [n for n in layout.load_state(t, 0) if n.endswith("weight")]
            total = sum(layout.load_state(t, 0)[n].numel() for n in weights)
            for r in rows:
                assert abs(r["sparsity_ratio"] - level) <= 1 / total
            zero0 = {n: layout.load_state(t, 0)[n] == 0 for n in weights}
            for epoch in (1, 2):
                state = layout.load_state(t, epoch)
                for n in weights:  # pruned weights stay exactly 0 through fine-tuning
                    assert torch.all(state[n][zero0[n]] == 0)
            # Global magnitude: every kept weight of the final dense state outranks every pruned one.
            dense = layout.load_state(zoo / t.name)
            kept = torch.cat([dense[n][~zero0[n]].abs() for n in weights])
            pruned = torch.cat([dense[n][zero0[n]].abs() for n in weights])
            assert kept.min() >= pruned.max()
            # The surviving weights were fine-tuned.
            assert not torch.equal(layout.load_state(t, 2)[weights[0]], layout.load_state(t, 0)[weights[0]])
    again = make_twins(zoo, method, workers=1, progress=False)
    assert again["trained"] == 0 and again["skipped"] == 8


def test_vd_twin_sanity_and_sparsity_log(tmp_path):
    # cnn-s: conv and linear layers become variational.
    cfg = parse_zoo_config(
        {
            "dataset": {"name": "mnist5k", "max_train": 100, "max_test": 100},
            "model": {"name": "cnn-s"},
            "epochs": 1,
            "seeds": [0],
            "lr": 3e-3,
            "init": "kaiming_uniform",
        }
    )
    zoo = tmp_path / "cnn"
    generate_zoo(cfg, zoo, workers=1, progress=False)
    make_twins(zoo, parse_twin_method("vd", epochs=2, overrides=["lr_scale=1.0"]), workers=1, progress=False)
    [twin] = layout.list_models(layout.twin_set_dir(zoo, "vd"))
    sanity = layout.read_done(twin)["sanity"]
    # Converted model in eval reproduces the original (see also tests/test_reparam.py).
    assert sanity["converted_test_acc"] == pytest.approx(sanity["original_test_acc"], abs=0.011)
    assert sanity["converted_test_loss"] == pytest.approx(sanity["original_test_loss"], rel=1e-2)
    rows = layout.read_results(twin)
    assert [r["epoch"] for r in rows] == [0, 1, 2] and all("sparsity_ratio" in r for r in rows)
    assert rows[1]["kl_weight"] == 0.0 and rows[2]["kl_weight"] == pytest.approx(0.01 / 25)  # the ramp
    # Stored states are plain (from_variational) models: loadable by build_member_model, zeros = dropped.
    model = layout.load_model(twin)
    zeros = sum(int((p == 0).sum()) for n, p in model.named_parameters() if n.endswith("weight"))
    total = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    assert zeros / total == pytest.approx(rows[-1]["sparsity_ratio"], abs=2 / total)


def test_any_criterion_twin_via_cli(zoo):
    from prunezoo.cli import app

    res = CliRunner().invoke(
        app,
        [
            "zoo",
            "twin",
            str(zoo),
            "--method",
            "{name: rnd, criterion: random, scheme: erk}",
            "--levels",
            "0.6",
            "--epochs",
            "1",
            "--workers",
            "1",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    twins = layout.list_models(layout.twin_set_dir(zoo, "rnd-0.6"))
    assert len(twins) == 4
    assert layout.read_zoo_config(layout.twin_set_dir(zoo, "rnd-0.6"))["method"]["criterion"] == "random"
    assert all(abs(layout.read_results(t)[0]["sparsity_ratio"] - 0.6) < 0.02 for t in twins)
    bad = CliRunner().invoke(app, ["zoo", "twin", str(zoo), "--method", "{name: x, criterion: nope}"])
    assert bad.exit_code == 2 and "method.criterion" in bad.output


def _public_fixture(root, n_models: int = 2):
    """A tiny zoo in the public layout: ModuleList keys shifted by dropout, torch.save'd checkpoints."""
    from prunezoo.models import build_model

    public_index = [
        0,
        4,
        8,
        12,
        15,
    ]  # Conv MP act Drop | Conv MP act Drop | Conv act Flatten | Linear act Drop | Linear
    states = {}
    for i in range(n_models):
        torch.manual_seed(i)
        net = build_model("cnn-s", num_classes=10, input_shape=(1, 28, 28), activation="relu", dropout=0.5)
        d = root / f"NN_tune_trainable_{i:05d}_seed={i}"
        params = {
            "model::type": "CNN",
            "model::nlin": "relu",
            "model::init_type": "kaiming_uniform",
            "model::dropout": 0.5,
            "optim::optimizer": "adam",
            "optim::lr": 1e-3,
            "optim::wd": 0.0,
            "training::batchsize": 10,
            "seed": i,
        }
        d.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps(params))
        lines = []
        for epoch in range(3):
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.01)
            sd = net.state_dict()
            layers = ["conv1", "conv2", "conv3", "fc1", "fc2"]
            public = {
                f"module_list.{j}.{leaf}": sd[f"{name}.{leaf}"].clone()
                for j, name in zip(public_index, layers)
                for leaf in ("weight", "bias")
            }
            ck = d / f"checkpoint_{epoch:06d}"
            ck.mkdir()
            torch.save(public, ck / "checkpoints")
            states[(d.name, epoch)] = {k: v.clone() for k, v in sd.items()}
            lines.append(json.dumps({"training_iteration": epoch, "test_acc": 0.1 * epoch, "train_loss": 2.0}))
        (d / "result.json").write_text("\n".join(lines) + "\n")
    bad = root / "not_a_cnn"
    bad.mkdir()
    (bad / "params.json").write_text("{}")
    (bad / "checkpoint_000000").mkdir()
    torch.save({"w": torch.zeros(3, 3)}, bad / "checkpoint_000000" / "checkpoints")
    return states


def test_import_public_layout_round_trip(tmp_path):
    from prunezoo.zoo.importer import import_zoo

    states = _public_fixture(tmp_path / "public")
    summary = import_zoo(tmp_path / "public", tmp_path / "imported", dataset="mnist5k")
    assert summary["imported"] == 2 and summary["skipped"] == 1 and "not_a_cnn" in summary["skipped_reasons"][0]
    models = layout.list_models(tmp_path / "imported")
    assert [m.name for m in models] == sorted({k[0] for k in states})
    for m in models:
        params = layout.read_params(m)
        assert params["model"] == "cnn-s" and params["model_options"] == {"activation": "relu", "dropout": 0.5}
        assert params["lr"] == 1e-3 and params["public"]["model::type"] == "CNN"
        assert layout.list_epochs(m) == [0, 1, 2]
        assert [r["epoch"] for r in layout.read_results(m)] == [0, 1, 2]
        for epoch in range(3):
            assert _states_equal(layout.load_state(m, epoch), states[(m.name, epoch)])
        layout.load_model(m, 1)  # loads into the prunezoo architecture
    # The public files themselves are readable through the layout too (weights_only torch.load).
    pub = next(p for p in sorted((tmp_path / "public").iterdir()) if p.name.startswith("NN"))
    assert set(layout.load_state(pub, 2)) == {
        f"module_list.{j}.{leaf}" for j in (0, 4, 8, 12, 15) for leaf in ("weight", "bias")
    }


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"activation": ["tanh", "swishy"]}, "activation"),
        ({"lr": [1e-3, 0]}, "lr"),
        ({"model": {"name": "mlp"}, "dropout": 0.5}, "dropout"),
        ({"seeds": {"start": 0, "count": 0}}, "seeds"),
        ({"dataset": {"name": "digits", "max_train": 0}}, "dataset.max_train"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 2, "trainr": "loop"}, "trainr"),
    ],
)
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ConfigError) as err:
        parse_zoo_config(bad)
    assert err.value.field == field


def test_cli_bad_config_writes_nothing(tmp_path):
    from prunezoo.cli import app

    cfg = tmp_path / "zoo.yaml"
    cfg.write_text(json.dumps(TINY))
    res = CliRunner().invoke(
        app, ["zoo", "generate", str(cfg), "--out", str(tmp_path / "z"), "--set", "init=glorot", "-q"]
    )
    assert res.exit_code == 2 and "init" in res.output
    assert not (tmp_path / "z").exists()


def test_batched_trainer_writes_the_same_layout(zoo, tmp_path):
    import prunezoo.zoo.population  # noqa: F401  (a shipped feature: a broken import must fail, not skip)

    cfg = parse_zoo_config(TINY | {"trainer": "batched", "chunk_size": 3})
    out = generate_zoo(cfg, tmp_path / "batched", workers=1, progress=False)
    assert out["done"] == 4
    for m in layout.list_models(tmp_path / "batched"):
        assert layout.read_done(m)["trainer"] == "batched"
        assert layout.list_epochs(m) == [0, 1, 2]
        assert [r["epoch"] for r in layout.read_results(m)] == [0, 1, 2]
        # Same member id as the loop trainer (content address excludes the trainer); same init;
        # no dropout, so the population matches the per-model loop up to float rounding.
        loop = zoo / m.name
        assert _states_equal(layout.load_state(m, 0), layout.load_state(loop, 0))
        for k, v in layout.load_state(m).items():
            torch.testing.assert_close(v, layout.load_state(loop)[k], atol=1e-4, rtol=1e-4)
    assert (
        member_id(layout.read_params(layout.list_models(tmp_path / "batched")[0]))
        == layout.list_models(tmp_path / "batched")[0].name
    )


def test_batched_mp_twins_match_loop_twins(zoo):
    import prunezoo.zoo.population  # noqa: F401  (a shipped feature: a broken import must fail, not skip)

    loop = parse_twin_method("mp", levels="0.5", epochs=2)
    make_twins(zoo, loop, workers=1, progress=False)  # no-op when the MP test already made them
    batched = parse_twin_method({"name": "mpb", "trainer": "batched", "chunk_size": 3}, levels="0.5", epochs=2)
    summary = make_twins(zoo, batched, workers=1, progress=False)
    assert summary["sets"]["mpb-0.5"]["done"] == 4
    for t in layout.list_models(layout.twin_set_dir(zoo, "mpb-0.5")):
        ref = layout.twin_set_dir(zoo, "mp-0.5") / t.name
        assert layout.read_done(t)["trainer"] == "batched"
        assert _states_equal(layout.load_state(t, 0), layout.load_state(ref, 0))  # same masks, same start
        assert [r["sparsity_ratio"] for r in layout.read_results(t)] == pytest.approx(
            [r["sparsity_ratio"] for r in layout.read_results(ref)]
        )
        for k, v in layout.load_state(t).items():
            torch.testing.assert_close(v, layout.load_state(ref)[k], atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="method.trainer"):
        parse_twin_method({"name": "v", "kind": "vd", "trainer": "batched"})


def test_zoo_example_is_valid():
    from pathlib import Path

    from prunezoo.zoo.generate import load_zoo_config

    cfg = load_zoo_config(Path(__file__).resolve().parents[1] / "examples" / "zoo-mnist5k.yaml")
    assert len(cfg.members()) == 64 and cfg.trainer == "batched"


@pytest.mark.slow  # starting a local Ray takes tens of seconds
def test_ray_executor_matches_inline(zoo, tmp_path):
    pytest.importorskip("ray")
    cfg = parse_zoo_config(TINY | {"lr": 1e-2, "seeds": [1]})
    out = generate_zoo(cfg, tmp_path / "ray", executor="ray", workers=1, progress=False)
    assert out["done"] == 1
    [m] = layout.list_models(tmp_path / "ray")
    assert _states_equal(layout.load_state(m), layout.load_state(zoo / m.name))


class _RunsCode:
    """Unpickling this runs ``touch <marker>``: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_import_skips_a_malicious_checkpoint_and_imports_the_rest(tmp_path):
    from prunezoo.cli import app

    states = _public_fixture(tmp_path / "public")
    marker = tmp_path / "pwned"
    evil = tmp_path / "public" / "NN_evil"  # sorts before the good ones: later models must still come in
    evil.mkdir()
    (evil / "params.json").write_text("{}")
    (evil / "checkpoint_000000").mkdir()
    torch.save(
        {"module_list.0.weight": torch.zeros(2), "payload": _RunsCode(marker)},
        evil / "checkpoint_000000" / "checkpoints",
    )
    res = CliRunner().invoke(app, ["zoo", "import", str(tmp_path / "public"), str(tmp_path / "imported")])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)  # no traceback
    assert not marker.exists()  # never unpickled
    assert "imported 2 models" in res.output and "3 skipped" not in res.output
    assert "NN_evil: refused checkpoint_000000/checkpoints" in res.output and "GLOBAL" in res.output
    assert "weights_only" not in res.output  # torch's advice to load it unsafely is not passed on
    assert "not_a_cnn" in res.output
    models = layout.list_models(tmp_path / "imported")
    assert [m.name for m in models] == sorted({k[0] for k in states})
    assert not (tmp_path / "imported" / "NN_evil").exists()
    clean = CliRunner().invoke(
        app, ["zoo", "import", str(tmp_path / "public"), str(tmp_path / "again"), "--model", "cnn-s"]
    )  # a bad model gives exit 1 even when the rest is fine
    assert clean.exit_code == 1 and "imported 2 models" in clean.output
