"""Method kinds are classes in one registry (issue 12): a kind defined here, outside the package, runs end to end
in a study; every built-in kind is registered, documented, and rejects unknown options naming the field."""

from __future__ import annotations

import inspect
import typing
from types import SimpleNamespace
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from prunezoo.errors import ConfigError
from prunezoo.experiments.config import METHOD_OPTIONS, StudyConfig, parse_config
from prunezoo.experiments.plan import plan_study
from prunezoo.experiments.study import run_study
from prunezoo.methods import METHOD_KINDS, MethodConfig, MethodKind, get_method_kind, job_kind, register_method_kind
from prunezoo.methods.base import STRICT
from prunezoo.methods.common import masks_once, one_result

BUILT_IN = ("oneshot", "at-init", "gmp", "imp", "dst", "acdc", "str", "edge-popup", "vd", "structured", "sr-ste")
BASE = {
    "name": "kinds",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
}


# -- a kind defined outside the package: prune the smallest weights of the init per layer, then train ---------------
class HalfConfig(MethodConfig):
    kind: Literal["test-layerwise"]
    warm_batches: int = Field(0, ge=0, description="a field of this kind only")


class HalfOptions(BaseModel):
    model_config = STRICT
    keep_bias_note: str | None = None


class LayerwiseAtInit(MethodKind):
    """Test kind: layer-wise magnitude masks at init, then train with them enforced."""

    name = "test-layerwise"
    Config = HalfConfig
    Options = HalfOptions

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.pruning import prune
        from prunezoo.training.callbacks import EnforceMasks

        sparsity = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [sparsity]})
        model = ctx.build_model()
        masks = masks_once(
            ctx.directory / "masks.safetensors",
            lambda: prune(model, 1 - sparsity, criterion="magnitude", scheme="uniform", seed=ctx.seed),
        )
        masks.apply(model)
        history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)]))
        row = ctx.row(masks, history[-1], kind=self.name, level=None, target_sparsity=sparsity)
        return one_result(row, history, masks, events={"": [{"warm_batches": method.warm_batches}]})


@pytest.fixture
def test_kind():
    register_method_kind(LayerwiseAtInit)
    yield METHOD_KINDS[LayerwiseAtInit.name]
    METHOD_KINDS.pop(LayerwiseAtInit.name)


def test_a_kind_defined_in_a_test_module_runs_end_to_end_in_a_study(test_kind, tmp_path):
    cfg = parse_config(
        {
            **BASE,
            "methods": [
                {
                    "name": "half",
                    "kind": "test-layerwise",
                    "sparsities": [0.5, 0.75],
                    "warm_batches": 3,
                    "options": {"keep_bias_note": "x"},
                }
            ],
        }
    )
    assert isinstance(cfg.methods[0], HalfConfig) and cfg.methods[0].warm_batches == 3
    jobs = plan_study(cfg)
    assert [j.kind for j in jobs] == ["dense", "test-layerwise", "test-layerwise"] and cfg.job_count() == 3
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["target_sparsity"]: r for r in res.rows if r["method"] == "half"}
    assert set(rows) == {0.5, 0.75}
    for target, row in rows.items():
        assert row["kind"] == "test-layerwise" and row["sparsity"] == pytest.approx(target, abs=0.01)
        assert 0.0 <= row["test_acc"] <= 1.0 and row["flops_sparse"] < row["flops_dense"]
    # its own field reached the runner, and the config round-trips through the study's config.yaml dump
    assert (res.directory / "events.json").exists()
    dumped = cfg.model_dump(mode="json")["methods"][0]
    assert dumped["warm_batches"] == 3 and StudyConfig.model_validate(cfg.model_dump(mode="json")).hash() == cfg.hash()


PLUGIN = """
from typing import Literal
from prunezoo.methods import MethodConfig, MethodKind, register_method_kind


class PluginConfig(MethodConfig):
    kind: Literal["test-plugin"]


@register_method_kind
class Plugin(MethodKind):
    \"\"\"A kind defined in a module of its own (a plugin).\"\"\"

    name = "test-plugin"
    Config = PluginConfig

    def run(self, ctx, job):
        return {"rows": [], "histories": {}, "layers": {}}
"""


def test_a_spawned_worker_imports_the_module_defining_a_kind(tmp_path, monkeypatch):
    """Jobs carry the module of a kind defined outside the package; a worker where it is not registered
    (spawn, Ray) imports it before looking the runner up."""
    import sys

    from prunezoo.experiments import jobs

    (tmp_path / "pz_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import pz_test_plugin  # noqa: F401

        cfg = parse_config({**BASE, "methods": [{"name": "p", "kind": "test-plugin", "sparsities": [0.5]}]})
        [dense, job] = plan_study(cfg)
        assert job.module == "pz_test_plugin" and dense.module == "" and job.to_dict()["module"] == "pz_test_plugin"
        METHOD_KINDS.pop("test-plugin")  # a fresh worker process: the kind is not registered there
        del sys.modules["pz_test_plugin"]
        assert jobs.runner("test-plugin", job.module)(SimpleNamespace(spec={}), job.to_dict()) == {
            "rows": [],
            "histories": {},
            "layers": {},
        }
        assert "test-plugin" in METHOD_KINDS
    finally:
        METHOD_KINDS.pop("test-plugin", None)
        sys.modules.pop("pz_test_plugin", None)


def test_a_registered_kinds_options_and_fields_are_checked(test_kind):
    with pytest.raises(ConfigError, match="bogus") as err:
        parse_config(
            {**BASE, "methods": [{"name": "h", "kind": "test-layerwise", "sparsities": [0.5], "options": {"bogus": 1}}]}
        )
    assert err.value.field == "methods.0"
    with pytest.raises(ConfigError) as err:  # a typed option of the wrong type names the option
        parse_config(
            {
                **BASE,
                "methods": [
                    {"name": "h", "kind": "test-layerwise", "sparsities": [0.5], "options": {"keep_bias_note": [1]}}
                ],
            }
        )
    assert err.value.field == "methods.0" and "options.keep_bias_note: Input should be a valid string" in str(err.value)
    with pytest.raises(ConfigError) as err:  # its own field is checked like any other
        parse_config(
            {**BASE, "methods": [{"name": "h", "kind": "test-layerwise", "sparsities": [0.5], "warm_batches": -1}]}
        )
    assert err.value.field == "methods.0.warm_batches"
    with pytest.raises(ConfigError, match="test-layerwise") as err:  # and only its own
        parse_config({**BASE, "methods": [{"name": "o", "kind": "oneshot", "sparsities": [0.5], "warm_batches": 1}]})
    assert err.value.field == "methods.0"


def test_unknown_kind_names_the_kind_field_and_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown method kind 'nope'") as err:
        parse_config({**BASE, "methods": [{"name": "x", "kind": "nope", "sparsities": [0.5]}]})
    assert err.value.field == "methods.0.kind" and "oneshot" in err.value.message


def test_a_method_without_kind_names_the_kind_field():
    with pytest.raises(ConfigError, match="Field required") as err:
        parse_config({**BASE, "methods": [{"name": "x", "sparsities": [0.5]}]})
    assert err.value.field == "methods.0.kind" and "oneshot" in err.value.message


def test_registry_rejects_inconsistent_kinds():
    class WrongLiteral(MethodKind):
        name = "test-wrong"
        Config = HalfConfig  # its kind is 'test-layerwise'

    with pytest.raises(TypeError, match="Literal"):
        register_method_kind(WrongLiteral)

    class ClashConfig(MethodConfig):
        kind: Literal["test-clash"]

    class Clash(MethodKind):
        name = "test-clash"
        Config = ClashConfig
        job_kinds = ("branch",)

        def runners(self):
            return {"test-clash": self.run, "branch": self.run}  # imp runs 'branch' jobs

    with pytest.raises(ValueError, match="imp"):
        register_method_kind(Clash)
    assert "test-clash" not in METHOD_KINDS and "test-wrong" not in METHOD_KINDS


def test_every_job_kind_has_a_runner_and_an_unknown_one_is_an_error():
    """No fallback: a job kind that no registered kind runs fails by name (no silent AC/DC or other kind)."""
    from prunezoo.experiments import jobs

    assert not hasattr(jobs, "schedule_callback") and not hasattr(jobs, "RUNNERS")
    for name in (*BUILT_IN, "branch", "dense"):
        assert callable(jobs.runner(name))
    with pytest.raises(ValueError, match="'new-dynamic'"):
        jobs.runner("new-dynamic")


@pytest.mark.parametrize("kind", BUILT_IN)
def test_every_built_in_kind_is_registered_and_documented(kind):
    mk = get_method_kind(kind)
    assert mk.name == kind and issubclass(mk.Config, MethodConfig) and mk.Config is not MethodConfig
    assert typing.get_args(mk.Config.model_fields["kind"].annotation) == (kind,)
    assert type(mk).run is not MethodKind.run, "each kind runs its own jobs"
    assert len(mk.summary) > 30 and kind in METHOD_OPTIONS
    for field, info in mk.Options.model_fields.items():  # every option is documented
        assert info.description, (kind, field)
    assert job_kind(kind) is mk


@pytest.mark.parametrize("kind", BUILT_IN)
def test_unknown_and_mistyped_options_name_the_field_for_every_kind(kind):
    m = {"name": "m", "kind": kind, "sparsities": [0.5]}
    if kind == "imp":
        m = {"name": "m", "kind": kind, "levels": 1}
    elif kind in ("str", "vd"):
        m.pop("sparsities")
    elif kind == "structured":
        m["criterion"] = "l1"
    elif kind == "sr-ste":
        m["pattern"] = "2:4"
    with pytest.raises(ConfigError, match="xyz") as err:
        parse_config({**BASE, "methods": [{**m, "options": {"xyz": 1}}]})
    assert err.value.field == "methods.0" and "unknown options" in err.value.message
    for name in get_method_kind(kind).Options.model_fields:  # a mapping is no valid value for any option
        with pytest.raises(ConfigError) as err:
            parse_config({**BASE, "methods": [{**m, "options": {name: {"not": "a value"}}}]})
        assert err.value.field == "methods.0" and f"options.{name}: " in err.value.message, (kind, name, err.value)


def test_kind_attributes_replace_the_old_kind_tables():
    from_dense = {k for k in BUILT_IN if get_method_kind(k).from_dense}
    assert from_dense == {"oneshot", "structured", "vd"}  # the bench's former FROM_DENSE
    assert {k for k in BUILT_IN if not get_method_kind(k).has_target} == {"imp", "str", "vd"}
    assert {k for k in BUILT_IN if get_method_kind(k).takes_pattern} == {"oneshot", "at-init", "gmp", "imp", "sr-ste"}
    assert job_kind("branch") is get_method_kind("imp") and job_kind("branch").levelled
    assert job_kind("structured").target_unit == "channels"
    assert job_kind("dense").name == "dense" and "dense" not in METHOD_KINDS
    assert job_kind("gone-kind").name == ""  # rows of a kind no longer registered still report


def test_kind_specific_fields_live_on_their_kind_and_dump_with_it():
    default = StudyConfig()
    dumped = default.model_dump(mode="json")["methods"]
    assert [m["kind"] for m in dumped] == ["oneshot", "oneshot", "oneshot", "gmp", "imp"]
    assert dumped[4]["levels"] == 12 and "levels" not in dumped[0] and dumped[3]["gmp_frequency"] == 10
    assert StudyConfig.model_validate(default.model_dump(mode="json")).hash() == default.hash()
    m = MethodConfig(name="i", kind="imp", levels=3)  # the base class builds the kind's own config
    assert (
        type(m).__name__ == "IMPConfig"
        and MethodConfig.model_validate({"name": "g", "kind": "gmp", "sparsities": [0.5]}).gmp_frequency == 10
    )


def test_imp_reset_modes_match_the_schedule():
    from prunezoo.methods.imp import RESET_MODES
    from prunezoo.schedules.iterative import ResetMode

    assert RESET_MODES == tuple(m.value for m in ResetMode)
    assert typing.get_args(get_method_kind("imp").Config.model_fields["reset"].annotation) == RESET_MODES


def test_list_kinds_prints_every_kind_with_its_summary():
    from prunezoo.cli import app

    res = CliRunner().invoke(app, ["list", "kinds"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    for kind in BUILT_IN:
        assert f"{kind}: {get_method_kind(kind).summary[:40]}" in res.output


def test_finetune_variational_is_the_one_vd_recipe():
    """Study vd jobs and zoo VD twins both call it: convert, fit with the KL callback, convert back."""
    from prunezoo.methods import vd
    from prunezoo.reparam.variational_dropout import VariationalDropoutLoss, finetune_variational, vd_layers
    from prunezoo.zoo import twins

    for module in (vd, twins):
        assert "finetune_variational" in inspect.getsource(module)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 1e-5, 2.0, 3.0]] * 3))
    seen = {}

    def fit(vd_model, callbacks):
        seen["layers"] = len(vd_layers(vd_model))
        seen["kl"] = [type(c) for c in callbacks]
        return "history"

    plain, masks, out = finetune_variational(model, 100, fit, schedule="ramp", threshold=3.0)
    assert out == "history" and seen == {"layers": 1, "kl": [VariationalDropoutLoss]}
    assert not vd_layers(plain) and not masks["0.weight"][:, 1].any() and masks["0.weight"][:, 0].all()
    assert (plain[0].weight[:, 1] == 0).all()
    with pytest.raises(ConfigError, match="opts"):
        finetune_variational(model, 100, fit, schedule="nope", on_bad_options=lambda e: ConfigError("opts", str(e)))
