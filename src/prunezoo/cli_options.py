"""Command-line options shared by ``prunezoo run``, ``zoo generate/twin`` and ``bench``/``reproduce``.

Kept in a light module (no torch) so every CLI module can import it at load time. Values are
checked by click, so a bad one is a usage error (exit 2) before anything runs or is written.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Executor(str, Enum):
    """``prunezoo.experiments.executors.EXECUTORS`` (listed here without importing torch)."""

    local = "local"
    ray = "ray"


ExecutorOption = Annotated[Executor, typer.Option(help="local (process pool) or ray")]
WorkersOption = Annotated[int | None, typer.Option(min=1, help="parallel jobs (default: CPU cores); "
                                                              "1 = in this process")]
ThreadsOption = Annotated[int, typer.Option(min=1, help="torch threads per job (fixed so results do not depend on "
                                                        "parallelism)")]
