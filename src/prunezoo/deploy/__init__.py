"""Deployment of pruned models: sparse inference export (CSR/BSR on CPU, 2:4 semi-structured on CUDA).

See :mod:`prunezoo.deploy.sparse`; the run-directory export behind ``prunezoo export --sparse`` is
:func:`prunezoo.experiments.export.export_run` (on top of :mod:`prunezoo.deploy.run_export`).
"""

from prunezoo.deploy.sparse import (
    SparseConv2d,
    SparseLinear,
    deploy_report,
    paired_speedup,
    semi_structured_available,
    sparse_export,
    sparse_layer_count,
)

__all__ = [
    "SparseConv2d",
    "SparseLinear",
    "deploy_report",
    "paired_speedup",
    "semi_structured_available",
    "sparse_export",
    "sparse_layer_count",
]
