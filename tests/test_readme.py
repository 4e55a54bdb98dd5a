"""Every Python block of README.md runs as printed, offline, each in a fresh interpreter.

A block runs with ``python -c`` in a subprocess whose working directory is a temporary folder (files it
writes stay out of the repository) with one intra-op thread. A block that cannot run here by design
(it needs a GPU, say) starts with ``# readme-test: skip (<reason>)`` and is reported as skipped with
that reason; no other block is skipped. A block that trains under its masks (``masks=masks``) prints
the model's final sparsity on a line ``sparsity: <x>`` and asserts it is the one it asked for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"# readme-test: skip \((.+)\)")


def python_blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def block_id(index: int, source: str) -> str:
    first = next((line for line in source.splitlines() if line.strip()), "")
    return f"{index}:{first[:40]}"


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks_and_one_trains_under_masks():
    assert len(BLOCKS) >= 3
    assert any("masks=masks" in b for b in BLOCKS), "no README block keeps its masks while training"
    for b in BLOCKS:
        # a block that prunes uses its masks: trains with them, applies them or exports with them
        for name in re.findall(r"^(\w+) = prune\(", b, re.M):
            rest = re.sub(r"#.*", "", b.split(f"{name} = prune(", 1)[1].split("\n", 1)[1])  # code, not comments
            assert re.search(rf"\b{name}\b", rest), f"{name} = prune(...) is never used:\n{b}"


@pytest.mark.parametrize("source", BLOCKS, ids=[block_id(i, b) for i, b in enumerate(BLOCKS)])
def test_a_readme_block_runs(source, tmp_path):
    first = source.splitlines()[0] if source.strip() else ""
    if m := SKIP.fullmatch(first.strip()):
        pytest.skip(m.group(1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    if "masks=masks" in source:  # trained under its masks: the block prints (and asserts) the sparsity reached
        reached = [float(x) for x in re.findall(r"^sparsity: ([\d.]+)", proc.stdout, re.M)]
        assert reached and all(0 < s < 1 for s in reached), proc.stdout
