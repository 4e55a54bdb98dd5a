"""Published reference results bundled with prunezoo (``published.yaml``), kept apart from measured ones."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

PUBLISHED_FILE = Path(__file__).parent / "published.yaml"


class PublishedResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    paper: str
    model: str
    dataset: str
    protocol: str
    metric: str
    value: float
    unit: str = ""
    note: str = ""
    source: str
    finding: str | None = None

    @property
    def shown(self) -> str:
        value = format(self.value, ",g")
        unit = self.unit if self.unit in ("%", "x", "") else f" {self.unit}"
        return f"{value}{'×' if unit == 'x' else unit}"


def published_results(finding: str | None = None) -> list[PublishedResult]:
    """All bundled published results, or those tied to one ``prunezoo reproduce`` finding."""
    rows = [PublishedResult.model_validate(r) for r in yaml.safe_load(PUBLISHED_FILE.read_text())]
    return [r for r in rows if finding is None or r.finding == finding]
