"""Findings of the source papers re-tested by ``prunezoo reproduce``: one module per finding added after
the first five (those live in :mod:`prunezoo.bench.reproduce`), each registered in
:data:`prunezoo.bench.findings.base.FINDINGS` when imported."""
