"""Scriptable output (issue 17): ``--format json|csv`` parses and round-trips the store's rows, ``runs export
x.json``, ``-v/-q`` on every command, shell completion, ``--log-to`` and the documented RunStore example."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunezoo import names
from prunezoo.cli import app
from prunezoo.experiments.config import parse_config
from prunezoo.experiments.store import RunStore
from prunezoo.experiments.study import STORE_NAME, run_study

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"

TINY = {
    "name": "fmt",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"epochs": 1},
    "finetune": {"epochs": 1},
    "replicates": 2,
    "methods": [
        {"name": "gm", "kind": "oneshot", "criterion": "magnitude", "sparsities": [0.5, 0.9]},
        {"name": "imp", "kind": "imp", "levels": 1},
    ],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("fmt") / "runs"
    result = run_study(parse_config(TINY), out, workers=1, progress=False)
    return out, result


def _invoke(*args: str):
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def _same_records(printed: list[dict], expected: list[dict]) -> None:
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected):
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert got[key] is None, key
            elif isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert got[key] == value, key


def test_runs_ls_json_and_csv_round_trip_the_studies_table(study):
    out, result = study
    store = RunStore(out / STORE_NAME, readonly=True)
    expected = store.studies().to_dict("records")
    _same_records(json.loads(_invoke("runs", "ls", "--out", str(out), "--format", "json").stdout), expected)
    rows = list(csv.DictReader(io.StringIO(_invoke("runs", "ls", "--out", str(out), "--format", "csv").stdout)))
    assert [r["study_id"] for r in rows] == [result.directory.name]
    assert float(rows[0]["updated"]) == pytest.approx(expected[0]["updated"])


def test_runs_export_json_equals_the_store_rows(study, tmp_path):
    out, result = study
    target = tmp_path / "rows.json"
    res = _invoke("runs", "export", str(target), "--out", str(out))
    store_rows = RunStore(out / STORE_NAME, readonly=True).results().to_dict("records")
    exported = json.loads(target.read_text())
    assert f"wrote {len(store_rows)} rows" in res.stdout
    _same_records(exported, store_rows)
    # and those are the study's own rows (results.json), column for column
    for mine, row in zip(exported, result.rows):
        for key, value in row.items():
            assert mine[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_runs_show_json_is_the_seed_summary_of_the_store_rows(study):
    from prunezoo.experiments.summary import summarize

    out, result = study
    printed = json.loads(
        _invoke("runs", "show", result.directory.name[:6], "--out", str(out), "--format", "json").stdout
    )
    rows = RunStore(out / STORE_NAME, readonly=True).results(result.directory.name).to_dict("records")
    summary = summarize(rows)
    assert [(p["method"], p["n"]) for p in printed] == [(s["method"], s["n"]) for s in summary]
    assert all(p["n"] == 2 for p in printed)  # two replicates averaged
    for p, s in zip(printed, summary):
        assert p["test_acc"] == pytest.approx(s["test_acc"])
        assert p["sparsity"] == pytest.approx(s["sparsity"])


def test_list_json_and_csv_name_every_registered_component():
    printed = json.loads(_invoke("list", "--format", "json").stdout)
    groups: dict[str, set] = {}
    for rec in printed:
        groups.setdefault(rec["group"], set()).add(rec["name"])
    assert set(names.DATASETS) <= groups["datasets"] and set(names.CRITERIA) <= groups["criteria"]
    assert groups["schemes"] == set(names.SCHEMES)
    kinds = {r["name"]: r["summary"] for r in printed if r["group"] == "kinds"}
    assert "oneshot" in kinds and kinds["oneshot"]
    rows = list(csv.DictReader(io.StringIO(_invoke("list", "criteria", "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == sorted(names.CRITERIA) and {r["group"] for r in rows} == {"criteria"}


def test_reproduce_list_bench_list_and_published_as_json():
    from prunezoo.bench import bundled_suites, load_suite, published_results
    from prunezoo.bench.reproduce import FINDINGS

    findings = json.loads(_invoke("reproduce", "--list", "--format", "json").stdout)
    assert findings == [{"finding": f.name, "paper": f.paper, "claim": f.claim} for f in FINDINGS.values()]
    suites = json.loads(_invoke("bench", "--list", "--format", "json").stdout)
    assert suites == [{"suite": n, "description": load_suite(n).description} for n in bundled_suites()]
    published = json.loads(_invoke("published", "--format", "json").stdout)
    assert published == [p.model_dump(mode="json") for p in published_results(None)]
    rows = list(csv.DictReader(io.StringIO(_invoke("bench", "--published", "--format", "csv").stdout)))
    assert [float(r["value"]) for r in rows] == [p.value for p in published_results(None)]


@pytest.mark.slow  # a whole (quick) bench: about a minute
def test_bench_results_as_json_round_trip_its_csv(tmp_path):
    res = _invoke("bench", "quick", "--out", str(tmp_path), "--workers", "1", "--format", "json")
    printed = json.loads(res.stdout)  # stdout holds only the JSON; the file paths went to stderr
    csv_path = Path(re.search(r"CSV: (\S+)", res.stderr).group(1))
    with csv_path.open() as f:
        saved = list(csv.DictReader(f))
    assert [r["method"] for r in printed] == [r["method"] for r in saved]
    for p, s in zip(printed, saved):
        assert p["test_acc_mean"] == pytest.approx(float(s["test_acc_mean"]))


# --- logging options


@pytest.mark.parametrize(
    ("args", "level"),
    [
        (["list", "schemes"], logging.INFO),
        (["-v", "list", "schemes"], logging.DEBUG),
        (["list", "schemes", "-v"], logging.DEBUG),
        (["-q", "list", "schemes"], logging.WARNING),
        (["list", "schemes", "--quiet"], logging.WARNING),
        (["runs", "ls", "--out", "{out}", "-v"], logging.DEBUG),
        (["runs", "ls", "--out", "{out}", "-q"], logging.WARNING),
    ],
)
def test_verbose_and_quiet_set_the_prunezoo_log_level_on_any_command(args, level, study):
    out, _ = study
    _invoke(*(a.replace("{out}", str(out)) for a in args))
    assert logging.getLogger("prunezoo").level == level


def test_every_command_takes_verbose_and_quiet():
    from typer.main import get_command

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from commands(cmd, (*path, name))
            else:
                yield (*path, name), cmd

    found = list(commands(get_command(app)))
    assert len(found) > 15
    for path, cmd in found:
        flags = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-v", "--verbose", "-q", "--quiet"} <= flags, path


def test_the_logger_writes_plain_lines_to_stderr_off_a_terminal(study, capsys):
    out, _ = study
    _invoke("-v", "runs", "ls", "--out", str(out))
    logging.getLogger("prunezoo.test").debug("a debug line")
    _invoke("-q", "runs", "ls", "--out", str(out))
    logging.getLogger("prunezoo.test").info("an info line")
    logging.getLogger("prunezoo.test").warning("a warning line")
    err = capsys.readouterr().err
    assert "DEBUG prunezoo.test: a debug line" in err and "WARNING prunezoo.test: a warning line" in err
    assert "an info line" not in err and "\x1b[" not in err  # -q; no terminal codes off a terminal


def test_shell_completion_is_offered():
    res = _invoke("--help")
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout


# --- --log-to


def test_run_log_to_tensorboard_and_report_sends_the_figures(tmp_path):
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**TINY, "replicates": 1, "methods": TINY["methods"][:1]}))
    out = tmp_path / "runs"
    plain = _invoke("run", str(config), "--out", str(tmp_path / "plain"), "-q", "--workers", "1", "--format", "json")
    logged = _invoke(
        "run", str(config), "--out", str(out), "-q", "--workers", "1", "--format", "json", "--log-to", "tensorboard"
    )
    assert json.loads(logged.stdout) == json.loads(plain.stdout)
    (directory,) = [p for p in out.iterdir() if p.is_dir()]
    assert directory.name == next(p for p in (tmp_path / "plain").iterdir() if p.is_dir()).name  # same hash
    assert len(list((directory / "tensorboard").iterdir())) == 3  # dense + two oneshot jobs
    _invoke("report", directory.name, "--out", str(out))  # the sinks of its config.yaml
    acc = EventAccumulator(str(directory / "tensorboard" / "study"), size_guidance={"images": 0})
    acc.Reload()
    pngs = sorted(p.stem for p in (directory / "report").glob("*.png"))
    assert pngs and sorted(acc.Tags()["images"]) == pngs


def test_log_to_rejects_an_unknown_sink(tmp_path):
    res = runner.invoke(app, ["run", "--out", str(tmp_path / "runs"), "--log-to", "tensorboard,tensorbored"])
    assert res.exit_code == 2 and "--log-to" in res.output and "tensorbored" in res.output
    assert not (tmp_path / "runs").exists()


# --- the documented Python API


def test_the_runstore_example_of_the_docs_runs(study, tmp_path, monkeypatch):
    out, result = study
    (block,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    (tmp_path / "runs").symlink_to(out, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, str(DOCS), "exec"), namespace)
    assert namespace["study"] == result.directory.name
    curve = namespace["curve"]
    assert sorted(zip(curve["method"], curve["count"])) == [("gm", 2), ("gm", 2), ("imp", 2)]  # 2 seeds each
    assert (tmp_path / "accuracy-vs-sparsity.png").stat().st_size > 1000
