"""Study planning and execution: replicates, sweeps, branches, executors, resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from prunezoo.errors import ConfigError
from prunezoo.experiments.config import StudyConfig, parse_config
from prunezoo.experiments.plan import plan_study, unique_jobs
from prunezoo.experiments.study import run_study
from prunezoo.sparsity import MaskSet

BASE = {
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [32]}},
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
}


def study(**kw) -> StudyConfig:
    return parse_config({"name": "t", **BASE, **kw})


def test_default_config_hash_is_stable():
    # Pinned: changing it renames every existing run directory. Adding an option with a no-op
    # default must keep it; set the new field explicitly below to prove that.
    assert StudyConfig().hash() == "44136fa355b3678a"
    assert parse_config({"replicates": 1, "sweep": {}}).hash() == StudyConfig().hash()
    assert parse_config({"replicates": 2}).hash() != StudyConfig().hash()


def test_job_ids_ignore_labels_and_are_shared_across_points():
    a = study(methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.9]}])
    b = study(methods=[{"name": "renamed", "kind": "oneshot", "sparsities": [0.9]}])
    assert [j.id for j in plan_study(a)] == [j.id for j in plan_study(b)]
    # a sweep over fine-tuning only: the dense job is the same for both points and runs once
    c = study(methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.9]}], sweep={"finetune.lr": [0.01, 0.02]})
    jobs = plan_study(c)
    assert len(jobs) == 4 and len(unique_jobs(jobs)) == 3
    assert {j.point for j in jobs} == {"finetune.lr=0.01", "finetune.lr=0.02"}


def test_replicates_and_sweeps_produce_rows_per_seed_and_point(tmp_path):
    cfg = study(
        replicates=2,
        sweep={"training.lr": [0.05, 0.1]},
        methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.9]}],
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = res.rows
    assert len(rows) == 2 * 2 * 2  # points × seeds × (dense + gm)
    assert {(r["point"], r["seed"]) for r in rows} == {
        (p, s) for p in ("training.lr=0.05", "training.lr=0.1") for s in (0, 1)
    }
    dense = {(r["point"], r["seed"]): r["test_acc"] for r in rows if r["method"] == "dense"}
    assert dense[("training.lr=0.05", 0)] != dense[("training.lr=0.05", 1)]  # seeds differ
    from prunezoo.experiments.summary import summarize

    summary = summarize(rows)
    assert len(summary) == 4 and all(s["n"] == 2 for s in summary)
    pair = [r["test_acc"] for r in rows if r["method"] == "gm" and r["point"] == "training.lr=0.1"]
    gm = next(s for s in summary if s["method"] == "gm" and s["point"] == "training.lr=0.1")
    assert gm["test_acc"] == pytest.approx(sum(pair) / 2)


def test_pool_executor_matches_inline(tmp_path):
    cfg = study(
        methods=[
            {"name": "gm", "kind": "oneshot", "sparsities": [0.8]},
            {"name": "imp", "kind": "imp", "levels": 1},
            {"name": "gmp", "kind": "gmp", "sparsities": [0.8], "gmp_frequency": 5},
        ]
    )
    inline = run_study(cfg, tmp_path / "a", workers=1).rows
    pooled = run_study(cfg, tmp_path / "b", workers=2).rows
    assert inline == pooled


def test_completed_study_is_reused_and_force_reruns(tmp_path):
    cfg = study(methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.8]}])
    first = run_study(cfg, tmp_path, workers=1)
    again = run_study(cfg, tmp_path, workers=1)
    assert again.reused and again.rows == first.rows
    forced = run_study(cfg, tmp_path, workers=1, force=True)
    assert not forced.reused and forced.rows == first.rows


def test_ablation_branches(tmp_path):
    cfg = study(
        methods=[
            {
                "name": "imp",
                "kind": "imp",
                "levels": 2,
                "fraction": 0.5,
                "branches": [
                    {"name": "reinit", "kind": "random-reinit", "levels": [2]},
                    {"name": "rmask", "kind": "random-mask", "levels": [2]},
                    {"name": "rw", "kind": "rewind", "rewind_step": 5, "levels": [2]},
                    {"name": "ft", "kind": "finetune"},
                ],
            }
        ]
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {(r["method"], r["level"]): r for r in res.rows}
    assert set(rows) >= {
        ("imp", 1),
        ("imp", 2),
        ("imp/reinit", 2),
        ("imp/rmask", 2),
        ("imp/rw", 2),
        ("imp/ft", 1),
        ("imp/ft", 2),
    }
    runs = res.directory / "runs"
    ticket = MaskSet.load(runs / rows[("imp", 2)]["run_id"].split("/")[0] / "level_02" / "masks.safetensors")
    reinit_w = _final_weights(runs / rows[("imp/reinit", 2)]["run_id"])
    for name, mask in ticket.items():  # same mask, enforced
        assert (reinit_w[name][~mask] == 0).all()
    rmask = MaskSet.load(runs / rows[("imp/rmask", 2)]["run_id"] / "masks.safetensors")
    assert rmask.layer_densities() == pytest.approx(ticket.layer_densities(), abs=1e-9)
    assert rmask.iou(ticket) < 0.9
    for key in [("imp/reinit", 2), ("imp/rmask", 2), ("imp/rw", 2), ("imp/ft", 2)]:
        assert rows[key]["sparsity"] == pytest.approx(rows[("imp", 2)]["sparsity"])
        assert rows[key]["kind"] == "branch"
    # rewinding to step 5 resumes the schedule: its history starts after step 5
    hist = json.loads((res.directory / "histories.json").read_text())[rows[("imp/rw", 2)]["run_id"]]
    assert hist[0]["step"] > 5


def _final_weights(job_dir: Path):
    from prunezoo.training.checkpoint import load_state

    return load_state(job_dir / "final.safetensors")


@pytest.mark.parametrize(
    "data, field",
    [
        ({"sweep": {"training.epochs": [-1]}}, "sweep[training.epochs=-1].training.epochs"),
        ({"sweep": {"dataset.name": ["nope"]}}, 'sweep[dataset.name="nope"].dataset.name'),
        (
            {
                "methods": [
                    {
                        "name": "i",
                        "kind": "imp",
                        "levels": 2,
                        "branches": [{"name": "b", "kind": "random-reinit", "levels": [3]}],
                    }
                ]
            },
            "methods.0",
        ),
        (
            {
                "methods": [
                    {
                        "name": "g",
                        "kind": "oneshot",
                        "sparsities": [0.5],
                        "branches": [{"name": "b", "kind": "finetune"}],
                    }
                ]
            },
            "methods.0",
        ),
        ({"replicates": 0}, "replicates"),
    ],
)
def test_bad_study_settings_name_the_field_and_write_nothing(tmp_path, data, field):
    with pytest.raises(ConfigError) as err:
        run_study(study(**data), tmp_path, workers=1)
    assert err.value.field == field
    assert list(tmp_path.iterdir()) == []


KILL_STUDY = {
    "name": "killme",
    **BASE,
    "training": {"epochs": 12, "batch_size": 32, "lr": 0.05},
    "methods": [
        {"name": "gm", "kind": "oneshot", "sparsities": [0.8]},
        {"name": "imp", "kind": "imp", "levels": 2, "fraction": 0.5},
        {"name": "gmp", "kind": "gmp", "sparsities": [0.8], "gmp_frequency": 7},
    ],
}


def _run_cli(config: Path, out: Path, **popen):
    cmd = [sys.executable, "-m", "prunezoo", "run", str(config), "--out", str(out), "--workers", "1", "-q"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def test_sigkill_mid_study_then_resume_gives_identical_results(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(KILL_STUDY))
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    proc = _run_cli(config, killed_out, start_new_session=True)
    # Wait until IMP level 1 has written an epoch checkpoint, then kill -9 the whole process group.
    deadline = time.time() + 240
    pattern = "*/runs/imp-*/level_01/checkpoint/checkpoint.json"
    while not list(killed_out.glob(pattern)):
        assert proc.poll() is None, f"study ended before it could be killed: {proc.stderr.read().decode()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (study_dir,) = [p for p in killed_out.iterdir() if p.is_dir()]
    assert not (study_dir / "results.json").exists()
    finished_before = {p.parent.name for p in (study_dir / "runs").glob("*/result.json")}
    assert finished_before  # dense/oneshot/gmp were done and must be kept, not re-run

    resumed = _run_cli(config, killed_out)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    clean = _run_cli(config, clean_out)
    assert clean.wait(timeout=300) == 0, clean.stderr.read().decode()
    rows_killed = json.loads((study_dir / "results.json").read_text())["rows"]
    rows_clean = json.loads((clean_out / study_dir.name / "results.json").read_text())["rows"]
    assert rows_killed == rows_clean
    hist_killed = json.loads((study_dir / "histories.json").read_text())
    hist_clean = json.loads((clean_out / study_dir.name / "histories.json").read_text())
    strip = lambda h: {k: [{m: v for m, v in e.items() if m != "time_s"} for e in es] for k, es in h.items()}
    assert strip(hist_killed) == strip(hist_clean)


def test_training_flops_accounting(tmp_path):
    cfg = study(
        methods=[
            {"name": "gm", "kind": "oneshot", "sparsities": [0.9]},
            {"name": "imp", "kind": "imp", "levels": 2, "fraction": 0.5},
            {"name": "gmp", "kind": "gmp", "sparsities": [0.9], "gmp_frequency": 5},
        ]
    )
    rows = {(r["method"], r["level"]): r for r in run_study(cfg, tmp_path, workers=1).rows}
    import math

    from prunezoo.data import load_dataset

    n_train = len(load_dataset("digits").train)
    samples = lambda epochs: epochs * math.ceil(n_train / 64) * 64
    dense, gm = rows[("dense", None)], rows[("gm", None)]
    assert dense["train_flops"] == pytest.approx(3 * dense["flops_dense"] * samples(2), rel=1e-9)
    assert gm["train_flops"] == pytest.approx(3 * gm["flops_sparse"] * samples(1), rel=1e-6)
    l1, l2 = rows[("imp", 1)], rows[("imp", 2)]
    assert l2["train_flops"] == pytest.approx(
        3 * samples(2) * (dense["flops_dense"] + l1["flops_sparse"] + l2["flops_sparse"]), rel=1e-6
    )
    gmp = rows[("gmp", None)]  # sparsified while training: between all-sparse and all-dense cost
    assert 3 * gmp["flops_sparse"] * samples(2) < gmp["train_flops"] < dense["train_flops"]


def test_label_noise_runs_report_memorization(tmp_path):
    cfg = study(
        dataset={"name": "digits", "noise_rate": 0.3, "noise_kind": "symmetric"},
        training={"epochs": 3, "batch_size": 64, "lr": 0.05},
        methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.9]}],
    )
    rows = run_study(cfg, tmp_path, workers=1).rows
    for r in rows:
        assert 0.0 <= r["memorization"] <= 1.0 and 0.0 <= r["train_eval_acc"] <= 1.0
        # the noisy labels are wrong by construction: fitting them is memorisation, far below train acc
        assert r["memorization"] < r["train_eval_acc"]
        assert 0.0 <= r["train_eval_ece"] <= 1.0 and r["train_eval_ece"] != r["test_ece"]
    clean = run_study(study(methods=[{"name": "gm", "kind": "oneshot", "sparsities": [0.9]}]), tmp_path, workers=1)
    assert all(r["memorization"] is None for r in clean.rows)


def test_dynamic_methods_in_studies_log_their_events(tmp_path):
    cfg = study(
        training={"epochs": 4, "batch_size": 64, "lr": 0.05},
        methods=[
            {"name": "rigl", "kind": "dst", "sparsities": [0.9], "options": {"delta_t": 10}},
            {"name": "set", "kind": "dst", "sparsities": [0.9], "options": {"grow": "random", "delta_t": 10}},
            {"name": "acdc", "kind": "acdc", "sparsities": [0.9]},
        ],
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    for name in ("rigl", "set", "acdc"):
        assert rows[name]["kind"] in ("dst", "acdc") and rows[name]["sparsity"] == pytest.approx(0.9, abs=2e-3)
    events = json.loads((res.directory / "events.json").read_text())
    rigl = events[rows["rigl"]["run_id"]]
    assert rigl and all(0 < e["iou"] < 1 for e in rigl)
    acdc = events[rows["acdc"]["run_id"]]
    assert any(e["event"] == "decompressed_end" and 0 <= e["zero_fraction"] <= 1 for e in acdc)
    assert any(e["event"] == "compress" and e["iou"] is not None for e in acdc)


def test_bad_dynamic_method_option_is_a_config_error(tmp_path):
    cfg = study(methods=[{"name": "rigl", "kind": "dst", "sparsities": [0.9], "options": {"delta_t": 0}}])
    with pytest.raises(ConfigError) as err:
        run_study(cfg, tmp_path, workers=1)
    assert err.value.field == "methods[0].options"
    with pytest.raises(ConfigError, match="bogus"):  # unknown option names are now rejected by the config itself
        run_study(
            study(methods=[{"name": "a", "kind": "acdc", "sparsities": [0.9], "options": {"bogus": 1}}]),
            tmp_path,
            workers=1,
        )
    assert list(tmp_path.iterdir()) == []


def test_structured_method_shrinks_model_and_exports_it(tmp_path):
    cfg = study(
        model={"name": "mlp", "options": {"hidden": [64, 32]}},
        methods=[{"name": "l1", "kind": "structured", "criterion": "l1", "sparsities": [0.5]}],
    )
    res = run_study(cfg, tmp_path, workers=1)
    row = next(r for r in res.rows if r["method"] == "l1")
    dense = next(r for r in res.rows if r["method"] == "dense")
    assert row["kind"] == "structured" and row["nnz"] < 0.5 * dense["nnz"]
    assert row["flops_sparse"] < dense["flops_dense"] and row["latency_ms"] > 0 and row["latency_dense_ms"] > 0
    from prunezoo.data import load_dataset
    from prunezoo.structured import load_compact
    from prunezoo.training import evaluate

    model = load_compact(res.directory / "runs" / row["run_id"] / "compact")
    assert evaluate(model, load_dataset("digits").test)["acc"] == pytest.approx(row["test_acc"], abs=1e-6)
    from prunezoo.analysis import write_report

    assert "measured CPU latency" in write_report(res.directory).read_text()
    with pytest.raises(ConfigError, match="criterion"):
        study(methods=[{"name": "x", "kind": "structured", "criterion": "snip-nope", "sparsities": [0.5]}])


def test_reparameterised_methods_in_studies(tmp_path):
    import prunezoo.reparam  # noqa: F401  (a shipped feature: a broken import must fail, not skip)

    cfg = study(
        training={"epochs": 3, "batch_size": 64, "lr": 0.05, "weight_decay": 5e-4},
        finetune={"epochs": 2, "batch_size": 64, "lr": 0.01},
        methods=[
            {"name": "str", "kind": "str"},
            {"name": "ep", "kind": "edge-popup", "sparsities": [0.5]},
            {"name": "vd", "kind": "vd"},
            {
                "name": "ep-er",
                "kind": "edge-popup",
                "sparsities": [0.5],
                "start": {"density": 0.5, "scheme": "uniform"},
            },
        ],
    )
    res = run_study(cfg, tmp_path, workers=1)
    rows = {r["method"]: r for r in res.rows}
    assert rows["ep"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert rows["ep-er"]["sparsity"] == pytest.approx(0.75, abs=0.01)  # half of a Bernoulli(0.5) ER mask
    assert 0 < rows["vd"]["sparsity"] < 1 and rows["str"]["kind"] == "str"
    runs = res.directory / "runs"
    start = MaskSet.load(runs / rows["ep-er"]["run_id"] / "start-masks.safetensors")
    assert MaskSet.load(runs / rows["ep-er"]["run_id"] / "masks.safetensors").is_subset_of(start)
