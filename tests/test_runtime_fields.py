"""The runtime fields (device, precision, channels_last, compile, gpus_per_job) of studies, zoos, twin
methods and bench suites: hashes, member ids and what twin sets record. Every value below was recorded
with the code before the fields moved into one shared model (git 0109434); none may change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from prunezoo.bench import build_study, load_suite
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import StudyConfig, load_config, parse_config
from prunezoo.experiments.plan import plan_study
from prunezoo.zoo import layout
from prunezoo.zoo.generate import generate_zoo, load_zoo_config, member_id, member_params, parse_zoo_config
from prunezoo.zoo.twins import TwinMethod, make_twins, parse_twin_method

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NON_DEFAULT = {"precision": "bf16", "channels_last": True, "compile": True}
PLACEMENT = {"device": "cpu", "gpus_per_job": 0.5}
ZOO = {
    "name": "pin",
    "dataset": {"name": "digits", "max_train": 40, "max_test": 20},
    "model": {"name": "mlp", "options": {"hidden": [4]}},
    "epochs": 1,
    "batch_size": 10,
    "seeds": [0],
}
TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "training": {"epochs": 1},
    "finetune": {"epochs": 1},
    "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.5]}],
}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _study_examples() -> list[Path]:
    return [p for p in sorted(EXAMPLES.glob("*.yaml")) if "kind" in p.read_text()]  # zoo examples have no methods


# example -> (hash as written, hash with precision=bf16); same values as test_input_validation's HASHES_BEFORE
EXAMPLE_HASHES = {
    "calibration-mnist5k.yaml": ("56733180039c924c", "9aae0f2ce5986cc2"),
    "cifar10-resnet20.yaml": ("88594bff9d8e513e", "b0afae567923bf16"),
    "methods-90.yaml": ("c84d109c523a894a", "5c7d37e623191220"),
    "sdd-gmm-xor.yaml": ("e06f8ea2de3410a1", "7f461eff57b8d2e9"),
    "sdd-gmm.yaml": ("9434bd45d5a069e6", "31a2d037143ac73c"),
    "sdd-mnist1d.yaml": ("254ac823e4122829", "f63502f4493223e8"),
    "sparse-transfer.yaml": ("ada39caa161a3948", "659e93e347c0aa11"),
    "structured-mnist5k.yaml": ("cad9964f4aab7b2b", "4715ec38041c34f6"),
}
# suite -> (hash, hash with precision bf16 + channels_last + compile, hash loaded with precision: bf16)
SUITE_HASHES = {
    "quick": ("76c603ac04c655f4", "422b87beabaff43b", "af54bc3fa50757d9"),
    "structured-cnn": ("6cb0c96a630e6ac3", "58e36406e81614be", "e149a9f38ad40430"),
    "unstructured-mlp-digits": ("f94657c2aece79a1", "06287f6c90c42f9f", "7ec805660c6f8d16"),
}


def test_example_and_suite_hashes_with_default_and_bf16_runtime():
    now = {p.name: (load_config(p).hash(), load_config(p, ["precision=bf16"]).hash()) for p in _study_examples()}
    suites = {}
    for name in SUITE_HASHES:
        suite = load_suite(name)
        bf16 = build_study(load_suite(name, {"precision": "bf16"})).hash()
        suites[name] = (build_study(suite).hash(), build_study(suite.model_copy(update=NON_DEFAULT)).hash(), bf16)
    assert now == EXAMPLE_HASHES
    assert suites == SUITE_HASHES


def test_study_canonical_hashes_only_non_default_runtime():
    default = StudyConfig()
    assert default.hash() == "44136fa355b3678a"
    assert StudyConfig(**PLACEMENT).canonical() == default.canonical()
    changed = StudyConfig(**NON_DEFAULT, **PLACEMENT)
    canonical = changed.canonical()
    assert {k: canonical.pop(k) for k in NON_DEFAULT} == NON_DEFAULT
    assert canonical == default.canonical()
    assert changed.hash() == "4af716156b2b271a"
    assert StudyConfig(precision="bf16").hash() == "c427dbf8aae0abc5"


def test_planned_job_ids_hash_only_non_default_runtime():
    ids = {}
    for name, runtime in (("default", {}), ("placement", PLACEMENT), ("bf16", {"precision": "bf16"})):
        ids[name] = [j.id for j in plan_study(parse_config({**TINY, **runtime}))]
    assert ids["default"] == ids["placement"] == ["dense-a74cf8397c43", "oneshot-a91890758119"]
    assert ids["bf16"] == ["dense-02a2b1dc72d5", "oneshot-c97ef1a2d994"]


def test_zoo_member_ids_by_runtime():
    def ids(runtime):
        cfg = parse_zoo_config({**ZOO, **runtime})
        return [member_id(member_params(cfg, m, 10, [64])) for m in cfg.members()]

    assert ids({}) == ids(PLACEMENT) == ["mlp-s0-efc413a7a7"]
    assert ids({"precision": "bf16"}) == ["mlp-s0-efce2c4c31"]
    assert ids({"channels_last": True, "compile": True}) == ["mlp-s0-0a14f8a4d5"]
    zoo = load_zoo_config(EXAMPLES / "zoo-mnist5k.yaml")
    assert member_id(member_params(zoo, zoo.members()[0], 10, [1, 28, 28])) == "cnn-s-s1-a8c65a3ff1"


def test_twin_method_stored_keeps_runtime_out_unless_non_default():
    plain = TwinMethod(name="mp", levels=[0.5], epochs=1)
    assert TwinMethod(name="mp", levels=[0.5], epochs=1, **PLACEMENT).stored() == plain.stored()
    assert list(plain.stored()) == [
        "name", "kind", "criterion", "scheme", "levels", "batches", "epochs", "lr", "lr_scale",
        "kl_schedule", "ramp_to", "ramp_length", "threshold", "source_epoch", "trainer", "chunk_size",
    ]  # fmt: skip
    assert TwinMethod(name="mp", **NON_DEFAULT).stored()["runtime"] == NON_DEFAULT
    assert _digest(plain.stored()) == "35cab255b49276a1"


@pytest.mark.parametrize(
    "runtime, member, params_digest",
    [({}, "mlp-s0-20730983e4", "38e2c89b593982c4"), ({"precision": "bf16"}, "mlp-s0-54f2eb3e47", "6ea69b5d79e6a498")],
)
def test_zoo_and_twin_params_json_are_unchanged(tmp_path, runtime, member, params_digest):
    generate_zoo(parse_zoo_config({**ZOO, **runtime, "device": "cpu"}), tmp_path, workers=1, progress=False)
    assert [m.name for m in layout.list_models(tmp_path)] == [member]
    method = parse_twin_method({"name": "mp", "levels": [0.5], "epochs": 1, "device": "cpu", **runtime})
    make_twins(tmp_path, method, workers=1, progress=False)
    (twin,) = layout.list_models(layout.twin_set_dir(tmp_path, "mp-0.5"))
    params = layout.read_params(twin)
    assert params.get("runtime") == (runtime or None) and params["twin"].get("runtime") == (runtime or None)
    assert _digest(params) == params_digest


@pytest.mark.parametrize(
    "make",
    [
        lambda bad: parse_config({**TINY, **bad}),
        lambda bad: parse_zoo_config({**ZOO, **bad}),
        lambda bad: parse_twin_method({"name": "mp", **bad}),
        lambda bad: build_study(load_suite("quick", bad)),
    ],
    ids=["study", "zoo", "twin", "suite"],
)
@pytest.mark.parametrize(
    "bad, field",
    [
        ({"device": "gpu"}, "device"),
        ({"precision": "fp8"}, "precision"),
        ({"channels_last": "sideways"}, "channels_last"),
        ({"compile": "maybe"}, "compile"),
        ({"gpus_per_job": 1.5}, "gpus_per_job"),
    ],
)
def test_bad_runtime_values_name_the_field_in_every_config(make, bad, field):
    with pytest.raises(ConfigError, match=field) as err:
        make(bad)
    assert field in err.value.field
