"""Bad input gets a clear error naming the field, exit code 2, and nothing is written (issues 16 and 19)."""

from __future__ import annotations

import inspect
import json
import math
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from prunezoo.cli import app
from prunezoo.errors import ConfigError
from prunezoo.experiments.config import (
    MAX_JOBS,
    METHOD_OPTIONS,
    StudyConfig,
    check_safe_name,
    load_config,
    parse_config,
    read_yaml_mapping,
)

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [8]}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.5]}],
}


def _write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _rejected(res, *fields: str) -> None:
    """Exit 2 with an error naming every field, and no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not (res.exception and not isinstance(res.exception, SystemExit))
    for field in fields:
        assert field in res.output, (field, res.output)


def _run(tmp_path: Path, data, *args: str):
    """``prunezoo run`` on ``data`` with --out inside ``tmp_path``; checks nothing was written anywhere in it
    (the config file aside) nor next to it."""
    (work := tmp_path / "work").mkdir(exist_ok=True)
    config = _write(work / "study.yaml", data)
    before_here, before_up = _tree(tmp_path), set(p.name for p in tmp_path.parent.iterdir())
    res = runner.invoke(app, ["run", str(config), "--out", str(work / "a" / "out"), "-q", *args])
    if res.exit_code == 2:
        assert _tree(tmp_path) == before_here, "a rejected config wrote files"
        assert {p.name for p in tmp_path.parent.iterdir()} == before_up, "a rejected config wrote outside"
    return res


# -- issue 16.1: names that become paths --------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["../escaped", "/abs/path", "..", ".", ".hidden", "a\\b", "", "x" * 300, "a\0b", "tab\there"]
)
def test_unsafe_study_names_are_rejected(tmp_path, name):
    _rejected(_run(tmp_path, {**TINY, "name": name}), "name")


def test_unsafe_name_via_set_is_rejected(tmp_path):
    _rejected(_run(tmp_path, TINY, "--set", "name=../../x"), "name")
    _rejected(_run(tmp_path, TINY, "--set", "methods.0.name=../m"), "methods.0.name")


def test_safe_names_pass_and_the_rule_is_one_component():
    for ok in ("default", "l1-filter", "methods-90", "a.b", "x" * 100, "ünïcode"):
        assert check_safe_name(ok) == ok
    for bad in ("a/b", "..", ".x", "", "x" * 101, "a\nb"):
        with pytest.raises(ValueError):
            check_safe_name(bad)


def test_unsafe_zoo_and_suite_names_are_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zoo = _write(
        tmp_path / "zoo.yaml",
        {
            "name": "../../zooescape",
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "options": {"hidden": [4]}},
            "epochs": 1,
        },
    )
    _rejected(runner.invoke(app, ["zoo", "generate", str(zoo)]), "name")
    suite = _write(tmp_path / "suite.yaml", {"name": "../up", "dataset": {"name": "digits"}})
    _rejected(runner.invoke(app, ["bench", str(suite), "--out", str(tmp_path / "out")]), "name")
    assert _tree(tmp_path) == {"zoo.yaml", "suite.yaml"}


def test_twin_method_names_and_values_are_checked():
    from prunezoo.zoo.twins import parse_twin_method

    assert parse_twin_method("{name: snip-1.5, criterion: snip}").name == "snip-1.5"
    for bad, field in (
        ("{name: ..}", "method.name"),
        ("{name: .x}", "method.name"),
        ("{name: mp, lr: .inf}", "method.lr"),
        ("{a: &a [1, 1], b: [*a, *a, *b]}", "--method"),
    ):
        with pytest.raises(ConfigError) as err:
            parse_twin_method(bad)
        assert err.value.field == field


# -- issue 16.2: alias bombs, unknown options ---------------------------------------------------
def _alias_bomb(levels: int, width: int = 10) -> str:
    lines = [
        "name: bomb",
        "methods:",
        "  - name: m",
        "    kind: oneshot",
        "    sparsities: [0.5]",
        "    options:",
        f"      l0: &l0 [{', '.join(['lol'] * width)}]",
    ]
    lines += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [6, 7])
def test_yaml_alias_bomb_is_rejected_quickly(tmp_path, levels):
    t0 = time.perf_counter()
    res = _run(tmp_path, _alias_bomb(levels))
    _rejected(res, "config", "expands")
    assert time.perf_counter() - t0 < 10


def test_recursive_alias_and_modest_aliases(tmp_path):
    _rejected(_run(tmp_path, "name: r\nsweep: &s {a: *s}\n"), "config")
    # aliases that stay small are plain YAML: still fine
    path = _write(tmp_path / "ok.yaml", "name: ok\ntraining: &t {epochs: 2, batch_size: 32, lr: 0.05}\nfinetune: *t\n")
    cfg = load_config(path)
    assert cfg.finetune.batch_size == 32 == cfg.training.batch_size


def _method(kind: str, **kw) -> dict:
    m = {"name": "m", "kind": kind}
    if kind == "imp":
        m["levels"] = 1
    elif kind not in ("str", "vd"):
        m["sparsities"] = [0.5]
    if kind == "sr-ste" and "sr-ste" in METHOD_OPTIONS:
        m.update(pattern="2:4", sparsities=[0.5])
    if kind == "structured":
        m["criterion"] = "l1"
    return {**m, **kw}


@pytest.mark.parametrize("kind", sorted(METHOD_OPTIONS))
def test_unknown_options_are_rejected_for_every_kind(kind):
    with pytest.raises(ConfigError, match="bogus") as err:
        parse_config({**TINY, "methods": [_method(kind, options={"bogus": 1})]})
    assert err.value.field == "methods.0"
    for name in METHOD_OPTIONS[kind][:1]:  # a known name is not "unknown" (its value may still be checked later)
        try:
            parse_config({**TINY, "methods": [_method(kind, options={name: 1})]})
        except ConfigError as e:
            assert "unknown option" not in str(e), str(e)


def test_option_table_matches_the_constructors():
    """METHOD_OPTIONS lists the keyword parameters each kind's constructor takes from ``options``."""
    from prunezoo.methods.oneshot import ObsOptions
    from prunezoo.reparam.edge_popup import apply_edge_popup
    from prunezoo.reparam.soft_threshold import apply_str
    from prunezoo.reparam.variational_dropout import VD_LAYER_OPTIONS, VD_LOSS_OPTIONS
    from prunezoo.schedules import ACDC, DynamicSparseTraining
    from prunezoo.structured.prune import prune_channels

    def kwonly(fn, passed):
        return {n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY and n not in passed}

    assert set(METHOD_OPTIONS["dst"]) == kwonly(DynamicSparseTraining.__init__, {"scheme", "masks", "seed"})
    assert set(METHOD_OPTIONS["acdc"]) == kwonly(ACDC.__init__, {"criterion", "scheme", "seed"})
    assert set(METHOD_OPTIONS["str"]) == kwonly(apply_str, {"allowed", "include", "exclude"})
    assert set(METHOD_OPTIONS["edge-popup"]) == kwonly(apply_edge_popup, {"allowed", "include", "exclude", "seed"})
    assert set(METHOD_OPTIONS["vd"]) == {*VD_LAYER_OPTIONS, *VD_LOSS_OPTIONS}
    assert set(METHOD_OPTIONS["structured"]) == {"allocation", "budget", "scan_ratios"} | kwonly(
        prune_channels, {"criterion", "batches", "seed", "loss_fn"}
    )
    cfg = parse_config(
        {
            **TINY,
            "methods": [
                {
                    "name": "o",
                    "kind": "oneshot",
                    "criterion": "obs",
                    "sparsities": [0.5],
                    "options": dict.fromkeys(tuple(ObsOptions.model_fields)[1:2], 8),
                }
            ],
        }
    )
    assert cfg.methods[0].options


def _study_examples() -> list[Path]:
    return [p for p in sorted(EXAMPLES.glob("*.yaml")) if "kind" in p.read_text()]  # zoo examples have no methods


@pytest.mark.parametrize("path", _study_examples(), ids=lambda p: p.name)
def test_every_example_validates_and_job_count_matches_the_plan(path):
    from prunezoo.experiments.plan import plan_study

    cfg = load_config(path)
    assert cfg.job_count() == len(plan_study(cfg))


def test_bench_suites_findings_and_zoo_example_validate():
    from prunezoo.bench import build_study, bundled_suites, load_suite
    from prunezoo.bench.reproduce import FINDINGS, finding_config
    from prunezoo.zoo.generate import load_zoo_config

    for name in bundled_suites():
        build_study(load_suite(name))
    for name, finding in FINDINGS.items():
        if finding.study is not None:
            finding_config(name, quick=True)
    load_zoo_config(EXAMPLES / "zoo-mnist5k.yaml")


# -- issue 16.5: values checked before anything is written --------------------------------------
@pytest.mark.parametrize(
    "args, field",
    [
        (["--workers", "0"], "--workers"),
        (["--threads", "0"], "--threads"),
        (["--executor", "bogus"], "--executor"),
    ],
)
def test_bad_run_options_exit_2_and_write_nothing(tmp_path, args, field):
    _rejected(_run(tmp_path, TINY, *args), field)


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"replicates": 1_000_000}, "replicates"),
        ({"sweep": {"seed": list(range(200)), "training.lr": [0.1 + i / 1000 for i in range(100)]}}, "sweep"),
        ({"training": {**TINY["training"], "epochs": 0}}, "training.epochs"),
        ({"training": {**TINY["training"], "steps": 0}}, "training.steps"),
        ({"finetune": {**TINY["finetune"], "epochs": 0}}, "finetune.epochs"),
        ({"training": {**TINY["training"], "lr": math.inf}}, "training.lr"),
        ({"finetune": {**TINY["finetune"], "lr": math.nan}}, "finetune.lr"),
        ({"methods": [{**TINY["methods"][0], "sparsities": [math.nan]}]}, "methods.0.sparsities.0"),
        ({"methods": [{**TINY["methods"][0], "overrides": {"fc1.weight": math.inf}}]}, "methods.0.overrides"),
        ({"model": {"name": "mlp", "options": {"hidden": [8], "x": -math.inf}}}, "model.options"),
        ({"dataset": {"name": "digits", "options": {"seed": 1, "bogus": 2}}}, "dataset.options"),
    ],
)
def test_bad_values_are_rejected_before_any_write(tmp_path, patch, field):
    t0 = time.perf_counter()
    _rejected(_run(tmp_path, {**TINY, **patch}), field)
    assert time.perf_counter() - t0 < 20  # no 64 s of planning a million jobs


def test_zero_length_finetune_is_fine_when_nothing_fine_tunes():
    cfg = parse_config({**TINY, "finetune": {"epochs": 0}, "methods": [{"name": "imp", "kind": "imp", "levels": 1}]})
    assert cfg.finetune.epochs == 0
    assert MAX_JOBS == 10_000 and parse_config({**TINY, "replicates": 100}).job_count() == 200


def test_nan_in_an_error_message_is_printed_not_eaten_as_markup(tmp_path):
    res = _run(tmp_path, {**TINY, "methods": [{**TINY["methods"][0], "sparsities": [math.nan]}]})
    _rejected(res, "nan")
    assert "got  (got )" not in res.output
    res = _run(tmp_path, TINY, "--set", 'dataset.name="[/x][bold]"')  # a rich MarkupError unless escaped
    _rejected(res, "dataset.name", "[/x][bold]")


# -- issue 16.6: tracebacks become exit 2 -------------------------------------------------------
def test_unreadable_configs_exit_2(tmp_path):
    (tmp_path / "adir").mkdir()
    _rejected(runner.invoke(app, ["run", str(tmp_path / "adir")]), "config", "not a file")
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    _rejected(runner.invoke(app, ["run", str(latin)]), "config", "UTF-8")
    _rejected(_run(tmp_path, TINY, "--set", "training.epochs=[1"), "--set training.epochs")
    for bad in ("training..epochs=1", "=1", "noequals", "methods.7.name=x", "name.sub=1"):
        _rejected(_run(tmp_path, TINY, "--set", bad))
    with pytest.raises(ConfigError, match="not a file"):
        read_yaml_mapping(tmp_path)


def test_out_pointing_at_a_file_exits_2(tmp_path):
    (tmp_path / "afile").write_text("x")
    config = _write(tmp_path / "s.yaml", TINY)
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        _rejected(runner.invoke(app, ["run", str(config), "--out", str(out)]), "--out")
    zoo = _write(
        tmp_path / "zoo.yaml",
        {"name": "z", "dataset": {"name": "digits"}, "model": {"name": "mlp", "options": {"hidden": [4]}}, "epochs": 1},
    )
    _rejected(runner.invoke(app, ["zoo", "generate", str(zoo), "--out", str(tmp_path / "afile")]), "--out")
    assert (tmp_path / "afile").read_text() == "x"


def test_run_store_errors_exit_2(tmp_path):
    from prunezoo.experiments.store import RunStore

    good = tmp_path / "good"
    RunStore(good / "index.sqlite")
    res = runner.invoke(app, ["runs", "export", str(tmp_path / "x.csv"), "--study", "nosuch", "--out", str(good)])
    _rejected(res, "--study", "nosuch")
    assert not (tmp_path / "x.csv").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "index.sqlite").write_bytes(b"this is not a database" * 50)
    for args in (
        ["runs", "ls"],
        ["runs", "show", "abc"],
        ["runs", "export", str(tmp_path / "y.csv")],
        ["report", "abc"],
    ):
        _rejected(runner.invoke(app, [*args, "--out", str(bad)]), "--out", "index.sqlite")
    # a study run into that root stops before writing its directory
    _rejected(runner.invoke(app, ["run", str(_write(tmp_path / "s.yaml", TINY)), "--out", str(bad), "-q"]), "--out")
    assert _tree(bad) == {"index.sqlite"}


def test_every_config_error_is_reported(tmp_path):
    res = _run(
        tmp_path,
        {
            **TINY,
            "dataset": {"name": "nosuchdata"},
            "training": {"epochs": -1},
            "methods": [{"name": "x", "kind": "magic"}],
        },
    )
    _rejected(res, "dataset.name", "training.epochs", "methods.0.kind")


# -- issue 19.2: --set changes exactly the named field ------------------------------------------
def test_set_changes_only_the_named_field(tmp_path):
    default = StudyConfig()
    cfg = load_config(None, ["training.epochs=3", "finetune.epochs=1"])
    assert cfg.training == default.training.model_copy(update={"epochs": 3})
    assert cfg.finetune == default.finetune.model_copy(update={"epochs": 1})
    assert (cfg.training.batch_size, cfg.training.lr, cfg.training.lr_schedule) == (64, 0.05, "cosine")
    assert cfg.finetune.lr == 0.01
    assert load_config(None, ["training.epochs=8"]).hash() == default.hash()  # a no-op override is a no-op
    # a YAML that leaves training out gets the same; one that gives a section keeps its own values
    no_training = {k: v for k, v in TINY.items() if k != "training"}
    cfg = load_config(_write(tmp_path / "a.yaml", no_training), ["training.epochs=2"])
    assert cfg.training == default.training.model_copy(update={"epochs": 2})
    cfg = load_config(_write(tmp_path / "b.yaml", TINY), ["training.lr=0.2", "methods.0.sparsities=[0.7]"])
    assert (cfg.training.epochs, cfg.training.batch_size, cfg.training.lr) == (1, 64, 0.2)
    assert cfg.methods[0].sparsities == [0.7] and cfg.methods[0].name == "gm"
    assert load_config(None, ["methods.4.levels=3"]).methods[4].levels == 3  # default methods, by index


def test_zoo_set_keeps_the_zoo_defaults():
    from prunezoo.zoo.generate import ZooConfig, load_zoo_config

    cfg = load_zoo_config(None, ["model.options.width=2"])
    assert cfg.model.name == ZooConfig().model.name == "cnn-s" and cfg.model.options == {"width": 2}


# Hashes computed with the code before this change (git 6af3e28): run directories keep their names.
HASHES_BEFORE = {
    "calibration-mnist5k.yaml": "56733180039c924c",
    "cifar10-resnet20.yaml": "88594bff9d8e513e",  # added with the example (issue 18)
    "methods-90.yaml": "c84d109c523a894a",
    "sdd-gmm-xor.yaml": "e06f8ea2de3410a1",
    "sdd-gmm.yaml": "9434bd45d5a069e6",
    "sdd-mnist1d.yaml": "254ac823e4122829",
    "sparse-transfer.yaml": "ada39caa161a3948",  # added with the example (issue 14)
    "structured-mnist5k.yaml": "cad9964f4aab7b2b",
    "suite:quick": "76c603ac04c655f4",
    "suite:structured-cnn": "6cb0c96a630e6ac3",
    "suite:unstructured-mlp-digits": "f94657c2aece79a1",
    "default": "44136fa355b3678a",
}


def test_example_and_suite_hashes_are_unchanged():
    from prunezoo.bench import build_study, load_suite

    now = {p.name: load_config(p).hash() for p in _study_examples()}
    now.update({k: build_study(load_suite(k.split(":")[1])).hash() for k in HASHES_BEFORE if k.startswith("suite:")})
    now["default"] = StudyConfig().hash()
    assert now == HASHES_BEFORE
    from prunezoo.zoo.generate import load_zoo_config, member_id, member_params

    zoo = load_zoo_config(EXAMPLES / "zoo-mnist5k.yaml")  # zoo members keep their directory names too
    assert member_id(member_params(zoo, zoo.members()[0], 10, [1, 28, 28])) == "cnn-s-s1-a8c65a3ff1"


# -- issue 19.3, 19.7, 19.12 --------------------------------------------------------------------
def test_force_with_a_bad_option_deletes_nothing(tmp_path):
    from prunezoo.experiments.study import run_study, study_directory

    cfg = parse_config(TINY)
    done = study_directory(cfg, tmp_path)
    done.mkdir(parents=True)
    (done / "results.json").write_text(json.dumps({"config_hash": cfg.hash(), "rows": []}))
    for bad in ({"executor": "rayy"}, {"workers": 0}, {"threads": 0}):
        with pytest.raises(ConfigError):
            run_study(cfg, tmp_path, force=True, **bad)
        assert (done / "results.json").exists()
    res = runner.invoke(
        app, ["run", str(_write(tmp_path / "s.yaml", TINY)), "--out", str(tmp_path), "--force", "--executor", "rayy"]
    )
    _rejected(res, "--executor")
    assert (done / "results.json").exists()
    assert "local" in runner.invoke(app, ["run", "--help"]).output  # the choices are shown


def test_reproduce_zoo_finding_honours_force(tmp_path, monkeypatch):
    import prunezoo.zoo.analysis as analysis
    import prunezoo.zoo.generate as generate
    import prunezoo.zoo.twins as twins
    from prunezoo.bench import reproduce as rep

    calls = []
    monkeypatch.setattr(generate, "generate_zoo", lambda cfg, directory, **kw: calls.append(Path(directory)))
    monkeypatch.setattr(twins, "make_twins", lambda directory, spec, **kw: None)
    monkeypatch.setattr(analysis, "analyze_zoo", lambda directory, compare: type("A", (), {"models": []})())
    directory, _ = rep._run_zoo("mp-vs-vd", True, tmp_path, {})
    (directory / "stale-model").mkdir(parents=True)
    rep._run_zoo("mp-vs-vd", True, tmp_path, {"force": False})
    assert (directory / "stale-model").exists()  # reused without --force
    rep._run_zoo("mp-vs-vd", True, tmp_path, {"force": True})
    assert not (directory / "stale-model").exists()  # --force trains it again
    assert calls == [directory] * 3


def test_version_option():
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and version("prunezoo") in res.output


# -- fuzz: many bad configs and arguments -------------------------------------------------------
UNSAFE_NAMES = st.one_of(
    st.sampled_from(["", ".", "..", ".x", "../x", "/abs", "a/b", "a\\b", "a\0b", "a\nb"]),
    st.text(min_size=101, max_size=300).filter(lambda s: "\0" not in s),
    st.builds(lambda a, b: f"{a}/{b}", st.text(max_size=5), st.text(max_size=5)),
)
NON_SCALARS = st.one_of(
    st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
    st.lists(st.integers(min_value=1), min_size=1, max_size=2),
)  # [0] would be valid sparsities
NON_FINITE = st.sampled_from([math.inf, -math.inf, math.nan])


def _mutation():
    """(patch function, fields one of which the error must name)."""

    def put(path: str, value):
        def apply(cfg: dict) -> dict:
            node = cfg
            *parents, last = path.split(".")
            for p in parents:
                node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
            node[int(last) if isinstance(node, list) else last] = value
            return cfg

        return apply

    return st.one_of(
        st.tuples(st.sampled_from(["name", "methods.0.name"]), UNSAFE_NAMES),
        st.tuples(
            st.sampled_from(
                [
                    "training.epochs",
                    "training.batch_size",
                    "finetune.batch_size",
                    "replicates",
                    "seed",
                    "methods.0.batches",
                ]
            ),
            st.integers(max_value=-1),
        ),
        st.tuples(
            st.sampled_from(
                [
                    "training.lr",
                    "finetune.lr",
                    "training.momentum",
                    "dataset.val_fraction",
                    "methods.0.sparsities.0",
                    "training.weight_decay",
                ]
            ),
            st.one_of(NON_FINITE, st.floats(max_value=-1e-3, allow_nan=False, allow_infinity=False)),
        ),
        st.tuples(
            st.sampled_from(
                [
                    "training.epochs",
                    "replicates",
                    "training.lr",
                    "dataset.name",
                    "model.name",
                    "methods.0.kind",
                    "methods.0.sparsities",
                    "name",
                ]
            ),
            NON_SCALARS,
        ),
        st.tuples(st.sampled_from(["replicates"]), st.integers(min_value=MAX_JOBS, max_value=10**12)),
        st.tuples(
            st.builds(
                lambda section, key: f"{section}.{key}" if section else key,
                st.sampled_from(["", "training", "dataset", "model", "methods.0"]),
                st.from_regex(r"zz[a-z_]{0,8}", fullmatch=True),
            ),
            st.integers(),
        ),
        st.tuples(
            st.just("methods.0.options"),
            st.dictionaries(st.from_regex(r"zz[a-z]{0,6}", fullmatch=True), st.integers(), min_size=1),
        ),
        st.tuples(st.sampled_from(["model.options.x", "dataset.options.y", "methods.0.scheme_options.z"]), NON_FINITE),
    ).map(lambda t: (put(*t), t[0].split(".")[0]))


BAD_ARGS = st.one_of(
    st.tuples(st.just("--workers"), st.integers(max_value=0).map(str)),
    st.tuples(st.just("--threads"), st.integers(max_value=0).map(str)),
    st.tuples(
        st.just("--executor"),
        st.text(min_size=1, max_size=8).filter(
            lambda s: s not in ("local", "ray") and not s.startswith("-") and "\0" not in s
        ),
    ),
    st.tuples(
        st.just("--set"),
        st.sampled_from(
            ["training.epochs=[1", "noequals", "a..b=1", "=3", "name={", "training.epochs={a: [", "methods.99.name=x"]
        ),
    ),
)


ZOO = {"name": "z", "dataset": {"name": "digits"}, "model": {"name": "mlp", "options": {"hidden": [4]}}, "epochs": 1}
ZOO_MUTATIONS = st.one_of(
    st.tuples(st.just("name"), UNSAFE_NAMES),
    st.tuples(st.sampled_from(["epochs", "batch_size", "chunk_size"]), st.integers(max_value=-1)),
    st.tuples(st.sampled_from(["lr", "weight_decay", "momentum"]), st.one_of(NON_FINITE, st.just(-1.0))),
    st.tuples(st.just("seeds"), st.builds(lambda n: {"count": n}, st.integers(min_value=MAX_JOBS + 1))),
    st.tuples(st.from_regex(r"zz[a-z_]{0,8}", fullmatch=True), st.integers()),
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutation=ZOO_MUTATIONS)
def test_fuzz_bad_zoo_configs(tmp_path_factory, mutation):
    tmp = tmp_path_factory.mktemp("zoofuzz")
    field, value = mutation
    config = _write(tmp / "zoo.yaml", yaml.safe_dump({**ZOO, field: value}, allow_unicode=True))
    res = runner.invoke(app, ["zoo", "generate", str(config), "--out", str(tmp / "zoo")])
    _rejected(res, field)
    assert _tree(tmp) == {"zoo.yaml"}


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_bad_configs_and_arguments(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    if data.draw(st.booleans(), label="bad argument instead of bad config"):
        cfg, args, section = json.loads(json.dumps(TINY)), list(data.draw(BAD_ARGS, label="argument")), None
    else:
        patch, section = data.draw(_mutation(), label="mutation")
        cfg, args = patch(json.loads(json.dumps(TINY))), []
    res = _run(tmp, yaml.safe_dump(cfg, allow_unicode=True), *args)
    _rejected(res, *([section] if section else []))
    assert not (tmp / "work" / "a").exists()
