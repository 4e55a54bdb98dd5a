"""Deployment of pruned models: sparse inference export (CSR/BSR on CPU, 2:4 semi-structured on CUDA)
and ONNX export verified with onnxruntime.

See :mod:`prunezoo.deploy.sparse`; the run-directory export behind ``prunezoo export --sparse`` is
:func:`prunezoo.experiments.export.export_run` (on top of :mod:`prunezoo.deploy.run_export`).
ONNX: :func:`prunezoo.deploy.onnx.export_onnx` (optional extra ``onnx``; not imported here, so this
package needs neither onnx nor its exporter), ``prunezoo export <run> --onnx FILE``
(:func:`prunezoo.experiments.export.export_run_onnx`).
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
