"""Study analysis: self-contained HTML reports."""

from prunezoo.analysis.report import write_report

__all__ = ["write_report"]
