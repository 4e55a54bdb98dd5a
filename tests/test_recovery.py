"""Reliability of studies on disk: file modes, damaged files, stale staging, locks, SIGKILL at random moments."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import yaml

from prunezoo.experiments.config import parse_config
from prunezoo.experiments.jobs import execute_job
from prunezoo.experiments.plan import plan_study, unique_jobs
from prunezoo.experiments.study import run_study
from prunezoo.sparsity import MaskSet
from prunezoo.training import Trainer, TrainingConfig
from prunezoo.training.callbacks import Callback
from prunezoo.training.checkpoint import latest_checkpoint, save_state
from prunezoo.utils.io import CorruptFileError, file_lock, write_json, write_text

STUDY = {
    "name": "rec",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"epochs": 2, "batch_size": 128, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 128, "lr": 0.01},
    "methods": [
        {"name": "gm", "kind": "oneshot", "sparsities": [0.8]},
        {"name": "imp", "kind": "imp", "levels": 2, "fraction": 0.5},
    ],
}
LEFTOVER = re.compile(r"^\..*\.tmp$|^\..+\.[A-Za-z0-9_]{8}(\.staging)?$")


def _cfg():
    return parse_config(STUDY)


def _job_dirs(study_dir: Path) -> dict[str, Path]:
    return {p.name.split("-")[0]: p for p in (study_dir / "runs").iterdir()}


def _strip(hist: dict) -> dict:
    return {k: [{m: v for m, v in e.items() if m != "time_s"} for e in es] for k, es in hist.items()}


def _outcome(study_dir: Path) -> tuple[list, dict]:
    return (
        json.loads((study_dir / "results.json").read_text())["rows"],
        _strip(json.loads((study_dir / "histories.json").read_text())),
    )


def _leftovers(root: Path) -> list[Path]:
    return [
        p for p in root.rglob("*") if LEFTOVER.match(p.name) or p.name.endswith(".previous") or p.name == "checkpoint"
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed study (run uninterrupted, in this process) to copy and damage."""
    out = tmp_path_factory.mktemp("clean")
    res = run_study(_cfg(), out, workers=1)
    return res.directory


def _interrupted_copy(finished: Path, tmp_path: Path) -> Path:
    """The finished study as if it had been killed before collecting its results."""
    copy = tmp_path / "out" / finished.name
    shutil.copytree(finished, copy)
    (copy / "results.json").unlink()
    return copy


# -- item 4: file modes ---------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_text(tmp_path / "b.txt", "x")
        save_state(tmp_path / "c.safetensors", {"w": torch.ones(2)})
        MaskSet({"w": torch.ones(2, dtype=torch.bool)}).save(tmp_path / "d.safetensors")
    finally:
        os.umask(old)
    for name in ("a.json", "b.txt", "c.safetensors", "d.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# -- item 7: damaged files are detected, quarantined and redone ----------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scribble(path: Path) -> None:  # same size, different bytes: only a checksum notices
    data = bytearray(path.read_bytes())
    data[-64:] = b"\xff" * 64
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "job,file,damage,unfinish",
    [
        ("dense", "final.safetensors", _truncate, "oneshot"),  # a dependency of an unfinished job
        ("dense", "final.safetensors", _scribble, "oneshot"),
        ("oneshot", "masks.safetensors", _truncate, "oneshot"),  # an unfinished job's own saved masks
        ("oneshot", "result.json", _truncate, None),
        ("imp", "level_01/masks.safetensors", _truncate, "imp"),
        ("imp", "level_02/final.safetensors", _scribble, None),
    ],
)
def test_damaged_job_file_is_quarantined_and_redone(finished, tmp_path, caplog, job, file, damage, unfinish):
    study = _interrupted_copy(finished, tmp_path)
    jobs = _job_dirs(study)
    if unfinish:
        (jobs[unfinish] / "result.json").unlink()
    bad = jobs[job] / file
    damage(bad)
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        res = run_study(_cfg(), tmp_path / "out", workers=1)
    assert _outcome(res.directory) == _outcome(finished)  # redone from the same seeds: same numbers
    assert str(bad) in caplog.text  # the log names the damaged file
    quarantined = list((jobs[job] / "quarantine").iterdir())
    assert any(q.name.startswith(file.replace("/", "__")) for q in quarantined)
    original = finished / "runs" / jobs[job].name / file
    if file.endswith(".json"):  # epoch timings differ
        assert _strip(json.loads(bad.read_text())["histories"]) == _strip(json.loads(original.read_text())["histories"])
    else:
        assert bad.read_bytes() == original.read_bytes()
    assert not _leftovers(study)


def test_damaged_dependency_error_names_the_file(finished, tmp_path):
    study = _interrupted_copy(finished, tmp_path)
    jobs = _job_dirs(study)
    (jobs["oneshot"] / "result.json").unlink()
    _truncate(jobs["dense"] / "final.safetensors")
    (oneshot,) = [j for j in unique_jobs(plan_study(_cfg())) if j.kind == "oneshot"]
    with pytest.raises(CorruptFileError, match=re.escape(str(jobs["dense"] / "final.safetensors"))):
        execute_job(oneshot.to_dict(), study / "runs")  # the parent is not re-checked here: its file is named
    # ... and running the study again repairs the parent first (test above).


class _StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 >= self.epochs:
            trainer.stop_requested = True


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    from prunezoo.data import load_dataset
    from prunezoo.models import build_model
    from prunezoo.training import seed_everything

    data = load_dataset("digits")
    cfg = TrainingConfig(epochs=3, batch_size=128, lr=0.05)

    def model(seed=0):
        seed_everything(seed)
        return build_model("mlp", num_classes=10, input_shape=data.input_shape, hidden=[16])

    full = model()
    full_hist = Trainer(full, data.train, cfg, progress=False).fit()
    ckpt = tmp_path / "ckpt"
    Trainer(model(), data.train, cfg, callbacks=[_StopAfter(2)], progress=False).fit(checkpoint_dir=ckpt)
    _truncate(ckpt / "model.safetensors")  # the epoch-2 checkpoint; epoch 1 is kept as .previous
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        resumed = model(seed=99)
        hist = Trainer(resumed, data.train, cfg, progress=False).fit(resume_from=ckpt)
    assert str(ckpt) in caplog.text and (tmp_path / "quarantine").is_dir()
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_s"} for e in h]
    assert strip(hist) == strip(full_hist)
    assert all(torch.equal(resumed.state_dict()[k], full.state_dict()[k]) for k in full.state_dict())
    assert not ckpt.exists()  # quarantined; the previous one is damaged too now: nothing to resume from
    _truncate(ckpt.with_name("ckpt.previous") / "checkpoint.json")
    assert latest_checkpoint(ckpt) is None


# -- item 8: staging leftovers --------------------------------------------------------------------
def test_stale_staging_is_cleaned_on_resume(finished, tmp_path):
    study = _interrupted_copy(finished, tmp_path)
    jobs = _job_dirs(study)
    (jobs["imp"] / "result.json").unlink()
    stale = [jobs["dense"] / ".checkpoint.ab12cd34", jobs["imp"] / "level_01" / ".checkpoint.zz99yy_8.staging"]
    for d in stale:
        d.mkdir()
        (d / ".model.safetensors.k3j4h5g6.tmp").write_bytes(b"torn")
    (jobs["oneshot"] / ".final.safetensors.q1w2e3r4.tmp").write_bytes(b"torn")
    (study / ".results.json.a1s2d3f4.tmp").write_bytes(b"{")
    res = run_study(_cfg(), tmp_path / "out", workers=1)
    assert _outcome(res.directory) == _outcome(finished)
    assert not _leftovers(study)


# -- item 10: one process per study and per job ---------------------------------------------------
def test_second_process_waits_for_the_job_lock_then_reads_back(finished, tmp_path):
    study = _interrupted_copy(finished, tmp_path)
    jobs = _job_dirs(study)
    (jobs["dense"] / "result.json").unlink()
    (dense,) = [j for j in unique_jobs(plan_study(_cfg())) if j.kind == "dense"]
    out: dict = {}
    with file_lock(jobs["dense"] / ".lock"):  # another process is running this job
        t = threading.Thread(target=lambda: out.setdefault("r", execute_job(dense.to_dict(), study / "runs")))
        t.start()
        t.join(1.5)
        assert t.is_alive() and not (jobs["dense"] / "result.json").exists()
        write_json(jobs["dense"] / "result.json", {"marker": 1})  # ... and finishes it
    t.join(60)
    assert out["r"] == {"marker": 1}  # read back, not redone


def test_second_process_waits_for_the_study_lock(finished, tmp_path):
    study = _interrupted_copy(finished, tmp_path)
    messages: list[str] = []
    out: dict = {}
    with file_lock(tmp_path / "out" / f".{study.name}.lock"):
        t = threading.Thread(
            target=lambda: out.setdefault("r", run_study(_cfg(), tmp_path / "out", workers=1, log=messages.append))
        )
        t.start()
        t.join(1.5)
        assert t.is_alive() and not (study / "results.json").exists()
        assert any("locked by another process" in m for m in messages)
    t.join(120)
    assert _outcome(out["r"].directory) == _outcome(finished)


def _cli(out: Path, config: Path, *prefix: str) -> subprocess.Popen:
    cmd = [sys.executable, *prefix, "run", str(config), "--out", str(out), "--workers", "1", "-q"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def test_same_study_from_two_processes(finished, tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    procs = [_cli(tmp_path / "out", config, "-m", "prunezoo") for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    assert _outcome(tmp_path / "out" / finished.name) == _outcome(finished)
    assert not _leftovers(tmp_path / "out") and not list((tmp_path / "out").rglob("quarantine"))


# -- done-means: SIGKILL at random moments, including inside checkpoint writes ---------------------
# One driver process imports prunezoo once (no torch ops: safe to fork), then runs the CLI in a forked
# child per attempt. A child either kills itself at its k-th os.replace (every atomic write and
# checkpoint swap goes through one), just before or just after it, or is killed from outside after a
# random delay. Prints one JSON line per attempt: exit status and whether any process of the child's
# session outlived it.
_DRIVER = r"""
import json, os, random, signal, sys, time
from prunezoo.cli import app
rng = random.Random(int(sys.argv[1]))
args = ["prunezoo", *sys.argv[2:]]
for attempt in range(40):
    outside = attempt % 4 == 3
    k, when = rng.randint(1, 40), rng.choice(["before", "after"])
    delay = rng.uniform(0.5, 3.0)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if not outside:
            real, n = os.replace, [0]
            def replace(src, dst, *a, **kw):
                n[0] += 1
                if n[0] == k:
                    print(json.dumps({"target": str(dst)}), flush=True)
                if n[0] == k and when == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst, *a, **kw)
                if n[0] == k and when == "after":
                    os.kill(os.getpid(), signal.SIGKILL)
            os.replace = replace
        sys.argv = args
        code = 1
        try:
            app()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            os._exit(code)
    t0 = time.time()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if outside and time.time() - t0 > delay:
            os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    orphans = True
    for _ in range(100):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            orphans = False
            break
        time.sleep(0.1)
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps({"rc": rc, "orphans": orphans, "k": None if outside else [k, when]}), flush=True)
    if rc == 0:
        break
"""


def test_sigkill_at_random_moments_resumes_to_identical_results(finished, tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, "16", "run", str(config), "--out", str(out), "--workers", "1", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    attempts = [a for a in lines if "rc" in a]
    assert attempts and attempts[-1]["rc"] == 0, proc.stdout + proc.stderr
    assert all(a["rc"] == -signal.SIGKILL for a in attempts[:-1]), attempts
    assert len(attempts) > 4 and any(a["k"] is None for a in attempts[:-1])  # killed from inside and outside
    targets = [a["target"] for a in lines if "target" in a]  # inside kills: what was being written
    assert any("checkpoint" in t for t in targets) and any(t.endswith(".safetensors") for t in targets), targets
    assert not any(a["orphans"] for a in attempts)
    assert _outcome(out / finished.name) == _outcome(finished)
    assert not _leftovers(out)
    assert not list(out.rglob("quarantine"))  # a kill is not damage: nothing was thrown away


# -- zoo twins share the mechanism ----------------------------------------------------------------
def _zoo_config(lr: list[float]):
    """A tiny digits MLP zoo: one seed, one member per learning rate, one epoch."""
    from prunezoo.zoo.generate import parse_zoo_config

    return parse_zoo_config(
        {
            "name": "z",
            "dataset": {"name": "digits", "max_train": 100, "max_test": 50},
            "model": {"name": "mlp", "options": {"hidden": [8]}},
            "epochs": 1,
            "batch_size": 25,
            "seeds": [1],
            "lr": lr,
        }
    )


def _zoo_with_twins(zoo: Path, lr: list[float]):
    """That zoo generated at ``zoo`` with its magnitude-pruned twins at 50 %: ``(zoo, twin method)``."""
    from prunezoo.zoo.generate import generate_zoo
    from prunezoo.zoo.twins import make_twins, parse_twin_method

    generate_zoo(_zoo_config(lr), zoo, workers=1, progress=False)
    method = parse_twin_method("mp", levels="0.5", epochs=1)
    make_twins(zoo, method, workers=1, progress=False)
    return zoo, method


def test_damaged_twin_is_redone_and_damaged_source_is_named(tmp_path, caplog):
    from prunezoo.zoo import layout
    from prunezoo.zoo.runner import TaskFailed
    from prunezoo.zoo.twins import make_twins, parse_twin_method

    zoo, method = _zoo_with_twins(tmp_path / "zoo", [1e-2, 3e-3])
    victim, other = layout.list_models(layout.twin_set_dir(zoo, "mp-0.5"))
    state = layout.checkpoint_dir(victim, 1) / layout.STATE_FILE
    good = state.read_bytes()
    _scribble(state)
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        again = make_twins(zoo, method, workers=1, progress=False)
    assert again["trained"] == 1 and str(state) in caplog.text
    assert state.read_bytes() == good and (victim.parent / "quarantine").is_dir()
    source = layout.checkpoint_dir(zoo / other.name, 1) / layout.STATE_FILE
    _truncate(source)
    with pytest.raises(TaskFailed, match=re.escape(str(source))):
        make_twins(zoo, parse_twin_method("mp", levels="0.7", epochs=1), workers=1, progress=False)


def test_second_process_waits_for_the_twin_lock_then_reads_back(tmp_path):
    from prunezoo.zoo import layout
    from prunezoo.zoo.twins import twin_one

    zoo, method = _zoo_with_twins(tmp_path / "zoo", [1e-2])
    (twin,) = layout.list_models(layout.twin_set_dir(zoo, "mp-0.5"))
    done = layout.read_done(twin)
    (twin / layout.DONE_FILE).unlink()  # unfinished, being made by another process that holds the lock
    out: dict = {}
    with file_lock(twin.parent / f".{twin.name}.lock"):
        t = threading.Thread(
            target=lambda: out.setdefault(
                "r", twin_one(str(zoo), "mp-0.5", twin.name, method.model_dump(mode="json"), 0.5)
            )
        )
        t.start()
        t.join(1.5)
        assert t.is_alive() and not layout.is_done(twin)
        write_json(twin / layout.DONE_FILE, {**done, "final": {**done["final"], "marker": 1}})  # ... it finishes
    t.join(60)
    assert out["r"]["marker"] == 1  # read back, not redone


def test_damaged_zoo_member_is_redone(tmp_path, caplog):
    from prunezoo.zoo import layout
    from prunezoo.zoo.generate import generate_zoo

    cfg = _zoo_config([1e-2, 3e-3])
    generate_zoo(cfg, tmp_path / "zoo", workers=1, progress=False)
    member = layout.list_models(tmp_path / "zoo")[0]
    state = layout.checkpoint_dir(member, 1) / layout.STATE_FILE
    good = state.read_bytes()
    _truncate(state)
    with caplog.at_level(logging.WARNING, logger="prunezoo"):
        again = generate_zoo(cfg, tmp_path / "zoo", workers=1, progress=False)
    assert again["trained"] == 1 and again["done"] == 2 and str(state) in caplog.text
    assert state.read_bytes() == good and (tmp_path / "zoo" / "quarantine").is_dir()
