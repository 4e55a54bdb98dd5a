"""The one progress module: shown only when enabled (a terminal by default), counted the same either way."""

import ast
import sys
from pathlib import Path

import prunezoo
from prunezoo.utils.progress import ProgressBar


def test_enabled_bar_draws_on_the_terminal_and_disabled_bar_draws_nothing(monkeypatch, capsys):
    import rich.progress

    consoles = []
    original = rich.progress.Progress.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        consoles.append(self)

    monkeypatch.setattr(rich.progress.Progress, "__init__", spy)
    with ProgressBar("jobs", 3, enabled=False) as bar:
        bar.advance()
        bar.advance(2, description="last")
    assert bar.completed == 3 and consoles == []
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not ProgressBar("jobs", 1).enabled  # not a terminal: off unless told
    with ProgressBar("jobs", 3, completed=1, enabled=True) as bar:
        bar.advance(description="job b")
        task = consoles[0].tasks[0]
        assert (task.completed, task.total, task.description) == (2, 3, "job b")
    assert not consoles[0].live.is_started  # stopped on exit
    assert capsys.readouterr().out == ""


def test_no_other_module_builds_its_own_rich_progress():
    src = Path(prunezoo.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        if path.name == "progress.py" and path.parent.name == "utils":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "rich.progress":
                offenders.append(str(path.relative_to(src)))
    assert offenders == []


def test_progress_module_imports_only_rich_and_the_standard_library():
    path = Path(prunezoo.__file__).parent / "utils" / "progress.py"
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert roots <= {"rich", "sys", "__future__"} | set(sys.stdlib_module_names), roots
