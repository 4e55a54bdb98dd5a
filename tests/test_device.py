"""Device and precision of studies, zoos, twins and benches: where a run computes is not part of what it is
(not hashed, not in job or member ids), a device this machine lacks is an error before anything is
written, and runs on the CPU are the same whether the device is named or not."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.executors import ray_device, ray_resources
from prunezoo.experiments.plan import plan_study
from prunezoo.experiments.study import run_study

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = torch.cuda.is_available() or bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
cpu_only = pytest.mark.skipif(HAS_GPU, reason="device auto is an accelerator here")

STUDY = {
    "name": "dev",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [
        {"name": "gm", "kind": "oneshot", "sparsities": [0.8]},
        {"name": "rand", "kind": "oneshot", "criterion": "random", "scheme": "erk", "sparsities": [0.8]},
        {"name": "snip", "kind": "at-init", "criterion": "snip", "sparsities": [0.8]},
    ],
}
ZOO = {
    "name": "tiny",
    "dataset": {"name": "digits", "max_train": 100, "max_test": 50},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "epochs": 1,
    "batch_size": 10,
    "seeds": [1],
}


def _write(tmp_path: Path, data: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_device_and_gpus_per_job_are_not_hashed_but_precision_is():
    base = parse_config(STUDY)
    ids = [j.id for j in plan_study(base)]
    for where in ({"device": "cpu"}, {"device": "cuda"}, {"device": "cuda:3", "gpus_per_job": 0.25}):
        cfg = parse_config({**STUDY, **where})  # planning a CUDA study needs no GPU (it only plans)
        assert cfg.hash() == base.hash() and [j.id for j in plan_study(cfg)] == ids
    assert "device" not in base.canonical() and "precision" not in base.canonical()
    for changed in ({"precision": "bf16"}, {"channels_last": True}, {"compile": True}):
        cfg = parse_config({**STUDY, **changed})
        assert cfg.hash() != base.hash()
        jobs = plan_study(cfg)
        assert not set(ids) & {j.id for j in jobs}
        assert all(j.spec["runtime"] == changed for j in jobs)  # the job spec carries what changes results
    assert all("runtime" not in j.spec for j in plan_study(base))


def test_runtime_fields_are_checked_where_they_are_read():
    with pytest.raises(ConfigError, match="device.*unknown device 'gpu'"):
        parse_config({**STUDY, "device": "gpu"})
    with pytest.raises(ConfigError, match="precision"):
        parse_config({**STUDY, "precision": "fp8"})
    for bad in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="gpus_per_job"):
            parse_config({**STUDY, "gpus_per_job": bad})
    assert parse_config({**STUDY, "gpus_per_job": 2}).gpus_per_job == 2
    with pytest.raises(ConfigError, match="sweep axis 'device' cannot be swept"):
        parse_config({**STUDY, "sweep": {"device": ["cpu", "cuda"]}})
    with pytest.raises(ConfigError, match=r"precision"):  # fp16 has no CPU autocast: refused before any write
        parse_config({**STUDY, "device": "cpu", "precision": "fp16"}).check_runtime()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--device", "cuda:64"], "device"),  # more GPUs than any machine here has (or no CUDA at all)
        (["--device", "gpu"], "device"),
        (["--device", "cpu", "--set", "precision=fp16"], "precision"),
        pytest.param(["--device", "cuda"], "device", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="")),
    ],
)
def test_run_with_a_device_this_machine_lacks_exits_2_and_writes_nothing(tmp_path, extra, field):
    out = tmp_path / "runs"
    res = runner.invoke(app, ["run", str(_write(tmp_path, STUDY)), "--out", str(out), "-q", *extra])
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("device", ["cuda:64", "gpu"])
def test_zoo_generate_with_a_device_this_machine_lacks_exits_2_and_writes_nothing(tmp_path, device):
    out = tmp_path / "zoo"
    res = runner.invoke(app, ["zoo", "generate", str(_write(tmp_path, ZOO)), "--out", str(out), "--device", device])
    assert res.exit_code == 2, res.output
    assert "device" in res.output and not out.exists()


def test_device_option_is_in_the_help_of_every_running_command():
    for command in (["run"], ["zoo", "generate"], ["zoo", "twin"], ["bench"], ["reproduce"]):
        res = runner.invoke(app, [*command, "--help"])
        assert res.exit_code == 0 and "--device" in res.output, command


@cpu_only
def test_device_cpu_gives_the_default_results_and_bf16_keeps_masked_weights_at_zero(tmp_path):
    config, one = str(_write(tmp_path, STUDY)), ["-q", "--workers", "1"]
    default = runner.invoke(app, ["run", config, "--out", str(tmp_path / "a"), *one])
    named = runner.invoke(app, ["run", config, "--out", str(tmp_path / "b"), *one, "--device", "cpu"])
    assert default.exit_code == 0 and named.exit_code == 0, default.output + named.output
    (a,) = (tmp_path / "a").glob("dev-*")
    (b,) = (tmp_path / "b").glob("dev-*")
    assert a.name == b.name  # the same study directory: the device is not in the hash
    assert json.loads((a / "results.json").read_text()) == json.loads((b / "results.json").read_text())
    for job in (a / "runs").iterdir():
        assert load_file(str(job / "final.safetensors")).keys()
        for f in ("final.safetensors", "masks.safetensors"):
            if (job / f).exists():
                x, y = load_file(str(job / f)), load_file(str(b / "runs" / job.name / f))
                assert all(torch.equal(x[k], y[k]) for k in x), f

    bf16 = run_study(parse_config({**STUDY, "precision": "bf16", "device": "cpu"}), tmp_path / "c", workers=1)
    assert bf16.directory.name != a.name
    for row in bf16.rows:
        if row["method"] == "dense":
            continue
        assert row["sparsity"] == pytest.approx(0.8, abs=0.01)
        job = bf16.directory / "runs" / row["run_id"]
        masks, final = load_file(str(job / "masks.safetensors")), load_file(str(job / "final.safetensors"))
        assert masks and all(bool((final[n][masks[n] == 0] == 0).all()) for n in masks), row["method"]
        assert all(final[n].dtype == torch.float32 for n in masks)  # bf16 autocast: weights stay fp32


def test_zoo_member_ids_ignore_the_device_but_not_the_precision():
    from prunezoo.zoo.generate import member_id, member_params, parse_zoo_config

    def ids(extra: dict) -> list[str]:
        cfg = parse_zoo_config({**ZOO, **extra})
        return [member_id(member_params(cfg, h, 10, (64,))) for h in cfg.members()]

    assert ids({}) == ids({"device": "cpu"}) == ids({"device": "cuda", "gpus_per_job": 0.5})
    assert ids({}) != ids({"precision": "bf16"})
    with pytest.raises(ConfigError, match="precision"):
        parse_zoo_config({**ZOO, "trainer": "batched", "precision": "fp16"})
    with pytest.raises(ConfigError, match="compile"):
        parse_zoo_config({**ZOO, "trainer": "batched", "compile": True})


@cpu_only
def test_zoo_and_twins_on_a_named_cpu_equal_the_default(tmp_path):
    from prunezoo.zoo import layout
    from prunezoo.zoo.generate import generate_zoo, parse_zoo_config
    from prunezoo.zoo.twins import make_twins, parse_twin_method

    for name, extra in (("a", {}), ("b", {"device": "cpu"})):
        generate_zoo(parse_zoo_config({**ZOO, **extra}), tmp_path / name, workers=1, progress=False)
        make_twins(tmp_path / name, parse_twin_method("mp", levels="0.5", epochs=1, **extra), workers=1)
    (a,), (b,) = layout.list_models(tmp_path / "a"), layout.list_models(tmp_path / "b")
    assert a.name == b.name
    assert layout.read_done(a) == layout.read_done(b)
    twin_a, twin_b = (layout.twin_set_dir(tmp_path / z, "mp-0.5") / a.name for z in ("a", "b"))
    assert layout.read_done(twin_a) == layout.read_done(twin_b)
    assert "device" not in json.loads((twin_a / layout.PARAMS_FILE).read_text())["twin"]
    with pytest.raises(ConfigError, match="method.device"):
        make_twins(tmp_path / "a", parse_twin_method("mp", levels="0.5", device="cuda:64"), workers=1)


def test_ray_requests_gpus_only_for_cuda_runs():
    assert ray_resources("cpu", 2, 0.5) == {"num_cpus": 2}
    assert ray_resources("cuda", 2, 0.5) == {"num_cpus": 2, "num_gpus": 0.5}
    assert ray_resources("cuda", 1) == {"num_cpus": 1, "num_gpus": 1.0}
    assert ray_device("auto", cluster_gpus=0) == "cpu"
    assert ray_device("auto", cluster_gpus=4) == "cuda"
    assert ray_device("cuda:2", cluster_gpus=4) == "cuda"  # Ray picks the GPU; an index names none
    assert ray_device("cpu", cluster_gpus=4) == "cpu"
    with pytest.raises(ConfigError, match="device.*no GPUs"):
        ray_device("cuda", cluster_gpus=0)


def test_bench_suite_passes_its_runtime_to_the_study():
    from prunezoo.bench import build_study, load_suite

    suite = load_suite("unstructured-mlp-digits")
    plain = build_study(suite)
    assert build_study(suite.model_copy(update={"device": "cuda"})).hash() == plain.hash()
    bf16 = build_study(suite.model_copy(update={"precision": "bf16"}))
    assert bf16.precision == "bf16" and bf16.hash() != plain.hash()


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the full GPU check")
def test_gpu_check_says_there_is_nothing_to_check_without_cuda():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "CUDA not available: nothing to check" in res.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_method_kind_runs_on_cuda(tmp_path, precision):
    """methods-90 (every unstructured family) at a smoke budget on the GPU: no device mix-ups anywhere."""
    cfg = yaml.safe_load((ROOT / "examples" / "methods-90.yaml").read_text())
    cfg.update(device="cuda", precision=precision, name=f"gpu-{precision}")
    cfg["training"]["epochs"], cfg["finetune"]["epochs"] = 1, 1
    for m in cfg["methods"]:
        if m["kind"] == "imp":
            m["levels"] = 2
        if m["name"] == "synflow":
            m["rounds"] = 5
    cfg["methods"].append({"name": "structured", "kind": "structured", "criterion": "l1", "sparsities": [0.5]})
    rows = run_study(parse_config(cfg), tmp_path, workers=1).rows
    assert {r["method"] for r in rows} == {"dense", *(m["name"] for m in cfg["methods"])}
    for r in rows:
        if r["target_sparsity"] and r["kind"] not in ("structured",):
            assert r["sparsity"] == pytest.approx(r["target_sparsity"], abs=0.02), r["method"]
